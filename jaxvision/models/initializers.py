"""Weight-initialisation choices by name, for the models' `kernel_init` field.

    KERNEL_INITIALIZERS["kaiming"]  ->  a flax initializer `(key, shape, dtype) -> array`

Each scales the weight variance with the layer's fan: for a layer with `fan_in` inputs and
`fan_out` outputs (a conv's fans include the kernel area),
  lecun    Var = 1 / fan_in              (LeCun et al. 1998; flax's default; keeps tanh/SELU scales)
  xavier   Var = 2 / (fan_in + fan_out)  (Glorot & Bengio 2010; for tanh/sigmoid)
  kaiming  Var = 2 / fan_in              (He et al. 2015; ReLU zeroes half the signal, so x2)
  small_gaussian  std 0.01 whatever the fan: the course's "small random numbers", whose activations
           shrink toward zero layer after layer in a deep net (see experiments/init_activation_scales.py)
`*_uniform` draw the same variance from a uniform distribution (PyTorch's xavier_uniform_,
kaiming_uniform_). xavier and kaiming are untruncated normals (torch.nn.init's); lecun is flax's default
(a truncated normal with that variance), so `kernel_init="lecun"` leaves a model's parameters unchanged.
"""

from typing import Callable

import flax.linen as nn

KERNEL_INITIALIZERS: dict[str, Callable] = {
    "lecun": nn.initializers.lecun_normal(),
    "lecun_uniform": nn.initializers.lecun_uniform(),
    "xavier": nn.initializers.variance_scaling(1.0, "fan_avg", "normal"),
    "xavier_uniform": nn.initializers.xavier_uniform(),
    "kaiming": nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
    "kaiming_uniform": nn.initializers.variance_scaling(2.0, "fan_in", "uniform"),
    "small_gaussian": nn.initializers.normal(0.01),
}


def get_kernel_init(name: str) -> Callable:
    """The initializer called `name`; ValueError listing the valid names otherwise."""
    if name not in KERNEL_INITIALIZERS:
        raise ValueError(f"unknown kernel_init {name!r}; valid names: {', '.join(sorted(KERNEL_INITIALIZERS))}")
    return KERNEL_INITIALIZERS[name]
