"""Test-time augmentation: flip averaging, 10-crop, the multi-scale protocol and small shifts.

A TTA must suit the data: mirrored digits or text are other symbols, so for them use
`shift_average` (a few 1-2 pixel translations), never `flip_average`.

Every function takes `apply_fn(images [B, h, w, C]) -> logits [B, K]` (for a jaxvision model:
`lambda x: model.apply(variables, x, train=False)[0]`), applies the softmax to each view's logits and
returns the mean probability over views, float32 `[B, K]`. `apply_fn` must be traceable (views are
run with `lax.map`, one compiled call per view shape, one view in memory at a time). Images are
float32 `[B, H, W, C]`, already normalized as the model expects (resizing is linear, so it commutes
with per-channel normalization).

To average a TTA inside an ensemble, hand `ensemble_average` the log of the TTA probabilities as
logits: `lambda p, x: jnp.log(flip_average(lambda y: apply(p, y), x))` (softmax(log q) = q).
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxvision.types import Array

ApplyFn = Callable[[Array], Array]


def _check_images(images) -> None:
    if getattr(images, "ndim", None) != 4:
        raise ValueError(f"images must be a batch [B, H, W, C], got shape "
                         f"{getattr(images, 'shape', None)}")


def _mean_probabilities(apply_fn: ApplyFn, views: Array) -> Array:
    """views `[V, B, h, w, C]` -> mean over V of softmax(apply_fn(view)), `[B, K]`."""
    probabilities = jax.lax.map(lambda view: jax.nn.softmax(apply_fn(view).astype(jnp.float32)),
                                views)  # [V, B, K]
    return probabilities.mean(axis=0)


def flip_average(apply_fn: ApplyFn, images: Array) -> Array:
    """Mean probability of the images and their left-right mirrors (2 views)."""
    _check_images(images)
    return _mean_probabilities(apply_fn, jnp.stack([images, images[:, :, ::-1]]))


DEFAULT_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shift(images: Array, dy: int, dx: int) -> Array:
    """Translate `[B, H, W, C]` images by (dy, dx) pixels (down, right), same size; the uncovered
    border repeats the edge pixels (the background for digits, whatever the normalization)."""
    _check_images(images)
    height, width = images.shape[1:3]
    if abs(dy) >= height or abs(dx) >= width:
        raise ValueError(f"shift ({dy}, {dx}) must be smaller than the images {images.shape[1:3]}")
    pad_y, pad_x = abs(dy), abs(dx)
    padded = jnp.pad(images, ((0, 0), (pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="edge")
    top, left = pad_y - dy, pad_x - dx  # output pixel (i, j) reads input (i - dy, j - dx)
    return padded[:, top:top + height, left:left + width]


def shift_average(apply_fn: ApplyFn, images: Array, *,
                  shifts: Sequence[tuple[int, int]] = DEFAULT_SHIFTS) -> Array:
    """Mean probability over small translations of the images (default: identity and 1 pixel up,
    down, left, right). The TTA for data that must not be mirrored (digits, text)."""
    _check_images(images)
    if len(shifts) == 0:
        raise ValueError("shifts must hold at least one (dy, dx) pair")
    return _mean_probabilities(apply_fn, jnp.stack([shift(images, dy, dx) for dy, dx in shifts]))


def ten_crop(images: Array, crop_size: int | tuple[int, int]) -> Array:
    """The 4 corner crops and the centre crop, then the same 5 of the mirrored image.

    Returns `[10, B, h, w, C]` in torchvision `TenCrop` order (top-left, top-right, bottom-left,
    bottom-right, centre; then their flips). Source: Krizhevsky et al. 2012, Sec. 4.1.
    """
    _check_images(images)
    crop_h, crop_w = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    height, width = images.shape[1:3]
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop_size {crop_size!r} is larger than the images {images.shape[1:3]}")
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    origins = [(0, 0), (0, width - crop_w), (height - crop_h, 0), (height - crop_h, width - crop_w),
               (top, left)]
    crops = [images[:, y:y + crop_h, x:x + crop_w] for y, x in origins]
    return jnp.stack(crops + [crop[:, :, ::-1] for crop in crops])


def ten_crop_average(apply_fn: ApplyFn, images: Array, *, crop_size: int | tuple[int, int]) -> Array:
    """Mean probability over `ten_crop(images, crop_size)`. Source: Krizhevsky et al. 2012."""
    return _mean_probabilities(apply_fn, ten_crop(images, crop_size))


def resize_short_side(images: Array, size: int) -> Array:
    """Bilinear, anti-aliased resize so the shorter side is `size`; the longer side is
    `int(size * long / short)` (torchvision `Resize(int)`). Returns float32 `[B, h, w, C]`."""
    _check_images(images)
    height, width = images.shape[1:3]
    if height <= width:
        new_h, new_w = size, int(size * width / height)
    else:
        new_h, new_w = int(size * height / width), size
    return jax.image.resize(images.astype(jnp.float32), (images.shape[0], new_h, new_w,
                                                          images.shape[3]), method="bilinear")


def multi_scale_average(apply_fn: ApplyFn, images: Array, *,
                        scales: Sequence[int] = (224, 256, 384, 480, 640), crop_size: int = 224,
                        views: str = "ten_crop") -> Array:
    """The ResNet multi-scale protocol: resize the short side to each of `scales`, average over all
    views of all scales (each scale weighs the same).

    `views="ten_crop"`: 10 crops of `crop_size` per scale (50 views with the defaults).
    `views="full"`: the whole resized image and its mirror per scale, for fully-convolutional models
    with global pooling (the form the paper used for its best results).
    Source: He et al. 2016, Sec. 3.4 (after Simonyan & Zisserman 2015).
    """
    _check_images(images)
    if views not in ("ten_crop", "full"):
        raise ValueError(f"views must be 'ten_crop' or 'full', got {views!r}")
    if views == "ten_crop" and min(scales) < crop_size:
        raise ValueError(f"every scale must be >= crop_size {crop_size}, got scales {scales!r}")
    per_scale = []
    for size in scales:
        resized = resize_short_side(images, size)
        if views == "ten_crop":
            per_scale.append(ten_crop_average(apply_fn, resized, crop_size=crop_size))
        else:
            per_scale.append(flip_average(apply_fn, resized))
    return jnp.stack(per_scale).mean(axis=0)
