"""Published torchvision weights in jaxvision models, and jaxvision weights in torchvision models.

Every torchvision classifier that jaxvision has (`TORCHVISION_MODELS`) has one jaxvision layer per
torchvision layer, so a `state_dict` converts by renaming and changing layouts:

- conv `weight [out, in/groups, kh, kw]` -> `kernel [kh, kw, in/groups, out]` (NCHW -> NHWC);
- linear `weight [out, in]` -> `kernel [in, out]`; the first fully connected layer after a
  flattened map (AlexNet and VGG fc6, GoogLeNet's auxiliary fc1) also reorders its input rows from
  torch's `(c, h, w)` flatten order to jaxvision's `(h, w, c)`;
- BatchNorm `weight, bias, running_mean, running_var` -> `params` `scale, bias` and `batch_stats`
  `mean, var` (`num_batches_tracked` is dropped); LayerNorm `weight` -> `scale`;
- ViT's packed `in_proj_weight [3D, D]` -> `in_proj/kernel [D, 3D]` (q, k, v in the same order).

The names follow torchvision 0.28's `state_dict` (the `torchvision.models` sources); the tests load
random torchvision models through these functions and compare logits.

    import torch, torchvision
    state_dict = torchvision.models.resnet50(weights="IMAGENET1K_V2").state_dict()
    variables = from_torchvision("resnet50", {k: v.numpy() for k, v in state_dict.items()})
    # or from a file, without torch for .safetensors: load_torchvision_weights("resnet50", path)
    logits, _ = create_model("resnet50", num_classes=1000).apply(variables, images, train=False)
    # fine-tuning on 10 classes: everything but the classifier, which is freshly initialised
    variables = from_torchvision("resnet50", state_dict, num_classes=10, new_classifier_key=jax.random.key(0))

Inputs for torchvision's ImageNet weights: RGB in [0, 1], normalised with mean (0.485, 0.456, 0.406)
and std (0.229, 0.224, 0.225), here NHWC. GoogLeNet's ported weights were trained behind
torchvision's `transform_input`, which jaxvision's GoogLeNet omits; it is the same as normalising
[0, 1] RGB with mean = std = 0.5, so do that instead. The ported GoogLeNet files also hold untrained
auxiliary heads (`aux1.*`, `aux2.*`): `googlenet` ignores them, `googlenet_aux` loads them.
"""

import os
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxvision import models

TORCHVISION_MODELS = (
    "alexnet",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "googlenet", "googlenet_aux",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
    "densenet121", "densenet169", "densenet201",
    "vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32",
)  # fmt: skip
# Every model whose layers map one-to-one onto a torchvision architecture: the above, whose weights
# torchvision publishes, and the ViT sizes torchvision's `VisionTransformer` class builds without
# publishing weights for them (their weights come from timm: `timm_weights`).
CONVERTIBLE_MODELS = TORCHVISION_MODELS + ("vit_ti_16", "vit_ti_32", "vit_s_16", "vit_s_32")

# The fully connected layers that read a flattened `side x side` map, by model family: their
# input rows are in (c, h, w) order in torch and (h, w, c) order in jaxvision.
_FLATTENED_INPUTS = {
    "alexnet": {("fc6",): 6},
    "vgg": {("fc6",): 7},
    "googlenet": {("aux1", "fc1"): 4, ("aux2", "fc1"): 4},
}
_ALEXNET_MODULES = {
    "conv1": "features.0", "conv2": "features.3", "conv3": "features.6", "conv4": "features.8",
    "conv5": "features.10", "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6",
}  # fmt: skip
_VGG_HEAD = {"fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6"}
# The layers with num_classes outputs, by family.
_CLASSIFIERS = {
    "alexnet": ("fc8",), "vgg": ("fc8",), "googlenet": ("fc", "aux1/fc2", "aux2/fc2"), "resnet": ("fc",),
    "densenet": ("classifier",), "vit": ("head",),
}  # fmt: skip
_VIT_MODULES = {
    "mlp_fc1": "mlp.0", "mlp_fc2": "mlp.3", "head": "heads.head", "encoder_ln": "encoder.ln",
    "pos_embedding": "encoder.pos_embedding",
}  # fmt: skip
# GoogLeNet checkpoints keep their untrained auxiliary heads; a model without them skips these.
_OPTIONAL_PREFIXES = {"googlenet": ("aux1.", "aux2.")}


def _family(model_name: str) -> str:
    if model_name not in CONVERTIBLE_MODELS:
        raise ValueError(
            f"model {model_name!r} has no torchvision counterpart; torchvision weights convert for: "
            f"{', '.join(CONVERTIBLE_MODELS)}"
        )
    for family in ("alexnet", "vgg", "googlenet", "densenet", "vit"):
        if model_name.startswith(family):
            return family
    return "resnet"


