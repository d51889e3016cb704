"""Class predictions for your own image files from a trained classification workdir.

    predict_files("workdirs/digits_lenet", ["my_digit.png"], invert=True, top_k=3)  # `jaxvision predict`

Each file is read with Pillow, converted to the data set's channels (gray "L" or "RGB"), resized to
the data set's image size (Pillow's antialiased bilinear filter, as torchvision's `Resize`), scaled
to [0, 1] and normalised with the run's training statistics: exactly the pipeline's
`(pixels / 255 - mean) / std`, so a data set image saved as PNG gets the probabilities
`jaxvision eval` computes for it. A model trained with `config.input_size` resizes on the device
as in training. MNIST-style digits are light strokes on black: a photo of ink on paper needs
`invert=True` (a logged warning says so when an image's brightness is far from the training data's),
and `mnist_style=True` crops, scales and centres the digit as MNIST's were (`digit_photos`).
"""

import dataclasses
import logging
import os
from typing import Sequence

import jax
import numpy as np

from jaxvision.data import tfds as datasets
from jaxvision.inference import digit_photos, ensemble, evaluation
from jaxvision.training import loop, sharding

logger = logging.getLogger(__name__)

# A mean pixel this far (in [0, 1] units) from the training data's suggests inverted polarity.
BRIGHTNESS_WARNING_GAP = 0.35


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The `top_k` classes of one file, most probable first."""

    path: str
    labels: tuple[int, ...]
    names: tuple[str, ...]
    probabilities: tuple[float, ...]


def read_images(paths: Sequence[str], image_shape: tuple[int, int, int], *, invert: bool = False,
                mnist_style: bool = False, expected_brightness: float | None = None) -> np.ndarray:
    """Image files as `float32[N, H, W, C]` in [0, 1] at `image_shape` = (H, W, C), C 1 or 3.

    `invert` flips the pixels (`1 - x`); `mnist_style` (gray square images only) then frames each
    digit as MNIST does instead of resizing the whole file (`digit_photos.mnist_style`). With
    `expected_brightness` (the training images' mean pixel), a file whose mean pixel after `invert`
    is further than `BRIGHTNESS_WARNING_GAP` from it is logged as probably inverted.

    Raises:
      FileNotFoundError: naming a missing file.
      ValueError: naming a file Pillow cannot read (or with no digit for `mnist_style`), or for an
        unsupported channel count.
    """
    from PIL import Image, UnidentifiedImageError

    height, width, channels = image_shape
    if channels not in (1, 3):
        raise ValueError(f"image files can be read as 1 (gray) or 3 (RGB) channels, the model takes {channels}")
    if mnist_style and (channels != 1 or height != width):
        raise ValueError(f"mnist_style frames gray square digits; this model takes {height}x{width}x{channels} images")
    images = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file {path!r} does not exist")
        try:
            with Image.open(path) as image:
                image = image.convert("L" if channels == 1 else "RGB")
                if image.size != (width, height) and not mnist_style:
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, np.float32) / 255.0
        except UnidentifiedImageError:
            raise ValueError(f"{path!r} is not an image file Pillow can read") from None
        if invert:
            pixels = 1.0 - pixels
        if expected_brightness is not None:
            _warn_on_polarity(path, float(pixels.mean()), expected_brightness, invert)
        if mnist_style:
            try:
                pixels = digit_photos.mnist_style(pixels, size=height)
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
        images.append(pixels.reshape(height, width, channels))
    return np.stack(images)


def workdir_config_for(workdir: str, task: str, paths: Sequence[str]):
    """The config of `workdir` (its `config.json`), checked to be a `task` run with files to predict.

    Raises:
      ValueError: if `paths` is empty or the workdir trained another task.
      FileNotFoundError: if the workdir has no config.json.
    """
    if not paths:
        raise ValueError("no image files given")
    config = loop.read_workdir_config(workdir)
    found = config.get("task", "classification")  # .get: workdirs written before the key existed
    if found != task:
        raise ValueError(f"{workdir!r} is a {found} workdir; predicting from it here needs a {task} workdir")
    return config


def class_names(config) -> list[str]:
    """The data set's class names from its tfds metadata (the digits' are "0"..."9")."""
    spec = datasets.get_dataset_spec(config.dataset.name)
    builder = datasets.prepare_dataset(config.dataset.name, data_dir=config.dataset.data_dir or None)
    names = list(builder.info.features["label"].names)
    return names if len(names) == spec.num_classes else [str(i) for i in range(spec.num_classes)]


def predict_files(workdir: str, paths: Sequence[str], *, top_k: int = 5, invert: bool = False,
                  mnist_style: bool = False, tta_name: str = "none", use_ema: bool = False, step: int | None = None,
                  use_best: bool = False) -> list[Prediction]:
    """The `top_k` classes of each image file under a trained classification workdir's checkpoint
    (latest, best, or `step`; its EMA parameters with `use_ema`), averaged over `tta_name`'s views.
    `invert` and `mnist_style` as in `read_images` (for photos of handwritten digits: both).

    Raises:
      ValueError: for a segmentation workdir, no paths, `top_k < 1`, or an unreadable image.
      FileNotFoundError: for a missing workdir, checkpoint or image file.
    """
    from jaxvision.trainers import classification

    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    config = workdir_config_for(workdir, "classification", paths)
    # The files first (a typo fails at once), then the checkpoint; the run's statistics (cached JSON).
    mean, std = datasets.normalization_stats(config.dataset.name, data_dir=config.dataset.data_dir or None)
    images = read_images(paths, datasets.get_dataset_spec(config.dataset.name).image_shape, invert=invert,
                         mnist_style=mnist_style, expected_brightness=float(np.mean(mean)))
    experiment, state, _ = classification.restore_workdir(workdir, step=step, use_best=use_best)
    normalized = ((images - mean) / std).astype(np.float32)  # the statistics the run trained with
    predictor = evaluation.make_predictor(state.apply_fn, tta_name,
                                          crop_padding=experiment.config.augment.random_crop_padding or 4)
    stacked = ensemble.stack_params([evaluation.state_variables(state, use_ema)])
    # Replicated: any number of files on any number of devices (the parameters are replicated too).
    on_devices = jax.device_put(normalized, sharding.replicated_sharding(experiment.mesh))
    probabilities = np.asarray(jax.device_get(predictor(stacked, on_devices)))
    names = class_names(experiment.config)
    predictions = []
    for path, row in zip(paths, probabilities):
        order = np.argsort(-row, kind="stable")[: min(top_k, row.size)]
        predictions.append(Prediction(path, tuple(int(i) for i in order), tuple(names[i] for i in order),
                                      tuple(float(row[i]) for i in order)))
    return predictions


def _warn_on_polarity(path: str, brightness: float, expected_brightness: float, invert: bool) -> None:
    if abs(brightness - expected_brightness) > BRIGHTNESS_WARNING_GAP:
        hint = "drop --invert" if invert else "if it is dark ink on a light background, try --invert"
        logger.warning("%s: mean brightness %.2f is far from the training images' %.2f (%s)",
                       path, brightness, expected_brightness, hint)
