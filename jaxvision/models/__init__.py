"""The model registry: a hand-written dict from name to constructor.

Every model is a `flax.linen` module whose `__call__(images, *, train)` returns
`(logits, features)`; `features` is a dict of named intermediates. Constructors accept
`num_classes` and `dtype` (compute dtype; parameters stay float32) plus model-specific fields.

    model = jaxvision.models.create_model("lenet5", num_classes=10)
    variables = model.init(jax.random.key(0), images, train=False)
    logits, features = model.apply(variables, images, train=False)
"""

from typing import Any, Callable

import flax.linen as nn

from jaxvision.models import lenet, linear

MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": linear.LinearClassifier,
    "mlp": linear.TwoLayerMLP,
    "lenet5": lenet.lenet5,
    "lenet5_table": lenet.lenet5_table,
}


def list_models() -> list[str]:
    """Names accepted by `create_model`, sorted."""
    return sorted(MODELS)


def create_model(name: str, *, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the registered model `name` with `num_classes` outputs.

    Raises:
      ValueError: if `name` is not registered (the message lists the valid names) or
        `num_classes < 1`.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return MODELS[name](num_classes=num_classes, **kwargs)