def _vgg_modules(module_names: list[str]) -> dict[str, str]:
    """torchvision's `features.k` indices for VGG's conv{block}_{i} / bn{block}_{i}: its Sequential
    holds conv, [bn], relu per layer and a max-pool closing each block."""
    convs = sorted((n for n in module_names if n.startswith("conv")), key=lambda n: tuple(map(int, re.findall(r"\d+", n))))
    has_bn = any(n.startswith("bn") for n in module_names)
    names, index, block = dict(_VGG_HEAD), 0, None
    for conv in convs:
        conv_block = conv[len("conv"):].split("_")[0]
        if block is not None and conv_block != block:
            index += 1  # the previous block's max-pool
        block = conv_block
        names[conv] = f"features.{index}"
        index += 1
        if has_bn:
            names["bn" + conv[len("conv"):]] = f"features.{index}"
            index += 1
        index += 1  # ReLU
    return names


def _torch_module(family: str, path: tuple[str, ...], table: dict[str, str]) -> str:
    """The torchvision module name of the jaxvision module at `path`."""
    if family in ("alexnet", "vgg"):
        return ".".join([table[path[0]], *path[1:]])
    parts = []
    for part in path:
        if family == "resnet":
            part = re.sub(r"^(layer\d)_(\d+)$", r"\1.\2", part)
            part = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(part, part)
        elif family == "googlenet":
            part = re.sub(r"^(branch\d)_(\d)$", r"\1.\2", part)
        elif family == "densenet":
            part = re.sub(r"^(denseblock\d)_(denselayer\d+)$", r"features.\1.\2", part)
            part = re.sub(r"^(conv0|norm0|norm5|transition\d)$", r"features.\1", part)
        elif family == "vit":
            part = re.sub(r"^(encoder_layer_\d+)$", r"encoder.layers.\1", part)
            part = _VIT_MODULES.get(part, part)
        parts.append(part)
    return ".".join(parts)


def _torch_key(family: str, collection: str, path: tuple[str, ...], table: dict[str, str]) -> str:
    *module, leaf = path
    if collection == "batch_stats":
        leaf = {"mean": "running_mean", "var": "running_var"}[leaf]
    else:
        leaf = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
    if not module:  # ViT's class_token and pos_embedding are bare parameters
        return _torch_module(family, (leaf,), table)
    if module[-1] == "in_proj":  # nn.MultiheadAttention packs q, k, v into one parameter
        return f"{_torch_module(family, tuple(module[:-1]), table)}.in_proj_{leaf}"
    return f"{_torch_module(family, tuple(module), table)}.{leaf}"


def torchvision_names(model_name: str, variables: Mapping[str, Any]) -> dict[tuple[str, ...], str]:
    """Map each leaf of a jaxvision model's variables to its torchvision `state_dict` key.

    Args:
      model_name: a name in `CONVERTIBLE_MODELS`.
      variables: the model's variables (arrays or `jax.ShapeDtypeStruct`s), `{"params": ...}` and,
        for models with BatchNorm, `"batch_stats"`.

    Returns:
      `{(collection, *path): torch_key}`, e.g. `("params", "layer1_0", "conv1", "kernel") ->
      "layer1.0.conv1.weight"`.
    """
    family = _family(model_name)
    flat = traverse_util.flatten_dict({k: variables[k] for k in ("params", "batch_stats") if k in variables})
    top_modules = sorted({path[1] for path in flat})
    table = _ALEXNET_MODULES if family == "alexnet" else _vgg_modules(top_modules) if family == "vgg" else {}
    return {path: _torch_key(family, path[0], path[1:], table) for path in flat}


def _change_layout(family: str, path: tuple[str, ...], array: np.ndarray, *, to_jax: bool) -> np.ndarray:
    """One leaf from torch's layout to jaxvision's (`to_jax`) or back; only kernels change."""
    if path[-1] != "kernel":
        return array
    if array.ndim == 4:  # convolution: torch [out, in, kh, kw], jaxvision [kh, kw, in, out]
        return array.transpose((2, 3, 1, 0) if to_jax else (3, 2, 0, 1))
    side = _FLATTENED_INPUTS.get(family, {}).get(tuple(path[1:-1]))
    if side is None:  # linear: torch [out, in], jaxvision [in, out]
        return array.T
    # A linear layer reading a flattened side x side map: its input axis is (c, h, w) in torch
    # and (h, w, c) in jaxvision.
    if to_jax:
        out_features = array.shape[0]
        return array.reshape(out_features, -1, side, side).transpose(2, 3, 1, 0).reshape(-1, out_features)
    out_features = array.shape[1]
    return array.reshape(side, side, -1, out_features).transpose(3, 2, 0, 1).reshape(out_features, -1)


