"""Pieces every trainer's loop shares: stop signals, NaN checks of host metrics, atomic JSON.

`SignalCatcher` turns SIGTERM/SIGINT into a flag that the loop checks after each step (it then saves
a checkpoint and raises `TrainingInterrupted`); `host_metrics` sums per-step `(sum, count)` metrics
on the host and returns each step's loss so a NaN/inf can be named by step (`NonFiniteLossError`).
"""

import json
import os
import signal
import threading

import jax
import numpy as np


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGINT arrived; a checkpoint of the current step was saved before raising."""


class SignalCatcher:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (main thread only)."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        if self.received is not None:  # A second signal: stop now.
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def host_metrics(step_metrics: list[dict]) -> tuple[dict[str, float], np.ndarray]:
    """Sum a list of per-step metrics dicts on the host; also return each step's mean loss."""
    host = jax.device_get(step_metrics)
    losses = np.asarray([m["loss"][0] / max(m["loss"][1], 1e-12) for m in host])
    totals = {name: (sum(m[name][0] for m in host), sum(m[name][1] for m in host)) for name in host[0]}
    return {name: float(s / max(c, 1e-12)) for name, (s, c) in totals.items()}, losses


def write_json(path: str, payload: dict) -> None:
    """Write JSON atomically (a killed run never leaves a truncated file)."""
    if jax.process_index() != 0:
        return
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def make_checkpointer(config, workdir: str):
    """The `Checkpointer` of a run: `workdir/checkpoints`, keeping what `config.checkpoint` says."""
    from jaxvision.training.checkpoint import Checkpointer

    return Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep,
        best_metric=config.checkpoint.best_metric or None, best_mode=config.checkpoint.best_mode,
    )


def abstract_state(state):
    """`jax.ShapeDtypeStruct`s of `state` carrying its current shardings: the restore target."""
    return jax.tree.map(lambda array: jax.ShapeDtypeStruct(array.shape, array.dtype, sharding=array.sharding), state)


def count_steps(config, train_size: int, num_devices: int) -> tuple[int, int]:
    """`(steps_per_epoch, num_steps)` of `config` on `train_size` examples, with the batch checked.

    Raises:
      ValueError: if the batch does not divide over the devices or exceeds the training set.
    """
    if config.batch_size % num_devices:
        raise ValueError(f"config.batch_size={config.batch_size} must be divisible by the {num_devices} devices")
    steps_per_epoch = train_size // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"config.batch_size={config.batch_size} exceeds the training set size {train_size}")
    num_steps = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * steps_per_epoch
    return steps_per_epoch, num_steps


def check_finite_losses(losses: np.ndarray, last_step: int, checkpointer) -> None:
    """Raise `NonFiniteLossError` naming the first step whose loss is NaN/inf.

    `losses` are the per-step losses of the steps ending at `last_step` (inclusive).
    """
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        bad_step = last_step - len(losses) + int(bad[0]) + 1
        raise NonFiniteLossError(
            f"training loss is {losses[bad[0]]} at step {bad_step}; stopping. The last good "
            f"checkpoint stays in {checkpointer.directory} (steps {checkpointer.all_steps()})."
        )


def read_workdir_config(workdir: str):
    """The `ConfigDict` saved as `workdir/config.json` (JSON: nothing is executed)."""
    import ml_collections

    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{config_path} not found: is {workdir!r} a jaxvision training workdir?")
    with open(config_path) as f:
        return ml_collections.ConfigDict(json.load(f))


def restore_workdir(workdir: str, build_experiment, *, step: int | None = None, use_best: bool = False):
    """`(experiment, state, restored_step)` of a workdir's checkpoint (latest, best, or `step`).

    `build_experiment(config)` is the trainer's builder; its `.state` gives the restore target.
    """
    config = read_workdir_config(workdir)
    experiment = build_experiment(config)
    checkpointer = make_checkpointer(config, workdir)
    if use_best and step is None:
        step = checkpointer.best_step()
    restored = checkpointer.restore(abstract_state(experiment.state), step, with_data=False)
    checkpointer.close()
    if restored is None:
        raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}")
    state, _, restored_step = restored
    return experiment, state, restored_step


def evaluate_raw_and_ema(evaluate, experiment, state) -> dict[str, float]:
    """`{"test_*": ..., "test_ema_*": ...}`: `evaluate(experiment, state, use_ema=...)` on both weights."""
    results = {f"test_{k}": v for k, v in evaluate(experiment, state).items()}
    if state.ema_params is not None:
        results.update({f"test_ema_{k}": v for k, v in evaluate(experiment, state, use_ema=True).items()})
    return results
