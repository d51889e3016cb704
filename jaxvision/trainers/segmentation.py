"""Semantic segmentation: the train step, evaluation from a confusion matrix, `train_and_evaluate`.

    results = train_and_evaluate(config, workdir)      # config from training/segmentation_config.py

The loss is the per-pixel softmax cross-entropy averaged over the pixels that are not the data
set's ignore label (FCN, Long et al. 2015), plus `config.dice_weight` times the soft Dice loss
averaged over classes (Milletari et al. 2016) when it is > 0. Metrics come from one confusion
matrix summed over the test split (`jaxvision.metrics.segmentation`): "accuracy" (pixel accuracy),
"mean_class_accuracy", "mean_iou" and "voc_segmentation_accuracy" (percent).

Checkpoints, resumption, early stopping, SIGTERM and NaN handling and determinism are the
classification trainer's: both run `jaxvision.training.loop.run_training` (key discipline:
`fold_in(train_key, step)`; the data order comes from the grain pipeline seeded with `config.seed`). At the end,
`overlays.png` in the workdir shows `config.num_overlays` test images with their ground truth
and predicted maps, colour coded.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import losses
from jaxvision.data import holdout
from jaxvision.data import segmentation as seg_data
from jaxvision.metrics import segmentation as seg_metrics
from jaxvision.models.segmentation import create_segmentation_model
from jaxvision.training import loop, optimizers, sharding
from jaxvision.training.loop import Experiment, write_json
from jaxvision.training.state import TrainState


def check_batch(batch: dict, *, image_shape: tuple[int, ...], num_classes: int, ignore_label: int) -> None:
    """Host-side checks of a numpy batch: image rank/shape/dtype, map shape/dtype/values.

    Raises:
      ValueError/TypeError naming the entry and what arrived.
    """
    images, labels = batch["image"], batch["segmentation"]
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"batch['image'] must have shape [B, {', '.join(map(str, image_shape))}], got {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"batch['image'] must be floating point (normalized), got {images.dtype}")
    if labels.shape != images.shape[:3]:
        raise ValueError(f"batch['segmentation'] must have shape {images.shape[:3]}, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"batch['segmentation'] must be integers, got {labels.dtype}")
    bad = (labels < 0) | ((labels >= num_classes) & (labels != ignore_label))
    if bad.any():
        raise ValueError(
            f"batch['segmentation'] must be in [0, {num_classes}) or the ignore label {ignore_label}, "
            f"got {np.unique(labels[bad])[:10]}"
        )


def _check_traced_shapes(images, labels) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must have shape [B, H, W, C], got {images.shape}")
    if labels.shape != images.shape[:3]:
        raise ValueError(f"segmentation must have shape {images.shape[:3]}, got {labels.shape}")


def pixel_losses(logits, labels, *, ignore_label: int, label_smoothing: float = 0.0):
    """`(cross_entropy float32[B, H, W], valid bool[B, H, W])`: 0 and False on ignored pixels."""
    valid = labels != ignore_label
    per_pixel = losses.softmax_cross_entropy(logits, labels, label_smoothing=label_smoothing, ignore_index=ignore_label)
    return per_pixel, valid


def mean_dice_loss(logits, labels, valid):
    """Soft Dice loss of each class over the whole batch, averaged over classes (scalar)."""
    num_classes = logits.shape[-1]
    probabilities = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).reshape(-1, num_classes).T  # [K, BHW]
    targets = jax.nn.one_hot(jnp.where(valid, labels, 0), num_classes).reshape(-1, num_classes).T  # [K, BHW]
    mask = jnp.broadcast_to(valid.reshape(1, -1), targets.shape)
    return jnp.mean(losses.dice_loss(probabilities, targets, mask=mask))


def make_train_step(config, *, ignore_label: int):
    """`train_step(state, batch, train_key) -> (state, metrics)`, to be jitted with state donated.

    `metrics` holds `(sum, count)` pairs: "loss" (the objective, per step), "cross_entropy" and
    "accuracy" (per non-ignored pixel).
    """
    label_smoothing = float(config.label_smoothing)
    dice_weight = float(config.dice_weight)
    l2_strength = float(config.optimizer.l2_regularization)
    ema_decay = float(config.ema_decay)

    def train_step(state: TrainState, batch: dict, train_key):
        images, labels = batch["image"], batch["segmentation"]
        _check_traced_shapes(images, labels)
        dropout_key, drop_path_key = jax.random.split(jax.random.fold_in(train_key, state.step))

        def loss_fn(params):
            (logits, _), updates = state.apply_fn(
                {"params": params, "batch_stats": state.batch_stats}, images, train=True,
                rngs={"dropout": dropout_key, "drop_path": drop_path_key}, mutable=["batch_stats"],
            )
            per_pixel, valid = pixel_losses(logits, labels, ignore_label=ignore_label, label_smoothing=label_smoothing)
            num_valid = jnp.maximum(jnp.sum(valid), 1)
            loss = jnp.sum(per_pixel) / num_valid
            if dice_weight > 0:
                loss = loss + dice_weight * mean_dice_loss(logits, labels, valid)
            if l2_strength > 0:
                loss = loss + l2_strength * optimizers.l2_penalty(params)
            return loss, (logits, per_pixel, valid, updates)

        (loss, (logits, per_pixel, valid, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state = state.apply_gradients(
            grads, batch_stats=updates.get("batch_stats", state.batch_stats), ema_decay=ema_decay
        )
        num_valid = jnp.sum(valid).astype(jnp.float32)
        correct = jnp.sum((jnp.argmax(logits, axis=-1) == labels) & valid).astype(jnp.float32)
        metrics = {
            "loss": (loss, jnp.ones((), jnp.float32)),
            "cross_entropy": (jnp.sum(per_pixel), num_valid),
            "accuracy": (correct, num_valid),
        }
        return new_state, metrics

    return train_step


def make_eval_step(*, num_classes: int, ignore_label: int):
    """`eval_step(apply_fn, params, batch_stats, batch) -> {"confusion": int32[K, K], "cross_entropy": (sum, count)}`
    over the real (unpadded) images of the batch."""

    def eval_step(apply_fn, params, batch_stats, batch):
        images, labels = batch["image"], batch["segmentation"]
        _check_traced_shapes(images, labels)
        logits, _ = apply_fn({"params": params, "batch_stats": batch_stats}, images, train=False)
        per_pixel, valid = pixel_losses(logits, labels, ignore_label=ignore_label)
        if "mask" in batch:
            valid = valid & batch["mask"][:, None, None]
        predictions = jnp.argmax(logits, axis=-1)
        confusion = seg_metrics.confusion_matrix(labels, predictions, num_classes, ignore_label=ignore_label, valid=valid)
        return {"confusion": confusion, "cross_entropy": (jnp.sum(per_pixel * valid), jnp.sum(valid).astype(jnp.float32))}

    return eval_step


def scores_from_confusion(confusion: np.ndarray, cross_entropy: tuple[float, float] | None = None) -> dict[str, float]:
    """The scalar metrics of a summed confusion matrix (rows ground truth, columns predictions)."""
    scores = seg_metrics.segmentation_scores(confusion)
    metrics = {
        "accuracy": scores["pixel_accuracy"],
        "mean_class_accuracy": scores["mean_class_accuracy"],
        "mean_iou": scores["mean_iou"],
        "voc_segmentation_accuracy": seg_metrics.voc_segmentation_accuracy(confusion)[1],
    }
    if cross_entropy is not None:
        metrics["loss"] = float(cross_entropy[0] / max(cross_entropy[1], 1e-12))
    return metrics


def _validate_config(config) -> None:
    if config.task != "segmentation":
        raise ValueError(f"config.task must be 'segmentation' for this trainer, got {config.task!r}")
    loop.validate_config(config)
    if config.dice_weight < 0:
        raise ValueError(f"config.dice_weight must be >= 0, got {config.dice_weight}")


def _load_source(config, split: str):
    return seg_data.load_segmentation_source(
        config.dataset.name, split, data_dir=config.dataset.data_dir or None, download=config.dataset.download
    )


def training_sources(config, spec):
    """(training source, held-out validation source or None): `config.dataset.validation_fraction`."""
    return holdout.split_source(_load_source(config, spec.train_split), loop.validation_fraction(config))


def build_experiment(config) -> Experiment:
    """Data spec, model, optimizer and the replicated initial state for `config`."""
    _validate_config(config)
    spec = seg_data.get_segmentation_spec(config.dataset.name)
    return loop.build_experiment(
        config, spec=spec, create_model=create_segmentation_model, train_size=len(training_sources(config, spec)[0]),
        mean=np.asarray(spec.mean, np.float32), std=np.asarray(spec.std, np.float32),
    )


def _eval_iterator(experiment: Experiment, max_examples: int | None = None, split: str = "test"):
    config = experiment.config
    max_examples = config.num_eval_examples if max_examples is None else max_examples
    batch_size = -(-config.eval_batch_size // experiment.mesh.size) * experiment.mesh.size
    source = loop.evaluation_source(
        split, load_test=lambda: _load_source(config, experiment.spec.test_split),
        load_training=lambda: training_sources(config, experiment.spec),
    )
    return seg_data.make_eval_iterator(
        source, global_batch_size=batch_size, mean=experiment.mean,
        std=experiment.std, process_index=jax.process_index(), process_count=jax.process_count(),
        max_examples=max_examples,
    )


def evaluate(experiment: Experiment, state: TrainState, *, split: str = "test", use_ema: bool = False, eval_fn=None,
             return_confusion: bool = False):
    """Metrics of `state` (or its EMA parameters) over `split`, "test" or the held-out "validation"
    (its first `config.num_eval_examples` when > 0; see module doc)."""
    spec = experiment.spec
    eval_fn = eval_fn or jax.jit(make_eval_step(num_classes=spec.num_classes, ignore_label=spec.ignore_label),
                                 static_argnums=0)
    params = state.ema_params if use_ema else state.params
    confusion = np.zeros((spec.num_classes, spec.num_classes), np.int64)
    cross_entropy = np.zeros(2, np.float64)
    for batch in _eval_iterator(experiment, split=split):
        batch = {k: v for k, v in batch.items() if k in ("image", "segmentation", "mask")}
        out = jax.device_get(eval_fn(state.apply_fn, params, state.batch_stats, sharding.shard_batch(batch, experiment.mesh)))
        confusion += np.asarray(out["confusion"], np.int64)
        cross_entropy += np.asarray(out["cross_entropy"], np.float64)
    metrics = scores_from_confusion(confusion, tuple(cross_entropy))
    return (metrics, confusion) if return_confusion else metrics


def color_palette(num_classes: int, ignore_label: int = seg_data.IGNORE_LABEL) -> np.ndarray:
    """`uint8[256, 3]` colours: the Pascal VOC bit-interleaved palette (black background), white
    for the ignore label."""
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        value, color = index, np.zeros(3, np.int64)
        for shift in range(8):
            for channel in range(3):
                color[channel] |= ((value >> channel) & 1) << (7 - shift)
            value >>= 3
        palette[index] = color
    palette[ignore_label] = 255
    del num_classes  # The palette is fixed so colours mean the same class across data sets.
    return palette


def overlay_classes(pixels: np.ndarray, class_map: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """`uint8[..., H, W, 3]`: each labelled pixel of `class_map` (`int[..., H, W]`) blended 60% with
    its `palette` colour over `pixels` (`uint8[..., H, W, 3]`); background (class 0) stays the image."""
    labelled = (class_map != 0)[..., None]
    return np.where(labelled, (0.4 * pixels + 0.6 * palette[class_map]).astype(np.uint8), pixels)


def save_overlays(experiment: Experiment, state: TrainState, path: str, num_images: int) -> str | None:
    """Write a PNG grid: per test image, the image, the ground truth map over it, the prediction over it."""
    if num_images <= 0 or jax.process_index() != 0:
        return None
    from PIL import Image

    batch = next(_eval_iterator(experiment, max_examples=num_images))
    images = batch["image"][:num_images]
    logits, _ = jax.jit(state.apply_fn, static_argnames="train")(state.variables, images, train=False)
    predictions = np.asarray(jnp.argmax(logits, axis=-1))
    palette = color_palette(experiment.spec.num_classes, experiment.spec.ignore_label)
    pixels = np.clip(images * experiment.std + experiment.mean, 0.0, 1.0)  # [n, H, W, C]
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    pixels = (pixels * 255).astype(np.uint8)
    rows = [np.concatenate(list(panel), axis=1)
            for panel in (pixels, overlay_classes(pixels, batch["segmentation"][:num_images], palette),
                          overlay_classes(pixels, predictions, palette))]
    grid = np.concatenate(rows, axis=0)  # [3 H, n W, 3]: image / ground truth / prediction
    scale = max(1, 256 // images.shape[1])
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)
    return path


def train_and_evaluate(config, workdir: str, *, show_progress: bool = True) -> dict:
    """Train `config` in `workdir`, resuming from its newest valid checkpoint; return the results.

    Writes `config.json`, `metrics.jsonl`, TensorBoard events, `learning_curves.png`,
    `overlays.png`, checkpoints under `checkpoints/` and `results.json` (final test metrics,
    per-class IoU, steps, wall time, params_fingerprint).

    Raises:
      NonFiniteLossError: naming the first step whose loss was NaN/inf (earlier checkpoints stay).
      TrainingInterrupted: on SIGTERM/SIGINT, after saving a checkpoint of the current step.
    """
    start_time = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    experiment = build_experiment(config)
    spec = experiment.spec
    train_iterator = seg_data.make_train_iterator(
        training_sources(config, spec)[0], global_batch_size=config.batch_size, num_steps=experiment.num_steps,
        seed=config.seed, mean=experiment.mean, std=experiment.std, process_index=jax.process_index(),
        process_count=jax.process_count(), worker_count=config.dataset.worker_count,
    )
    train_step = jax.jit(make_train_step(config, ignore_label=spec.ignore_label), donate_argnums=0)
    eval_fn = jax.jit(make_eval_step(num_classes=spec.num_classes, ignore_label=spec.ignore_label), static_argnums=0)

    def prepare_batch(batch):
        check_batch(batch, image_shape=spec.image_shape, num_classes=spec.num_classes, ignore_label=spec.ignore_label)
        return {k: batch[k] for k in ("image", "segmentation")}

    last_confusion = {}

    def evaluate_keeping_confusion(experiment, state, *, split, use_ema=False, **kwargs):
        """`evaluate`, keeping the raw weights' confusion matrix of each split for the per-class IoU."""
        metrics, confusion = evaluate(experiment, state, split=split, use_ema=use_ema, return_confusion=True, **kwargs)
        if not use_ema:
            last_confusion[split] = confusion
        return metrics

    def evaluate_state(state):
        return loop.evaluate_splits(evaluate_keeping_confusion, experiment, state, eval_fn=eval_fn)

    outcome = loop.run_training(
        experiment, workdir, train_iterator=train_iterator, train_step=train_step, prepare_batch=prepare_batch,
        evaluate_state=evaluate_state, show_progress=show_progress,
    )
    results = {
        **loop.base_results(experiment, outcome, workdir, start_time),
        "overlays": save_overlays(experiment, outcome.state, os.path.join(workdir, "overlays.png"), config.num_overlays),
        "test_per_class_iou": [
            None if np.isnan(v) else float(v) for v in seg_metrics.per_class_iou(last_confusion["test"])
        ],
        "class_names": list(spec.class_names),
    }
    write_json(os.path.join(workdir, "results.json"), results)
    return results


def evaluate_workdir(workdir: str, *, step: int | None = None, use_best: bool = False) -> dict[str, float]:
    """Evaluate a trained workdir's checkpoint (latest, best, or `step`) on the test split."""
    experiment, state, restored_step = loop.restore_workdir(workdir, build_experiment, step=step, use_best=use_best)
    return {"step": restored_step, **loop.flatten_splits(loop.evaluate_splits(evaluate, experiment, state))}
