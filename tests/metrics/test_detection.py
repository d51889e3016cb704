"""Pascal VOC AP: hand-computed values, the devkit loop in tests/reference.py, input checks."""

import numpy as np
import pytest

from jaxvision.metrics import detection
import reference  # tests/reference.py (tests/ is on sys.path through conftest.py)


def one_class(gt, dets, **kwargs):
    """gt: per image [(box, difficult)], dets: [(image, box, score)] -> voc_evaluate for class 0."""
    num_images = len(gt)
    result = detection.voc_evaluate(
        [np.asarray([b for b, _ in g], np.float32).reshape(-1, 4) for g in gt],
        [np.zeros(len(g), np.int32) for g in gt],
        [np.asarray([b for i, b, _ in dets if i == n], np.float32).reshape(-1, 4) for n in range(num_images)],
        [np.asarray([s for i, _, s in dets if i == n], np.float32) for n in range(num_images)],
        [np.zeros(sum(i == n for i, _, _ in dets), np.int32) for n in range(num_images)],
        gt_difficult=[np.asarray([d for _, d in g], bool) for g in gt],
        num_classes=1,
        **kwargs,
    )
    return result


# Image 0: ground truths a (regular) and b (difficult); image 1: ground truth c.
GT = [[([0, 0, 10, 10], False), ([20, 0, 30, 10], True)], [([0, 0, 10, 10], False)]]
DETS = [
    (0, [0, 0, 10, 10], 0.9),  # TP on a
    (0, [0, 0, 10, 10], 0.8),  # FP: a already claimed
    (0, [20, 0, 30, 10], 0.7),  # on difficult b: neither TP nor FP
    (1, [50, 50, 60, 60], 0.6),  # FP: no overlap
    (1, [0, 0, 10, 9], 0.5),  # TP on c (IoU 0.9)
]


def test_hand_computed_all_point_and_11_point():
    # npos = 2; in score order (d3 skipped) recall .5 .5 .5 1, precision 1 .5 1/3 .5.
    all_point = one_class(GT, DETS)
    assert all_point.num_positives.tolist() == [2]
    assert all_point.average_precision[0] == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    eleven_point = one_class(GT, DETS, use_11_point=True)
    # t = 0 .. 0.5 -> precision 1 (6 points), t = 0.6 .. 1 -> 0.5 (5 points).
    assert eleven_point.average_precision[0] == pytest.approx((6 * 1 + 5 * 0.5) / 11)
    assert eleven_point.mean_average_precision == pytest.approx(8.5 / 11)


def test_difficult_flag_changes_counts():
    # With b regular: npos = 3, d3 becomes a TP: recall 1/3 1/3 2/3 2/3 1, precision 1 .5 2/3 .5 .6.
    not_difficult = [[(b, False) for b, _ in g] for g in GT]
    result = one_class(not_difficult, DETS)
    assert result.num_positives.tolist() == [3]
    assert result.average_precision[0] == pytest.approx((1 + 2 / 3 + 0.6) / 3)


def test_11_point_uses_exact_tenths():
    # Recall reaches exactly 3/10: the point t = 0.3 counts (np.arange's 0.30000000000000004 would not).
    gt = [[([10 * i, 0, 10 * i + 5, 5], False) for i in range(10)]]
    dets = [(0, [10 * i, 0, 10 * i + 5, 5], 1.0 - 0.1 * i) for i in range(3)]
    assert one_class(gt, dets, use_11_point=True).average_precision[0] == pytest.approx(4 / 11)
    assert one_class(gt, dets).average_precision[0] == pytest.approx(0.3)


def test_threshold_is_inclusive_and_pixel_offset():
    gt = [[([0, 0, 20, 10], False)]]
    dets = [(0, [0, 0, 10, 10], 1.0)]  # IoU exactly 0.5
    assert one_class(gt, dets).average_precision[0] == 1.0
    assert one_class(gt, dets, iou_threshold=0.51).average_precision[0] == 0.0
    # Inclusive pixels: [0, 0, 9, 9] is 10 x 10; against [5, 0, 14, 9] the overlap is 5 x 10.
    iou = detection.voc_box_iou([[0, 0, 9, 9]], [[5, 0, 14, 9]], pixel_offset=1.0)
    assert iou[0, 0] == pytest.approx(50 / 150)
    assert detection.voc_box_iou([[0, 0, 9, 9]], [[5, 0, 14, 9]])[0, 0] == pytest.approx(36 / 126)
    assert detection.voc_box_iou([[0, 0, 1, 1]], [[2, 2, 3, 3]])[0, 0] == -np.inf


