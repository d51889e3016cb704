"""Unreduced losses: each returns per-element values and the caller reduces them with its masks.

Every function is pure `jnp`, jit-, vmap- and grad-safe, and checks static facts (shapes, dtypes,
hyperparameter ranges) at the boundary. Shapes broadcast only where a docstring says so (the test
suite runs with `jax_numpy_rank_promotion="raise"`).

Reducing: divide a masked sum by the count of the elements that count, once, e.g.
`jnp.sum(loss * valid) / jnp.maximum(jnp.sum(valid), 1)`. For `softmax_cross_entropy` with an
`ignore_index` the count is that of the non-ignored positions (PyTorch's `reduction="mean"`).
"""

import jax
import jax.numpy as jnp

from jaxvision.ops.boxes import cxcywh_to_xyxy, elementwise_box_iou, elementwise_generalized_box_iou
from jaxvision.types import Array


def _check_same_shape(a: Array, b: Array, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")


def _check_integer(array: Array, name: str) -> None:
    if not jnp.issubdtype(array.dtype, jnp.integer):
        raise TypeError(f"{name} must be integer class indices, got {array.dtype}")


def _float_pair(a, b, name_a: str, name_b: str) -> tuple[Array, Array]:
    a, b = jnp.asarray(a), jnp.asarray(b)
    _check_same_shape(a, b, name_a, name_b)
    dtype = jnp.promote_types(jnp.result_type(a, b), jnp.float32)
    return a.astype(dtype), b.astype(dtype)


# ----------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------


def softmax_cross_entropy(
    logits: Array, labels: Array, *, label_smoothing: float = 0.0, ignore_index: int | None = None
) -> Array:
    """Cross-entropy of `logits[..., K]` against integer `labels[...]` -> `[...]`.

    With label smoothing e the target is (1 - e) one_hot + e / K (Szegedy et al., Inception v3,
    2016; `torch.nn.functional.cross_entropy(label_smoothing=e)`, optax `smooth_labels`), so the
    loss is (1 - e) NLL + e * mean_k(-log p_k).

    Positions whose label equals `ignore_index` (e.g. 255, VOC's void) give 0 and no gradient;
    their label need not be a valid class. Average by dividing the sum by the count of the
    non-ignored positions, not by the number of elements. Any other label outside [0, K) gives NaN
    (rather than numpy's wrap-around for -1), so a bad label cannot train silently.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim < 1 or logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits must have shape labels.shape + [K] = {labels.shape} + [K], got {logits.shape}")
    _check_integer(labels, "labels")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    log_probs = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
    ignored = labels == ignore_index if ignore_index is not None else jnp.zeros(labels.shape, bool)
    safe_labels = jnp.where(ignored, 0, labels)  # an out-of-range ignore label must not reach the gather
    loss = -jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
    if label_smoothing > 0:
        loss = (1 - label_smoothing) * loss - label_smoothing * jnp.mean(log_probs, axis=-1)
    out_of_range = (labels < 0) | (labels >= logits.shape[-1])
    return jnp.where(ignored, 0.0, jnp.where(out_of_range, jnp.nan, loss))


def sigmoid_binary_cross_entropy(logits: Array, targets: Array) -> Array:
    """Binary cross-entropy from logits, elementwise, `logits[...]`, `targets[...]` in [0, 1] -> `[...]`.

    Computed as max(x, 0) - x z + log(1 + exp(-|x|)), exact and finite for any logit
    (`torch.nn.functional.binary_cross_entropy_with_logits`, optax `sigmoid_binary_cross_entropy`).
    """
    logits, targets = _float_pair(logits, targets, "logits", "targets")
    return jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def sigmoid_focal_loss(logits: Array, targets: Array, *, alpha: float = 0.25, gamma: float = 2.0) -> Array:
    """Focal loss of RetinaNet (Lin et al., ICCV 2017), elementwise -> `[...]`.

    FL = alpha_t (1 - p_t)^gamma BCE(x, z), p_t = p z + (1 - p)(1 - z), alpha_t = alpha z + (1 - alpha)(1 - z),
    as `torchvision.ops.sigmoid_focal_loss(reduction="none")`. A negative `alpha` turns the weighting
    off; with gamma = 0 and alpha < 0 this is `sigmoid_binary_cross_entropy`. RetinaNet normalises
    the sum by the number of anchors assigned to objects.
    """
    logits, targets = _float_pair(logits, targets, "logits", "targets")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if alpha > 1:
        raise ValueError(f"alpha must be <= 1 (negative disables it), got {alpha}")
    loss = sigmoid_binary_cross_entropy(logits, targets)
    if gamma > 0:
        # 1 - p_t, with 1 - p taken as sigmoid(-x) so it does not round to 0 for confident logits.
        p, one_minus_p = jax.nn.sigmoid(logits), jax.nn.sigmoid(-logits)
        base = one_minus_p * targets + p * (1 - targets)
        # 0^gamma has an infinite derivative for gamma < 1: keep that branch out of the gradient.
        positive = base > 0
        loss = loss * jnp.where(positive, jnp.where(positive, base, 1.0) ** gamma, 0.0)
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


# ----------------------------------------------------------------------------------------------
# Regression
# ----------------------------------------------------------------------------------------------


def smooth_l1_loss(predictions: Array, targets: Array, *, beta: float = 1.0) -> Array:
    """Smooth L1 (Girshick, Fast R-CNN, ICCV 2015), elementwise -> `[...]`.

    0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = predictions - targets), continuous at
    |d| = beta; `torch.nn.functional.smooth_l1_loss(beta=beta, reduction="none")`. beta = 0 is L1.
    """
    predictions, targets = _float_pair(predictions, targets, "predictions", "targets")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    difference = jnp.abs(predictions - targets)
    if beta == 0:
        return difference
    return jnp.where(difference < beta, 0.5 * difference**2 / beta, difference - 0.5 * beta)


def huber_loss(predictions: Array, targets: Array, *, delta: float = 1.0) -> Array:
    """Huber loss (Huber 1964), elementwise -> `[...]`: 0.5 d^2 where |d| <= delta, else
    delta (|d| - 0.5 delta). Equals delta * smooth_l1_loss(beta=delta); optax `huber_loss`."""
    predictions, targets = _float_pair(predictions, targets, "predictions", "targets")
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    difference = jnp.abs(predictions - targets)
    return jnp.where(difference <= delta, 0.5 * difference**2, delta * (difference - 0.5 * delta))


def generalized_box_iou_loss(boxes1: Array, boxes2: Array) -> Array:
    """1 - GIoU of matched pairs `boxes1[..., 4]`, `boxes2[..., 4]` (xyxy) -> `[...]`, in [0, 2].

    Rezatofighi et al., CVPR 2019; `torchvision.ops.generalized_box_iou_loss(reduction="none")`
    (without its eps: degenerate boxes follow `jaxvision.ops.boxes`, 0 instead of NaN).
    """
    return 1.0 - elementwise_generalized_box_iou(boxes1, boxes2)


def dice_loss(probabilities: Array, targets: Array, *, mask: Array | None = None, smooth: float = 1.0) -> Array:
    """Soft Dice loss per example, `probabilities[B, ...]`, `targets[B, ...]` -> `[B]`.

    1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth), sums over every axis but the first
    (Milletari et al., V-Net, 2016, with plain rather than squared sums, as most segmentation
    code). Pass probabilities (sigmoid / softmax already applied); for per-class Dice, move the
    class axis next to the batch axis and vmap. `mask` (same shape, bool or weights) removes padded
    or void pixels. With smooth = 0, an example whose prediction and target are both empty has loss 0.
    """
    probabilities, targets = _float_pair(probabilities, targets, "probabilities", "targets")
    if probabilities.ndim < 2:
        raise ValueError(f"probabilities must have shape [B, ...] with at least 2 axes, got {probabilities.shape}")
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    if mask is not None:
        mask = jnp.asarray(mask)
        _check_same_shape(probabilities, mask, "probabilities", "mask")
        mask = mask.astype(probabilities.dtype)
        probabilities, targets = probabilities * mask, targets * mask
    axes = tuple(range(1, probabilities.ndim))
    numerator = 2 * jnp.sum(probabilities * targets, axis=axes) + smooth
    denominator = jnp.sum(probabilities, axis=axes) + jnp.sum(targets, axis=axes) + smooth
    nonzero = denominator > 0
    return 1.0 - jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1.0), 1.0)


# ----------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------


def _signed_sqrt(x: Array, eps: float = 1e-9) -> Array:
    # sqrt has an infinite slope at 0 and no value below: a predicted width that goes negative
    # keeps a finite gradient that pushes it back up.
    return jnp.sign(x) * jnp.sqrt(jnp.abs(x) + eps)


def yolo_v1_loss(
    predictions: Array,
    target_boxes: Array,
    target_labels: Array,
    has_object: Array,
    *,
    num_boxes: int = 2,
    num_classes: int = 20,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
) -> Array:
    """The YOLO v1 sum-squared loss (Redmon et al., CVPR 2016, eq. 3), per grid cell -> `[..., S, S]`.

    Layout of `predictions[..., S, S, B*5 + C]` (B = num_boxes, C = num_classes): channels
    5b .. 5b+4 are predictor b's (x, y, w, h, confidence), then C class scores. (x, y) is the box
    centre inside its cell as a fraction of the cell, (w, h) the box size as a fraction of the
    image; the class scores are the conditional class probabilities, used as they are (no softmax).

    Targets, one object at most per cell (YOLO v1's limit): `target_boxes[..., S, S, 4]` (x, y, w, h)
    in the same units, `target_labels[..., S, S]` int32, `has_object[..., S, S]` bool. Cells without
    an object may hold any finite target values.

    Per cell i, with 1obj_ij marking the responsible predictor j -- the one whose box has the highest
    IoU with the cell's ground truth (the first on ties) -- and 1noobj_ij = 1 - 1obj_ij:
        lambda_coord sum_j 1obj_ij [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
      + sum_j 1obj_ij (C_ij - IoU_ij)^2 + lambda_noobj sum_j 1noobj_ij C_ij^2
      + 1obj_i sum_c (p_i(c) - onehot_c)^2
    The confidence target is the IoU of the responsible box, a constant (stop_gradient). Predictors
    that are not responsible are pushed to 0 confidence even in cells with an object, as Darknet's
    detection layer does. sqrt of a predicted size is sign(w) sqrt(|w| + 1e-9). Sum the result over
    the cells for the paper's per-image loss.
    """
    predictions = jnp.asarray(predictions)
    target_boxes = jnp.asarray(target_boxes)
    target_labels = jnp.asarray(target_labels)
    has_object = jnp.asarray(has_object)
    if num_boxes < 1 or num_classes < 1:
        raise ValueError(f"num_boxes and num_classes must be >= 1, got {num_boxes} and {num_classes}")
    channels = num_boxes * 5 + num_classes
    if predictions.ndim < 3 or predictions.shape[-1] != channels or predictions.shape[-3] != predictions.shape[-2]:
        raise ValueError(
            f"predictions must have shape [..., S, S, num_boxes*5 + num_classes = {channels}], got {predictions.shape}"
        )
    grid_shape = predictions.shape[:-1]
    if target_boxes.shape != grid_shape + (4,):
        raise ValueError(f"target_boxes must have shape {grid_shape + (4,)}, got {target_boxes.shape}")
    for name, array in (("target_labels", target_labels), ("has_object", has_object)):
        if array.shape != grid_shape:
            raise ValueError(f"{name} must have shape {grid_shape}, got {array.shape}")
    _check_integer(target_labels, "target_labels")
    grid_size = grid_shape[-1]
    dtype = jnp.promote_types(predictions.dtype, jnp.float32)
    predictions = predictions.astype(dtype)
    has_object = has_object.astype(bool)
    # Scrub target values of empty cells so that none can leak a NaN (sqrt) into the masked terms.
    target_boxes = jnp.where(has_object[..., None], target_boxes.astype(dtype), 0.5)

    boxes = predictions[..., : num_boxes * 5].reshape(grid_shape + (num_boxes, 5))  # [..., S, S, B, 5]
    class_scores = predictions[..., num_boxes * 5 :]  # [..., S, S, C]

    rows = jnp.broadcast_to(jnp.arange(grid_size, dtype=dtype)[:, None], (grid_size, grid_size))  # [S, S]
    columns = rows.T

    def to_image_xyxy(xywh: Array) -> Array:
        """Cell-relative (x, y), image-relative (w, h) [..., S, S, k, 4] -> image-fraction xyxy."""
        offsets = jnp.stack([columns, rows], axis=-1)[:, :, None, :]  # [S, S, 1, 2]
        centres = (xywh[..., :2] + jnp.broadcast_to(offsets, xywh[..., :2].shape)) / grid_size
        sizes = jnp.maximum(xywh[..., 2:], 0)  # a negative size has no area
        return cxcywh_to_xyxy(jnp.concatenate([centres, sizes], axis=-1))

    predicted_xyxy = to_image_xyxy(boxes[..., :4])  # [..., S, S, B, 4]
    target_xyxy = jnp.broadcast_to(to_image_xyxy(target_boxes[..., None, :]), predicted_xyxy.shape)
    iou = elementwise_box_iou(predicted_xyxy, target_xyxy)  # [..., S, S, B]
    responsible = jax.nn.one_hot(jnp.argmax(iou, axis=-1), num_boxes, dtype=bool) & has_object[..., None]

    target = jnp.broadcast_to(target_boxes[..., None, :], boxes[..., :4].shape)  # [..., S, S, B, 4]
    centre_error = jnp.sum((boxes[..., :2] - target[..., :2]) ** 2, axis=-1)
    size_error = jnp.sum((_signed_sqrt(boxes[..., 2:4]) - jnp.sqrt(target[..., 2:])) ** 2, axis=-1)
    confidence = boxes[..., 4]
    object_error = (confidence - jax.lax.stop_gradient(iou)) ** 2
    per_predictor = jnp.where(
        responsible,
        lambda_coord * (centre_error + size_error) + object_error,
        lambda_noobj * confidence**2,
    )  # [..., S, S, B]
    one_hot = jax.nn.one_hot(target_labels, num_classes, dtype=dtype)
    class_error = jnp.where(has_object, jnp.sum((class_scores - one_hot) ** 2, axis=-1), 0.0)
    return jnp.sum(per_predictor, axis=-1) + class_error


def hard_negative_mining(negative_losses: Array, positive: Array, valid: Array, *, neg_pos_ratio: int = 3) -> Array:
    """SSD hard-negative mining (Liu et al., ECCV 2016, section 2.2) -> `bool[..., P]`.

    Among the valid, non-positive priors, selects the k = min(neg_pos_ratio * #positives, #negatives)
    with the highest `negative_losses` (ties: lower index first), per example along the last axis.
    Sort-based, fixed shapes, jit-able; the selection carries no gradient.

    Args:
      negative_losses: `float[..., P]` loss of calling each prior background.
      positive, valid: `bool[..., P]`; padded priors have valid False and are never selected.
    """
    negative_losses = jnp.asarray(negative_losses)
    positive = jnp.asarray(positive).astype(bool)
    valid = jnp.asarray(valid).astype(bool)
    _check_same_shape(negative_losses, positive, "negative_losses", "positive")
    _check_same_shape(negative_losses, valid, "negative_losses", "valid")
    if neg_pos_ratio < 0:
        raise ValueError(f"neg_pos_ratio must be >= 0, got {neg_pos_ratio}")
    positive = positive & valid
    negative = valid & ~positive
    losses = jnp.where(negative, jax.lax.stop_gradient(negative_losses), -jnp.inf)
    order = jnp.argsort(-losses, axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1, stable=True)  # position of each prior in the descending order
    num_positive = jnp.sum(positive, axis=-1, keepdims=True)
    num_negative = jnp.sum(negative, axis=-1, keepdims=True)
    quota = jnp.minimum(neg_pos_ratio * num_positive, num_negative)  # [..., 1]
    return negative & (rank < jnp.broadcast_to(quota, rank.shape))


def ssd_multibox_loss(
    class_logits: Array,
    box_regression: Array,
    target_labels: Array,
    target_offsets: Array,
    valid: Array,
    *,
    neg_pos_ratio: int = 3,
    localization_weight: float = 1.0,
    normalize: bool = True,
) -> Array:
    """The SSD MultiBox loss (Liu et al., ECCV 2016, eq. 1-3) per example -> `[...]`.

    L = (L_conf + localization_weight * L_loc) / N with N the number of positive priors (L = 0 when
    N = 0): L_loc is smooth L1 (beta 1) over the 4 encoded offsets of the positives, L_conf the
    softmax cross-entropy of the positives and of the `neg_pos_ratio * N` hardest negatives
    (`hard_negative_mining`). Leading axes are batch axes (no vmap needed).

    `normalize=True` divides each example by its own N. For the batch-level normalisation of
    torchvision's SSD (the batch's sum over its total N), pass `normalize=False` and divide the sum
    by `jnp.maximum(jnp.sum(valid & (target_labels > 0)), 1)`.

    Args:
      class_logits: `float[..., P, K]`, class 0 background.
      box_regression: `float[..., P, 4]` predicted offsets.
      target_labels: `int[..., P]`, 0 for background priors, 1..K-1 for matched ones.
      target_offsets: `float[..., P, 4]` offsets of the matched boxes, encoded like the predictions
        (e.g. `jaxvision.ops.boxes.encode_boxes(boxes, priors, weights=(10, 10, 5, 5))` for SSD's
        variances 0.1, 0.2); ignored for background priors.
      valid: `bool[..., P]`; padded priors count nowhere.
    """
    class_logits = jnp.asarray(class_logits)
    target_labels = jnp.asarray(target_labels)
    valid = jnp.asarray(valid).astype(bool)
    if class_logits.ndim < 2 or class_logits.shape[-1] < 2:
        raise ValueError(f"class_logits must have shape [..., P, K] with K >= 2, got {class_logits.shape}")
    priors_shape = class_logits.shape[:-1]
    if target_labels.shape != priors_shape or valid.shape != priors_shape:
        raise ValueError(
            f"target_labels and valid must have shape {priors_shape}, got {target_labels.shape} and {valid.shape}"
        )
    box_regression, target_offsets = _float_pair(box_regression, target_offsets, "box_regression", "target_offsets")
    if box_regression.shape != priors_shape + (4,):
        raise ValueError(f"box_regression must have shape {priors_shape + (4,)}, got {box_regression.shape}")
    positive = valid & (target_labels > 0)
    cross_entropy = softmax_cross_entropy(class_logits, jnp.where(valid, target_labels, 0))  # [..., P]
    background_loss = -jax.nn.log_softmax(class_logits.astype(cross_entropy.dtype), axis=-1)[..., 0]
    hard_negative = hard_negative_mining(background_loss, positive, valid, neg_pos_ratio=neg_pos_ratio)
    confidence = jnp.sum(jnp.where(positive | hard_negative, cross_entropy, 0.0), axis=-1)
    localization = jnp.sum(smooth_l1_loss(box_regression, target_offsets, beta=1.0), axis=-1)  # [..., P]
    localization = jnp.sum(jnp.where(positive, localization, 0.0), axis=-1)
    total = confidence + localization_weight * localization
    if not normalize:
        return total
    num_positive = jnp.sum(positive, axis=-1).astype(confidence.dtype)
    return total / jnp.maximum(num_positive, 1.0)
