"""RoI feature extraction: RoI Pool, RoI Align, and multi-level (FPN) RoI Align, NHWC, static shapes.

`roi_align` follows torchvision's CPU kernel (roi_align_kernel.cpp) exactly: per output bin a
`grid_h x grid_w` grid of bilinear samples is averaged; a sample with y < -1, y > H, x < -1 or x > W
contributes 0 but still counts; otherwise y, x are clamped at 0 and at H-1 / W-1. `aligned=True`
shifts boxes by -0.5 pixel (pixel centres) and allows RoIs smaller than one pixel.

How it is computed: bilinear sampling and the per-bin average are separable in y and x, so for
RoI k the output is `A_y[k] @ F[b_k] @ A_x[k]^T` with small interpolation matrices
`A_y: [out_h, H]`, `A_x: [out_w, W]` (each row averages the bin's samples), independent of the
sampling grid's size. Two ways to contract them, chosen at run time, with the same result:
- windowed (fast path): when every RoI's nonzero weights fit a static `window x window` crop, each
  RoI contracts only its crop (cut with dynamic_slice, 8 RoIs per scan step); the custom backward adds
  the crops' gradients back in place with dynamic_update_slice. Cost O(K * window^2 * C).
- whole map (fallback, any RoI size): the matrices span the map; the backward is plain matmuls.
  Cost O(K * H * W * C).
Neither uses gather/scatter-add over pixels, which XLA:CPU runs ~10x slower (see PERF.md).
The adaptive grid (`sampling_ratio <= 0`: ceil(roi_h / out_h), data dependent) is handled with a
static maximum `max_sampling_ratio` and masking; torchvision is matched wherever the RoI needs no
more samples per bin than that cap (by default: any RoI up to twice the feature-map size).

Sources: Girshick, "Fast R-CNN", ICCV 2015 (RoI Pool); He et al., "Mask R-CNN", ICCV 2017 (RoI Align);
Lin et al., "Feature Pyramid Networks", CVPR 2017 (level assignment, eq. 1);
torchvision.ops.roi_pool / roi_align / MultiScaleRoIAlign (LevelMapper).
"""

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxvision.ops.boxes import box_area
from jaxvision.types import Array


def _check(features, boxes, box_indices, output_size):
    features = jnp.asarray(features)
    boxes = jnp.asarray(boxes)
    box_indices = jnp.asarray(box_indices)
    if features.ndim != 4:
        raise ValueError(f"features must have shape [B, H, W, C], got {features.shape}")
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [K, 4], got {boxes.shape}")
    if box_indices.shape != boxes.shape[:1]:
        raise ValueError(f"box_indices must have shape [K] = {boxes.shape[:1]}, got {box_indices.shape}")
    if not jnp.issubdtype(box_indices.dtype, jnp.integer):
        raise TypeError(f"box_indices must be integers, got {box_indices.dtype}")
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    if len(output_size) != 2 or any(not isinstance(s, int) or s < 1 for s in output_size):
        raise ValueError(f"output_size must be a positive int or (height, width), got {output_size!r}")
    if not jnp.issubdtype(features.dtype, jnp.floating):
        raise TypeError(f"features must be floating point, got {features.dtype}")
    return features, boxes.astype(features.dtype), box_indices.astype(jnp.int32), tuple(output_size)


# ----------------------------------------------------------------------------------------------
# RoI Align
# ----------------------------------------------------------------------------------------------


def _interpolation_matrix(start, length, grid, *, size: int, bins: int, max_grid: int):
    """Rows average a bin's bilinear samples along one axis, as torchvision's bilinear_interpolate.

    start, length: [K] RoI start and extent on this axis (feature-map pixels); grid: [K] int samples
    per bin (<= max_grid). Returns [K, bins, size].
    """
    bin_size = length / bins  # [K]
    bin_index = jnp.arange(bins, dtype=start.dtype)
    sample_index = jnp.arange(max_grid, dtype=start.dtype)
    grid_f = grid.astype(start.dtype)
    # [K, bins, max_grid]: sample coordinate start + p * bin + (i + 0.5) * bin / grid
    coord = (
        start[:, None, None]
        + bin_index[None, :, None] * bin_size[:, None, None]
        + (sample_index[None, None, :] + 0.5) * (bin_size / jnp.maximum(grid_f, 1))[:, None, None]
    )
    active = sample_index[None, None, :] < grid_f[:, None, None]
    # torchvision: a sample outside [-1, size] contributes zero (and still counts in the average).
    inside = (coord >= -1.0) & (coord <= size)
    coord = jnp.maximum(coord, 0)
    low = jnp.floor(coord).astype(jnp.int32)
    at_end = low >= size - 1
    low = jnp.where(at_end, size - 1, low)
    high = jnp.where(at_end, size - 1, low + 1)
    coord = jnp.where(at_end, low.astype(coord.dtype), coord)
    frac = coord - low  # weight of `high`
    weight = jnp.where(active & inside, 1.0, 0.0) / jnp.maximum(grid_f, 1)[:, None, None]
    pixels = jnp.arange(size)[None, None, None, :]
    # [K, bins, max_grid, size] -> sum over samples -> [K, bins, size]
    matrix = weight[..., None] * (
        (1 - frac)[..., None] * (low[..., None] == pixels) + frac[..., None] * (high[..., None] == pixels)
    )
    return matrix.sum(axis=2)