def random_voc(seed, num_images=6, num_classes=3):
    rng = np.random.default_rng(seed)
    gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores, det_labels = [], [], [], [], [], []
    for _ in range(num_images):
        g = rng.integers(0, 5)
        xy = rng.uniform(0, 80, size=(g, 2))
        wh = rng.uniform(5, 40, size=(g, 2))
        boxes = np.round(np.concatenate([xy, xy + wh], axis=1))
        labels = rng.integers(0, num_classes, size=g)
        # Detections: jittered copies (some duplicates) and random boxes; scores with ties.
        picked = rng.integers(0, g, size=rng.integers(0, 2 * g + 1)) if g else np.zeros(0, int)
        copies = boxes[picked] + rng.normal(0, 1.5, size=(len(picked), 4))
        copy_labels = labels[picked]
        xy = rng.uniform(0, 80, size=(3, 2))
        noise = np.concatenate([xy, xy + rng.uniform(5, 40, size=(3, 2))], axis=1)
        d = np.concatenate([copies, noise]).astype(np.float32)
        gt_boxes.append(boxes.astype(np.float32))
        gt_labels.append(labels.astype(np.int32))
        gt_difficult.append(rng.uniform(size=g) < 0.2)
        det_boxes.append(d)
        det_scores.append(np.round(rng.uniform(size=len(d)), 1).astype(np.float32))
        det_labels.append(np.concatenate([copy_labels, rng.integers(0, num_classes, size=3)]).astype(np.int32))
    return gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores, det_labels


@pytest.mark.parametrize("use_11_point", [False, True])
@pytest.mark.parametrize("pixel_offset", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_devkit_loop(seed, use_11_point, pixel_offset):
    num_classes = 3
    gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores, det_labels = random_voc(seed, num_classes=num_classes)
    result = detection.voc_evaluate(
        gt_boxes, gt_labels, det_boxes, det_scores, det_labels, num_classes=num_classes,
        gt_difficult=gt_difficult, use_11_point=use_11_point, pixel_offset=pixel_offset,
    )
    expected = []
    for c in range(num_classes):
        gts = {
            i: [(b.tolist(), bool(d)) for b, l, d in zip(gt_boxes[i], gt_labels[i], gt_difficult[i]) if l == c]
            for i in range(len(gt_boxes))
        }
        dets = [
            (i, b.tolist(), float(s))
            for i in range(len(det_boxes))
            for b, s, l in zip(det_boxes[i], det_scores[i], det_labels[i])
            if l == c
        ]
        expected.append(reference.voc_eval_class(gts, dets, 0.5, use_11_point, pixel_offset))
    np.testing.assert_allclose(result.average_precision, expected, rtol=0, atol=1e-12)
    assert result.mean_average_precision == pytest.approx(np.nanmean(expected))


def test_padded_inputs_equal_lists():
    gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores, det_labels = random_voc(3)
    plain = detection.voc_evaluate(gt_boxes, gt_labels, det_boxes, det_scores, det_labels, num_classes=3,
                                   gt_difficult=gt_difficult)

    def pad(arrays, size, fill=0):
        out = np.full((len(arrays), size) + arrays[0].shape[1:], fill, arrays[0].dtype)
        valid = np.zeros((len(arrays), size), bool)
        for i, a in enumerate(arrays):
            out[i, : len(a)] = a
            valid[i, : len(a)] = True
        return out, valid

    gb, gv = pad(gt_boxes, 6)
    db, dv = pad(det_boxes, 16)
    padded = detection.voc_evaluate(
        gb, pad(gt_labels, 6)[0], db, pad(det_scores, 16, 0.99)[0], pad(det_labels, 16)[0], num_classes=3,
        gt_difficult=pad(gt_difficult, 6)[0], gt_valid=gv, det_valid=dv,
    )
    np.testing.assert_array_equal(plain.average_precision, padded.average_precision)


def test_class_without_positives_is_nan_and_left_out():
    result = detection.voc_evaluate(
        [np.array([[0, 0, 10, 10]], np.float32)], [np.array([0])],
        [np.array([[0, 0, 10, 10], [5, 5, 9, 9]], np.float32)], [np.array([0.9, 0.8])], [np.array([0, 1])],
        num_classes=2,
    )
    assert result.average_precision[0] == 1.0 and np.isnan(result.average_precision[1])
    assert result.mean_average_precision == 1.0


def test_input_checks():
    ok = dict(num_classes=1)
    boxes = [np.zeros((1, 4), np.float32)]
    with pytest.raises(ValueError, match=r"gt_boxes\[0\] must have shape \[N, 4\]"):
        detection.voc_evaluate([np.zeros((1, 5))], [np.zeros(1)], boxes, [np.zeros(1)], [np.zeros(1)], **ok)
    with pytest.raises(ValueError, match="num_classes"):
        detection.voc_evaluate(boxes, [np.zeros(1)], boxes, [np.zeros(1)], [np.zeros(1)], num_classes=0)
    with pytest.raises(ValueError, match="iou_threshold"):
        detection.voc_evaluate(boxes, [np.zeros(1)], boxes, [np.zeros(1)], [np.zeros(1)], iou_threshold=1.5, **ok)
    with pytest.raises(ValueError, match="det_scores must have one entry per image"):
        detection.voc_evaluate(boxes, [np.zeros(1)], boxes, [], [np.zeros(1)], **ok)
    with pytest.raises(ValueError, match="recall and precision"):
        detection.voc_average_precision([0.1, 0.2], [1.0])
