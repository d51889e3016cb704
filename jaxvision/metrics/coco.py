"""COCO detection evaluation on the host, in numpy, equal to pycocotools' `COCOeval` (bbox and segm).

`coco_evaluate(ground_truth, detections)` takes what pycocotools takes -- a COCO dataset dict
(`images`, `annotations`, `categories`) and a list of result dicts (`image_id`, `category_id`,
`bbox` [x, y, w, h] or `segmentation`, `score`) -- and returns the 12 numbers of
`COCOeval.summarize()` (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl).
jaxvision does not depend on pycocotools; the tests check this module against it.

What is reproduced, step by step (pycocotools 2.0 `cocoeval.py`, Lin et al., ECCV 2014):
- images are every `images[i]["id"]`, categories every `categories[i]["id"]` (sorted); annotations
  and detections of other images/categories are dropped.
- IoU is computed in float64 on [x, y, w, h] exactly as `maskUtils.iou` does; against a crowd ground
  truth the union is the detection's area alone (intersection / area(detection)).
- `iou_type="segm"`: masks come as polygons (rasterized pixel for pixel like pycocotools'
  `rleFrPoly`, which needs the image's `height`/`width`), uncompressed RLE or compressed RLE
  (`jaxvision.metrics.coco_masks` reads and writes COCO's string format); IoU counts pixels. As in
  pycocotools' `loadRes`, when the first result has a `bbox`, every detection's area (for the
  area ranges) is its bbox w*h, otherwise its mask area. Masks are decoded densely: memory grows
  with detections x H x W per image and category.
- a ground truth is ignored when `iscrowd` (an `ignore` key is overwritten by `iscrowd`, as in
  pycocotools) or when its `area` field lies outside the area range (bounds inclusive). The area of a
  ground truth is its `area` field (for COCO the segment area, not w*h); of a box detection, w*h.
- per image and category, detections are sorted by score (stable) and cut to 100; each, in turn,
  takes the unmatched (or crowd) ground truth of highest IoU >= the threshold, regular ground truths
  before ignored ones, later ones winning ties -- pycocotools' greedy loop.
- matches to ignored ground truths, and unmatched detections outside the area range, are ignored.
- precision is interpolated (running max from the right) and read at 101 recall points; settings
  whose category has no non-ignored ground truth are -1 and left out of the means; a summary with
  nothing left is -1.

Deviations (documented, none change the numbers on input pycocotools accepts): a missing `iscrowd`
counts as 0 and a missing ground-truth `area` as w*h or the mask area (pycocotools raises); an
empty detection list gives 0 AP/AR (pycocotools' loadRes cannot load it). pycocotools mis-treats a
ground truth whose `id` is 0 (a match to it reads as no match); ids are not used here.
`iouType="keypoints"` (OKS) is not implemented.
"""

from typing import Any, Sequence

import numpy as np

from jaxvision.metrics.coco_masks import rle_encode, segmentation_to_mask

# The same expressions as pycocotools' Params, so thresholds are the same floats (0.75 included).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETECTIONS = (1, 10, 100)
AREA_RANGE_NAMES = ("all", "small", "medium", "large")
AREA_RANGES = ((0**2, 1e5**2), (0**2, 32**2), (32**2, 96**2), (96**2, 1e5**2))
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


# ----------------------------------------------------------------------------------------------
# Input checks and grouping
# ----------------------------------------------------------------------------------------------


def _check_bbox(bbox: Any, where: str) -> list[float]:
    if len(bbox) != 4:
        raise ValueError(f"{where} bbox must be [x, y, w, h], got {bbox!r}")
    return [float(v) for v in bbox]


def _image_sizes(ground_truth: dict) -> dict:
    return {image["id"]: (image.get("height"), image.get("width")) for image in ground_truth["images"]}


