"""ResNet-50 and ViT-B/16 in PyTorch, written with torchvision's module names (torchvision has
no CPU build here), and a converter from jaxvision parameters to their `state_dict`.

Used by `bench_models.py` as the peer: same weights in both frameworks, so the benchmark checks
that logits agree before timing. The converter is also the evidence that each torchvision layer
maps to one jaxvision layer: it renames `/` to `.` (and `layer1_0` to `layer1.0`) and transposes
kernels, nothing more.
"""

import collections
import re

import numpy as np
import torch
from torch import nn


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: stride on the 3x3)."""

    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            stage = []
            for i in range(blocks):
                stage.append(Bottleneck(inplanes, planes, 2 if index > 0 and i == 0 else 1))
                inplanes = planes * 4
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class EncoderBlock(nn.Module):
    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_dim, mlp_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp_dim, hidden_dim), nn.Dropout(0.0)
        )

    def forward(self, x):
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq_length: int, depth: int, num_heads: int, hidden_dim: int, mlp_dim: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(
            collections.OrderedDict(
                (f"encoder_layer_{i}", EncoderBlock(num_heads, hidden_dim, mlp_dim)) for i in range(depth)
            )
        )
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, x):
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class ViTB16(nn.Module):
    """torchvision's vit_b_16 layout."""

    def __init__(self, num_classes: int = 1000, image_size: int = 224, patch_size: int = 16):
        super().__init__()
        hidden_dim = 768
        self.patch_size = patch_size
        self.conv_proj = nn.Conv2d(3, hidden_dim, patch_size, patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(seq_length, 12, 12, hidden_dim, 3072)
        self.heads = nn.Sequential(collections.OrderedDict(head=nn.Linear(hidden_dim, num_classes)))

    def forward(self, x):
        x = self.conv_proj(x)  # [N, D, h, w]
        x = x.flatten(2).transpose(1, 2)  # [N, h*w, D]
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def _torch_name(path: tuple[str, ...], vit: bool) -> str:
    parts = []
    for part in path:
        part = re.sub(r"^(layer\d)_(\d+)$", r"\1.\2", part)
        part = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(part, part)
        if vit:
            part = {"mlp_fc1": "mlp.0", "mlp_fc2": "mlp.3", "head": "heads.head"}.get(part, part)
            part = re.sub(r"^encoder_layer_", "encoder.layers.encoder_layer_", part)
            part = {"encoder_ln": "encoder.ln", "pos_embedding": "encoder.pos_embedding"}.get(part, part)
        parts.append(part)
    return ".".join(parts)


def jax_to_torch_state_dict(variables, *, vit: bool) -> dict[str, torch.Tensor]:
    """Convert jaxvision ResNet-50 / ViT variables to the torchvision-named `state_dict`.

    conv kernels `[kh, kw, in, out] -> [out, in, kh, kw]`, dense `[in, out] -> [out, in]`,
    BN `scale/bias/mean/var -> weight/bias/running_mean/running_var`, LayerNorm `scale -> weight`,
    ViT's packed `in_proj` kernel/bias -> `in_proj_weight`/`in_proj_bias`.
    """
    state = {}

    def visit(tree, path, collection):
        for key, value in tree.items():
            if isinstance(value, dict):
                visit(value, path + (key,), collection)
                continue
            array = np.asarray(value, dtype=np.float32)
            if collection == "batch_stats":
                leaf = {"mean": "running_mean", "var": "running_var"}[key]
            elif key == "kernel":
                array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
                leaf = "weight"
            else:
                leaf = {"scale": "weight", "bias": "bias"}.get(key, key)
            if path and path[-1] == "in_proj":
                name = _torch_name(path[:-1], vit) + f".in_proj_{leaf}"
            elif path:
                name = _torch_name(path, vit) + f".{leaf}"
            else:  # ViT's top-level class_token / pos_embedding
                name = _torch_name((key,), vit)
            state[name] = torch.tensor(array)

    visit(variables["params"], (), "params")
    if "batch_stats" in variables:
        visit(variables["batch_stats"], (), "batch_stats")
    return state