def _checkpoint_classes(family: str, state_dict: Mapping[str, Any]) -> int | None:
    """The size of the checkpoint's classifier, None if it has none."""
    table = _ALEXNET_MODULES if family == "alexnet" else _VGG_HEAD  # the tables only alexnet/vgg read
    key = _torch_module(family, (_CLASSIFIERS[family][0],), table) + ".bias"
    return int(np.shape(state_dict[key])[0]) if key in state_dict else None


def _checkpoint_image_size(family: str, state_dict: Mapping[str, Any]) -> int | None:
    """A ViT checkpoint's input side (patch size x the side of its position embedding's square
    grid, after the class token); None for other families or a checkpoint without those keys."""
    if family != "vit" or not {"encoder.pos_embedding", "conv_proj.weight"} <= set(state_dict):
        return None
    grid_side = round((np.shape(state_dict["encoder.pos_embedding"])[1] - 1) ** 0.5)
    return grid_side * np.shape(state_dict["conv_proj.weight"])[-1]


def _is_classifier(family: str, path: tuple[str, ...]) -> bool:
    """Whether the leaf at `(collection, *path)` belongs to a layer with `num_classes` outputs."""
    return "/".join(path[1:-1]) in _CLASSIFIERS[family]


def _model_and_input(model_name: str, model_kwargs: dict[str, Any]):
    model = models.create_model(model_name, **model_kwargs)
    size = getattr(model, "image_size", 224)
    return model, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)


def _template(model_name: str, model_kwargs: dict[str, Any]) -> dict[str, Any]:
    model, images = _model_and_input(model_name, model_kwargs)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)


def _initialised_classifier(model_name: str, model_kwargs: dict[str, Any], key) -> dict[tuple[str, ...], np.ndarray]:
    """The classifier leaves of `model.init(key, images)`: the model's own initialiser, as from scratch.

    flax derives each module's key from `key` and the module's name, not from the input, and every
    family but ViT pools adaptively before its head, so a 64x64 input gives the same classifier as
    224x224 at a fraction of the compile and compute (ViT's input must match its `image_size`).
    """
    model, images = _model_and_input(model_name, model_kwargs)
    size = images.shape[1] if _family(model_name) == "vit" else 64
    family = _family(model_name)

    def classifier(images):  # returning only these lets XLA drop the rest of init before compiling it
        flat = traverse_util.flatten_dict(model.init(key, images, train=False))
        return {"/".join(path): leaf for path, leaf in flat.items() if _is_classifier(family, path)}

    leaves = jax.jit(classifier)(jnp.zeros((1, size, size, 3), jnp.float32))
    return {tuple(path.split("/")): np.asarray(leaf) for path, leaf in leaves.items()}


def from_torchvision(
    model_name: str, state_dict: Mapping[str, Any], *, new_classifier_key=None, **model_kwargs
) -> dict[str, Any]:
    """jaxvision variables from a torchvision `state_dict`.

    Args:
      model_name: a name in `CONVERTIBLE_MODELS`; the jaxvision model it loads into.
      state_dict: torchvision `state_dict` keys -> arrays (numpy arrays, or anything `np.asarray`
        converts: CPU torch tensors included).
      new_classifier_key: for fine-tuning on other classes (timm's `pretrained=True, num_classes=N`):
        a PRNG key. The classifier (fc / fc8 / classifier / head, and GoogLeNet's auxiliary fc2)
        then comes from the model's own initialiser with this key, and the checkpoint's classifier
        is ignored; everything else is loaded. Needed when `num_classes` differs from the checkpoint's.
      **model_kwargs: passed to `create_model` to build the target's shapes; `num_classes` defaults to
        the size of the checkpoint's classifier (1000 for ImageNet weights), a ViT's `image_size`
        to the checkpoint's (from its position embedding). Kwargs must keep the torchvision
        architecture (e.g. a ViT's `depth`).

    Returns:
      `{"params": ..., "batch_stats": ...}` (`batch_stats` only for models with BatchNorm), float32
      numpy arrays, ready for `create_model(model_name, **model_kwargs).apply(variables, ...)`.

    Raises:
      ValueError: the model has no torchvision counterpart, a key the model needs is missing, the
        checkpoint holds keys the model does not have, or a shape differs. The message names them.
    """
    family = _family(model_name)
    model_kwargs = dict(model_kwargs)
    checkpoint_classes = _checkpoint_classes(family, state_dict)
    model_kwargs.setdefault("num_classes", checkpoint_classes)
    image_size = _checkpoint_image_size(family, state_dict)
    if image_size is not None:  # a ViT at 384 loads as image_size=384 without being told
        model_kwargs.setdefault("image_size", image_size)
    if model_kwargs["num_classes"] is None:
        raise ValueError("state_dict has no classifier to read num_classes from; pass num_classes=")
    if new_classifier_key is None and checkpoint_classes not in (None, model_kwargs["num_classes"]):
        raise ValueError(
            f"the checkpoint's classifier has {checkpoint_classes} classes, not "
            f"num_classes={model_kwargs['num_classes']}: pass new_classifier_key=jax.random.key(...) to "
            "initialise a new classifier (fine-tuning)"
        )
    template = _template(model_name, model_kwargs)
    names = torchvision_names(model_name, template)
    classifier = {}
    if new_classifier_key is not None:
        classifier = _initialised_classifier(model_name, model_kwargs, new_classifier_key)
        ignored = tuple(names[path].rsplit(".", 1)[0] + "." for path in classifier)
        names = {path: key for path, key in names.items() if path not in classifier}
    else:
        ignored = ()
    wanted = set(names.values())
    optional = _OPTIONAL_PREFIXES.get(family, ()) if model_name != "googlenet_aux" else ()
    unexpected = sorted(
        key for key in state_dict
        if key not in wanted and not key.endswith("num_batches_tracked") and not key.startswith(optional + ignored)
    )  # fmt: skip
    missing = sorted(wanted - set(state_dict))
    if missing or unexpected:
        raise ValueError(
            f"state_dict does not match jaxvision {model_name!r} ({model_kwargs}): "
            f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''} ({len(unexpected)})"
        )
    flat_template = traverse_util.flatten_dict(template)
    converted = {}
    for path, key in names.items():
        array = np.asarray(state_dict[key], dtype=np.float32)
        array = _change_layout(family, path, array, to_jax=True)
        expected = flat_template[path].shape
        if array.shape != expected:
            raise ValueError(
                f"{key}: converted shape {array.shape} does not fit jaxvision {'/'.join(path)} {expected}"
            )
        converted[path] = array
    return traverse_util.unflatten_dict({**converted, **classifier})