def _group_ground_truth(ground_truth: dict, iou_type: str):
    """{(image_id, category_id): [(geometry, area, crowd)]} in annotation order; geometry is the
    bbox, or for "segm" a zero-argument function returning the mask (decoded on demand)."""
    if not isinstance(ground_truth, dict):
        raise TypeError(f"ground_truth must be a COCO dataset dict, got {type(ground_truth).__name__}")
    for field in ("images", "annotations", "categories"):
        if field not in ground_truth:
            raise ValueError(f"ground_truth must have the key {field!r}, got keys {sorted(ground_truth)}")
    image_ids = sorted({image["id"] for image in ground_truth["images"]})
    category_ids = sorted({category["id"] for category in ground_truth["categories"]})
    image_set, category_set = set(image_ids), set(category_ids)
    sizes = _image_sizes(ground_truth)
    grouped: dict[tuple, list] = {}
    for annotation in ground_truth["annotations"]:
        if annotation["image_id"] not in image_set or annotation["category_id"] not in category_set:
            continue
        if iou_type == "segm":
            if "segmentation" not in annotation:
                raise ValueError(f"iou_type='segm' needs a segmentation in every annotation, got keys {sorted(annotation)}")
            geometry = _mask_loader(annotation["segmentation"], *sizes[annotation["image_id"]])
            area = float(annotation["area"]) if "area" in annotation else float(geometry().sum())
        else:
            geometry = _check_bbox(annotation["bbox"], "ground_truth annotation")
            area = float(annotation["area"]) if "area" in annotation else geometry[2] * geometry[3]
        crowd = bool(annotation.get("iscrowd", 0))
        key = (annotation["image_id"], annotation["category_id"])
        grouped.setdefault(key, []).append((geometry, area, crowd))
    return image_ids, category_ids, grouped


def _group_detections(detections: Sequence[dict], image_ids, category_ids, iou_type: str, sizes: dict):
    """{(image_id, category_id): [(geometry, score, area)]} in input order."""
    if not isinstance(detections, (list, tuple)):
        raise TypeError(f"detections must be a list of dicts, got {type(detections).__name__}")
    image_set, category_set = set(image_ids), set(category_ids)
    # pycocotools' loadRes looks at the first result only: if it has a bbox, every area is w*h of
    # the bbox (also for segm results), otherwise the mask area.
    area_from_bbox = bool(detections) and bool(detections[0].get("bbox"))
    grouped: dict[tuple, list] = {}
    for detection in detections:
        if detection["image_id"] not in image_set:
            raise ValueError(
                f"detections refer to image_id {detection['image_id']!r}, which is not in ground_truth"
            )
        if detection["category_id"] not in category_set:
            continue
        if iou_type == "segm":
            segmentation = detection.get("segmentation")
            if segmentation is None and area_from_bbox:
                x, y, w, h = _check_bbox(detection["bbox"], "detection")
                segmentation = [[x, y, x, y + h, x + w, y + h, x + w, y]]  # loadRes's box polygon
            if segmentation is None:
                raise ValueError(f"iou_type='segm' needs a segmentation in every detection, got keys {sorted(detection)}")
            geometry = _mask_loader(segmentation, *sizes[detection["image_id"]])
            area = None if area_from_bbox else float(geometry().sum())
        else:
            geometry = _check_bbox(detection["bbox"], "detection")
            area = None
        if area is None:
            bbox = _check_bbox(detection["bbox"], "detection")
            area = bbox[2] * bbox[3]
        key = (detection["image_id"], detection["category_id"])
        grouped.setdefault(key, []).append((geometry, float(detection["score"]), area))
    return grouped


# ----------------------------------------------------------------------------------------------
# Per image and category
# ----------------------------------------------------------------------------------------------


def coco_box_iou(detections_xywh: np.ndarray, ground_truth_xywh: np.ndarray, is_crowd: np.ndarray) -> np.ndarray:
    """IoU `[D, G]` between boxes in COCO [x, y, w, h], float64, as pycocotools `maskUtils.iou`.

    For a crowd ground truth the denominator is the detection's area (the part of the detection
    inside the crowd region). Disjoint or touching boxes give 0.
    """
    d = np.asarray(detections_xywh, np.float64).reshape(-1, 4)[:, None, :]  # [D, 1, 4]
    g = np.asarray(ground_truth_xywh, np.float64).reshape(-1, 4)[None, :, :]  # [1, G, 4]
    width = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    height = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    overlap = (width > 0) & (height > 0)
    intersection = width * height
    detection_area = d[..., 2] * d[..., 3]
    union = np.where(
        np.asarray(is_crowd, bool)[None, :], detection_area, detection_area + g[..., 2] * g[..., 3] - intersection
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, intersection / np.where(overlap, union, 1.0), 0.0)


