"""Box formats, areas, IoU variants and the R-CNN box coder, as vectorized `jnp`.

Boxes are `float32[..., 4]` in `xyxy` absolute pixels (see `jaxvision.types`). Every IoU variant
comes twice: pairwise (`box_iou(boxes1[N, 4], boxes2[M, 4]) -> [N, M]`, torchvision.ops semantics)
and elementwise (`elementwise_box_iou(boxes1[..., 4], boxes2[..., 4]) -> [...]`, for losses between
matched pairs). Both share `_iou_parts`, so the formulas exist once.

Degenerate boxes: where torchvision divides 0 by 0 (two zero-area boxes, a zero-area enclosing box)
these functions return 0 instead of NaN, and the gradient stays finite (double `where`).

Sources: torchvision.ops.boxes (box_convert, box_area, clip_boxes_to_image, remove_small_boxes,
box_iou, generalized_box_iou, distance_box_iou, complete_box_iou);
GIoU: Rezatofighi et al., CVPR 2019; DIoU/CIoU: Zheng et al., AAAI 2020;
box coder: Girshick et al., R-CNN (CVPR 2014) appendix C, torchvision.models.detection._utils.BoxCoder.
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from jaxvision.types import Array

# torchvision's BoxCoder default: exp(dw) never exceeds 1000/16 = 62.5 times the anchor size.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _check_boxes(boxes, name: str, *, ndim: int | None = None) -> Array:
    boxes = jnp.asarray(boxes)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [..., 4], got {boxes.shape}")
    if ndim is not None and boxes.ndim != ndim:
        expected = "[N, 4]" if ndim == 2 else f"rank {ndim}"
        raise ValueError(f"{name} must have shape {expected}, got {boxes.shape}")
    if not jnp.issubdtype(boxes.dtype, jnp.floating):
        boxes = boxes.astype(jnp.float32)
    return boxes


def _safe_divide(numerator: Array, denominator: Array) -> Array:
    """numerator / denominator, 0 where the denominator is 0, with a finite gradient there."""
    nonzero = denominator != 0
    return jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1), 0)


# ----------------------------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------------------------


def xyxy_to_xywh(boxes: Array) -> Array:
    """`[..., 4]` (x1, y1, x2, y2) -> (x1, y1, w, h). torchvision `box_convert(.., "xyxy", "xywh")`."""
    boxes = _check_boxes(boxes, "boxes")
    x1, y1, x2, y2 = jnp.unstack(boxes, axis=-1)
    return jnp.stack([x1, y1, x2 - x1, y2 - y1], axis=-1)


def xywh_to_xyxy(boxes_xywh: Array) -> Array:
    """`[..., 4]` (x1, y1, w, h) -> (x1, y1, x2, y2). torchvision `box_convert(.., "xywh", "xyxy")`."""
    boxes_xywh = _check_boxes(boxes_xywh, "boxes_xywh")
    x1, y1, w, h = jnp.unstack(boxes_xywh, axis=-1)
    return jnp.stack([x1, y1, x1 + w, y1 + h], axis=-1)


def xyxy_to_cxcywh(boxes: Array) -> Array:
    """`[..., 4]` (x1, y1, x2, y2) -> (cx, cy, w, h). torchvision `box_convert(.., "xyxy", "cxcywh")`."""
    boxes = _check_boxes(boxes, "boxes")
    x1, y1, x2, y2 = jnp.unstack(boxes, axis=-1)
    return jnp.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def cxcywh_to_xyxy(boxes_cxcywh: Array) -> Array:
    """`[..., 4]` (cx, cy, w, h) -> (x1, y1, x2, y2). torchvision `box_convert(.., "cxcywh", "xyxy")`."""
    boxes_cxcywh = _check_boxes(boxes_cxcywh, "boxes_cxcywh")
    cx, cy, w, h = jnp.unstack(boxes_cxcywh, axis=-1)
    return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


# ----------------------------------------------------------------------------------------------
# Areas, clipping, size filter
# ----------------------------------------------------------------------------------------------


def box_area(boxes: Array) -> Array:
    """Area `(x2 - x1) * (y2 - y1)` of `boxes[..., 4]` -> `[...]`. torchvision `box_area`.

    Inverted boxes (x2 < x1) give negative areas, as in torchvision; clip them first if that matters.
    """
    boxes = _check_boxes(boxes, "boxes")
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def clip_boxes(boxes: Array, image_size: Sequence[int]) -> Array:
    """Clamp `boxes[..., 4]` to the image: x to [0, width], y to [0, height].

    `image_size` is `(height, width)`, static. torchvision `clip_boxes_to_image`.
    """
    boxes = _check_boxes(boxes, "boxes")
    if len(image_size) != 2:
        raise ValueError(f"image_size must be (height, width), got {image_size!r}")
    height, width = image_size
    upper = jnp.asarray([width, height, width, height], boxes.dtype)
    return jnp.clip(boxes, 0, jnp.broadcast_to(upper, boxes.shape))


def is_large_enough(boxes: Array, min_size: float) -> Array:
    """`bool[...]`: True where width >= min_size and height >= min_size.

    The fixed-shape form of torchvision `remove_small_boxes` (which returns the kept indices):
    combine it with a `valid` mask instead of dropping boxes.
    """
    boxes = _check_boxes(boxes, "boxes")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return (widths >= min_size) & (heights >= min_size)


# ----------------------------------------------------------------------------------------------
# IoU variants
# ----------------------------------------------------------------------------------------------


def _iou_parts(boxes1: Array, boxes2: Array) -> tuple[Array, Array, Array]:
    """(iou, enclosing top-left [..., 2], enclosing bottom-right [..., 2]) for same-shape boxes."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = jnp.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = jnp.minimum(boxes1[..., 2:], boxes2[..., 2:])
    wh = jnp.clip(bottom_right - top_left, 0)  # [..., 2]
    intersection = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - intersection
    iou = _safe_divide(intersection, union)
    enclosing_top_left = jnp.minimum(boxes1[..., :2], boxes2[..., :2])
    enclosing_bottom_right = jnp.maximum(boxes1[..., 2:], boxes2[..., 2:])
    return iou, union, (enclosing_top_left, enclosing_bottom_right)