def roi_align(
    features: Array,
    boxes: Array,
    box_indices: Array,
    *,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    max_sampling_ratio: int | None = None,
    window: int | None = 16,
    roi_chunk_size: int = 8,
) -> Array:
    """RoI Align (Mask R-CNN), exactly torchvision.ops.roi_align's semantics, NHWC.

    Args:
      features: `float[B, H, W, C]` feature maps.
      boxes: `float[K, 4]` xyxy in image pixels; multiplied by `spatial_scale` (e.g. 1/16).
      box_indices: `int[K]`, the image of each box (torchvision's first RoI column).
      output_size: `out` or `(out_h, out_w)`, static.
      sampling_ratio: samples per bin along each axis; <= 0 means adaptive, ceil(roi_size / out).
      aligned: if True, shift by -0.5 pixel so samples land on pixel centres (Detectron2 / torchvision
        aligned=True), and do not force RoIs to be at least 1 pixel.
      max_sampling_ratio: static cap on the adaptive grid (default: enough for RoIs up to twice the
        feature map). RoIs needing more samples per bin use the cap (evenly spaced samples).
      window: static window (feature-map pixels per axis) for the fast path: when every RoI's samples
        fit in a `window x window` crop, only those crops are contracted (cost ~ K * window^2 * C);
        otherwise (checked at run time, `lax.cond`) the whole map is (cost ~ K * H * W * C). The result
        is the same either way; None always uses the whole map. Under `vmap` both paths run.
      roi_chunk_size: RoIs contracted together (static speed knob; the result does not depend on it).

    Returns: `float[K, out_h, out_w, C]`. Differentiable w.r.t. `features` (not w.r.t. boxes,
    like torchvision).
    """
    features, boxes, box_indices, (out_h, out_w) = _check(features, boxes, box_indices, output_size)
    if not isinstance(sampling_ratio, int):
        raise TypeError(f"sampling_ratio must be a Python int, got {sampling_ratio!r}")
    batch, height, width, _ = features.shape
    if sampling_ratio > 0:
        max_grid_h = max_grid_w = sampling_ratio
    elif max_sampling_ratio is not None:
        if max_sampling_ratio < 1:
            raise ValueError(f"max_sampling_ratio must be >= 1, got {max_sampling_ratio}")
        max_grid_h = max_grid_w = max_sampling_ratio
    else:
        max_grid_h = max(1, math.ceil(2 * height / out_h))
        max_grid_w = max(1, math.ceil(2 * width / out_w))

    # Interpolation weights are a function of the boxes only; no gradient flows to them.
    boxes = lax.stop_gradient(boxes)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (boxes[:, i] * spatial_scale - offset for i in range(4))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
    if sampling_ratio > 0:
        grid_h = jnp.full(roi_h.shape, sampling_ratio, jnp.int32)
        grid_w = jnp.full(roi_w.shape, sampling_ratio, jnp.int32)
    else:
        grid_h = jnp.minimum(jnp.ceil(roi_h / out_h), max_grid_h).astype(jnp.int32)
        grid_w = jnp.minimum(jnp.ceil(roi_w / out_w), max_grid_w).astype(jnp.int32)
    a_y = _interpolation_matrix(y1, roi_h, grid_h, size=height, bins=out_h, max_grid=max_grid_h)
    a_x = _interpolation_matrix(x1, roi_w, grid_w, size=width, bins=out_w, max_grid=max_grid_w)
    if window is None or (window >= height and window >= width):
        return _dense_contraction(features, box_indices, a_y, a_x, roi_chunk_size)
    win_h, win_w = min(window, height), min(window, width)
    row_start, rows_fit = _window_start(a_y, win_h)
    col_start, cols_fit = _window_start(a_x, win_w)
    a_y_win = jnp.take_along_axis(a_y, (row_start[:, None] + jnp.arange(win_h)[None, :])[:, None, :], axis=2)
    a_x_win = jnp.take_along_axis(a_x, (col_start[:, None] + jnp.arange(win_w)[None, :])[:, None, :], axis=2)
    starts = jnp.stack([jnp.clip(box_indices, 0, batch - 1), row_start, col_start], axis=1)  # [K, 3]
    # Exact either way: the windowed path only runs when every RoI's samples fit in its window.
    return lax.cond(
        jnp.all(rows_fit & cols_fit),
        lambda: _windowed_contraction(features, starts, a_y_win, a_x_win, roi_chunk_size),
        lambda: _dense_contraction(features, box_indices, a_y, a_x, roi_chunk_size),
    )