def _mask_loader(segmentation, height, width):
    """A function returning the decoded mask, decoding at most once."""
    cache = []

    def load() -> np.ndarray:
        if not cache:
            cache.append(segmentation_to_mask(segmentation, height, width))
        return cache[0]

    return load


def coco_mask_iou(detection_masks: np.ndarray, ground_truth_masks: np.ndarray, is_crowd: np.ndarray) -> np.ndarray:
    """IoU `[D, G]` of `bool[D, H, W]` and `bool[G, H, W]` masks, as pycocotools' `rleIou`: a crowd's
    denominator is the detection's area; no intersection gives 0. Exact below 2^24 pixels."""
    detection_masks, ground_truth_masks = np.asarray(detection_masks), np.asarray(ground_truth_masks)
    if detection_masks.shape[1:] != ground_truth_masks.shape[1:]:
        raise ValueError(
            f"masks of one image must have the same size, got {detection_masks.shape[1:]} and {ground_truth_masks.shape[1:]}"
        )
    d = detection_masks.reshape(len(detection_masks), -1).astype(np.float32)
    g = ground_truth_masks.reshape(len(ground_truth_masks), -1).astype(np.float32)
    intersection = (d @ g.T).astype(np.float64)  # [D, G], integer counts: exact in float32 below 2^24
    detection_area = d.sum(axis=1).astype(np.float64)[:, None]  # [D, 1]
    union = detection_area + g.sum(axis=1).astype(np.float64)[None, :] - intersection
    union = np.where(np.asarray(is_crowd, bool)[None, :], detection_area, union)
    overlap = intersection > 0
    return np.where(overlap, intersection / np.where(overlap, union, 1.0), 0.0)


def _match(ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray):
    """Greedy matching at every IoU threshold. Detections are sorted by score, ground truths with
    regular ones first. Returns (det_matched [T, D], det_on_ignored [T, D])."""
    num_thresholds = len(IOU_THRESHOLDS)
    num_dets, num_gts = ious.shape
    det_matched = np.zeros((num_thresholds, num_dets), bool)
    det_on_ignored = np.zeros((num_thresholds, num_dets), bool)
    if num_dets == 0 or num_gts == 0:
        return det_matched, det_on_ignored
    gt_taken = np.zeros((num_thresholds, num_gts), bool)
    threshold = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]  # [T, 1]
    rows = np.arange(num_thresholds)
    for d in range(num_dets):
        candidate = (~gt_taken | gt_crowd[None, :]) & (ious[d][None, :] >= threshold)  # [T, G]
        # pycocotools stops at the first ignored ground truth once a regular one matched, so
        # ignored ones are only considered when no regular one qualifies.
        for group in (~gt_ignore, gt_ignore):
            allowed = candidate & group[None, :] & ~det_matched[:, d : d + 1]  # [T, G]
            scores = np.where(allowed, ious[d][None, :], -1.0)  # [T, G]
            # The last maximum: pycocotools replaces its best on `>=`.
            best = num_gts - 1 - np.argmax(scores[:, ::-1], axis=1)  # [T]
            found = allowed.any(axis=1)
            t, g = rows[found], best[found]
            det_matched[t, d] = True
            det_on_ignored[t, d] = gt_ignore[g]
            gt_taken[t, g] = True
    return det_matched, det_on_ignored


def _iou(dets: list, gts: list, gt_crowd: np.ndarray, iou_type: str) -> np.ndarray:
    if iou_type == "bbox":
        det_boxes = np.asarray([d[0] for d in dets], np.float64).reshape(-1, 4)
        gt_boxes = np.asarray([g[0] for g in gts], np.float64).reshape(-1, 4)
        return coco_box_iou(det_boxes, gt_boxes, gt_crowd)
    if not dets or not gts:
        return np.zeros((len(dets), len(gts)))
    return coco_mask_iou(np.stack([d[0]() for d in dets]), np.stack([g[0]() for g in gts]), gt_crowd)


