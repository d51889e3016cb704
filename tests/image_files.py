"""Writing test images as files, for the tests of `jaxvision predict` (classification and segmentation)."""

import os

from PIL import Image


def save(folder, name, pixels, mode="L", size=None) -> str:
    """Save `uint8[H, W]` gray `pixels` as `folder/name` (format from the suffix), converted to `mode`
    and resized (nearest) to `size = (width, height)` if given; returns the path."""
    image = Image.fromarray(pixels, "L").convert(mode)
    if size is not None:
        image = image.resize(size, Image.Resampling.NEAREST)
    path = os.path.join(folder, name)
    image.save(path)
    return path
