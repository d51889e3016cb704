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
import jax.numpy as jnp

from jaxvision.models import layers
from jaxvision.models.initializers import get_kernel_init


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
    # The same, applied only where XLA runs on a CPU with AVX-512 (layers.avx512_cpu_multiple), and
    # only where conv_feature_multiples is empty.
    avx512_conv_feature_multiples: Sequence[int] = ()
    dropout_rate: float = 0.0
    kernel_init: str = "lecun"  # a name in jaxvision.models.initializers.KERNEL_INITIALIZERS
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        kernel_init = get_kernel_init(self.kernel_init)
        features = {}
        x = images.astype(self.dtype)
        for field in ("conv_feature_multiples", "avx512_conv_feature_multiples"):
            given = getattr(self, field)
            if given and len(given) != len(self.conv_features):
                raise ValueError(
                    f"{field} {tuple(given)} needs one entry per conv of {tuple(self.conv_features)}"
                )
        multiples = (
            self.conv_feature_multiples
            or tuple(layers.avx512_cpu_multiple(multiple) for multiple in self.avx512_conv_feature_multiples)
            or (1,) * len(self.conv_features)
        )
        for index, (num_filters, multiple) in enumerate(zip(self.conv_features, multiples), start=1):
            x = nn.Conv(
                num_filters,
                (5, 5),
                padding=self.conv_padding,
                kernel_init=kernel_init,
                dtype=self.dtype,
                conv_general_dilated=layers.padded_features_conv(multiple),
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


lenet5 = functools.partial(LeNet5, conv_features=(6, 16), hidden_sizes=(120, 84), conv_padding=0)
# conv2's 50 filters run faster computed as 64 on a CPU with AVX-512, slower with AVX2 only
# (layers.avx512_cpu_multiple).
lenet5_table = functools.partial(
    LeNet5, conv_features=(20, 50), hidden_sizes=(500,), conv_padding=2, avx512_conv_feature_multiples=(1, 64)
)
