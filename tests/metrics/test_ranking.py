"""Balanced error rate, ROC curve and AUC against brute-force references, hand values and sklearn."""

import numpy as np
import pytest

import reference  # tests/reference.py (tests/ is on sys.path through conftest.py)
from jaxvision.metrics import ranking


def random_scores(seed, ties):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=60)
    scores = rng.normal(size=60) + labels
    return labels, np.round(scores, 1) if ties else scores


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_roc_curve_matches_brute_force(seed, ties):
    labels, scores = random_scores(seed, ties)
    fpr, tpr, thresholds = ranking.roc_curve(labels, scores)
    for got, want in zip((fpr, tpr, thresholds), reference.roc_points(labels, scores)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert ranking.roc_auc(labels, scores) == pytest.approx(reference.auc_by_pairs(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True)])
def test_roc_curve_matches_sklearn(seed, ties):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    labels, scores = random_scores(seed, ties)
    fpr, tpr, thresholds = ranking.roc_curve(labels, scores)
    expected = sklearn_metrics.roc_curve(labels, scores, drop_intermediate=False)
    for got, want in zip((fpr, tpr, thresholds), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert ranking.roc_auc(labels, scores) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert ranking.auc(fpr, tpr) == pytest.approx(sklearn_metrics.auc(fpr, tpr), abs=1e-12)


def test_pos_label_and_hand_values():
    labels = np.array(["cat", "dog", "dog", "cat"])
    scores = np.array([0.1, 0.8, 0.4, 0.4])
    fpr, tpr, thresholds = ranking.roc_curve(labels, scores, pos_label="dog")
    np.testing.assert_array_equal(thresholds, [np.inf, 0.8, 0.4, 0.1])
    np.testing.assert_array_equal(tpr, [0, 0.5, 1, 1])
    np.testing.assert_array_equal(fpr, [0, 0, 0.5, 1])
    # The positive at 0.4 ties with a negative: half a pair.
    assert ranking.roc_auc(labels, scores, pos_label="dog") == pytest.approx(0.875)
    assert ranking.auc(fpr[::-1], tpr[::-1]) == pytest.approx(0.875)


def test_balanced_error_rate():
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    predictions = np.array([0, 0, 0, 0, 0, 1, 1, 0])
    # FPR = 1/6, FNR = 1/2.
    assert ranking.balanced_error_rate(labels, predictions) == pytest.approx((1 / 6 + 1 / 2) / 2)
    # Three classes, recalls 1/2, 1, 0 (class 3 never occurs, so it does not count).
    labels = np.array([0, 0, 1, 2])
    predictions = np.array([0, 3, 1, 1])
    assert ranking.balanced_error_rate(labels, predictions) == pytest.approx(1 - (0.5 + 1 + 0) / 3)


def test_balanced_error_rate_matches_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=50)
    predictions = np.where(rng.uniform(size=50) < 0.7, labels, rng.integers(0, 4, size=50))
    expected = 1 - sklearn_metrics.balanced_accuracy_score(labels, predictions)
    assert ranking.balanced_error_rate(labels, predictions) == pytest.approx(expected)


def test_input_checks():
    with pytest.raises(ValueError, match="same shape"):
        ranking.roc_curve(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="both positives"):
        ranking.roc_curve(np.ones(3), np.arange(3.0))
    with pytest.raises(ValueError, match="NaN"):
        ranking.roc_curve(np.array([0, 1]), np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="monotonic"):
        ranking.auc([0, 1, 0.5], [0, 1, 1])
