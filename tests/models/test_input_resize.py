"""`models.ResizeInput`: the wrapped model's variables unchanged, its outputs on the resized images."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import ResizeInput, create_model


@pytest.fixture(scope="module")
def lenet_pair():
    inner = create_model("lenet5", num_classes=10)
    return inner, ResizeInput(inner, size=32)


def test_variables_are_the_plain_models_and_outputs_those_on_the_resized_images(lenet_pair):
    inner, wrapped = lenet_pair
    images = jax.random.uniform(jax.random.key(1), (2, 20, 20, 1))
    variables = wrapped.init(jax.random.key(0), images, train=False)
    plain = inner.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False)
    assert jax.tree.structure(variables) == jax.tree.structure(plain)
    for got, want in zip(jax.tree.leaves(variables), jax.tree.leaves(plain)):
        np.testing.assert_array_equal(got, want)
    logits, features = jax.jit(lambda v, x: wrapped.apply(v, x, train=False))(variables, images)
    resized = jax.image.resize(images, (2, 32, 32, 1), "bilinear")
    expected, expected_features = inner.apply(variables, resized, train=False)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    assert features.keys() == expected_features.keys()
    # At the target size the images pass unchanged.
    np.testing.assert_array_equal(wrapped.apply(variables, resized, train=False)[0], expected)


def test_gradients_flow_through_the_resize(lenet_pair):
    _, wrapped = lenet_pair
    images = jax.random.uniform(jax.random.key(1), (2, 20, 20, 1))
    variables = wrapped.init(jax.random.key(0), images, train=False)
    grads = jax.grad(lambda v: wrapped.apply(v, images, train=False)[0].sum())(variables)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(grads))
    assert np.abs(grads["params"]["conv1"]["kernel"]).sum() > 0


def test_bad_sizes_and_ranks_are_errors(lenet_pair):
    inner, wrapped = lenet_pair
    with pytest.raises(ValueError, match="size must be positive"):
        ResizeInput(inner, size=0).init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        wrapped.init(jax.random.key(0), jnp.zeros((8, 8, 1)), train=False)
