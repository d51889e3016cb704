"""Slow, obviously correct numpy references for jaxvision, organized by section.

Each function follows its paper / torchvision definition literally (Python loops, float32 where the
library computes in float32 so that comparisons at a threshold agree exactly). Tests compare the jnp
implementations against these; benchmarks use them as the numpy contender.

Sections: ops.boxes, ops.nms, ops.anchors, ops.matching, ops.roi, ops.masks, ops.pooling.
(Metric and loss references go in their own sections below.)
"""

import math

import numpy as np

# ================================================================================================
# ops.boxes
# ================================================================================================


def box_iou_pair(a, b):
    """IoU of two xyxy boxes, float32 arithmetic; 0 when the union is empty (torchvision gives NaN)."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    w = max(np.float32(0), min(a[2], b[2]) - max(a[0], b[0]))
    h = max(np.float32(0), min(a[3], b[3]) - max(a[1], b[1]))
    inter = np.float32(w * h)
    union = np.float32(area_a + area_b - inter)
    return np.float32(inter / union) if union != 0 else np.float32(0)


def box_iou(boxes1, boxes2):
    """Pairwise IoU `[N, M]` by a double loop."""
    out = np.zeros((len(boxes1), len(boxes2)), np.float32)
    for i, a in enumerate(boxes1):
        for j, b in enumerate(boxes2):
            out[i, j] = box_iou_pair(a, b)
    return out


def _enclosing_and_centres(a, b):
    a = [float(v) for v in a]
    b = [float(v) for v in b]
    cw = max(a[2], b[2]) - min(a[0], b[0])
    ch = max(a[3], b[3]) - min(a[1], b[1])
    dx = (a[0] + a[2]) / 2 - (b[0] + b[2]) / 2
    dy = (a[1] + a[3]) / 2 - (b[1] + b[3]) / 2
    return a, b, cw, ch, dx * dx + dy * dy


def generalized_box_iou_pair(a, b):
    """GIoU = IoU - (C - U) / C (Rezatofighi et al. 2019), float64; 0 for an empty enclosing box."""
    iou = float(box_iou_pair(a, b))
    a, b, cw, ch, _ = _enclosing_and_centres(a, b)
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    c = cw * ch
    return iou - ((c - union) / c if c != 0 else 0.0)


def distance_box_iou_pair(a, b, eps=1e-7):
    """DIoU = IoU - rho^2 / (c^2 + eps) (Zheng et al. 2020)."""
    iou = float(box_iou_pair(a, b))
    _, _, cw, ch, rho2 = _enclosing_and_centres(a, b)
    return iou - rho2 / (cw * cw + ch * ch + eps)


def complete_box_iou_pair(a, b, eps=1e-7):
    """CIoU = DIoU - alpha v, v = 4/pi^2 (atan(w1/h1) - atan(w2/h2))^2, alpha = v / (1 - IoU + v + eps)."""
    iou = float(box_iou_pair(a, b))
    a_, b_, _, _, _ = _enclosing_and_centres(a, b)
    v = 4 / math.pi**2 * (math.atan2(a_[2] - a_[0], a_[3] - a_[1]) - math.atan2(b_[2] - b_[0], b_[3] - b_[1])) ** 2
    alpha = v / (1 - iou + v + eps) if (1 - iou + v + eps) != 0 else 0.0
    return distance_box_iou_pair(a, b, eps) - alpha * v


def encode_box_pair(box, anchor, weights=(1.0, 1.0, 1.0, 1.0)):
    """R-CNN (tx, ty, tw, th) for one box against one anchor, float64."""
    wx, wy, ww, wh = weights
    aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
    acx, acy = anchor[0] + 0.5 * aw, anchor[1] + 0.5 * ah
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = box[0] + 0.5 * w, box[1] + 0.5 * h
    return [wx * (cx - acx) / aw, wy * (cy - acy) / ah, ww * math.log(w / aw), wh * math.log(h / ah)]


# ================================================================================================
# ops.nms
# ================================================================================================


def nms(boxes, scores, iou_threshold, max_outputs, score_threshold=None, valid=None, class_ids=None):
    """Textbook greedy NMS (torchvision.ops.nms / batched_nms semantics), returns a list of indices.

    Visit boxes by descending score, ties by lower index; keep a box unless some kept box of the same
    class has IoU strictly greater than the threshold with it; stop after max_outputs kept.
    NaN scores, invalid boxes and scores <= score_threshold are skipped.
    """
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores, np.float32)
    n = len(scores)
    candidates = [
        i for i in range(n)
        if (valid is None or valid[i]) and not np.isnan(scores[i])
        and (score_threshold is None or scores[i] > np.float32(score_threshold))
    ]
    candidates.sort(key=lambda i: (-float(scores[i]), i))
    kept = []
    for i in candidates:
        if len(kept) == max_outputs:
            break
        if all(
            not (box_iou_pair(boxes[i], boxes[k]) > np.float32(iou_threshold))
            or (class_ids is not None and class_ids[i] != class_ids[k])
            for k in kept
        ):
            kept.append(i)
    return kept


def nms_vectorized(boxes, scores, iou_threshold, max_outputs):
    """The classic py-faster-rcnn numpy NMS (one vectorized IoU row per kept box). Benchmark contender.

    Same semantics as `nms` for valid, non-NaN scores (stable sort: ties by lower index).
    """
    boxes = np.asarray(boxes, np.float32)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    threshold = np.float32(iou_threshold)
    kept = []
    while order.size > 0 and len(kept) < max_outputs:
        i = order[0]
        kept.append(i)
        rest = order[1:]
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        union = areas[i] + areas[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union != 0, inter / union, np.float32(0))
        order = rest[~(iou > threshold)]
    return np.asarray(kept, np.int64)


def soft_nms(boxes, scores, max_outputs, method="gaussian", sigma=0.5, iou_threshold=0.3, score_threshold=0.001):
    """Soft-NMS (Bodla et al. 2017) as a literal loop; returns (indices, new_scores) lists."""
    boxes = np.asarray(boxes, np.float32)
    current = [np.float32(s) if not np.isnan(s) else np.float32(-np.inf) for s in scores]
    indices, new_scores = [], []
    for _ in range(max_outputs):
        best = int(np.argmax(current))
        if not current[best] > score_threshold:
            break
        indices.append(best)
        new_scores.append(float(current[best]))
        for j in range(len(current)):
            if j == best or current[j] == -np.inf:
                continue
            iou = box_iou_pair(boxes[best], boxes[j])
            if method == "linear":
                factor = np.float32(1) - iou if iou > np.float32(iou_threshold) else np.float32(1)
            else:
                factor = np.float32(math.exp(-float(iou) * float(iou) / sigma))
            current[j] = np.float32(current[j] * factor)
        current[best] = np.float32(-np.inf)
    return indices, new_scores


# ================================================================================================
# ops.roi
# ================================================================================================


def _bilinear_torchvision(fmap, y, x):
    """torchvision roi_align_kernel.cpp bilinear_interpolate on one HWC map (float64)."""
    height, width = fmap.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(fmap.shape[2])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * fmap[y_low, x_low] + hy * lx * fmap[y_low, x_high]
            + ly * hx * fmap[y_high, x_low] + ly * lx * fmap[y_high, x_high])


def roi_align(features, boxes, box_indices, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """torchvision.ops.roi_align (CPU kernel) as loops, NHWC; returns [K, out_h, out_w, C] float64."""
    features = np.asarray(features, np.float64)
    out_h, out_w = output_size
    out = np.zeros((len(boxes), out_h, out_w, features.shape[3]))
    offset = 0.5 if aligned else 0.0
    for k, (box, b) in enumerate(zip(np.asarray(boxes, np.float64), box_indices)):
        x1, y1, x2, y2 = (float(v) * spatial_scale - offset for v in box)
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / out_h, roi_w / out_w
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / out_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / out_w)
        count = max(grid_h * grid_w, 1)
        for ph in range(out_h):
            for pw in range(out_w):
                total = np.zeros(features.shape[3])
                for iy in range(grid_h):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        total += _bilinear_torchvision(features[b], y, x)
                out[k, ph, pw] = total / count
    return out


def roi_pool(features, boxes, box_indices, output_size, spatial_scale=1.0):
    """torchvision.ops.roi_pool (Fast R-CNN) as loops, NHWC; returns [K, out_h, out_w, C]."""
    features = np.asarray(features, np.float64)
    height, width = features.shape[1:3]
    out_h, out_w = output_size
    out = np.zeros((len(boxes), out_h, out_w, features.shape[3]))

    def c_round(v):
        return math.floor(v + 0.5) if v >= 0 else math.ceil(v - 0.5)

    for k, (box, b) in enumerate(zip(np.asarray(boxes, np.float32), box_indices)):
        x1, y1, x2, y2 = (c_round(float(np.float32(v) * np.float32(spatial_scale))) for v in box)
        roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        bin_h, bin_w = np.float32(roi_h) / np.float32(out_h), np.float32(roi_w) / np.float32(out_w)
        for ph in range(out_h):
            for pw in range(out_w):
                hs = min(max(math.floor(ph * bin_h) + y1, 0), height)
                he = min(max(math.ceil((ph + 1) * bin_h) + y1, 0), height)
                ws = min(max(math.floor(pw * bin_w) + x1, 0), width)
                we = min(max(math.ceil((pw + 1) * bin_w) + x1, 0), width)
                if he <= hs or we <= ws:
                    continue
                out[k, ph, pw] = features[b, hs:he, ws:we].max(axis=(0, 1))
    return out


# ================================================================================================
# ops.anchors
# ================================================================================================


def anchor_grid(size_list, ratio_list, grid_size, stride):
    """torchvision AnchorGenerator for one level, literally: location-major, then ratio, then size."""
    base = []
    for ratio in ratio_list:
        h_ratio = np.sqrt(np.float32(ratio))
        w_ratio = np.float32(1) / h_ratio
        for size in size_list:
            w, h = w_ratio * np.float32(size), h_ratio * np.float32(size)
            base.append([np.round(-w / 2), np.round(-h / 2), np.round(w / 2), np.round(h / 2)])
    out = []
    for i in range(grid_size[0]):
        for j in range(grid_size[1]):
            for x1, y1, x2, y2 in base:
                out.append([x1 + j * stride[1], y1 + i * stride[0], x2 + j * stride[1], y2 + i * stride[0]])
    return np.asarray(out, np.float32)


def ssd_default_boxes(image_size, feature_sizes, aspect_ratios, scales, clip=True):
    """SSD default boxes (Liu et al. 2016, torchvision DefaultBoxGenerator) as loops, xyxy pixels."""
    out = []
    for k, ((fh, fw), ratios) in enumerate(zip(feature_sizes, aspect_ratios)):
        pairs = [(scales[k], scales[k]), (math.sqrt(scales[k] * scales[k + 1]),) * 2]
        for a in ratios:
            pairs += [(scales[k] * math.sqrt(a), scales[k] / math.sqrt(a)),
                      (scales[k] / math.sqrt(a), scales[k] * math.sqrt(a))]
        for i in range(fh):
            for j in range(fw):
                for w, h in pairs:
                    if clip:
                        w, h = min(max(w, 0), 1), min(max(h, 0), 1)
                    cx, cy = (j + 0.5) / fw * image_size[1], (i + 0.5) / fh * image_size[0]
                    w, h = w * image_size[1], h * image_size[0]
                    out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.asarray(out)


# ================================================================================================
# ops.matching
# ================================================================================================


def match_boxes(quality, high, low, allow_low_quality_matches):
    """torchvision Matcher, literally; returns (matched index, label 1/0/-1) lists.

    Thresholds compare in float32, as torch compares a float32 tensor with a Python float.
    """
    quality = np.asarray(quality, np.float32)
    high, low = np.float32(high), np.float32(low)
    num_gt, num_pred = quality.shape
    if num_gt == 0:
        return [0] * num_pred, [0] * num_pred
    matched, labels = [], []
    for n in range(num_pred):
        column = [quality[m, n] for m in range(num_gt)]
        best = max(column)
        matched.append(column.index(best))
        labels.append(1 if best >= high else (0 if best < low else -1))
    if allow_low_quality_matches:
        for m in range(num_gt):
            best_of_gt = max(quality[m, n] for n in range(num_pred))
            for n in range(num_pred):
                if quality[m, n] == best_of_gt:
                    labels[n] = 1
    return matched, labels


# ================================================================================================
# ops.masks
# ================================================================================================


def paste_mask(mask, box, image_size, padding=1):
    """torchvision paste_masks_in_image for one mask, with an explicit bilinear resize loop."""
    size = mask.shape[0]
    padded = np.pad(np.asarray(mask, np.float64), padding)
    scale = (size + 2 * padding) / size
    w_half, h_half = (box[2] - box[0]) * 0.5 * scale, (box[3] - box[1]) * 0.5 * scale
    x_c, y_c = (box[2] + box[0]) * 0.5, (box[3] + box[1]) * 0.5
    x0, y0, x1, y1 = (int(v) for v in (x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half))
    w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
    m = padded.shape[0]

    def source(dst, out_size):  # PyTorch bilinear, align_corners=False
        s = max((dst + 0.5) * (m / out_size) - 0.5, 0.0)
        lo = int(s)
        hi = lo + 1 if lo < m - 1 else lo
        return lo, hi, s - lo

    resized = np.zeros((h, w))
    for i in range(h):
        ylo, yhi, fy = source(i, h)
        for j in range(w):
            xlo, xhi, fx = source(j, w)
            resized[i, j] = ((1 - fy) * ((1 - fx) * padded[ylo, xlo] + fx * padded[ylo, xhi])
                             + fy * ((1 - fx) * padded[yhi, xlo] + fx * padded[yhi, xhi]))
    image = np.zeros(image_size)
    for y in range(max(y0, 0), min(y1 + 1, image_size[0])):
        for x in range(max(x0, 0), min(x1 + 1, image_size[1])):
            image[y, x] = resized[y - y0, x - x0]
    return image


# ================================================================================================
# ops.pooling
# ================================================================================================


def max_pool_with_argmax(x, window, stride, padding):
    """torch max_pool2d(return_indices=True) on NHWC as loops: first maximum in the window, NaN wins."""
    n_, height, width, channels = x.shape
    out_h = (height + 2 * padding - window) // stride + 1
    out_w = (width + 2 * padding - window) // stride + 1
    values = np.zeros((n_, out_h, out_w, channels), x.dtype)
    indices = np.zeros((n_, out_h, out_w, channels), np.int64)
    for n in range(n_):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    hs, ws = i * stride - padding, j * stride - padding
                    best, where = -np.inf, max(hs, 0) * width + max(ws, 0)
                    for y in range(max(hs, 0), min(hs + window, height)):
                        for xx in range(max(ws, 0), min(ws + window, width)):
                            v = x[n, y, xx, c]
                            if v > best or np.isnan(v):
                                best, where = v, y * width + xx
                    values[n, i, j, c], indices[n, i, j, c] = best, where
    return values, indices


# ================================================================================================
# metrics.detection, metrics.ranking and losses (owner: metrics/losses; appended section)
# ================================================================================================


def voc_iou_pair(a, b, pixel_offset=0.0):
    """Devkit overlap of two xyxy boxes: None when they do not overlap (`iw > 0 & ih > 0` fails)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + pixel_offset
    ih = min(a[3], b[3]) - max(a[1], b[1]) + pixel_offset
    if not (iw > 0 and ih > 0):
        return None
    area_a = (a[2] - a[0] + pixel_offset) * (a[3] - a[1] + pixel_offset)
    area_b = (b[2] - b[0] + pixel_offset) * (b[3] - b[1] + pixel_offset)
    return iw * ih / (area_a + area_b - iw * ih)  # the devkit's order of operations


