"""Starting a training run from published weights: fine-tuning and the linear probe.

Two config keys (`training/config.py`):

  - `init_from`: a weights file (`.safetensors`, `.pth`, `.pt` or `.bin`) for `config.model`: a
    torchvision `state_dict` (e.g. torchvision's `resnet18-f37072fd.pth`, loaded by
    `jaxvision.models.torchvision_weights`) or a timm ViT's (e.g. the hub's `model.safetensors` of
    `timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k` for `vit_ti_16`, `timm_weights`), loaded into
    the initial state of a fresh run (a resumed run restores its checkpoint instead). When
    the data set has other classes than the checkpoint (1000 for ImageNet weights), the classifier
    keeps its fresh initialisation from `config.seed`, as timm's `pretrained=True, num_classes=N`.
    A first convolution trained on RGB takes grayscale data by summing its kernel over the three
    input channels (the same outputs as the RGB kernel on the gray image copied to R, G and B);
    other channel counts repeat the RGB kernel and rescale it by 3 / channels (timm's
    `adapt_input_conv`). A ViT at another `model_kwargs.image_size` than the checkpoint's gets
    its position embedding resampled to its patch grid (`vit.resample_position_embedding`).
  - `trainable`: "all" (fine-tuning: every parameter learns) or "classifier" (the linear probe: the
    backbone is frozen, parameters and BatchNorm statistics alike, and runs in inference mode, so
    dropout is off; only the classifier layer learns, `optimizers.make_optimizer` zeroes the rest).

Inputs are normalised with the data set's own statistics, as in every jaxvision run; torchvision's
ImageNet weights were trained with ImageNet's (`torchvision_weights` module docstring), and
fine-tuning adapts the first layers to the shift.
"""

import functools
import logging

import jax
import numpy as np
from flax import traverse_util

from jaxvision.models import timm_weights, torchvision_weights, vit
from jaxvision.training import sharding
from jaxvision.training.state import train_state_from_variables

logger = logging.getLogger(__name__)

TRAINABLE = ("all", "classifier")


def check_config(config) -> None:
    """ValueError for an unknown `config.trainable`, or weights/probe asked of a model whose layers
    and classifier jaxvision cannot name (one with no torchvision counterpart)."""
    trainable = config.get("trainable", "all")
    if trainable not in TRAINABLE:
        raise ValueError(f"unknown config.trainable {trainable!r}; valid: {', '.join(TRAINABLE)}")
    needs_counterpart = config.get("init_from") or trainable == "classifier"
    if needs_counterpart and config.model not in torchvision_weights.CONVERTIBLE_MODELS:
        what = "config.init_from" if config.get("init_from") else "config.trainable='classifier'"
        raise ValueError(
            f"{what} needs a model with torchvision or timm weights; {config.model!r} has none. Valid models: "
            f"{', '.join(torchvision_weights.CONVERTIBLE_MODELS)}"
        )


def adapt_input_channels(kernel: np.ndarray, channels: int) -> np.ndarray:
    """A first-layer conv kernel `[kh, kw, 3, out]` trained on RGB, for `channels` input channels.

    1 channel: the sum over R, G, B (exact for a gray image fed as three equal channels). Otherwise
    the RGB kernel repeated along the input axis, cut to `channels`, times 3 / channels, which keeps
    the output scale for inputs of similar statistics (timm's `adapt_input_conv`).
    """
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise ValueError(f"expected an RGB conv kernel [kh, kw, 3, out], got shape {kernel.shape}")
    if channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    repeats = -(-channels // 3)
    return np.tile(kernel, (1, 1, repeats, 1))[:, :, :channels] * (3.0 / channels)


def _fitted(path: tuple[str, ...], loaded: np.ndarray, target_shape: tuple[int, ...]) -> np.ndarray:
    """`loaded` reshaped to the run's leaf: equal shapes pass, an RGB first conv adapts its input
    channels, a ViT's position embedding resamples to the run's patch grid, anything else is an
    error naming the layer."""
    if loaded.shape == tuple(target_shape):
        return loaded
    if path[-1] == "pos_embedding" and loaded.shape[::2] == tuple(target_shape)[::2]:
        logger.info("init_from: pos_embedding resampled from %d to %d tokens", loaded.shape[1], target_shape[1])
        return np.asarray(vit.resample_position_embedding(loaded, target_shape[1]))
    rgb_conv = loaded.ndim == 4 and loaded.shape[2] == 3 and len(target_shape) == 4
    if rgb_conv and loaded.shape[:2] + loaded.shape[3:] == tuple(target_shape[:2]) + tuple(target_shape[3:]):
        logger.info("init_from: %s takes %d input channels from RGB weights", "/".join(path), target_shape[2])
        return adapt_input_channels(loaded, target_shape[2])
    raise ValueError(
        f"init_from: the weights' {'/'.join(path)} has shape {loaded.shape}, the run's model {tuple(target_shape)} "
        "(a different architecture)"
    )


def merge_weights(model_name: str, state_dict, params, batch_stats, *, num_classes: int) -> tuple[dict, dict]:
    """`(params, batch_stats)` of a run with `num_classes` classes (numpy or device arrays, the
    model's own initialisation) with every layer replaced by the `state_dict`'s (torchvision's
    layout, or a timm ViT's: `timm_weights`), except a classifier whose class count differs from
    the checkpoint's, or that the checkpoint lacks, which keeps its initialisation. float32 numpy
    arrays."""
    if timm_weights.is_timm_vit(state_dict):
        state_dict = timm_weights.timm_to_torchvision(state_dict)
    new_classifier = torchvision_weights.checkpoint_classes(model_name, state_dict) != num_classes
    loaded = torchvision_weights.from_torchvision(
        model_name, state_dict, num_classes=num_classes,  # a ViT at the checkpoint's image_size
        new_classifier_key=jax.random.key(0) if new_classifier else None,  # replaced by the run's below
    )  # fmt: skip
    is_classifier = traverse_util.flatten_dict(torchvision_weights.classifier_mask(model_name, params))
    merged = {}
    for collection, current in (("params", params), ("batch_stats", batch_stats)):
        flat_loaded = traverse_util.flatten_dict(loaded.get(collection, {}))
        flat = {}
        for path, leaf in traverse_util.flatten_dict(current).items():
            keep_own = collection == "params" and new_classifier and is_classifier[path]
            flat[path] = np.asarray(leaf, np.float32) if keep_own else _fitted(path, flat_loaded[path], np.shape(leaf))
        merged[collection] = traverse_util.unflatten_dict(flat) if flat else {}
    return merged["params"], merged["batch_stats"]


def state_from_weights(experiment):
    """The initial state of `experiment` with its parameters and BatchNorm statistics taken from
    `config.init_from` (`merge_weights`), the optimizer state and EMA copy rebuilt from them,
    replicated over the experiment's mesh like `experiment.state`."""
    config, state = experiment.config, experiment.state
    params, batch_stats = merge_weights(
        config.model, torchvision_weights.read_state_dict(config.init_from), jax.device_get(state.params),
        jax.device_get(state.batch_stats), num_classes=experiment.spec.num_classes,
    )
    build = functools.partial(train_state_from_variables, model=experiment.model, tx=state.tx,
                              use_ema=state.ema_params is not None)
    new_state = jax.jit(build, out_shardings=sharding.replicated_sharding(experiment.mesh))(params, batch_stats)
    logger.info("initialised %s from %s", config.model, config.init_from)
    return new_state
