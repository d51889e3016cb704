"""Classification metrics as (sum, count) accumulators, so padding and partial batches count right.

A metrics dict maps a name to a `(sum, count)` pair of float32 scalars. Steps return such dicts,
`merge` adds them (on device, no host sync), and `finalize` divides once at the end (scenic, optax
style). Padded examples carry `mask = False` and add nothing to sums or counts.
"""

import jax
import jax.numpy as jnp
import numpy as np


def top_k_correct(logits, labels, k: int):
    """`bool[N]`: whether `labels[i]` is among the `k` largest `logits[i]`.

    Ties are counted in the label's favour only when its logit beats the k-th largest strictly or
    equals it, as `torch.topk`-based accuracy does for distinct logits.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, num_classes], got {logits.shape}")
    if k > logits.shape[-1]:
        raise ValueError(f"k={k} exceeds the number of classes {logits.shape[-1]}")
    label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)  # [N, 1]
    num_greater = jnp.sum(logits > label_logit, axis=-1)  # [N]
    return num_greater < k


def classification_metrics(logits, labels, per_example_loss, mask=None) -> dict:
    """Sums and counts of loss, accuracy and (with >= 5 classes) top-5 accuracy.

    Args:
      logits: `float32[N, num_classes]`.
      labels: `int32[N]`.
      per_example_loss: `float32[N]`.
      mask: optional `bool[N]`, False for padding.
    """
    if mask is None:
        mask = jnp.ones(labels.shape, bool)
    weight = mask.astype(jnp.float32)
    count = jnp.sum(weight)
    metrics = {
        "loss": (jnp.sum(per_example_loss * weight), count),
        "accuracy": (jnp.sum(top_k_correct(logits, labels, 1) * weight), count),
    }
    if logits.shape[-1] >= 5:
        metrics["top5_accuracy"] = (jnp.sum(top_k_correct(logits, labels, 5) * weight), count)
    return metrics


def merge(total: dict | None, update: dict) -> dict:
    """Elementwise sum of two metrics dicts (`total=None` starts a new one)."""
    if total is None:
        return update
    return jax.tree.map(jnp.add, total, update)


def finalize(metrics: dict) -> dict[str, float]:
    """`{name: sum / count}` as Python floats (one host transfer for the whole dict)."""
    host = jax.device_get(metrics)
    return {name: float(np.asarray(s) / max(float(np.asarray(c)), 1e-12)) for name, (s, c) in host.items()}
