"""The training loop every trainer shares, and the pieces it is made of.

A trainer (`jaxvision.trainers.classification`, `.segmentation`) supplies what is task-specific
(the data set, model registry, jitted train step, host batch checks, evaluation) and calls
`build_experiment`, `run_training` and `base_results`. The loop restores the newest valid
checkpoint (state and data-iterator position), steps, logs, evaluates, early-stops, checkpoints,
and turns SIGTERM/SIGINT into a saved checkpoint plus `TrainingInterrupted`. `SignalCatcher` is
the flag the loop checks after each step; `host_metrics` sums per-step `(sum, count)` metrics on
the host and returns each step's loss so a NaN/inf can be named by step (`NonFiniteLossError`).

Randomness: one root key from `config.seed`, split by purpose with `fold_in` (`INIT_PURPOSE`,
`TRAIN_PURPOSE`); a step's key is `fold_in(train_key, state.step)`, so no RNG lives in the state.
"""

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.training import dispatch, early_stopping, fingerprint, machine, optimizers, sharding
from jaxvision.training import logging as logging_lib
from jaxvision.training.state import create_train_state, parameter_count

logger = logging.getLogger(__name__)

INIT_PURPOSE, TRAIN_PURPOSE = 0, 1


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


def split_names(config) -> tuple[str, ...]:
    """The splits a run evaluates: ("validation", "test") with a held-out validation split, else ("test",)."""
    return ("validation", "test") if validation_fraction(config) > 0 else ("test",)


def validation_fraction(config) -> float:
    # .get: configs of workdirs written before the key existed.
    return float(config.dataset.get("validation_fraction", 0.0))


def evaluation_source(split: str, *, load_test: Callable[[], Any], load_training: Callable[[], tuple]):
    """The records to evaluate for `split`: "test" -> `load_test()`, "validation" -> the held-out
    part of `load_training()` (a `(train, validation or None)` pair, `jaxvision.data.holdout`)."""
    if split == "test":
        return load_test()
    if split == "validation":
        source = load_training()[1]
        if source is None:
            raise ValueError("no validation split: set config.dataset.validation_fraction > 0")
        return source
    raise ValueError(f"unknown split {split!r}; valid: 'test', 'validation'")


def evaluate_splits(evaluate, experiment, state, **kwargs) -> dict[str, dict[str, float]]:
    """`{split: metrics, split + "_ema": metrics}` for each of `split_names(config)` (the EMA
    entries when EMA is on), from `evaluate(experiment, state, split=..., use_ema=..., **kwargs)`."""
    splits = {}
    for split in split_names(experiment.config):
        splits[split] = evaluate(experiment, state, split=split, **kwargs)
        if state.ema_params is not None:
            splits[f"{split}_ema"] = evaluate(experiment, state, split=split, use_ema=True, **kwargs)
    return splits


def flatten_splits(splits: dict[str, dict[str, float]]) -> dict[str, float]:
    """`{"test": {"loss": x}}` -> `{"test_loss": x}`."""
    return {f"{split}_{name}": value for split, metrics in splits.items() for name, value in metrics.items()}


@dataclasses.dataclass
class Experiment:
    """Everything a trainer builds before the loop; also what `restore_workdir` returns."""

    config: Any
    spec: Any  # the data set's spec (DatasetSpec / SegmentationSpec)
    model: Any
    mesh: Any
    state: Any  # TrainState, replicated over `mesh`
    mean: np.ndarray
    std: np.ndarray
    steps_per_epoch: int
    num_steps: int
    train_key: Any


def validate_config(config) -> None:
    """Checks of the keys every trainer reads; ValueError naming the key and its value."""
    if config.batch_size < 1:
        raise ValueError(f"config.batch_size must be positive, got {config.batch_size}")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise ValueError(f"config.label_smoothing must be in [0, 1), got {config.label_smoothing}")
    if not 0.0 <= config.ema_decay < 1.0:
        raise ValueError(f"config.ema_decay must be in [0, 1), got {config.ema_decay}")
    # .get: workdirs written before early stopping existed have no such key in config.json.
    if config.get("early_stopping_patience", 0) < 0:
        raise ValueError(f"config.early_stopping_patience must be >= 0, got {config.early_stopping_patience}")
    if config.get("early_stopping_patience", 0) > 0 and not config.checkpoint.best_metric:
        raise ValueError("config.early_stopping_patience > 0 needs config.checkpoint.best_metric (the metric to watch)")
    if not 0.0 <= validation_fraction(config) < 1.0:
        raise ValueError(f"config.dataset.validation_fraction must be in [0, 1), got {validation_fraction(config)}")
    if config.checkpoint.best_metric.startswith("validation") and validation_fraction(config) == 0:
        raise ValueError(
            f"config.checkpoint.best_metric={config.checkpoint.best_metric!r} watches the validation split, "
            "but none is held out: set config.dataset.validation_fraction (e.g. 0.1)"
        )


