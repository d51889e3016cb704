"""Image classification: the train step, the eval step and `train_and_evaluate`.

    results = train_and_evaluate(config, workdir)

reads as a list of named calls: data, model, optimizer, state, checkpoint restore, the loop
(steps, logging, evaluation, checkpoints), results. Each piece is importable and tested alone.

Randomness: one root key from `config.seed`, split by purpose with `fold_in` (init, train); the
step key is `fold_in(train_key, state.step)`, so no RNG lives in the state and a resumed run draws
the same dropout masks. The data order comes from the grain pipeline seeded with `config.seed`.
"""

import dataclasses
import json
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision import models
from jaxvision.data import pipeline
from jaxvision.data import tfds as datasets
from jaxvision.metrics import classification as metrics_lib
from jaxvision.training import augmentation
from jaxvision.training import early_stopping
from jaxvision.training import fingerprint, loop, optimizers, sharding
from jaxvision.training import logging as logging_lib
from jaxvision.training.loop import NonFiniteLossError, TrainingInterrupted, write_json  # noqa: F401 (errors re-exported)
from jaxvision.training.state import TrainState, create_train_state, parameter_count

logger = logging.getLogger(__name__)

INIT_PURPOSE, TRAIN_PURPOSE = 0, 1
AUGMENT_PURPOSE = 2  # folded into the step key


def check_batch(batch: dict, *, image_shape: tuple[int, ...], num_classes: int) -> None:
    """Host-side checks of a numpy batch before it goes to the devices.

    Raises:
      ValueError/TypeError naming the offending entry: wrong image rank, shape or dtype, labels
      that are not integers or fall outside `[0, num_classes)`.
    """
    images, labels = batch["image"], batch["label"]
    if images.ndim != 4:
        raise ValueError(f"batch['image'] must have shape [B, H, W, C], got {images.shape}")
    if tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"batch['image'] must have per-image shape {tuple(image_shape)}, got {images.shape[1:]}")
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"batch['image'] must be floating point (normalized), got {images.dtype}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"batch['label'] must have shape [{images.shape[0]}], got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"batch['label'] must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"batch['label'] must be in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]"
        )


def _check_traced_shapes(images, labels) -> None:
    # Static facts only, so it costs nothing under jit.
    if images.ndim != 4:
        raise ValueError(f"images must have shape [B, H, W, C], got {images.shape}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must have shape [{images.shape[0]}], got {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got {labels.dtype}")


def cross_entropy(logits, labels, *, label_smoothing: float = 0.0, targets=None):
    """Per-example softmax cross-entropy `float32[N]` with optional label smoothing (Szegedy 2016).

    `targets` (float32[N, K], e.g. mixup's soft labels) replaces the one-hot of `labels`.
    """
    if targets is None:
        targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    if label_smoothing > 0:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def make_train_step(config, *, mean=None, std=None, num_classes: int | None = None):
    """`train_step(state, batch, train_key) -> (state, metrics)`, to be jitted with state donated.

    Uses `config.label_smoothing`, `config.optimizer.l2_regularization`, `config.ema_decay` and
    `config.augment` (on-device augmentation; needs the normalization `mean`/`std` and
    `num_classes`). `metrics` is a dict of `(sum, count)` pairs (`jaxvision.metrics.classification`);
    with mixup/CutMix, train accuracy is measured against each image's original label.
    """
    label_smoothing = float(config.label_smoothing)
    l2_strength = float(config.optimizer.l2_regularization)
    ema_decay = float(config.ema_decay)
    augment_batch = None
    if "augment" in config and augmentation.is_enabled(config.augment):
        if mean is None or std is None or num_classes is None:
            raise ValueError("config.augment is on: make_train_step needs mean, std and num_classes")
        augment_batch = augmentation.make_batch_augmentation(config.augment, mean=mean, std=std,
                                                             num_classes=num_classes)

    def train_step(state: TrainState, batch: dict, train_key):
        images, labels = batch["image"], batch["label"]
        _check_traced_shapes(images, labels)
        step_key = jax.random.fold_in(train_key, state.step)
        dropout_key, drop_path_key = jax.random.split(step_key)
        targets = None
        if augment_batch is not None:
            images, targets = augment_batch(jax.random.fold_in(step_key, AUGMENT_PURPOSE), images, labels)

        def loss_fn(params):
            (logits, _), updates = state.apply_fn(
                {"params": params, "batch_stats": state.batch_stats},
                images,
                train=True,
                rngs={"dropout": dropout_key, "drop_path": drop_path_key},
                mutable=["batch_stats"],
            )
            per_example = cross_entropy(logits, labels, label_smoothing=label_smoothing, targets=targets)
            loss = jnp.mean(per_example)
            if l2_strength > 0:
                loss = loss + l2_strength * optimizers.l2_penalty(params)
            return loss, (logits, per_example, updates)

        (_, (logits, per_example, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, param_updates)
        ema_params = state.ema_params
        if ema_params is not None:
            ema_params = optax.incremental_update(params, ema_params, step_size=1.0 - ema_decay)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            batch_stats=updates.get("batch_stats", state.batch_stats),
            opt_state=opt_state,
            ema_params=ema_params,
        )
        metrics = metrics_lib.classification_metrics(logits, labels, per_example)
        return new_state, metrics

    return train_step


