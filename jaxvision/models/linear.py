"""Linear (softmax) classifier and a two-layer MLP: the course's first learned classifiers.

Both flatten the image, so they work for any input size. Source: CS231n "Linear classification"
and "Neural Networks Part 1".
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models.initializers import get_kernel_init

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}


class LinearClassifier(nn.Module):
    """Softmax (multinomial logistic) regression on raw pixels: `logits = W x + b`.

    Input `float32[N, H, W, C]`; returns `(logits float32[N, num_classes], features)`.
    """

    num_classes: int
    kernel_init: str = "lecun"  # a name in jaxvision.models.initializers.KERNEL_INITIALIZERS
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        del train  # No train/eval difference; the argument keeps one calling convention.
        flat = images.reshape((images.shape[0], -1))  # [N, H*W*C]
        logits = nn.Dense(self.num_classes, kernel_init=get_kernel_init(self.kernel_init), dtype=self.dtype,
                          name="classifier")(flat)
        return logits.astype(jnp.float32), {"pre_logits": flat}


class TwoLayerMLP(nn.Module):
    """Two-layer fully connected network: flatten -> Dense(hidden) -> ReLU -> (dropout) -> Dense.

    Input `float32[N, H, W, C]`; returns `(logits float32[N, num_classes], features)`.
    """

    num_classes: int
    hidden_size: int = 256
    dropout_rate: float = 0.0
    kernel_init: str = "lecun"  # a name in jaxvision.models.initializers.KERNEL_INITIALIZERS
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        kernel_init = get_kernel_init(self.kernel_init)
        flat = images.reshape((images.shape[0], -1))  # [N, H*W*C]
        hidden = nn.relu(nn.Dense(self.hidden_size, kernel_init=kernel_init, dtype=self.dtype, name="hidden")(flat))
        hidden = nn.Dropout(self.dropout_rate, deterministic=not train)(hidden)
        logits = nn.Dense(self.num_classes, kernel_init=kernel_init, dtype=self.dtype, name="classifier")(hidden)
        return logits.astype(jnp.float32), {"hidden": hidden, "pre_logits": hidden}


class DeepMLP(nn.Module):
    """A deep fully connected network: flatten -> [Dense -> activation -> (dropout)] x depth -> Dense.

    The course's initialisation experiment (CS231n "Neural Networks Part 2", Glorot & Bengio 2010,
    He et al. 2015): with a bad `kernel_init` for the `activation`, the activations' scale shrinks or
    grows layer after layer. Input `float32[N, H, W, C]`; returns `(logits, features)` with the
    post-activation output of every hidden layer as "layer1", "layer2", ... and "pre_logits".
    """

    num_classes: int
    hidden_sizes: Sequence[int] = (512,) * 10
    activation: str = "relu"  # relu | tanh
    kernel_init: str = "kaiming"  # a name in jaxvision.models.initializers.KERNEL_INITIALIZERS
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        activation, kernel_init = ACTIVATIONS[self.activation], get_kernel_init(self.kernel_init)
        x = images.reshape((images.shape[0], -1))  # [N, H*W*C]
        features = {}
        for index, hidden_size in enumerate(self.hidden_sizes, start=1):
            x = activation(nn.Dense(hidden_size, kernel_init=kernel_init, dtype=self.dtype, name=f"layer{index}")(x))
            features[f"layer{index}"] = x
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        features["pre_logits"] = x
        logits = nn.Dense(self.num_classes, kernel_init=kernel_init, dtype=self.dtype, name="classifier")(x)
        return logits.astype(jnp.float32), features