def build_experiment(config, *, spec, create_model: Callable, train_size: int, mean, std) -> Experiment:
    """Mesh, step counts, model (`create_model(config.model, num_classes=..., dtype=..., **model_kwargs)`),
    optimizer and the replicated initial state of `config` on a data set of `train_size` examples."""
    mesh = sharding.make_mesh(config.num_devices)
    steps_per_epoch, num_steps = count_steps(config, train_size, mesh.size)
    dtype = jnp.bfloat16 if config.mixed_precision else jnp.float32
    model = create_model(config.model, num_classes=spec.num_classes, dtype=dtype, **config.model_kwargs)
    schedule = optimizers.make_learning_rate_schedule(
        config, steps_per_epoch=steps_per_epoch, num_steps=num_steps, global_batch_size=config.batch_size
    )
    tx = optimizers.make_optimizer(config, schedule)
    root_key = jax.random.key(config.seed)
    init_key, train_key = jax.random.fold_in(root_key, INIT_PURPOSE), jax.random.fold_in(root_key, TRAIN_PURPOSE)
    create = jax.jit(
        lambda key: create_train_state(key, model, tx, spec.image_shape, use_ema=config.ema_decay > 0),
        out_shardings=sharding.replicated_sharding(mesh),
    )
    return Experiment(config, spec, model, mesh, create(init_key), mean, std, steps_per_epoch, num_steps, train_key)


@dataclasses.dataclass
class LoopOutcome:
    """What `run_training` ends with."""

    state: Any
    step: int
    last_eval: dict[str, float]  # flattened: "test_loss", "test_ema_accuracy", ...
    stopped_early: bool
    best_checkpoint_step: int | None