def voc_ap(recall, precision, use_11_point):
    """VOCap (all points) or the VOC2007 11-point AP, literally as the devkit loops."""
    if use_11_point:
        ap = 0.0
        for k in range(11):
            ps = [p for r, p in zip(recall, precision) if r >= k / 10]
            ap += (max(ps) if ps else 0.0) / 11
        return ap
    mrec = [0.0] + list(recall) + [1.0]
    mpre = [0.0] + list(precision) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def voc_eval_class(gts, dets, iou_threshold=0.5, use_11_point=False, pixel_offset=0.0):
    """AP of one class, following VOCevaldet.m line by line.

    gts: {image: [(box, difficult), ...]}; dets: [(image, box, score), ...] in input order.
    Returns nan when the class has no non-difficult ground truth.
    """
    npos = sum(not difficult for objects in gts.values() for _, difficult in objects)
    claimed = {image: [False] * len(objects) for image, objects in gts.items()}
    order = sorted(range(len(dets)), key=lambda d: -dets[d][2])  # Python's sort is stable
    tp, fp = [], []
    for d in order:
        image, box, _ = dets[d]
        ovmax, jmax = -math.inf, None
        for j, (gt_box, _) in enumerate(gts.get(image, [])):
            ov = voc_iou_pair(box, gt_box, pixel_offset)
            if ov is not None and ov > ovmax:
                ovmax, jmax = ov, j
        is_tp = is_fp = 0
        if ovmax >= iou_threshold:
            if not gts[image][jmax][1]:
                if not claimed[image][jmax]:
                    is_tp = 1
                    claimed[image][jmax] = True
                else:
                    is_fp = 1
        else:
            is_fp = 1
        tp.append(is_tp)
        fp.append(is_fp)
    if npos == 0:
        return math.nan
    recall, precision, ctp, cfp = [], [], 0, 0
    for t, f in zip(tp, fp):
        ctp, cfp = ctp + t, cfp + f
        recall.append(ctp / npos)
        precision.append(ctp / max(ctp + cfp, np.finfo(np.float64).eps))
    return voc_ap(recall, precision, use_11_point)


