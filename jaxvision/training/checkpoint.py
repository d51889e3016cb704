"""Orbax checkpoints: async saves, keep latest K + the best, never lose the latest, auto-resume.

A checkpoint holds the train state (`state`), the data iterator position (`data`, JSON) and the
step's metrics. Keeping uses `AnyPreservationPolicy([LatestN(k), BestN(1)])`: `max_to_keep` with
`best_fn` can delete the newest checkpoint and make a run unresumable (JAX_NOTES).

Restoring takes an abstract target (`jax.ShapeDtypeStruct`s carrying the *current* shardings), so a
checkpoint written on 8 devices restores onto 1 and vice versa. A newest checkpoint that fails to
restore (corrupt, truncated) is reported with a warning and the previous one is used. Orbax never
exposes half-written checkpoints (it writes to a temporary directory and renames on success).
Nothing is unpickled: state is tensorstore/OCDBT arrays plus JSON.
"""

import logging
import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

logger = logging.getLogger(__name__)


class Checkpointer:
    """Saves and restores `(state, data-iterator state)` in `directory`.

    Args:
      directory: where step folders go (created if missing).
      keep: how many of the newest checkpoints to keep.
      best_metric: metric name whose best checkpoint is also kept (None: only the latest `keep`).
      best_mode: "max" or "min".
    """

    def __init__(self, directory: str, *, keep: int = 3, best_metric: str | None = None, best_mode: str = "max"):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        self.directory = os.path.abspath(directory)
        self.best_metric = best_metric
        self.best_mode = best_mode
        policies = [checkpoint_managers.LatestN(n=keep)]
        if best_metric:
            policies.append(
                checkpoint_managers.BestN(
                    get_metric_fn=lambda metrics: metrics[best_metric],
                    # BestN sorts ascending and keeps the tail: reverse=False keeps the largest.
                    reverse=best_mode == "min",
                    n=1,
                    # Checkpoints saved between evaluations have no metrics; LatestN keeps those.
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            # best_fn/best_mode only make Orbax store each step's metrics (which BestN reads);
            # what is kept is decided by the preservation policy alone.
            best_fn=(lambda metrics: metrics[best_metric]) if best_metric else None,
            best_mode=best_mode,
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state, data_state: dict | None, metrics: dict | None = None) -> None:
        """Start an asynchronous save of step `step` (returns before the files are written)."""
        items = {"state": ocp.args.StandardSave(state)}
        if data_state is not None:
            items["data"] = ocp.args.JsonSave(data_state)
        clean_metrics = {k: float(v) for k, v in (metrics or {}).items()}
        self.manager.save(step, args=ocp.args.Composite(**items), metrics=clean_metrics or None, force=True)

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The kept step with the best `best_metric`, or None without a best metric."""
        if not self.best_metric:
            return None
        best, best_value = None, None
        for step in self.all_steps():
            metrics = self.manager.metrics(step) or {}
            value = metrics.get(self.best_metric)
            if value is None:
                continue
            if best_value is None or (value > best_value if self.best_mode == "max" else value < best_value):
                best, best_value = step, value
        return best

    def restore(self, abstract_state, step: int | None = None, *, with_data: bool = True):
        """Restore the newest restorable checkpoint (or exactly `step`).

        Args:
          abstract_state: pytree of `jax.ShapeDtypeStruct` with the target shardings (from
            `jax.eval_shape`); the restored arrays take these shardings.
          step: a specific step; None tries the newest first and falls back on failure.
          with_data: also restore the data-iterator state.

        Returns:
          `(state, data_state, step)`, or `None` when there is no checkpoint at all.
        """
        candidates = [step] if step is not None else sorted(self.all_steps(), reverse=True)
        for candidate in candidates:
            items = {"state": ocp.args.StandardRestore(abstract_state)}
            if with_data:
                items["data"] = ocp.args.JsonRestore()
            try:
                restored = self.manager.restore(candidate, args=ocp.args.Composite(**items))
            except Exception as error:  # noqa: BLE001 - any failure means "this step is unusable"
                if step is not None:
                    raise
                logger.warning(
                    "checkpoint at step %d in %s could not be restored (%s: %s); trying the previous one",
                    candidate, self.directory, type(error).__name__, error,
                )
                continue
            data_state = restored["data"] if with_data else None
            return restored["state"], data_state, candidate
        if candidates:
            raise RuntimeError(f"no checkpoint in {self.directory} could be restored: {candidates}")
        return None

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree, shardings):
    """`jax.ShapeDtypeStruct`s of `tree` with `shardings` (a pytree prefix or one sharding)."""
    if not isinstance(shardings, (list, tuple, dict)) and not hasattr(shardings, "_fields"):
        shardings = jax.tree.map(lambda _: shardings, tree)
    return jax.tree.map(lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s), tree, shardings)
