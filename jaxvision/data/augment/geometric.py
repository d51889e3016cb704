"""Geometric transforms of one HWC image, each `transform(key, image, **hyperparameters) -> image`.

Bind hyperparameters with `functools.partial` and batch with `apply_to_batch` (vmap). Every random
choice that depends on the data-independent key is drawn by a `*_matrix` function returning an
input->output affine matrix, shared with the box/mask/keypoint-aware versions in `examples.py`, so
an image and its annotations always receive the same geometry.

Images may hold any value range: these transforms only move pixels (bilinear mixing of neighbours,
`fill` outside the source).
"""

from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxvision.data.augment import sampling
from jaxvision.types import Array


def _as_size(size, image_shape, name: str = "size") -> tuple[int, int]:
    if size is None:
        return int(image_shape[0]), int(image_shape[1])
    height, width = sampling.pair(size, name)
    if not all(isinstance(v, int) and v > 0 for v in (height, width)):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {size!r}")
    return height, width


# --- random crop with padding ---------------------------------------------------------------------

def random_crop_offsets(key: jax.Array, image_shape, *, size=None, padding=0):
    """Draws the crop of `random_crop`: returns `(offset_y, offset_x, (h, w), (pad_y, pad_x))`.

    Offsets are float32 integers into the padded image, uniform over every position that fits.
    """
    pad_y, pad_x = sampling.pair(padding, "padding")
    if not all(isinstance(v, int) and v >= 0 for v in (pad_y, pad_x)):
        raise ValueError(f"padding must be a non-negative int or a pair of them, got {padding!r}")
    height, width = _as_size(size, image_shape)
    padded_h, padded_w = image_shape[0] + 2 * pad_y, image_shape[1] + 2 * pad_x
    if height > padded_h or width > padded_w:
        raise ValueError(f"size {(height, width)} is larger than the padded image "
                         f"{(padded_h, padded_w)} (image {tuple(image_shape[:2])}, padding {padding})")
    key_y, key_x = jax.random.split(key)
    offset_y = sampling.random_offset(key_y, padded_h - height)
    offset_x = sampling.random_offset(key_x, padded_w - width)
    return offset_y, offset_x, (height, width), (pad_y, pad_x)


def random_crop_matrix(key: jax.Array, image_shape, *, size=None, padding=0):
    """`(matrix, out_shape)` of `random_crop`, for the annotation-aware version."""
    offset_y, offset_x, out_shape, (pad_y, pad_x) = random_crop_offsets(
        key, image_shape, size=size, padding=padding)
    return sampling.translation_matrix(pad_x - offset_x, pad_y - offset_y), out_shape


def random_crop(key: jax.Array, image: Array, *, size=None, padding=0,
                padding_mode: str = "constant", fill=0.0) -> Array:
    """Pads by `padding` pixels on each side, then takes a random `size` crop (torchvision RandomCrop).

    The CIFAR recipe is `size=None` (the input size) and `padding=4`. `padding_mode` is `"constant"`
    (`fill`), `"reflect"` (edge not repeated) or `"edge"`. A fixed-size crop at a random offset needs
    no resampling: `lax.dynamic_slice` with static sizes. Returns `[h, w, C]` in the input dtype.
    Source: Krizhevsky et al. 2012 (random crops); He et al. 2016 (pad-4 crops on CIFAR).
    """
    sampling.check_image(image)
    if padding_mode not in sampling.PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {sampling.PADDING_MODES}, got {padding_mode!r}")
    offset_y, offset_x, (height, width), (pad_y, pad_x) = random_crop_offsets(
        key, image.shape, size=size, padding=padding)
    widths = ((pad_y, pad_y), (pad_x, pad_x), (0, 0))
    if padding_mode == "constant":
        padded = jnp.pad(image, widths, constant_values=jnp.asarray(fill, image.dtype))
    else:
        padded = jnp.pad(image, widths, mode=padding_mode)
    start = (offset_y.astype(jnp.int32), offset_x.astype(jnp.int32), jnp.int32(0))
    return lax.dynamic_slice(padded, start, (height, width, image.shape[2]))


