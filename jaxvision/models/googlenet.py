"""GoogLeNet / Inception v1 (Szegedy et al., "Going deeper with convolutions", CVPR 2015), as
torchvision builds it: every conv is conv (no bias) + BatchNorm (eps 1e-3) + ReLU ("BN-conv"),
max-pools use `ceil_mode`, and the third Inception branch uses a 3x3 conv where the paper has a
5x5 (a long-standing torchvision quirk that its weights and its 6,624,904 parameters depend on).
torchvision's `transform_input` (a re-normalisation for its ported weights) is omitted.

Auxiliary classifiers (`aux_logits=True`) sit after inception4a and inception4d; in training they
return `features["aux1_logits"]`/`features["aux2_logits"]` (float32), for a 0.3-weighted loss.
Without them the parameter count is torchvision's 6,624,904 at 1,000 classes.

Names: conv1..conv3, inception3a/branch1/conv, inception3a/branch2_0/bn, ..., aux1/fc1, fc
(torchvision's `inception3a.branch2.0.conv` is `inception3a/branch2_0/conv`).
Features: "stem" (maxpool1, stride 4), "stage1" (conv3, stride 4), "stage2" (inception3b,
stride 8), "stage3" (inception4e, stride 16), "stage4" (inception5b, stride 32), "pre_logits".
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models import layers


class BasicConv(nn.Module):
    """conv (no bias, padding k//2) -> BatchNorm(eps=1e-3) -> ReLU, torchvision's `BasicConv2d`."""

    features: int
    kernel: int
    stride: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = layers.conv_no_bias(
            self.features,
            self.kernel,
            self.stride,
            self.dtype,
            "conv",
            kernel_init=nn.initializers.truncated_normal(0.01),
        )(x)
        x = layers.batch_norm(train, self.dtype, "bn", epsilon=1e-3)(x)
        return nn.relu(x)


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->3x3 | pool->1x1."""

    ch1x1: int
    ch3x3_reduce: int
    ch3x3: int
    ch5x5_reduce: int
    ch5x5: int
    pool_proj: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        conv = functools.partial(BasicConv, dtype=self.dtype)
        branch1 = conv(self.ch1x1, 1, name="branch1")(x, train=train)
        branch2 = conv(self.ch3x3_reduce, 1, name="branch2_0")(x, train=train)
        branch2 = conv(self.ch3x3, 3, name="branch2_1")(branch2, train=train)
        branch3 = conv(self.ch5x5_reduce, 1, name="branch3_0")(x, train=train)
        branch3 = conv(self.ch5x5, 3, name="branch3_1")(branch3, train=train)
        branch4 = layers.MaxPool(3, 1, padding=1, ceil_mode=True, name="branch4_pool")(x)
        branch4 = conv(self.pool_proj, 1, name="branch4_1")(branch4, train=train)
        return jnp.concatenate([branch1, branch2, branch3, branch4], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary head: adaptive avg-pool 4x4, 1x1 conv 128, FC 1024 + dropout 0.7, FC classes."""

    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = layers.AdaptiveAvgPool(4, name="avgpool")(x)
        x = BasicConv(128, 1, dtype=self.dtype, name="conv")(x, train=train)
        x = x.reshape((x.shape[0], -1))  # [N, 4*4*128]
        x = nn.relu(nn.Dense(1024, dtype=self.dtype, name="fc1")(x))
        x = nn.Dropout(0.7, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc2")(x).astype(jnp.float32)


# (ch1x1, ch3x3_reduce, ch3x3, ch5x5_reduce, ch5x5, pool_proj), Table 1 of the paper.
_INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """GoogLeNet. Input `float32[N, H, W, 3]`; returns `(logits float32[N, num_classes], features)`."""

    num_classes: int
    aux_logits: bool = False
    dropout_rate: float = 0.2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        conv = functools.partial(BasicConv, dtype=self.dtype)

        def inception(name):
            return Inception(*_INCEPTION[name], dtype=self.dtype, name=f"inception{name}")

        features = {}
        x = conv(64, 7, stride=2, name="conv1")(images.astype(self.dtype), train=train)
        x = features["stem"] = layers.MaxPool(3, 2, ceil_mode=True, name="maxpool1")(x)
        x = conv(64, 1, name="conv2")(x, train=train)
        x = features["stage1"] = conv(192, 3, name="conv3")(x, train=train)
        x = layers.MaxPool(3, 2, ceil_mode=True, name="maxpool2")(x)
        x = inception("3a")(x, train=train)
        x = features["stage2"] = inception("3b")(x, train=train)
        x = layers.MaxPool(3, 2, ceil_mode=True, name="maxpool3")(x)
        x = inception("4a")(x, train=train)
        if self.aux_logits:
            aux1 = InceptionAux(self.num_classes, dtype=self.dtype, name="aux1")(x, train=train)
        x = inception("4b")(x, train=train)
        x = inception("4c")(x, train=train)
        x = inception("4d")(x, train=train)
        if self.aux_logits:
            aux2 = InceptionAux(self.num_classes, dtype=self.dtype, name="aux2")(x, train=train)
        x = features["stage3"] = inception("4e")(x, train=train)
        x = layers.MaxPool(2, 2, ceil_mode=True, name="maxpool4")(x)
        x = inception("5a")(x, train=train)
        x = features["stage4"] = inception("5b")(x, train=train)
        x = features["pre_logits"] = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
        if self.aux_logits and train:
            features["aux1_logits"], features["aux2_logits"] = aux1, aux2
        return logits.astype(jnp.float32), features


googlenet = functools.partial(GoogLeNet, aux_logits=False)
googlenet_aux = functools.partial(GoogLeNet, aux_logits=True)