def _dense_contraction(features, box_indices, a_y, a_x, chunk):
    """out[k] = A_y[k] @ F[b_k] @ A_x[k]^T over the whole map (any RoI size); cost ~ K * H * W * C."""
    batch = features.shape[0]
    # Route each RoI to its image: [K, out_h, B, H], zero outside the RoI's own image (so the cost
    # grows with B: for many images, vmap roi_align over images instead).
    one_hot = (box_indices[:, None] == jnp.arange(batch)[None, :]).astype(features.dtype)  # [K, B]
    a_y = a_y[:, :, None, :] * one_hot[:, None, :, None]

    def pool_one(weights):
        a_y, a_x = weights  # [out_h, B, H], [out_w, W]
        cols = jnp.einsum("qw,bhwc->qbhc", a_x, features, precision=lax.Precision.HIGHEST)
        return jnp.einsum("pbh,qbhc->pqc", a_y, cols, precision=lax.Precision.HIGHEST)

    # Chunks of RoIs keep the [chunk, out_w, B, H, C] intermediate in cache (2x faster on CPU than
    # one big contraction, whose intermediate is K * out_w * H * C floats).
    return lax.map(pool_one, (a_y, a_x), batch_size=chunk)


def _window_start(matrix, window: int):
    """First pixel of a `window`-wide span holding every nonzero column of `matrix [K, bins, size]`.

    Returns (start int32[K] in [0, size - window], fits bool[K]).
    """
    size = matrix.shape[2]
    used = jnp.any(matrix != 0, axis=1)  # [K, size]
    first = jnp.argmax(used, axis=1)
    last = size - 1 - jnp.argmax(used[:, ::-1], axis=1)
    any_used = jnp.any(used, axis=1)
    fits = ~any_used | (last - first < window)
    start = jnp.clip(jnp.where(any_used, first, 0), 0, size - window)
    return start.astype(jnp.int32), fits


def _windowed_contraction(features, starts, a_y, a_x, chunk):
    """out[k] = A_y[k] @ window_k(F) @ A_x[k]^T with a static window per RoI; cost ~ K * window^2 * C.

    The window is cut with dynamic_slice (a copy; XLA:CPU gathers are ~10x slower), `chunk` RoIs per
    scan step; the custom backward adds each window's gradient back in place with
    dynamic_update_slice, avoiding XLA's slow scatter-add.
    """
    num_rois, out_h, win_h = a_y.shape
    out_w, win_w = a_x.shape[1:]
    pad = -num_rois % chunk
    starts, a_y, a_x = (jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)) for x in (starts, a_y, a_x))
    out = _windowed_apply(features, starts, a_y, a_x, chunk)
    return out[:num_rois]


def _window_slices(features, starts, win_h, win_w, chunk):
    channels = features.shape[3]
    return [
        lax.dynamic_slice(features, (starts[i, 0], starts[i, 1], starts[i, 2], 0), (1, win_h, win_w, channels))[0]
        for i in range(chunk)
    ]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _windowed_apply(features, starts, a_y, a_x, chunk):
    win_h, win_w = a_y.shape[2], a_x.shape[2]

    def step(_, xs):
        starts, a_y, a_x = xs  # [chunk, 3], [chunk, out_h, win_h], [chunk, out_w, win_w]
        windows = jnp.stack(_window_slices(features, starts, win_h, win_w, chunk))  # [chunk, wh, ww, C]
        rows = jnp.einsum("kph,khwc->kpwc", a_y, windows, precision=lax.Precision.HIGHEST)
        return None, jnp.einsum("kpwc,kqw->kpqc", rows, a_x, precision=lax.Precision.HIGHEST)

    xs = (starts.reshape(-1, chunk, 3), _chunks(a_y, chunk), _chunks(a_x, chunk))
    out = lax.scan(step, None, xs)[1]  # [K / chunk, chunk, out_h, out_w, C]
    return out.reshape((-1,) + out.shape[2:])


