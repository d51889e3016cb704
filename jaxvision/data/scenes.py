"""Scenes composed from real MNIST digits: dense, exact ground truth for segmentation and detection.

Each scene pastes 1-5 real digits onto a black square canvas at random positions and sizes; a
later digit occludes the earlier ones where its stroke is (pixel > `mask_threshold`). A digit is
placed only where every object keeps more than `min_visible_pixels` visible pixels (a few tries,
else it is left out), so every object of the scene is visible and every stroke pixel is labelled.

One scene (`compose_scene`) is, with `N = max_instances`:

    image         uint8[S, S, 1]   the canvas
    segmentation  int32[S, S]      0 background, 1 + digit class (1..10)
    instance_ids  int32[S, S]      0 background, k + 1 for instance slot k
    boxes         float32[N, 4]    xyxy tight box of each visible mask, in pixel edges
                                   (a mask pixel (r, c) lies in [x1, x2) x [y1, y2))
    labels        int32[N]         digit class 0..9 (-1 on padding)
    masks         uint8[N, S, S]   visible mask of each instance (0/1)
    valid         bool[N]          True for the first `num_instances` slots
    source_index  int32[N]         index of the pasted digit in the source array (-1 on padding)

`masks[k] == (instance_ids == k + 1)` and `segmentation == sum_k masks[k] * (labels[k] + 1)`.
The numpy composer is deterministic given its generator (`np.random.default_rng(seed)`).
DATA_NOTES "Scenes built from real digits" describes the recipe; sizes here are fractions of the
canvas side, so a 64x64 canvas (the CPU default) and 128x128 scenes look alike.
"""

import numpy as np
from PIL import Image

NUM_DIGIT_CLASSES = 10
NUM_SEMANTIC_CLASSES = NUM_DIGIT_CLASSES + 1  # background + 10 digits
MASK_THRESHOLD = 64
MIN_VISIBLE_PIXELS = 20
PLACEMENT_TRIES = 10


def _resize_digit(digit: np.ndarray, size: int) -> np.ndarray:
    """`uint8[28, 28]` -> `uint8[size, size]`, bilinear (Pillow)."""
    return np.asarray(Image.fromarray(digit).resize((size, size), Image.BILINEAR), np.uint8)


def compose_scene(
    rng: np.random.Generator,
    digits: np.ndarray,
    labels: np.ndarray,
    *,
    canvas_size: int = 64,
    max_instances: int = 5,
    min_digits: int = 1,
    size_range: tuple[float, float] = (0.25, 0.5),
    mask_threshold: int = MASK_THRESHOLD,
    min_visible_pixels: int = MIN_VISIBLE_PIXELS,
) -> dict[str, np.ndarray]:
    """One scene from `digits uint8[M, 28, 28(, 1)]` with classes `labels int[M]` (see module doc).

    Args:
      rng: numpy generator; the scene is a deterministic function of its state.
      canvas_size: side S of the square canvas.
      max_instances: N, the padded number of instances; 1..N digits are drawn per scene.
      size_range: the digit's side as a fraction of S, drawn uniformly.
    """
    digits = np.asarray(digits)
    if digits.ndim == 4:
        digits = digits[..., 0]
    if digits.ndim != 3:
        raise ValueError(f"digits must have shape [M, h, w] or [M, h, w, 1], got {digits.shape}")
    if len(labels) != len(digits):
        raise ValueError(f"labels must have length {len(digits)}, got {len(labels)}")
    if not 1 <= min_digits <= max_instances:
        raise ValueError(f"need 1 <= min_digits <= max_instances, got {min_digits}, {max_instances}")
    low, high = size_range
    if not 0 < low <= high <= 1:
        raise ValueError(f"size_range must satisfy 0 < low <= high <= 1, got {size_range}")
    size = canvas_size
    image = np.zeros((size, size), np.uint8)
    instance_ids = np.zeros((size, size), np.int32)
    instance_labels = np.full(max_instances, -1, np.int32)
    source_index = np.full(max_instances, -1, np.int32)
    num_wanted = int(rng.integers(min_digits, max_instances + 1))
    count = 0
    for _ in range(num_wanted):
        index = int(rng.integers(len(digits)))
        for _ in range(PLACEMENT_TRIES):
            side = int(round(rng.uniform(low, high) * size))
            patch = _resize_digit(digits[index], side)
            mask = patch > mask_threshold
            top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            window = (slice(top, top + side), slice(left, left + side))
            candidate = instance_ids.copy()
            candidate[window][mask] = count + 1
            visible = np.bincount(candidate.ravel(), minlength=count + 2)[1:]  # [count + 1]
            if visible.min() > min_visible_pixels:
                break
        else:
            continue  # No placement keeps every object visible: leave this digit out.
        instance_ids = candidate
        # The stroke replaces what it covers; its faint fringe (<= threshold) only brightens.
        image[window] = np.where(mask, patch, np.maximum(image[window], patch))
        instance_labels[count] = int(labels[index])
        source_index[count] = index
        count += 1
    masks = (instance_ids[None] == np.arange(1, max_instances + 1)[:, None, None]).astype(np.uint8)  # [N, S, S]
    boxes = np.zeros((max_instances, 4), np.float32)
    for k in range(count):
        rows, cols = np.nonzero(masks[k])
        boxes[k] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    class_of_id = np.concatenate([[0], instance_labels + 1]).astype(np.int32)  # id -> semantic class
    return {
        "image": image[..., None],
        "segmentation": class_of_id[instance_ids],
        "instance_ids": instance_ids,
        "boxes": boxes,
        "labels": instance_labels,
        "masks": masks,
        "valid": np.arange(max_instances) < count,
        "source_index": source_index,
    }


def compose_scenes(seed, digits, labels, num_scenes: int, **kwargs):
    """`num_scenes` scenes from one generator seeded with `seed` (an int or a sequence of ints)."""
    rng = np.random.default_rng(seed)
    for _ in range(num_scenes):
        yield compose_scene(rng, digits, labels, **kwargs)
