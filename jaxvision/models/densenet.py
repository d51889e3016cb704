"""DenseNet-121/169/201 (Huang et al., "Densely connected convolutional networks", CVPR 2017),
as torchvision builds them: growth rate 32, bottleneck width 4*32, compression 0.5, 64 initial
features. Parameter counts equal torchvision's (densenet121: 7,978,856 at 1,000 classes).

Each dense layer is BN-ReLU-conv1x1(128)-BN-ReLU-conv3x3(32) on the concatenation of all earlier
outputs of its block; transitions are BN-ReLU-conv1x1(C/2)-avgpool 2.

Names: conv0, norm0, denseblock1_denselayer1/norm1, .../conv1, .../norm2, .../conv2,
transition1/norm, transition1/conv, norm5, classifier (torchvision's `features.denseblock1.
denselayer1.norm1` is `denseblock1_denselayer1/norm1`).
Features: "stem" (pool0, stride 4), "stage1".."stage4" (dense blocks 1-4 before their transition,
strides 4-32; stage4 after norm5 + ReLU), "pre_logits".
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models import layers


def _batch_norm(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
    return layers.batch_norm(train, dtype, name)


def _conv(features: int, kernel: int, dtype: Any, name: str, stride: int = 1) -> nn.Conv:
    return layers.conv_no_bias(
        features, kernel, stride, dtype, name, kernel_init=nn.initializers.he_normal()
    )


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1(bn_size*growth)-BN-ReLU-conv3x3(growth); returns only the new features."""

    growth_rate: int
    bn_size: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        y = nn.relu(_batch_norm(train, self.dtype, "norm1")(x))
        y = _conv(self.bn_size * self.growth_rate, 1, self.dtype, "conv1")(y)
        y = nn.relu(_batch_norm(train, self.dtype, "norm2")(y))
        return _conv(self.growth_rate, 3, self.dtype, "conv2")(y)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 to `features` channels, then 2x2 average pool (halves the resolution)."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.relu(_batch_norm(train, self.dtype, "norm")(x))
        x = _conv(self.features, 1, self.dtype, "conv")(x)
        return layers.AvgPool(2, 2, name="pool")(x)


class DenseNet(nn.Module):
    """DenseNet-BC. Input `float32[N, H, W, 3]`; returns `(logits float32[N, num_classes], features)`."""

    num_classes: int
    block_config: Sequence[int] = (6, 12, 24, 16)
    growth_rate: int = 32
    num_init_features: int = 64
    bn_size: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        features = {}
        x = _conv(self.num_init_features, 7, self.dtype, "conv0", stride=2)(images.astype(self.dtype))
        x = nn.relu(_batch_norm(train, self.dtype, "norm0")(x))
        x = features["stem"] = layers.MaxPool(3, 2, padding=1, name="pool0")(x)
        for block, num_layers in enumerate(self.block_config, start=1):
            for i in range(1, num_layers + 1):
                new = DenseLayer(
                    self.growth_rate, self.bn_size, dtype=self.dtype, name=f"denseblock{block}_denselayer{i}"
                )(x, train=train)
                x = jnp.concatenate([x, new], axis=-1)
            if block < len(self.block_config):
                features[f"stage{block}"] = x
                x = Transition(x.shape[-1] // 2, dtype=self.dtype, name=f"transition{block}")(x, train=train)
        x = features[f"stage{len(self.block_config)}"] = nn.relu(_batch_norm(train, self.dtype, "norm5")(x))
        x = features["pre_logits"] = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)
        return logits.astype(jnp.float32), features


densenet121 = functools.partial(DenseNet, block_config=(6, 12, 24, 16))
densenet169 = functools.partial(DenseNet, block_config=(6, 12, 32, 32))
densenet201 = functools.partial(DenseNet, block_config=(6, 12, 48, 32))
