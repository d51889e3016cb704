"""Occlusion transforms of one HWC image: cutout and random erasing, as fixed-shape masks.

The erased rectangle's position and size are traced values, so it is drawn as a boolean mask built
from coordinate comparisons (`rows >= top & rows < bottom ...`), never as a dynamic slice.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxvision.data.augment import sampling
from jaxvision.types import Array


def rectangle_mask(shape: Sequence[int], top, left, height, width) -> Array:
    """bool `[H, W]`, True inside rows `[top, top + height)` and columns `[left, left + width)`."""
    rows = jnp.arange(shape[0]).reshape(shape[0], 1)
    cols = jnp.arange(shape[1]).reshape(1, shape[1])
    return (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)


def cutout(key: jax.Array, image: Array, *, size: int, fill=0.0, p: float = 1.0) -> Array:
    """Sets a `size x size` square to `fill`; its centre is uniform over the image, so it may be cut
    by the border (the paper's choice). Applied with probability `p`. Same shape and dtype.

    Source: DeVries & Taylor 2017 ("Improved regularization of convolutional neural networks with
    cutout"), e.g. size 16 on CIFAR-10.
    """
    sampling.check_image(image)
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    apply_key, y_key, x_key = jax.random.split(key, 3)
    height, width = image.shape[:2]
    center_y = jax.random.randint(y_key, (), 0, height)
    center_x = jax.random.randint(x_key, (), 0, width)
    mask = rectangle_mask((height, width), center_y - size // 2, center_x - size // 2, size, size)
    mask = mask & jax.random.bernoulli(apply_key, p)
    return jnp.where(mask[..., None], jnp.asarray(fill, image.dtype), image)


def random_erasing(key: jax.Array, image: Array, *, p: float = 0.5, scale=(0.02, 0.33),
                   ratio=(0.3, 3.3), value: float | str = 0.0, num_attempts: int = 10) -> Array:
    """With probability `p`, erases a rectangle of area fraction ~ U(scale), aspect w/h log-uniform in
    `ratio`, placed uniformly where it fits (first of `num_attempts` draws that fits, else nothing).

    `value` is a number, or `"random"` for per-pixel N(0, 1) noise (torchvision's choice, meant for
    images already normalized to zero mean and unit variance; the paper drew U[0, 255] on raw pixels).
    Returns float32 of the input shape. Source: Zhong et al. 2020 ("Random erasing data
    augmentation"), parameters as torchvision `RandomErasing`.
    """
    sampling.check_image(image)
    if not (isinstance(value, (int, float)) or value == "random"):
        raise ValueError(f"value must be a number or 'random', got {value!r}")
    apply_key, size_key, y_key, x_key, noise_key = jax.random.split(key, 5)
    height, width = image.shape[:2]
    erase_h, erase_w = sampling.sample_area_ratio_sizes(size_key, height, width, scale, ratio,
                                                        num_attempts)
    fits = (erase_h > 0) & (erase_h < height) & (erase_w > 0) & (erase_w < width)
    first = jnp.argmax(fits)
    erase_h, erase_w = erase_h[first], erase_w[first]
    top = sampling.random_offset(y_key, height - erase_h)
    left = sampling.random_offset(x_key, width - erase_w)
    mask = rectangle_mask((height, width), top, left, erase_h, erase_w)
    mask = mask & fits.any() & jax.random.bernoulli(apply_key, p)
    image = image.astype(jnp.float32)
    if value == "random":
        fill = jax.random.normal(noise_key, image.shape)
    else:
        fill = jnp.full(image.shape, value, jnp.float32)
    return jnp.where(mask[..., None], fill, image)
