"""Weight-initialisation choices: variances by fan, the models' kernel_init field, activation scales."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import models
from jaxvision.models.initializers import KERNEL_INITIALIZERS, get_kernel_init
from jaxvision.models.linear import DeepMLP


def create(name, **kwargs):
    if name == "deep_mlp":
        return DeepMLP(**kwargs)
    return models.create_model(name, **kwargs)

FAN_IN, FAN_OUT = 400, 600
EXPECTED_VARIANCE = {
    "lecun": 1 / FAN_IN, "lecun_uniform": 1 / FAN_IN,
    "xavier": 2 / (FAN_IN + FAN_OUT), "xavier_uniform": 2 / (FAN_IN + FAN_OUT),
    "kaiming": 2 / FAN_IN, "kaiming_uniform": 2 / FAN_IN,
    "small_gaussian": 1e-4,
}


@pytest.mark.parametrize("name", sorted(KERNEL_INITIALIZERS))
def test_each_initializer_has_its_variance(name, key):
    kernel = np.asarray(get_kernel_init(name)(key, (FAN_IN, FAN_OUT), jnp.float32))
    assert kernel.var() == pytest.approx(EXPECTED_VARIANCE[name], rel=0.03)
    assert abs(kernel.mean()) < 3 * np.sqrt(EXPECTED_VARIANCE[name] / kernel.size) + 1e-7


def test_unknown_initializer_lists_valid_names():
    with pytest.raises(ValueError, match="unknown kernel_init 'glorot'.*kaiming"):
        get_kernel_init("glorot")


def test_lecun_is_flax_default_so_parameters_do_not_change(key):
    for layer, inputs in ((nn.Dense, jnp.zeros((1, 5))), (functools.partial(nn.Conv, kernel_size=(5, 5)),
                                                          jnp.zeros((1, 8, 8, 3)))):
        flax_default = layer(7).init(key, inputs)["params"]["kernel"]
        ours = layer(7, kernel_init=get_kernel_init("lecun")).init(key, inputs)["params"]["kernel"]
        assert bool(jnp.array_equal(flax_default, ours))
    assert models.create_model("lenet5", num_classes=10).kernel_init == "lecun"


@pytest.mark.parametrize("name", ["linear", "mlp", "lenet5", "deep_mlp"])
def test_kernel_init_changes_the_weight_scale(name, key):
    images = jnp.zeros((1, 28, 28, 1))
    model = create(name, num_classes=10, kernel_init="small_gaussian")
    small = jax.jit(lambda k: model.init(k, images, train=False))(key)
    kernels = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(small)[0]
               if "kernel" in jax.tree_util.keystr(path)]
    assert kernels and all(float(jnp.std(k)) == pytest.approx(0.01, rel=0.2) for k in kernels)


def test_deep_mlp_activation_scales_follow_the_course(key):
    """ReLU: Kaiming keeps the scale, Xavier halves the variance per layer, 0.01 collapses it."""
    images = jax.random.normal(key, (256, 28, 28, 1))

    def last_over_first(activation, init):
        model = DeepMLP(num_classes=10, hidden_sizes=(256,) * 8, activation=activation, kernel_init=init)
        _, features = model.apply(model.init(key, images[:1], train=False), images, train=False)
        return float(jnp.std(features["layer8"]) / jnp.std(features["layer1"]))

    assert 0.5 < last_over_first("relu", "kaiming") < 2.0
    assert last_over_first("relu", "xavier") < 0.2
    assert last_over_first("relu", "small_gaussian") < 1e-5
    assert last_over_first("tanh", "small_gaussian") < 1e-4
    with pytest.raises(ValueError, match="activation must be one of"):
        DeepMLP(num_classes=10, activation="gelu").init(key, images[:1], train=False)
