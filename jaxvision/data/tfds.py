"""Data sets by name, read through `tfds.data_source` (ArrayRecord) with no TensorFlow import.

Every data set, the embedded offline digits included, is read the same way:
`tfds.data_source(name, data_dir=..., download=False)`, a random-access source of example dicts
`{"image": uint8[H, W, C], "label": int}`. Nothing is downloaded unless the caller asks
(`download=True`, `jaxvision prepare NAME`, or `--config.dataset.download=True`): a missing data set
fails at once with the command that fetches it, instead of tfds's multi-minute retry loop offline.
"""

import dataclasses
import json
import os
from typing import Any, Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Static facts about a classification data set.

    Attributes:
      tfds_name: the tfds builder name (with an optional "/config").
      num_classes: number of classes; labels are in `[0, num_classes)`.
      image_shape: `(H, W, C)` of every image.
      train_split, test_split: tfds split names used for training and evaluation.
      builder_factory: for data sets jaxvision builds itself offline, a callable
        `data_dir -> tfds builder`; `None` for data sets tfds downloads.
      downloads: whether preparing it needs the network.
    """

    tfds_name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    train_split: str = "train"
    test_split: str = "test"
    builder_factory: Callable[[str | None], Any] | None = None
    downloads: bool = True


def _embedded_digits_builder(data_dir):
    from jaxvision.data.builders.embedded_digits import EmbeddedDigits

    return EmbeddedDigits(data_dir=data_dir)


DATASETS: dict[str, DatasetSpec] = {
    "embedded_digits": DatasetSpec(
        "embedded_digits", 10, (28, 28, 1), builder_factory=_embedded_digits_builder, downloads=False
    ),
    "mnist": DatasetSpec("mnist", 10, (28, 28, 1)),
    "fashion_mnist": DatasetSpec("fashion_mnist", 10, (28, 28, 1)),
    "cifar10": DatasetSpec("cifar10", 10, (32, 32, 3)),
    "cifar100": DatasetSpec("cifar100", 100, (32, 32, 3)),
}


class DatasetNotPreparedError(FileNotFoundError):
    """A data set is not on disk and downloading was not requested."""


def list_datasets() -> list[str]:
    """Names accepted by `get_dataset_spec`, sorted."""
    return sorted(DATASETS)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The `DatasetSpec` registered as `name`; ValueError listing valid names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(list_datasets())}")
    return DATASETS[name]


def open_builder(spec, data_dir: str | None):
    """The tfds builder of a data set spec (anything with `tfds_name` and `builder_factory`)."""
    if spec.builder_factory is not None:
        return spec.builder_factory(data_dir)
    import tensorflow_datasets as tfds

    return tfds.builder(spec.tfds_name, data_dir=data_dir)


def prepare_builder(name: str, spec, *, data_dir: str | None, download: bool, note: str = ""):
    """Make sure the data set `name` (described by `spec`) is prepared as ArrayRecord files under
    `data_dir`; return its builder. Shared by the classification and segmentation registries.

    Raises:
      DatasetNotPreparedError: within a second when the data is missing, `spec.downloads` and
        `download` is False, naming the data set and the exact command that fetches it (`note`
        is appended to the message).
    """
    builder = open_builder(spec, data_dir)
    if builder.is_prepared():
        return builder
    if spec.downloads and not download:
        where = f" --data_dir={data_dir}" if data_dir else ""
        raise DatasetNotPreparedError(
            f"data set {name!r} is not prepared in {builder.data_dir!r} and downloading is off. "
            f"Fetch it once with network access:\n    jaxvision prepare {name}{where}\n"
            f"or train with --config.dataset.download=True{note}."
        )
    builder.download_and_prepare(file_format="array_record")
    return builder


def prepare_dataset(name: str, *, data_dir: str | None = None, download: bool = False):
    """Make sure `name` is prepared as ArrayRecord files under `data_dir`; return its builder.

    Data sets built from installed packages (the embedded digits) are prepared on first use with
    no network. Others are downloaded only when `download=True`.

    Raises:
      DatasetNotPreparedError: within a second when the data is missing and `download` is False,
        naming the data set and the exact command that fetches it.
    """
    return prepare_builder(name, get_dataset_spec(name), data_dir=data_dir, download=download)


def load_data_source(name: str, split: str, *, data_dir: str | None = None, download: bool = False):
    """A random-access source of `{"image": uint8[H, W, C], "label": int}` for one split."""
    builder = prepare_dataset(name, data_dir=data_dir, download=download)
    return builder.as_data_source(split=split)


def normalization_stats(name: str, *, data_dir: str | None = None, download: bool = False):
    """Per-channel `(mean float32[C], std float32[C])` of the training split, pixels scaled to [0, 1].

    Computed once over the whole training split in float64 and cached as JSON next to the
    prepared data (`<data_path>/jaxvision_normalization.json`).
    """
    builder = prepare_dataset(name, data_dir=data_dir, download=download)
    cache_path = os.path.join(os.fspath(builder.data_path), "jaxvision_normalization.json")
    if os.path.exists(cache_path):
        with open(cache_path) as f:
            cached = json.load(f)
        return np.asarray(cached["mean"], np.float32), np.asarray(cached["std"], np.float32)
    source = load_data_source(name, get_dataset_spec(name).train_split, data_dir=data_dir)
    num_channels = get_dataset_spec(name).image_shape[-1]
    total = np.zeros(num_channels, np.float64)
    total_squares = np.zeros(num_channels, np.float64)
    count = 0
    chunk = 1024
    for start in range(0, len(source), chunk):
        indices = range(start, min(start + chunk, len(source)))
        images = np.stack([source[i]["image"] for i in indices]).astype(np.float64) / 255.0
        pixels = images.reshape((-1, num_channels))  # [n*H*W, C]
        total += pixels.sum(axis=0)
        total_squares += np.square(pixels).sum(axis=0)
        count += pixels.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_squares / count - np.square(mean), 0.0))
    with open(cache_path + ".tmp", "w") as f:
        json.dump({"mean": mean.tolist(), "std": std.tolist(), "num_pixels": count}, f)
    os.replace(cache_path + ".tmp", cache_path)  # Atomic: a killed run never leaves half a file.
    return mean.astype(np.float32), std.astype(np.float32)
