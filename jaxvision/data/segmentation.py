"""Semantic-segmentation data sets by name, and grain pipelines of dense batches.

Every data set is read through `tfds.data_source` (ArrayRecord, no TensorFlow), as in
`jaxvision.data.tfds`; a per-data-set `decode` turns a record into fixed-shape arrays:

    image         uint8[H, W, C]
    segmentation  int32[H, W]      class per pixel, `ignore_label` where unlabelled

Batches are `{"image": float32[B, H, W, C] normalized, "segmentation": int32[B, H, W]}`, plus
for `digit_scenes` the instance fields `"instance_ids" int32[B, H, W]`, `"boxes" float32[B, N, 4]`,
`"labels" int32[B, N]`, `"masks" uint8[B, N, H, W]`, `"valid" bool[B, N]`; evaluation batches add
`"mask": bool[B]` (False on the padding of the last batch).

| name | classes | ignore label | source |
|---|---|---|---|
| digit_scenes | 11: background + digits 0-9 | 255 (none occur) | offline, built from the embedded real digits |
| digit_scenes_128 | same, 128x128 canvases | 255 | offline |
| digit_scenes_16k | same 64x64 test split; 16,000 train scenes from the same train digits | 255 | offline |
| oxford_iiit_pet | 2: background, pet (trimap border ignored) | 255 | tfds download |
| cityscapes | 19 train ids (Cordts et al. 2016) | 255 | tfds, manual download |

VOC 2012 segmentation is not offered: tfds's `voc` builder has boxes only (no segmentation masks).
"""

import dataclasses
from typing import Any, Callable

import grain
import numpy as np

from jaxvision.data import pipeline
from jaxvision.data import tfds as datasets

IGNORE_LABEL = 255
INSTANCE_FIELDS = ("instance_ids", "boxes", "labels", "masks", "valid")
# ImageNet statistics for photographs (pretrained-style normalization; fixed, not measured here).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class SegmentationSpec:
    """Static facts about a segmentation data set.

    Attributes:
      tfds_name: tfds builder name (with "/config").
      num_classes: classes of the semantic map, `[0, num_classes)`; `ignore_label` marks void pixels.
      image_shape: `(H, W, C)` after `decode` (records of other sizes are resized to it).
      mean, std: per-channel normalization of pixels scaled to [0, 1].
      class_names: one name per class.
      builder_factory: `data_dir -> builder` for offline data sets; None for tfds ones.
      downloads: whether preparing needs the network (or a manual download).
      has_instances: records carry the instance fields.
    """

    tfds_name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    train_split: str = "train"
    test_split: str = "test"
    ignore_label: int = IGNORE_LABEL
    builder_factory: Callable[[str | None], Any] | None = None
    downloads: bool = True
    has_instances: bool = False


def _resize(array: np.ndarray, shape: tuple[int, int], nearest: bool) -> np.ndarray:
    from PIL import Image

    if array.shape[:2] == tuple(shape):
        return array
    squeeze = array.ndim == 3 and array.shape[2] == 1
    image = Image.fromarray(array[..., 0] if squeeze else array)
    resized = np.asarray(image.resize(shape[::-1], Image.NEAREST if nearest else Image.BILINEAR))
    return resized[..., None] if squeeze else resized


def decode_digit_scene(record: dict, spec: "SegmentationSpec") -> dict[str, np.ndarray]:
    del spec
    return {"image": record["image"], "segmentation": record["segmentation"].astype(np.int32),
            **{name: record[name] for name in INSTANCE_FIELDS}}


def decode_pet(record: dict, spec: "SegmentationSpec") -> dict[str, np.ndarray]:
    """Trimap 1 = pet, 2 = background, 3 = border (not classified) -> 1, 0, ignore."""
    size = spec.image_shape[:2]
    trimap = _resize(np.asarray(record["segmentation_mask"]), size, nearest=True)[..., 0]
    segmentation = np.select([trimap == 1, trimap == 2], [1, 0], spec.ignore_label).astype(np.int32)
    return {"image": _resize(np.asarray(record["image"]), size, nearest=False), "segmentation": segmentation}