def run_training(
    experiment: Experiment,
    workdir: str,
    *,
    train_iterator,
    train_step: Callable,
    prepare_batch: Callable[[dict], dict],
    evaluate_state: Callable[[Any], dict[str, dict[str, float]]],
    show_progress: bool = True,
    fresh_state: Callable[[], Any] | None = None,
) -> LoopOutcome:
    """Restore, then train `experiment` to `num_steps`: log, evaluate, early-stop, checkpoint.

    Args:
      train_iterator: the grain iterator of training batches (its position is checkpointed).
      train_step: jitted `(state, sharded batch, train_key) -> (state, metrics)`, state donated;
        metrics are `(sum, count)` pairs including "loss" and "accuracy".
      prepare_batch: host-side checks of a numpy batch; returns the dict the step takes.
      evaluate_state: `state -> {"test": metrics, ...}` (`evaluate_splits` for most trainers);
        each split is logged and enters the results as "<split>_<metric>".
      fresh_state: builds the starting state when no checkpoint restores (e.g. from published
        weights, `training/pretrained.py`); None: `experiment.state`.

    Every `config.eval_every_steps` (0: each epoch) and at the end it evaluates; checkpoints are
    saved then (or every `config.checkpoint.every_steps`), never from a NaN loss.

    Raises:
      NonFiniteLossError: naming the first step whose loss was NaN/inf (earlier checkpoints stay).
      TrainingInterrupted: on SIGTERM/SIGINT, after saving a checkpoint of the current step.
    """
    config, mesh = experiment.config, experiment.mesh
    checkpointer = make_checkpointer(config, workdir)
    state = experiment.state
    restored = checkpointer.restore(abstract_state(state))
    if restored is not None:
        state, data_state, restored_step = restored
        if data_state is not None:
            train_iterator.set_state(data_state)
        logger.info("resumed from step %d in %s", restored_step, checkpointer.directory)
    elif fresh_state is not None:
        state = fresh_state()

    step = int(jax.device_get(state.step))
    run_logger = logging_lib.RunLogger(workdir, total_steps=experiment.num_steps, initial_step=step, show_progress=show_progress)
    if step == 0:
        run_logger.message(
            f"{config.model}: {parameter_count(state.params):,} parameters, {experiment.num_steps} steps "
            f"({experiment.steps_per_epoch}/epoch) on {mesh.size} device(s) [{jax.devices()[0].platform}]"
        )

    def save(current_step, metrics=None):
        checkpointer.save(current_step, state, train_iterator.get_state(), metrics)

    def run_evaluations(current_step) -> dict[str, float]:
        splits = evaluate_state(state)
        for split, metrics in splits.items():
            run_logger.write(current_step, split, metrics)
        return flatten_splits(splits)

    pending: list[dict] = []
    window_start, window_images = time.perf_counter(), 0
    eval_every = config.eval_every_steps or experiment.steps_per_epoch
    last_eval: dict[str, float] = {}
    stopper, stopped_early = None, False
    if config.get("early_stopping_patience", 0) > 0:
        stopper = early_stopping.EarlyStopping(config.checkpoint.best_metric, mode=config.checkpoint.best_mode,
                                               patience=config.early_stopping_patience)
        if stopper.metric.startswith("test"):
            logger.warning(
                "early stopping watches %s: choosing when to stop on the test split biases the test result; "
                "hold out a validation split (config.dataset.validation_fraction) and watch validation_accuracy",
                stopper.metric,
            )
        if restored is not None:
            best_step = checkpointer.best_step()
            best_value = (checkpointer.manager.metrics(best_step) or {}).get(stopper.metric) if best_step is not None else None
            stopper.resume(best_step=best_step, best_value=best_value, step=step, eval_every=eval_every)

    def flush_train_metrics(current_step):
        nonlocal window_start, window_images
        if not pending:
            return
        train_metrics, losses = host_metrics(pending)
        check_finite_losses(losses, current_step, checkpointer)
        train_metrics["images_per_second"] = window_images / max(time.perf_counter() - window_start, 1e-9)
        run_logger.write(current_step, "train", train_metrics)
        run_logger.advance(len(pending), {k: train_metrics[k] for k in ("loss", "accuracy", "images_per_second")})
        pending.clear()
        window_start, window_images = time.perf_counter(), 0

    dispatch_window = dispatch.DispatchWindow()
    try:
        with SignalCatcher() as signals:
            for batch in train_iterator:
                if step >= experiment.num_steps:
                    break
                batch = prepare_batch(batch)
                state, metrics = train_step(state, sharding.shard_batch(batch, mesh), experiment.train_key)
                pending.append(dispatch_window.admit(metrics))
                step += 1
                window_images += config.batch_size
                is_last = step == experiment.num_steps
                if len(pending) >= config.log_every_steps or is_last or signals.received is not None:
                    flush_train_metrics(step)
                if step % eval_every == 0 or is_last:
                    flush_train_metrics(step)
                    last_eval = run_evaluations(step)
                    stopped_early = stopper is not None and stopper.update(step, last_eval) and not is_last
                    if config.checkpoint.every_steps == 0 or is_last or stopped_early:
                        save(step, last_eval)
                    if stopped_early:
                        run_logger.message(f"early stopping at step {step}: no better {stopper.metric} in "
                                           f"{stopper.patience} evaluations (best {stopper.best_value:.4f} "
                                           f"at step {stopper.best_step})")
                        break
                if config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0 and not is_last:
                    flush_train_metrics(step)  # Never checkpoint parameters from a NaN loss.
                    save(step, last_eval if step % eval_every == 0 else None)
                if signals.received is not None:
                    save(step)
                    checkpointer.wait()
                    raise TrainingInterrupted(
                        f"signal {signals.received} at step {step}; checkpoint saved in {checkpointer.directory}"
                    )
    finally:
        run_logger.close()
        checkpointer.wait()

    if not last_eval:  # Resumed a finished run: evaluate what was restored.
        last_eval = run_evaluations(step)
    best_checkpoint_step = checkpointer.best_step()
    checkpointer.close()
    return LoopOutcome(state, step, last_eval, stopped_early, best_checkpoint_step)


def base_results(experiment: Experiment, outcome: LoopOutcome, workdir: str, start_time: float) -> dict:
    """The `results.json` entries every trainer writes (plots the learning curves too)."""
    config = experiment.config
    return {
        "config": config.name,
        "model": config.model,
        "dataset": config.dataset.name,
        "num_steps": outcome.step,
        "num_devices": experiment.mesh.size,
        # Bitwise reproducibility holds for the same devices and XLA flags (e.g. cpu_parallelism) on
        # the same processor and jaxlib: XLA picks kernels by vector ISA (training/machine.py).
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "machine": machine.describe_machine(),
        "wall_time_seconds": time.perf_counter() - start_time,
        "params_fingerprint": fingerprint.params_fingerprint(outcome.state.params),
        "parameter_count": parameter_count(outcome.state.params),
        "best_checkpoint_step": outcome.best_checkpoint_step,
        "stopped_early": outcome.stopped_early,
        "learning_curves": logging_lib.plot_learning_curves(workdir),
        **outcome.last_eval,
    }
