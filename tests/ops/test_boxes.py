"""jaxvision.ops.boxes: formats, areas, IoU variants against loops, properties, box coder."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference  # tests/reference.py (tests/ is on sys.path through conftest.py)
from jaxvision.ops import boxes as B


def random_boxes(rng, n, *, size=50.0, degenerate=False):
    xy = rng.uniform(-20, 100, (n, 2))
    wh = rng.uniform(0 if degenerate else 1, size, (n, 2))
    if degenerate:
        wh[::3] = 0  # every third box has zero area
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


# --- formats -------------------------------------------------------------------------------------


def test_conversions_known_values():
    boxes = jnp.array([[10.0, 20.0, 30.0, 60.0]])
    np.testing.assert_allclose(B.xyxy_to_xywh(boxes), [[10, 20, 20, 40]])
    np.testing.assert_allclose(B.xyxy_to_cxcywh(boxes), [[20, 40, 20, 40]])
    np.testing.assert_allclose(B.xywh_to_xyxy(jnp.array([[10.0, 20, 20, 40]])), boxes)
    np.testing.assert_allclose(B.cxcywh_to_xyxy(jnp.array([[20.0, 40, 20, 40]])), boxes)


def test_conversions_round_trip_with_leading_dims():
    boxes = random_boxes(np.random.default_rng(0), 12).reshape(3, 4, 4)
    np.testing.assert_allclose(B.xywh_to_xyxy(B.xyxy_to_xywh(boxes)), boxes, atol=1e-5)
    np.testing.assert_allclose(B.cxcywh_to_xyxy(B.xyxy_to_cxcywh(boxes)), boxes, atol=1e-5)


def test_area_clip_and_size_mask():
    boxes = jnp.array([[-5.0, -5.0, 50.0, 50.0], [2.0, 3.0, 2.5, 10.0]])
    np.testing.assert_allclose(B.box_area(boxes), [55 * 55, 0.5 * 7])
    np.testing.assert_allclose(B.clip_boxes(boxes, (20, 30)), [[0, 0, 30, 20], [2, 3, 2.5, 10]])
    np.testing.assert_array_equal(B.is_large_enough(boxes, 1.0), [True, False])
    np.testing.assert_array_equal(B.is_large_enough(boxes, 0.5), [True, True])  # >= is inclusive


# --- IoU variants ----------------------------------------------------------------------------


def test_box_iou_matches_loop_and_is_nan_free():
    rng = np.random.default_rng(1)
    boxes1, boxes2 = random_boxes(rng, 7, degenerate=True), random_boxes(rng, 5, degenerate=True)
    boxes2[0] = boxes1[0]  # a zero-area box against itself: 0/0 in torchvision, 0 here
    got = np.asarray(B.box_iou(boxes1, boxes2))
    assert got.shape == (7, 5) and np.isfinite(got).all()
    np.testing.assert_allclose(got, reference.box_iou(boxes1, boxes2), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "pairwise, elementwise, pair_reference",
    [
        (B.generalized_box_iou, B.elementwise_generalized_box_iou, reference.generalized_box_iou_pair),
        (B.distance_box_iou, B.elementwise_distance_box_iou, reference.distance_box_iou_pair),
        (B.complete_box_iou, B.elementwise_complete_box_iou, reference.complete_box_iou_pair),
    ],
)
def test_iou_variants_match_loop(pairwise, elementwise, pair_reference):
    rng = np.random.default_rng(2)
    boxes1, boxes2 = random_boxes(rng, 6, degenerate=True), random_boxes(rng, 4, degenerate=True)
    expected = np.array([[pair_reference(a, b) for b in boxes2] for a in boxes1])
    got = np.asarray(pairwise(boxes1, boxes2))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=2e-6)
    # elementwise == diagonal of pairwise
    np.testing.assert_allclose(elementwise(boxes1[:4], boxes2), np.diag(got[:4]), atol=1e-6)


@pytest.mark.parametrize(
    "fn", [B.box_iou, B.generalized_box_iou, B.distance_box_iou, B.complete_box_iou]
)
def test_iou_properties(fn):
    boxes = random_boxes(np.random.default_rng(3), 6)
    matrix = np.asarray(fn(boxes, boxes))
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-6)  # IoU(b, b) = 1 for every variant
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)  # symmetric
    assert (matrix <= 1 + 1e-6).all() and (matrix >= -1 - 1e-6).all()


def test_known_values():
    a = jnp.array([[0.0, 0.0, 10.0, 10.0]])
    b = jnp.array([[5.0, 0.0, 15.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    np.testing.assert_allclose(B.box_iou(a, b), [[50 / 150, 0.0]])
    # disjoint: enclosing box 30x10, union 200 -> GIoU = 0 - (300 - 200) / 300
    np.testing.assert_allclose(B.generalized_box_iou(a, b)[0, 1], -1 / 3, rtol=1e-6)
    # DIoU, same aspect ratio so CIoU == DIoU: centres 20 apart, enclosing diagonal^2 = 900 + 100
    np.testing.assert_allclose(B.distance_box_iou(a, b)[0, 1], -400 / 1000, rtol=1e-5)
    np.testing.assert_allclose(B.complete_box_iou(a, b), B.distance_box_iou(a, b), atol=1e-7)


def test_iou_gradients_finite_at_degenerate_boxes():
    point = jnp.array([[3.0, 3.0, 3.0, 3.0]])
    for fn in (B.elementwise_box_iou, B.elementwise_generalized_box_iou,
               B.elementwise_distance_box_iou, B.elementwise_complete_box_iou):
        grad = jax.grad(lambda p: fn(p, point).sum())(point)
        assert np.isfinite(np.asarray(grad)).all(), fn.__name__


def test_jit_equals_eager():
    rng = np.random.default_rng(4)
    boxes1, boxes2 = random_boxes(rng, 5), random_boxes(rng, 3)
    for fn in (B.box_iou, B.generalized_box_iou, B.complete_box_iou):
        np.testing.assert_allclose(jax.jit(fn)(boxes1, boxes2), fn(boxes1, boxes2), atol=1e-6)


# --- box coder -----------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_matches_loop_and_decode_inverts(weights):
    rng = np.random.default_rng(5)
    boxes, anchors = random_boxes(rng, 8), random_boxes(rng, 8)
    deltas = B.encode_boxes(boxes, anchors, weights=weights)
    expected = [reference.encode_box_pair(b.astype(np.float64), a.astype(np.float64), weights)
                for b, a in zip(boxes, anchors)]
    np.testing.assert_allclose(deltas, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(B.decode_boxes(deltas, anchors, weights=weights), boxes, atol=1e-3)


def test_decode_clamps_scale():
    anchor = jnp.array([[0.0, 0.0, 16.0, 16.0]])
    huge = jnp.array([[0.0, 0.0, 100.0, 100.0]])
    decoded = B.decode_boxes(huge, anchor)
    # exp(log(1000/16)) * 16 = 1000 wide, centred on the anchor centre (8, 8)
    np.testing.assert_allclose(decoded, [[8 - 500, 8 - 500, 8 + 500, 8 + 500]], rtol=1e-5)
    assert math.isclose(B.DEFAULT_SCALE_CLAMP, math.log(1000 / 16))


# --- input checks --------------------------------------------------------------------------------


def test_input_checks_name_the_argument():
    with pytest.raises(ValueError, match="boxes1"):
        B.box_iou(jnp.zeros((3, 5)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="boxes2"):
        B.box_iou(jnp.zeros((3, 4)), jnp.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="same shape"):
        B.elementwise_box_iou(jnp.zeros((3, 4)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="image_size"):
        B.clip_boxes(jnp.zeros((3, 4)), (10,))
    with pytest.raises(ValueError, match="weights"):
        B.encode_boxes(jnp.ones((1, 4)), jnp.ones((1, 4)), weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="min_size"):
        B.is_large_enough(jnp.zeros((1, 4)), -1)


def test_integer_boxes_are_promoted():
    boxes = jnp.array([[0, 0, 10, 10]], jnp.int32)
    assert B.box_iou(boxes, boxes).dtype == jnp.float32
