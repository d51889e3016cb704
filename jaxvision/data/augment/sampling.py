"""Affine matrices and the resampler every geometric transform goes through.

Coordinates are continuous pixel coordinates, the convention of `jaxvision.types` boxes: pixel
`(row i, column j)` covers `[j, j + 1) x [i, i + 1)` and its centre is `(j + 0.5, i + 0.5)`; an image
of width `W` spans `x` in `[0, W]`. A horizontal flip is therefore exactly `x -> W - x`, and a box
`[x0, y0, x1, y1]` that encloses pixels `x0..x1-1` maps to the box enclosing the moved pixels.

Matrices are `float32[3, 3]` homogeneous transforms acting on column vectors `(x, y, 1)` and map
*input* coordinates to *output* coordinates (the direction boxes and keypoints move). `warp` inverts
the matrix and samples the input at the preimage of every output pixel centre, so any chain of crops,
resizes, flips and affine warps costs one resample ("one resample from the output grid").

Everything here is pure `jnp`, traceable, with output shapes fixed by Python ints.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxvision.types import Array

PADDING_MODES = ("constant", "edge", "reflect")


def affine_matrix(a, b, c, d, e, f) -> Array:
    """The matrix `[[a, b, c], [d, e, f], [0, 0, 1]]`; entries may be traced scalars."""
    zero = jnp.zeros((), jnp.float32)
    one = jnp.ones((), jnp.float32)
    entries = [jnp.asarray(v, jnp.float32) for v in (a, b, c, d, e, f)]
    return jnp.stack(entries + [zero, zero, one]).reshape(3, 3)


def translation_matrix(tx, ty) -> Array:
    """Moves content by `(tx, ty)` pixels."""
    return affine_matrix(1.0, 0.0, tx, 0.0, 1.0, ty)


def scale_matrix(sx, sy) -> Array:
    """Scales about the origin (the top-left corner of the image)."""
    return affine_matrix(sx, 0.0, 0.0, 0.0, sy, 0.0)


def rotation_matrix(degrees) -> Array:
    """Rotates about the origin, counter-clockwise as seen on screen (y points down)."""
    theta = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    return affine_matrix(cos, sin, 0.0, -sin, cos, 0.0)


def shear_matrix(shear_x, shear_y) -> Array:
    """`x' = x + shear_x * y` then `y' = y + shear_y * x'` (factors are tangents of shear angles)."""
    shear_x = jnp.asarray(shear_x, jnp.float32)
    shear_y = jnp.asarray(shear_y, jnp.float32)
    x_then_y = affine_matrix(1.0, shear_x, 0.0, shear_y, 1.0 + shear_y * shear_x, 0.0)
    return x_then_y


def horizontal_flip_matrix(width: int) -> Array:
    """`x -> width - x`: exact mirror of an image `width` pixels wide."""
    return affine_matrix(-1.0, 0.0, width, 0.0, 1.0, 0.0)


def vertical_flip_matrix(height: int) -> Array:
    """`y -> height - y`."""
    return affine_matrix(1.0, 0.0, 0.0, 0.0, -1.0, height)


def centered_affine_matrix(center, *, degrees=0.0, translate=(0.0, 0.0), scale=1.0,
                           shear=(0.0, 0.0)) -> Array:
    """Scale, shear and rotation about `center = (cx, cy)`, then a translation.

    Equals `T(center + translate) @ R(degrees) @ Shear(shear) @ S(scale) @ T(-center)`; `shear` is a
    pair of tangent factors (see `shear_matrix`). Entries may be traced.
    """
    cx, cy = center
    tx, ty = translate
    return (translation_matrix(cx + tx, cy + ty) @ rotation_matrix(degrees)
            @ shear_matrix(shear[0], shear[1]) @ scale_matrix(scale, scale)
            @ translation_matrix(-cx, -cy))


def invert_affine(matrix: Array) -> Array:
    """Closed-form inverse of an affine `[3, 3]` matrix (last row `[0, 0, 1]`)."""
    a, b, c = matrix[0, 0], matrix[0, 1], matrix[0, 2]
    d, e, f = matrix[1, 0], matrix[1, 1], matrix[1, 2]
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return affine_matrix(ia, ib, -(ia * c + ib * f), id_, ie, -(id_ * c + ie * f))


def transform_points(matrix: Array, points: Array) -> Array:
    """Applies `matrix` to `points` of shape `[..., 2]` (x, y); returns the same shape."""
    linear = matrix[:2, :2]
    offset = matrix[:2, 2].reshape((1,) * (points.ndim - 1) + (2,))
    return points @ linear.T + offset


def _fold_index(index: Array, size: int, mode: str) -> tuple[Array, Array]:
    """Maps integer indices into `[0, size)`; also returns whether the index was inside."""
    inside = (index >= 0) & (index < size)
    if mode == "reflect" and size > 1:
        # numpy/torch "reflect": the edge pixel is not repeated, period 2 * (size - 1).
        period = 2 * (size - 1)
        index = jnp.mod(index, period)
        index = jnp.where(index >= size, period - index, index)
    return jnp.clip(index, 0, size - 1), inside


def _gather(array: Array, rows: Array, cols: Array, mode: str, fill) -> Array:
    """`array[rows, cols]` for an array with leading spatial dims `[H, W, ...]`."""
    height, width = array.shape[:2]
    rows, rows_inside = _fold_index(rows, height, mode)
    cols, cols_inside = _fold_index(cols, width, mode)
    values = array[rows, cols]  # [Ho, Wo, ...]
    if mode != "constant":
        return values
    inside = (rows_inside & cols_inside).reshape(rows.shape + (1,) * (array.ndim - 2))
    return jnp.where(inside, values, jnp.asarray(fill, array.dtype))


def sample(array: Array, x: Array, y: Array, *, order: int = 1, mode: str = "constant",
           fill=0.0) -> Array:
    """Samples `array` (`[H, W, ...]`) at continuous pixel coordinates `x`, `y` (same shape `S`).

    `order=1` is bilinear between pixel centres (float output); `order=0` takes the pixel that
    contains the point (keeps the dtype; use it for masks and label maps). `mode` says what lies
    outside the array: `"constant"` (`fill`), `"edge"` (nearest edge pixel) or `"reflect"`.
    Returns `[*S, ...]`.
    """
    if mode not in PADDING_MODES:
        raise ValueError(f"mode must be one of {PADDING_MODES}, got {mode!r}")
    if order == 0:
        return _gather(array, jnp.floor(y).astype(jnp.int32), jnp.floor(x).astype(jnp.int32),
                       mode, fill)
    if order != 1:
        raise ValueError(f"order must be 0 (nearest) or 1 (bilinear), got {order!r}")
    # -0.5 so that integer positions land on pixel centres.
    x = x - 0.5
    y = y - 0.5
    x0 = jnp.floor(x)
    y0 = jnp.floor(y)
    trailing = (1,) * (array.ndim - 2)
    wx = (x - x0).reshape(x.shape + trailing)
    wy = (y - y0).reshape(y.shape + trailing)
    x0 = x0.astype(jnp.int32)
    y0 = y0.astype(jnp.int32)
    array = array.astype(jnp.float32)
    top = (_gather(array, y0, x0, mode, fill) * (1.0 - wx)
           + _gather(array, y0, x0 + 1, mode, fill) * wx)
    bottom = (_gather(array, y0 + 1, x0, mode, fill) * (1.0 - wx)
              + _gather(array, y0 + 1, x0 + 1, mode, fill) * wx)
    return top * (1.0 - wy) + bottom * wy


def output_grid(out_shape: Sequence[int]) -> tuple[Array, Array]:
    """Pixel-centre coordinates `(x [1, Wo], y [Ho, 1])` of an `out_shape = (Ho, Wo)` image."""
    out_height, out_width = out_shape
    x = (jnp.arange(out_width, dtype=jnp.float32) + 0.5).reshape(1, out_width)
    y = (jnp.arange(out_height, dtype=jnp.float32) + 0.5).reshape(out_height, 1)
    return x, y


def warp(array: Array, matrix: Array, out_shape: Sequence[int], *, order: int = 1,
         mode: str = "constant", fill=0.0) -> Array:
    """Resamples `array` (`[H, W, ...]`) through the input->output `matrix` onto `out_shape`.

    Returns `[Ho, Wo, ...]`: float32 for `order=1`, the input dtype for `order=0`. No anti-aliasing:
    shrinking by more than ~2x aliases (as `torch.nn.functional.grid_sample` does).
    """
    out_height, out_width = (int(v) for v in out_shape)
    inverse = invert_affine(matrix)
    x, y = output_grid((out_height, out_width))
    src_x = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]  # [Ho, Wo]
    src_y = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]  # [Ho, Wo]
    return sample(array, src_x, src_y, order=order, mode=mode, fill=fill)


def sample_area_ratio_sizes(key: jax.Array, height: int, width: int, scale: Sequence[float],
                            ratio: Sequence[float], num_attempts: int) -> tuple[Array, Array]:
    """`num_attempts` candidate `(h, w)` sizes with area fraction ~ U(scale), log(w/h) ~ U(log ratio).

    The rounding and distributions are torchvision's `RandomResizedCrop.get_params`; used by random
    resized crop and random erasing. Returns two int32 `[num_attempts]` arrays (not yet checked to fit).
    """
    area_key, ratio_key = jax.random.split(key)
    area = height * width * jax.random.uniform(area_key, (num_attempts,), minval=scale[0],
                                               maxval=scale[1])
    log_ratio = jax.random.uniform(ratio_key, (num_attempts,), minval=jnp.log(ratio[0]),
                                   maxval=jnp.log(ratio[1]))
    aspect = jnp.exp(log_ratio)
    crop_width = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    crop_height = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    return crop_height, crop_width


def random_offset(key: jax.Array, room) -> Array:
    """A uniform integer in `[0, room]` for a possibly traced int `room >= 0` (float32 result)."""
    return jnp.floor(jax.random.uniform(key) * (jnp.asarray(room, jnp.float32) + 1.0))


def check_image(image, name: str = "image") -> None:
    """Raises ValueError unless `image` is one HWC image (rank 3)."""
    if getattr(image, "ndim", None) != 3:
        raise ValueError(f"{name} must be one HWC image of rank 3 (vmap over the batch), "
                         f"got shape {getattr(image, 'shape', None)}")


def pair(value, name: str) -> tuple:
    """`value` as a pair: a number repeats, a 2-sequence passes; anything else raises ValueError."""
    if isinstance(value, (int, float)):
        return (value, value)
    if isinstance(value, Sequence) and len(value) == 2:
        return tuple(value)
    raise ValueError(f"{name} must be a number or a pair, got {value!r}")
