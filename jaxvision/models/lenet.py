"""LeNet-5 in the two variants the course shows.

- `lenet5`: the PyTorch-tutorial net (conv 6 and 16 filters 5x5, no padding, max-pool 2 after each,
  FC 120-84-num_classes, ReLU). On 28x28 input the flattened size is 16*4*4.
- `lenet5_table`: the table version from the course (conv 20 and 50 filters 5x5 with padding 2,
  max-pool 2 after each, FC 500-num_classes, ReLU). On 28x28 input the flattened size is 50*7*7.

Source: LeCun et al., "Gradient-based learning applied to document recognition", 1998; the
PyTorch 60-minute blitz; CS231n / EECS 498 lecture "CNN architectures".
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxvision.models import layers, spectral_conv
from jaxvision.models.initializers import get_kernel_init
from jaxvision.training import machine


class LeNet5(nn.Module):
    """A LeNet-style network: [conv 5x5 -> ReLU -> max-pool 2] per filter count, then FC layers.

    Input `float32[N, H, W, C]`; returns `(logits float32[N, num_classes], features)` with
    features "conv1", "conv2", ..., "pre_logits".
    """

    num_classes: int
    conv_features: Sequence[int] = (6, 16)
    hidden_sizes: Sequence[int] = (120, 84)
    conv_padding: int = 0
    # Per conv: compute its outputs padded to this multiple and slice them back (same values; a speed
    # choice measured per layer, see layers.padded_features_conv). Empty: no padding anywhere.
    conv_feature_multiples: Sequence[int] = ()
    # Per conv: True where its kernels are chosen by backend and processor (`cpu_tuned_conv`, measured
    # on lenet5_table's conv2); a conv_feature_multiples entry other than 1 takes precedence.
    cpu_tuned_convs: Sequence[bool] = ()
    dropout_rate: float = 0.0
    kernel_init: str = "lecun"  # a name in jaxvision.models.initializers.KERNEL_INITIALIZERS
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        kernel_init = get_kernel_init(self.kernel_init)
        features = {}
        x = images.astype(self.dtype)
        for field in ("conv_feature_multiples", "cpu_tuned_convs"):
            given = getattr(self, field)
            if given and len(given) != len(self.conv_features):
                raise ValueError(
                    f"{field} {tuple(given)} needs one entry per conv of {tuple(self.conv_features)}"
                )
        multiples = self.conv_feature_multiples or (1,) * len(self.conv_features)
        tuned = self.cpu_tuned_convs or (False,) * len(self.conv_features)
        for index, (num_filters, multiple, is_tuned) in enumerate(
            zip(self.conv_features, multiples, tuned), start=1
        ):
            if multiple != 1 or not is_tuned:
                conv_general_dilated = layers.padded_features_conv(multiple)
            else:
                conv_general_dilated = cpu_tuned_conv()
            x = nn.Conv(
                num_filters,
                (5, 5),
                padding=self.conv_padding,
                kernel_init=kernel_init,
                dtype=self.dtype,
                conv_general_dilated=conv_general_dilated,
                name=f"conv{index}",
            )(x)
            # layers.MaxPool: same values as nn.max_pool, PyTorch's gradient, and no XLA:CPU
            # select_and_scatter (see layers.max_pool_padded).
            x = layers.MaxPool(2, 2, name=f"pool{index}")(nn.relu(x))
            features[f"conv{index}"] = x
        x = x.reshape((x.shape[0], -1))  # [N, h*w*c]
        for index, hidden_size in enumerate(self.hidden_sizes, start=1):
            x = nn.relu(nn.Dense(hidden_size, kernel_init=kernel_init, dtype=self.dtype, name=f"fc{index}")(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        features["pre_logits"] = x
        logits = nn.Dense(self.num_classes, kernel_init=kernel_init, dtype=self.dtype, name="classifier")(x)
        return logits.astype(jnp.float32), features


def cpu_tuned_conv():
    """The `conv_general_dilated` measured fastest for LeNet-5's conv2 (14x14, 20 -> 50, 5x5) in a
    train step on this backend and processor. Call it when tracing: it asks JAX for its backend,
    which must not happen at import, before `jaxvision.training.cpu_devices` has set XLA's flags.

    - GPU/TPU: `lax.conv_general_dilated` (the vendor libraries' kernels).
    - CPU with AVX-512: 64 outputs computed and 50 kept (`layers.padded_features_conv(64)`): the
      project's earlier VMs (their processor was recorded only later, with AVX-512) ran the step
      in 85.0 instead of 90.5 ms.
    - Other CPUs: the plain forward with gradients through the DFT
      (`spectral_conv.spectral_backward_conv`). On an AMD EPYC (Zen 3, AVX2 only), 2 devices,
      batch 128, 21 interleaved repetitions: 1,693 img/s against 1,514 for the plain convolution,
      whose 64-output form was slower still (1,629 vs 1,771 img/s in another run).
    All three compute the same function (up to float rounding).
    """
    if jax.default_backend() != "cpu":
        return lax.conv_general_dilated
    if machine.cpu_has_flag("avx512f"):
        return layers.padded_features_conv(64)
    return spectral_conv.spectral_backward_conv


lenet5 = functools.partial(LeNet5, conv_features=(6, 16), hidden_sizes=(120, 84), conv_padding=0)
# conv2's kernels depend on the processor (cpu_tuned_conv).
lenet5_table = functools.partial(
    LeNet5, conv_features=(20, 50), hidden_sizes=(500,), conv_padding=2, cpu_tuned_convs=(False, True)
)
