"""Learned and fixed upsampling: transposed convolution with a bilinear initialisation (FCN).

A transposed convolution with stride f, kernel k and (PyTorch) padding p = (k - f) // 2 maps
`[N, H, W, C]` to `[N, f H, f W, C']`. FCN (Long et al., CVPR 2015, section 3.3) initialises it
to bilinear interpolation (`bilinear_kernel`, the `get_upsampling_weight` of the FCN code, k = 2f
- f mod 2): on interior pixels that equals `jax.image.resize(..., "bilinear")` (half-pixel
centres); at the border it differs because the transposed convolution sees zeros outside the
image where resize clamps.

Three formulations of the same layer (`formulation`):
- "transpose": `lax.conv_general_dilated` with `lhs_dilation=f`, the textbook form (what
  `lax.conv_transpose` and `flax.linen.ConvTranspose` run); most of its work multiplies the
  inserted zeros, and XLA's CPU/GPU kernels for it are slow in some shapes (PERF.md).
- "subpixel": the same numbers computed as one stride-1 convolution of the *input* with
  f x f kernel phases stacked as channels, then depth-to-space (Shi et al., "Real-time single
  image and video super-resolution...", CVPR 2016, show the equivalence). Identical results up to
  float rounding (tests check it), no multiplications by inserted zeros.
- "resize" (fixed bilinear only): `jax.image.resize`; equal on interior pixels, not at the border.
experiments/bench_segmentation.py measures them; the default is the fastest exact one.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.types import Array

FORMULATIONS = ("transpose", "subpixel", "resize")
DEFAULT_FORMULATION = "subpixel"  # fastest exact formulation in bench_segmentation.py (CPU)


def bilinear_kernel(factor: int, in_channels: int, out_channels: int, *, depthwise: bool = False) -> np.ndarray:
    """`float32[k, k, in, out]` (HWIO) bilinear upsampling kernel, k = 2 factor - factor % 2.

    Channel i reads only input channel i (zeros elsewhere), as FCN's initialisation. With
    `depthwise=True` the shape is `[k, k, 1, out]` for a grouped convolution with `out` groups.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    size = 2 * factor - factor % 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1 - np.abs(np.arange(size) - center) / factor  # [k]
    filt = np.outer(taps, taps).astype(np.float32)  # [k, k]
    if depthwise:
        return np.broadcast_to(filt[:, :, None, None], (size, size, 1, out_channels)).copy()
    kernel = np.zeros((size, size, in_channels, out_channels), np.float32)
    for c in range(min(in_channels, out_channels)):
        kernel[:, :, c, c] = filt
    return kernel


