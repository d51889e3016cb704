"""Geometric image transforms: determinism, identities, bounds, conventions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.data import augment
from jaxvision.data.augment import geometric, sampling

H, W = 16, 20


def coordinate_image(height=H, width=W):
    """Channel 0 = row + 1, channel 1 = column + 1, channel 2 = 1 (zeros mark padding)."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return jnp.asarray(np.stack([rows + 1, cols + 1, np.ones_like(rows)], -1), jnp.float32)


RANDOM_TRANSFORMS = {
    "random_crop": functools.partial(augment.random_crop, padding=4),
    "random_crop_reflect": functools.partial(augment.random_crop, size=12, padding=2,
                                             padding_mode="reflect"),
    "horizontal_flip": augment.horizontal_flip,
    "vertical_flip": augment.vertical_flip,
    "random_resized_crop": functools.partial(augment.random_resized_crop, size=12),
    "scale_augment": functools.partial(augment.scale_augment, size=12, short_side_range=(16, 24)),
    "random_affine": functools.partial(augment.random_affine, degrees=30, translate=(0.1, 0.1),
                                       scale=(0.8, 1.2), shear=(10, 10)),
    "cutout": functools.partial(augment.cutout, size=6),
    "random_erasing": functools.partial(augment.random_erasing, p=0.9),
    "color_jitter": functools.partial(augment.color_jitter, brightness=0.4, contrast=0.4,
                                      saturation=0.4, hue=0.1),
    "pca_lighting": augment.pca_lighting,
    "rand_augment": functools.partial(augment.rand_augment, num_ops=3, magnitude=30),
}
# colour transforms must keep [0, 1] images in [0, 1]
KEEPS_UNIT_RANGE = ("color_jitter", "rand_augment", "horizontal_flip", "random_crop", "cutout")


@pytest.mark.parametrize("name", sorted(RANDOM_TRANSFORMS))
def test_same_key_same_output_different_keys_differ_and_jit_matches(name):
    transform = RANDOM_TRANSFORMS[name]
    image = jax.random.uniform(jax.random.key(1), (H, W, 3))
    batched = jax.jit(jax.vmap(transform, in_axes=(0, None)))
    keys = jax.random.split(jax.random.key(2), 32)
    outputs = np.asarray(batched(keys, image))
    again = np.asarray(batched(keys, image))
    np.testing.assert_array_equal(outputs, again)
    assert len({out.tobytes() for out in outputs}) > 1, "32 keys gave one output"
    assert np.isfinite(outputs).all()
    if name in KEEPS_UNIT_RANGE:
        assert outputs.min() >= 0.0 and outputs.max() <= 1.0


def test_jit_matches_eager():
    image = jax.random.uniform(jax.random.key(1), (H, W, 3))
    transform = RANDOM_TRANSFORMS["random_crop_reflect"]
    k = jax.random.key(9)
    np.testing.assert_array_equal(jax.jit(transform)(k, image), transform(k, image))


def test_flip_twice_is_identity(key):
    image = jax.random.uniform(key, (H, W, 3))
    for flip in (augment.horizontal_flip, augment.vertical_flip):
        once = flip(key, image, p=1.0)
        assert not np.array_equal(once, image)
        np.testing.assert_array_equal(flip(key, once, p=1.0), image)
    np.testing.assert_array_equal(augment.horizontal_flip(key, image, p=1.0), image[:, ::-1])
    np.testing.assert_array_equal(augment.horizontal_flip(key, image, p=0.0), image)


def test_flip_matrix_warp_is_exact(key):
    image = jax.random.uniform(key, (H, W, 3))
    mirrored = sampling.warp(image, sampling.horizontal_flip_matrix(W), (H, W))
    np.testing.assert_array_equal(mirrored, image[:, ::-1])
    np.testing.assert_array_equal(sampling.warp(image, jnp.eye(3), (H, W)), image)


def test_rotation_by_90_degrees_matches_rot90_counter_clockwise(key):
    image = jax.random.uniform(key, (W, W, 3))
    matrix = sampling.centered_affine_matrix((W / 2, W / 2), degrees=90.0)
    rotated = jax.jit(sampling.warp, static_argnums=2)(image, matrix, (W, W))
    np.testing.assert_allclose(rotated, np.rot90(np.asarray(image), 1, axes=(0, 1)), atol=1e-5)


@pytest.mark.parametrize("padding_mode", ["constant", "reflect", "edge"])
def test_random_crop_is_a_window_of_the_padded_image(padding_mode):
    image = coordinate_image()
    crop = jax.jit(functools.partial(augment.random_crop, size=(10, 12), padding=3,
                                     padding_mode=padding_mode))
    padded = np.pad(np.asarray(image), ((3, 3), (3, 3), (0, 0)), mode=padding_mode)
    seen = set()
    for k in jax.random.split(jax.random.key(3), 20):
        out = np.asarray(crop(k, image))
        windows = [(y, x) for y in range(padded.shape[0] - 9) for x in range(padded.shape[1] - 11)
                   if np.array_equal(padded[y:y + 10, x:x + 12], out)]
        assert windows, "the crop is not a window of the padded image"
        seen.add(windows[0])
    assert len(seen) > 5


