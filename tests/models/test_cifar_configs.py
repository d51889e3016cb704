"""The CIFAR-10 model configs load, lock, and build their model for CIFAR and smoke inputs.

(The smoke variants were run end to end with `jaxvision train --config=NAME:smoke`; here only the
cheap, abstract checks run.)
"""

import importlib.util
import os

import jax
import jax.numpy as jnp
import pytest

import jaxvision.models as models

EXPERIMENTS = os.path.join(os.path.dirname(__file__), "..", "..", "experiments")


def load_config(name, variant=None):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXPERIMENTS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


@pytest.mark.parametrize("name", ["cifar10_resnet56", "cifar10_vit"])
@pytest.mark.parametrize("variant,shape", [(None, (2, 32, 32, 3)), ("smoke", (2, 28, 28, 1))])
def test_config_builds_its_model(name, variant, shape, key):
    config = load_config(name, variant)
    assert config.is_locked
    model = models.create_model(config.model, num_classes=10, **config.model_kwargs.to_dict())
    images = jnp.zeros(shape)
    variables = jax.eval_shape(lambda: model.init(key, images, train=False))
    logits, _ = jax.eval_shape(lambda v: model.apply(v, images, train=False), variables)
    assert logits.shape == (2, 10)


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="smoke"):
        load_config("cifar10_vit", "tiny")
