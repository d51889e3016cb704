"""Anchor boxes: Faster R-CNN / RetinaNet / FPN grids, SSD default boxes, YOLO grid offsets.

Anchors depend only on static facts (sizes, ratios, feature-map and image sizes), so they are built
once in numpy at trace time and returned as `float32` constants; boxes are xyxy absolute pixels.

Sources: Ren et al., "Faster R-CNN", NeurIPS 2015 (anchors); Lin et al., FPN (CVPR 2017) and
RetinaNet (ICCV 2017); torchvision.models.detection.anchor_utils.AnchorGenerator and
DefaultBoxGenerator; Liu et al., "SSD", ECCV 2016 (default boxes, eq. 4); Redmon & Farhadi,
YOLOv2/v3 (grid-cell offsets).
"""

import math
from typing import Sequence

import numpy as np
import jax.numpy as jnp

from jaxvision.types import Array


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or (height, width), got {value!r}")
    return int(value[0]), int(value[1])


def create_base_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
    """Zero-centred anchors `float32[len(ratios) * len(sizes), 4]`, ratio-major then size.

    For ratio r = h / w and size s: w = s / sqrt(r), h = s * sqrt(r), box (-w/2, -h/2, w/2, h/2)
    rounded to integers (half to even), exactly torchvision AnchorGenerator.generate_anchors.
    """
    if len(sizes) == 0 or len(aspect_ratios) == 0:
        raise ValueError(f"sizes and aspect_ratios must be non-empty, got {sizes!r}, {aspect_ratios!r}")
    if any(r <= 0 for r in aspect_ratios) or any(s <= 0 for s in sizes):
        raise ValueError(f"sizes and aspect_ratios must be positive, got {sizes!r}, {aspect_ratios!r}")
    scales = np.asarray(sizes, np.float32)
    h_ratios = np.sqrt(np.asarray(aspect_ratios, np.float32))
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2).astype(np.float32)


def create_anchor_grid(base_anchors: np.ndarray, grid_size, stride) -> Array:
    """Anchors on a feature grid: `float32[H * W * A, 4]`, location-major (row, then column), then anchor.

    Location (i, j) shifts every base anchor by (j * stride_w, i * stride_h): anchors are centred
    on the top-left corner of each stride cell, as torchvision's grid_anchors.
    """
    base_anchors = np.asarray(base_anchors, np.float32)
    if base_anchors.ndim != 2 or base_anchors.shape[1] != 4:
        raise ValueError(f"base_anchors must have shape [A, 4], got {base_anchors.shape}")
    (grid_h, grid_w), (stride_h, stride_w) = _pair(grid_size, "grid_size"), _pair(stride, "stride")
    shift_y, shift_x = np.meshgrid(
        np.arange(grid_h, dtype=np.float32) * stride_h, np.arange(grid_w, dtype=np.float32) * stride_w,
        indexing="ij",
    )
    shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=-1).reshape(-1, 1, 4)  # [HW, 1, 4]
    return jnp.asarray((shifts + base_anchors[None, :, :]).reshape(-1, 4))