def hard_negative_mask(negative_losses, positive, valid, neg_pos_ratio=3):
    """SSD hard-negative mining by a loop: the k = min(ratio * #positives, #negatives) valid,
    non-positive priors of highest loss (ties: lower index first)."""
    candidates = [i for i in range(len(positive)) if valid[i] and not positive[i]]
    num_positives = sum(1 for i in range(len(positive)) if valid[i] and positive[i])
    k = min(neg_pos_ratio * num_positives, len(candidates))
    chosen = sorted(candidates, key=lambda i: (-float(negative_losses[i]), i))[:k]
    mask = np.zeros(len(positive), bool)
    mask[chosen] = True
    return mask


def roc_points(labels, scores, pos_label=1):
    """ROC by brute force: one threshold per distinct score (descending), after +inf; at each, count
    the positives and negatives whose score is >= the threshold."""
    positive = [label == pos_label for label in labels]
    num_pos, num_neg = sum(positive), len(positive) - sum(positive)
    thresholds = [math.inf] + sorted(set(float(s) for s in scores), reverse=True)
    fpr, tpr = [], []
    for threshold in thresholds:
        tpr.append(sum(1 for p, s in zip(positive, scores) if p and s >= threshold) / num_pos)
        fpr.append(sum(1 for p, s in zip(positive, scores) if not p and s >= threshold) / num_neg)
    return np.array(fpr), np.array(tpr), np.array(thresholds)


