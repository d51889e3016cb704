"""Composing per-example transforms and running them over a batch with one key.

A transform is any function `transform(key, x) -> x` for ONE example: an HWC image, or an example
dict for the annotation-aware transforms (`annotated.py`). A pipeline is a plain Python list of them;
hyperparameters are bound with `functools.partial`:

    transforms = [functools.partial(random_crop, padding=4), horizontal_flip]
    images = apply_to_batch(transforms, key, images)          # inside the jitted train step

Everything is pure `jnp`, so the same list also runs on the host: jit `apply_to_batch` once and call
it on numpy arrays (a grain `MapTransform` can hold the jitted function); the arrays are copied to
the default device and back.
"""

from typing import Callable, Sequence

import jax

from jaxvision.types import PyTree

Transform = Callable[[jax.Array, PyTree], PyTree]


def compose(transforms: Sequence[Transform] | Transform) -> Transform:
    """One transform that runs `transforms` in order, each with its own key split from the input key.

    An empty list gives the identity; a single callable is returned as is.
    """
    if callable(transforms):
        return transforms
    transforms = list(transforms)
    if not all(callable(t) for t in transforms):
        raise ValueError(f"transforms must be callables (key, x) -> x, got {transforms!r}")

    def composed(key: jax.Array, example: PyTree) -> PyTree:
        if not transforms:
            return example
        for transform, step_key in zip(transforms, jax.random.split(key, len(transforms))):
            example = transform(step_key, example)
        return example

    return composed


def apply_to_batch(transforms: Sequence[Transform] | Transform, key: jax.Array,
                   batch: PyTree, *, batch_size: int | None = None) -> PyTree:
    """Splits `key` into one key per example and maps the composed `transforms` over `batch`.

    `batch` is an array `[B, ...]` (e.g. images `[B, H, W, C]`) or a pytree of such arrays with the
    same leading size (e.g. a dict of batched example fields). Example `i` always gets
    `jax.random.split(key, B)[i]`, so the result does not depend on `batch_size`.

    `batch_size=None` vmaps over the whole batch (the choice for GPU/TPU). Under vmap a
    `lax.switch`/`cond` on a per-example value runs every branch and selects, so transforms built on
    them (RandAugment, random-order colour jitter) pay for all branches. An int runs
    `lax.map(..., batch_size=k)`: sequential chunks of `k` examples, vmapped inside (`k=1` runs only
    each example's own branch, but pays a per-example loop step). On the 2-core CPU, chunks of 32
    ran the crop+flip+RandAugment pipeline at the same speed as one vmap over 128 and `k=1` ~2x
    slower (experiments/bench_augment.py); it bounds memory for large images. `B` need not be a
    multiple of `k`.
    """
    leaves = jax.tree.leaves(batch)
    if not leaves or any(getattr(leaf, "ndim", 0) < 1 for leaf in leaves):
        raise ValueError("batch must be an array or pytree of arrays with a leading batch axis")
    num_examples = leaves[0].shape[0]
    if any(leaf.shape[0] != num_examples for leaf in leaves):
        raise ValueError(f"batch leaves must share the leading size, got "
                         f"{[leaf.shape for leaf in leaves]}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None or a positive int, got {batch_size!r}")
    keys = jax.random.split(key, num_examples)
    transform = compose(transforms)
    if batch_size is None:
        return jax.vmap(transform)(keys, batch)
    return jax.lax.map(lambda pair: transform(*pair), (keys, batch), batch_size=batch_size)
