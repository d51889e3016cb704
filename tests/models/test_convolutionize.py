"""Convolutionized AlexNet/VGG: same logits at the training size, a score map on larger inputs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvision.models as models
from jaxvision.models.convolutionize import convolutionize


@functools.cache
def _alexnet():
    model = models.create_model("alexnet", num_classes=10)
    images = jax.random.normal(jax.random.key(1), (1, 224, 224, 3))
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)
    return model, variables, images


def _head(params, window):
    """The original fc6-fc8 head applied to a `[N, 6, 6, C]` feature window (eval mode)."""
    x = window.reshape((window.shape[0], -1))  # [N, 6*6*C]
    x = jax.nn.relu(x @ params["fc6"]["kernel"] + params["fc6"]["bias"][None])
    x = jax.nn.relu(x @ params["fc7"]["kernel"] + params["fc7"]["bias"][None])
    return x @ params["fc8"]["kernel"] + params["fc8"]["bias"][None]


def test_same_logits_at_training_size():
    model, variables, images = _alexnet()
    logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    conv_model, conv_variables = convolutionize(model, variables)
    score_map, _ = jax.jit(lambda v, x: conv_model.apply(v, x, train=False))(conv_variables, images)
    assert score_map.shape == (1, 1, 1, 10)
    np.testing.assert_allclose(np.asarray(score_map[:, 0, 0]), np.asarray(logits), rtol=1e-4, atol=1e-5)


def test_score_map_on_larger_input_equals_head_on_each_window():
    model, variables, _ = _alexnet()
    conv_model, conv_variables = convolutionize(model, variables)
    big = jax.random.normal(jax.random.key(2), (1, 288, 288, 3))
    score_map, features = jax.jit(lambda v, x: conv_model.apply(v, x, train=False))(conv_variables, big)
    pool5 = features["stage4"]
    assert pool5.shape == (1, 8, 8, 256)  # (288 + 4 - 11) // 4 + 1 = 71 -> 35 -> 17 -> 8
    assert score_map.shape == (1, 3, 3, 10)
    params = variables["params"]
    for i in range(3):
        for j in range(3):
            expected = _head(params, pool5[:, i : i + 6, j : j + 6, :])
            np.testing.assert_allclose(np.asarray(score_map[:, i, j]), np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_vgg_kernels_reshape_and_map_shape(key):
    model = models.create_model("vgg11", num_classes=10)
    variables = jax.eval_shape(lambda: model.init(key, jnp.zeros((1, 224, 224, 3)), train=False))
    conv_model = model.clone(fully_convolutional=True)
    conv_variables = jax.eval_shape(lambda v: convolutionize(model, v)[1], variables)
    assert conv_variables["params"]["fc6"]["kernel"].shape == (7, 7, 512, 4096)
    assert conv_variables["params"]["fc8"]["kernel"].shape == (1, 1, 4096, 10)
    score_map, _ = jax.eval_shape(
        lambda v: conv_model.apply(v, jnp.zeros((1, 320, 320, 3)), train=False), conv_variables
    )
    assert score_map.shape == (1, 4, 4, 10)  # 320 / 32 = 10 -> 10 - 7 + 1


@pytest.mark.slow
def test_vgg11_bn_same_logits_at_training_size(key):
    model = models.create_model("vgg11_bn", num_classes=10)
    images = jax.random.normal(key, (1, 224, 224, 3))
    variables = jax.jit(lambda x: model.init(key, x, train=False))(images)
    logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    conv_model, conv_variables = convolutionize(model, variables)
    score_map, _ = jax.jit(lambda v, x: conv_model.apply(v, x, train=False))(conv_variables, images)
    np.testing.assert_allclose(np.asarray(score_map[:, 0, 0]), np.asarray(logits), rtol=1e-4, atol=1e-4)


def test_rejects_other_models(key):
    model = models.create_model("resnet18", num_classes=10)
    with pytest.raises(TypeError, match="AlexNet"):
        convolutionize(model, {"params": {}})
    alex = models.create_model("alexnet", num_classes=10).clone(fully_convolutional=True)
    with pytest.raises(ValueError, match="already"):
        convolutionize(alex, {"params": {}})
