"""Semantic-segmentation metrics: a jit-able confusion matrix, and the scores read from it on the host.

Accumulate `confusion_matrix` per batch (it is a sum, so padded pixels and partial batches count
right), add the batches up on the host in int64, then read the scores once at the end:

    total = np.zeros((C, C), np.int64)
    for batch in data:
        total += np.asarray(jitted_confusion_matrix(batch["label"], predictions), np.int64)
    scores = segmentation_scores(total)

Convention: rows are ground truth, columns predictions (`cm[i, j]` = pixels of class i predicted as
j), as torchvision's segmentation reference and the VOC devkit (`VOCevalseg.m`).

- pixel accuracy = trace / total;
- mean class accuracy = mean over classes of TP / (TP + FN), over classes present in the ground
  truth (a class never in the ground truth has no accuracy, 0/0);
- IoU of class c = TP / (TP + FP + FN); mean IoU averages over classes present in the ground truth
  or in the predictions. A class absent from both is 0/0 and left out; a class predicted but never
  in the ground truth has IoU 0 and counts.
- the VOC "segmentation accuracy" n / (n + e) of the course and the devkit is, per class, the
  correctly labelled pixels n = TP over themselves plus the errors e = FP + FN: the same number as
  the IoU, reported in percent. (The devkit averages over all classes, a class absent from both
  giving NaN; the VOC test set has every class, and here such a class is left out, as in mean IoU.)
Sources: Long et al., FCN (CVPR 2015) section 5 for the first three; Everingham et al., IJCV 2010.
"""

import jax.numpy as jnp
import numpy as np

from jaxvision.types import Array


def confusion_matrix(
    labels: Array, predictions: Array, num_classes: int, *, ignore_label: int | None = None, valid: Array | None = None
) -> Array:
    """`int32[C, C]` counts of (ground truth, predicted) class pairs, jit-able.

    Args:
      labels: `int[...]` ground-truth classes, e.g. `[B, H, W]`.
      predictions: `int[...]` predicted classes (argmax of the logits), same shape as `labels`.
      num_classes: C, static.
      ignore_label: pixels with this label (e.g. VOC's 255 "void" border) are not counted. Labels
        outside [0, C) are never counted either, nor predictions outside [0, C).
      valid: optional `bool[...]` mask (padding), same shape as `labels`.

    int32 holds 2^31 pixels per cell: sum batches on the host in int64.
    """
    labels = jnp.asarray(labels)
    predictions = jnp.asarray(predictions)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if labels.shape != predictions.shape:
        raise ValueError(f"labels and predictions must have the same shape, got {labels.shape} and {predictions.shape}")
    for name, array in (("labels", labels), ("predictions", predictions)):
        if not jnp.issubdtype(array.dtype, jnp.integer):
            raise TypeError(f"{name} must be integer class indices, got {array.dtype}")
    keep = (labels >= 0) & (labels < num_classes) & (predictions >= 0) & (predictions < num_classes)
    if ignore_label is not None:
        keep &= labels != ignore_label
    if valid is not None:
        valid = jnp.asarray(valid)
        if valid.shape != labels.shape:
            raise ValueError(f"valid must have the shape of labels {labels.shape}, got {valid.shape}")
        keep &= valid.astype(bool)
    index = jnp.where(keep, labels.astype(jnp.int32) * num_classes + predictions.astype(jnp.int32), 0)
    counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[index.reshape(-1)].add(keep.reshape(-1).astype(jnp.int32))
    return counts.reshape(num_classes, num_classes)


def _check_matrix(matrix) -> np.ndarray:
    matrix = np.asarray(matrix, np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion matrix must have shape [C, C], got {matrix.shape}")
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (undefined, left out of means)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _mean_defined(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def pixel_accuracy(matrix) -> float:
    """Correct pixels / counted pixels (NaN for an empty matrix)."""
    matrix = _check_matrix(matrix)
    return float(_ratio(np.trace(matrix), matrix.sum()))


def per_class_accuracy(matrix) -> np.ndarray:
    """`float64[C]` recall TP / (TP + FN) of each class; NaN for classes absent from the ground truth."""
    matrix = _check_matrix(matrix)
    return _ratio(np.diag(matrix), matrix.sum(axis=1))


def mean_class_accuracy(matrix) -> float:
    """Mean of `per_class_accuracy` over classes present in the ground truth."""
    return _mean_defined(per_class_accuracy(matrix))


def per_class_iou(matrix) -> np.ndarray:
    """`float64[C]` TP / (TP + FP + FN); NaN for classes absent from both ground truth and predictions."""
    matrix = _check_matrix(matrix)
    true_positives = np.diag(matrix)
    return _ratio(true_positives, matrix.sum(axis=1) + matrix.sum(axis=0) - true_positives)


def mean_iou(matrix) -> float:
    """Mean of `per_class_iou` over classes present in the ground truth or the predictions."""
    return _mean_defined(per_class_iou(matrix))


def voc_segmentation_accuracy(matrix) -> tuple[np.ndarray, float]:
    """VOC "segmentation accuracy" in percent: per class 100 n / (n + e) with n = TP and
    e = FP + FN (`float64[C]`, i.e. 100 x IoU), and its mean over classes with a defined value."""
    accuracies = 100.0 * per_class_iou(matrix)
    return accuracies, _mean_defined(accuracies)


def segmentation_scores(matrix) -> dict[str, float]:
    """All the scalar scores of a confusion matrix: pixel_accuracy, mean_class_accuracy, mean_iou."""
    return {
        "pixel_accuracy": pixel_accuracy(matrix),
        "mean_class_accuracy": mean_class_accuracy(matrix),
        "mean_iou": mean_iou(matrix),
    }