# Cityscapes label id (0..33) -> train id (0..18), 255 for classes not evaluated (cityscapesScripts).
_CITYSCAPES_TRAIN_IDS = np.full(256, IGNORE_LABEL, np.int32)
for _label_id, _train_id in zip((7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33), range(19)):
    _CITYSCAPES_TRAIN_IDS[_label_id] = _train_id


def decode_cityscapes(record: dict, spec: "SegmentationSpec") -> dict[str, np.ndarray]:
    size = spec.image_shape[:2]
    label_ids = _resize(np.asarray(record["segmentation_label"]), size, nearest=True)[..., 0]
    return {
        "image": _resize(np.asarray(record["image_left"]), size, nearest=False),
        "segmentation": _CITYSCAPES_TRAIN_IDS[label_ids],
    }


def _digit_scenes_builder(config_name: str):
    def factory(data_dir):
        from jaxvision.data.builders.digit_scenes import DigitScenes

        return DigitScenes(config=config_name, data_dir=data_dir)

    return factory


_DIGIT_NAMES = ("background",) + tuple(f"digit_{d}" for d in range(10))
# Measured over the canvas64 train split (pixels in [0, 1]); canvas128 scenes have the same mix.
_DIGIT_SCENES_MEAN, _DIGIT_SCENES_STD = (0.0512,), (0.1892,)

SEGMENTATION_DATASETS: dict[str, SegmentationSpec] = {
    "digit_scenes": SegmentationSpec(
        "digit_scenes/canvas64", 11, (64, 64, 1), _DIGIT_SCENES_MEAN, _DIGIT_SCENES_STD, _DIGIT_NAMES,
        builder_factory=_digit_scenes_builder("canvas64"), downloads=False, has_instances=True,
    ),
    "digit_scenes_128": SegmentationSpec(
        "digit_scenes/canvas128", 11, (128, 128, 1), _DIGIT_SCENES_MEAN, _DIGIT_SCENES_STD, _DIGIT_NAMES,
        builder_factory=_digit_scenes_builder("canvas128"), downloads=False, has_instances=True,
    ),
    "digit_scenes_16k": SegmentationSpec(
        "digit_scenes/canvas64_16k", 11, (64, 64, 1), _DIGIT_SCENES_MEAN, _DIGIT_SCENES_STD, _DIGIT_NAMES,
        builder_factory=_digit_scenes_builder("canvas64_16k"), downloads=False, has_instances=True,
    ),
    "oxford_iiit_pet": SegmentationSpec(
        "oxford_iiit_pet", 2, (128, 128, 3), _IMAGENET_MEAN, _IMAGENET_STD, ("background", "pet"),
    ),
    "cityscapes": SegmentationSpec(
        "cityscapes/semantic_segmentation", 19, (256, 512, 3), _IMAGENET_MEAN, _IMAGENET_STD,
        ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
         "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
         "motorcycle", "bicycle"),
        test_split="validation",
    ),
}

_DECODERS = {
    "digit_scenes": decode_digit_scene,
    "digit_scenes_128": decode_digit_scene,
    "digit_scenes_16k": decode_digit_scene,
    "oxford_iiit_pet": decode_pet,
    "cityscapes": decode_cityscapes,
}


def list_segmentation_datasets() -> list[str]:
    return sorted(SEGMENTATION_DATASETS)


def get_segmentation_spec(name: str) -> SegmentationSpec:
    """The spec registered as `name`; ValueError listing the valid names otherwise."""
    if name not in SEGMENTATION_DATASETS:
        raise ValueError(
            f"unknown segmentation data set {name!r}; valid names: {', '.join(list_segmentation_datasets())}"
        )
    return SEGMENTATION_DATASETS[name]


def prepare_segmentation_dataset(name: str, *, data_dir: str | None = None, download: bool = False):
    """Make sure `name` is prepared under `data_dir` (offline ones are built on first use)."""
    return datasets.prepare_builder(
        name, get_segmentation_spec(name), data_dir=data_dir, download=download,
        note=" (cityscapes also needs its manual download in <data_dir>/downloads/manual first)",
    )


