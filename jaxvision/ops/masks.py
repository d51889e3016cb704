"""Instance-mask ops: paste RoI masks into the image, boxes around masks, pairwise mask IoU.

Sources: He et al., "Mask R-CNN", ICCV 2017; torchvision.models.detection.roi_heads
(paste_masks_in_image, expand_masks, expand_boxes), torchvision.ops.masks_to_boxes;
mask IoU as in the COCO segmentation evaluation.
"""

from typing import Sequence

import jax.numpy as jnp

from jaxvision.types import Array


def _resize_matrix(box_start, box_end, *, image_extent: int, mask_extent: int):
    """[K, image_extent, mask_extent]: bilinear (align_corners=False) resize of the mask axis onto the
    integer box [start, end] (inclusive, torchvision's +1), zero outside the box and the image."""
    length = jnp.maximum(box_end - box_start + 1, 1)  # [K] int
    pixels = jnp.arange(image_extent)[None, :]  # [1, S]
    inside = (pixels >= jnp.maximum(box_start, 0)[:, None]) & (pixels < jnp.minimum(box_end + 1, image_extent)[:, None])
    local = (pixels - box_start[:, None]).astype(jnp.float32)  # [K, S]
    # PyTorch upsample_bilinear2d: src = max((dst + 0.5) * in / out - 0.5, 0)
    scale = mask_extent / length.astype(jnp.float32)
    source = jnp.maximum((local + 0.5) * scale[:, None] - 0.5, 0)
    low = jnp.floor(source).astype(jnp.int32)
    high = jnp.where(low < mask_extent - 1, low + 1, low)
    frac = source - low
    cells = jnp.arange(mask_extent)[None, None, :]
    matrix = (1 - frac)[..., None] * (low[..., None] == cells) + frac[..., None] * (high[..., None] == cells)
    return jnp.where(inside[..., None], matrix, 0)


def paste_masks(masks: Array, boxes: Array, image_size: Sequence[int], *, padding: int = 1) -> Array:
    """Paste per-RoI mask probabilities into image-sized masks (Mask R-CNN inference).

    torchvision `paste_masks_in_image` semantics: pad each `M x M` mask by `padding` zeros, grow the
    box by the same factor (M + 2 padding) / M about its centre, truncate it to integer pixels,
    resize the mask bilinearly (align_corners=False) to the box's (h + 1, w + 1) pixels, and place it;
    pixels outside the box are 0.

    Args: masks `float[K, M, M]`; boxes `float[K, 4]` xyxy image pixels; image_size `(H, W)`.
    Returns `float[K, H, W]` (threshold, e.g. > 0.5, to get binary masks).
    """
    masks = jnp.asarray(masks)
    boxes = jnp.asarray(boxes)
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
        raise ValueError(f"masks must have shape [K, M, M], got {masks.shape}")
    if boxes.shape != (masks.shape[0], 4):
        raise ValueError(f"boxes must have shape [K, 4] = {(masks.shape[0], 4)}, got {boxes.shape}")
    if len(image_size) != 2:
        raise ValueError(f"image_size must be (height, width), got {image_size!r}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    size = masks.shape[1]
    padded = jnp.pad(masks.astype(jnp.float32), ((0, 0), (padding, padding), (padding, padding)))
    scale = (size + 2 * padding) / size
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    centre = (boxes[:, 2:] + boxes[:, :2]) * 0.5
    # torchvision casts with .to(int64): truncation toward zero.
    start = jnp.trunc(centre - half).astype(jnp.int32)  # [K, 2] (x, y)
    end = jnp.trunc(centre + half).astype(jnp.int32)
    height, width = image_size
    rows = _resize_matrix(start[:, 1], end[:, 1], image_extent=height, mask_extent=size + 2 * padding)
    cols = _resize_matrix(start[:, 0], end[:, 0], image_extent=width, mask_extent=size + 2 * padding)
    return jnp.einsum("kym,kmn,kxn->kyx", rows, padded, cols)


def masks_to_boxes(masks: Array) -> Array:
    """Tight boxes around masks, `bool/float[K, H, W]` -> `float32[K, 4]` xyxy.

    torchvision `masks_to_boxes` semantics: (min x, min y, max x, max y) over nonzero pixels (max is the
    last pixel index, not one past it). An empty mask gives (0, 0, 0, 0) instead of an error.
    """
    masks = jnp.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape [K, H, W], got {masks.shape}")
    on = masks != 0
    height, width = masks.shape[1:]
    rows_on = jnp.any(on, axis=2)  # [K, H]
    cols_on = jnp.any(on, axis=1)  # [K, W]
    ys, xs = jnp.arange(height)[None, :], jnp.arange(width)[None, :]
    x1 = jnp.min(jnp.where(cols_on, xs, width), axis=1)
    x2 = jnp.max(jnp.where(cols_on, xs, -1), axis=1)
    y1 = jnp.min(jnp.where(rows_on, ys, height), axis=1)
    y2 = jnp.max(jnp.where(rows_on, ys, -1), axis=1)
    boxes = jnp.stack([x1, y1, x2, y2], axis=1).astype(jnp.float32)
    return jnp.where(jnp.any(rows_on, axis=1)[:, None], boxes, 0)


def mask_iou(masks1: Array, masks2: Array) -> Array:
    """Pairwise IoU of binary masks, `[N, H, W]` x `[M, H, W]` -> `float32[N, M]`; 0 where both are empty."""
    masks1 = jnp.asarray(masks1)
    masks2 = jnp.asarray(masks2)
    if masks1.ndim != 3:
        raise ValueError(f"masks1 must have shape [N, H, W], got {masks1.shape}")
    if masks2.ndim != 3 or masks2.shape[1:] != masks1.shape[1:]:
        raise ValueError(f"masks2 must have shape [M, {masks1.shape[1]}, {masks1.shape[2]}], got {masks2.shape}")
    flat1 = (masks1 != 0).reshape(masks1.shape[0], -1).astype(jnp.float32)  # [N, HW]
    flat2 = (masks2 != 0).reshape(masks2.shape[0], -1).astype(jnp.float32)  # [M, HW]
    # Pixel counts are exact in float32 up to 2^24 pixels.
    intersection = flat1 @ flat2.T
    union = flat1.sum(axis=1)[:, None] + flat2.sum(axis=1)[None, :] - intersection
    return jnp.where(union > 0, intersection / jnp.where(union > 0, union, 1), 0)
