"""RandAugment on one HWC image: `num_ops` ops drawn uniformly by key, all at one magnitude.

Op list and magnitude scales follow torchvision's `RandAugment` (31 magnitude bins, default
magnitude 9), expressed for float images in `[0, max_value]`:

| op | magnitude at bin m of 0..30 | signed |
|---|---|---|
| Identity, AutoContrast, Equalize | none | |
| ShearX, ShearY | shear factor 0.3 * m / 30 (about the top-left corner, as PIL/torchvision) | yes |
| TranslateX, TranslateY | 150/331 * width (height) * m / 30 pixels | yes |
| Rotate | 30 * m / 30 degrees about the centre | yes |
| Brightness, Color, Contrast, Sharpness | factor 1 + 0.9 * m / 30 | yes |
| Posterize | 8 - round(m / 7.5) bits kept | |
| Solarize | threshold max_value * (1 - m / 30) | |

The op index is chosen by key: each step resamples once through the drawn geometric op's matrix
(the identity matrix for the other ops, which resamples exactly) and then runs a `lax.switch` over
the pixel ops; under `vmap` a switch on a batched index runs every branch and selects, so a step
costs one warp plus the nine pixel ops. Geometric ops are bilinear (torchvision defaults to
nearest) with `fill` outside. Posterize and Equalize quantize to 256 levels
(`round(x / max_value * 255)`) as the uint8 originals do.
Source: Cubuk et al. 2020 ("RandAugment: practical automated data augmentation with a reduced
search space").
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxvision.data.augment import color, sampling
from jaxvision.types import Array

RANDAUGMENT_OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate",
                   "brightness", "color", "contrast", "sharpness", "posterize", "solarize",
                   "autocontrast", "equalize")


def _to_levels(image: Array, max_value: float) -> Array:
    """Float image to int32 levels 0..255."""
    return jnp.clip(jnp.round(image / max_value * 255.0), 0, 255).astype(jnp.int32)


def autocontrast(image: Array, *, max_value: float = 1.0) -> Array:
    """Stretches each channel so its minimum maps to 0 and maximum to `max_value` (flat channels
    are left alone), as torchvision's `autocontrast` for float images."""
    low = image.min(axis=(0, 1), keepdims=True)  # [1, 1, C]
    high = image.max(axis=(0, 1), keepdims=True)
    flat = high == low
    scale = jnp.where(flat, 1.0, max_value / jnp.where(flat, 1.0, high - low))
    low = jnp.where(flat, 0.0, low)
    return jnp.clip((image - low) * scale, 0.0, max_value)


def equalize(image: Array, *, max_value: float = 1.0) -> Array:
    """Histogram equalization per channel on 256 levels, PIL's `ImageOps.equalize` algorithm.

    Returns levels / 255 * max_value.
    """
    levels = _to_levels(image, max_value)  # [H, W, C]

    def equalize_channel(channel):
        histogram = jnp.bincount(channel.reshape(-1), length=256)
        last_count = histogram[channel.max()]
        step = (channel.size - last_count) // 255
        cumulative = jnp.cumsum(histogram) - histogram  # counts strictly below each level
        lut = jnp.minimum((step // 2 + cumulative) // jnp.maximum(step, 1), 255)
        return jnp.where(step == 0, channel, lut[channel])

    equalized = jax.vmap(equalize_channel, in_axes=-1, out_axes=-1)(levels)
    return equalized.astype(jnp.float32) / 255.0 * max_value


def posterize(image: Array, bits, *, max_value: float = 1.0) -> Array:
    """Keeps the top `bits` (1..8, may be traced) of each 8-bit level."""
    levels = _to_levels(image, max_value)
    mask = 256 - jnp.left_shift(1, 8 - jnp.asarray(bits, jnp.int32))
    return jnp.bitwise_and(levels, mask).astype(jnp.float32) / 255.0 * max_value


def solarize(image: Array, threshold, *, max_value: float = 1.0) -> Array:
    """Inverts (`max_value - x`) every value at or above `threshold`."""
    return jnp.where(image >= threshold, max_value - image, image)


def adjust_sharpness(image: Array, factor, *, max_value: float = 1.0) -> Array:
    """Blends with a 3x3 smoothed image (centre weight 5/13, border pixels kept), as PIL/torchvision.

    factor 0 gives the smoothed image, 1 the original, >1 sharper; clipped to `[0, max_value]`.
    """
    height, width = image.shape[:2]
    if height < 3 or width < 3:
        return image
    # Separable 3x3 box sum on a padded copy, plus 4x the centre: weights 1 around, 5 in the middle.
    # Written without slice-assignment and as two passes of 3 slices, because XLA on CPU recomputes
    # 9-slice sums of a fused producer when sharpness follows another op (8x slower in RandAugment).
    padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)))
    column_sums = padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]  # [H + 2, W, C]
    box = column_sums[:-2] + column_sums[1:-1] + column_sums[2:]  # [H, W, C]
    smoothed = (box + 4.0 * image) / 13.0
    rows = jnp.arange(height).reshape(height, 1, 1)
    cols = jnp.arange(width).reshape(1, width, 1)
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    degenerate = jnp.where(interior, smoothed, image)
    return jnp.clip(factor * image + (1.0 - factor) * degenerate, 0.0, max_value)