def _chunks(x, chunk):
    return x.reshape((-1, chunk) + x.shape[1:])


def _windowed_apply_fwd(features, starts, a_y, a_x, chunk):
    # The features ride along only for their shape and dtype (they are alive anyway).
    return _windowed_apply(features, starts, a_y, a_x, chunk), (features, starts, a_y, a_x)


def _windowed_apply_bwd(chunk, residuals, grad_out):
    features, starts, a_y, a_x = residuals
    shape, dtype = features.shape, features.dtype
    win_h, win_w = a_y.shape[2], a_x.shape[2]

    def step(grad_features, xs):
        starts, a_y, a_x, grad = xs
        cols = jnp.einsum("kpqc,kqw->kpwc", grad, a_x, precision=lax.Precision.HIGHEST)
        grad_windows = jnp.einsum("kph,kpwc->khwc", a_y, cols, precision=lax.Precision.HIGHEST)
        for i in range(chunk):
            corner = (starts[i, 0], starts[i, 1], starts[i, 2], 0)
            current = lax.dynamic_slice(grad_features, corner, (1, win_h, win_w, shape[3]))
            grad_features = lax.dynamic_update_slice(grad_features, current + grad_windows[i][None], corner)
        return grad_features, None

    xs = (starts.reshape(-1, chunk, 3), _chunks(a_y, chunk), _chunks(a_x, chunk), _chunks(grad_out, chunk))
    grad_features, _ = lax.scan(step, jnp.zeros(shape, dtype), xs)
    return grad_features, None, None, None


_windowed_apply.defvjp(_windowed_apply_fwd, _windowed_apply_bwd)


# ----------------------------------------------------------------------------------------------
# RoI Pool
# ----------------------------------------------------------------------------------------------


def _round_half_away(x):
    """C's round(): halves go away from zero (jnp.round goes to even)."""
    return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _bin_ranges(start, end, *, size: int, bins: int):
    """torchvision roi_pool bin edges along one axis: int [K, bins] starts and ends, clipped to [0, size]."""
    length = jnp.maximum(end - start + 1, 1).astype(jnp.float32)
    # A true float32 division, as torchvision: XLA:CPU turns division by a (broadcast) scalar into a
    # multiply by its rounded reciprocal, which moves floor/ceil edges (7 / 3 * 3 must stay below 7).
    bin_size = length / lax.optimization_barrier(jnp.full(length.shape, bins, jnp.float32))
    index = jnp.arange(bins, dtype=jnp.float32)
    lo = jnp.floor(index[None, :] * bin_size[:, None]).astype(jnp.int32) + start[:, None]
    hi = jnp.ceil((index[None, :] + 1) * bin_size[:, None]).astype(jnp.int32) + start[:, None]
    return jnp.clip(lo, 0, size), jnp.clip(hi, 0, size)


def roi_pool(
    features: Array,
    boxes: Array,
    box_indices: Array,
    *,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
) -> Array:
    """RoI (max) Pooling from Fast R-CNN, torchvision.ops.roi_pool semantics, NHWC.

    Box corners are rounded (half away from zero) to feature-map pixels after `spatial_scale`; the
    inclusive RoI is cut into `out_h x out_w` bins with floor/ceil edges; each bin takes its maximum,
    and an empty bin (outside the map) gives 0.

    Args: features `float[B, H, W, C]`, boxes `float[K, 4]` xyxy image pixels, box_indices `int[K]`.
    Returns `float[K, out_h, out_w, C]`; the gradient goes to each bin's maximum (tied maxima share
    it equally).
    Cost O(K * out_w * H * W * C): one RoI at a time (lax.map) to bound memory.
    """
    features, boxes, box_indices, (out_h, out_w) = _check(features, boxes, box_indices, output_size)
    _, height, width, _ = features.shape
    corners = _round_half_away(lax.stop_gradient(boxes) * spatial_scale).astype(jnp.int32)
    h_lo, h_hi = _bin_ranges(corners[:, 1], corners[:, 3], size=height, bins=out_h)  # [K, out_h]
    w_lo, w_hi = _bin_ranges(corners[:, 0], corners[:, 2], size=width, bins=out_w)  # [K, out_w]
    rows, cols = jnp.arange(height), jnp.arange(width)

    def pool_one(args):
        image, h_lo, h_hi, w_lo, w_hi = args
        fmap = features[image]  # [H, W, C]
        in_col = (cols[None, :] >= w_lo[:, None]) & (cols[None, :] < w_hi[:, None])  # [out_w, W]
        in_row = (rows[None, :] >= h_lo[:, None]) & (rows[None, :] < h_hi[:, None])  # [out_h, H]
        neg_inf = jnp.array(-jnp.inf, fmap.dtype)
        col_max = jnp.max(jnp.where(in_col[:, None, :, None], fmap[None], neg_inf), axis=2)  # [out_w, H, C]
        pooled = jnp.max(jnp.where(in_row[:, None, :, None], col_max[None], neg_inf), axis=2)  # [out_h, out_w, C]
        empty = (h_hi <= h_lo)[:, None] | (w_hi <= w_lo)[None, :]  # [out_h, out_w]
        return jnp.where(empty[..., None], 0, pooled)

    return lax.map(pool_one, (box_indices, h_lo, h_hi, w_lo, w_hi))