def _evaluate_image(gts: list, dets: list, area_ranges, max_detections: int, iou_type: str):
    """One image and category, every area range: a list of (scores, matched, ignored, num_gt)."""
    gt_areas = np.asarray([g[1] for g in gts], np.float64)
    gt_crowd = np.asarray([g[2] for g in gts], bool)
    det_scores = np.asarray([d[1] for d in dets], np.float64)
    order = np.argsort(-det_scores, kind="mergesort")[:max_detections]
    det_scores = det_scores[order]
    dets = [dets[i] for i in order]
    det_areas = np.asarray([d[2] for d in dets], np.float64)
    ious = _iou(dets, gts, gt_crowd, iou_type)  # [D, G]
    results = []
    for low, high in area_ranges:
        ignore = gt_crowd | (gt_areas < low) | (gt_areas > high)
        gt_order = np.argsort(ignore, kind="mergesort")
        matched, on_ignored = _match(ious[:, gt_order], ignore[gt_order], gt_crowd[gt_order])
        outside = (det_areas < low) | (det_areas > high)
        det_ignored = on_ignored | (~matched & outside[None, :])
        results.append((det_scores, matched, det_ignored, int(np.count_nonzero(~ignore))))
    return results


# ----------------------------------------------------------------------------------------------
# Accumulation and summary
# ----------------------------------------------------------------------------------------------


def _precision_recall_curve(per_image: list, max_detections: int):
    """Precision [T, R] at the recall thresholds and final recall [T], or None if no ground truth."""
    num_gt = sum(r[3] for r in per_image)
    if num_gt == 0:
        return None
    scores = np.concatenate([r[0][:max_detections] for r in per_image])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([r[1][:, :max_detections] for r in per_image], axis=1)[:, order]  # [T, N]
    ignored = np.concatenate([r[2][:, :max_detections] for r in per_image], axis=1)[:, order]  # [T, N]
    tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
    fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
    num_thresholds, num_dets = tp.shape
    precision = np.zeros((num_thresholds, len(RECALL_THRESHOLDS)))
    recall = np.zeros(num_thresholds)
    if num_dets == 0:
        return precision, recall
    rc = tp / num_gt
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
    recall[:] = rc[:, -1]
    for t in range(num_thresholds):
        index = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
        inside = index < num_dets
        precision[t, inside] = pr[t, index[inside]]
    return precision, recall