def _giou(boxes1, boxes2):
    iou, union, (top_left, bottom_right) = _iou_parts(boxes1, boxes2)
    wh = jnp.clip(bottom_right - top_left, 0)  # [..., 2]
    enclosing_area = wh[..., 0] * wh[..., 1]
    return iou - _safe_divide(enclosing_area - union, enclosing_area)


def _diou_and_iou(boxes1, boxes2, eps):
    iou, _, (top_left, bottom_right) = _iou_parts(boxes1, boxes2)
    wh = jnp.clip(bottom_right - top_left, 0)  # [..., 2]
    diagonal_squared = wh[..., 0] ** 2 + wh[..., 1] ** 2 + eps
    center1 = (boxes1[..., :2] + boxes1[..., 2:]) / 2
    center2 = (boxes2[..., :2] + boxes2[..., 2:]) / 2
    center_distance_squared = jnp.sum((center1 - center2) ** 2, axis=-1)
    return iou - _safe_divide(center_distance_squared, diagonal_squared), iou


def _aspect_angle(boxes):
    """atan(w / h) as torchvision, via atan2 so h == 0 gives pi/2, and a point box gives 0 (not NaN)."""
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    point = (w == 0) & (h == 0)
    return jnp.arctan2(jnp.where(point, 0, w), jnp.where(point, 1, h))


