"""The model registry: a hand-written dict from name to constructor.

Every model is a `flax.linen` module whose `__call__(images, *, train)` returns
`(logits, features)`; `features` is a dict of named intermediates. Constructors accept
`num_classes` and `dtype` (compute dtype; parameters stay float32) plus model-specific fields.

    model = jaxvision.models.create_model("lenet5", num_classes=10)
    variables = model.init(jax.random.key(0), images, train=False)
    logits, features = model.apply(variables, images, train=False)
"""

import dataclasses
import functools
import inspect
from typing import Any, Callable

import flax.linen as nn

from jaxvision.models import alexnet, densenet, googlenet, lenet, linear, nin, resnet, vgg, vit
from jaxvision.models.input_resize import ResizeInput
from jaxvision.models.summary import LayerSummary, summary

MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": linear.LinearClassifier,
    "mlp": linear.TwoLayerMLP,
    "lenet5": lenet.lenet5,
    "lenet5_table": lenet.lenet5_table,
    "alexnet": alexnet.alexnet,
    "alexnet_227": alexnet.alexnet_227,
    "vgg11": vgg.vgg11,
    "vgg13": vgg.vgg13,
    "vgg16": vgg.vgg16,
    "vgg19": vgg.vgg19,
    "vgg11_bn": vgg.vgg11_bn,
    "vgg13_bn": vgg.vgg13_bn,
    "vgg16_bn": vgg.vgg16_bn,
    "vgg19_bn": vgg.vgg19_bn,
    "nin": nin.nin,
    "googlenet": googlenet.googlenet,
    "googlenet_aux": googlenet.googlenet_aux,
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
    "resnet152": resnet.resnet152,
    "resnet50d": resnet.resnet50d,
    "se_resnet50": resnet.se_resnet50,
    "resnext50_32x4d": resnet.resnext50_32x4d,
    "resnext101_32x8d": resnet.resnext101_32x8d,
    "wide_resnet50_2": resnet.wide_resnet50_2,
    "resnet18_cifar": resnet.resnet18_cifar,
    "resnet20": resnet.resnet20,
    "resnet56": resnet.resnet56,
    "densenet121": densenet.densenet121,
    "densenet169": densenet.densenet169,
    "densenet201": densenet.densenet201,
    "vit_ti_16": vit.vit_ti_16,
    "vit_ti_32": vit.vit_ti_32,
    "vit_s_16": vit.vit_s_16,
    "vit_s_32": vit.vit_s_32,
    "vit_b_16": vit.vit_b_16,
    "vit_b_32": vit.vit_b_32,
    "vit_l_16": vit.vit_l_16,
    "vit_l_32": vit.vit_l_32,
    "vit_cifar": vit.vit_cifar,
}


def list_models() -> list[str]:
    """Names accepted by `create_model`, sorted."""
    return sorted(MODELS)


# Models made for small inputs: the course's first classifiers on CIFAR-10 (linear, MLP) and MNIST
# (LeNet-5), and the CIFAR ResNets. The rest take ImageNet's 224x224 (ViTs their `image_size`).
_NATIVE_SIZES = {"linear": (32, 3), "mlp": (32, 3), "lenet5": (28, 1), "lenet5_table": (28, 1),
                 "resnet18_cifar": (32, 3), "resnet20": (32, 3), "resnet56": (32, 3), "alexnet_227": (227, 3)}


def native_input_shape(name: str, **kwargs: Any) -> tuple[int, int, int]:
    """The (H, W, C) image the registered model `name` is made for (224x224x3 unless it says
    otherwise; a ViT's `image_size`, from `kwargs` or its default). For `summary`, smoke tests and
    the CLI; every model except the ViTs also takes other sizes.

    Raises:
      ValueError: if `name` is not registered (the valid names are listed).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    if "image_size" in model_options(MODELS[name]):
        size = kwargs.get("image_size", _option_default(MODELS[name], "image_size"))
        return (size, size, 3)
    size, channels = _NATIVE_SIZES.get(name, (224, 3))
    return (size, size, channels)


def _option_default(constructor: Callable[..., nn.Module], option: str) -> Any:
    # A partial's signature carries its keywords as the defaults (vit_cifar's image_size=32).
    return inspect.signature(constructor).parameters[option].default


def model_options(constructor: Callable[..., nn.Module]) -> list[str]:
    """The keyword options a registry entry (a linen module class, or a `functools.partial` of one)
    takes besides `num_classes`: its dataclass fields, without flax's `parent` and `name`."""
    target = constructor.func if isinstance(constructor, functools.partial) else constructor
    fields = {field.name for field in dataclasses.fields(target) if field.init}
    return sorted(fields - {"parent", "name", "num_classes"})


def check_options(kind: str, name: str, constructor: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    """ValueError naming the kwargs `constructor` does not take, and the ones it does (a
    `config.model_kwargs` key left over from another model is the usual cause)."""
    options = model_options(constructor)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ValueError(
            f"{kind} {name!r} has no option {', '.join(map(repr, unknown))} (a config.model_kwargs key meant for another model?); "
            f"its options: {', '.join(options)}"
        )


def create_model(name: str, *, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the registered model `name` with `num_classes` outputs.

    Raises:
      ValueError: if `name` is not registered (the message lists the valid names), a kwarg is not
        one of the model's options (`model_options`; listed), or `num_classes < 1`.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    check_options("model", name, MODELS[name], kwargs)
    return MODELS[name](num_classes=num_classes, **kwargs)