def coco_precision_recall(
    ground_truth: dict, detections: Sequence[dict], *, iou_type: str = "bbox"
) -> tuple[np.ndarray, np.ndarray, list]:
    """pycocotools' `COCOeval.evaluate(); accumulate()` for boxes (or masks, `iou_type="segm"`).

    Returns `(precision [T, R, K, A, M], recall [T, K, A, M], category_ids [K])` with T = 10 IoU
    thresholds, R = 101 recall thresholds, K categories (sorted ids), A = 4 area ranges
    (all, small, medium, large), M = 3 maxDets (1, 10, 100); -1 where a category has no
    non-ignored ground truth. Per-category AP is `precision[:, :, k, 0, 2]` averaged over its
    values > -1.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    image_ids, category_ids, gt_grouped = _group_ground_truth(ground_truth, iou_type)
    det_grouped = _group_detections(detections, image_ids, category_ids, iou_type, _image_sizes(ground_truth))
    shape = (len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(category_ids), len(AREA_RANGES), len(MAX_DETECTIONS))
    precision = -np.ones(shape)
    recall = -np.ones((shape[0],) + shape[2:])
    for k, category_id in enumerate(category_ids):
        per_area = [[] for _ in AREA_RANGES]
        for image_id in image_ids:
            gts = gt_grouped.get((image_id, category_id), [])
            dets = det_grouped.get((image_id, category_id), [])
            if not gts and not dets:
                continue
            for a, result in enumerate(_evaluate_image(gts, dets, AREA_RANGES, MAX_DETECTIONS[-1], iou_type)):
                per_area[a].append(result)
        for a in range(len(AREA_RANGES)):
            for m, max_detections in enumerate(MAX_DETECTIONS):
                curve = _precision_recall_curve(per_area[a], max_detections) if per_area[a] else None
                if curve is not None:
                    precision[:, :, k, a, m], recall[:, k, a, m] = curve
    return precision, recall, category_ids


def _mean_of_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return -1.0 if defined.size == 0 else float(np.mean(defined))


def coco_summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """The 12 numbers of `COCOeval.summarize()` from `coco_precision_recall`'s arrays."""
    if precision.ndim != 5 or recall.ndim != 4:
        raise ValueError(
            f"precision must be [T, R, K, A, M] and recall [T, K, A, M], got {precision.shape} and {recall.shape}"
        )

    def average(ap: bool, iou_threshold=None, area="all", max_detections=100) -> float:
        a = AREA_RANGE_NAMES.index(area)
        m = MAX_DETECTIONS.index(max_detections)
        values = precision[..., a, m] if ap else recall[..., a, m]
        if iou_threshold is not None:
            values = values[IOU_THRESHOLDS == iou_threshold]
        return _mean_of_defined(values)

    numbers = [
        average(True),
        average(True, iou_threshold=0.5),
        average(True, iou_threshold=0.75),
        average(True, area="small"),
        average(True, area="medium"),
        average(True, area="large"),
        average(False, max_detections=1),
        average(False, max_detections=10),
        average(False),
        average(False, area="small"),
        average(False, area="medium"),
        average(False, area="large"),
    ]
    return dict(zip(METRIC_NAMES, numbers))


def coco_evaluate(ground_truth: dict, detections: Sequence[dict], *, iou_type: str = "bbox") -> dict[str, float]:
    """COCO detection metrics, equal to pycocotools `COCOeval(gt, gt.loadRes(dets), "bbox")`.

    Args:
      ground_truth: COCO dataset dict: `images` [{"id"} (+ "height", "width" for polygons)],
        `categories` [{"id"}], `annotations` [{"image_id", "category_id", "bbox": [x, y, w, h]
        (or "segmentation" for segm), "area", "iscrowd"}].
      detections: list of {"image_id", "category_id", "bbox": [x, y, w, h] (or "segmentation":
        RLE for segm), "score"}; every image_id must be one of ground_truth's images.
      iou_type: "bbox" or "segm".

    Returns:
      `{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}` as
      floats, -1 where no category has ground truth for that setting (as `COCOeval.stats`).
    """
    precision, recall, _ = coco_precision_recall(ground_truth, detections, iou_type=iou_type)
    return coco_summarize(precision, recall)


# ----------------------------------------------------------------------------------------------
# Array front end: padded model outputs -> COCO dicts
# ----------------------------------------------------------------------------------------------


def _check_padded(name: str, array, ndim: int, batch_shape: tuple | None = None) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have rank {ndim}, got shape {array.shape}")
    if batch_shape is not None and array.shape[: len(batch_shape)] != batch_shape:
        raise ValueError(f"{name} must start with shape {batch_shape}, got {array.shape}")
    return array


