"""Photometric transforms of one HWC RGB image: colour jitter and AlexNet PCA lighting.

Value range: colour ops assume the image is in `[0, max_value]` *before* mean/std normalization
(`max_value=1.0` for float images scaled to [0, 1], `255.0` for raw pixel values) and clip their
result into that range, as torchvision does for float tensors. Apply normalization after them.
PCA lighting adds an RGB offset and does not clip (as fb.resnet.torch); its eigenvalues must be in
the same units as the image (the defaults are for [0, 1]).
"""

from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvision.data.augment import sampling
from jaxvision.types import Array

# ImageNet RGB covariance of [0, 1] pixels, as published with fb.resnet.torch (eigenvectors are
# columns, eigenvalues in decreasing order). Source: Krizhevsky et al. 2012, Sec. 4.1.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                       (-0.5808, -0.0045, -0.8140),
                       (-0.5836, -0.6948, 0.4203))

# ITU-R 601-2 luma, the weights of PIL's convert("L") and torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)


def grayscale(image: Array) -> Array:
    """Luma of an `[H, W, 3]` RGB image as `[H, W, 1]`; a 1-channel image is returned as is."""
    if image.shape[-1] == 1:
        return image
    weights = jnp.asarray(_LUMA, image.dtype)
    return (image @ weights)[..., None]


def _blend(image: Array, other: Array, factor, max_value: float) -> Array:
    """`factor * image + (1 - factor) * other`, clipped to `[0, max_value]` (torchvision `_blend`)."""
    return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, max_value)


def adjust_brightness(image: Array, factor, *, max_value: float = 1.0) -> Array:
    """Multiplies by `factor` (0 gives black, 1 the original), clipped."""
    return _blend(image, jnp.zeros_like(image), factor, max_value)


def adjust_contrast(image: Array, factor, *, max_value: float = 1.0) -> Array:
    """Blends with the mean grey level of the whole image (0 gives flat grey, 1 the original)."""
    mean = jnp.mean(grayscale(image))
    return _blend(image, jnp.broadcast_to(mean, image.shape), factor, max_value)


def adjust_saturation(image: Array, factor, *, max_value: float = 1.0) -> Array:
    """Blends with the grayscale image (0 gives grey, 1 the original, >1 more saturated)."""
    return _blend(image, jnp.broadcast_to(grayscale(image), image.shape), factor, max_value)


def rgb_to_hsv(image: Array) -> Array:
    """`[..., 3]` RGB in [0, 1] to HSV in [0, 1] (torchvision's `_rgb2hsv`)."""
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    max_c = jnp.max(image, axis=-1)
    min_c = jnp.min(image, axis=-1)
    equal = max_c == min_c
    chroma = max_c - min_c
    saturation = chroma / jnp.where(equal, 1.0, max_c)
    divisor = jnp.where(equal, 1.0, chroma)
    red_c = (max_c - red) / divisor
    green_c = (max_c - green) / divisor
    blue_c = (max_c - blue) / divisor
    hue_r = jnp.where(max_c == red, blue_c - green_c, 0.0)
    hue_g = jnp.where((max_c == green) & (max_c != red), 2.0 + red_c - blue_c, 0.0)
    hue_b = jnp.where((max_c != green) & (max_c != red), 4.0 + green_c - red_c, 0.0)
    hue = jnp.mod((hue_r + hue_g + hue_b) / 6.0 + 1.0, 1.0)
    return jnp.stack([hue, saturation, max_c], axis=-1)


def hsv_to_rgb(image: Array) -> Array:
    """`[..., 3]` HSV in [0, 1] to RGB (torchvision's `_hsv2rgb`)."""
    hue, saturation, value = image[..., 0], image[..., 1], image[..., 2]
    sector = jnp.floor(hue * 6.0)
    fraction = hue * 6.0 - sector
    sector = jnp.mod(sector.astype(jnp.int32), 6)
    p = jnp.clip(value * (1.0 - saturation), 0.0, 1.0)
    q = jnp.clip(value * (1.0 - saturation * fraction), 0.0, 1.0)
    t = jnp.clip(value * (1.0 - saturation * (1.0 - fraction)), 0.0, 1.0)
    red = jnp.select([sector == i for i in range(6)], [value, q, p, p, t, value])
    green = jnp.select([sector == i for i in range(6)], [t, value, value, q, p, p])
    blue = jnp.select([sector == i for i in range(6)], [p, p, t, value, value, q])
    return jnp.stack([red, green, blue], axis=-1)


def adjust_hue(image: Array, hue_factor, *, max_value: float = 1.0) -> Array:
    """Rotates the hue by `hue_factor` turns (in [-0.5, 0.5]); 1-channel images are unchanged."""
    if image.shape[-1] == 1:
        return image
    hsv = rgb_to_hsv(image / max_value)
    hue = jnp.mod(hsv[..., 0] + hue_factor, 1.0)
    hsv = jnp.concatenate([hue[..., None], hsv[..., 1:]], axis=-1)
    return hsv_to_rgb(hsv) * max_value