def _ciou(boxes1, boxes2, eps):
    diou, iou = _diou_and_iou(boxes1, boxes2, eps)
    aspect1 = _aspect_angle(boxes1)
    aspect2 = _aspect_angle(boxes2)
    v = (4 / math.pi**2) * (aspect1 - aspect2) ** 2
    # torchvision computes alpha under no_grad: it is a weight, not part of the objective.
    alpha = jax.lax.stop_gradient(_safe_divide(v, 1 - iou + v + eps))
    return diou - alpha * v


def _elementwise(boxes1, boxes2):
    boxes1 = _check_boxes(boxes1, "boxes1")
    boxes2 = _check_boxes(boxes2, "boxes2")
    if boxes1.shape != boxes2.shape:
        raise ValueError(
            f"boxes1 and boxes2 must have the same shape [..., 4], got {boxes1.shape} and {boxes2.shape}"
        )
    dtype = jnp.promote_types(boxes1.dtype, boxes2.dtype)
    return boxes1.astype(dtype), boxes2.astype(dtype)


def _pairwise(boxes1, boxes2):
    boxes1 = _check_boxes(boxes1, "boxes1", ndim=2)
    boxes2 = _check_boxes(boxes2, "boxes2", ndim=2)
    dtype = jnp.promote_types(boxes1.dtype, boxes2.dtype)
    shape = (boxes1.shape[0], boxes2.shape[0], 4)
    return (
        jnp.broadcast_to(boxes1[:, None, :], shape).astype(dtype),  # [N, M, 4]
        jnp.broadcast_to(boxes2[None, :, :], shape).astype(dtype),  # [N, M, 4]
    )


def box_iou(boxes1: Array, boxes2: Array) -> Array:
    """Pairwise intersection over union, `boxes1[N, 4]`, `boxes2[M, 4]` (xyxy) -> `[N, M]`.

    torchvision `box_iou`; 0 (not NaN) where the union is empty.
    """
    return _iou_parts(*_pairwise(boxes1, boxes2))[0]


def elementwise_box_iou(boxes1: Array, boxes2: Array) -> Array:
    """IoU of matched pairs, `boxes1[..., 4]`, `boxes2[..., 4]` (same shape, xyxy) -> `[...]`."""
    return _iou_parts(*_elementwise(boxes1, boxes2))[0]


def generalized_box_iou(boxes1: Array, boxes2: Array) -> Array:
    """Pairwise GIoU in [-1, 1], `boxes1[N, 4]`, `boxes2[M, 4]` -> `[N, M]`.

    GIoU = IoU - (|C| - |A u B|) / |C| with C the smallest enclosing box (Rezatofighi et al. 2019);
    torchvision `generalized_box_iou`.
    """
    return _giou(*_pairwise(boxes1, boxes2))


def elementwise_generalized_box_iou(boxes1: Array, boxes2: Array) -> Array:
    """GIoU of matched pairs, `boxes1[..., 4]`, `boxes2[..., 4]` -> `[...]` (see generalized_box_iou)."""
    return _giou(*_elementwise(boxes1, boxes2))


def distance_box_iou(boxes1: Array, boxes2: Array, *, eps: float = 1e-7) -> Array:
    """Pairwise DIoU, `boxes1[N, 4]`, `boxes2[M, 4]` -> `[N, M]`.

    DIoU = IoU - d(centres)^2 / (c^2 + eps), c the diagonal of the enclosing box (Zheng et al. 2020);
    torchvision `distance_box_iou` (same eps).
    """
    return _diou_and_iou(*_pairwise(boxes1, boxes2), eps)[0]


def elementwise_distance_box_iou(boxes1: Array, boxes2: Array, *, eps: float = 1e-7) -> Array:
    """DIoU of matched pairs, `boxes1[..., 4]`, `boxes2[..., 4]` -> `[...]` (see distance_box_iou)."""
    return _diou_and_iou(*_elementwise(boxes1, boxes2), eps)[0]