def test_random_crop_without_padding_stays_inside():
    image = coordinate_image()
    crop = jax.jit(jax.vmap(functools.partial(augment.random_crop, size=8), in_axes=(0, None)))
    for out in np.asarray(crop(jax.random.split(jax.random.key(4), 10), image)):
        assert out[..., 2].min() == 1  # no padding pixel
        top, left = int(out[0, 0, 0]) - 1, int(out[0, 0, 1]) - 1
        assert 0 <= top <= H - 8 and 0 <= left <= W - 8
        np.testing.assert_array_equal(out, np.asarray(image)[top:top + 8, left:left + 8])


def test_random_resized_crop_stays_in_bounds_and_samples_only_inside_the_crop():
    image = coordinate_image()

    @jax.jit
    @jax.vmap
    def box_and_crop(k):
        return (geometric.random_resized_crop_box(k, H, W, scale=(0.2, 1.0)),
                augment.random_resized_crop(k, image, size=8, scale=(0.2, 1.0)))

    (y0, x0, h, w), out = jax.tree.map(np.asarray,
                                       box_and_crop(jax.random.split(jax.random.key(5), 200)))
    assert (y0 >= 0).all() and (x0 >= 0).all()
    assert (y0 + h <= H).all() and (x0 + w <= W).all()
    assert (h >= 1).all() and (w >= 1).all()
    assert np.all(y0 == np.round(y0)) and np.all(h == np.round(h))
    area = h * w / (H * W)
    assert area.min() >= 0.2 * 0.7 and area.max() <= 1.0  # rounding of the sides
    assert len(set(zip(y0, x0, h, w))) > 100
    assert out.shape == (200, 8, 8, 3)
    # Samples lie at continuous positions u in (y0, y0 + h); the ramp's value there is u + 0.5.
    lower = lambda v: v.reshape(-1, 1, 1) + 0.5 - 1e-4  # noqa: E731
    upper = lambda v, size: (v + size).reshape(-1, 1, 1) + 0.5 + 1e-4  # noqa: E731
    assert (out[..., 0] > lower(y0)).all() and (out[..., 0] < upper(y0, h)).all()
    assert (out[..., 1] > lower(x0)).all() and (out[..., 1] < upper(x0, w)).all()


def test_scale_augment_is_resize_then_crop():
    # A linear ramp survives bilinear resampling exactly, so the output must be the ramp of the
    # resized image at an integer offset: value(x_out) = (x_out + 0.5 + offset) / factor - 0.5 + 1.
    image = coordinate_image(12, 16)
    scale = jax.jit(jax.vmap(functools.partial(augment.scale_augment, size=10,
                                               short_side_range=(14, 20)), in_axes=(0, None)))
    for out in np.asarray(scale(jax.random.split(jax.random.key(7), 6), image)):
        steps_y = np.diff(out[2:-2, 5, 0])
        steps_x = np.diff(out[5, 2:-2, 1])
        factor_y, factor_x = 1 / steps_y.mean(), 1 / steps_x.mean()
        short_side = 12 * factor_y
        assert 14 - 1e-3 <= short_side <= 20 + 1e-3
        assert abs(short_side - round(short_side)) < 1e-3
        np.testing.assert_allclose(factor_x, round(16 * factor_y) / 16, rtol=1e-3)
        offset_y = (out[3, 5, 0] - 1 + 0.5) * factor_y - 0.5 - 3
        assert abs(offset_y - round(offset_y)) < 1e-3 and -1e-3 <= offset_y


def test_resize_and_center_crop_shapes():
    image = coordinate_image()
    assert augment.resize(image, size=(8, 10)).shape == (8, 10, 3)
    crop = np.asarray(augment.center_crop(image, size=(10, 10)))
    assert crop[0, 0, 0] == 4 and crop[0, 0, 1] == 6


def test_affine_identity_parameters_are_identity(key):
    image = jax.random.uniform(key, (H, W, 3))
    np.testing.assert_allclose(augment.random_affine(key, image), image, atol=1e-6)


def test_invert_affine_and_transform_points(key):
    matrix = sampling.centered_affine_matrix((8.0, 6.0), degrees=33.0, translate=(2.0, -1.0),
                                             scale=1.3, shear=(0.2, -0.1))
    np.testing.assert_allclose(sampling.invert_affine(matrix) @ matrix, np.eye(3), atol=1e-5)
    points = jax.random.uniform(key, (5, 2)) * 10
    back = sampling.transform_points(sampling.invert_affine(matrix),
                                     sampling.transform_points(matrix, points))
    np.testing.assert_allclose(back, points, atol=1e-4)


@pytest.mark.parametrize("call, message", [
    (lambda k: augment.random_crop(k, jnp.zeros((2, 8, 8, 3)), padding=1), "image"),
    (lambda k: augment.random_crop(k, jnp.zeros((8, 8, 3)), size=12), "size"),
    (lambda k: augment.random_crop(k, jnp.zeros((8, 8, 3)), padding=-1), "padding"),
    (lambda k: augment.random_crop(k, jnp.zeros((8, 8, 3)), padding_mode="wrap"), "padding_mode"),
    (lambda k: augment.random_resized_crop(k, jnp.zeros((8, 8, 3)), size=4, scale=(0.5, 0.1)),
     "scale"),
    (lambda k: augment.scale_augment(k, jnp.zeros((8, 8, 3)), size=8, short_side_range=(4, 9)),
     "short_side_range"),
    (lambda k: augment.random_affine(k, jnp.zeros((8, 8, 3)), degrees=-1), "degrees"),
])
def test_bad_arguments_raise_value_error_naming_them(key, call, message):
    with pytest.raises(ValueError, match=message):
        call(key)
