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
                   batch: PyTree) -> PyTree:
    """Splits `key` into one key per example and vmaps the composed `transforms` over `batch`.

    `batch` is an array `[B, ...]` (e.g. images `[B, H, W, C]`) or a pytree of such arrays with the
    same leading size (e.g. a dict of batched example fields). Example `i` always gets
    `jax.random.split(key, B)[i]`, so results do not depend on how the batch is traced.
    """
    leaves = jax.tree.leaves(batch)
    if not leaves or any(getattr(leaf, "ndim", 0) < 1 for leaf in leaves):
        raise ValueError("batch must be an array or pytree of arrays with a leading batch axis")
    batch_size = leaves[0].shape[0]
    if any(leaf.shape[0] != batch_size for leaf in leaves):
        raise ValueError(f"batch leaves must share the leading size, got "
                         f"{[leaf.shape for leaf in leaves]}")
    keys = jax.random.split(key, batch_size)
    return jax.vmap(compose(transforms))(keys, batch)
