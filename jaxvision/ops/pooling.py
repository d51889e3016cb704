"""Max pooling that remembers where each maximum came from, and max unpooling (SegNet / DeconvNet).

Sources: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014
(switches); Noh et al., DeconvNet, ICCV 2015; Badrinarayanan et al., SegNet, TPAMI 2017;
torch.nn.functional.max_pool2d(return_indices=True) and max_unpool2d.
"""

from typing import Sequence

import jax.numpy as jnp

from jaxvision.types import Array


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    if len(value) != 2 or any(not isinstance(v, int) for v in value):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return tuple(value)


def max_pool_with_argmax(
    x: Array,
    window: int | Sequence[int],
    *,
    strides: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> tuple[Array, Array]:
    """2-D max pooling over NHWC that also returns the argmax positions.

    Args:
      x: `float[N, H, W, C]`. window, strides (default: window), padding (implicit -inf, symmetric).
    Returns:
      `(values float[N, oh, ow, C], indices int32[N, oh, ow, C])` with oh = (H + 2 pad - k) // s + 1;
      an index is the flat position `h * W + w` of the maximum in its (n, c) plane of `x`, as
      torch's max_pool2d(return_indices=True): first maximum in row-major window order, NaN wins.
    """
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must have shape [N, H, W, C], got {x.shape}")
    (kh, kw) = _pair(window, "window")
    (sh, sw) = _pair(window if strides is None else strides, "strides")
    (ph, pw) = _pair(padding, "padding")
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0 or ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"need window, strides >= 1 and 0 <= padding <= window // 2, got {window}, {strides}, {padding}")
    _, height, width, _ = x.shape
    out_h = (height + 2 * ph - kh) // sh + 1
    out_w = (width + 2 * pw - kw) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"window {window} is larger than the padded input {x.shape[1:3]}")
    padded = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=-jnp.inf)
    row0 = jnp.arange(out_h) * sh - ph  # [oh] window top in x's coordinates
    col0 = jnp.arange(out_w) * sw - pw
    # Start from the window's first in-bounds pixel with -inf, as torch's kernel.
    best = jnp.full((x.shape[0], out_h, out_w, x.shape[3]), -jnp.inf, x.dtype)
    first = jnp.maximum(row0, 0)[:, None] * width + jnp.maximum(col0, 0)[None, :]  # [oh, ow]
    index = jnp.broadcast_to(first[None, :, :, None], best.shape).astype(jnp.int32)
    for i in range(kh):
        for j in range(kw):
            value = padded[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw, :]
            flat = (row0 + i)[:, None] * width + (col0 + j)[None, :]  # [oh, ow]
            take = (value > best) | jnp.isnan(value)
            best = jnp.where(take, value, best)
            index = jnp.where(take, flat[None, :, :, None], index)
    return best, index


def max_unpool(values: Array, indices: Array, output_size: Sequence[int]) -> Array:
    """Put pooled `values [N, oh, ow, C]` back at their `indices` in a zero `[N, H, W, C]` map.

    The inverse of `max_pool_with_argmax` (torch max_unpool2d); `output_size` is `(H, W)` of the
    pooled input. Differentiable w.r.t. `values` (the gradient is a gather).
    """
    values = jnp.asarray(values)
    indices = jnp.asarray(indices)
    if values.ndim != 4:
        raise ValueError(f"values must have shape [N, oh, ow, C], got {values.shape}")
    if indices.shape != values.shape:
        raise ValueError(f"indices must have the shape of values {values.shape}, got {indices.shape}")
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise TypeError(f"indices must be integers, got {indices.dtype}")
    height, width = _pair(tuple(output_size), "output_size")
    batch, _, _, channels = values.shape
    flat_values = values.reshape(batch, -1, channels)
    flat_indices = indices.reshape(batch, -1, channels)
    n = jnp.arange(batch)[:, None, None]
    c = jnp.arange(channels)[None, None, :]
    out = jnp.zeros((batch, height * width, channels), values.dtype)
    out = out.at[n, flat_indices, c].set(flat_values, mode="drop")
    return out.reshape(batch, height, width, channels)