def make_eval_step():
    """`eval_step(apply_fn, params, batch_stats, batch) -> metrics` with padding masked out."""

    def eval_step(apply_fn, params, batch_stats, batch):
        images, labels = batch["image"], batch["label"]
        _check_traced_shapes(images, labels)
        logits, _ = apply_fn({"params": params, "batch_stats": batch_stats}, images, train=False)
        per_example = cross_entropy(logits, labels)
        return metrics_lib.classification_metrics(logits, labels, per_example, batch.get("mask"))

    return eval_step


@dataclasses.dataclass
class Experiment:
    """Everything `train_and_evaluate` builds before the loop; also used by `evaluate_workdir`."""

    config: Any
    spec: datasets.DatasetSpec
    model: Any
    mesh: Any
    state: TrainState
    mean: np.ndarray
    std: np.ndarray
    steps_per_epoch: int
    num_steps: int
    train_key: Any


def _validate_config(config) -> None:
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


def build_experiment(config) -> Experiment:
    """Data statistics, model, optimizer and the replicated initial state for `config`."""
    _validate_config(config)
    spec = datasets.get_dataset_spec(config.dataset.name)
    data_dir = config.dataset.data_dir or None
    mean, std = datasets.normalization_stats(config.dataset.name, data_dir=data_dir, download=config.dataset.download)
    train_size = len(datasets.load_data_source(config.dataset.name, spec.train_split, data_dir=data_dir))
    mesh = sharding.make_mesh(config.num_devices)
    steps_per_epoch, num_steps = loop.count_steps(config, train_size, mesh.size)
    dtype = jnp.bfloat16 if config.mixed_precision else jnp.float32
    model = models.create_model(config.model, num_classes=spec.num_classes, dtype=dtype, **config.model_kwargs)
    schedule = optimizers.make_learning_rate_schedule(
        config, steps_per_epoch=steps_per_epoch, num_steps=num_steps, global_batch_size=config.batch_size
    )
    tx = optimizers.make_optimizer(config, schedule)
    root_key = jax.random.key(config.seed)
    init_key = jax.random.fold_in(root_key, INIT_PURPOSE)
    train_key = jax.random.fold_in(root_key, TRAIN_PURPOSE)
    create = jax.jit(
        lambda key: create_train_state(key, model, tx, spec.image_shape, use_ema=config.ema_decay > 0),
        out_shardings=sharding.replicated_sharding(mesh),
    )
    state = create(init_key)
    return Experiment(config, spec, model, mesh, state, mean, std, steps_per_epoch, num_steps, train_key)


