"""COCO's mask formats in numpy, bit-exact with pycocotools' `mask` module (no pycocotools needed).

- `rle_encode` / `rle_decode`: COCO run-length encoding (`{"size": [H, W], "counts": ...}`), the
  compressed string form (`rleToString` / `rleFrString`) and the uncompressed list form; runs
  alternate 0, 1, 0, ... over the pixels in column-major order.
- `polygons_to_mask`: the union of COCO polygons rasterized pixel for pixel as `rleFrPoly` (which walks
  the outline at 5x resolution), including its C casts of NaN and its [x, y, w, h] box reading.
- `segmentation_to_mask`: either form of an annotation's `segmentation` -> `bool[H, W]`.

Used by `jaxvision.metrics.coco` (iou_type="segm"); tests compare each against pycocotools.
"""

from typing import Sequence

import numpy as np


def _counts_from_string(counts: str) -> list[int]:
    """COCO's compressed counts: LEB128-like, 5 bits per character (offset 48), sign bit 0x10,
    continuation bit 0x20; from the fourth count on, each is stored as a difference to the count
    two before."""
    values: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            char = ord(counts[position]) - 48
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            position += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift  # sign-extend
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return values


def _counts_to_string(values: Sequence[int]) -> str:
    """Inverse of `_counts_from_string` (pycocotools `rleToString`)."""
    chars = []
    for i, value in enumerate(values):
        value = int(value) - (int(values[i - 2]) if i > 2 else 0)
        more = True
        while more:
            char = value & 0x1F
            value >>= 5
            more = value != -1 if char & 0x10 else value != 0
            chars.append(chr((char | 0x20 if more else char) + 48))
    return "".join(chars)


def rle_decode(rle: dict) -> np.ndarray:
    """COCO RLE `{"size": [H, W], "counts": str | bytes | list[int]}` -> `bool[H, W]`.

    Runs alternate 0, 1, 0, ... over the pixels in column-major order, starting with a (possibly
    empty) run of 0s.
    """
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    values = _counts_from_string(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if sum(values) != height * width:
        raise ValueError(f"RLE counts must add up to height * width = {height * width}, got {sum(values)}")
    flat = np.repeat(np.arange(len(values)) % 2 == 1, values)
    return flat.reshape(width, height).T


def rle_encode(mask) -> dict:
    """`bool[H, W]` -> compressed COCO RLE `{"size": [H, W], "counts": str}` (pycocotools `encode`)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape [H, W], got {mask.shape}")
    flat = mask.T.reshape(-1).astype(bool)
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _counts_to_string(runs)}


def _c_int(values: np.ndarray) -> np.ndarray:
    """C's (int) cast of doubles: truncation toward 0, and INT_MIN for NaN (x86 cvttsd2si)."""
    values = np.asarray(values, np.float64)
    nan = np.isnan(values)
    return np.where(nan, -(2**31), np.trunc(np.where(nan, 0, values))).astype(np.int64)


def _polygon_toggles(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Flat column-major positions where pycocotools' `rleFrPoly` switches between 0 and 1.

    The polygon is walked at 5x resolution; an up-sampled boundary crossing of a pixel column's
    centre line toggles that column from the first pixel whose centre lies below the crossing.
    """
    scale = 5.0
    x = _c_int(scale * xy[0::2] + 0.5)
    y = _c_int(scale * xy[1::2] + 0.5)
    x, y = np.append(x, x[:1]), np.append(y, y[:1])
    us, vs = [], []
    for j in range(len(x) - 1):
        xs, xe, ys, ye = x[j], x[j + 1], y[j], y[j + 1]
        dx, dy = abs(xe - xs), abs(ys - ye)
        flip = (dx >= dy and xs > xe) or (dx < dy and ys > ye)
        if flip:
            xs, xe, ys, ye = xe, xs, ye, ys
        with np.errstate(divide="ignore", invalid="ignore"):
            if dx >= dy:
                slope = np.float64(ye - ys) / np.float64(dx)  # NaN for a repeated point, as in C
                t = np.arange(dx + 1)
                t = dx - t if flip else t
                us.append(t + xs)
                vs.append(_c_int(ys + slope * t + 0.5))
            else:
                slope = np.float64(xe - xs) / np.float64(dy)
                t = np.arange(dy + 1)
                t = dy - t if flip else t
                vs.append(t + ys)
                us.append(_c_int(xs + slope * t + 0.5))
    u, v = np.concatenate(us), np.concatenate(vs)
    moved = u[1:] != u[:-1]
    xd = np.where(u[1:] < u[:-1], u[1:], u[1:] - 1).astype(np.float64)
    xd = (xd + 0.5) / scale - 0.5
    keep = moved & (np.floor(xd) == xd) & (xd >= 0) & (xd <= width - 1)
    yd = np.minimum(v[1:], v[:-1]).astype(np.float64)
    yd = np.ceil(np.clip((yd + 0.5) / scale - 0.5, 0, height))
    return xd[keep].astype(np.int64) * height + yd[keep].astype(np.int64)


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons `[[x1, y1, x2, y2, ...], ...]` -> `bool[H, W]`, their union, pixel for pixel as
    pycocotools (`frPyObjects` + `merge`). As there, a list whose first entry has exactly 4 numbers
    is read as boxes [x, y, w, h]."""
    if height is None or width is None:
        raise ValueError("polygon segmentations need the image's height and width in ground_truth['images']")
    polygons = [np.asarray(p, np.float64) for p in polygons]
    if polygons and polygons[0].size == 4:
        polygons = [np.array([x, y, x, y + h, x + w, y + h, x + w, y]) for x, y, w, h in polygons]
    mask = np.zeros(height * width, bool)
    for polygon in polygons:
        toggles = _polygon_toggles(polygon, height, width)
        # A polygon covers the pixels with an odd number of toggles at or before them.
        mask |= np.cumsum(np.bincount(toggles, minlength=height * width + 1)[: height * width]) % 2 == 1
    return mask.reshape(width, height).T


def segmentation_to_mask(segmentation, height, width) -> np.ndarray:
    """A COCO `segmentation` (polygons, or RLE in either form) -> `bool[H, W]`."""
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, height, width)
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        return rle_decode(segmentation)
    raise ValueError(f"segmentation must be polygons or an RLE dict, got {type(segmentation).__name__}")
