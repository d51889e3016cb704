"""Ensembles of one model over several parameter sets (checkpoints, seeds): mean class probability.

Parameter sets are stacked along a new leading axis (`stack_params`). `ensemble_average` runs them
with `lax.map` by default (sequential: one model's activations in memory, one compile) or with `vmap`
(`parallel=True`: all members at once, M times the activation memory, better device utilization for
small models).
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxvision.types import Array, PyTree


def stack_params(params_list: Sequence[PyTree]) -> PyTree:
    """Stacks structurally identical pytrees (e.g. `variables` of M checkpoints) leaf by leaf: [M, ...]."""
    if len(params_list) == 0:
        raise ValueError("params_list must hold at least one parameter set")
    structures = {jax.tree.structure(params) for params in params_list}
    if len(structures) != 1:
        raise ValueError(f"all parameter sets must share one tree structure, got {len(structures)}")
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *params_list)


def ensemble_average(apply_fn: Callable[[PyTree, Array], Array], stacked_params: PyTree,
                     images: Array, *, parallel: bool = False) -> Array:
    """Mean over members of `softmax(apply_fn(params_m, images))`; returns float32 `[B, K]`.

    `apply_fn(params, images) -> logits [B, K]`, e.g.
    `lambda v, x: model.apply(v, x, train=False)[0]`; `stacked_params` from `stack_params`.
    """
    leaves = jax.tree.leaves(stacked_params)
    if not leaves or len({leaf.shape[0] for leaf in leaves}) != 1:
        raise ValueError("stacked_params must be a pytree of arrays sharing a leading member axis "
                         "(use stack_params)")

    def member_probabilities(params):
        return jax.nn.softmax(apply_fn(params, images).astype(jnp.float32))

    if parallel:
        probabilities = jax.vmap(member_probabilities)(stacked_params)  # [M, B, K]
    else:
        probabilities = jax.lax.map(member_probabilities, stacked_params)  # [M, B, K]
    return probabilities.mean(axis=0)
