"""COCO box evaluation: agreement with pycocotools' COCOeval, hand-built cases, the array front end."""

import contextlib
import copy
import io

import numpy as np
import pytest

from jaxvision.metrics import coco, coco_masks

pycocotools_coco = pytest.importorskip("pycocotools.coco")
# pycocotools' mask.decode predates numpy 2's copy keyword.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
pycocotools_cocoeval = pytest.importorskip("pycocotools.cocoeval")


def pycocotools_stats(ground_truth: dict, detections: list, iou_type: str = "bbox") -> np.ndarray:
    """The 12 numbers of pycocotools' COCOeval (it mutates its inputs, hence the copies)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = pycocotools_coco.COCO()
        gt.dataset = copy.deepcopy(ground_truth)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(detections))
        evaluator = pycocotools_cocoeval.COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


def ours(ground_truth: dict, detections: list, iou_type: str = "bbox") -> np.ndarray:
    result = coco.coco_evaluate(ground_truth, detections, iou_type=iou_type)
    assert tuple(result) == coco.METRIC_NAMES
    return np.asarray([result[name] for name in coco.METRIC_NAMES])


def random_box(rng, image_size=320.0):
    # Log-uniform sides give small (< 32^2), medium and large (> 96^2) objects.
    w, h = np.exp(rng.uniform(np.log(3.0), np.log(220.0), size=2))
    x, y = rng.uniform(0, image_size - w / 2), rng.uniform(0, image_size - h / 2)
    return [float(x), float(y), float(w), float(h)]


def jitter(rng, bbox, scale):
    x, y, w, h = bbox
    dx, dy = rng.normal(0, scale, size=2) * np.array([w, h])
    sw, sh = np.exp(rng.normal(0, scale, size=2))
    return [float(x + dx), float(y + dy), float(w * sw), float(h * sh)]


def random_dataset(seed: int, *, num_images=7, crowd_fraction=0.15, tie_scores=False):
    """Random ground truth and detections covering the cases COCOeval treats specially.

    Category 3 has ground truth but no detections, category 9 detections but no ground truth,
    image 2 no ground truth at all, image 5 more than 100 detections; ground-truth areas differ from
    w*h (COCO's area is the segment area); some ground truths are crowds; scores may tie.
    """
    rng = np.random.default_rng(seed)
    category_ids = [1, 3, 4, 9]
    images = [{"id": i} for i in range(1, num_images + 1)]
    annotations, detections = [], []
    for image in images:
        image_id = image["id"]
        for category_id in (1, 3, 4):
            if image_id == 2:
                continue
            for _ in range(rng.integers(0, 5)):
                bbox = random_box(rng)
                crowd = rng.uniform() < crowd_fraction
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": category_id,
                        "bbox": bbox,
                        "area": bbox[2] * bbox[3] * float(rng.uniform(0.6, 1.0)),
                        "iscrowd": int(crowd),
                    }
                )
                if category_id == 3:
                    continue
                for _ in range(rng.integers(0, 4) + (3 if crowd else 0)):
                    detections.append(
                        {"image_id": image_id, "category_id": category_id, "bbox": jitter(rng, bbox, float(rng.uniform(0.02, 0.15)))}
                    )
        # Image 5: more than 100 detections of category 1 alone (COCOeval keeps the best 100).
        num_false = 130 if image_id == 5 else rng.integers(0, 6)
        for _ in range(num_false):
            category_id = 1 if image_id == 5 else int(rng.choice([1, 4, 9]))
            detections.append({"image_id": image_id, "category_id": category_id, "bbox": random_box(rng)})
    order = rng.permutation(len(detections))
    detections = [detections[i] for i in order]
    for detection in detections:
        score = float(rng.uniform())
        detection["score"] = round(score, 1) if tie_scores else score
    ground_truth = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in category_ids]}
    return ground_truth, detections


@pytest.mark.parametrize(
    "seed,kwargs",
    [
        (0, {}),
        (1, {}),
        (2, {"crowd_fraction": 0.4}),
        (3, {"tie_scores": True}),
        (4, {"num_images": 4, "crowd_fraction": 0.0}),
    ],
)
def test_matches_pycocotools_on_random_datasets(seed, kwargs):
    ground_truth, detections = random_dataset(seed, **kwargs)
    crowded = sum(d["image_id"] == 5 and d["category_id"] == 1 for d in detections)
    assert crowded > 100 or kwargs.get("num_images") == 4
    np.testing.assert_allclose(ours(ground_truth, detections), pycocotools_stats(ground_truth, detections), rtol=0, atol=1e-6)


def test_matches_pycocotools_on_exact_thresholds():
    # IoUs of exactly 0.5 and 0.75 (boxes on integer coordinates): `>=` decides, as in pycocotools.
    ground_truth = {
        "images": [{"id": 1}],
        "categories": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 10], "area": 400, "iscrowd": 0}],
    }
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 10], "score": 0.9},  # IoU 0.5
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 30, 10], "score": 0.8},  # IoU 0.75
    ]
    expected = pycocotools_stats(ground_truth, detections)
    np.testing.assert_allclose(ours(ground_truth, detections), expected, rtol=0, atol=1e-12)
    # At 0.5 the first detection is a TP (precision 1); 0.55..0.75 the second at precision 1/2.
    assert expected[1] == pytest.approx(1.0)


def test_hand_built_perfect_and_empty_categories():
    ground_truth = {
        "images": [{"id": 7}, {"id": 8}],
        "categories": [{"id": 1}, {"id": 2}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0},
            {"id": 2, "image_id": 8, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
        ],
    }
    detections = [
        {"image_id": 7, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.5},
        {"image_id": 8, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.4},
        {"image_id": 8, "category_id": 42, "bbox": [50, 50, 10, 10], "score": 0.9},  # unknown category: dropped
    ]
    stats = coco.coco_evaluate(ground_truth, detections)
    # Category 2 has no ground truth: -1, left out of the means. No large object: APl is -1.
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["APs"] == pytest.approx(1.0) and stats["APm"] == pytest.approx(1.0)
    assert stats["APl"] == -1.0 and stats["ARl"] == -1.0
    assert stats["AR1"] == pytest.approx(1.0)
    np.testing.assert_allclose(ours(ground_truth, detections), pycocotools_stats(ground_truth, detections), atol=1e-12)


def test_crowd_region_absorbs_detections():
    # Three detections inside a crowd box: ignored, not false positives (IoU = inter / area(det)).
    ground_truth = {
        "images": [{"id": 1}],
        "categories": [{"id": 1}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "area": 1e4, "iscrowd": 1},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [200, 200, 40, 40], "area": 1600, "iscrowd": 0},
        ],
    }
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [10 * i, 10 * i, 20, 20], "score": 0.9 - 0.1 * i} for i in range(3)
    ] + [{"image_id": 1, "category_id": 1, "bbox": [200, 200, 40, 40], "score": 0.1}]
    iou = coco.coco_box_iou(np.array([[10.0, 10, 20, 20]]), np.array([[0.0, 0, 100, 100]]), np.array([True]))
    assert iou[0, 0] == pytest.approx(1.0)
    stats = coco.coco_evaluate(ground_truth, detections)
    assert stats["AP"] == pytest.approx(1.0)
    np.testing.assert_allclose(ours(ground_truth, detections), pycocotools_stats(ground_truth, detections), atol=1e-12)


def test_no_detections_gives_zero():
    ground_truth, _ = random_dataset(0)
    stats = coco.coco_evaluate(ground_truth, [])
    assert stats["AP"] == 0.0 and stats["AR100"] == 0.0


def test_array_front_end_round_trip():
    ground_truth, detections = random_dataset(5, crowd_fraction=0.0)
    category_ids = [c["id"] for c in ground_truth["categories"]]
    image_ids = [image["id"] for image in ground_truth["images"]]
    max_gt = 12
    max_det = 140
    gt_boxes = np.zeros((len(image_ids), max_gt, 4), np.float32)
    gt_labels = np.zeros((len(image_ids), max_gt), np.int32)
    gt_valid = np.zeros((len(image_ids), max_gt), bool)
    det_boxes = np.zeros((len(image_ids), max_det, 4), np.float32)
    det_scores = np.zeros((len(image_ids), max_det), np.float32)
    det_labels = np.zeros((len(image_ids), max_det), np.int32)
    det_valid = np.zeros((len(image_ids), max_det), bool)
    for b, image_id in enumerate(image_ids):
        gts = [a for a in ground_truth["annotations"] if a["image_id"] == image_id]
        dets = [d for d in detections if d["image_id"] == image_id]
        for n, a in enumerate(gts):
            x, y, w, h = a["bbox"]
            gt_boxes[b, n] = [x, y, x + w, y + h]
            gt_labels[b, n] = category_ids.index(a["category_id"])
            gt_valid[b, n] = True
        for n, d in enumerate(dets):
            x, y, w, h = d["bbox"]
            det_boxes[b, n] = [x, y, x + w, y + h]
            det_scores[b, n] = d["score"]
            det_labels[b, n] = category_ids.index(d["category_id"])
            det_valid[b, n] = True
    gt_dict = coco.create_coco_ground_truth(image_ids, gt_boxes, gt_labels, gt_valid, category_ids=category_ids)
    det_list = coco.create_coco_detections(
        image_ids, det_boxes, det_scores, det_labels, det_valid, category_ids=category_ids
    )
    assert len(det_list) == len(detections) and len(gt_dict["annotations"]) == len(ground_truth["annotations"])
    np.testing.assert_allclose(ours(gt_dict, det_list), pycocotools_stats(gt_dict, det_list), atol=1e-6)


def test_input_checks():
    ground_truth, detections = random_dataset(0, num_images=3)
    with pytest.raises(ValueError, match="categories"):
        coco.coco_evaluate({"images": [], "annotations": []}, [])
    with pytest.raises(ValueError, match="image_id 99"):
        coco.coco_evaluate(ground_truth, [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(ValueError, match="iou_type"):
        coco.coco_evaluate(ground_truth, detections, iou_type="keypoints")
    with pytest.raises(ValueError, match=r"boxes must have shape \[B, N, 4\]"):
        coco.create_coco_detections([1], np.zeros((1, 2, 5)), np.zeros((1, 2)), np.zeros((1, 2), int),
                                    np.ones((1, 2), bool), category_ids=[1])
    with pytest.raises(ValueError, match="valid labels"):
        coco.create_coco_detections([1], np.zeros((1, 2, 4)), np.zeros((1, 2)), np.full((1, 2), 3),
                                    np.ones((1, 2), bool), category_ids=[1])


def test_only_best_100_detections_per_image_and_category_count():
    ground_truth = {
        "images": [{"id": 1}],
        "categories": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0}],
    }
    misses = [{"image_id": 1, "category_id": 1, "bbox": [200, 200, 5, 5], "score": 0.5 + i / 1000} for i in range(100)]
    hit = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.1}
    assert coco.coco_evaluate(ground_truth, misses + [hit])["AR100"] == 0.0  # the hit ranks 101st
    assert coco.coco_evaluate(ground_truth, misses[1:] + [hit])["AR100"] == 1.0
    for detections in (misses + [hit], misses[1:] + [hit]):
        np.testing.assert_allclose(ours(ground_truth, detections), pycocotools_stats(ground_truth, detections), atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Masks (iou_type="segm")
# ------------------------------------------------------------------------------------------------

pycocotools_mask = pytest.importorskip("pycocotools.mask")


@pytest.mark.parametrize("seed", range(4))
def test_polygon_rasterizer_and_rle_match_pycocotools(seed):
    rng = np.random.default_rng(seed)
    for trial in range(150):
        height, width = (int(v) for v in rng.integers(1, 40, size=2))
        points = rng.uniform(-5, max(height, width) + 5, size=(int(rng.integers(3, 9)), 2))
        if trial % 3 == 0:
            points = np.round(points * 2) / 2  # vertices on pixel centres and edges
        if trial % 5 == 0:
            points[2] = points[1]  # a repeated vertex
        polygons = [points.ravel().tolist(), rng.uniform(0, max(height, width), size=8).tolist()][: 1 + trial % 2]
        expected = pycocotools_mask.decode(pycocotools_mask.merge(pycocotools_mask.frPyObjects(polygons, height, width)))
        np.testing.assert_array_equal(coco_masks.polygons_to_mask(polygons, height, width), expected.astype(bool))
        mask = rng.uniform(size=(height, width)) < rng.uniform()
        rle = pycocotools_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert coco_masks.rle_encode(mask)["counts"] == rle["counts"].decode()
        np.testing.assert_array_equal(coco_masks.rle_decode(rle), mask)
    boxes = [[2.5, 3.0, 10.0, 4.0]]  # pycocotools reads 4-number "polygons" as boxes
    np.testing.assert_array_equal(
        coco_masks.polygons_to_mask(boxes, 12, 15),
        pycocotools_mask.decode(pycocotools_mask.frPyObjects(np.asarray(boxes), 12, 15))[..., 0].astype(bool),
    )


def random_polygon(rng, width, height):
    centre = rng.uniform([0, 0], [width, height])
    radius = np.exp(rng.uniform(np.log(2.0), np.log(120.0)))
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(3, 9))))
    radii = radius * rng.uniform(0.5, 1.0, size=angles.size)
    return np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], axis=1)


def random_segm_dataset(seed: int, *, with_bbox: bool):
    """Polygon ground truth, uncompressed-RLE crowds, compressed-RLE detections (COCO's formats)."""
    rng = np.random.default_rng(seed)
    images, annotations, detections = [], [], []
    for image_id in range(1, 6):
        height, width = (int(v) for v in rng.integers(80, 200, size=2))
        images.append({"id": image_id, "height": height, "width": width})
        for category_id in (1, 2):
            for _ in range(int(rng.integers(0, 4))):
                points = random_polygon(rng, width, height)
                crowd = rng.uniform() < 0.15
                mask = coco_masks.polygons_to_mask([points.ravel().tolist()], height, width)
                if crowd:
                    flat = mask.T.reshape(-1)
                    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
                    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
                    segmentation = {"size": [height, width], "counts": ([0] if flat[0] else []) + counts}
                else:
                    segmentation = [points.ravel().tolist()]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                    "segmentation": segmentation, "area": float(mask.sum()) * float(rng.uniform(0.8, 1.0)),
                    "bbox": [0.0, 0.0, 1.0, 1.0], "iscrowd": int(crowd),
                })
                for _ in range(int(rng.integers(0, 3)) + 2 * crowd):
                    jittered = points + rng.normal(0, 2.0, size=points.shape)
                    detections.append((image_id, category_id, coco_masks.polygons_to_mask([jittered.ravel().tolist()], height, width)))
            for _ in range(int(rng.integers(0, 3))):
                false_mask = coco_masks.polygons_to_mask([random_polygon(rng, width, height).ravel().tolist()], height, width)
                detections.append((image_id, category_id, false_mask))
    results = []
    for image_id, category_id, mask in detections:
        result = {"image_id": image_id, "category_id": category_id, "segmentation": coco_masks.rle_encode(mask),
                  "score": float(rng.uniform())}
        if with_bbox:
            ys, xs = np.nonzero(mask)
            result["bbox"] = [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)] if xs.size else [0.0, 0.0, 0.0, 0.0]
        results.append(result)
    ground_truth = {"images": images, "annotations": annotations, "categories": [{"id": 1}, {"id": 2}]}
    return ground_truth, results


