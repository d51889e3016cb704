"""AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet classification with deep convolutional
neural networks", NeurIPS 2012), in the two forms the course uses.

- `alexnet`: torchvision's single-GPU variant ("One weird trick", Krizhevsky 2014): filters
  64-192-384-256-256, adaptive average pool to 6x6, dropout + FC 4096-4096-num_classes.
  61,100,840 parameters at 1,000 classes, as torchvision.
- `alexnet_227`: the course's table version on 227x227 input (conv1 11x11 stride 4 pad 2 ->
  64x56x56, ...). Same layers and parameters, but no adaptive pool: pool5 already yields 6x6, and
  the course's per-layer table has no row for it.

Layer names follow the course's table (conv1..conv5, pool1/pool2/pool5, fc6..fc8); torchvision's
`features.0/3/6/8/10` are conv1..conv5 and `classifier.1/4/6` are fc6/fc7/fc8.
Features: "stem" (pool1, stride 8), "stage1" (pool2, stride 16), "stage2" (conv3), "stage3"
(conv4), "stage4" (pool5, stride 32), "pre_logits" (fc7 after ReLU).
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models import layers


class AlexNet(nn.Module):
    """AlexNet. Input `float32[N, H, W, 3]`; returns `(logits float32[N, num_classes], features)`.

    With `fully_convolutional=True` (see `jaxvision.models.convolutionize`) fc6-fc8 are convolutions,
    the adaptive pool is skipped and logits are a map `float32[N, h, w, num_classes]`.
    """

    num_classes: int
    dropout_rate: float = 0.5
    adaptive_pool: bool = True
    fully_convolutional: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        conv = functools.partial(nn.Conv, dtype=self.dtype)
        features = {}
        x = images.astype(self.dtype)
        x = nn.relu(conv(64, (11, 11), strides=(4, 4), padding=2, name="conv1")(x))
        x = features["stem"] = layers.MaxPool(3, 2, name="pool1")(x)
        x = nn.relu(conv(192, (5, 5), padding=2, name="conv2")(x))
        x = features["stage1"] = layers.MaxPool(3, 2, name="pool2")(x)
        x = features["stage2"] = nn.relu(conv(384, (3, 3), padding=1, name="conv3")(x))
        x = features["stage3"] = nn.relu(conv(256, (3, 3), padding=1, name="conv4")(x))
        x = nn.relu(conv(256, (3, 3), padding=1, name="conv5")(x))
        x = features["stage4"] = layers.MaxPool(3, 2, name="pool5")(x)
        if self.adaptive_pool and not self.fully_convolutional:
            x = layers.AdaptiveAvgPool(6, name="avgpool")(x)
        if not self.fully_convolutional:
            x = x.reshape((x.shape[0], -1))  # [N, 6*6*256], flattened (h, w, c)
        head = functools.partial(
            layers.fully_connected, fully_convolutional=self.fully_convolutional, dtype=self.dtype
        )
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.relu(head(4096, window=6, name="fc6")(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = features["pre_logits"] = nn.relu(head(4096, window=1, name="fc7")(x))
        logits = head(self.num_classes, window=1, name="fc8")(x)
        return logits.astype(jnp.float32), features


alexnet = functools.partial(AlexNet, adaptive_pool=True)
alexnet_227 = functools.partial(AlexNet, adaptive_pool=False)
