"""Network in Network (Lin, Chen & Yan, ICLR 2014), the ImageNet-size version of Dive into Deep
Learning (section 8.3): four NiN blocks, each a kxk conv followed by two 1x1 convs ("mlpconv",
ReLU after each), max-pools between them, and no fully connected layer: the last block emits
`num_classes` channels that are globally averaged into the logits.

Input at least 67x67 (224x224 as in the book). Names: block{b}/conv{1,2,3}, pool{b}.
Features: "stem" (pool1, stride 8), "stage1" (pool2, stride 16), "stage2" (pool3, stride 32),
"stage3" (the class-score map of the last block), "pre_logits" (= logits before the cast, the
network has no layer after its pooling).
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models import layers


class NiNBlock(nn.Module):
    """kxk conv -> ReLU -> 1x1 conv -> ReLU -> 1x1 conv -> ReLU, all with `features` channels."""

    features: int
    kernel: int
    stride: int
    padding: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        k = self.kernel
        x = nn.relu(
            nn.Conv(self.features, (k, k), strides=self.stride, padding=self.padding, dtype=self.dtype, name="conv1")(x)
        )
        x = nn.relu(nn.Conv(self.features, (1, 1), dtype=self.dtype, name="conv2")(x))
        return nn.relu(nn.Conv(self.features, (1, 1), dtype=self.dtype, name="conv3")(x))


class NiN(nn.Module):
    """NiN. Input `float32[N, H, W, 3]`; returns `(logits float32[N, num_classes], features)`."""

    num_classes: int
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        if min(images.shape[1:3]) < 67:
            raise ValueError(f"NiN needs images of at least 67x67, got {images.shape}")
        block = functools.partial(NiNBlock, dtype=self.dtype)
        features = {}
        x = block(96, 11, 4, 0, name="block1")(images.astype(self.dtype))
        x = features["stem"] = layers.MaxPool(3, 2, name="pool1")(x)
        x = block(256, 5, 1, 2, name="block2")(x)
        x = features["stage1"] = layers.MaxPool(3, 2, name="pool2")(x)
        x = block(384, 3, 1, 1, name="block3")(x)
        x = features["stage2"] = layers.MaxPool(3, 2, name="pool3")(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = features["stage3"] = block(self.num_classes, 3, 1, 1, name="block4")(x)
        logits = features["pre_logits"] = jnp.mean(x, axis=(1, 2))
        return logits.astype(jnp.float32), features


nin = NiN
