"""timm's Vision Transformer weights in jaxvision ViTs, and back.

torchvision publishes ViT-B and ViT-L weights only; the small ViTs people fine-tune on one GPU or
a Colab TPU (ViT-Ti/16 5.7M, ViT-S/16 22M parameters, the AugReg and DeiT weights) come from timm
(`timm.create_model("vit_tiny_patch16_224", pretrained=True)`, or the `model.safetensors` file
of `timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k` on the Hugging Face hub). timm's plain
`VisionTransformer` (class token, learned position embedding, pre-norm blocks with a packed qkv
projection, exact GELU, LayerNorm eps 1e-6, a linear head on the class token) is the same network
as torchvision's and jaxvision's, in torch layouts under other names, so a timm `state_dict`
converts by renaming its keys to torchvision's and going through `torchvision_weights`:

| timm | torchvision | jaxvision |
|---|---|---|
| `cls_token` | `class_token` | `class_token` |
| `pos_embed` | `encoder.pos_embedding` | `pos_embedding` |
| `patch_embed.proj` | `conv_proj` | `conv_proj` |
| `blocks.{i}.norm1` / `norm2` | `encoder.layers.encoder_layer_{i}.ln_1` / `ln_2` | `encoder_layer_{i}/ln_1` / `ln_2` |
| `blocks.{i}.attn.qkv` | `....self_attention.in_proj_{weight,bias}` | `.../self_attention/in_proj` |
| `blocks.{i}.attn.proj` | `....self_attention.out_proj` | `.../self_attention/out_proj` |
| `blocks.{i}.mlp.fc1` / `fc2` | `....mlp.0` / `mlp.3` | `.../mlp_fc1` / `mlp_fc2` |
| `norm` | `encoder.ln` | `encoder_ln` |
| `head` | `heads.head` | `head` |

timm architectures that are other networks are refused with the keys that show it: layer scale
(`ls1.gamma`), q/k normalisation, register or distillation tokens, global average pooling with
`fc_norm`. The tests build random timm models and compare logits.

Which jaxvision model takes which timm architecture (all at 224, patch 16 or 32):
`vit_ti_16` <- `vit_tiny_patch16_224` (and `deit_tiny_patch16_224`), `vit_s_16` <-
`vit_small_patch16_224` (`deit_small_patch16_224`), `vit_s_32`, `vit_b_16`, `vit_b_32`,
`vit_l_16`, `vit_l_32` likewise; a 384 checkpoint loads into the same model at `image_size=384`
(read from the checkpoint; pass it to `create_model` too).

    state_dict = torchvision_weights.read_state_dict("model.safetensors")  # from the hub
    variables = from_timm("vit_ti_16", state_dict)
    logits, _ = create_model("vit_ti_16", num_classes=1000).apply(variables, images, train=False)

Inputs for the AugReg weights: RGB in [0, 1] normalised with mean = std = 0.5 (timm's
`pretrained_cfg`); for DeiT's, ImageNet's mean and std. Here NHWC.
"""

import re
from typing import Any, Mapping

import numpy as np

from jaxvision.models import torchvision_weights

# One table, both directions: a timm ViT key <-> its torchvision key; `{i}` is a block index and
# `{leaf}` weight or bias.
_BLOCK = "encoder.layers.encoder_layer_{i}"
_NAME_PAIRS = (
    ("cls_token", "class_token"),
    ("pos_embed", "encoder.pos_embedding"),
    ("patch_embed.proj.{leaf}", "conv_proj.{leaf}"),
    ("norm.{leaf}", "encoder.ln.{leaf}"),
    ("head.{leaf}", "heads.head.{leaf}"),
    ("blocks.{i}.norm1.{leaf}", _BLOCK + ".ln_1.{leaf}"),
    ("blocks.{i}.norm2.{leaf}", _BLOCK + ".ln_2.{leaf}"),
    ("blocks.{i}.attn.qkv.{leaf}", _BLOCK + ".self_attention.in_proj_{leaf}"),
    ("blocks.{i}.attn.proj.{leaf}", _BLOCK + ".self_attention.out_proj.{leaf}"),
    ("blocks.{i}.mlp.fc1.{leaf}", _BLOCK + ".mlp.0.{leaf}"),
    ("blocks.{i}.mlp.fc2.{leaf}", _BLOCK + ".mlp.3.{leaf}"),
)


