"""Target assignment: the IoU matcher and the balanced positive/negative sampler, fixed shapes.

Sources: Ren et al., "Faster R-CNN", NeurIPS 2015 (RPN labels: IoU >= 0.7 positive, < 0.3 negative,
plus the best anchor of each ground truth; 256 anchors per image, up to half positive);
torchvision.models.detection._utils.Matcher and BalancedPositiveNegativeSampler.
"""

import jax
import jax.numpy as jnp

from jaxvision.types import Array

POSITIVE = 1
NEGATIVE = 0
IGNORE = -1


def match_boxes(
    match_quality: Array,
    *,
    high_threshold: float,
    low_threshold: float,
    allow_low_quality_matches: bool = False,
    gt_valid: Array | None = None,
) -> tuple[Array, Array]:
    """Assign each prediction (anchor/proposal) to a ground-truth box, torchvision `Matcher` semantics.

    Args:
      match_quality: `float[M, N]` quality (IoU) of ground truth m with prediction n.
      high_threshold, low_threshold: best quality >= high -> positive; < low -> negative; in between
        -> ignore (torchvision's BETWEEN_THRESHOLDS; pass low == high to have none).
      allow_low_quality_matches: also make positive every prediction that attains the highest quality
        of some ground truth (ties included), restoring its own best match. Like torchvision, a
        ground truth whose best quality is 0 makes every prediction with quality 0 to it positive.
      gt_valid: optional `bool[M]`; padded ground truth never matches. With no valid ground truth
        every prediction is negative (torchvision's empty-target case).

    Returns:
      `(matched_index int32[N], labels int32[N])`: the best ground truth of each prediction (first on
      ties; 0 when there is none) and labels POSITIVE=1 / NEGATIVE=0 / IGNORE=-1.
    """
    match_quality = jnp.asarray(match_quality)
    if match_quality.ndim != 2:
        raise ValueError(f"match_quality must have shape [M, N], got {match_quality.shape}")
    if low_threshold > high_threshold:
        raise ValueError(f"low_threshold must be <= high_threshold, got {low_threshold} > {high_threshold}")
    num_gt, num_pred = match_quality.shape
    if gt_valid is None:
        gt_valid = jnp.ones((num_gt,), bool)
    else:
        gt_valid = jnp.asarray(gt_valid)
        if gt_valid.shape != (num_gt,) or gt_valid.dtype != jnp.bool_:
            raise ValueError(f"gt_valid must be bool[{num_gt}], got {gt_valid.dtype}{gt_valid.shape}")
    if num_gt == 0 or num_pred == 0:
        return jnp.zeros((num_pred,), jnp.int32), jnp.full((num_pred,), NEGATIVE, jnp.int32)

    quality = jnp.where(gt_valid[:, None], match_quality, -jnp.inf)  # padded rows never win
    matched_index = jnp.argmax(quality, axis=0).astype(jnp.int32)
    best = jnp.max(quality, axis=0)  # [N]
    labels = jnp.where(best >= high_threshold, POSITIVE, jnp.where(best < low_threshold, NEGATIVE, IGNORE))
    if allow_low_quality_matches:
        best_per_gt = jnp.max(quality, axis=1)  # [M]
        is_best = (quality == best_per_gt[:, None]) & gt_valid[:, None]  # [M, N]
        labels = jnp.where(jnp.any(is_best, axis=0), POSITIVE, labels)
    any_gt = jnp.any(gt_valid)
    labels = jnp.where(any_gt, labels, NEGATIVE).astype(jnp.int32)
    return jnp.where(any_gt, matched_index, 0), labels


def sample_balanced_masks(
    key: Array,
    labels: Array,
    *,
    num_samples: int,
    positive_fraction: float,
) -> tuple[Array, Array]:
    """Random balanced subset of positives and negatives, torchvision BalancedPositiveNegativeSampler.

    Takes min(#positives, floor(num_samples * positive_fraction)) positives and fills the rest of
    `num_samples` with negatives (as many as exist), uniformly at random without replacement.

    Args:
      key: a jax.random key. labels: `int[N]` with 1 positive, 0 negative, -1 ignore (and padding).
    Returns: `(positive_mask bool[N], negative_mask bool[N])`.
    """
    labels = jnp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape [N], got {labels.shape}")
    if not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples must be a non-negative Python int, got {num_samples!r}")
    if not 0 <= positive_fraction <= 1:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    is_positive = labels >= POSITIVE
    is_negative = labels == NEGATIVE
    num_pos = jnp.minimum(jnp.sum(is_positive), int(num_samples * positive_fraction))
    num_neg = jnp.minimum(jnp.sum(is_negative), num_samples - num_pos)
    # A random permutation within each group: rank of each element by a uniform priority.
    priority = jax.random.uniform(key, labels.shape)

    def chosen(group, count):
        order = jnp.argsort(jnp.where(group, priority, 2.0))
        rank = jnp.zeros(labels.shape, jnp.int32).at[order].set(jnp.arange(labels.shape[0], dtype=jnp.int32))
        return group & (rank < count)

    return chosen(is_positive, num_pos), chosen(is_negative, num_neg)


def sample_balanced(
    key: Array,
    labels: Array,
    *,
    num_samples: int,
    positive_fraction: float,
) -> tuple[Array, Array, Array]:
    """`sample_balanced_masks` as fixed-size index arrays.

    Returns `(indices int32[num_samples], is_positive bool[num_samples], valid bool[num_samples])`:
    the sampled positives first, then the sampled negatives, then padding (index 0, valid False) when
    fewer than `num_samples` candidates exist.
    """
    positive, negative = sample_balanced_masks(
        key, labels, num_samples=num_samples, positive_fraction=positive_fraction
    )
    num_labels = labels.shape[0]
    # Sort key: positives (0), negatives (1), the rest (2); stable, so ties keep index order.
    group = jnp.where(positive, 0, jnp.where(negative, 1, 2))
    order = jnp.argsort(group, stable=True)
    if num_labels < num_samples:
        order = jnp.pad(order, (0, num_samples - num_labels))
    indices = order[:num_samples].astype(jnp.int32)
    valid = (group[indices] < 2) & (jnp.arange(num_samples) < num_labels)
    return jnp.where(valid, indices, 0), positive[indices] & valid, valid
