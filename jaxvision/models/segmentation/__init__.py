"""Semantic-segmentation models, by name: a hand-written registry like `jaxvision.models.MODELS`.

Every model maps `float32[N, H, W, C]` (any H, W; odd sizes included) to
`(logits float32[N, H, W, num_classes], features)`.

    model = create_segmentation_model("unet_small", num_classes=11)
    logits, features = model.apply(variables, images, train=False)   # logits [N, H, W, 11]
"""

from typing import Any, Callable

import flax.linen as nn

from jaxvision.models import check_options
from jaxvision.models.segmentation import fcn, segnet, unet

SEGMENTATION_MODELS: dict[str, Callable[..., nn.Module]] = {
    "fcn32s_vgg16": fcn.fcn32s_vgg16,
    "fcn16s_vgg16": fcn.fcn16s_vgg16,
    "fcn8s_vgg16": fcn.fcn8s_vgg16,
    "fcn32s_resnet18": fcn.fcn32s_resnet18,
    "fcn16s_resnet18": fcn.fcn16s_resnet18,
    "fcn8s_resnet18": fcn.fcn8s_resnet18,
    "fcn8s_resnet50": fcn.fcn8s_resnet50,
    "fcn_vgg16_dilated8": fcn.fcn_vgg16_dilated8,
    "fcn32s_small": fcn.fcn32s_small,
    "fcn16s_small": fcn.fcn16s_small,
    "fcn8s_small": fcn.fcn8s_small,
    "fcn_small_dilated8": fcn.fcn_small_dilated8,
    "segnet_vgg16": segnet.segnet_vgg16,
    "segnet_small": segnet.segnet_small,
    "unet": unet.unet,
    "unet_small": unet.unet_small,
}


def list_segmentation_models() -> list[str]:
    """Names accepted by `create_segmentation_model`, sorted."""
    return sorted(SEGMENTATION_MODELS)


def create_segmentation_model(name: str, *, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the registered segmentation model `name` with `num_classes` output channels.

    Raises:
      ValueError: if `name` is not registered (listing the valid names), a kwarg is not one of the
        model's options (listed), or `num_classes < 1`.
    """
    if name not in SEGMENTATION_MODELS:
        raise ValueError(f"unknown segmentation model {name!r}; valid names: {', '.join(list_segmentation_models())}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    check_options("segmentation model", name, SEGMENTATION_MODELS[name], kwargs)
    return SEGMENTATION_MODELS[name](num_classes=num_classes, **kwargs)