# ----------------------------------------------------------------------------------------------
# Multi-level (FPN) RoI Align
# ----------------------------------------------------------------------------------------------


def infer_scale(feature_size: Sequence[int], image_size: Sequence[int]) -> float:
    """The power-of-two spatial scale of a feature map, as torchvision MultiScaleRoIAlign infers it."""
    scales = [2.0 ** round(math.log2(f / i)) for f, i in zip(feature_size, image_size)]
    if len(set(scales)) != 1:
        raise ValueError(
            f"feature map {tuple(feature_size)} has different scales {scales} along the axes of image {tuple(image_size)}"
        )
    return scales[0]


def assign_fpn_levels(
    boxes: Array,
    *,
    min_level: int,
    max_level: int,
    canonical_level: int = 4,
    canonical_size: float = 224.0,
    eps: float = 1e-6,
) -> Array:
    """FPN level of each RoI (Lin et al. 2017, eq. 1), minus `min_level`: `int32[K]` in [0, L).

    level = clamp(floor(k0 + log2(sqrt(area) / 224) + eps), min_level, max_level), with k0 = 4,
    exactly torchvision's LevelMapper.
    """
    scale = jnp.sqrt(jnp.maximum(box_area(boxes), 0))
    levels = jnp.floor(canonical_level + jnp.log2(scale / canonical_size) + eps)
    return (jnp.clip(levels, min_level, max_level) - min_level).astype(jnp.int32)


def multiscale_roi_align(
    features: Sequence[Array],
    boxes: Array,
    box_indices: Array,
    *,
    image_size: Sequence[int],
    output_size: int | Sequence[int],
    sampling_ratio: int = 2,
    aligned: bool = False,
    canonical_level: int = 4,
    canonical_size: float = 224.0,
) -> Array:
    """RoI Align over an FPN pyramid: each RoI is pooled from the level its size selects.

    torchvision MultiScaleRoIAlign semantics: level scales are inferred as powers of two from the
    feature-map and image sizes; min/max level come from the first/last map; the LevelMapper assigns
    levels (canonical level 4 for a 224x224 box).

    Args:
      features: sequence of `float[B, H_l, W_l, C]`, finest first (e.g. P2..P5).
      boxes: `float[K, 4]` xyxy image pixels; box_indices: `int[K]`.
      image_size: `(height, width)` of the (padded) input images, static.
    Returns `float[K, out_h, out_w, C]`. Every level is computed for every RoI and the right one
    selected (static shapes); with the matmul RoI Align the cost is dominated by the finest level.
    """
    if len(features) == 0:
        raise ValueError("features must hold at least one feature map")
    if len(image_size) != 2:
        raise ValueError(f"image_size must be (height, width), got {image_size!r}")
    scales = [infer_scale(f.shape[1:3], image_size) for f in features]
    min_level = int(round(-math.log2(scales[0])))
    max_level = int(round(-math.log2(scales[-1])))
    if max_level - min_level + 1 != len(features):
        raise ValueError(f"features must be consecutive pyramid levels, got scales {scales}")
    levels = assign_fpn_levels(
        jnp.asarray(boxes), min_level=min_level, max_level=max_level,
        canonical_level=canonical_level, canonical_size=canonical_size,
    )
    result = None
    for level, (fmap, scale) in enumerate(zip(features, scales)):
        pooled = roi_align(
            fmap, boxes, box_indices, output_size=output_size, spatial_scale=scale,
            sampling_ratio=sampling_ratio, aligned=aligned,
        )
        chosen = (levels == level)[:, None, None, None]
        result = jnp.where(chosen, pooled, 0 if result is None else result)
    return result

