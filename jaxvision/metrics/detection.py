"""Pascal VOC detection average precision on the host, in numpy.

`voc_evaluate` scores detections the way the official VOC devkit does (`VOCevaldet.m`, the same
algorithm as py-faster-rcnn's `voc_eval.py`; Everingham et al., IJCV 2010):
- per class, all detections of all images are sorted by confidence (stable sort: ties keep image
  order, then detection order, like MATLAB's `sort`);
- each detection is compared with every ground truth of its class in its image (difficult ones
  included) and takes the one of highest IoU (the first on ties). If that IoU >= `iou_threshold`:
  a difficult ground truth makes the detection neither TP nor FP; an unclaimed one makes it a TP
  (and claims it); a claimed one makes it a FP (duplicate). Otherwise it is a FP;
- the number of positives excludes difficult ground truths;
- precision = tp / max(tp + fp, eps), recall = tp / num_positives;
- AP is the VOC2007 11-point interpolated AP (`use_11_point=True`: mean over t in {0, 0.1, ..., 1}
  of the highest precision at recall >= t) or the VOC2010+ area under the interpolated curve
  (all points, the default).

Choices, documented:
- `iou_threshold` is compared with `>=`, as `VOCevaldet.m` (`ovmax >= minoverlap`); py-faster-rcnn
  uses `>`, which differs only for an IoU of exactly 0.5.
- Coordinates are continuous (area = (x2 - x1)(y2 - y1)), following the jaxvision box contract.
  `pixel_offset=1` gives the devkit's inclusive pixel convention (area = (x2 - x1 + 1)(y2 - y1 + 1)).
- The 11 recall points are k / 10 exactly; py-faster-rcnn's `np.arange(0, 1.1, 0.1)` makes 0.3,
  0.6 and 0.7 slightly larger, which changes the result when a recall equals 3/10, 6/10 or 7/10.
- A class without (non-difficult) positives has AP NaN and is left out of the mean.
"""

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class VOCResult:
    """`average_precision[C]` (NaN for classes without positives), their mean over classes with
    positives, `num_positives[C]`, and each class's raw `recall`/`precision` curves."""

    average_precision: np.ndarray
    mean_average_precision: float
    num_positives: np.ndarray
    recall: tuple[np.ndarray, ...]
    precision: tuple[np.ndarray, ...]


def voc_average_precision(recall, precision, *, use_11_point: bool = False) -> float:
    """AP from the raw (not yet interpolated) curve of detections sorted by score.

    Args:
      recall, precision: `float[D]`, cumulative over the detections in score order.
      use_11_point: VOC2007's 11-point interpolation; else VOC2010+'s all-point area.
    """
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if recall.ndim != 1 or recall.shape != precision.shape:
        raise ValueError(f"recall and precision must have the same shape [D], got {recall.shape} and {precision.shape}")
    if use_11_point:
        total = 0.0
        for k in range(11):
            reached = recall >= k / 10
            total += precision[reached].max() if reached.any() else 0.0
        return total / 11
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # envelope: best precision to the right
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def voc_box_iou(boxes1, boxes2, *, pixel_offset: float = 0.0) -> np.ndarray:
    """IoU `[N, M]` of `boxes1[N, 4]` and `boxes2[M, 4]` (xyxy), float64, -inf where they do not
    overlap (the devkit only scores overlapping boxes). `pixel_offset=1` counts pixels inclusively."""
    a = np.asarray(boxes1, np.float64).reshape(-1, 4)[:, None, :]  # [N, 1, 4]
    b = np.asarray(boxes2, np.float64).reshape(-1, 4)[None, :, :]  # [1, M, 4]
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + pixel_offset
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + pixel_offset
    area_a = (a[..., 2] - a[..., 0] + pixel_offset) * (a[..., 3] - a[..., 1] + pixel_offset)
    area_b = (b[..., 2] - b[..., 0] + pixel_offset) * (b[..., 3] - b[..., 1] + pixel_offset)
    overlap = (width > 0) & (height > 0)
    intersection = width * height
    union = np.where(overlap, area_a + area_b - intersection, 1.0)
    return np.where(overlap, intersection / union, -np.inf)


def _per_image(name: str, values, valid, num_images: int | None, trailing: tuple) -> list[np.ndarray]:
    """One array per image, padded entries dropped, shape checked."""
    arrays = [np.asarray(v) for v in values]
    if num_images is not None and len(arrays) != num_images:
        raise ValueError(f"{name} must have one entry per image ({num_images}), got {len(arrays)}")
    if valid is not None:
        valid = [np.asarray(v, bool) for v in valid]
        if len(valid) != len(arrays):
            raise ValueError(f"{name}: valid must have one entry per image ({len(arrays)}), got {len(valid)}")
    out = []
    for i, array in enumerate(arrays):
        if array.ndim != 1 + len(trailing) or array.shape[1:] != trailing:
            expected = "[N" + "".join(f", {t}" for t in trailing) + "]"
            raise ValueError(f"{name}[{i}] must have shape {expected}, got {array.shape}")
        if valid is not None:
            if valid[i].shape != array.shape[:1]:
                raise ValueError(f"valid mask for {name}[{i}] must have shape {array.shape[:1]}, got {valid[i].shape}")
            array = array[valid[i]]
        out.append(array)
    return out


