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

# A timm ViT key's module -> torchvision's, applied to what follows "blocks.{i}." or to the top level.
_BLOCK_MODULES = {
    "norm1": "ln_1", "norm2": "ln_2", "attn.proj": "self_attention.out_proj", "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3",
}  # fmt: skip
_TOP_MODULES = {"patch_embed.proj": "conv_proj", "norm": "encoder.ln", "head": "heads.head"}
_TOP_PARAMETERS = {"cls_token": "class_token", "pos_embed": "encoder.pos_embedding"}
# The same tables from torchvision's names to timm's.
_TIMM_BLOCK_MODULES = {torch_name: timm_name for timm_name, torch_name in _BLOCK_MODULES.items()}
_TIMM_TOP_NAMES = {torch_name: timm_name for timm_name, torch_name in {**_TOP_PARAMETERS, **_TOP_MODULES}.items()}
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


def _torchvision_key(key: str) -> str | None:
    """The torchvision name of one timm ViT key, None for a key no torchvision ViT has."""
    if key in _TOP_PARAMETERS:
        return _TOP_PARAMETERS[key]
    block = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", key)
    if block:
        index, module, leaf = block.groups()
        prefix = f"encoder.layers.encoder_layer_{index}"
        if module == "attn.qkv":
            return f"{prefix}.self_attention.in_proj_{leaf}"
        return f"{prefix}.{_BLOCK_MODULES[module]}.{leaf}" if module in _BLOCK_MODULES else None
    module, _, leaf = key.rpartition(".")
    return f"{_TOP_MODULES[module]}.{leaf}" if module in _TOP_MODULES else None


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
        new_key = _torchvision_key(key)
        if new_key is None:
            unknown.append(key)
        else:
            renamed[new_key] = value
    if unknown:
        raise ValueError(f"timm ViT keys with no jaxvision counterpart: {sorted(unknown)[:8]} ({len(unknown)})")
    return renamed


def _timm_key(key: str) -> str | None:
    """The timm name of one torchvision ViT key (the inverse of `_torchvision_key`), None for a key
    that is not a torchvision ViT's."""
    if key in _TIMM_TOP_NAMES:
        return _TIMM_TOP_NAMES[key]
    block = re.fullmatch(r"encoder\.layers\.encoder_layer_(\d+)\.(.+)[._](weight|bias)", key)
    if block:
        index, module, leaf = block.groups()
        if module == "self_attention.in_proj":
            return f"blocks.{index}.attn.qkv.{leaf}"
        return f"blocks.{index}.{_TIMM_BLOCK_MODULES[module]}.{leaf}" if module in _TIMM_BLOCK_MODULES else None
    module, _, leaf = key.rpartition(".")
    return f"{_TIMM_TOP_NAMES[module]}.{leaf}" if module in _TIMM_TOP_NAMES else None


def torchvision_to_timm(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `timm_to_torchvision`: torchvision ViT keys renamed to timm's (same arrays)."""
    renamed = {}
    for key, value in state_dict.items():
        new_key = _timm_key(key)
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
