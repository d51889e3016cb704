"""Segmentation metrics: confusion matrix vs np.bincount, scores vs hand values, jit equals eager."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.metrics import segmentation


def numpy_confusion(labels, predictions, num_classes, ignore_label=None, valid=None):
    labels = np.asarray(labels).ravel()
    predictions = np.asarray(predictions).ravel()
    keep = (labels >= 0) & (labels < num_classes) & (predictions >= 0) & (predictions < num_classes)
    if ignore_label is not None:
        keep &= labels != ignore_label
    if valid is not None:
        keep &= np.asarray(valid).ravel()
    counts = np.bincount(labels[keep] * num_classes + predictions[keep], minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)


def test_confusion_matrix_matches_bincount():
    num_classes = 5
    rng = np.random.default_rng(0)
    labels = rng.integers(0, num_classes, size=(2, 6, 7)).astype(np.int32)
    labels[0, :2] = 255  # void border
    predictions = rng.integers(0, num_classes, size=(2, 6, 7)).astype(np.int32)
    valid = rng.uniform(size=(2, 6, 7)) < 0.8
    got = segmentation.confusion_matrix(labels, predictions, num_classes, ignore_label=255, valid=valid)
    assert got.dtype == jnp.int32 and got.shape == (num_classes, num_classes)
    np.testing.assert_array_equal(got, numpy_confusion(labels, predictions, num_classes, 255, valid))
    jitted = jax.jit(segmentation.confusion_matrix, static_argnums=2, static_argnames="ignore_label")
    np.testing.assert_array_equal(jitted(labels, predictions, num_classes, ignore_label=255, valid=valid), got)
    # A sum: two halves add up to the whole.
    halves = sum(jitted(labels[i], predictions[i], num_classes, ignore_label=255, valid=valid[i]) for i in range(2))
    np.testing.assert_array_equal(halves, got)


def test_scores_hand_computed():
    # Rows are ground truth, columns predictions. Class 2 appears in neither.
    matrix = np.array([[3, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert segmentation.pixel_accuracy(matrix) == pytest.approx(5 / 7)
    # Recall: class 0 3/4, class 1 2/2, class 3 0/1; class 2 absent from ground truth.
    np.testing.assert_allclose(segmentation.per_class_accuracy(matrix), [0.75, 1.0, np.nan, 0.0])
    assert segmentation.mean_class_accuracy(matrix) == pytest.approx((0.75 + 1 + 0) / 3)
    # IoU: class 0 3/(4+4-3)=3/5, class 1 2/(2+3-2)=2/3, class 2 absent from both (NaN), class 3 0/1.
    np.testing.assert_allclose(segmentation.per_class_iou(matrix), [0.6, 2 / 3, np.nan, 0.0])
    assert segmentation.mean_iou(matrix) == pytest.approx((0.6 + 2 / 3 + 0) / 3)
    accuracies, mean = segmentation.voc_segmentation_accuracy(matrix)
    np.testing.assert_allclose(accuracies, 100 * segmentation.per_class_iou(matrix))
    assert mean == pytest.approx(100 * segmentation.mean_iou(matrix))
    assert segmentation.segmentation_scores(matrix)["mean_iou"] == pytest.approx((0.6 + 2 / 3) / 3)


def test_class_predicted_but_absent_counts_as_zero():
    matrix = np.array([[5, 1], [0, 0]])  # class 1 never in the ground truth, predicted once
    np.testing.assert_allclose(segmentation.per_class_iou(matrix), [5 / 6, 0.0])
    assert np.isnan(segmentation.per_class_accuracy(matrix)[1])


def test_input_checks():
    with pytest.raises(ValueError, match="same shape"):
        segmentation.confusion_matrix(jnp.zeros((2, 3), jnp.int32), jnp.zeros((3, 2), jnp.int32), 3)
    with pytest.raises(TypeError, match="predictions must be integer"):
        segmentation.confusion_matrix(jnp.zeros((2, 3), jnp.int32), jnp.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match="num_classes"):
        segmentation.confusion_matrix(jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32), 0)
    with pytest.raises(ValueError, match=r"\[C, C\]"):
        segmentation.mean_iou(np.zeros((2, 3)))
