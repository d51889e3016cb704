"""jaxvision.ops.roi: RoI Align / RoI Pool against torchvision-kernel loops, FPN levels, gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import reference  # tests/reference.py (tests/ is on sys.path through conftest.py)
from jaxvision.ops import roi

# Eager calls dispatch dozens of small ops, each compiled once; one jit per configuration is faster.
_STATIC = ("output_size", "spatial_scale", "sampling_ratio", "aligned", "max_sampling_ratio", "window",
           "roi_chunk_size")
roi_align = jax.jit(roi.roi_align, static_argnames=_STATIC)
roi_pool = jax.jit(roi.roi_pool, static_argnames=("output_size", "spatial_scale"))


def make_inputs(seed, num_boxes=12, shape=(2, 9, 11, 3), max_xy=40.0, max_wh=30.0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=shape).astype(np.float32)
    xy = rng.uniform(-6, max_xy, (num_boxes, 2))  # some boxes start outside the map
    wh = rng.uniform(0, max_wh, (num_boxes, 2))
    wh[0] = 0  # a zero-size RoI
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    box_indices = rng.integers(0, shape[0], num_boxes).astype(np.int32)
    return features, boxes, box_indices


@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_matches_torchvision_loop(sampling_ratio, aligned):
    features, boxes, box_indices = make_inputs(0)
    got = np.asarray(roi_align(features, boxes, box_indices, output_size=(3, 4), spatial_scale=0.25,
                               sampling_ratio=sampling_ratio, aligned=aligned))
    expected = reference.roi_align(features, boxes, box_indices, (3, 4), 0.25, sampling_ratio, aligned)
    assert got.shape == (12, 3, 4, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("aligned", [False, True])
def test_windowed_path_equals_loop_and_dense_path(aligned):
    # Small RoIs (<= 3 feature pixels) all fit a 6 x 6 window: the windowed fast path runs; a
    # window of 2 does not fit them, so the same call falls back to the whole-map path.
    features, boxes, box_indices = make_inputs(7, num_boxes=9, shape=(2, 12, 14, 3), max_xy=44, max_wh=12)
    expected = reference.roi_align(features, boxes, box_indices, (3, 2), 0.25, 2, aligned)
    results = {}
    for window in (None, 6, 2):
        kwargs = dict(output_size=(3, 2), spatial_scale=0.25, sampling_ratio=2, aligned=aligned, window=window,
                      roi_chunk_size=4)
        out = roi_align(features, boxes, box_indices, **kwargs)
        np.testing.assert_allclose(out, expected, atol=1e-5, err_msg=f"window={window}")
        grad_fn = jax.jit(jax.grad(lambda f, kwargs=kwargs: (roi.roi_align(f, boxes, box_indices, **kwargs) ** 2).sum()))
        results[window] = np.asarray(grad_fn(features))
    np.testing.assert_allclose(results[6], results[None], atol=1e-5)
    np.testing.assert_allclose(results[2], results[None], atol=1e-5)


def test_roi_align_border_rules_and_known_value():
    features = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)  # value = 4 * y + x
    # One sample at the centre of a 1x1 RoI at (1.5, 0.5): bilinear of a linear map is exact.
    box = np.array([[1.0, 0.0, 2.0, 1.0]], np.float32)
    out = roi_align(features, box, np.zeros(1, np.int32), output_size=1, sampling_ratio=1)
    np.testing.assert_allclose(out[0, 0, 0, 0], 4 * 0.5 + 1.5)
    # Entirely beyond the -1 / H border: zero. Between H-1 and H: clamped to the last row/col.
    far = np.array([[-10.0, -10.0, -4.0, -4.0], [3.2, 2.2, 3.8, 2.8]], np.float32)
    out = roi_align(features, far, np.zeros(2, np.int32), output_size=1, sampling_ratio=1)
    np.testing.assert_allclose(out[:, 0, 0, 0], [0.0, 11.0])
    expected = reference.roi_align(features, far, [0, 0], (1, 1), 1.0, 1, False)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_roi_align_adaptive_grid_cap_documented_behaviour():
    # With a cap >= the needed grid the result is unchanged; chunk size never changes the result.
    features, boxes, box_indices = make_inputs(1, num_boxes=5)
    base = roi_align(features, boxes, box_indices, output_size=2, spatial_scale=0.25)
    capped = roi_align(features, boxes, box_indices, output_size=2, spatial_scale=0.25,
                           max_sampling_ratio=8, roi_chunk_size=3)
    np.testing.assert_allclose(base, capped, atol=1e-6)


def test_roi_align_gradients():
    features, boxes, box_indices = make_inputs(2, num_boxes=3, shape=(1, 5, 6, 2), max_xy=5, max_wh=5)
    fn = jax.jit(lambda f: roi.roi_align(f, boxes, box_indices, output_size=2, sampling_ratio=2))
    check_grads(fn, (jnp.asarray(features, jnp.float32),), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
    grad = jax.grad(lambda f: fn(f).sum())(features)
    assert np.isfinite(np.asarray(grad)).all()


def test_roi_align_vmap_over_images_equals_loop():
    features, boxes, _ = make_inputs(3, num_boxes=4, shape=(2, 6, 7, 2), max_xy=20, max_wh=10)
    per_image_boxes = np.stack([boxes, boxes[::-1]])  # [B, R, 4]
    fn = lambda f, b: roi.roi_align(f[None], b, jnp.zeros(4, jnp.int32), output_size=2,  # noqa: E731
                                    spatial_scale=0.5, sampling_ratio=2)
    batched = jax.jit(jax.vmap(fn))(features, per_image_boxes)
    single = jax.jit(fn)
    for i in range(2):
        np.testing.assert_allclose(batched[i], single(features[i], per_image_boxes[i]), atol=1e-6)


def test_roi_pool_matches_loop_and_has_gradient():
    features, boxes, box_indices = make_inputs(4)
    got = roi_pool(features, boxes, box_indices, output_size=(3, 2), spatial_scale=0.25)
    expected = reference.roi_pool(features, boxes, box_indices, (3, 2), 0.25)
    np.testing.assert_array_equal(np.asarray(got), expected.astype(np.float32))
    grad = jax.jit(jax.grad(
        lambda f: roi.roi_pool(f, boxes, box_indices, output_size=2, spatial_scale=0.25).sum()))(features)
    assert np.isfinite(np.asarray(grad)).all() and np.asarray(grad).sum() > 0


def test_fpn_level_assignment_matches_level_mapper():
    sizes = np.array([10, 111, 112, 223, 224, 447, 448, 1000, 5000], np.float32)
    boxes = np.stack([np.zeros_like(sizes), np.zeros_like(sizes), sizes, sizes], axis=1)
    levels = roi.assign_fpn_levels(boxes, min_level=2, max_level=5)
    expected = [min(max(math.floor(4 + math.log2(s / 224) + 1e-6), 2), 5) - 2 for s in sizes]
    np.testing.assert_array_equal(levels, expected)
    assert roi.infer_scale((50, 68), (800, 1088)) == 1 / 16


def test_multiscale_roi_align_picks_each_boxes_level():
    rng = np.random.default_rng(5)
    image_size = (64, 64)
    features = [rng.normal(size=(1, 64 // s, 64 // s, 2)).astype(np.float32) for s in (4, 8)]
    # canonical 224 -> level 4; with levels {2, 3}: small box -> level 2 (stride 4), big -> level 3
    boxes = np.array([[4.0, 4.0, 20.0, 20.0], [0.0, 0.0, 60.0, 60.0]], np.float32)
    indices = np.zeros(2, np.int32)
    out = jax.jit(lambda f, b, i: roi.multiscale_roi_align(
        f, b, i, image_size=image_size, output_size=2, canonical_size=32.0, canonical_level=3))(
        features, boxes, indices)
    for k, (level, stride) in enumerate([(0, 4), (1, 8)]):
        expected = reference.roi_align(features[level], boxes[k:k + 1], [0], (2, 2), 1 / stride, 2, False)
        np.testing.assert_allclose(out[k:k + 1], expected, atol=1e-5)


def test_input_checks():
    features, boxes, box_indices = make_inputs(6, num_boxes=2)
    with pytest.raises(ValueError, match="features"):
        roi.roi_align(features[0], boxes, box_indices, output_size=2)
    with pytest.raises(ValueError, match="boxes"):
        roi.roi_align(features, boxes[:, :3], box_indices, output_size=2)
    with pytest.raises(ValueError, match="box_indices"):
        roi.roi_align(features, boxes, box_indices[:1], output_size=2)
    with pytest.raises(TypeError, match="box_indices"):
        roi.roi_align(features, boxes, box_indices.astype(np.float32), output_size=2)
    with pytest.raises(ValueError, match="output_size"):
        roi.roi_pool(features, boxes, box_indices, output_size=(2, 0))
    with pytest.raises(ValueError, match="scales"):
        roi.infer_scale((50, 17), (800, 1088))
