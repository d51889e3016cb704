"""Turn a classifier's fully connected head into convolutions (OverFeat, Sermanet et al. 2014;
FCN, Long et al. 2015), so that a larger image yields a dense map of class scores.

fc6, which reads the flattened `window x window x C` map (6x6x256 for AlexNet, 7x7x512 for VGG),
becomes a `window x window` VALID convolution with the same numbers: a Dense kernel
`[window*window*C, F]` whose rows are in NHWC flatten order (h, w, c) reshapes exactly into a conv
kernel `[window, window, C, F]`. fc7 and fc8 become 1x1 convolutions (`[F_in, F] -> [1, 1, F_in, F]`).
Biases are unchanged.

The adaptive average pool is dropped. At the training size (224x224 for AlexNet and VGG) the map
before it already has the pooled size, so it is the identity and the convolutional net gives the
same logits (as a 1x1 map). On a larger image the pool would squash the bigger map to 6x6/7x7;
dropping it lets fc6 slide over the map instead, so position (i, j) of the score map is the
original head applied to the feature window `[i:i+window, j:j+window]`: one class-score vector
per window of stride 32, the OverFeat/FCN reading. (These windows correspond to input crops only
approximately, because the convolutions pad at the image border.)

    conv_model, conv_variables = convolutionize(model, variables)
    score_map, _ = conv_model.apply(conv_variables, big_images, train=False)  # [N, h, w, classes]
"""

from typing import Any

import flax.linen as nn

from jaxvision.models import alexnet, vgg

# For each supported classifier: its head layers and the input window each one covers.
_HEADS = {
    alexnet.AlexNet: (("fc6", 6), ("fc7", 1), ("fc8", 1)),
    vgg.VGG: (("fc6", 7), ("fc7", 1), ("fc8", 1)),
}


def convolutionize(model: nn.Module, variables: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """Return `(conv_model, conv_variables)`: `model` with its FC head as convolutions.

    Args:
      model: an `AlexNet` or `VGG` (any registry variant) with `fully_convolutional=False`.
      variables: its variables (`params`, and `batch_stats` for the BN variants).

    Raises:
      TypeError: for a model type without a known head.
      ValueError: if `model` is already fully convolutional.
    """
    head = _HEADS.get(type(model))
    if head is None:
        names = ", ".join(cls.__name__ for cls in _HEADS)
        raise TypeError(f"convolutionize supports {names}; got {type(model).__name__}")
    if model.fully_convolutional:
        raise ValueError("model is already fully convolutional")
    params = dict(variables["params"])
    for name, window in head:
        kernel = params[name]["kernel"]  # [window*window*C, F]
        in_features, out_features = kernel.shape
        channels = in_features // (window * window)
        params[name] = {
            "kernel": kernel.reshape((window, window, channels, out_features)),
            "bias": params[name]["bias"],
        }
    conv_variables = {**variables, "params": params}
    return model.clone(fully_convolutional=True), conv_variables