def _jitter_range(value: float, name: str, center: float, bound: float) -> tuple[float, float]:
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    low, high = center - value, center + value
    if name == "hue":
        if value > 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {value!r}")
        return low, high
    return max(bound, low), high


def color_jitter(key: jax.Array, image: Array, *, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, hue: float = 0.0, random_order: bool = True,
                 max_value: float = 1.0) -> Array:
    """torchvision `ColorJitter`: random brightness, contrast, saturation and hue, in random order.

    Factors: brightness, contrast, saturation ~ U(max(0, 1 - v), 1 + v); hue ~ U(-hue, hue) turns.
    Strengths of 0 skip the op (decided statically). With `random_order` the enabled ops run in a
    random permutation (each step a `lax.switch`; under vmap every branch runs, so the cost is about
    k^2 op evaluations for k enabled ops; `random_order=False` costs k). Image in `[0, max_value]`,
    same shape, float32. Source: Krizhevsky et al. 2012 / Howard 2013 colour augmentation, torchvision
    semantics.
    """
    sampling.check_image(image)
    factor_key, order_key = jax.random.split(key)
    factor_keys = jax.random.split(factor_key, 4)
    ops = []
    for index, (name, value, center, adjust) in enumerate([
            ("brightness", brightness, 1.0, adjust_brightness),
            ("contrast", contrast, 1.0, adjust_contrast),
            ("saturation", saturation, 1.0, adjust_saturation),
            ("hue", hue, 0.0, adjust_hue)]):
        low, high = _jitter_range(value, name, center, 0.0)
        if value == 0:
            continue
        factor = jax.random.uniform(factor_keys[index], minval=low, maxval=high)
        ops.append(lambda x, adjust=adjust, factor=factor: adjust(x, factor, max_value=max_value))
    image = image.astype(jnp.float32)
    if not ops:
        return image
    if not random_order or len(ops) == 1:
        for op in ops:
            image = op(image)
        return image
    order = jax.random.permutation(order_key, len(ops))
    for step in range(len(ops)):
        image = lax.switch(order[step], ops, image)
    return image


def pca_lighting(key: jax.Array, image: Array, *, alphastd: float = 0.1,
                 eigval=IMAGENET_PCA_EIGVAL, eigvec=IMAGENET_PCA_EIGVEC) -> Array:
    """AlexNet PCA lighting: adds `eigvec @ (alpha * eigval)`, alpha ~ N(0, alphastd^2) per channel.

    `eigval` `[3]` and `eigvec` `[3, 3]` (eigenvectors as columns) come from `fit_pca_lighting` on
    the training split (defaults: ImageNet, [0, 1] pixels). One offset per image; no clipping.
    Source: Krizhevsky et al. 2012, Sec. 4.1.
    """
    sampling.check_image(image)
    if image.shape[-1] != 3:
        raise ValueError(f"pca_lighting needs an RGB image with 3 channels, got shape {image.shape}")
    eigval = jnp.asarray(eigval, jnp.float32)
    eigvec = jnp.asarray(eigvec, jnp.float32)
    if eigval.shape != (3,) or eigvec.shape != (3, 3):
        raise ValueError(f"eigval must be [3] and eigvec [3, 3], got {eigval.shape} and {eigvec.shape}")
    alpha = jax.random.normal(key, (3,)) * alphastd
    offset = eigvec @ (alpha * eigval)  # [3]
    return image.astype(jnp.float32) + offset.reshape(1, 1, 3)


def fit_pca_lighting(images: np.ndarray | Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the RGB covariance of a training split (host side, numpy, float64).

    `images`: an array `[..., 3]` or an iterable of such batches (streamed: only 3x3 sums are kept).
    Returns `(eigval float32[3], eigvec float32[3, 3])`, eigenvalues decreasing, eigenvectors as
    columns, in the units of the pixels given. Source: Krizhevsky et al. 2012, Sec. 4.1.
    """
    batches = [images] if isinstance(images, np.ndarray) else images
    count = 0
    total = np.zeros(3)
    outer = np.zeros((3, 3))
    for batch in batches:
        pixels = np.asarray(batch, np.float64)
        if pixels.shape[-1] != 3:
            raise ValueError(f"images must end in 3 RGB channels, got a batch of shape {pixels.shape}")
        pixels = pixels.reshape(-1, 3)
        count += pixels.shape[0]
        total += pixels.sum(axis=0)
        outer += pixels.T @ pixels
    if count < 2:
        raise ValueError(f"images must hold at least 2 pixels, got {count}")
    mean = total / count
    covariance = (outer - count * np.outer(mean, mean)) / (count - 1)
    eigval, eigvec = np.linalg.eigh(covariance)
    order = np.argsort(eigval)[::-1]
    return eigval[order].astype(np.float32), eigvec[:, order].astype(np.float32)
