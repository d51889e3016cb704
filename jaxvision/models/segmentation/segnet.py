"""SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017), the DeconvNet-style decoder (Noh et al.,
ICCV 2015) that upsamples by max unpooling: each decoder stage puts its input back at the positions
where the mirrored encoder pool found its maxima (`jaxvision.ops.pooling`), leaving zeros elsewhere,
and 3x3 convolutions densify the sparse map. No upsampling weights are learned.

Encoder: VGG-style blocks (3x3 conv + BN + ReLU) each closed by a 2x2/2 max pool that keeps its
argmax. Decoder: unpool, then the block's convolutions in mirror order. Odd sizes: a pool drops the
last row/column (floor), which unpooling restores as zeros at the original size.
Returns `(logits float32[N, H, W, num_classes], features)` with "stage1".. (encoder, after pools)
and "decoder" (before the classifier).
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models import layers
from jaxvision.ops import pooling


class SegNet(nn.Module):
    num_classes: int
    widths: Sequence[int] = (64, 128, 256, 512, 512)
    convs_per_block: Sequence[int] = (2, 2, 3, 3, 3)
    dtype: Any = jnp.float32

    def _conv_bn_relu(self, x, width: int, name: str, train: bool):
        x = nn.Conv(width, (3, 3), padding=1, use_bias=False, kernel_init=layers.torch_conv_init(),
                    dtype=self.dtype, name=f"{name}_conv")(x)
        return nn.relu(layers.batch_norm(train, self.dtype, f"{name}_bn")(x))

    @nn.compact
    def __call__(self, images, *, train: bool):
        if len(self.widths) != len(self.convs_per_block):
            raise ValueError(f"widths and convs_per_block must have the same length, got {self.widths}, {self.convs_per_block}")
        height, width = images.shape[1:3]
        if min(height, width) < 2 ** len(self.widths):
            raise ValueError(f"images must be at least {2 ** len(self.widths)} pixels per side, got {images.shape}")
        features = {}
        x = images.astype(self.dtype)
        switches = []  # (argmax indices, size before pooling) per encoder block
        for block, (num_convs, block_width) in enumerate(zip(self.convs_per_block, self.widths), start=1):
            for i in range(1, num_convs + 1):
                x = self._conv_bn_relu(x, block_width, f"encoder{block}_{i}", train)
            size = x.shape[1:3]
            x, indices = pooling.max_pool_with_argmax(x, 2)
            switches.append((indices, size))
            features[f"stage{block}"] = x
        blocks = list(enumerate(zip(self.convs_per_block, self.widths), start=1))
        for block, (num_convs, block_width) in reversed(blocks):
            indices, size = switches[block - 1]
            x = pooling.max_unpool(x, indices, size)
            # The last conv of a decoder block narrows to the next (shallower) block's width.
            next_width = self.widths[block - 2] if block > 1 else self.widths[0]
            for i in range(num_convs, 0, -1):
                x = self._conv_bn_relu(x, next_width if i == 1 else block_width, f"decoder{block}_{i}", train)
        features["decoder"] = x
        logits = nn.Conv(self.num_classes, (3, 3), padding=1, dtype=self.dtype, name="classifier")(x)
        return logits.astype(jnp.float32), features


segnet_vgg16 = functools.partial(SegNet)
segnet_small = functools.partial(SegNet, widths=(16, 32, 64, 64), convs_per_block=(1, 2, 2, 2))