def voc_evaluate(
    gt_boxes: Sequence,
    gt_labels: Sequence,
    det_boxes: Sequence,
    det_scores: Sequence,
    det_labels: Sequence,
    *,
    num_classes: int,
    gt_difficult: Sequence | None = None,
    gt_valid: Sequence | None = None,
    det_valid: Sequence | None = None,
    iou_threshold: float = 0.5,
    use_11_point: bool = False,
    pixel_offset: float = 0.0,
) -> VOCResult:
    """Per-class Pascal VOC AP and mAP over a set of images.

    Every argument before `*` holds one entry per image: a list of variable-length arrays, or a
    padded array with a leading image axis together with `gt_valid`/`det_valid` masks.

    Args:
      gt_boxes: per image `float[G, 4]` xyxy; gt_labels `int[G]` in [0, num_classes).
      det_boxes: per image `float[D, 4]` xyxy; det_scores `float[D]`; det_labels `int[D]`.
      num_classes: number of classes C (include background only if you score it).
      gt_difficult: per image `bool[G]` (VOC "difficult"), default all False.
      gt_valid, det_valid: per image `bool[G]` / `bool[D]` padding masks, default all True.
      iou_threshold: a detection matches at IoU >= this (VOC: 0.5).
      use_11_point: VOC2007 11-point AP instead of the VOC2010+ all-point AP.
      pixel_offset: 0 for continuous coordinates, 1 for the devkit's inclusive pixel boxes.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if pixel_offset < 0:
        raise ValueError(f"pixel_offset must be >= 0, got {pixel_offset}")
    num_images = len(gt_boxes)
    if num_images == 0:
        raise ValueError("gt_boxes must hold at least one image, got 0")
    gt_box_list = _per_image("gt_boxes", gt_boxes, gt_valid, None, (4,))
    gt_label_list = _per_image("gt_labels", gt_labels, gt_valid, num_images, ())
    if gt_difficult is None:
        gt_difficult = [np.zeros(len(np.asarray(b)), bool) for b in gt_boxes]
    gt_difficult_list = [d.astype(bool) for d in _per_image("gt_difficult", gt_difficult, gt_valid, num_images, ())]
    det_box_list = _per_image("det_boxes", det_boxes, det_valid, num_images, (4,))
    det_score_list = _per_image("det_scores", det_scores, det_valid, num_images, ())
    det_label_list = _per_image("det_labels", det_labels, det_valid, num_images, ())
    for i in range(num_images):
        if not (len(gt_box_list[i]) == len(gt_label_list[i]) == len(gt_difficult_list[i])):
            raise ValueError(f"image {i}: gt_boxes, gt_labels and gt_difficult must have the same length")
        if not (len(det_box_list[i]) == len(det_score_list[i]) == len(det_label_list[i])):
            raise ValueError(f"image {i}: det_boxes, det_scores and det_labels must have the same length")

    average_precision = np.full(num_classes, np.nan)
    num_positives = np.zeros(num_classes, np.int64)
    recalls, precisions = [], []
    for c in range(num_classes):
        gts = [gt_box_list[i][gt_label_list[i] == c] for i in range(num_images)]
        difficult = [gt_difficult_list[i][gt_label_list[i] == c] for i in range(num_images)]
        claimed = [np.zeros(len(g), bool) for g in gts]
        num_positives[c] = sum(int(np.count_nonzero(~d)) for d in difficult)
        det_image = np.concatenate([np.full(np.count_nonzero(det_label_list[i] == c), i) for i in range(num_images)])
        boxes = np.concatenate([det_box_list[i][det_label_list[i] == c] for i in range(num_images)]).reshape(-1, 4)
        scores = np.concatenate([det_score_list[i][det_label_list[i] == c] for i in range(num_images)])
        order = np.argsort(-scores.astype(np.float64), kind="stable")
        tp = np.zeros(len(order))
        fp = np.zeros(len(order))
        for rank, d in enumerate(order):
            image = det_image[d]
            overlaps = voc_box_iou(boxes[d], gts[image], pixel_offset=pixel_offset)[0]  # [G]
            best = int(np.argmax(overlaps)) if overlaps.size else -1
            if best < 0 or not overlaps[best] >= iou_threshold:
                fp[rank] = 1
            elif not difficult[image][best]:
                if claimed[image][best]:
                    fp[rank] = 1
                else:
                    tp[rank] = 1
                    claimed[image][best] = True
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        recall = tp / num_positives[c] if num_positives[c] else np.full_like(tp, np.nan)
        recalls.append(recall)
        precisions.append(precision)
        if num_positives[c]:
            average_precision[c] = voc_average_precision(recall, precision, use_11_point=use_11_point)
    has_positives = num_positives > 0
    mean_ap = float(np.mean(average_precision[has_positives])) if has_positives.any() else float("nan")
    return VOCResult(average_precision, mean_ap, num_positives, tuple(recalls), tuple(precisions))