def _xyxy_to_coco(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _check_masks(masks, shape: tuple) -> np.ndarray | None:
    if masks is None:
        return None
    masks = np.asarray(masks)
    if masks.ndim != 4 or masks.shape[:2] != shape:
        raise ValueError(f"masks must have shape {shape} + [H, W], got {masks.shape}")
    return masks.astype(bool)


def create_coco_detections(
    image_ids, boxes, scores, labels, valid, *, category_ids: Sequence[int], masks=None
) -> list[dict]:
    """Padded detector outputs -> the detection list `coco_evaluate` (and pycocotools) takes.

    Args:
      image_ids: `int[B]`, the COCO image id of each row.
      boxes: `float[B, N, 4]` xyxy absolute pixels.
      scores: `float[B, N]`.
      labels: `int[B, N]` in [0, len(category_ids)); label i becomes `category_ids[i]`.
      valid: `bool[B, N]`; padded entries are dropped.
      category_ids: the COCO category id of each label (e.g. `range(num_classes)`).
      masks: optional `bool[B, N, H, W]` instance masks, stored as compressed RLE `segmentation`
        for `iou_type="segm"`.
    """
    image_ids = _check_padded("image_ids", image_ids, 1)
    batch = image_ids.shape
    boxes = _check_padded("boxes", boxes, 3, batch)
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [B, N, 4], got {boxes.shape}")
    detections_shape = boxes.shape[:2]
    scores = _check_padded("scores", scores, 2, detections_shape)
    labels = _check_padded("labels", labels, 2, detections_shape)
    valid = _check_padded("valid", valid, 2, detections_shape)
    masks = _check_masks(masks, detections_shape)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    category_ids = list(category_ids)
    if np.any(valid & ((labels < 0) | (labels >= len(category_ids)))):
        raise ValueError(f"valid labels must lie in [0, {len(category_ids)}), got {np.unique(labels[valid])}")
    results = []
    for b, n in zip(*np.nonzero(valid)):
        result = {
            "image_id": int(image_ids[b]),
            "category_id": category_ids[int(labels[b, n])],
            "bbox": _xyxy_to_coco(boxes[b, n]),
            "score": float(scores[b, n]),
        }
        if masks is not None:
            result["segmentation"] = rle_encode(masks[b, n])
        results.append(result)
    return results


def create_coco_ground_truth(
    image_ids, boxes, labels, valid, *, category_ids: Sequence[int], is_crowd=None, areas=None, masks=None
) -> dict:
    """Padded ground truth -> a COCO dataset dict for `coco_evaluate` (and pycocotools).

    Args:
      image_ids: `int[B]`.
      boxes: `float[B, N, 4]` xyxy absolute pixels; labels `int[B, N]` index `category_ids`.
      valid: `bool[B, N]`; padded entries are dropped.
      category_ids: every category of the dataset (categories without boxes still count: their AP
        is -1 and left out, as in COCO).
      is_crowd: optional `bool[B, N]` (default False).
      areas: optional `float[B, N]` object areas for the small/medium/large split (default the mask
        area when masks are given, else the box area; COCO uses the segment area).
      masks: optional `bool[B, N, H, W]` instance masks, stored as compressed RLE `segmentation`
        (and the images get their height and width) for `iou_type="segm"`.
    Annotation ids are 1, 2, ... (pycocotools cannot use the id 0).
    """
    image_ids = _check_padded("image_ids", image_ids, 1)
    boxes = _check_padded("boxes", boxes, 3, image_ids.shape)
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [B, N, 4], got {boxes.shape}")
    shape = boxes.shape[:2]
    labels = _check_padded("labels", labels, 2, shape)
    valid = _check_padded("valid", valid, 2, shape)
    is_crowd = np.zeros(shape, bool) if is_crowd is None else _check_padded("is_crowd", is_crowd, 2, shape)
    masks = _check_masks(masks, shape)
    category_ids = list(category_ids)
    if np.any(valid & ((labels < 0) | (labels >= len(category_ids)))):
        raise ValueError(f"valid labels must lie in [0, {len(category_ids)}), got {np.unique(labels[valid])}")
    annotations = []
    for b, n in zip(*np.nonzero(valid)):
        bbox = _xyxy_to_coco(boxes[b, n])
        if areas is not None:
            area = float(np.asarray(areas)[b, n])
        else:
            area = float(masks[b, n].sum()) if masks is not None else bbox[2] * bbox[3]
        annotation = {
            "id": len(annotations) + 1,
            "image_id": int(image_ids[b]),
            "category_id": category_ids[int(labels[b, n])],
            "bbox": bbox,
            "area": area,
            "iscrowd": int(bool(is_crowd[b, n])),
        }
        if masks is not None:
            annotation["segmentation"] = rle_encode(masks[b, n])
        annotations.append(annotation)
    size = {} if masks is None else {"height": int(masks.shape[2]), "width": int(masks.shape[3])}
    return {
        "images": [{"id": int(i), **size} for i in image_ids],
        "annotations": annotations,
        "categories": [{"id": c} for c in category_ids],
    }