def auc_by_pairs(labels, scores, pos_label=1):
    """P(score of a random positive > score of a random negative), ties counting 1/2 (Mann-Whitney U)."""
    pos = [s for label, s in zip(labels, scores) if label == pos_label]
    neg = [s for label, s in zip(labels, scores) if label != pos_label]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def conv2d_gradients(x, w, cotangent, padding):
    """Gradients of `sum(cotangent * y)` for the stride-1 NHWC/HWIO cross-correlation
    `y[b, i, j, o] = sum_{u, v, c} x_padded[b, i + u, j + v, c] w[u, v, c, o]`, in float64 with one
    shifted product per kernel tap. padding ((top, bottom), (left, right)). Returns (dx, dw)."""
    (top, bottom), (left, right) = padding
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    g = np.asarray(cotangent, np.float64)
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out_h, out_w = g.shape[1:3]
    padded_grad = np.zeros_like(padded)
    w_grad = np.zeros_like(w)
    for u in range(w.shape[0]):
        for v in range(w.shape[1]):
            window = padded[:, u:u + out_h, v:v + out_w, :]
            w_grad[u, v] = np.einsum("bijc,bijo->co", window, g)
            padded_grad[:, u:u + out_h, v:v + out_w, :] += np.einsum("bijo,co->bijc", g, w[u, v])
    x_grad = padded_grad[:, top:top + x.shape[1], left:left + x.shape[2], :]
    return x_grad, w_grad
