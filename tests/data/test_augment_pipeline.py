"""Composition and batching: vmap agrees with a loop, no host round-trips, batch-level mixing."""

import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.data import augment

# Every image transform of the library, chained (shapes stay 16x16x3 until the last two).
PIPELINE = [
    functools.partial(augment.random_crop, padding=2, padding_mode="reflect"),
    augment.horizontal_flip,
    augment.vertical_flip,
    functools.partial(augment.random_affine, degrees=20, translate=(0.1, 0.1), scale=(0.9, 1.1),
                      shear=(5, 5)),
    functools.partial(augment.color_jitter, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
    augment.pca_lighting,
    augment.rand_augment,
    functools.partial(augment.cutout, size=4),
    augment.random_erasing,
    functools.partial(augment.scale_augment, size=16, short_side_range=(16, 24)),
    functools.partial(augment.random_resized_crop, size=12),
]
CALLBACK_PRIMITIVES = ("callback", "pure_callback", "io_callback", "debug_callback", "host")


def primitive_names(jaxpr):
    """Names of every primitive in a closed jaxpr, descending into sub-jaxprs (cond, scan, pjit...)."""
    names = set()
    for equation in jaxpr.eqns:
        names.add(equation.primitive.name)
        for param in equation.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    names |= primitive_names(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    names |= primitive_names(sub)
    return names


def test_apply_to_batch_has_no_host_round_trip(key):
    images = jnp.zeros((4, 16, 16, 3))
    closed = jax.make_jaxpr(functools.partial(augment.apply_to_batch, PIPELINE))(key, images)
    names = primitive_names(closed.jaxpr)
    assert "gather" in names and ("cond" in names or "select_n" in names)  # we did descend
    assert not [n for n in names if any(c in n for c in CALLBACK_PRIMITIVES)], names


BATCHED = jax.jit(functools.partial(augment.apply_to_batch, PIPELINE[:3]))


def test_apply_to_batch_matches_a_loop_and_is_deterministic(key):
    images = jax.random.uniform(jax.random.key(31), (4, 16, 16, 3))
    out = np.asarray(BATCHED(key, images))
    np.testing.assert_array_equal(out, BATCHED(key, images))
    assert not np.array_equal(out, BATCHED(jax.random.key(1), images))
    composed = jax.jit(augment.compose(PIPELINE[:3]))
    for index, example_key in enumerate(jax.random.split(key, 4)):
        np.testing.assert_allclose(out[index], composed(example_key, images[index]), atol=1e-5)


def test_chunked_lax_map_gives_the_same_result_as_vmap(key):
    images = jax.random.uniform(jax.random.key(31), (4, 16, 16, 3))
    chunked = jax.jit(functools.partial(augment.apply_to_batch, PIPELINE[:3], batch_size=3))
    np.testing.assert_array_equal(chunked(key, images), BATCHED(key, images))
    with pytest.raises(ValueError, match="batch_size"):
        augment.apply_to_batch(PIPELINE[:3], key, images, batch_size=0)


def test_jitted_pipeline_takes_numpy_input_for_host_use(key):
    images = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype(np.float32)
    out = BATCHED(key, images)
    np.testing.assert_array_equal(out, BATCHED(key, jnp.asarray(images)))
    assert isinstance(np.asarray(out), np.ndarray)


def test_apply_to_batch_maps_example_dicts(key):
    batch = {"image": jnp.zeros((3, 8, 8, 3)), "boxes": jnp.tile(jnp.array([[1.0, 1.0, 4.0, 4.0]]),
                                                                  (3, 1, 1)),
             "valid": jnp.ones((3, 1), bool)}
    flip_all = jax.jit(functools.partial(
        augment.apply_to_batch, [functools.partial(augment.horizontal_flip_example, p=1.0)]))
    out = flip_all(key, batch)
    np.testing.assert_allclose(out["boxes"][:, 0], np.tile([[4.0, 1.0, 7.0, 4.0]], (3, 1)))


def test_compose_of_nothing_is_identity_and_rejects_non_callables(key):
    image = jnp.ones((4, 4, 3))
    np.testing.assert_array_equal(augment.compose([])(key, image), image)
    with pytest.raises(ValueError, match="transforms"):
        augment.compose([1])
    with pytest.raises(ValueError, match="batch"):
        augment.apply_to_batch([], key, {"image": jnp.zeros((2, 4, 4, 3)), "x": jnp.zeros((3,))})


def test_mixup_labels_sum_to_one_and_images_are_the_same_mixture(key):
    # image i holds the value i and label one_hot(i): the mixed image must equal sum_k soft[k] * k.
    images = jnp.arange(6, dtype=jnp.float32).reshape(6, 1, 1, 1) * jnp.ones((6, 4, 4, 3))
    mixed, soft = jax.jit(functools.partial(augment.mixup, alpha=1.0, num_classes=6))(
        key, images, jnp.arange(6))
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    assert soft.dtype == jnp.float32 and mixed.dtype == jnp.float32
    np.testing.assert_allclose(mixed[:, 0, 0, 0], soft @ jnp.arange(6.0), atol=1e-5)
    np.testing.assert_allclose(mixed, mixed[:, :1, :1, :1] * jnp.ones((1, 4, 4, 3)), atol=1e-6)
    assert np.count_nonzero(np.asarray(soft) > 1e-6) > 6  # something was actually mixed


def test_cutmix_label_weights_equal_pasted_area(key):
    images = jnp.arange(6, dtype=jnp.float32).reshape(6, 1, 1, 1) * jnp.ones((6, 16, 16, 3))
    soft_labels = jax.nn.one_hot(jnp.arange(6), 6)
    cut = jax.jit(jax.vmap(functools.partial(augment.cutmix, alpha=1.0), in_axes=(0, None, None)))
    mixed, mixed_labels = cut(jax.random.split(key, 6), images, soft_labels)
    for trial in range(6):
        np.testing.assert_allclose(mixed_labels[trial].sum(axis=1), 1.0, atol=1e-6)
        for index in range(6):
            own_fraction = float(np.mean(np.asarray(mixed[trial, index, :, :, 0]) == index))
            partner_fraction = 1.0 - own_fraction
            if partner_fraction < 1.0:  # unless the partner is itself
                np.testing.assert_allclose(mixed_labels[trial, index, index],
                                           max(own_fraction, 0.0), atol=1e-6)


def test_mixing_argument_checks(key):
    with pytest.raises(ValueError, match="num_classes"):
        augment.mixup(key, jnp.zeros((2, 4, 4, 3)), jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match="images"):
        augment.cutmix(key, jnp.zeros((4, 4, 3)), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="alpha"):
        augment.mixup(key, jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 3)), alpha=0.0)
