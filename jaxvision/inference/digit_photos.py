"""MNIST's size normalisation and centring, for photos and scans of handwritten digits.

MNIST digits (and the embedded digits, the same images) were made so (LeCun, Cortes and Burges,
"The MNIST database", yann.lecun.com/exdb/mnist): each digit was "size normalized to fit in a 20x20
pixel box while preserving their aspect ratio", anti-aliased to gray levels, and "centered in a
28x28 image by computing the center of mass of the pixels". A classifier trained on them expects
exactly that framing; a photo of a digit resized whole (small digit, wide margins, off centre, gray
paper) is far from it. `mnist_style` puts an image into that framing:

1. background to 0 and the strongest stroke to 1: `(x - median) / (max - median)` (the median of
   a mostly-empty page is its paper level); values at or below `ink_threshold`, or below five
   times the noise level (the median absolute deviation of the page, as a Gaussian sigma), become
   0, so paper grain and sensor noise do not count as ink;
2. drop specks: 8-connected pieces of ink with less than `speck_fraction` of the largest piece's
   mass (dust, dots on the page; a digit's own separate strokes are far heavier); crop to the
   bounding box of what is left;
3. resize (antialiased bilinear) so the longer side is 20/28 of the output size, aspect kept;
4. paste into a black square so that the centre of mass lands on pixel (size/2, size/2), rounded
   to a whole pixel, as far as the square allows.

Input: light strokes on a dark ground (invert first for ink on paper).
"""

import numpy as np

MNIST_BOX_FRACTION = 20 / 28


def mnist_style(gray: np.ndarray, *, size: int = 28, ink_threshold: float = 0.1,
                speck_fraction: float = 0.05) -> np.ndarray:
    """`float32[size, size]` in [0, 1] from a gray image `float[H, W]` in [0, 1] (light on dark).

    Raises:
      ValueError: for an image that is not 2-D, or one with no stroke brighter than its background.
    """
    gray = np.asarray(gray, np.float64)
    if gray.ndim != 2:
        raise ValueError(f"mnist_style takes a gray image [H, W], got shape {gray.shape}")
    background, peak = float(np.median(gray)), float(gray.max())
    if peak - background < 1e-3:
        raise ValueError("the image has no stroke brighter than its background (ink on paper needs inverting first)")
    strokes = (gray - background) / (peak - background)
    noise_sigma = 1.4826 * float(np.median(np.abs(strokes)))  # MAD of a page that is mostly background
    strokes = np.where(strokes > max(ink_threshold, 5.0 * noise_sigma), np.minimum(strokes, 1.0), 0.0)
    strokes = _without_specks(strokes, speck_fraction)
    rows, cols = np.nonzero(strokes)
    strokes = strokes[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    box = max(1, round(size * MNIST_BOX_FRACTION))
    scale = box / max(strokes.shape)
    height, width = (max(1, round(side * scale)) for side in strokes.shape)
    digit = _resize(strokes, height, width)
    grid_rows, grid_cols = np.indices(digit.shape)
    centre_row = (grid_rows * digit).sum() / digit.sum()  # > 0: the brightest stroke is kept
    centre_col = (grid_cols * digit).sum() / digit.sum()
    # Top-left corner that puts the centre of mass on pixel (size/2, size/2), kept inside the
    # canvas. MNIST's own digits have it there: their centres of mass lie in [13.5, 14.5] (an
    # integer shift onto 14), e.g. rows 13.8-14.2 and columns 13.6-14.0 for the first test digits.
    top = int(np.clip(round(size / 2 - centre_row), 0, size - height))
    left = int(np.clip(round(size / 2 - centre_col), 0, size - width))
    canvas = np.zeros((size, size), np.float32)
    canvas[top: top + height, left: left + width] = digit
    return canvas


def _without_specks(strokes: np.ndarray, speck_fraction: float) -> np.ndarray:
    import scipy.ndimage

    pieces, count = scipy.ndimage.label(strokes > 0, structure=np.ones((3, 3)))
    masses = scipy.ndimage.sum(strokes, pieces, index=np.arange(1, count + 1))
    keep = np.concatenate([[False], masses >= speck_fraction * masses.max()])
    return np.where(keep[pieces], strokes, 0.0)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if image.shape == (height, width):
        return image.astype(np.float32)
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, np.float32), 0.0, 1.0)
