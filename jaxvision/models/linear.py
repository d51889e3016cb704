"""Linear (softmax) classifier and a two-layer MLP: the course's first learned classifiers.

Both flatten the image, so they work for any input size. Source: CS231n "Linear classification"
and "Neural Networks Part 1".
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class LinearClassifier(nn.Module):
    """Softmax (multinomial logistic) regression on raw pixels: `logits = W x + b`.

    Input `float32[N, H, W, C]`; returns `(logits float32[N, num_classes], features)`.
    """

    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        del train  # No train/eval difference; the argument keeps one calling convention.
        flat = images.reshape((images.shape[0], -1))  # [N, H*W*C]
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(flat)
        return logits.astype(jnp.float32), {"pre_logits": flat}


class TwoLayerMLP(nn.Module):
    """Two-layer fully connected network: flatten -> Dense(hidden) -> ReLU -> (dropout) -> Dense.

    Input `float32[N, H, W, C]`; returns `(logits float32[N, num_classes], features)`.
    """

    num_classes: int
    hidden_size: int = 256
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        flat = images.reshape((images.shape[0], -1))  # [N, H*W*C]
        hidden = nn.relu(nn.Dense(self.hidden_size, dtype=self.dtype, name="hidden")(flat))
        hidden = nn.Dropout(self.dropout_rate, deterministic=not train)(hidden)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(hidden)
        return logits.astype(jnp.float32), {"hidden": hidden, "pre_logits": hidden}
