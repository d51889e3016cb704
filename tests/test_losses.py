"""Losses: identities, agreement with optax / literal formulas / numpy loops, hand computations,
jit equals eager, finite gradients, input checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import reference  # tests/reference.py (tests/ is on sys.path through conftest.py)
from jaxvision import losses
from jaxvision.ops import boxes as box_ops

# ------------------------------------------------------------------------------------------------
# Cross-entropies
# ------------------------------------------------------------------------------------------------


def test_softmax_cross_entropy_matches_optax():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(3, 4, 5)) * 3, jnp.float32)
    labels = jnp.asarray(rng.integers(0, 5, size=(3, 4)), jnp.int32)
    plain = losses.softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(plain, optax.softmax_cross_entropy_with_integer_labels(logits, labels), rtol=1e-6)
    # Label smoothing 0 is plain cross-entropy; e > 0 is CE against optax's smoothed one-hot.
    np.testing.assert_array_equal(losses.softmax_cross_entropy(logits, labels, label_smoothing=0.0), plain)
    smoothed = losses.softmax_cross_entropy(logits, labels, label_smoothing=0.1)
    expected = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(labels, 5), 0.1))
    np.testing.assert_allclose(smoothed, expected, rtol=1e-5)


def test_ignore_index_gives_zero_and_no_gradient():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(6, 3)), jnp.float32)
    labels = jnp.array([0, 255, 2, 1, 255, 0], jnp.int32)
    loss = losses.softmax_cross_entropy(logits, labels, ignore_index=255, label_smoothing=0.2)
    ignored = np.asarray(labels == 255)
    assert np.all(np.asarray(loss)[ignored] == 0) and np.all(np.asarray(loss)[~ignored] > 0)

    def mean_loss(logits):
        per_element = losses.softmax_cross_entropy(logits, labels, ignore_index=255)
        return jnp.sum(per_element) / jnp.sum(labels != 255)  # divide by the non-ignored count

    value, grad = jax.jit(jax.value_and_grad(mean_loss))(logits)
    assert np.all(np.asarray(grad)[ignored] == 0) and np.all(np.isfinite(grad))
    kept = ~ignored
    np.testing.assert_allclose(
        value, optax.softmax_cross_entropy_with_integer_labels(logits[kept], labels[kept]).mean(), rtol=1e-6
    )
    # A label outside [0, K) that is not ignored is an error made visible, not wrapped around.
    bad = losses.softmax_cross_entropy(logits[:3], jnp.array([-1, 3, 2], jnp.int32), ignore_index=255)
    assert np.isnan(bad[0]) and np.isnan(bad[1]) and np.isfinite(bad[2])
    jitted = jax.jit(losses.softmax_cross_entropy, static_argnames=("ignore_index", "label_smoothing"))
    np.testing.assert_allclose(jitted(logits, labels, ignore_index=255, label_smoothing=0.2), loss, rtol=1e-6)


def test_sigmoid_binary_cross_entropy_stable():
    logits = jnp.array([-100.0, -3.0, 0.0, 2.5, 100.0])
    targets = jnp.array([1.0, 0.0, 0.5, 1.0, 0.0])
    loss = losses.sigmoid_binary_cross_entropy(logits, targets)
    p = 1 / (1 + np.exp(-np.array([-3.0, 0.0, 2.5])))
    naive = -(np.array([0.0, 0.5, 1.0]) * np.log(p) + (1 - np.array([0.0, 0.5, 1.0])) * np.log(1 - p))
    np.testing.assert_allclose(loss[1:4], naive, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(loss)[[0, 4]], [100.0, 100.0], rtol=1e-6)  # naive log(0) would be inf
    grad = jax.jit(jax.grad(lambda x: losses.sigmoid_binary_cross_entropy(x, targets).sum()))(logits)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, optax.sigmoid_binary_cross_entropy(logits, targets), rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Focal loss
# ------------------------------------------------------------------------------------------------


def torchvision_focal(logits, targets, alpha, gamma):
    """torchvision.ops.sigmoid_focal_loss written out in float64 numpy."""
    x, z = np.asarray(logits, np.float64), np.asarray(targets, np.float64)
    p = 1 / (1 + np.exp(-x))
    ce = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
    p_t = p * z + (1 - p) * (1 - z)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * z + (1 - alpha) * (1 - z)) * loss
    return loss


def test_focal_gamma_zero_without_alpha_is_bce():
    rng = np.random.default_rng(2)
    logits = jnp.asarray(rng.normal(size=(4, 7)) * 4, jnp.float32)
    targets = jnp.asarray(rng.uniform(size=(4, 7)) > 0.5, jnp.float32)
    np.testing.assert_allclose(
        losses.sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0.0),
        losses.sigmoid_binary_cross_entropy(logits, targets),
        rtol=1e-6,
    )


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 1.0), (-1.0, 0.5), (0.75, 3.0)])
def test_focal_matches_torchvision_formula(alpha, gamma):
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.normal(size=32) * 3, jnp.float32)
    targets = jnp.asarray(rng.uniform(size=32).round(), jnp.float32)
    got = losses.sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma)
    np.testing.assert_allclose(got, torchvision_focal(logits, targets, alpha, gamma), rtol=2e-5, atol=1e-7)


def test_focal_gradient_finite_when_saturated():
    logits = jnp.array([-60.0, 60.0, 0.0, 30.0])
    targets = jnp.array([0.0, 1.0, 1.0, 0.0])
    for gamma in (0.5, 2.0):
        grad = jax.jit(jax.grad(lambda x: losses.sigmoid_focal_loss(x, targets, gamma=gamma).sum()))(logits)
        assert np.all(np.isfinite(grad)), gamma
    fn = lambda x, t: losses.sigmoid_focal_loss(x, t, alpha=0.25, gamma=2.0)  # noqa: E731
    np.testing.assert_allclose(jax.jit(fn)(logits, targets), fn(logits, targets), rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Regression losses
# ------------------------------------------------------------------------------------------------


def test_smooth_l1_and_huber():
    beta = 0.5
    d = jnp.array([-2.0, -0.5, -0.2, 0.0, 0.3, 0.5, 1.5])
    zero = jnp.zeros_like(d)
    smooth = losses.smooth_l1_loss(d, zero, beta=beta)
    expected = np.where(np.abs(d) < beta, 0.5 * np.asarray(d) ** 2 / beta, np.abs(d) - 0.5 * beta)
    np.testing.assert_allclose(smooth, expected, rtol=1e-6)
    # Continuous at |d| = beta from both sides; beta = 0 is L1.
    below, above = losses.smooth_l1_loss(jnp.array([beta - 1e-4, beta + 1e-4]), jnp.zeros(2), beta=beta)
    assert abs(float(below) - 0.5 * beta) < 2e-4 and abs(float(above) - 0.5 * beta) < 2e-4
    np.testing.assert_allclose(losses.smooth_l1_loss(d, zero, beta=0.0), np.abs(d))
    # Huber(delta) = delta * smooth L1(beta = delta); optax agrees.
    huber = losses.huber_loss(d, zero, delta=beta)
    np.testing.assert_allclose(huber, beta * smooth, rtol=1e-6)
    np.testing.assert_allclose(huber, optax.huber_loss(d, zero, delta=beta), rtol=1e-6)
    grad = jax.jit(jax.grad(lambda x: losses.smooth_l1_loss(x, zero, beta=beta).sum()))(d)
    np.testing.assert_allclose(grad, np.clip(np.asarray(d) / beta, -1, 1), rtol=1e-6)


def test_generalized_box_iou_loss():
    boxes = jnp.array([[0.0, 0, 10, 10], [5, 5, 20, 30], [0, 0, 1, 1]])
    np.testing.assert_allclose(losses.generalized_box_iou_loss(boxes, boxes), 0.0, atol=1e-7)
    others = jnp.array([[5.0, 5, 15, 15], [100, 100, 110, 120], [2, 2, 3, 3]])
    expected = [1 - reference.generalized_box_iou_pair(a, b) for a, b in zip(np.asarray(boxes), np.asarray(others))]
    np.testing.assert_allclose(losses.generalized_box_iou_loss(boxes, others), expected, rtol=1e-5)
    grad = jax.jit(jax.grad(lambda b: losses.generalized_box_iou_loss(b, others).sum()))(boxes)
    assert np.all(np.isfinite(grad))


def test_dice_loss():
    probabilities = jnp.array([[[0.9, 0.1], [0.8, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    targets = jnp.array([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    loss = losses.dice_loss(probabilities, targets, smooth=1.0)
    # Example 0: intersection 1.7, sum(p) 1.8, sum(t) 3. Example 1: empty and empty -> (0 + 1) / (0 + 1).
    np.testing.assert_allclose(loss, [1 - (2 * 1.7 + 1) / (1.8 + 3 + 1), 0.0], rtol=1e-6)
    np.testing.assert_allclose(losses.dice_loss(probabilities, targets, smooth=0.0)[1], 0.0)
    mask = jnp.array([[[True, True], [True, False]], [[True, True], [True, True]]])
    masked = losses.dice_loss(probabilities, targets, mask=mask, smooth=1.0)
    np.testing.assert_allclose(masked[0], 1 - (2 * 1.7 + 1) / (1.8 + 2 + 1), rtol=1e-6)
    np.testing.assert_allclose(losses.dice_loss(targets, targets, smooth=1e-6), 0.0, atol=1e-6)
    grad = jax.jit(jax.grad(lambda p: losses.dice_loss(p, targets, smooth=0.0).sum()))(probabilities)
    assert np.all(np.isfinite(grad))


def test_elementwise_losses_jit_equals_eager():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    y = jnp.asarray(rng.uniform(size=(3, 5)), jnp.float32)
    corners = jnp.asarray(rng.uniform(size=(3, 2, 2)) * 10, jnp.float32)
    boxes = jnp.concatenate([corners.min(axis=1), corners.max(axis=1) + 1], axis=-1)  # [3, 4]

    def all_losses(x, y, boxes):
        return (
            losses.sigmoid_binary_cross_entropy(x, y),
            losses.smooth_l1_loss(x, y, beta=0.5),
            losses.huber_loss(x, y, delta=0.5),
            losses.generalized_box_iou_loss(boxes, boxes[::-1]),
            losses.dice_loss(jax.nn.sigmoid(x), y, mask=y > 0.2),
        )

    for eager, jitted in zip(all_losses(x, y, boxes), jax.jit(all_losses)(x, y, boxes)):
        np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# YOLO v1
# ------------------------------------------------------------------------------------------------


def yolo_example():
    """S = 2, B = 2, C = 2: channels (x, y, w, h, conf) x 2, then 2 class scores."""
    predictions = np.zeros((2, 2, 12), np.float32)
    # Cell (0, 0), object (0.5, 0.5, 0.25, 0.25) class 1. Predictor 0 has IoU 0.03875 / 0.06375,
    # predictor 1 IoU 0.01 / 0.0625 = 0.16: predictor 0 is responsible.
    predictions[0, 0] = [0.6, 0.5, 0.16, 0.25, 0.8, 0.5, 0.5, 0.25, 0.04, 0.3, 0.1, 0.7]
    # Cells (0, 1) and (1, 0): no object, only confidences count.
    predictions[0, 1] = [0.3, 0.3, 0.2, 0.2, 0.2, 0.9, 0.9, 0.5, 0.5, 0.1, 0.4, 0.4]
    predictions[1, 0] = [0.1, 0.2, 0.3, 0.4, 0.0, 0.5, 0.6, 0.7, 0.8, 0.4, 0.9, 0.9]
    # Cell (1, 1), object (0.5, 0.5, 0.5, 0.5) class 0: predictor 0 IoU 0.04, predictor 1 IoU 1.
    predictions[1, 1] = [0.5, 0.5, 0.1, 0.1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.9, 0.6, 0.2]
    target_boxes = np.full((2, 2, 4), 7.0, np.float32)  # empty cells hold junk on purpose
    target_boxes[0, 0] = [0.5, 0.5, 0.25, 0.25]
    target_boxes[1, 1] = [0.5, 0.5, 0.5, 0.5]
    target_labels = np.array([[1, 0], [0, 0]], np.int32)
    has_object = np.array([[True, False], [False, True]])
    return predictions, target_boxes, target_labels, has_object


def test_yolo_v1_hand_computation():
    predictions, target_boxes, target_labels, has_object = yolo_example()
    loss = losses.yolo_v1_loss(predictions, target_boxes, target_labels, has_object, num_boxes=2, num_classes=2)
    iou = 0.03875 / 0.06375
    cell_00 = (
        5 * ((0.6 - 0.5) ** 2 + 0.0)  # centre
        + 5 * ((math.sqrt(0.16) - math.sqrt(0.25)) ** 2 + 0.0)  # sqrt sizes
        + (0.8 - iou) ** 2  # confidence of the responsible predictor, target its IoU
        + 0.5 * 0.3**2  # the other predictor, pushed to 0
        + (0.1 - 0) ** 2 + (0.7 - 1) ** 2  # classes
    )
    cell_01 = 0.5 * (0.2**2 + 0.1**2)
    cell_10 = 0.5 * (0.0**2 + 0.4**2)
    cell_11 = (0.9 - 1.0) ** 2 + 0.5 * 0.5**2 + (0.6 - 1) ** 2 + 0.2**2
    np.testing.assert_allclose(loss, [[cell_00, cell_01], [cell_10, cell_11]], rtol=1e-5)


def test_yolo_v1_batched_jit_and_gradient():
    predictions, target_boxes, target_labels, has_object = yolo_example()
    batch = [np.stack([a, a]) for a in (predictions, target_boxes, target_labels, has_object)]
    batch[0][1] = batch[0][1] * 0.5 - 0.1  # a second example with negative sizes
    fn = lambda *args: losses.yolo_v1_loss(*args, num_boxes=2, num_classes=2)  # noqa: E731
    batched = fn(*batch)
    assert batched.shape == (2, 2, 2)
    np.testing.assert_allclose(jax.jit(fn)(*batch), batched, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(fn))(*batch), batched, rtol=1e-6)
    grad = jax.jit(jax.grad(lambda p: fn(p, *batch[1:]).sum()))(jnp.asarray(batch[0]))
    assert np.all(np.isfinite(grad))
    # Empty cells' coordinates and classes get no gradient; their confidences do.
    assert np.all(np.asarray(grad)[0, 0, 1, [0, 1, 2, 3, 10, 11]] == 0)
    assert np.asarray(grad)[0, 0, 1, 4] != 0


def test_yolo_v1_input_checks():
    predictions, target_boxes, target_labels, has_object = yolo_example()
    with pytest.raises(ValueError, match="num_boxes\\*5 \\+ num_classes = 13"):
        losses.yolo_v1_loss(predictions, target_boxes, target_labels, has_object, num_boxes=2, num_classes=3)
    with pytest.raises(ValueError, match="target_boxes must have shape"):
        losses.yolo_v1_loss(predictions, target_boxes[..., :2], target_labels, has_object, num_boxes=2, num_classes=2)
    with pytest.raises(TypeError, match="target_labels"):
        losses.yolo_v1_loss(predictions, target_boxes, target_labels.astype(np.float32), has_object,
                            num_boxes=2, num_classes=2)


# ------------------------------------------------------------------------------------------------
# SSD
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_hard_negative_mining_matches_loop(seed):
    rng = np.random.default_rng(seed)
    num_priors = 40
    negative_losses = np.round(rng.uniform(0, 3, size=(3, num_priors)), 1).astype(np.float32)  # ties
    positive = rng.uniform(size=(3, num_priors)) < [[0.05], [0.3], [0.0]]  # few, many (quota > #neg), none
    valid = rng.uniform(size=(3, num_priors)) < 0.9
    got = losses.hard_negative_mining(negative_losses, positive, valid, neg_pos_ratio=3)
    for b in range(3):
        expected = reference.hard_negative_mask(negative_losses[b], positive[b], valid[b], 3)
        np.testing.assert_array_equal(got[b], expected)
    jitted = jax.jit(losses.hard_negative_mining, static_argnames="neg_pos_ratio")
    np.testing.assert_array_equal(jitted(negative_losses, positive, valid, neg_pos_ratio=3), got)


def test_ssd_multibox_loss_matches_numpy():
    num_priors, num_classes = 24, 4
    rng = np.random.default_rng(5)
    logits = jnp.asarray(rng.normal(size=(2, num_priors, num_classes)) * 2, jnp.float32)
    regression = jnp.asarray(rng.normal(size=(2, num_priors, 4)), jnp.float32)
    offsets = jnp.asarray(rng.normal(size=(2, num_priors, 4)), jnp.float32)
    labels = np.where(rng.uniform(size=(2, num_priors)) < 0.15, rng.integers(1, num_classes, size=(2, num_priors)), 0)
    labels = jnp.asarray(labels, jnp.int32)
    valid = jnp.arange(num_priors)[None, :] < jnp.array([[24], [20]])  # second example padded
    labels = labels.at[1, 21].set(2)  # a padded "positive" must not count
    loss = losses.ssd_multibox_loss(logits, regression, labels, offsets, valid)

    expected = []
    for b in range(2):
        lg, lb, vd = np.asarray(logits[b], np.float64), np.asarray(labels[b]), np.asarray(valid[b])
        log_probs = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
        positive = vd & (lb > 0)
        mined = reference.hard_negative_mask(-log_probs[:, 0], positive, vd, 3)
        ce = -log_probs[np.arange(num_priors), lb]
        d = np.abs(np.asarray(regression[b]) - np.asarray(offsets[b]))
        sl1 = np.where(d < 1, 0.5 * d**2, d - 0.5).sum(-1)
        n = positive.sum()
        expected.append((ce[positive | mined].sum() + sl1[positive].sum()) / max(n, 1))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    fn = lambda lg, rg: losses.ssd_multibox_loss(lg, rg, labels, offsets, valid)  # noqa: E731
    np.testing.assert_allclose(jax.jit(fn)(logits, regression), loss, rtol=1e-6)
    unnormalized = jax.jit(losses.ssd_multibox_loss, static_argnames="normalize")(
        logits, regression, labels, offsets, valid, normalize=False
    )
    num_positives = np.maximum(np.sum(np.asarray(valid & (labels > 0)), axis=-1), 1)
    np.testing.assert_allclose(unnormalized, np.asarray(expected) * num_positives, rtol=1e-5)
    grads = jax.jit(jax.grad(lambda lg, rg: fn(lg, rg).sum(), argnums=(0, 1)))(logits, regression)
    assert all(np.all(np.isfinite(g)) for g in grads)
    # Padded priors get no gradient.
    assert np.all(np.asarray(grads[0])[1, 20:] == 0) and np.all(np.asarray(grads[1])[1, 20:] == 0)


def test_ssd_no_positives_is_zero():
    logits = jnp.ones((5, 3))
    loss = jax.jit(losses.ssd_multibox_loss)(logits, jnp.zeros((5, 4)), jnp.zeros(5, jnp.int32), jnp.zeros((5, 4)),
                                             jnp.ones(5, bool))
    assert float(loss) == 0.0


def test_ssd_with_encoded_targets():
    # Encoded with the box coder, a perfect regression leaves only the confidence term.
    priors = jnp.array([[0.0, 0, 10, 10], [10, 10, 30, 30], [0, 0, 40, 40]])
    matched = jnp.array([[1.0, 1, 11, 12], [0, 0, 1, 1], [2, 2, 38, 38]])
    offsets = box_ops.encode_boxes(matched, priors, weights=(10, 10, 5, 5))
    labels = jnp.array([1, 0, 2], jnp.int32)
    logits = jnp.array([[-5.0, 5, 0], [5, -5, -5], [-5, -5, 5]])
    loss = jax.jit(losses.ssd_multibox_loss)(logits, offsets, labels, offsets, jnp.ones(3, bool))
    expected = losses.softmax_cross_entropy(logits, labels).sum() / 2  # 1 negative, quota 6
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_input_checks():
    with pytest.raises(ValueError, match="logits must have shape"):
        losses.softmax_cross_entropy(jnp.zeros((3, 4)), jnp.zeros(4, jnp.int32))
    with pytest.raises(TypeError, match="labels must be integer"):
        losses.softmax_cross_entropy(jnp.zeros((3, 4)), jnp.zeros(3))
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.softmax_cross_entropy(jnp.zeros((3, 4)), jnp.zeros(3, jnp.int32), label_smoothing=1.5)
    with pytest.raises(ValueError, match="same shape"):
        losses.sigmoid_binary_cross_entropy(jnp.zeros(3), jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match="gamma"):
        losses.sigmoid_focal_loss(jnp.zeros(3), jnp.zeros(3), gamma=-1.0)
    with pytest.raises(ValueError, match="beta"):
        losses.smooth_l1_loss(jnp.zeros(3), jnp.zeros(3), beta=-1.0)
    with pytest.raises(ValueError, match="delta"):
        losses.huber_loss(jnp.zeros(3), jnp.zeros(3), delta=0.0)
    with pytest.raises(ValueError, match="at least 2 axes"):
        losses.dice_loss(jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(ValueError, match="K >= 2"):
        losses.ssd_multibox_loss(jnp.zeros((3, 1)), jnp.zeros((3, 4)), jnp.zeros(3, jnp.int32), jnp.zeros((3, 4)),
                                 jnp.ones(3, bool))
    with pytest.raises(ValueError, match="neg_pos_ratio"):
        losses.hard_negative_mining(jnp.zeros(3), jnp.zeros(3, bool), jnp.ones(3, bool), neg_pos_ratio=-1)