def to_torchvision(model_name: str, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A torchvision `state_dict` (numpy arrays) from jaxvision variables; the inverse of
    `from_torchvision`. BatchNorm layers get `num_batches_tracked = 0` so that torch's strict
    `load_state_dict` accepts the result: `model.load_state_dict({k: torch.from_numpy(v) ...})`."""
    family = _family(model_name)
    flat = traverse_util.flatten_dict({k: variables[k] for k in ("params", "batch_stats") if k in variables})
    state_dict = {}
    for path, key in torchvision_names(model_name, variables).items():
        array = np.asarray(jax.device_get(flat[path]), dtype=np.float32)
        # A writable C-ordered copy: torch.from_numpy shares the memory and wants to own a writable buffer.
        state_dict[key] = np.array(_change_layout(family, path, array, to_jax=False), order="C")
        if key.endswith(".running_mean"):
            state_dict[key[: -len("running_mean")] + "num_batches_tracked"] = np.zeros((), np.int64)
    return state_dict


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A weights file as a `state_dict` of numpy arrays: `.safetensors` (read with `safetensors`, no
    torch) or `.pth`/`.pt`/`.bin` (torchvision's downloads, the Hugging Face hub's
    `pytorch_model.bin`; read with `torch.load(weights_only=True)`, which refuses anything but
    tensors, so no code from the file runs)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no weights file at {path!r}")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    if path.endswith((".pth", ".pt", ".bin")):
        try:
            import torch
        except ImportError as error:
            raise ImportError(f"reading {path!r} needs torch (CPU is enough); or convert it to .safetensors") from error
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
            raise ValueError(f"{path!r} is not a state_dict (a dict of tensors); got {type(loaded).__name__}")
        return {key: value.float().numpy() if value.is_floating_point() else value.numpy() for key, value in loaded.items()}
    raise ValueError(f"unknown weights format {path!r}: expected .safetensors, .pth, .pt or .bin")


def load_torchvision_weights(model_name: str, path: str | os.PathLike, **model_kwargs) -> dict[str, Any]:
    """`from_torchvision` on a weights file (`read_state_dict`: .safetensors, .pth, .pt or .bin)."""
    return from_torchvision(model_name, read_state_dict(path), **model_kwargs)


def checkpoint_classes(model_name: str, state_dict: Mapping[str, Any]) -> int | None:
    """The number of classes of a torchvision `state_dict`'s classifier (1000 for ImageNet weights),
    None if it has none."""
    return _checkpoint_classes(_family(model_name), state_dict)


def classifier_mask(model_name: str, params: Any) -> Any:
    """A pytree like `params` (a model's `params` collection) with True on the classifier's leaves:
    the layers with `num_classes` outputs (fc / fc8 / classifier / head, and GoogLeNet's auxiliary
    fc2), the part a linear probe trains and fine-tuning on new classes re-initialises."""
    family = _family(model_name)
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({path: _is_classifier(family, ("params", *path)) for path in flat})
