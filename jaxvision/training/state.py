"""The train state: one pytree holding everything a step changes.

`TrainState` = (step, params, batch_stats, opt_state, ema_params). The model's `apply` and the
optax transformation are static fields, so the state is a valid `jax.jit` argument and Orbax saves
only arrays. No RNG lives in the state: step keys are `fold_in(train_key, step)`.
"""

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax


class TrainState(flax.struct.PyTreeNode):
    """Training state of a linen model.

    Attributes:
      step: int32 scalar, the number of train steps taken.
      params: the model's "params" collection (float32 storage).
      batch_stats: the model's "batch_stats" collection (empty dict for models without BatchNorm).
      opt_state: the optax state.
      ema_params: exponential moving average of `params`, or `None` when EMA is off.
      apply_fn: the model's `apply` (static).
      tx: the optax transformation (static).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    ema_params: Any
    apply_fn: Callable = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

    @property
    def variables(self) -> dict:
        """The variables `apply` takes, with the raw (non-EMA) parameters."""
        return {"params": self.params, "batch_stats": self.batch_stats}

    def apply_gradients(self, grads, *, batch_stats, ema_decay: float) -> "TrainState":
        """One optimizer step: updated params and optimizer state, `step + 1`, the new BatchNorm
        statistics, and the EMA moved towards the new params (when EMA is on) with weight
        `1 - ema_decay`."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        ema_params = self.ema_params
        if ema_params is not None:
            ema_params = optax.incremental_update(params, ema_params, step_size=1.0 - ema_decay)
        return self.replace(
            step=self.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state, ema_params=ema_params
        )


def create_train_state(key, model, tx, image_shape, *, use_ema: bool = False) -> TrainState:
    """Initialise `model` on a dummy batch of shape `[1, *image_shape]` and wrap it in a state.

    Args:
      key: PRNG key for parameter initialisation.
      model: a linen module following the `(logits, features) = model(images, train=...)` rule.
      tx: optax gradient transformation.
      image_shape: `(H, W, C)` of one input image.
      use_ema: keep an exponential moving average copy of the parameters.
    """
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    variables = model.init({"params": key, "dropout": key}, dummy, train=False)
    return train_state_from_variables(
        variables["params"], variables.get("batch_stats", {}), model, tx, use_ema=use_ema
    )


def train_state_from_variables(params, batch_stats, model, tx, *, use_ema: bool = False) -> TrainState:
    """A step-0 state holding `params` and `batch_stats` (e.g. loaded weights), with a fresh
    optimizer state and, with `use_ema`, an EMA copy of the parameters."""
    # A real copy: donating a state whose two leaves share one buffer fails (see JAX_NOTES).
    ema_params = jax.tree.map(jnp.copy, params) if use_ema else None
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        ema_params=ema_params,
        apply_fn=model.apply,
        tx=tx,
    )


def parameter_count(params) -> int:
    """Number of scalars in a parameter pytree."""
    return sum(int(leaf.size) for leaf in jax.tree.leaves(params))
