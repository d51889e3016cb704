"""Fully convolutional networks: FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell, CVPR 2015).

A classification encoder with its fully connected head convolutionized (fc6 a k x k convolution,
fc7 a 1x1, `jaxvision.models.convolutionize` does the same for a trained classifier) gives class
scores at stride 32 (FCN-32s). FCN-16s adds scores predicted from the stride-16 map ("score_pool4",
zero-initialised) to the 2x-upsampled stride-32 scores; FCN-8s adds the stride-8 map too. The 2x
upsamplings are transposed convolutions initialised to bilinear interpolation and learned; the last
upsampling (32x, 16x or 8x) is fixed bilinear (learnable with `learnable_final_upsampling=True`).

Differences from the paper: convolutions pad ("SAME") instead of padding the input by 100 and
cropping, pools use ceil mode, and maps are cropped to the skip's size, so any input size works and
the logits have the input's size. `output_stride` 16/8 uses the dilated encoder (DeepLab-style):
the head is then dilated by 32 / output_stride, and a skip needs a map finer than the last one.

Returns `(logits float32[N, H, W, num_classes], features)` with the encoder's maps and "scores"
(the stride-32 class scores).
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models.segmentation import backbones, upsampling


class FCN(nn.Module):
    """FCN with `num_skips` 0 (32s), 1 (16s) or 2 (8s) on the encoder named `backbone`."""

    num_classes: int
    backbone: str = "vgg16"
    num_skips: int = 2
    head_width: int = 4096
    head_kernel: int = 7
    dropout_rate: float = 0.5
    output_stride: int = 32
    learnable_final_upsampling: bool = False
    formulation: str = upsampling.DEFAULT_FORMULATION
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        if self.num_skips not in (0, 1, 2):
            raise ValueError(f"num_skips must be 0, 1 or 2, got {self.num_skips}")
        strides = backbones.feature_strides(self.backbone, self.output_stride)
        skip_names = ("stage3", "stage2")[: self.num_skips]
        if any(strides[name] == strides["stage4"] for name in skip_names):
            raise ValueError(f"output_stride={self.output_stride} leaves no coarser map to fuse {self.num_skips} skip(s) into")
        height, width = images.shape[1:3]
        features = backbones.create_encoder(self.backbone, output_stride=self.output_stride, dtype=self.dtype)(
            images, train=train
        )
        head_dilation = 32 // self.output_stride if self.backbone.startswith("vgg") else 1
        x = nn.Conv(self.head_width, (self.head_kernel,) * 2, padding=head_dilation * (self.head_kernel // 2),
                    kernel_dilation=head_dilation, dtype=self.dtype, name="fc6")(features["stage4"])
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        x = nn.Conv(self.head_width, (1, 1), dtype=self.dtype, name="fc7")(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        scores = features["scores"] = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="score_fr")(x)
        stride = strides["stage4"]
        for name in skip_names:
            factor = stride // strides[name]
            up = upsampling.TransposedConv(self.num_classes, factor, bilinear_init=True, use_bias=False,
                                           formulation=self.formulation, dtype=self.dtype,
                                           name=f"upscore_{name}")(scores)
            skip = nn.Conv(self.num_classes, (1, 1), kernel_init=nn.initializers.zeros, dtype=self.dtype,
                           name=f"score_{name}")(features[name])
            scores = up[:, : skip.shape[1], : skip.shape[2]] + skip
            stride = strides[name]
        if self.learnable_final_upsampling:
            scores = upsampling.TransposedConv(self.num_classes, stride, bilinear_init=True, use_bias=False,
                                               formulation=self.formulation, dtype=self.dtype, name="upscore")(scores)
        else:
            scores = upsampling.bilinear_upsample(scores, stride, formulation=self.formulation)
        logits = scores[:, :height, :width]
        return logits.astype(jnp.float32), features


fcn32s_vgg16 = functools.partial(FCN, backbone="vgg16", num_skips=0)
fcn16s_vgg16 = functools.partial(FCN, backbone="vgg16", num_skips=1)
fcn8s_vgg16 = functools.partial(FCN, backbone="vgg16", num_skips=2)
fcn32s_resnet18 = functools.partial(FCN, backbone="resnet18", num_skips=0, head_width=512, head_kernel=3)
fcn16s_resnet18 = functools.partial(FCN, backbone="resnet18", num_skips=1, head_width=512, head_kernel=3)
fcn8s_resnet18 = functools.partial(FCN, backbone="resnet18", num_skips=2, head_width=512, head_kernel=3)
fcn8s_resnet50 = functools.partial(FCN, backbone="resnet50", num_skips=2, head_width=1024, head_kernel=3)
# DeepLab-style: dilated VGG-16 at stride 8, no skips, 8x bilinear upsampling.
fcn_vgg16_dilated8 = functools.partial(FCN, backbone="vgg16", num_skips=0, output_stride=8, head_kernel=3, head_width=1024)
# CPU-sized: VGG-style encoder with 16-128 channels and a 256-wide 3x3 head, trained from scratch.
_small = functools.partial(FCN, backbone="vgg16_small", head_width=256, head_kernel=3, dropout_rate=0.1)
fcn32s_small = functools.partial(_small, num_skips=0)
fcn16s_small = functools.partial(_small, num_skips=1)
fcn8s_small = functools.partial(_small, num_skips=2)
fcn_small_dilated8 = functools.partial(_small, num_skips=0, output_stride=8)
