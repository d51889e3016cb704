"""jaxvision.ops.matching: torchvision Matcher semantics, padded ground truth, balanced sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference  # tests/reference.py (tests/ is on sys.path through conftest.py)
from jaxvision.ops.matching import IGNORE, NEGATIVE, POSITIVE, match_boxes, sample_balanced, sample_balanced_masks


@pytest.mark.parametrize("allow_low_quality_matches", [False, True])
def test_matcher_matches_loop(allow_low_quality_matches):
    rng = np.random.default_rng(0)
    quality = np.round(rng.uniform(0, 1, (4, 30)), 1).astype(np.float32)  # many ties and exact thresholds
    quality[2] = np.minimum(quality[2], 0.2)  # a ground truth with only low-quality matches
    matched, labels = match_boxes(quality, high_threshold=0.7, low_threshold=0.3,
                                  allow_low_quality_matches=allow_low_quality_matches)
    exp_matched, exp_labels = reference.match_boxes(quality, 0.7, 0.3, allow_low_quality_matches)
    np.testing.assert_array_equal(matched, exp_matched)
    np.testing.assert_array_equal(labels, exp_labels)


def test_thresholds_are_inclusive_high_exclusive_low():
    quality = np.array([[0.7, 0.3, 0.29999998, 0.5]], np.float32)
    _, labels = match_boxes(quality, high_threshold=0.7, low_threshold=0.3)
    np.testing.assert_array_equal(labels, [POSITIVE, IGNORE, NEGATIVE, IGNORE])


def test_padded_and_missing_ground_truth():
    quality = np.array([[0.9, 0.1], [0.95, 0.8]], np.float32)
    matched, labels = match_boxes(quality, high_threshold=0.5, low_threshold=0.5,
                                  gt_valid=np.array([True, False]))
    np.testing.assert_array_equal(matched, [0, 0])  # the padded row (0.95, 0.8) is never used
    np.testing.assert_array_equal(labels, [POSITIVE, NEGATIVE])
    _, labels = match_boxes(quality, high_threshold=0.5, low_threshold=0.5, allow_low_quality_matches=True,
                            gt_valid=np.zeros(2, bool))
    np.testing.assert_array_equal(labels, [NEGATIVE, NEGATIVE])
    matched, labels = match_boxes(np.zeros((0, 3), np.float32), high_threshold=0.5, low_threshold=0.4)
    np.testing.assert_array_equal(labels, [NEGATIVE] * 3)
    # jit with padding equals the unpadded call
    jitted = jax.jit(lambda q, v: match_boxes(q, high_threshold=0.5, low_threshold=0.5,
                                              allow_low_quality_matches=True, gt_valid=v))
    padded = np.concatenate([quality[:1], np.full((3, 2), 0.99, np.float32)])
    got = jitted(padded, np.array([True, False, False, False]))
    want = match_boxes(quality[:1], high_threshold=0.5, low_threshold=0.5, allow_low_quality_matches=True)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


def test_balanced_sampler_counts_and_randomness(key):
    labels = jnp.array([1] * 5 + [0] * 20 + [-1] * 5)
    pos, neg = jax.jit(lambda k, l: sample_balanced_masks(k, l, num_samples=8, positive_fraction=0.25))(key, labels)
    assert int(pos.sum()) == 2 and int(neg.sum()) == 6
    assert bool(jnp.all(labels[pos] == 1)) and bool(jnp.all(labels[neg] == 0))
    other, _ = sample_balanced_masks(jax.random.key(1), labels, num_samples=8, positive_fraction=0.25)
    draws = [sample_balanced_masks(jax.random.key(s), labels, num_samples=8, positive_fraction=0.25)[0]
             for s in range(20)]
    assert len({tuple(np.flatnonzero(d)) for d in draws}) > 1  # different keys, different subsets
    # few positives: the rest are negatives; few candidates: padding
    pos, neg = sample_balanced_masks(key, jnp.array([1, 0, 0, 0, -1]), num_samples=4, positive_fraction=0.5)
    assert int(pos.sum()) == 1 and int(neg.sum()) == 3
    indices, is_positive, valid = sample_balanced(key, jnp.array([0, 1, -1]), num_samples=4, positive_fraction=0.5)
    np.testing.assert_array_equal(valid, [True, True, False, False])
    np.testing.assert_array_equal(indices, [1, 0, 0, 0])
    np.testing.assert_array_equal(is_positive, [True, False, False, False])


def test_input_checks():
    with pytest.raises(ValueError, match="match_quality"):
        match_boxes(np.zeros(3), high_threshold=0.5, low_threshold=0.4)
    with pytest.raises(ValueError, match="low_threshold"):
        match_boxes(np.zeros((2, 3)), high_threshold=0.4, low_threshold=0.5)
    with pytest.raises(ValueError, match="gt_valid"):
        match_boxes(np.zeros((2, 3)), high_threshold=0.5, low_threshold=0.4, gt_valid=np.ones(3, bool))
    with pytest.raises(ValueError, match="positive_fraction"):
        sample_balanced_masks(jax.random.key(0), jnp.zeros(3), num_samples=2, positive_fraction=2.0)
