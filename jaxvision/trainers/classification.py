"""Image classification: the train step, the eval step and `train_and_evaluate`.

    results = train_and_evaluate(config, workdir)

reads as a list of named calls: data, model, optimizer and state (`loop.build_experiment`), the
train and eval steps, the shared loop (`loop.run_training`: restore, steps, logging, evaluation,
early stopping, checkpoints), results. Each piece is importable and tested alone.

Randomness: one root key from `config.seed`, split by purpose with `fold_in` (init, train); the
step key is `fold_in(train_key, state.step)`, so no RNG lives in the state and a resumed run draws
the same dropout masks. The data order comes from the grain pipeline seeded with `config.seed`.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision import models
from jaxvision.data import holdout, pipeline
from jaxvision.data import tfds as datasets
from jaxvision.metrics import classification as metrics_lib
from jaxvision.training import augmentation, dispatch, loop, optimizers, pretrained, sharding
from jaxvision.training.loop import (  # noqa: F401 (the errors are re-exported)
    Experiment,
    NonFiniteLossError,
    TrainingInterrupted,
    write_json,
)
from jaxvision.training.state import TrainState

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
    # The linear probe runs its frozen backbone in inference mode: BatchNorm on its running
    # statistics (left unchanged), dropout off (training/pretrained.py).
    train_mode = config.get("trainable", "all") != "classifier"
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
                train=train_mode,
                rngs={"dropout": dropout_key, "drop_path": drop_path_key},
                mutable=["batch_stats"],
            )
            per_example = cross_entropy(logits, labels, label_smoothing=label_smoothing, targets=targets)
            loss = jnp.mean(per_example)
            if l2_strength > 0:
                loss = loss + l2_strength * optimizers.l2_penalty(params)
            return loss, (logits, per_example, updates)

        (_, (logits, per_example, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state = state.apply_gradients(
            grads, batch_stats=updates.get("batch_stats", state.batch_stats), ema_decay=ema_decay
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


def build_experiment(config) -> Experiment:
    """Data statistics, model, optimizer and the replicated initial state for `config`."""
    loop.validate_config(config)
    pretrained.check_config(config)
    spec = datasets.get_dataset_spec(config.dataset.name)
    data_dir = config.dataset.data_dir or None
    mean, std = datasets.normalization_stats(config.dataset.name, data_dir=data_dir, download=config.dataset.download)
    train_size = len(training_sources(config, spec)[0])
    return loop.build_experiment(
        config, spec=spec, create_model=_model_constructor(config), train_size=train_size, mean=mean, std=std
    )


def _model_constructor(config):
    """`models.create_model`, or with `config.input_size` > 0 one whose models resize their input to
    that size first (`models.ResizeInput`; same variables as the plain model)."""
    # .get: workdirs written before the key existed have no input_size in config.json.
    size = config.get("input_size", 0)
    if size < 0:
        raise ValueError(f"config.input_size must be >= 0 (0: the data set's size), got {size}")
    if not size:
        return models.create_model
    return lambda name, **kwargs: models.ResizeInput(models.create_model(name, **kwargs), size=size)


def training_sources(config, spec):
    """(training source, held-out validation source or None) of `config`'s data set: the training
    split minus `config.dataset.validation_fraction` of it (`jaxvision.data.holdout`)."""
    source = datasets.load_data_source(config.dataset.name, spec.train_split, data_dir=config.dataset.data_dir or None)
    return holdout.split_source(source, loop.validation_fraction(config))


def evaluate(experiment: Experiment, state: TrainState, *, split: str = "test", use_ema: bool = False,
             eval_fn=None) -> dict[str, float]:
    """Metrics of `state` (or its EMA parameters) over the whole `split`: "test", or "validation"
    (the part of the training split held out by `config.dataset.validation_fraction`)."""
    config = experiment.config
    eval_fn = eval_fn or jax.jit(make_eval_step(), static_argnums=0)
    batch_size = -(-config.eval_batch_size // experiment.mesh.size) * experiment.mesh.size
    source = loop.evaluation_source(
        split,
        load_test=lambda: datasets.load_data_source(config.dataset.name, experiment.spec.test_split,
                                                    data_dir=config.dataset.data_dir or None),
        load_training=lambda: training_sources(config, experiment.spec),
    )
    iterator = pipeline.make_eval_iterator(
        source, global_batch_size=batch_size, mean=experiment.mean, std=experiment.std,
        process_index=jax.process_index(), process_count=jax.process_count(),
    )
    params = state.ema_params if use_ema else state.params
    total, window = None, dispatch.DispatchWindow()
    for batch in iterator:
        batch_metrics = eval_fn(state.apply_fn, params, state.batch_stats, sharding.shard_batch(batch, experiment.mesh))
        total = window.admit(metrics_lib.merge(total, batch_metrics))
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
    spec = experiment.spec
    source, _ = training_sources(config, spec)
    train_iterator = pipeline.make_train_iterator(
        source, global_batch_size=config.batch_size, num_steps=experiment.num_steps, seed=config.seed,
        mean=experiment.mean, std=experiment.std, process_index=jax.process_index(),
        process_count=jax.process_count(), worker_count=config.dataset.worker_count,
    )
    train_step = jax.jit(
        make_train_step(config, mean=experiment.mean, std=experiment.std, num_classes=spec.num_classes),
        donate_argnums=0,
    )
    eval_fn = jax.jit(make_eval_step(), static_argnums=0)

    def prepare_batch(batch):
        check_batch(batch, image_shape=spec.image_shape, num_classes=spec.num_classes)
        return batch

    outcome = loop.run_training(
        experiment, workdir, train_iterator=train_iterator, train_step=train_step, prepare_batch=prepare_batch,
        evaluate_state=lambda state: loop.evaluate_splits(evaluate, experiment, state, eval_fn=eval_fn),
        show_progress=show_progress,
        # Read only when there is no checkpoint to resume from.
        fresh_state=(lambda: pretrained.state_from_weights(experiment)) if config.get("init_from") else None,
    )
    results = loop.base_results(experiment, outcome, workdir, start_time)
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
    return {"step": restored_step, **loop.flatten_splits(loop.evaluate_splits(evaluate, experiment, state))}