def load_segmentation_source(name: str, split: str, *, data_dir: str | None = None, download: bool = False):
    """A random-access source of decoded records (see module doc) for one split."""
    builder = prepare_segmentation_dataset(name, data_dir=data_dir, download=download)
    return DecodedSource(builder.as_data_source(split=split), name)


@dataclasses.dataclass(frozen=True)
class DecodedSource:
    """A tfds data source whose records go through the data set's `decode` (picklable)."""

    source: Any
    name: str

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return _DECODERS[self.name](self.source[index], get_segmentation_spec(self.name))

    def __getitems__(self, indices) -> list[dict[str, np.ndarray]]:
        spec = get_segmentation_spec(self.name)
        return [_DECODERS[self.name](record, spec) for record in self.source.__getitems__(list(indices))]


@dataclasses.dataclass(frozen=True)
class ReadDenseBatch:
    """Reads batch `k` of dense examples: `batch_size` consecutive positions of `order`, normalized.

    Mirrors `pipeline.ReadNormalizedBatch` (same positions, padding and `mask`) for records with a
    per-pixel map; every array field but the image is stacked unchanged.
    """

    source: DecodedSource
    order: grain.MapDataset
    batch_size: int
    global_batch_size: int
    offset: int
    mean: np.ndarray
    std: np.ndarray
    num_valid_elements: int | None = None

    def __call__(self, batch_index: int) -> dict[str, np.ndarray]:
        first = batch_index * self.global_batch_size + self.offset
        limit = len(self.order) if self.num_valid_elements is None else self.num_valid_elements
        positions = np.arange(first, first + self.batch_size)
        record_indices = [int(self.order[int(i)]) for i in np.minimum(positions, limit - 1)]
        records = self.source.__getitems__(record_indices)
        batch = {name: np.stack([record[name] for record in records]) for name in records[0]}
        batch["image"] = ((batch["image"].astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32)
        batch["segmentation"] = batch["segmentation"].astype(np.int32)
        if self.num_valid_elements is not None:
            batch["mask"] = positions < limit
        return batch


def make_train_iterator(source, *, global_batch_size: int, num_steps: int, seed: int, mean, std,
                        process_index: int = 0, process_count: int = 1, worker_count: int = 0):
    """`num_steps` process-local dense training batches, reshuffled each epoch, resumable
    (`get_state`/`set_state`); the same order as `pipeline.make_train_iterator`."""
    local_batch_size = pipeline._check_batch_split(global_batch_size, process_count)
    num_epochs = -(-num_steps * global_batch_size // len(source))  # ceil
    order = grain.MapDataset.range(len(source)).shuffle(seed=seed).repeat(max(num_epochs, 1))
    read = ReadDenseBatch(source, order, local_batch_size, global_batch_size, process_index * local_batch_size,
                          np.asarray(mean, np.float32), np.asarray(std, np.float32))
    return iter(pipeline._maybe_prefetch(grain.MapDataset.range(num_steps).map(read), worker_count))


def make_eval_iterator(source, *, global_batch_size: int, mean, std, process_index: int = 0,
                       process_count: int = 1, worker_count: int = 0, max_examples: int = 0):
    """One ordered pass over `source` (its first `max_examples` if > 0) in padded batches with a `mask`."""
    local_batch_size = pipeline._check_batch_split(global_batch_size, process_count)
    num_examples = min(len(source), max_examples) if max_examples > 0 else len(source)
    num_batches = -(-num_examples // global_batch_size)
    read = ReadDenseBatch(source, grain.MapDataset.range(num_examples), local_batch_size, global_batch_size,
                          process_index * local_batch_size, np.asarray(mean, np.float32),
                          np.asarray(std, np.float32), num_valid_elements=num_examples)
    return iter(pipeline._maybe_prefetch(grain.MapDataset.range(num_batches).map(read), worker_count))
