"""Class maps for your own image files from a trained segmentation workdir.

    segment_files("workdirs/digits_unet", ["street.jpg"], out_dir="masks")  # `jaxvision predict`

Each file is read as the classifier's `prediction.read_images` reads it (Pillow, the data set's
channels, antialiased bilinear resize to the data set's image size, `(pixels - mean) / std` with the
data set's statistics), so a test image saved as PNG gets exactly the map `jaxvision eval` scores.
The logits are then resized bilinearly back to the file's own size and arg-maxed there (as
torchvision's segmentation references do; `upsample_class_map`), so masks line up with the
original pixels.

Per file, into `out_dir`:
  `<stem>_mask.png`     palette PNG whose pixel values are the class indices (the Pascal VOC file
                        format: `np.asarray(Image.open(path))` gives the map back) coloured with the
                        trainer's VOC palette;
  `<stem>_overlay.png`  the image with each non-background class blended in its colour.
"""

import dataclasses
import os
from typing import Sequence

import jax
import numpy as np

from jaxvision.data import segmentation as seg_data
from jaxvision.inference import evaluation, prediction
from jaxvision.training import loop, sharding


@dataclasses.dataclass(frozen=True)
class SegmentationPrediction:
    """One file's predicted map, where it was written, and the share of its pixels per class
    (`{class name: fraction}` for the classes present, largest first)."""

    path: str
    mask_path: str
    overlay_path: str
    shape: tuple[int, int]
    class_fractions: dict[str, float]


def upsample_class_map(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`int32[height, width]`: the arg-max over classes of `logits` (`float32[h, w, K]`) resized
    to `size = (height, width)` with Pillow's bilinear filter: half-pixel centres, and an
    antialiasing triangle filter when shrinking (torch's `F.interpolate(..., mode="bilinear",
    align_corners=False, antialias=True)`, which equals the plain bilinear when enlarging). One class
    at a time with a running maximum, so a large photo needs a few arrays of its size, not K."""
    from PIL import Image

    height, width = size
    best = np.full((height, width), -np.inf, np.float32)
    classes = np.zeros((height, width), np.int32)
    for index in range(logits.shape[-1]):
        plane = Image.fromarray(np.ascontiguousarray(logits[..., index], np.float32), "F")
        if plane.size != (width, height):
            plane = plane.resize((width, height), Image.Resampling.BILINEAR)
        values = np.asarray(plane)
        better = values > best  # strict: ties keep the lower class, as argmax does
        best = np.where(better, values, best)
        classes = np.where(better, index, classes)
    return classes


def output_paths(paths: Sequence[str], out_dir: str) -> list[tuple[str, str]]:
    """`(mask_path, overlay_path)` per input file. Raises ValueError when two inputs share a file
    stem (their outputs would overwrite each other)."""
    seen = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in seen:
            raise ValueError(f"{seen[stem]!r} and {path!r} would both be written as {stem}_mask.png; rename one")
        seen[stem] = path
    return [(os.path.join(out_dir, f"{stem}_mask.png"), os.path.join(out_dir, f"{stem}_overlay.png")) for stem in seen]


def segment_files(workdir: str, paths: Sequence[str], *, out_dir: str | None = None, invert: bool = False,
                  use_ema: bool = False, step: int | None = None, use_best: bool = False) -> list[SegmentationPrediction]:
    """Predict a class map for each image file with a trained segmentation workdir's checkpoint
    (latest, best, or `step`; its EMA parameters with `use_ema`) and write its mask and overlay PNGs
    into `out_dir` (default `workdir/predictions`). `invert` flips the pixels first (`1 - x`); a
    file whose brightness is far from the data set's mean is logged as probably inverted.

    Raises:
      ValueError: for a classification workdir, no paths, two paths with the same stem, or an
        unreadable image.
      FileNotFoundError: for a missing workdir, checkpoint or image file.
    """
    from PIL import Image

    from jaxvision.trainers import segmentation

    config = prediction.workdir_config_for(workdir, "segmentation", paths)
    out_dir = out_dir or os.path.join(workdir, "predictions")
    targets = output_paths(paths, out_dir)
    # The files first (a typo fails at once), then the checkpoint.
    spec = seg_data.get_segmentation_spec(config.dataset.name)
    if spec.num_classes > 255:
        raise ValueError(f"{spec.num_classes} classes do not fit a palette PNG's 8-bit class indices")
    images = prediction.read_images(paths, spec.image_shape, invert=invert, expected_brightness=float(np.mean(spec.mean)))
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    experiment, state, _ = loop.restore_workdir(workdir, segmentation.build_experiment, step=step, use_best=use_best)
    apply = jax.jit(state.apply_fn, static_argnames="train")
    variables = evaluation.state_variables(state, use_ema)
    on_devices = jax.device_put(((images - mean) / std).astype(np.float32),
                                sharding.replicated_sharding(experiment.mesh))
    logits = np.asarray(jax.device_get(apply(variables, on_devices, train=False)[0]), np.float32)  # [N, H, W, K]
    palette = segmentation.color_palette(spec.num_classes, spec.ignore_label)
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for path, file_logits, (mask_path, overlay_path) in zip(paths, logits, targets):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))  # the overlay shows the file as it is, even with `invert`
        class_map = upsample_class_map(file_logits, pixels.shape[:2])
        mask = Image.fromarray(class_map.astype(np.uint8), "P")
        mask.putpalette(palette.reshape(-1).tolist())
        mask.save(mask_path)
        Image.fromarray(segmentation.overlay_classes(pixels, class_map, palette)).save(overlay_path)
        counts = np.bincount(class_map.ravel(), minlength=spec.num_classes)
        order = np.argsort(-counts, kind="stable")
        fractions = {spec.class_names[i]: float(counts[i] / class_map.size) for i in order if counts[i]}
        results.append(SegmentationPrediction(path, mask_path, overlay_path, tuple(pixels.shape[:2]), fractions))
    return results