GEOMETRIC_OPS = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")


def make_randaugment_ops(image_shape: Sequence[int], *, magnitude: int, num_magnitude_bins: int = 31,
                         ops: Sequence[str] = RANDAUGMENT_OPS,
                         max_value: float = 1.0) -> list[tuple[Callable, Callable]]:
    """Per op in `ops`, a pair `(matrix_fn(sign) -> [3, 3], pixel_fn(image, sign) -> image)`.

    Geometric ops are an input->output matrix and the identity on pixels; the others the identity
    matrix and a pixel function. `sign` is +1.0 or -1.0 (ignored by unsigned ops); magnitudes are
    bound for `magnitude`. Raises ValueError on unknown op names or a magnitude outside
    `[0, num_magnitude_bins)`.
    """
    if not (isinstance(magnitude, int) and 0 <= magnitude < num_magnitude_bins):
        raise ValueError(f"magnitude must be an int in [0, {num_magnitude_bins}), got {magnitude!r}")
    unknown = [name for name in ops if name not in RANDAUGMENT_OPS]
    if unknown or not ops:
        raise ValueError(f"ops must be a non-empty subset of {RANDAUGMENT_OPS}, got {ops!r}")
    height, width = int(image_shape[0]), int(image_shape[1])
    level = magnitude / (num_magnitude_bins - 1) if num_magnitude_bins > 1 else 0.0
    shear = 0.3 * level
    shift = 150.0 / 331.0 * level
    enhance = 0.9 * level
    bits = 8 - int(round(4.0 * level))
    identity_matrix = lambda s: jnp.eye(3, dtype=jnp.float32)  # noqa: E731
    identity_pixels = lambda x, s: x  # noqa: E731
    matrices = {
        "shear_x": lambda s: sampling.shear_matrix(s * shear, 0.0),
        "shear_y": lambda s: sampling.shear_matrix(0.0, s * shear),
        "translate_x": lambda s: sampling.translation_matrix(s * shift * width, 0.0),
        "translate_y": lambda s: sampling.translation_matrix(0.0, s * shift * height),
        "rotate": lambda s: sampling.centered_affine_matrix((width / 2.0, height / 2.0),
                                                            degrees=s * 30.0 * level),
    }
    pixels = {
        "identity": identity_pixels,
        "brightness": lambda x, s: color.adjust_brightness(x, 1.0 + s * enhance,
                                                           max_value=max_value),
        "color": lambda x, s: color.adjust_saturation(x, 1.0 + s * enhance, max_value=max_value),
        "contrast": lambda x, s: color.adjust_contrast(x, 1.0 + s * enhance, max_value=max_value),
        "sharpness": lambda x, s: adjust_sharpness(x, 1.0 + s * enhance, max_value=max_value),
        "posterize": lambda x, s: posterize(x, bits, max_value=max_value),
        "solarize": lambda x, s: solarize(x, max_value * (1.0 - level), max_value=max_value),
        "autocontrast": lambda x, s: autocontrast(x, max_value=max_value),
        "equalize": lambda x, s: equalize(x, max_value=max_value),
    }
    return [(matrices.get(name, identity_matrix), pixels.get(name, identity_pixels))
            for name in ops]


def rand_augment(key: jax.Array, image: Array, *, num_ops: int = 2, magnitude: int = 9,
                 num_magnitude_bins: int = 31, ops: Sequence[str] = RANDAUGMENT_OPS, fill=0.0,
                 max_value: float = 1.0) -> Array:
    """Applies `num_ops` ops, each drawn uniformly from `ops` with a random sign, at `magnitude`.

    Image `[H, W, C]` in `[0, max_value]`; returns float32 of the same shape in that range. See the
    module docstring for the op table. Each step is one warp (the drawn geometric op's matrix, or the
    identity, which resamples exactly) followed by one `lax.switch` over the pixel ops, so under
    vmap a step costs one resample rather than one per geometric op.
    Source: Cubuk et al. 2020; parameters as torchvision.
    """
    sampling.check_image(image)
    if not isinstance(num_ops, int) or num_ops < 0:
        raise ValueError(f"num_ops must be a non-negative int, got {num_ops!r}")
    table = make_randaugment_ops(image.shape, magnitude=magnitude,
                                 num_magnitude_bins=num_magnitude_bins, ops=ops, max_value=max_value)
    pixel_ops = [pixel_fn for _, pixel_fn in table]
    uses_warp = any(name in GEOMETRIC_OPS for name in ops)
    image = image.astype(jnp.float32)
    op_key, sign_key = jax.random.split(key)
    op_indices = jax.random.randint(op_key, (num_ops,), 0, len(table))
    signs = jnp.where(jax.random.bernoulli(sign_key, 0.5, (num_ops,)), -1.0, 1.0)
    for step in range(num_ops):
        if uses_warp:
            matrices = jnp.stack([matrix_fn(signs[step]) for matrix_fn, _ in table])  # [ops, 3, 3]
            image = sampling.warp(image, matrices[op_indices[step]], image.shape[:2],
                                  mode="constant", fill=fill)
        image = lax.switch(op_indices[step], pixel_ops, image, signs[step])
    return image