def complete_box_iou(boxes1: Array, boxes2: Array, *, eps: float = 1e-7) -> Array:
    """Pairwise CIoU, `boxes1[N, 4]`, `boxes2[M, 4]` -> `[N, M]`.

    CIoU = DIoU - alpha * v, v = 4/pi^2 (atan(w1/h1) - atan(w2/h2))^2, alpha = v / (1 - IoU + v + eps)
    treated as a constant for gradients (Zheng et al. 2020); torchvision `complete_box_iou`.
    """
    return _ciou(*_pairwise(boxes1, boxes2), eps)


def elementwise_complete_box_iou(boxes1: Array, boxes2: Array, *, eps: float = 1e-7) -> Array:
    """CIoU of matched pairs, `boxes1[..., 4]`, `boxes2[..., 4]` -> `[...]` (see complete_box_iou)."""
    return _ciou(*_elementwise(boxes1, boxes2), eps)


# ----------------------------------------------------------------------------------------------
# R-CNN box coder
# ----------------------------------------------------------------------------------------------


def _check_weights(weights) -> tuple[float, float, float, float]:
    if len(weights) != 4:
        raise ValueError(f"weights must be 4 numbers (wx, wy, ww, wh), got {weights!r}")
    if any(w <= 0 for w in weights):
        raise ValueError(f"weights must be positive, got {weights!r}")
    return tuple(float(w) for w in weights)


def _centres_and_sizes(boxes):
    """(cx, cy, w, h) of xyxy boxes, with the centre as x1 + w/2, in torchvision BoxCoder's order."""
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode_boxes(
    boxes: Array, anchors: Array, *, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)
) -> Array:
    """Regression targets `(tx, ty, tw, th)[..., 4]` that move `anchors[..., 4]` onto `boxes[..., 4]`.

    tx = wx (cx - cx_a) / w_a, ty = wy (cy - cy_a) / h_a, tw = ww log(w / w_a), th = wh log(h / h_a)
    (R-CNN, Girshick et al. 2014; torchvision `BoxCoder.encode_single`, e.g. weights (10, 10, 5, 5)
    for the Faster R-CNN box head). Anchors must have positive size; boxes too (log).
    """
    wx, wy, ww, wh = _check_weights(weights)
    boxes, anchors = _elementwise(boxes, anchors)
    anchor_cx, anchor_cy, anchor_w, anchor_h = _centres_and_sizes(anchors)
    cx, cy, w, h = _centres_and_sizes(boxes)
    return jnp.stack(
        [
            wx * (cx - anchor_cx) / anchor_w,
            wy * (cy - anchor_cy) / anchor_h,
            ww * jnp.log(w / anchor_w),
            wh * jnp.log(h / anchor_h),
        ],
        axis=-1,
    )


def decode_boxes(
    deltas: Array,
    anchors: Array,
    *,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    scale_clamp: float = DEFAULT_SCALE_CLAMP,
) -> Array:
    """Apply regression `deltas[..., 4]` (tx, ty, tw, th) to `anchors[..., 4]` -> boxes `[..., 4]` xyxy.

    Inverse of `encode_boxes`; tw/th (after dividing by their weights) are clamped to at most
    `scale_clamp` = log(1000/16) so exp() cannot overflow on a wild prediction, as torchvision
    `BoxCoder.decode_single`.
    """
    wx, wy, ww, wh = _check_weights(weights)
    deltas, anchors = _elementwise(deltas, anchors)
    anchor_cx, anchor_cy, anchor_w, anchor_h = _centres_and_sizes(anchors)
    dx = deltas[..., 0] / wx
    dy = deltas[..., 1] / wy
    dw = jnp.minimum(deltas[..., 2] / ww, scale_clamp)
    dh = jnp.minimum(deltas[..., 3] / wh, scale_clamp)
    cx = dx * anchor_w + anchor_cx
    cy = dy * anchor_h + anchor_cy
    half_w = 0.5 * jnp.exp(dw) * anchor_w
    half_h = 0.5 * jnp.exp(dh) * anchor_h
    return jnp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)
