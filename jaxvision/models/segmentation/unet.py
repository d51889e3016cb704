"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015): a contracting path of double 3x3 convolutions
and 2x2 max pools, an expanding path of 2x2 "up-convolutions" (transposed convolutions, stride 2)
that halve the channels, concatenation with the encoder map of the same level (the skip), and a
double 3x3 convolution; a 1x1 convolution gives the class scores.

Differences from the paper: convolutions pad ("SAME") so the output has the input's size instead of
shrinking by 184 pixels, BatchNorm follows each convolution, and pools use ceil mode (upsampled maps
are cropped to the skip's size), so any input size works.
`base_width` is the paper's 64 at level 1, doubling per level; `depth` counts the pools (4 in the paper).
Returns `(logits float32[N, H, W, num_classes], features)` with "stage1".. (encoder levels after
pooling), "bottleneck" and "decoder" (before the classifier).
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models import layers
from jaxvision.models.segmentation import upsampling


class UNet(nn.Module):
    num_classes: int
    base_width: int = 64
    depth: int = 4
    formulation: str = upsampling.DEFAULT_FORMULATION
    dtype: Any = jnp.float32

    def _double_conv(self, x, width: int, name: str, train: bool):
        for i in (1, 2):
            x = nn.Conv(width, (3, 3), padding=1, use_bias=False, kernel_init=layers.torch_conv_init(),
                        dtype=self.dtype, name=f"{name}_conv{i}")(x)
            x = nn.relu(layers.batch_norm(train, self.dtype, f"{name}_bn{i}")(x))
        return x

    @nn.compact
    def __call__(self, images, *, train: bool):
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        height, width = images.shape[1:3]
        features = {}
        skips = []
        x = images.astype(self.dtype)
        for level in range(self.depth):
            x = self._double_conv(x, self.base_width * 2**level, f"down{level + 1}", train)
            skips.append(x)
            x = features[f"stage{level + 1}"] = layers.MaxPool(2, 2, ceil_mode=True, name=f"pool{level + 1}")(x)
        x = features["bottleneck"] = self._double_conv(x, self.base_width * 2**self.depth, "bottleneck", train)
        for level in reversed(range(self.depth)):
            level_width = self.base_width * 2**level
            x = upsampling.TransposedConv(level_width, 2, formulation=self.formulation, dtype=self.dtype,
                                          name=f"upconv{level + 1}")(x)
            skip = skips[level]
            x = jnp.concatenate([skip, x[:, : skip.shape[1], : skip.shape[2]].astype(skip.dtype)], axis=-1)
            x = self._double_conv(x, level_width, f"up{level + 1}", train)
        features["decoder"] = x
        logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="classifier")(x)
        return logits[:, :height, :width].astype(jnp.float32), features


unet = functools.partial(UNet, base_width=64, depth=4)
unet_small = functools.partial(UNet, base_width=16, depth=3)
