"""jaxvision.ops.nms: exact agreement with textbook greedy NMS, edge cases, batching, Soft-NMS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference  # tests/reference.py (tests/ is on sys.path through conftest.py)
from jaxvision.ops import boxes as B
from jaxvision.ops.nms import batched_nms, nms, soft_nms

# Small fixed shapes so every hypothesis example reuses one compiled function per threshold.
NUM_BOXES = 24
MAX_OUTPUTS = 16


def kept(indices, valid):
    return np.asarray(indices)[np.asarray(valid)].tolist()


def clustered_boxes(rng, n, num_objects=4, integer=False):
    centres = rng.uniform(0, 60, (num_objects, 2))
    which = rng.integers(0, num_objects, n)
    ctr = centres[which] + rng.normal(0, 4, (n, 2))
    wh = rng.uniform(5, 25, (n, 2))
    boxes = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1) - 10  # some negative coordinates
    return (np.round(boxes) if integer else boxes).astype(np.float32)


_jitted = {}


def jitted_nms(max_outputs, block_size=8, batched=False):
    """One compiled function per static configuration; thresholds are traced arguments.

    block_size 8 makes small inputs span several blocks.
    """
    key = (max_outputs, block_size, batched)
    if key not in _jitted:
        def fn(boxes, scores, valid, iou_threshold, score_threshold, class_ids=None):
            kwargs = dict(iou_threshold=iou_threshold, max_outputs=max_outputs, valid=valid,
                          score_threshold=score_threshold, block_size=block_size)
            if batched:
                return batched_nms(boxes, scores, class_ids, **kwargs)
            return nms(boxes, scores, **kwargs)
        _jitted[key] = jax.jit(fn)
    return _jitted[key]


def run_nms(boxes, scores, iou_threshold, max_outputs=MAX_OUTPUTS, valid=None, score_threshold=-np.inf):
    """nms on inputs padded to NUM_BOXES (padding invalid), through the shared compiled function."""
    n = len(scores)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid)
    pad = NUM_BOXES - n
    boxes = np.concatenate([np.asarray(boxes, np.float32), np.zeros((pad, 4), np.float32)])
    scores = np.concatenate([np.asarray(scores, np.float32), np.zeros(pad, np.float32)])
    valid = np.concatenate([valid, np.zeros(pad, bool)])
    indices, out_valid = jitted_nms(max_outputs)(boxes, scores, valid, np.float32(iou_threshold),
                                                 np.float32(score_threshold))
    return kept(indices, out_valid)


# --- agreement with the greedy loop --------------------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    # Thresholds are traced arguments, so any value in (0.1, 0.9) reuses the one compiled function.
    iou_threshold=st.floats(0.1, 0.9) | st.sampled_from([0.1, 0.2, 1 / 3, 0.5, 0.6, 0.75, 0.9]),
    integer=st.booleans(),
    num_valid=st.integers(0, NUM_BOXES),
)
def test_nms_equals_greedy_loop_hypothesis(seed, iou_threshold, integer, num_valid):
    rng = np.random.default_rng(seed)
    boxes = clustered_boxes(rng, NUM_BOXES, integer=integer)
    # Integer scores create many exact ties (broken by lower index).
    scores = (rng.integers(0, 5, NUM_BOXES) if integer else rng.uniform(0, 1, NUM_BOXES)).astype(np.float32)
    valid = np.arange(NUM_BOXES) < num_valid
    rng.shuffle(valid)
    got = run_nms(boxes, scores, iou_threshold, valid=valid)
    assert got == reference.nms(boxes, scores, iou_threshold, MAX_OUTPUTS, valid=valid)


_nms_300 = jax.jit(lambda b, s, t: nms(b, s, iou_threshold=t, max_outputs=300))


@pytest.mark.parametrize("iou_threshold", [0.1, 0.5, 0.9])
def test_nms_default_block_size_and_subset_property(iou_threshold):
    rng = np.random.default_rng(7)
    boxes = clustered_boxes(rng, 300, num_objects=12)
    scores = rng.uniform(size=300).astype(np.float32)
    got = kept(*_nms_300(boxes, scores, np.float32(iou_threshold)))
    assert got == reference.nms_vectorized(boxes, scores, iou_threshold, 300).tolist()
    assert got[:40] == reference.nms(boxes, scores, iou_threshold, 40)
    # properties: scores descending, no kept pair above the threshold, every dropped box is covered
    assert np.all(np.diff(scores[got]) <= 0)
    iou = np.asarray(B.box_iou(boxes[got], boxes[got]))
    assert not (np.triu(iou, 1) > iou_threshold).any()
    dropped = np.setdiff1d(np.arange(300), got)
    assert (np.asarray(B.box_iou(boxes[dropped], boxes[got])) > iou_threshold).any(axis=1).all()


def test_block_size_does_not_change_the_result():
    rng = np.random.default_rng(8)
    boxes = clustered_boxes(rng, 100, num_objects=6)
    scores = rng.uniform(size=100).astype(np.float32)
    results = [kept(*nms(boxes, scores, iou_threshold=0.4, max_outputs=40, block_size=bs))
               for bs in (16, 64)]
    assert results[0] == results[1] == reference.nms_vectorized(boxes, scores, 0.4, 40).tolist()


def test_partial_order_then_full_order():
    # max_outputs=3 with block_size=8 orders only the top 32 candidates first; two tight clusters
    # keep 2 boxes there, so the full order is needed for the third (and -inf scores come last).
    rng = np.random.default_rng(11)
    tight = np.array([0, 0, 50, 50], np.float32) + rng.uniform(-2, 2, (200, 4)).astype(np.float32)
    boxes = np.concatenate([tight[:100], tight[100:] + 300])  # every pair in a cluster: IoU > 0.7
    scores = rng.uniform(size=200).astype(np.float32)
    boxes[150] = [900, 900, 910, 910]  # an isolated box with a low score ...
    scores[150] = 0.0
    boxes[151] = [950, 950, 960, 960]  # ... and one with score -inf, valid
    scores[151] = -np.inf
    valid = np.ones(200, bool)
    valid[3] = False  # an invalid box in the first block
    fn = jax.jit(lambda b, s, v, t: nms(b, s, iou_threshold=t, max_outputs=4, valid=v, block_size=8))
    for iou_threshold in (0.3, 0.6):
        got = kept(*fn(boxes, scores, valid, np.float32(iou_threshold)))
        assert got == reference.nms(boxes, scores, iou_threshold, 4, valid=valid)
        assert got[-2:] == [150, 151]
    # under vmap the two phases become a select (both run): same answer per image
    batched = jax.jit(jax.vmap(lambda b, s: nms(b, s, iou_threshold=0.6, max_outputs=4, block_size=8)))
    indices, out_valid = batched(np.stack([boxes, boxes[::-1]]), np.stack([scores, scores[::-1]]))
    assert kept(indices[0], out_valid[0]) == reference.nms(boxes, scores, 0.6, 4)
    assert kept(indices[1], out_valid[1]) == reference.nms(boxes[::-1], scores[::-1], 0.6, 4)


# --- edge cases ----------------------------------------------------------------------------------


def test_threshold_is_strict_at_exact_iou():
    # IoU of the first two boxes is exactly 50 / 150 = 1/3 in float32 (integer coordinates).
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    iou = np.float32(np.asarray(B.box_iou(boxes, boxes))[0, 1])
    assert run_nms(boxes, scores, iou) == [0, 1, 2]  # IoU == t: not suppressed
    assert run_nms(boxes, scores, np.nextafter(iou, np.float32(0))) == [0, 2]
    # IoU exactly 0.5: [0,0,4,1] and [0,0,2,1] (areas 4 and 2, intersection 2, union 4)
    half = np.array([[0, 0, 4, 1], [0, 0, 2, 1]], np.float32)
    assert run_nms(half, [1.0, 0.5], 0.5) == [0, 1]
    assert run_nms(half, [1.0, 0.5], 0.49) == [0]


def test_ties_prefer_lower_index_and_zero_signs_tie():
    boxes = np.array([[0, 0, 10, 10]] * 3, np.float32)
    assert run_nms(boxes, [0.5, 0.5, 0.5], 0.5) == [0]
    assert run_nms(boxes, [-0.0, 0.0, 0.0], 0.5) == [0]
    assert run_nms(boxes, [0.1, 0.7, 0.7], 0.5) == [1]


def test_empty_all_padding_nan_and_degenerate():
    indices, valid = nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                         iou_threshold=0.5, max_outputs=4)
    assert indices.shape == (4,) and indices.dtype == jnp.int32 and not np.asarray(valid).any()
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [-5, -5, -1, -1], [3, 3, 3, 3], [3, 3, 3, 3]],
                     np.float32)
    scores = np.array([0.9, np.nan, 0.8, 0.7, 0.6], np.float32)
    assert run_nms(boxes, scores, 0.5, valid=np.zeros(5, bool)) == []
    # NaN never kept; negative-coordinate box kept; identical zero-area boxes never suppress each other
    assert run_nms(boxes, scores, 0.5) == [0, 2, 3, 4]
    padded = np.concatenate([boxes, np.zeros((NUM_BOXES - 5, 4), np.float32)])
    padded_scores = np.concatenate([scores, np.ones(NUM_BOXES - 5, np.float32)])
    indices, valid = jitted_nms(MAX_OUTPUTS)(padded, padded_scores, np.arange(NUM_BOXES) < 5,
                                             np.float32(0.5), np.float32(-np.inf))
    assert np.asarray(valid).sum() == 4 and np.asarray(indices)[4:].tolist() == [0] * (MAX_OUTPUTS - 4)


def test_score_threshold_and_max_outputs():
    boxes = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5], [6, 6, 7, 7]], np.float32)
    scores = np.array([0.2, 0.9, 0.5, 0.1], np.float32)
    assert run_nms(boxes, scores, 0.5, score_threshold=0.2) == [1, 2]  # strictly greater
    assert run_nms(boxes, scores, 0.5, max_outputs=2) == [1, 2]
    assert nms(boxes, scores, iou_threshold=0.5, max_outputs=0)[0].shape == (0,)


# --- batched / vmap / jit --------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), iou_threshold=st.floats(0.1, 0.9) | st.sampled_from([0.2, 0.5, 0.8]))
def test_batched_nms_equals_per_class_loop(seed, iou_threshold):
    rng = np.random.default_rng(seed)
    boxes = clustered_boxes(rng, NUM_BOXES, integer=True)
    scores = rng.integers(0, 4, NUM_BOXES).astype(np.float32)
    classes = rng.integers(0, 3, NUM_BOXES).astype(np.int32)
    valid = rng.uniform(size=NUM_BOXES) < 0.9
    got = kept(*jitted_nms(MAX_OUTPUTS, batched=True)(
        boxes, scores, valid, np.float32(iou_threshold), np.float32(-np.inf), classes))
    # per-class loop, merged by (score desc, index)
    merged = []
    for c in range(3):
        mask = valid & (classes == c)
        merged += reference.nms(boxes, scores, iou_threshold, NUM_BOXES, valid=mask)
    merged.sort(key=lambda i: (-float(scores[i]), i))
    assert got == merged[:MAX_OUTPUTS]
    assert got == reference.nms(boxes, scores, iou_threshold, MAX_OUTPUTS, valid=valid, class_ids=classes)


def test_vmap_equals_loop_and_jit_equals_eager():
    rng = np.random.default_rng(9)
    boxes = np.stack([clustered_boxes(rng, 20) for _ in range(3)])
    scores = rng.uniform(size=(3, 20)).astype(np.float32)
    fn = lambda b, s: nms(b, s, iou_threshold=0.45, max_outputs=10, block_size=8)  # noqa: E731
    batched_indices, batched_valid = jax.jit(jax.vmap(fn))(boxes, scores)
    for i in range(3):
        eager = fn(boxes[i], scores[i])
        np.testing.assert_array_equal(batched_indices[i], eager[0])
        np.testing.assert_array_equal(batched_valid[i], eager[1])
        assert kept(*eager) == reference.nms(boxes[i], scores[i], 0.45, 10)


def test_input_checks():
    boxes, scores = jnp.zeros((3, 4)), jnp.zeros(3)
    with pytest.raises(ValueError, match="boxes"):
        nms(jnp.zeros((3, 5)), scores, iou_threshold=0.5, max_outputs=2)
    with pytest.raises(ValueError, match="scores"):
        nms(boxes, jnp.zeros(4), iou_threshold=0.5, max_outputs=2)
    with pytest.raises(ValueError, match="max_outputs"):
        nms(boxes, scores, iou_threshold=0.5, max_outputs=2.0)
    with pytest.raises(ValueError, match="iou_threshold"):
        nms(boxes, scores, iou_threshold=1.5, max_outputs=2)
    with pytest.raises(ValueError, match="valid"):
        nms(boxes, scores, iou_threshold=0.5, max_outputs=2, valid=jnp.ones(3, jnp.int32))
    with pytest.raises(TypeError, match="class_ids"):
        batched_nms(boxes, scores, jnp.zeros(3), iou_threshold=0.5, max_outputs=2)
    with pytest.raises(ValueError, match="method"):
        soft_nms(boxes, scores, max_outputs=2, method="cubic")


# --- Soft-NMS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_soft_nms_matches_loop(method):
    rng = np.random.default_rng(10)
    boxes = clustered_boxes(rng, 30)
    scores = rng.uniform(0.05, 1, 30).astype(np.float32)
    valid = np.ones(30, bool)
    valid[5] = False
    indices, new_scores, out_valid = jax.jit(
        lambda b, s, v: soft_nms(b, s, max_outputs=35, method=method, valid=v, score_threshold=0.01)
    )(boxes, scores, valid)
    scores_masked = np.where(valid, scores, np.nan).astype(np.float32)
    ref_indices, ref_scores = reference.soft_nms(boxes, scores_masked, 35, method=method, score_threshold=0.01)
    assert kept(indices, out_valid) == ref_indices
    np.testing.assert_allclose(np.asarray(new_scores)[np.asarray(out_valid)], ref_scores, rtol=1e-5)
    assert new_scores.shape == (35,) and not np.asarray(out_valid)[len(ref_indices):].any()
    assert 5 not in ref_indices


@pytest.mark.slow
@pytest.mark.parametrize("num_boxes", [2000, 6000])
def test_large_nms_sweep_equals_numpy_greedy(num_boxes):
    rng = np.random.default_rng(num_boxes)
    boxes = clustered_boxes(rng, num_boxes, num_objects=40) * 10
    scores = rng.uniform(size=num_boxes).astype(np.float32)
    fn = jax.jit(lambda b, s, t: nms(b, s, iou_threshold=t, max_outputs=num_boxes))
    for iou_threshold in np.linspace(0.1, 0.9, 9):
        got = kept(*fn(boxes, scores, np.float32(iou_threshold)))
        assert got == reference.nms_vectorized(boxes, scores, iou_threshold, num_boxes).tolist()
