"""On-device augmentation inside the jitted train step, configured by `config.augment`.

The pipeline hands the step normalized images; augmentation runs on pixel values in [0, 1]
(denormalize -> per-example transforms (vmap) -> batch mixing -> renormalize), so fills, padding and
colour ops see real pixel values. Everything is `jnp` driven by the step key: no host round-trip,
and a resumed run draws the same augmentations.

Keys of `config.augment` (0 / False switches a transform off):
  random_crop_padding   pad by this many pixels (reflect) and crop back to the input size
  horizontal_flip       flip left-right with p = 0.5 (never for digits or text)
  affine_degrees, affine_translate, affine_scale_min/max, affine_shear
                        torchvision-style RandomAffine ranges (translate as a fraction of size)
  color_jitter          brightness = contrast = saturation = this (hue 0)
  randaugment_num_ops, randaugment_magnitude   RandAugment (Cubuk et al. 2020)
  cutout_size           square cutout (DeVries & Taylor 2017)
  mixup_alpha, cutmix_alpha   batch mixing; when both are > 0 each step picks one with p = 0.5
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections

from jaxvision.data import augment


def augment_config() -> ml_collections.ConfigDict:
    """The `config.augment` defaults: everything off."""
    return ml_collections.ConfigDict(
        {
            "random_crop_padding": 0,
            "horizontal_flip": False,
            "affine_degrees": 0.0,
            "affine_translate": 0.0,
            "affine_scale_min": 1.0,
            "affine_scale_max": 1.0,
            "affine_shear": 0.0,
            "color_jitter": 0.0,
            "randaugment_num_ops": 0,
            "randaugment_magnitude": 9,
            "cutout_size": 0,
            "mixup_alpha": 0.0,
            "cutmix_alpha": 0.0,
        }
    )


def make_example_transforms(augment_settings) -> list:
    """The per-example transforms named by `augment_settings`, in a fixed order."""
    settings = augment_settings
    transforms = []
    if settings.random_crop_padding > 0:
        transforms.append(functools.partial(augment.random_crop, padding=settings.random_crop_padding,
                                            padding_mode="reflect"))
    if settings.horizontal_flip:
        transforms.append(augment.horizontal_flip)
    uses_affine = (settings.affine_degrees > 0 or settings.affine_translate > 0 or settings.affine_shear > 0
                   or settings.affine_scale_min != 1.0 or settings.affine_scale_max != 1.0)
    if uses_affine:
        transforms.append(functools.partial(
            augment.random_affine, degrees=settings.affine_degrees,
            translate=(settings.affine_translate, settings.affine_translate),
            scale=(settings.affine_scale_min, settings.affine_scale_max),
            shear=(settings.affine_shear, settings.affine_shear)))
    if settings.color_jitter > 0:
        strength = settings.color_jitter
        transforms.append(functools.partial(augment.color_jitter, brightness=strength, contrast=strength,
                                            saturation=strength, hue=0.0))
    if settings.randaugment_num_ops > 0:
        transforms.append(functools.partial(augment.rand_augment, num_ops=settings.randaugment_num_ops,
                                            magnitude=settings.randaugment_magnitude))
    if settings.cutout_size > 0:
        transforms.append(functools.partial(augment.cutout, size=settings.cutout_size))
    return transforms


def is_enabled(augment_settings) -> bool:
    """Whether any augmentation is switched on."""
    return bool(make_example_transforms(augment_settings)) or uses_mixing(augment_settings)


def uses_mixing(augment_settings) -> bool:
    return augment_settings.mixup_alpha > 0 or augment_settings.cutmix_alpha > 0


def make_batch_augmentation(augment_settings, *, mean, std, num_classes: int):
    """`(key, images, labels) -> (images, targets float32[B, K])` on normalized images.

    `targets` are one-hot, or mixed soft labels when mixup/CutMix is on.
    """
    transforms = make_example_transforms(augment_settings)
    mean = jnp.asarray(mean, jnp.float32).reshape((1, 1, 1, -1))  # [1, 1, 1, C]
    std = jnp.asarray(std, jnp.float32).reshape((1, 1, 1, -1))
    mixup_alpha, cutmix_alpha = augment_settings.mixup_alpha, augment_settings.cutmix_alpha

    def augment_batch(key, images, labels):
        transform_key, choice_key, mix_key = jax.random.split(key, 3)
        targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
        if not transforms and not (mixup_alpha > 0 or cutmix_alpha > 0):
            return images, targets
        pixels = images * std + mean  # [B, H, W, C] back to [0, 1]
        if transforms:
            pixels = augment.apply_to_batch(transforms, transform_key, pixels)
        if mixup_alpha > 0 and cutmix_alpha > 0:
            mixed_up = augment.mixup(mix_key, pixels, targets, alpha=mixup_alpha)
            cut_mixed = augment.cutmix(mix_key, pixels, targets, alpha=cutmix_alpha)
            use_mixup = jax.random.bernoulli(choice_key)
            pixels, targets = jax.tree.map(lambda a, b: jnp.where(use_mixup, a, b), mixed_up, cut_mixed)
        elif mixup_alpha > 0:
            pixels, targets = augment.mixup(mix_key, pixels, targets, alpha=mixup_alpha)
        elif cutmix_alpha > 0:
            pixels, targets = augment.cutmix(mix_key, pixels, targets, alpha=cutmix_alpha)
        return ((pixels - mean) / std).astype(jnp.float32), targets

    return augment_batch
