"""A validation split held out of a training split, for model selection that never sees the test set.

The held-out examples are chosen by a permutation with a fixed seed (`HOLDOUT_SEED`), independent of
`config.seed`: runs with different training seeds are compared on the same validation examples, and
the training split of every run excludes exactly those examples. Normalization statistics stay those
of the whole training split (they are cached per data set; the held-out part is a small fraction).
"""

import numpy as np

HOLDOUT_SEED = 20260101  # fixed: the split must not move with config.seed


def holdout_indices(num_examples: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of a split of `num_examples` records, each sorted.

    `round(fraction * num_examples)` records (at least 1) are held out for `0 < fraction < 1`.

    Raises:
      ValueError: `fraction` outside [0, 1), or a split that leaves no training examples.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return np.arange(num_examples), np.arange(0)
    num_validation = max(1, int(round(fraction * num_examples)))
    if num_validation >= num_examples:
        raise ValueError(f"validation fraction {fraction} of {num_examples} examples leaves none to train on")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(num_examples)
    return np.sort(order[num_validation:]), np.sort(order[:num_validation])


class IndexSubset:
    """The records `indices` of a random-access `source`, renumbered from 0 (what grain and the
    batch readers take: `len`, `[i]` and the batched `__getitems__`)."""

    def __init__(self, source, indices):
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(source)):
            raise ValueError(f"subset indices must lie in [0, {len(source)})")

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, index: int):
        return self.source[int(self.indices[index])]

    def __getitems__(self, indices):
        mapped = [int(self.indices[i]) for i in indices]
        if hasattr(self.source, "__getitems__"):
            return self.source.__getitems__(mapped)
        return [self.source[i] for i in mapped]

    def __repr__(self) -> str:
        return f"IndexSubset({len(self)} of {len(self.source)} records)"


def split_source(source, fraction: float):
    """(training source, validation source or None) of `source` with `fraction` held out."""
    if fraction == 0.0:
        return source, None
    train, validation = holdout_indices(len(source), fraction)
    return IndexSubset(source, train), IndexSubset(source, validation)