def _subpixel_taps(kernel_size: int, factor: int, low: int) -> tuple[np.ndarray, int]:
    """For each output phase r and input offset d, the kernel tap j that links them (or -1).

    With the input dilated by `factor` and padded by `low`, output y = q f + r reads input
    q + d through tap j when (r + j - low) = d f. Returns `(taps int[D, f], d_min)`.
    """
    pairs = [(r, j, (r + j - low) // factor) for r in range(factor) for j in range(kernel_size)
             if (r + j - low) % factor == 0]
    offsets = [d for _, _, d in pairs]
    d_min, d_max = min(offsets), max(offsets)
    taps = np.full((d_max - d_min + 1, factor), -1, np.int64)
    for r, j, d in pairs:
        taps[d - d_min, r] = j
    return taps, d_min


def transposed_conv(x: Array, kernel: Array, factor: int, *, padding: int | None = None, groups: int = 1,
                    formulation: str = DEFAULT_FORMULATION) -> Array:
    """Transposed convolution of `x [N, H, W, Cin]` with `kernel [k, k, Cin / groups, Cout]`.

    Stride `factor`, PyTorch-style `padding` (default (k - f) // 2, which gives `[N, f H, f W, Cout]`
    for k in {f, 2f - 1, 2f}); the kernel is applied unflipped (lax.conv_transpose's default).
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape [N, H, W, C], got {x.shape}")
    size = kernel.shape[0]
    if kernel.ndim != 4 or kernel.shape[1] != size or kernel.shape[2] * groups != x.shape[-1]:
        raise ValueError(f"kernel must have shape [k, k, {x.shape[-1] // groups}, Cout], got {kernel.shape}")
    if formulation not in ("transpose", "subpixel"):
        raise ValueError(f"formulation must be 'transpose' or 'subpixel', got {formulation!r}")
    padding = (size - factor) // 2 if padding is None else padding
    low = size - 1 - padding  # padding of the dilated input
    batch, height, width, _ = x.shape
    out_h, out_w = (height - 1) * factor - 2 * padding + size, (width - 1) * factor - 2 * padding + size
    dims = ("NHWC", "HWIO", "NHWC")
    if formulation == "transpose":
        return jax.lax.conv_general_dilated(
            x, kernel.astype(x.dtype), (1, 1), [(low, low), (low, low)], lhs_dilation=(factor, factor),
            dimension_numbers=dims, feature_group_count=groups,
        )
    taps, d_min = _subpixel_taps(size, factor, low)  # [D, f]
    span = taps.shape[0]
    padded_kernel = jnp.concatenate([kernel, jnp.zeros((1, *kernel.shape[1:]), kernel.dtype)], axis=0)
    padded_kernel = jnp.concatenate([padded_kernel, jnp.zeros((size + 1, 1, *kernel.shape[2:]), kernel.dtype)], axis=1)
    # -1 (no tap) indexes the zero row/column appended above.
    sub = padded_kernel[taps[:, None, :, None], taps[None, :, None, :]]  # [D, D, f, f, Cin/g, Cout]
    per_group = kernel.shape[3] // groups
    sub = sub.reshape(span, span, factor, factor, kernel.shape[2], groups, per_group)
    sub = sub.transpose(0, 1, 4, 5, 2, 3, 6).reshape(span, span, kernel.shape[2], groups * factor * factor * per_group)
    rows, cols = -(-out_h // factor), -(-out_w // factor)  # phases needed to cover the output
    pads = [(-d_min, rows + span - 1 + d_min - height), (-d_min, cols + span - 1 + d_min - width)]
    x = jnp.pad(x, [(0, 0), *[(max(lo, 0), max(hi, 0)) for lo, hi in pads], (0, 0)])
    x = x[:, max(-pads[0][0], 0):, max(-pads[1][0], 0):, :]
    y = jax.lax.conv_general_dilated(x, sub.astype(x.dtype), (1, 1), "VALID", dimension_numbers=dims,
                                     feature_group_count=groups)  # [N, rows, cols, g*f*f*m]
    y = y[:, :rows, :cols].reshape(batch, rows, cols, groups, factor, factor, per_group)
    y = y.transpose(0, 1, 4, 2, 5, 3, 6).reshape(batch, rows * factor, cols * factor, groups * per_group)
    return y[:, :out_h, :out_w]


class TransposedConv(nn.Module):
    """Learnable transposed convolution `[N, H, W, C] -> [N, f H, f W, features]`.

    `bilinear_init=True`: FCN's bilinear initialisation (kernel 2f - f mod 2), else a kernel of
    size `kernel_size` (default f, the U-Net "up-convolution": non-overlapping f x f) with
    lecun-normal init.
    """

    features: int
    factor: int = 2
    kernel_size: int | None = None
    bilinear_init: bool = False
    use_bias: bool = True
    formulation: str = DEFAULT_FORMULATION
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        in_channels = x.shape[-1]
        if self.bilinear_init:
            init_kernel = bilinear_kernel(self.factor, in_channels, self.features)
            kernel = self.param("kernel", lambda key, shape: jnp.asarray(init_kernel), init_kernel.shape)
        else:
            size = self.kernel_size or self.factor
            kernel = self.param("kernel", nn.initializers.lecun_normal(), (size, size, in_channels, self.features))
        y = transposed_conv(x.astype(self.dtype), kernel, self.factor, formulation=self.formulation)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype).reshape(1, 1, 1, -1)
        return y


def bilinear_upsample(x: Array, factor: int, *, formulation: str = DEFAULT_FORMULATION) -> Array:
    """Fixed (parameter-free) bilinear upsampling by an integer `factor`: `[N, f H, f W, C]`.

    "transpose"/"subpixel": a depthwise transposed convolution with `bilinear_kernel` (zeros
    outside the image); "resize": `jax.image.resize` (edge-clamped), equal on interior pixels.
    """
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    if factor == 1:
        return x
    batch, height, width, channels = x.shape
    if formulation == "resize":
        return jax.image.resize(x, (batch, factor * height, factor * width, channels), "bilinear")
    kernel = jnp.asarray(bilinear_kernel(factor, 1, channels, depthwise=True), x.dtype)
    return transposed_conv(x, kernel, factor, groups=channels, formulation=formulation)