# --- flips ------------------------------------------------------------------------------------------

def flip_matrix(key: jax.Array, image_shape, *, horizontal: bool = True, p: float = 0.5):
    """`(matrix, out_shape, flipped)`: the mirror matrix with probability `p`, else the identity."""
    flipped = jax.random.bernoulli(key, p)
    if horizontal:
        mirror = sampling.horizontal_flip_matrix(image_shape[1])
    else:
        mirror = sampling.vertical_flip_matrix(image_shape[0])
    matrix = jnp.where(flipped, mirror, jnp.eye(3, dtype=jnp.float32))
    return matrix, (int(image_shape[0]), int(image_shape[1])), flipped


def horizontal_flip(key: jax.Array, image: Array, *, p: float = 0.5) -> Array:
    """Mirrors left-right with probability `p`. Returns the input shape and dtype."""
    sampling.check_image(image)
    return jnp.where(jax.random.bernoulli(key, p), image[:, ::-1], image)


def vertical_flip(key: jax.Array, image: Array, *, p: float = 0.5) -> Array:
    """Mirrors top-bottom with probability `p`. Returns the input shape and dtype."""
    sampling.check_image(image)
    return jnp.where(jax.random.bernoulli(key, p), image[::-1], image)


# --- random resized crop (Inception) ------------------------------------------------------------------

