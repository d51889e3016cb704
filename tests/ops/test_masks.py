"""jaxvision.ops.masks: paste_masks vs a torchvision-semantics loop, masks_to_boxes, mask IoU."""

import jax
import numpy as np
import pytest

import reference  # tests/reference.py (tests/ is on sys.path through conftest.py)
from jaxvision.ops import masks as M


def test_paste_masks_matches_loop():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(4, 6, 6)).astype(np.float32)
    boxes = np.array([[2.3, 3.1, 10.8, 9.9], [-3.0, -2.0, 5.0, 4.0], [12.0, 10.0, 25.0, 19.0],
                      [5.0, 5.0, 5.4, 5.2]], np.float32)
    got = jax.jit(lambda m, b: M.paste_masks(m, b, (16, 20)))(masks, boxes)
    assert got.shape == (4, 16, 20)
    for k in range(4):
        np.testing.assert_allclose(got[k], reference.paste_mask(masks[k], boxes[k].astype(np.float64), (16, 20)),
                                   atol=1e-5)


def test_masks_to_boxes_and_mask_iou():
    masks = np.zeros((3, 8, 10), bool)
    masks[0, 2:5, 3:7] = True
    masks[1, 0, 9] = True
    boxes = M.masks_to_boxes(masks)
    np.testing.assert_array_equal(boxes, [[3, 2, 6, 4], [9, 0, 9, 0], [0, 0, 0, 0]])  # empty -> zeros
    other = np.zeros((2, 8, 10), bool)
    other[0, 2:5, 5:9] = True  # overlaps masks[0] in 3 x 2 pixels; areas 12 and 12
    iou = np.asarray(M.mask_iou(masks, other))
    np.testing.assert_allclose(iou, [[6 / 18, 0], [0, 0], [0, 0]])
    np.testing.assert_allclose(np.diag(np.asarray(M.mask_iou(masks[:2], masks[:2]))), [1, 1])


def test_input_checks():
    with pytest.raises(ValueError, match="masks"):
        M.paste_masks(np.zeros((2, 4, 5)), np.zeros((2, 4)), (8, 8))
    with pytest.raises(ValueError, match="boxes"):
        M.paste_masks(np.zeros((2, 4, 4)), np.zeros((3, 4)), (8, 8))
    with pytest.raises(ValueError, match="masks2"):
        M.mask_iou(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
