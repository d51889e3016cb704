"""VGG-11/13/16/19, with and without BatchNorm (Simonyan & Zisserman, "Very deep convolutional
networks for large-scale image recognition", ICLR 2015), as torchvision builds them.

Five blocks of 3x3 convolutions (pad 1) each closed by a 2x2 max-pool, an adaptive average pool to
7x7, then fc6/fc7 (4096, ReLU, dropout) and fc8. Parameter counts equal torchvision's (vgg16:
138,357,544 at 1,000 classes).

The `_bn` variants keep the conv bias before BatchNorm. It is redundant (BN removes it), but
torchvision keeps it and the parameter counts (vgg16_bn: 138,365,992) and weight ports depend on it.

Names: conv{block}_{i} (and bn{block}_{i}), pool{block}, fc6/fc7/fc8; torchvision's
`features.k` are the convs/BNs in order, `classifier.0/3/6` are fc6/fc7/fc8.
Features: "stem" (block 1, stride 2), "stage1".."stage4" (blocks 2-5, strides 4-32), "pre_logits".
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models import layers

# Convolutions per block for each depth (torchvision's configurations A, B, D, E).
_BLOCK_WIDTHS = (64, 128, 256, 512, 512)
_DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_FEATURE_NAMES = ("stem", "stage1", "stage2", "stage3", "stage4")


class VGG(nn.Module):
    """VGG. Input `float32[N, H, W, 3]` (H, W >= 32); returns `(logits float32[N, num_classes], features)`.

    With `fully_convolutional=True` (see `jaxvision.models.convolutionize`) fc6 is a 7x7 conv,
    fc7/fc8 are 1x1 convs, the adaptive pool is skipped, and logits are `float32[N, h, w, num_classes]`.
    """

    num_classes: int
    convs_per_block: Sequence[int] = _DEPTHS[16]
    batch_norm: bool = False
    dropout_rate: float = 0.5
    fully_convolutional: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        features = {}
        x = images.astype(self.dtype)
        for block, (num_convs, width) in enumerate(zip(self.convs_per_block, _BLOCK_WIDTHS), start=1):
            for i in range(1, num_convs + 1):
                x = nn.Conv(
                    width,
                    (3, 3),
                    padding=1,
                    kernel_init=layers.torch_conv_init(),
                    dtype=self.dtype,
                    name=f"conv{block}_{i}",
                )(x)
                if self.batch_norm:
                    x = layers.batch_norm(train, self.dtype, f"bn{block}_{i}")(x)
                x = nn.relu(x)
            x = features[_FEATURE_NAMES[block - 1]] = layers.MaxPool(2, 2, name=f"pool{block}")(x)
        if not self.fully_convolutional:
            x = layers.AdaptiveAvgPool(7, name="avgpool")(x)
            x = x.reshape((x.shape[0], -1))  # [N, 7*7*512], flattened (h, w, c)
        head = functools.partial(
            layers.fully_connected, fully_convolutional=self.fully_convolutional, dtype=self.dtype
        )
        x = nn.relu(head(4096, window=7, name="fc6")(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = features["pre_logits"] = nn.relu(head(4096, window=1, name="fc7")(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        logits = head(self.num_classes, window=1, name="fc8")(x)
        return logits.astype(jnp.float32), features


vgg11 = functools.partial(VGG, convs_per_block=_DEPTHS[11])
vgg13 = functools.partial(VGG, convs_per_block=_DEPTHS[13])
vgg16 = functools.partial(VGG, convs_per_block=_DEPTHS[16])
vgg19 = functools.partial(VGG, convs_per_block=_DEPTHS[19])
vgg11_bn = functools.partial(VGG, convs_per_block=_DEPTHS[11], batch_norm=True)
vgg13_bn = functools.partial(VGG, convs_per_block=_DEPTHS[13], batch_norm=True)
vgg16_bn = functools.partial(VGG, convs_per_block=_DEPTHS[16], batch_norm=True)
vgg19_bn = functools.partial(VGG, convs_per_block=_DEPTHS[19], batch_norm=True)
