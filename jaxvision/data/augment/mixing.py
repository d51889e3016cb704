"""Batch-level label mixing: mixup and CutMix. These act on a whole batch (they pair examples), so
they are called on `[B, H, W, C]` images after the per-example transforms, not vmapped.

Labels are int32 class ids `[B]` (then `num_classes` is required) or soft/one-hot labels
`float[B, K]`; the result is always float32 `[B, K]` rows summing to 1 (when the inputs do). Train
with a soft-label cross-entropy, e.g. `optax.softmax_cross_entropy(logits, labels)`.
"""

import jax
import jax.numpy as jnp

from jaxvision.data.augment import erasing
from jaxvision.types import Array


def _soft_labels(labels: Array, num_classes: int | None, batch_size: int) -> Array:
    if labels.ndim == 1:
        if num_classes is None:
            raise ValueError("num_classes is required when labels are int class ids of shape [B]")
        return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    if labels.ndim != 2:
        raise ValueError(f"labels must be int [B] or soft [B, K], got shape {labels.shape}")
    if labels.shape[0] != batch_size:
        raise ValueError(f"labels must have {batch_size} rows like images, got shape {labels.shape}")
    return labels.astype(jnp.float32)


def _check_batch(images: Array, alpha: float) -> None:
    if getattr(images, "ndim", None) != 4:
        raise ValueError(f"images must be a batch [B, H, W, C], got shape "
                         f"{getattr(images, 'shape', None)}")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}")


def mixup(key: jax.Array, images: Array, labels: Array, *, alpha: float = 0.2,
          num_classes: int | None = None) -> tuple[Array, Array]:
    """Mixes each example with a partner from a random permutation of the batch.

    One `lam ~ Beta(alpha, alpha)` per batch (as the paper's code);
    `images = lam * x + (1 - lam) * x[perm]`, labels likewise. Returns
    `(float32[B, H, W, C], float32[B, K])`. Source: Zhang et al. 2018 ("mixup: beyond empirical risk
    minimization"); alpha 0.2 for ImageNet, 1.0 for CIFAR.
    """
    _check_batch(images, alpha)
    labels = _soft_labels(labels, num_classes, images.shape[0])
    lam_key, perm_key = jax.random.split(key)
    lam = jax.random.beta(lam_key, alpha, alpha)
    perm = jax.random.permutation(perm_key, images.shape[0])
    images = images.astype(jnp.float32)
    mixed_images = lam * images + (1.0 - lam) * images[perm]
    mixed_labels = lam * labels + (1.0 - lam) * labels[perm]
    return mixed_images, mixed_labels


def cutmix(key: jax.Array, images: Array, labels: Array, *, alpha: float = 1.0,
           num_classes: int | None = None) -> tuple[Array, Array]:
    """Pastes a rectangle from a permuted partner into each image; labels mix by pasted area.

    `lam ~ Beta(alpha, alpha)` per batch; the box has sides `floor(sqrt(1 - lam) * (H, W))`, a uniform
    centre, and is clipped to the image; `lam` is then corrected to the exact unpasted fraction.
    Returns `(images [B, H, W, C] in the input dtype, float32[B, K])`. Source: Yun et al. 2019
    ("CutMix: regularization strategy to train strong classifiers with localizable features").
    """
    _check_batch(images, alpha)
    labels = _soft_labels(labels, num_classes, images.shape[0])
    lam_key, perm_key, y_key, x_key = jax.random.split(key, 4)
    height, width = images.shape[1:3]
    lam = jax.random.beta(lam_key, alpha, alpha)
    cut = jnp.sqrt(1.0 - lam)
    cut_h = jnp.floor(height * cut).astype(jnp.int32)
    cut_w = jnp.floor(width * cut).astype(jnp.int32)
    center_y = jax.random.randint(y_key, (), 0, height)
    center_x = jax.random.randint(x_key, (), 0, width)
    top = jnp.clip(center_y - cut_h // 2, 0, height)
    bottom = jnp.clip(center_y + cut_h // 2, 0, height)
    left = jnp.clip(center_x - cut_w // 2, 0, width)
    right = jnp.clip(center_x + cut_w // 2, 0, width)
    mask = erasing.rectangle_mask((height, width), top, left, bottom - top, right - left)
    perm = jax.random.permutation(perm_key, images.shape[0])
    mixed_images = jnp.where(mask[None, :, :, None], images[perm], images)
    lam = 1.0 - jnp.mean(mask.astype(jnp.float32))
    mixed_labels = lam * labels + (1.0 - lam) * labels[perm]
    return mixed_images, mixed_labels
