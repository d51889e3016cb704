"""Encoders for dense prediction: VGG-style (optionally dilated) and the library's ResNets.

An encoder maps `float32[N, H, W, C]` to a dict of feature maps "stem", "stage1".."stage4" with
the strides in `feature_strides(...)`; pooling uses ceil mode, so a map at stride s has
`ceil(H / s)` rows and odd input sizes lose no pixel.

Dilated option (Yu & Koltun, ICLR 2016; DeepLab, Chen et al. 2017): with `output_stride` 16 or 8
the VGG encoder replaces the last one or two 2x2/2 pools by 3x3/1 pools and dilates the
convolutions after them by 2 (and 4), so the receptive field grows as before while the maps
stay at stride 16/8.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models import layers, resnet

FEATURE_NAMES = ("stem", "stage1", "stage2", "stage3", "stage4")


class VGGEncoder(nn.Module):
    """Five blocks of 3x3 convolutions (+BN, ReLU), each closed by a 2x2 max pool (VGG, Simonyan &
    Zisserman 2015). Defaults are VGG-16's widths and depths; `widths` scales it down for CPU."""

    widths: Sequence[int] = (64, 128, 256, 512, 512)
    convs_per_block: Sequence[int] = (2, 2, 3, 3, 3)
    batch_norm: bool = True
    output_stride: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride}")
        if len(self.widths) != 5 or len(self.convs_per_block) != 5:
            raise ValueError(f"widths and convs_per_block need 5 entries, got {self.widths}, {self.convs_per_block}")
        features = {}
        x = images.astype(self.dtype)
        stride, dilation = 1, 1
        for block, (num_convs, width) in enumerate(zip(self.convs_per_block, self.widths), start=1):
            for i in range(1, num_convs + 1):
                x = nn.Conv(width, (3, 3), padding=dilation, kernel_dilation=dilation, use_bias=not self.batch_norm,
                            kernel_init=layers.torch_conv_init(), dtype=self.dtype, name=f"conv{block}_{i}")(x)
                if self.batch_norm:
                    x = layers.batch_norm(train, self.dtype, f"bn{block}_{i}")(x)
                x = nn.relu(x)
            if stride < self.output_stride:
                x = layers.MaxPool(2, 2, ceil_mode=True, name=f"pool{block}")(x)
                stride *= 2
            else:  # Dilated: keep the resolution, widen the next convolutions' reach instead.
                x = layers.MaxPool(3, 1, padding=1, name=f"pool{block}")(x)
                dilation *= 2
            features[FEATURE_NAMES[block - 1]] = x
        return features


class ResNetEncoder(nn.Module):
    """The stages of `jaxvision.models.resnet.ResNet` (He et al. 2016) as an encoder."""

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: Any = resnet.BasicBlock
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        # The classifier's 1-output fc runs on the pooled map and is discarded (jit prunes it).
        _, features = resnet.ResNet(num_classes=1, stage_sizes=self.stage_sizes, block=self.block,
                                    dtype=self.dtype, name="resnet")(images, train=train)
        return {name: features[name] for name in FEATURE_NAMES}


ENCODERS = {
    "vgg16": VGGEncoder,
    "vgg16_small": functools.partial(VGGEncoder, widths=(16, 32, 64, 128, 128), convs_per_block=(1, 1, 2, 2, 2)),
    "resnet18": functools.partial(ResNetEncoder, stage_sizes=(2, 2, 2, 2)),
    "resnet34": functools.partial(ResNetEncoder, stage_sizes=(3, 4, 6, 3)),
    "resnet50": functools.partial(ResNetEncoder, stage_sizes=(3, 4, 6, 3), block=resnet.Bottleneck),
}


def feature_strides(backbone: str, output_stride: int = 32) -> dict[str, int]:
    """Stride of each encoder feature map ("stem".."stage4")."""
    if backbone.startswith("vgg"):
        return {name: min(2 ** (i + 1), output_stride) for i, name in enumerate(FEATURE_NAMES)}
    if output_stride != 32:
        raise ValueError(f"the ResNet encoders have output stride 32 only, got {output_stride}")
    return {"stem": 4, "stage1": 4, "stage2": 8, "stage3": 16, "stage4": 32}


def create_encoder(backbone: str, *, output_stride: int = 32, dtype: Any = jnp.float32, name: str = "backbone"):
    if backbone not in ENCODERS:
        raise ValueError(f"unknown backbone {backbone!r}; valid names: {', '.join(sorted(ENCODERS))}")
    if backbone.startswith("vgg"):
        return ENCODERS[backbone](output_stride=output_stride, dtype=dtype, name=name)
    feature_strides(backbone, output_stride)  # validates
    return ENCODERS[backbone](dtype=dtype, name=name)
