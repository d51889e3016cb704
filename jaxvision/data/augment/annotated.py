"""Geometric transforms of one annotated example: image, boxes, masks and keypoints move together.

An example is a dict (any other keys, e.g. "label", pass through untouched):
    "image":     float[H, W, C]
    "boxes":     float32[N, 4] xyxy absolute pixels, with "valid": bool[N]      (optional pair)
    "masks":     [N, H, W] instance masks or [H, W] semantic label map, any dtype (optional)
    "keypoints": float32[N, K, 3] as (x, y, visibility)                        (optional)

Each transform draws one input->output matrix (the same one the image-only version in
`geometric.py` draws from the same key) and hands it to `warp_example`, which
- resamples the image bilinearly and the masks with nearest neighbour, so masks follow the image pixel
  for pixel (crops and flips are exact; no interpolation of labels);
- maps the four corners of every box, takes their enclosing box and clips it to the output image;
  boxes narrower or shorter than `min_box_size` pixels, or with less than `min_box_visibility` of
  their (transformed) area left inside the image, are invalidated and zeroed;
- maps keypoints and sets the visibility of those that leave the image to 0.
Flips skip the resampler: pixels and masks are reversed, boxes and keypoints go through the matrix
and no box is filtered. Coordinates follow `sampling.py`: continuous pixels, so a flip is exactly
`x -> W - x`.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxvision.data.augment import geometric, sampling
from jaxvision.types import Array

Example = dict


def _check_example(example) -> None:
    if not isinstance(example, dict) or "image" not in example:
        raise ValueError(f"example must be a dict with an 'image' entry, got "
                         f"{type(example).__name__} with keys {list(getattr(example, 'keys', list)())}")
    sampling.check_image(example["image"], "example['image']")
    height, width = example["image"].shape[:2]
    if "boxes" in example:
        boxes = example["boxes"]
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"example['boxes'] must have shape [N, 4], got {boxes.shape}")
        if "valid" not in example or example["valid"].shape != boxes.shape[:1]:
            raise ValueError(f"example['valid'] must be a bool [N] mask beside boxes {boxes.shape}, "
                             f"got {getattr(example.get('valid'), 'shape', None)}")
    if "masks" in example:
        masks = example["masks"]
        if masks.ndim not in (2, 3) or masks.shape[-2:] != (height, width):
            raise ValueError(f"example['masks'] must be [N, H, W] or [H, W] with H, W = "
                             f"{(height, width)}, got {masks.shape}")
    if "keypoints" in example:
        keypoints = example["keypoints"]
        if keypoints.ndim != 3 or keypoints.shape[2] != 3:
            raise ValueError(f"example['keypoints'] must have shape [N, K, 3], got {keypoints.shape}")


def transform_boxes(matrix: Array, boxes: Array, valid: Array, out_shape: Sequence[int], *,
                    min_box_size: float = 1.0, min_box_visibility: float = 0.25):
    """Moves `boxes` `[N, 4]` through `matrix`; returns `(boxes [N, 4], valid [N])` on `out_shape`.

    The result is the enclosing box of the four mapped corners, clipped to `[0, W] x [0, H]`.
    Visibility is the clipped area over the unclipped (mapped) area.
    """
    out_h, out_w = out_shape
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    corners = jnp.stack([jnp.stack([x0, y0], -1), jnp.stack([x1, y0], -1),
                         jnp.stack([x0, y1], -1), jnp.stack([x1, y1], -1)], axis=1)  # [N, 4, 2]
    moved = sampling.transform_points(matrix, corners)  # [N, 4, 2]
    low = moved.min(axis=1)  # [N, 2]
    high = moved.max(axis=1)  # [N, 2]
    full_area = jnp.prod(high - low, axis=-1)
    limit = jnp.array([[out_w, out_h]], jnp.float32)  # [1, 2]
    low = jnp.clip(low, 0.0, limit)
    high = jnp.clip(high, 0.0, limit)
    sides = high - low  # [N, 2]
    visible = jnp.prod(sides, axis=-1) / jnp.maximum(full_area, 1e-6)
    keep = (valid & (sides[:, 0] >= min_box_size) & (sides[:, 1] >= min_box_size)
            & (visible >= min_box_visibility))
    new_boxes = jnp.concatenate([low, high], axis=-1)  # [N, 4]
    return jnp.where(keep[:, None], new_boxes, 0.0), keep


def transform_keypoints(matrix: Array, keypoints: Array, out_shape: Sequence[int]) -> Array:
    """Moves `keypoints` `[N, K, 3]` (x, y, visibility); those leaving `out_shape` become invisible."""
    out_h, out_w = out_shape
    xy = sampling.transform_points(matrix, keypoints[..., :2])  # [N, K, 2]
    inside = ((xy[..., 0] >= 0) & (xy[..., 0] < out_w) & (xy[..., 1] >= 0) & (xy[..., 1] < out_h))
    visibility = jnp.where(inside, keypoints[..., 2], jnp.zeros_like(keypoints[..., 2]))
    return jnp.concatenate([xy, visibility[..., None]], axis=-1)


def warp_example(example: Example, matrix: Array, out_shape: Sequence[int], *,
                 mode: str = "constant", fill=0.0, mask_fill=0, min_box_size: float = 1.0,
                 min_box_visibility: float = 0.25) -> Example:
    """Applies the input->output `matrix` to every annotation of `example` (see the module docstring).

    `mode`/`fill` say what the image shows outside its source; masks are always `mask_fill` there
    (use the ignore label, e.g. 255, for semantic maps if the loss should skip those pixels).
    """
    _check_example(example)
    out_shape = tuple(int(v) for v in out_shape)
    result = _warp_annotations(example, matrix, out_shape, mask_fill=mask_fill,
                               min_box_size=min_box_size, min_box_visibility=min_box_visibility)
    result["image"] = sampling.warp(example["image"], matrix, out_shape, mode=mode, fill=fill)
    return result


def _warp_annotations(example: Example, matrix: Array, out_shape: tuple[int, int], *, mask_fill,
                      min_box_size: float, min_box_visibility: float) -> Example:
    """Everything `warp_example` does except the image."""
    result = dict(example)
    if "masks" in example:
        masks = example["masks"]
        if masks.ndim == 3:
            moved = sampling.warp(jnp.moveaxis(masks, 0, -1), matrix, out_shape, order=0,
                                  mode="constant", fill=mask_fill)
            result["masks"] = jnp.moveaxis(moved, -1, 0)  # [N, Ho, Wo]
        else:
            result["masks"] = sampling.warp(masks, matrix, out_shape, order=0, mode="constant",
                                            fill=mask_fill)
    if "boxes" in example:
        result["boxes"], result["valid"] = transform_boxes(
            matrix, example["boxes"].astype(jnp.float32), example["valid"], out_shape,
            min_box_size=min_box_size, min_box_visibility=min_box_visibility)
    if "keypoints" in example:
        result["keypoints"] = transform_keypoints(matrix, example["keypoints"], out_shape)
    return result


def _flip_example(key: jax.Array, example: Example, *, horizontal: bool, p: float):
    """Mirrors pixels by reversal (no resampling) and boxes/keypoints through the flip matrix."""
    _check_example(example)
    matrix, out_shape, flipped = geometric.flip_matrix(key, example["image"].shape,
                                                       horizontal=horizontal, p=p)
    # Boxes are never filtered by a flip: every box stays whole inside the image.
    result = _warp_annotations({k: v for k, v in example.items() if k != "masks"}, matrix, out_shape,
                               mask_fill=0, min_box_size=0.0, min_box_visibility=0.0)
    pixel_fields = ["image"] + (["masks"] if "masks" in example else [])
    for name in pixel_fields:
        array = example[name]
        axis = array.ndim - (1 if name == "masks" else 2) - (0 if horizontal else 1)
        result[name] = jnp.where(flipped, jnp.flip(array, axis=axis), array)
    return result, flipped


def horizontal_flip_example(key: jax.Array, example: Example, *, p: float = 0.5,
                            keypoint_flip_permutation: Sequence[int] | None = None) -> Example:
    """Left-right mirror with probability `p` (same draw as `horizontal_flip` for the same key).

    Pixels and masks are reversed exactly; boxes map `x -> W - x`. `keypoint_flip_permutation` swaps
    left/right keypoint ids when the example is flipped (e.g. COCO's left and right eye); omit it
    for symmetric keypoint sets.
    """
    result, flipped = _flip_example(key, example, horizontal=True, p=p)
    if keypoint_flip_permutation is not None and "keypoints" in example:
        permutation = jnp.asarray(keypoint_flip_permutation, jnp.int32)
        if permutation.shape != example["keypoints"].shape[1:2]:
            raise ValueError(f"keypoint_flip_permutation must have one entry per keypoint "
                             f"({example['keypoints'].shape[1]}), got {keypoint_flip_permutation!r}")
        keypoints = result["keypoints"]
        result["keypoints"] = jnp.where(flipped, keypoints[:, permutation], keypoints)
    return result


def vertical_flip_example(key: jax.Array, example: Example, *, p: float = 0.5) -> Example:
    """Top-bottom mirror with probability `p` (same draw as `vertical_flip`); pixels reversed exactly."""
    return _flip_example(key, example, horizontal=False, p=p)[0]


def random_crop_example(key: jax.Array, example: Example, *, size=None, padding=0,
                        padding_mode: str = "constant", fill=0.0, **box_filter) -> Example:
    """`random_crop` (same crop for the same key) applied to image and annotations.

    `box_filter` takes `min_box_size` and `min_box_visibility` (see `warp_example`).
    """
    _check_example(example)
    matrix, out_shape = geometric.random_crop_matrix(key, example["image"].shape, size=size,
                                                     padding=padding)
    return warp_example(example, matrix, out_shape, mode=padding_mode, fill=fill, **box_filter)


def random_resized_crop_example(key: jax.Array, example: Example, *, size, scale=(0.08, 1.0),
                                ratio=(3 / 4, 4 / 3), num_attempts: int = 10,
                                **box_filter) -> Example:
    """`random_resized_crop` (same crop for the same key) applied to image and annotations."""
    _check_example(example)
    matrix, out_shape = geometric.random_resized_crop_matrix(
        key, example["image"].shape, size=size, scale=scale, ratio=ratio, num_attempts=num_attempts)
    return warp_example(example, matrix, out_shape, mode="edge", **box_filter)


def scale_augment_example(key: jax.Array, example: Example, *, size=224,
                          short_side_range=(256, 480), **box_filter) -> Example:
    """`scale_augment` (same scale and crop for the same key) applied to image and annotations."""
    _check_example(example)
    matrix, out_shape = geometric.scale_augment_matrix(key, example["image"].shape, size=size,
                                                       short_side_range=short_side_range)
    return warp_example(example, matrix, out_shape, mode="edge", **box_filter)


def random_affine_example(key: jax.Array, example: Example, *, degrees: float = 0.0,
                          translate=(0.0, 0.0), scale=(1.0, 1.0), shear=(0.0, 0.0), fill=0.0,
                          **box_filter) -> Example:
    """`random_affine` (same warp for the same key) applied to image and annotations.

    Boxes become the enclosing box of their rotated/sheared corners, which over-covers a rotated
    object (the usual price of axis-aligned boxes).
    """
    _check_example(example)
    matrix, out_shape = geometric.random_affine_matrix(
        key, example["image"].shape, degrees=degrees, translate=translate, scale=scale, shear=shear)
    return warp_example(example, matrix, out_shape, fill=fill, **box_filter)


def resize_example(example: Example, *, size, antialias: bool = True, mask_fill=0,
                   min_box_size: float = 1.0, min_box_visibility: float = 0.25) -> Example:
    """Deterministic resize of image (anti-aliased `jax.image.resize`) and annotations to `size`.

    Takes no key; in a transform list write `lambda key, x: resize_example(x, size=...)`.
    """
    _check_example(example)
    matrix, out_shape = geometric.resize_matrix(example["image"].shape, size)
    result = _warp_annotations(example, matrix, out_shape, mask_fill=mask_fill,
                               min_box_size=min_box_size, min_box_visibility=min_box_visibility)
    result["image"] = geometric.resize(example["image"], size=out_shape, antialias=antialias)
    return result