def evaluate(experiment: Experiment, state: TrainState, *, use_ema: bool = False, eval_fn=None) -> dict[str, float]:
    """Metrics of `state` (or its EMA parameters) over the whole test split."""
    config = experiment.config
    eval_fn = eval_fn or jax.jit(make_eval_step(), static_argnums=0)
    batch_size = -(-config.eval_batch_size // experiment.mesh.size) * experiment.mesh.size
    source = datasets.load_data_source(config.dataset.name, experiment.spec.test_split, data_dir=config.dataset.data_dir or None)
    iterator = pipeline.make_eval_iterator(
        source, global_batch_size=batch_size, mean=experiment.mean, std=experiment.std,
        process_index=jax.process_index(), process_count=jax.process_count(),
    )
    params = state.ema_params if use_ema else state.params
    total = None
    for batch in iterator:
        total = metrics_lib.merge(total, eval_fn(state.apply_fn, params, state.batch_stats, sharding.shard_batch(batch, experiment.mesh)))
    return metrics_lib.finalize(total)


def train_and_evaluate(config, workdir: str, *, show_progress: bool = True) -> dict:
    """Train `config` in `workdir`, resuming from its newest valid checkpoint; return the results.

    Writes `config.json`, `metrics.jsonl`, TensorBoard events, `learning_curves.png`, checkpoints
    under `checkpoints/`, and `results.json` (final metrics, steps, wall time, params_fingerprint).

    Raises:
      NonFiniteLossError: naming the first step whose loss was NaN/inf (earlier checkpoints stay).
      TrainingInterrupted: on SIGTERM/SIGINT, after saving a checkpoint of the current step.
    """
    start_time = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    experiment = build_experiment(config)
    mesh = experiment.mesh
    checkpointer = loop.make_checkpointer(config, workdir)
    state = experiment.state
    restored = checkpointer.restore(loop.abstract_state(state))
    data_state = None
    if restored is not None:
        state, data_state, restored_step = restored
        logger.info("resumed from step %d in %s", restored_step, checkpointer.directory)

    source = datasets.load_data_source(config.dataset.name, experiment.spec.train_split, data_dir=config.dataset.data_dir or None)
    train_iterator = pipeline.make_train_iterator(
        source, global_batch_size=config.batch_size, num_steps=experiment.num_steps, seed=config.seed,
        mean=experiment.mean, std=experiment.std, process_index=jax.process_index(),
        process_count=jax.process_count(), worker_count=config.dataset.worker_count,
    )
    if data_state is not None:
        train_iterator.set_state(data_state)

    train_step = jax.jit(
        make_train_step(config, mean=experiment.mean, std=experiment.std, num_classes=experiment.spec.num_classes),
        donate_argnums=0,
    )
    eval_fn = jax.jit(make_eval_step(), static_argnums=0)
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
        results = {}
        test_metrics = evaluate(experiment, state, eval_fn=eval_fn)
        run_logger.write(current_step, "test", test_metrics)
        results.update({f"test_{k}": v for k, v in test_metrics.items()})
        if state.ema_params is not None:
            ema_metrics = evaluate(experiment, state, use_ema=True, eval_fn=eval_fn)
            run_logger.write(current_step, "test_ema", ema_metrics)
            results.update({f"test_ema_{k}": v for k, v in ema_metrics.items()})
        return results

    pending: list[dict] = []
    window_start, window_images = time.perf_counter(), 0
    eval_every = config.eval_every_steps or experiment.steps_per_epoch
    last_eval: dict[str, float] = {}
    stopper, stopped_early = None, False
    if config.early_stopping_patience > 0:
        stopper = early_stopping.EarlyStopping(config.checkpoint.best_metric, mode=config.checkpoint.best_mode,
                                               patience=config.early_stopping_patience)
        if restored is not None:
            best_step = checkpointer.best_step()
            best_value = (checkpointer.manager.metrics(best_step) or {}).get(stopper.metric) if best_step is not None else None
            stopper.resume(best_step=best_step, best_value=best_value, step=step, eval_every=eval_every)

    def flush_train_metrics(current_step):
        nonlocal window_start, window_images
        if not pending:
            return
        train_metrics, losses = loop.host_metrics(pending)
        loop.check_finite_losses(losses, current_step, checkpointer)
        elapsed = time.perf_counter() - window_start
        train_metrics["images_per_second"] = window_images / max(elapsed, 1e-9)
        run_logger.write(current_step, "train", train_metrics)
        run_logger.advance(len(pending), {k: train_metrics[k] for k in ("loss", "accuracy", "images_per_second")})
        pending.clear()
        window_start, window_images = time.perf_counter(), 0

    try:
        with loop.SignalCatcher() as signals:
            for batch in train_iterator:
                if step >= experiment.num_steps:
                    break
                check_batch(batch, image_shape=experiment.spec.image_shape, num_classes=experiment.spec.num_classes)
                state, metrics = train_step(state, sharding.shard_batch(batch, mesh), experiment.train_key)
                pending.append(metrics)
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
    plot_path = logging_lib.plot_learning_curves(workdir)
    results = {
        "config": config.name,
        "model": config.model,
        "dataset": config.dataset.name,
        "num_steps": step,
        "num_devices": mesh.size,
        "wall_time_seconds": time.perf_counter() - start_time,
        "params_fingerprint": fingerprint.params_fingerprint(state.params),
        "parameter_count": parameter_count(state.params),
        "best_checkpoint_step": best_checkpoint_step,
        "stopped_early": stopped_early,
        "learning_curves": plot_path,
        **last_eval,
    }
    write_json(os.path.join(workdir, "results.json"), results)
    return results


def restore_workdir(workdir: str, *, step: int | None = None, use_best: bool = False):
    """`(experiment, state, restored_step)` of a trained workdir's checkpoint (latest, best, or `step`).

    Reads `workdir/config.json` (JSON: nothing is executed) and the Orbax checkpoint.
    """
    return loop.restore_workdir(workdir, build_experiment, step=step, use_best=use_best)


def evaluate_workdir(workdir: str, *, step: int | None = None, use_best: bool = False) -> dict[str, float]:
    """Evaluate a trained workdir's checkpoint (latest, best, or `step`) on the test split."""
    experiment, state, restored_step = restore_workdir(workdir, step=step, use_best=use_best)
    return {"step": restored_step, **loop.evaluate_raw_and_ema(evaluate, experiment, state)}