def _key_pattern(template: str) -> re.Pattern:
    escaped = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{leaf\}", r"(?P<leaf>weight|bias)")
    return re.compile(escaped)


_TIMM_TO_TORCHVISION = tuple((_key_pattern(timm), torchvision) for timm, torchvision in _NAME_PAIRS)
_TORCHVISION_TO_TIMM = tuple((_key_pattern(torchvision), timm) for timm, torchvision in _NAME_PAIRS)


def _rename(key: str, table) -> str | None:
    """`key` renamed by the first `(pattern, template)` of `table` that matches it whole, else None."""
    for pattern, template in table:
        match = pattern.fullmatch(key)
        if match:
            return template.format(**match.groupdict())
    return None


# Keys of timm ViT variants that are different networks, and what they are.
_OTHER_ARCHITECTURES = {
    r"\.ls[12]\.": "layer scale (ls1/ls2)",
    r"\.(q_norm|k_norm)\.": "q/k normalisation",
    r"^reg_token$": "register tokens",
    r"^dist_token$|^head_dist\.": "a distillation token (DeiT distilled)",
    r"^fc_norm\.": "global average pooling with fc_norm",
    r"^attn_pool\.": "attention pooling",
    r"\.norm\.(weight|bias)$|^norm_pre\.": "a pre-norm stem or normalised patch embedding",
}


def is_timm_vit(state_dict: Mapping[str, Any]) -> bool:
    """Whether `state_dict` is laid out as a timm ViT (it has `patch_embed.proj.weight`)."""
    return "patch_embed.proj.weight" in state_dict


def timm_to_torchvision(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A timm ViT `state_dict` renamed to torchvision's `VisionTransformer` keys (same arrays).

    Raises:
      ValueError: the checkpoint is not a timm ViT, or it is a timm ViT variant that is another
        network (the message names the variant and its keys), or it has keys this table lacks.
    """
    if not is_timm_vit(state_dict):
        raise ValueError("not a timm ViT state_dict: it has no 'patch_embed.proj.weight'")
    for pattern, variant in _OTHER_ARCHITECTURES.items():
        keys = sorted(key for key in state_dict if re.search(pattern, key))
        if keys:
            raise ValueError(
                f"this timm ViT has {variant} ({', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}), which "
                "jaxvision's ViT (torchvision's architecture) does not: load a plain ViT/DeiT checkpoint"
            )
    renamed, unknown = {}, []
    for key, value in state_dict.items():
        new_key = _rename(key, _TIMM_TO_TORCHVISION)
        if new_key is None:
            unknown.append(key)
        else:
            renamed[new_key] = value
    if unknown:
        raise ValueError(f"timm ViT keys with no jaxvision counterpart: {sorted(unknown)[:8]} ({len(unknown)})")
    return renamed


def torchvision_to_timm(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `timm_to_torchvision`: torchvision ViT keys renamed to timm's (same arrays)."""
    renamed = {}
    for key, value in state_dict.items():
        new_key = _rename(key, _TORCHVISION_TO_TIMM)
        if new_key is None:
            raise ValueError(f"{key!r} is not a torchvision ViT key")
        renamed[new_key] = value
    return renamed


def from_timm(model_name: str, state_dict: Mapping[str, Any], **kwargs) -> dict[str, Any]:
    """jaxvision variables from a timm ViT `state_dict`: `timm_to_torchvision`, then
    `torchvision_weights.from_torchvision(model_name, ..., **kwargs)` (same arguments:
    `new_classifier_key`, `num_classes`, `image_size`...)."""
    return torchvision_weights.from_torchvision(model_name, timm_to_torchvision(state_dict), **kwargs)


def to_timm(model_name: str, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A timm `state_dict` (numpy arrays) from a jaxvision ViT's variables, for
    `timm.create_model(<architecture>, num_classes=N).load_state_dict(...)`."""
    return torchvision_to_timm(torchvision_weights.to_torchvision(model_name, variables))
