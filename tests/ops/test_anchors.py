"""jaxvision.ops.anchors: torchvision AnchorGenerator / DefaultBoxGenerator semantics, YOLO offsets."""

import numpy as np
import pytest

import reference  # tests/reference.py (tests/ is on sys.path through conftest.py)
from jaxvision.ops import anchors


def test_base_anchors_known_values():
    base = anchors.create_base_anchors((32,), (0.5, 1.0, 2.0))
    # ratio 0.5: w = 32 * sqrt(2) = 45.25 -> (-22.6, -11.3, 22.6, 11.3) rounded
    np.testing.assert_array_equal(base, [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])


def test_multilevel_anchors_match_loop_and_strides():
    image_size = (64, 96)
    feature_sizes = [(8, 12), (4, 6)]
    sizes = [(32, 40), (64,)]
    ratios = [(0.5, 1.0, 2.0), (1.0,)]
    levels = anchors.create_multilevel_anchors(image_size, feature_sizes, sizes, ratios)
    assert [a.shape for a in levels] == [(8 * 12 * 6, 4), (4 * 6 * 1, 4)]
    np.testing.assert_array_equal(levels[0], reference.anchor_grid(sizes[0], ratios[0], (8, 12), (8, 8)))
    np.testing.assert_array_equal(levels[1], reference.anchor_grid(sizes[1], ratios[1], (4, 6), (16, 16)))
    # anchors are centred on stride * (j, i)
    centres = (np.asarray(levels[1])[:, :2] + np.asarray(levels[1])[:, 2:]) / 2
    np.testing.assert_array_equal(centres[7], [16 * 1, 16 * 1])


def test_ssd_default_boxes_match_loop():
    image_size = (300, 300)
    feature_sizes = [(3, 3), (2, 2), (1, 1)]
    ratios = [[2], [2, 3], [2]]
    boxes = anchors.create_ssd_default_boxes(image_size, feature_sizes, ratios)
    scales = anchors.ssd_scales(3)
    np.testing.assert_allclose(scales, [0.15, 0.525, 0.9, 1.0])
    expected = reference.ssd_default_boxes(image_size, feature_sizes, ratios, scales)
    assert boxes.shape == (9 * 4 + 4 * 6 + 1 * 4, 4)
    np.testing.assert_allclose(boxes, expected, rtol=1e-5, atol=1e-3)
    # the extra box at each location is sqrt(s_k s_k+1) wide
    np.testing.assert_allclose(boxes[1, 2] - boxes[1, 0], np.sqrt(0.15 * 0.525) * 300, rtol=1e-5)


def test_ssd_steps_and_clip():
    boxes = anchors.create_ssd_default_boxes((64, 64), [(2, 2)], [[3]], scales=[0.9, 1.0], steps=[16],
                                             clip=True)
    # steps: centres at (j + 0.5) * 16 rather than (j + 0.5) / 2 * 64
    np.testing.assert_allclose((boxes[0, :2] + boxes[0, 2:]) / 2, [8, 8], atol=1e-5)
    widths = np.asarray(boxes[:, 2] - boxes[:, 0])
    assert widths.max() <= 64 + 1e-4  # 0.9 * sqrt(3) clipped to 1


def test_grid_offsets():
    grid = anchors.create_grid_offsets((2, 3), stride=8)
    assert grid.shape == (2, 3, 2)
    np.testing.assert_array_equal(grid[1, 2], [16, 8])
    np.testing.assert_array_equal(anchors.create_grid_offsets(2, stride=4, offset=0.5)[0, 1], [6, 2])


def test_input_checks():
    with pytest.raises(ValueError, match="aspect_ratios"):
        anchors.create_base_anchors((32,), ())
    with pytest.raises(ValueError, match="one entry per level"):
        anchors.create_multilevel_anchors((64, 64), [(8, 8)], [(32,), (64,)], [(1.0,)])
    with pytest.raises(ValueError, match="scales"):
        anchors.create_ssd_default_boxes((64, 64), [(2, 2)], [[2]], scales=[0.2])