def random_resized_crop_box(key: jax.Array, height: int, width: int, *,
                            scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), num_attempts: int = 10):
    """torchvision's `RandomResizedCrop.get_params` with a fixed number of vectorized attempts.

    Returns float32 scalars `(y0, x0, h, w)` in pixels: the first of `num_attempts` candidates that
    fits, else the central crop with the aspect ratio clamped into `ratio`.
    """
    if not (0 < scale[0] <= scale[1]):
        raise ValueError(f"scale must satisfy 0 < scale[0] <= scale[1], got {scale!r}")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio must satisfy 0 < ratio[0] <= ratio[1], got {ratio!r}")
    size_key, y_key, x_key = jax.random.split(key, 3)
    crop_h, crop_w = sampling.sample_area_ratio_sizes(size_key, height, width, scale, ratio,
                                                      num_attempts)
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = jnp.argmax(fits)
    # Fallback, decided on static facts: the whole image, or its centre at the nearest allowed ratio.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = int(round(height * ratio[1])), height
    else:
        fallback_w, fallback_h = width, height
    any_fits = fits.any()
    crop_h = jnp.where(any_fits, crop_h[first], fallback_h).astype(jnp.float32)
    crop_w = jnp.where(any_fits, crop_w[first], fallback_w).astype(jnp.float32)
    y0 = jnp.where(any_fits, sampling.random_offset(y_key, height - crop_h),
                   (height - fallback_h) // 2)
    x0 = jnp.where(any_fits, sampling.random_offset(x_key, width - crop_w),
                   (width - fallback_w) // 2)
    return y0.astype(jnp.float32), x0.astype(jnp.float32), crop_h, crop_w


def crop_resize_matrix(y0, x0, crop_h, crop_w, out_shape) -> Array:
    """Maps the box `(y0, x0, crop_h, crop_w)` of the input onto the whole `out_shape` output."""
    out_h, out_w = out_shape
    return (sampling.scale_matrix(out_w / crop_w, out_h / crop_h)
            @ sampling.translation_matrix(-x0, -y0))


def random_resized_crop_matrix(key: jax.Array, image_shape, *, size, scale=(0.08, 1.0),
                               ratio=(3 / 4, 4 / 3), num_attempts: int = 10):
    """`(matrix, out_shape)` of `random_resized_crop`."""
    out_shape = _as_size(size, image_shape)
    y0, x0, crop_h, crop_w = random_resized_crop_box(
        key, int(image_shape[0]), int(image_shape[1]), scale=scale, ratio=ratio,
        num_attempts=num_attempts)
    return crop_resize_matrix(y0, x0, crop_h, crop_w, out_shape), out_shape


def random_resized_crop(key: jax.Array, image: Array, *, size, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3), num_attempts: int = 10) -> Array:
    """Inception-style crop: area fraction in `scale`, aspect ratio (w/h) in `ratio`, resized to `size`.

    The crop size depends on the key, so instead of slicing the output grid is mapped back into the
    crop and sampled bilinearly (fixed `[size, size, C]` float32 output, no anti-aliasing, edge
    padding for samples that fall half a pixel outside). Source: Szegedy et al. 2015 ("Going deeper
    with convolutions"); parameters as torchvision `RandomResizedCrop`.
    """
    sampling.check_image(image)
    matrix, out_shape = random_resized_crop_matrix(key, image.shape, size=size, scale=scale,
                                                   ratio=ratio, num_attempts=num_attempts)
    return sampling.warp(image, matrix, out_shape, mode="edge")


# --- ResNet scale augmentation ------------------------------------------------------------------------

def scale_augment_matrix(key: jax.Array, image_shape, *, size=224, short_side_range=(256, 480)):
    """`(matrix, out_shape)` of `scale_augment`: a resize then an integer-offset crop, one matrix."""
    out_h, out_w = _as_size(size, image_shape)
    low, high = short_side_range
    if not (isinstance(low, int) and isinstance(high, int) and max(out_h, out_w) <= low <= high):
        raise ValueError(f"short_side_range must be ints with max(size) <= low <= high, "
                         f"got {short_side_range!r} for size {(out_h, out_w)}")
    height, width = int(image_shape[0]), int(image_shape[1])
    side_key, y_key, x_key = jax.random.split(key, 3)
    short_side = jax.random.randint(side_key, (), low, high + 1).astype(jnp.float32)
    factor = short_side / min(height, width)
    resized_h = jnp.round(height * factor)
    resized_w = jnp.round(width * factor)
    offset_y = sampling.random_offset(y_key, resized_h - out_h)
    offset_x = sampling.random_offset(x_key, resized_w - out_w)
    matrix = (sampling.translation_matrix(-offset_x, -offset_y)
              @ sampling.scale_matrix(resized_w / width, resized_h / height))
    return matrix, (out_h, out_w)


def scale_augment(key: jax.Array, image: Array, *, size=224, short_side_range=(256, 480)) -> Array:
    """ResNet scale augmentation: short side resized to L ~ U{256..480}, then a random `size` crop.

    Done as one bilinear resample from the output grid (no intermediate resized image, no
    anti-aliasing). Returns float32 `[size, size, C]`. Combine with `horizontal_flip` for the full
    recipe. Source: He et al. 2016, Sec. 3.4 (after Simonyan & Zisserman 2015).
    """
    sampling.check_image(image)
    matrix, out_shape = scale_augment_matrix(key, image.shape, size=size,
                                             short_side_range=short_side_range)
    return sampling.warp(image, matrix, out_shape, mode="edge")


# --- resize and centre crop (deterministic) -----------------------------------------------------------

def resize_matrix(image_shape, size):
    """`(matrix, out_shape)` stretching the whole image onto `size = (h, w)`."""
    out_h, out_w = _as_size(size, image_shape)
    return sampling.scale_matrix(out_w / image_shape[1], out_h / image_shape[0]), (out_h, out_w)


def resize(image: Array, *, size, antialias: bool = True) -> Array:
    """Deterministic bilinear resize of one HWC image to `size = (h, w)` (float32).

    `jax.image.resize`, anti-aliased when shrinking, same pixel-centre convention as the warps.
    Not random, so it takes no key; in a transform list write `lambda key, x: resize(x, size=...)`.
    """
    sampling.check_image(image)
    out_h, out_w = _as_size(size, image.shape)
    return jax.image.resize(image.astype(jnp.float32), (out_h, out_w, image.shape[2]),
                            method="bilinear", antialias=antialias)


def center_crop(image: Array, *, size) -> Array:
    """The central `size` crop (static slice; rounds the offset down like torchvision's CenterCrop)."""
    sampling.check_image(image)
    out_h, out_w = _as_size(size, image.shape)
    if out_h > image.shape[0] or out_w > image.shape[1]:
        raise ValueError(f"size {(out_h, out_w)} is larger than the image {image.shape[:2]}")
    top = int(round((image.shape[0] - out_h) / 2.0))
    left = int(round((image.shape[1] - out_w) / 2.0))
    return image[top:top + out_h, left:left + out_w]


# --- random affine -----------------------------------------------------------------------------------

def random_affine_matrix(key: jax.Array, image_shape, *, degrees: float = 0.0,
                         translate: Sequence[float] = (0.0, 0.0), scale: Sequence[float] = (1.0, 1.0),
                         shear: Sequence[float] = (0.0, 0.0)):
    """`(matrix, out_shape)` of `random_affine` (torchvision `RandomAffine.get_params` ranges)."""
    if degrees < 0 or any(v < 0 for v in translate) or any(v < 0 for v in shear):
        raise ValueError(f"degrees, translate and shear must be non-negative, got {degrees!r}, "
                         f"{translate!r}, {shear!r}")
    if len(translate) != 2 or len(scale) != 2 or len(shear) != 2:
        raise ValueError(f"translate, scale and shear must be pairs, got {translate!r}, {scale!r}, "
                         f"{shear!r}")
    height, width = int(image_shape[0]), int(image_shape[1])
    angle_key, tx_key, ty_key, scale_key, sx_key, sy_key = jax.random.split(key, 6)
    angle = jax.random.uniform(angle_key, minval=-degrees, maxval=degrees)
    tx = jnp.round(jax.random.uniform(tx_key, minval=-1.0, maxval=1.0) * translate[0] * width)
    ty = jnp.round(jax.random.uniform(ty_key, minval=-1.0, maxval=1.0) * translate[1] * height)
    factor = jax.random.uniform(scale_key, minval=scale[0], maxval=scale[1])
    shear_x = jax.random.uniform(sx_key, minval=-shear[0], maxval=shear[0])
    shear_y = jax.random.uniform(sy_key, minval=-shear[1], maxval=shear[1])
    matrix = sampling.centered_affine_matrix(
        (width / 2.0, height / 2.0), degrees=angle, translate=(tx, ty), scale=factor,
        shear=(jnp.tan(jnp.deg2rad(shear_x)), jnp.tan(jnp.deg2rad(shear_y))))
    return matrix, (height, width)


def random_affine(key: jax.Array, image: Array, *, degrees: float = 0.0,
                  translate: Sequence[float] = (0.0, 0.0), scale: Sequence[float] = (1.0, 1.0),
                  shear: Sequence[float] = (0.0, 0.0), fill=0.0) -> Array:
    """Random rotation, translation, scale and shear about the image centre, bilinear, `fill` outside.

    angle ~ U(-degrees, degrees) (counter-clockwise on screen); translation ~ U(-t, t) * (W, H),
    rounded to pixels; scale ~ U(*scale); shear angles (degrees) ~ U(-shear[0], shear[0]) along x and
    U(-shear[1], shear[1]) along y. Returns float32 of the input shape. Ranges as torchvision
    `RandomAffine`.
    """
    sampling.check_image(image)
    matrix, out_shape = random_affine_matrix(key, image.shape, degrees=degrees, translate=translate,
                                             scale=scale, shear=shear)
    return sampling.warp(image, matrix, out_shape, mode="constant", fill=fill)

