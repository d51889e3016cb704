"""On-device, key-driven data augmentation: pure `jnp` transforms of ONE example, batched with vmap.

    import functools
    from jaxvision.data import augment

    transforms = [functools.partial(augment.random_crop, padding=4), augment.horizontal_flip]
    images = augment.apply_to_batch(transforms, key, images)       # float32[B, H, W, C]
    images, labels = augment.mixup(mix_key, images, labels, alpha=1.0, num_classes=10)

Modules: `sampling` (affine matrices, the bilinear/nearest resampler), `geometric` (crop, flip,
random resized crop, ResNet scale augmentation, affine), `color` (colour jitter, PCA lighting),
`erasing` (cutout, random erasing), `randaugment`, `mixing` (batch-level mixup, CutMix),
`annotated` (box/mask/keypoint-aware geometric transforms of example dicts), `compose`.
Colour ops take the value range as `max_value` (default 1.0: images in [0, 1] before normalization).
"""

from jaxvision.data.augment.annotated import (
    horizontal_flip_example,
    random_affine_example,
    random_crop_example,
    random_resized_crop_example,
    resize_example,
    scale_augment_example,
    transform_boxes,
    transform_keypoints,
    vertical_flip_example,
    warp_example,
)
from jaxvision.data.augment.color import (
    IMAGENET_PCA_EIGVAL,
    IMAGENET_PCA_EIGVEC,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    fit_pca_lighting,
    grayscale,
    hsv_to_rgb,
    pca_lighting,
    rgb_to_hsv,
)
from jaxvision.data.augment.compose import Transform, apply_to_batch, compose
from jaxvision.data.augment.erasing import cutout, random_erasing
from jaxvision.data.augment.geometric import (
    center_crop,
    horizontal_flip,
    random_affine,
    random_crop,
    random_resized_crop,
    resize,
    scale_augment,
    vertical_flip,
)
from jaxvision.data.augment.mixing import cutmix, mixup
from jaxvision.data.augment.randaugment import (
    RANDAUGMENT_OPS,
    adjust_sharpness,
    autocontrast,
    equalize,
    posterize,
    rand_augment,
    solarize,
)
from jaxvision.data.augment.sampling import warp
