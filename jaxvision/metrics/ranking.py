"""Threshold-free classification scores on the host, in numpy: balanced error rate, ROC curve, AUC.

These need every score of the evaluation set at once (a ranking), so they are not sum/count
accumulators; collect the scores on the host, then call them once.

`roc_curve` follows `sklearn.metrics.roc_curve(..., drop_intermediate=False)`: one point per
distinct score, thresholds in decreasing order starting at +inf (the point (0, 0)), a sample counted
positive when its score >= the threshold. Source: Fawcett, "An introduction to ROC analysis",
Pattern Recognition Letters 2006.
"""

import numpy as np


def _check_pair(labels, values, values_name: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    values = np.asarray(values)
    if labels.ndim != 1 or labels.shape != values.shape:
        raise ValueError(f"labels and {values_name} must have the same shape [N], got {labels.shape} and {values.shape}")
    if labels.size == 0:
        raise ValueError("labels must not be empty")
    return labels, values


def balanced_error_rate(labels, predictions) -> float:
    """1 - mean over classes of the per-class recall, over the classes present in `labels`.

    For two classes this is (false negative rate + false positive rate) / 2, the BER of the
    course: the error rate a classifier would have on a class-balanced test set.

    Args:
      labels: `int[N]` true classes; predictions: `int[N]` predicted classes.
    """
    labels, predictions = _check_pair(labels, predictions, "predictions")
    recalls = [np.mean(predictions[labels == c] == c) for c in np.unique(labels)]
    return float(1.0 - np.mean(recalls))


def roc_curve(labels, scores, *, pos_label=1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic, as `sklearn.metrics.roc_curve(drop_intermediate=False)`.

    Args:
      labels: `[N]` true labels; a sample is positive where `labels == pos_label`.
      scores: `float[N]` higher means more positive (probabilities, logits, margins).
    Returns:
      `(fpr, tpr, thresholds)`, each `float64[K + 1]` for K distinct scores: thresholds decreasing,
      `thresholds[0] = inf` (nothing predicted positive), `fpr[i]`/`tpr[i]` the rates when samples
      with `score >= thresholds[i]` are called positive.
    Raises ValueError when labels hold no positive or no negative (the rates are 0/0; sklearn warns
    and returns NaN).
    """
    labels, scores = _check_pair(labels, scores, "scores")
    scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores must not contain NaN")
    positive = labels == pos_label
    num_positive = int(positive.sum())
    if num_positive == 0 or num_positive == positive.size:
        raise ValueError(f"labels must hold both positives (== {pos_label!r}) and negatives, got {num_positive} of {positive.size}")
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, positive = scores[order], positive[order]
    # The last sample of each run of equal scores: the curve moves once per distinct score.
    last_of_run = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    true_positives = np.cumsum(positive, dtype=np.float64)[last_of_run]
    false_positives = 1 + last_of_run - true_positives
    fpr = np.r_[0.0, false_positives] / false_positives[-1]
    tpr = np.r_[0.0, true_positives] / true_positives[-1]
    return fpr, tpr, np.r_[np.inf, scores[last_of_run]]


def auc(x, y) -> float:
    """Area under a curve by the trapezoidal rule; `x` must be monotonic (either direction),
    as `sklearn.metrics.auc`."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise ValueError(f"x and y must have the same shape [K] with K >= 2, got {x.shape} and {y.shape}")
    dx = np.diff(x)
    if np.all(dx >= 0):
        direction = 1.0
    elif np.all(dx <= 0):
        direction = -1.0
    else:
        raise ValueError("x must be monotonic (increasing or decreasing)")
    return float(direction * np.sum(dx * (y[1:] + y[:-1]) / 2))


def roc_auc(labels, scores, *, pos_label=1) -> float:
    """Area under the ROC curve (`sklearn.metrics.roc_auc_score` for binary labels): the
    probability that a random positive scores above a random negative, ties counting 1/2."""
    fpr, tpr, _ = roc_curve(labels, scores, pos_label=pos_label)
    return auc(fpr, tpr)
