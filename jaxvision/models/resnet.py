"""ResNets: ImageNet ResNet-18..152, ResNeXt, Wide ResNet, ResNet-D/SE options, and CIFAR ResNets.

Sources: He et al., "Deep residual learning for image recognition", CVPR 2016 (ImageNet nets and
the CIFAR-10 ResNet-20/56 of section 4.2); torchvision's ResNet ("v1.5": the stride-2 sits on
the bottleneck's 3x3, not its first 1x1); Xie et al. 2017 (ResNeXt, grouped 3x3 via
`feature_group_count`); Zagoruyko & Komodakis 2016 (Wide ResNet-50-2: bottleneck width doubled);
He et al. 2019 "Bag of tricks" (ResNet-D: deep 3x3 stem, average-pool in the downsample path);
Hu et al. 2018 (squeeze-and-excitation); Huang et al. 2016 (stochastic depth); Goyal et al. 2017
(zero-initialised last BN of each residual branch, torchvision's `zero_init_residual`).

Parameter names map one to one onto torchvision's: conv1, bn1, layer1_0/conv1, layer1_0/bn1, ...,
layer2_0/downsample_conv (torchvision `layer2.0.downsample.0`), layer2_0/downsample_bn
(`downsample.1`), fc. Counts at 1,000 classes equal torchvision's (resnet50: 25,557,032).

Features: "stem" (after the max-pool, stride 4), "stage1".."stage4" (strides 4, 8, 16, 32;
"stage1".."stage3" for the CIFAR ResNets), "pre_logits" (globally pooled).
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models import layers


def _batch_norm(train: bool, dtype: Any, name: str, zero_init: bool = False) -> nn.BatchNorm:
    return layers.batch_norm(train, dtype, name, zero_init=zero_init)


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: str, groups: int = 1) -> nn.Conv:
    return layers.conv_no_bias(features, kernel, stride, dtype, name, groups=groups)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34, CIFAR ResNets); expansion 1.

    `shortcut` when the shape changes: "B" a 1x1 conv + BN projection (torchvision), "A" the
    parameter-free identity of the CIFAR paper (subsample by 2, zero-pad the new channels).
    """

    features: int
    stride: int = 1
    shortcut: str = "B"
    avg_down: bool = False
    se_reduction: int = 0
    drop_path_rate: float = 0.0
    zero_init_last_bn: bool = False
    dtype: Any = jnp.float32

    expansion = 1

    @nn.compact
    def __call__(self, x, *, train: bool):
        y = _conv(self.features, 3, self.stride, self.dtype, "conv1")(x)
        y = nn.relu(_batch_norm(train, self.dtype, "bn1")(y))
        y = _conv(self.features, 3, 1, self.dtype, "conv2")(y)
        y = _batch_norm(train, self.dtype, "bn2", self.zero_init_last_bn)(y)
        return _merge(self, x, y, self.features, train)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride and groups here, ResNet v1.5), 1x1 expand by 4, residual add.

    The inner width is `features * base_width / 64 * groups` (torchvision), which gives ResNeXt
    (groups=32, base_width=4 or 8) and Wide ResNet (base_width=128).
    """

    features: int
    stride: int = 1
    groups: int = 1
    base_width: int = 64
    shortcut: str = "B"
    avg_down: bool = False
    se_reduction: int = 0
    drop_path_rate: float = 0.0
    zero_init_last_bn: bool = False
    dtype: Any = jnp.float32

    expansion = 4

    @nn.compact
    def __call__(self, x, *, train: bool):
        width = int(self.features * (self.base_width / 64.0)) * self.groups
        y = _conv(width, 1, 1, self.dtype, "conv1")(x)
        y = nn.relu(_batch_norm(train, self.dtype, "bn1")(y))
        y = _conv(width, 3, self.stride, self.dtype, "conv2", groups=self.groups)(y)
        y = nn.relu(_batch_norm(train, self.dtype, "bn2")(y))
        y = _conv(self.features * 4, 1, 1, self.dtype, "conv3")(y)
        y = _batch_norm(train, self.dtype, "bn3", self.zero_init_last_bn)(y)
        return _merge(self, x, y, self.features * 4, train)


def _merge(block, x, y, out_features: int, train: bool):
    """SE gate and drop path on the residual branch `y`, shortcut on `x`, add, ReLU.

    Called inside a block's compact `__call__`, so the submodules it creates belong to `block`.
    """
    if block.se_reduction:
        y = layers.SqueezeExcite(block.se_reduction, dtype=block.dtype, name="se")(y)
    y = layers.DropPath(block.drop_path_rate, name="drop_path")(y, train=train)
    if block.stride != 1 or x.shape[-1] != out_features:
        if block.shortcut == "A":
            x = x[:, :: block.stride, :: block.stride, :]
            extra = out_features - x.shape[-1]
            x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
        else:
            stride = block.stride
            if block.avg_down and stride != 1:
                # ResNet-D: average (not skip) the pixels the strided 1x1 conv would drop.
                x = layers.AvgPool(
                    stride, stride, ceil_mode=True, count_include_pad=False, name="downsample_pool"
                )(x)
                stride = 1
            x = _conv(out_features, 1, stride, block.dtype, "downsample_conv")(x)
            x = _batch_norm(train, block.dtype, "downsample_bn")(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
    """ImageNet-style ResNet. Input `float32[N, H, W, 3]`; returns `(logits float32[N, num_classes], features)`.

    Options: `deep_stem` + `avg_down` (ResNet-D), `cifar_stem` (3x3 stride-1 conv, no max-pool,
    for 32x32 inputs), `se_reduction` (0 = off, 16 for SE-ResNet), `drop_path_rate` (stochastic
    depth, rising linearly from 0 at the first block to this rate at the last; needs a 'dropout'
    rng when training with a rate > 0), `zero_init_last_bn`.
    """

    num_classes: int
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: Any = BasicBlock
    groups: int = 1
    base_width: int = 64
    deep_stem: bool = False
    avg_down: bool = False
    cifar_stem: bool = False
    se_reduction: int = 0
    drop_path_rate: float = 0.0
    zero_init_last_bn: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        features = {}
        x = images.astype(self.dtype)
        if self.cifar_stem:
            x = _conv(64, 3, 1, self.dtype, "conv1")(x)
            x = nn.relu(_batch_norm(train, self.dtype, "bn1")(x))
        else:
            if self.deep_stem:
                x = _conv(32, 3, 2, self.dtype, "stem_conv1")(x)
                x = nn.relu(_batch_norm(train, self.dtype, "stem_bn1")(x))
                x = _conv(32, 3, 1, self.dtype, "stem_conv2")(x)
                x = nn.relu(_batch_norm(train, self.dtype, "stem_bn2")(x))
                x = _conv(64, 3, 1, self.dtype, "conv1")(x)
            else:
                x = _conv(64, 7, 2, self.dtype, "conv1")(x)
            x = nn.relu(_batch_norm(train, self.dtype, "bn1")(x))
            x = layers.MaxPool(3, 2, padding=1, name="maxpool")(x)
        features["stem"] = x
        num_blocks = sum(self.stage_sizes)
        block_index = 0
        for stage, num_stage_blocks in enumerate(self.stage_sizes):
            for i in range(num_stage_blocks):
                extra = {}
                if self.block is Bottleneck:
                    extra = {"groups": self.groups, "base_width": self.base_width}
                x = self.block(
                    64 * 2**stage,
                    stride=2 if stage > 0 and i == 0 else 1,
                    avg_down=self.avg_down,
                    se_reduction=self.se_reduction,
                    drop_path_rate=self.drop_path_rate * block_index / max(num_blocks - 1, 1),
                    zero_init_last_bn=self.zero_init_last_bn,
                    dtype=self.dtype,
                    name=f"layer{stage + 1}_{i}",
                    **extra,
                )(x, train=train)
                block_index += 1
            features[f"stage{stage + 1}"] = x
        x = features["pre_logits"] = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
        return logits.astype(jnp.float32), features


class CifarResNet(nn.Module):
    """The CIFAR-10 ResNet of He et al. 2016, section 4.2: depth 6n+2, widths 16-32-64, 32x32 input.

    `shortcut="A"` (default, the paper's CIFAR choice): when the width doubles, the shortcut is
    the input subsampled by 2 with zero channels appended, so it adds no parameters (resnet20:
    0.27M, resnet56: 0.85M). `shortcut="B"`: a 1x1 conv + BN projection there instead.
    """

    num_classes: int
    blocks_per_stage: int = 3
    shortcut: str = "A"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        if self.shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {self.shortcut!r}")
        features = {}
        x = _conv(16, 3, 1, self.dtype, "conv1")(images.astype(self.dtype))
        x = features["stem"] = nn.relu(_batch_norm(train, self.dtype, "bn1")(x))
        for stage in range(3):
            for i in range(self.blocks_per_stage):
                x = BasicBlock(
                    16 * 2**stage,
                    stride=2 if stage > 0 and i == 0 else 1,
                    shortcut=self.shortcut,
                    dtype=self.dtype,
                    name=f"layer{stage + 1}_{i}",
                )(x, train=train)
            features[f"stage{stage + 1}"] = x
        x = features["pre_logits"] = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
        return logits.astype(jnp.float32), features


resnet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
resnet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=BasicBlock)
resnet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
resnet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block=Bottleneck)
resnet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block=Bottleneck)
resnext50_32x4d = functools.partial(resnet50, groups=32, base_width=4)
resnext101_32x8d = functools.partial(resnet101, groups=32, base_width=8)
wide_resnet50_2 = functools.partial(resnet50, base_width=128)
resnet50d = functools.partial(resnet50, deep_stem=True, avg_down=True)
se_resnet50 = functools.partial(resnet50, se_reduction=16)
resnet18_cifar = functools.partial(resnet18, cifar_stem=True)
resnet20 = functools.partial(CifarResNet, blocks_per_stage=3)
resnet56 = functools.partial(CifarResNet, blocks_per_stage=9)