@pytest.mark.parametrize("seed,with_bbox", [(0, False), (1, False), (2, True), (3, True)])
def test_segm_matches_pycocotools(seed, with_bbox):
    ground_truth, detections = random_segm_dataset(seed, with_bbox=with_bbox)
    got = ours(ground_truth, detections, "segm")
    np.testing.assert_allclose(got, pycocotools_stats(ground_truth, detections, "segm"), rtol=0, atol=1e-6)


def test_array_front_end_with_masks():
    rng = np.random.default_rng(7)
    num_images, max_objects, height, width = 2, 3, 40, 50
    gt_masks = np.zeros((num_images, max_objects, height, width), bool)
    det_masks = np.zeros((num_images, max_objects + 1, height, width), bool)
    for b in range(num_images):
        for n in range(max_objects):
            gt_masks[b, n] = coco_masks.polygons_to_mask([random_polygon(rng, width, height).ravel().tolist()], height, width)
            det_masks[b, n] = gt_masks[b, n] ^ (rng.uniform(size=(height, width)) < 0.05)
        det_masks[b, -1, :5, :5] = True
    boxes = np.tile(np.array([0, 0, 10, 10], np.float32), (num_images, max_objects, 1))
    gt_valid = np.array([[True, True, False], [True, True, True]])
    labels = np.array([[0, 1, 0], [1, 1, 0]], np.int32)
    ground_truth = coco.create_coco_ground_truth(
        [3, 4], boxes, labels, gt_valid, category_ids=[5, 6], masks=gt_masks
    )
    assert ground_truth["images"][0] == {"id": 3, "height": height, "width": width}
    detections = coco.create_coco_detections(
        [3, 4], np.concatenate([boxes, boxes[:, :1]], axis=1), rng.uniform(size=(2, 4)),
        np.concatenate([labels, labels[:, :1]], axis=1), np.ones((2, 4), bool), category_ids=[5, 6], masks=det_masks,
    )
    np.testing.assert_array_equal(coco_masks.rle_decode(detections[0]["segmentation"]), det_masks[0, 0])
    got = ours(ground_truth, detections, "segm")
    np.testing.assert_allclose(got, pycocotools_stats(ground_truth, detections, "segm"), rtol=0, atol=1e-6)
    assert got[coco.METRIC_NAMES.index("AP50")] > 0.5