def create_multilevel_anchors(
    image_size: Sequence[int],
    feature_sizes: Sequence[Sequence[int]],
    sizes: Sequence[Sequence[float]],
    aspect_ratios: Sequence[Sequence[float]],
) -> list[Array]:
    """Anchors for each feature level, torchvision AnchorGenerator semantics.

    Args:
      image_size: `(height, width)` of the (padded) input.
      feature_sizes: `(H_l, W_l)` per level; the level stride is `image_size // feature_size`.
      sizes, aspect_ratios: per level, e.g. FPN `((32,), (64,), (128,), (256,), (512,))` with
        `((0.5, 1.0, 2.0),) * 5`; RetinaNet uses 3 sizes per level (x 2^0, 2^(1/3), 2^(2/3)).
    Returns: a list of `float32[H_l * W_l * A_l, 4]` (concatenate for a flat [N, 4]).
    """
    if not len(feature_sizes) == len(sizes) == len(aspect_ratios):
        raise ValueError(
            f"feature_sizes, sizes and aspect_ratios need one entry per level, got "
            f"{len(feature_sizes)}, {len(sizes)}, {len(aspect_ratios)}"
        )
    image_h, image_w = _pair(image_size, "image_size")
    anchors = []
    for (grid_h, grid_w), level_sizes, level_ratios in zip(feature_sizes, sizes, aspect_ratios):
        stride = (image_h // grid_h, image_w // grid_w)
        anchors.append(create_anchor_grid(create_base_anchors(level_sizes, level_ratios), (grid_h, grid_w), stride))
    return anchors


def ssd_scales(num_levels: int, min_ratio: float = 0.15, max_ratio: float = 0.9) -> list[float]:
    """SSD box scales s_1..s_m linearly spaced in [min_ratio, max_ratio], plus s_{m+1} = 1 (torchvision)."""
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    if num_levels == 1:
        return [min_ratio, max_ratio]
    step = (max_ratio - min_ratio) / (num_levels - 1.0)
    return [min_ratio + step * k for k in range(num_levels)] + [1.0]


def create_ssd_default_boxes(
    image_size: Sequence[int],
    feature_sizes: Sequence[Sequence[int]],
    aspect_ratios: Sequence[Sequence[float]],
    *,
    scales: Sequence[float] | None = None,
    steps: Sequence[int] | None = None,
    clip: bool = True,
) -> Array:
    """SSD default boxes for all levels, `float32[N, 4]` xyxy absolute pixels.

    torchvision DefaultBoxGenerator semantics: per location (row-major) the boxes are
    (s_k, s_k), (s'_k, s'_k) with s'_k = sqrt(s_k s_{k+1}), then (s_k sqrt(a), s_k / sqrt(a)) and its
    transpose for each extra ratio a (e.g. SSD300: `[[2], [2, 3], [2, 3], [2, 3], [2], [2]]`); centres
    at ((j + 0.5) / f_k, (i + 0.5) / f_k) with f_k the grid size, or image / steps[k] if given;
    widths/heights clipped to [0, 1] when `clip`; finally scaled by the image size.
    """
    if len(feature_sizes) != len(aspect_ratios):
        raise ValueError(
            f"feature_sizes and aspect_ratios need one entry per level, got {len(feature_sizes)} and {len(aspect_ratios)}"
        )
    if steps is not None and len(steps) != len(feature_sizes):
        raise ValueError(f"steps must have one entry per level, got {steps!r}")
    scales = list(ssd_scales(len(aspect_ratios)) if scales is None else scales)
    if len(scales) != len(aspect_ratios) + 1:
        raise ValueError(f"scales must have len(aspect_ratios) + 1 = {len(aspect_ratios) + 1} entries, got {len(scales)}")
    image_h, image_w = _pair(image_size, "image_size")
    boxes = []
    for k, ((grid_h, grid_w), ratios) in enumerate(zip(feature_sizes, aspect_ratios)):
        s_k = scales[k]
        wh = [[s_k, s_k], [math.sqrt(s_k * scales[k + 1])] * 2]
        for ratio in ratios:
            root = math.sqrt(ratio)
            wh += [[s_k * root, s_k / root], [s_k / root, s_k * root]]
        wh = np.asarray(wh, np.float32)
        if clip:
            wh = np.clip(wh, 0, 1)
        if steps is not None:
            f_y, f_x = image_h / steps[k], image_w / steps[k]
        else:
            f_y, f_x = grid_h, grid_w
        cy, cx = np.meshgrid((np.arange(grid_h) + 0.5) / f_y, (np.arange(grid_w) + 0.5) / f_x, indexing="ij")
        centres = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)  # [HW, 1, 2]
        centres = np.broadcast_to(centres, (grid_h * grid_w, len(wh), 2))
        sizes = np.broadcast_to(wh[None], (grid_h * grid_w, len(wh), 2))
        boxes.append(np.concatenate([centres, sizes], axis=-1).reshape(-1, 4).astype(np.float32))
    cxcywh = np.concatenate(boxes) * np.asarray([image_w, image_h, image_w, image_h], np.float32)
    xyxy = np.concatenate([cxcywh[:, :2] - 0.5 * cxcywh[:, 2:], cxcywh[:, :2] + 0.5 * cxcywh[:, 2:]], axis=1)
    return jnp.asarray(xyxy)


def create_grid_offsets(grid_size, *, stride=1.0, offset: float = 0.0) -> Array:
    """YOLO grid-cell offsets `float32[H, W, 2]` holding (x, y) = ((j + offset) * stride, (i + offset) * stride).

    YOLOv2/v3 decode a cell's box centre as (sigmoid(t_xy) + cell_xy) * stride: use offset 0 and add
    the sigmoid; offset 0.5 gives cell centres (anchor-free heads such as FCOS).
    """
    grid_h, grid_w = _pair(grid_size, "grid_size")
    stride_h, stride_w = (stride, stride) if isinstance(stride, (int, float)) else stride
    ys, xs = np.meshgrid(np.arange(grid_h, dtype=np.float32), np.arange(grid_w, dtype=np.float32), indexing="ij")
    return jnp.asarray(np.stack([(xs + offset) * stride_w, (ys + offset) * stride_h], axis=-1))
