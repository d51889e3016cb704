"""Annotation-aware transforms: boxes, masks and keypoints follow their object under every warp."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.data import augment

H, W = 32, 32
OBJECT_BOX = (6.0, 10.0, 18.0, 20.0)  # x0, y0, x1, y1: columns 6..17, rows 10..19


def make_example():
    """A solid rectangle (value 1 on a 0 background), its instance mask, semantic map, box and
    two keypoints (its centre and a pixel centre 1.5 px inside its top-left corner)."""
    x0, y0, x1, y1 = (int(v) for v in OBJECT_BOX)
    inside = np.zeros((H, W), bool)
    inside[y0:y1, x0:x1] = True
    image = np.repeat(inside[..., None], 3, axis=-1).astype(np.float32)
    masks = np.stack([inside, np.zeros_like(inside)])  # instance 1 is padding
    keypoints = np.array([[[(x0 + x1) / 2, (y0 + y1) / 2, 1.0], [x0 + 1.5, y0 + 1.5, 1.0]],
                          [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]], np.float32)
    return {
        "image": jnp.asarray(image),
        "boxes": jnp.array([OBJECT_BOX, (0.0, 0.0, 0.0, 0.0)], jnp.float32),
        "valid": jnp.array([True, False]),
        "masks": jnp.asarray(masks),
        "semantic": jnp.asarray(inside.astype(np.int32) * 7),
        "keypoints": jnp.asarray(keypoints),
        "label": jnp.int32(3),
    }


def tight_box(mask):
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)


GEOMETRIC = {
    "horizontal_flip": (functools.partial(augment.horizontal_flip_example, p=1.0), 0.0),
    "vertical_flip": (functools.partial(augment.vertical_flip_example, p=1.0), 0.0),
    "random_crop": (functools.partial(augment.random_crop_example, size=28, padding=4), 0.0),
    "random_resized_crop": (functools.partial(augment.random_resized_crop_example, size=24,
                                              scale=(0.5, 1.0)), 1.0),
    "scale_augment": (functools.partial(augment.scale_augment_example, size=24,
                                        short_side_range=(32, 48)), 1.0),
    "random_affine": (functools.partial(augment.random_affine_example, degrees=45.0,
                                        translate=(0.1, 0.1), scale=(0.8, 1.2), shear=(10.0, 10.0)),
                      1.5),
    "resize": (lambda key, example: augment.resize_example(example, size=(24, 40)), 1.0),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_box_mask_and_keypoints_follow_the_object(name):
    transform, tolerance = GEOMETRIC[name]
    example = make_example()
    keys = jax.random.split(jax.random.key(21), 8)

    def with_semantic_map(key, example):
        semantic = {"image": example["image"], "masks": example.pop("semantic")}
        return transform(key, example), transform(key, semantic)["masks"]

    outputs, semantic = jax.jit(jax.vmap(with_semantic_map, in_axes=(0, None)))(keys, example)
    outputs = jax.tree.map(np.asarray, outputs)
    num_checked = 0
    for index in range(len(keys)):
        out = jax.tree.map(lambda leaf, i=index: leaf[i], outputs)
        mask = out["masks"][0]
        assert out["masks"].dtype == np.bool_ and semantic.dtype == np.int32
        assert not out["valid"][1] and not out["masks"][1].any()  # padding stays padding
        assert out["label"] == 3
        # the semantic map and the instance mask are resampled identically
        np.testing.assert_array_equal(np.asarray(semantic[index]) == 7, mask)
        if not out["valid"][0]:
            np.testing.assert_array_equal(out["boxes"][0], 0.0)
            continue
        num_checked += 1
        # "tolerance" is 0 for the exact warps (flips, integer crops) and ~1 px for resampling ones
        np.testing.assert_allclose(out["boxes"][0], tight_box(mask), atol=tolerance + 1e-4)
        # the bilinear image agrees with the nearest-neighbour mask away from the object's edge
        disagree = np.abs(out["image"][..., 0] - mask) > 0.5
        assert disagree.sum() <= 0.1 * mask.sum()
        for x, y, visible in out["keypoints"][0]:
            inside_image = 0 <= x < mask.shape[1] and 0 <= y < mask.shape[0]
            assert visible == inside_image, (name, x, y, visible)
            if visible:
                assert mask[int(np.floor(y)), int(np.floor(x))], (name, x, y)
    assert num_checked >= 6


def test_image_matches_the_image_only_transform_for_the_same_key():
    example = make_example()
    example.pop("semantic")
    example["image"] = jax.random.uniform(jax.random.key(22), (H, W, 3))
    key = jax.random.key(23)

    @jax.jit
    def both(key, example):
        crop = functools.partial(augment.random_crop, size=28, padding=4)
        crop_example = functools.partial(augment.random_crop_example, size=28, padding=4)
        return ((crop_example(key, example)["image"], crop(key, example["image"])),
                (augment.horizontal_flip_example(key, example)["image"],
                 augment.horizontal_flip(key, example["image"])))

    for from_example, from_image in both(key, example):
        np.testing.assert_array_equal(from_example, from_image)


def test_flip_twice_is_identity_for_every_annotation(key):
    example = make_example()
    flip = functools.partial(augment.vertical_flip_example, p=1.0)
    twice = jax.jit(lambda k, x: flip(k, flip(k, x)))(key, example)
    example.pop("semantic")
    for name in example:
        np.testing.assert_allclose(twice[name], example[name], atol=1e-6, err_msg=name)


def test_flip_swaps_left_and_right_keypoints(key):
    example = make_example()
    example.pop("semantic")
    flipped = jax.jit(functools.partial(augment.horizontal_flip_example, p=1.0,
                                        keypoint_flip_permutation=(1, 0)))(key, example)
    np.testing.assert_allclose(flipped["keypoints"][0, 1, 0], W - example["keypoints"][0, 0, 0])
    np.testing.assert_allclose(flipped["keypoints"][0, 0, 0], W - example["keypoints"][0, 1, 0])


def test_boxes_leaving_the_image_are_clipped_then_invalidated():
    boxes = jnp.array([[2.0, 2.0, 10.0, 10.0],    # moves to x in [-6, 2]: 2 px of 8 visible
                       [12.0, 2.0, 20.0, 10.0],   # moves to [4, 12]: fully visible
                       [8.0, 2.0, 16.0, 10.0],    # moves to [0, 8]: fully visible
                       [7.5, 2.0, 8.5, 10.0]])    # moves to [-0.5, 0.5]: 0.5 px wide after clip
    valid = jnp.array([True, True, True, True])
    shift = augment.sampling.translation_matrix(-8.0, 0.0)
    moved, keep = augment.transform_boxes(shift, boxes, valid, (H, W), min_box_size=1.0,
                                          min_box_visibility=0.3)
    np.testing.assert_array_equal(keep, [False, True, True, False])
    np.testing.assert_allclose(moved[1], [4.0, 2.0, 12.0, 10.0])
    np.testing.assert_array_equal(moved[0], 0.0)
    _, keep = augment.transform_boxes(shift, boxes, valid, (H, W), min_box_visibility=0.2)
    np.testing.assert_array_equal(keep, [True, True, True, False])


def test_keypoints_leaving_the_image_become_invisible():
    keypoints = jnp.array([[[1.0, 5.0, 1.0], [20.0, 5.0, 1.0], [20.0, 5.0, 0.0]]])
    moved = augment.transform_keypoints(augment.sampling.translation_matrix(-4.0, 0.0), keypoints,
                                        (H, W))
    np.testing.assert_array_equal(moved[0, :, 2], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(moved[0, 1, :2], [16.0, 5.0])


@pytest.mark.parametrize("bad, message", [
    ({"image": jnp.zeros((8, 8))}, "image"),
    ({"image": jnp.zeros((8, 8, 3)), "boxes": jnp.zeros((2, 3)), "valid": jnp.ones(2, bool)}, "boxes"),
    ({"image": jnp.zeros((8, 8, 3)), "boxes": jnp.zeros((2, 4))}, "valid"),
    ({"image": jnp.zeros((8, 8, 3)), "masks": jnp.zeros((2, 4, 4))}, "masks"),
    ({"image": jnp.zeros((8, 8, 3)), "keypoints": jnp.zeros((2, 4))}, "keypoints"),
])
def test_malformed_examples_raise_value_error(key, bad, message):
    with pytest.raises(ValueError, match=message):
        augment.horizontal_flip_example(key, bad)
