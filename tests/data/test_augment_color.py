"""Photometric transforms, RandAugment ops and erasing: value ranges, references, exact identities."""

import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from jaxvision.data import augment
from jaxvision.data.augment import randaugment

KEYS = jax.random.split(jax.random.key(11), 16)


def random_image(shape=(16, 16, 3), seed=0):
    return jax.random.uniform(jax.random.key(seed), shape)


def uint8_image(seed=0, low=40, high=200):
    rng = np.random.default_rng(seed)
    return rng.integers(low, high, size=(16, 16, 3), dtype=np.uint8)


def test_color_jitter_keeps_a_0_255_value_range():
    # [0, 1] images are checked with every random transform in test_augment_geometric.py
    jitter = jax.jit(jax.vmap(functools.partial(
        augment.color_jitter, brightness=0.9, contrast=0.9, saturation=0.9, hue=0.5,
        max_value=255.0), in_axes=(0, None)))
    out = np.asarray(jitter(KEYS, random_image() * 255.0))
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert out.max() > 0.9 * 255.0  # bright draws actually reach the top


def test_every_randaugment_op_keeps_the_value_range_at_full_magnitude():
    table = randaugment.make_randaugment_ops((16, 16, 3), magnitude=30)
    assert len(table) == len(augment.RANDAUGMENT_OPS)

    @jax.jit
    def every_op(image):
        return jnp.stack([pixel_fn(augment.warp(image, matrix_fn(sign), (16, 16)), sign)
                          for matrix_fn, pixel_fn in table for sign in (-1.0, 1.0)])

    out = np.asarray(every_op(random_image(seed=2)))
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert len({o.tobytes() for o in out}) >= 20  # signed ops differ by sign, identity repeats


def test_rgb_hsv_match_colorsys_and_round_trip():
    rgb = np.asarray(random_image((6, 7, 3), seed=3))
    hsv, back = jax.jit(lambda x: (augment.rgb_to_hsv(x), augment.hsv_to_rgb(augment.rgb_to_hsv(x))))(
        jnp.asarray(rgb))
    expected = np.array([colorsys.rgb_to_hsv(*pixel) for pixel in rgb.reshape(-1, 3)]).reshape(hsv.shape)
    np.testing.assert_allclose(hsv, expected, atol=1e-5)
    np.testing.assert_allclose(back, rgb, atol=1e-5)


@jax.jit
def adjusted(image):
    unchanged = [adjust(image, 1.0) for adjust in (augment.adjust_brightness, augment.adjust_contrast,
                                                   augment.adjust_saturation,
                                                   randaugment.adjust_sharpness)]
    unchanged += [augment.adjust_hue(image, 0.0),
                  augment.adjust_hue(augment.adjust_hue(image, 0.3), -0.3)]
    return (unchanged, augment.adjust_brightness(image, 0.0), augment.adjust_saturation(image, 0.0),
            augment.adjust_contrast(image, 0.0))


def test_adjustment_identities():
    image = random_image(seed=4)
    unchanged, black, gray, flat = jax.tree.map(np.asarray, adjusted(image))
    for out in unchanged:
        np.testing.assert_allclose(out, image, atol=1e-5)
    np.testing.assert_array_equal(black, np.zeros(image.shape))
    np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-6)
    np.testing.assert_allclose(gray[..., 0], image @ jnp.array([0.2989, 0.587, 0.114]), atol=1e-6)
    np.testing.assert_allclose(flat, np.full(image.shape, flat[0, 0, 0]), atol=1e-6)


def levels_to_float(levels):
    return jnp.asarray(levels, jnp.float32) / 255.0


def to_levels(image):
    return np.round(np.asarray(image) * 255.0).astype(np.int64)


def test_equalize_matches_pil():
    for seed, (low, high) in enumerate([(40, 200), (100, 110), (0, 256)]):
        levels = uint8_image(seed, low, high)
        expected = np.asarray(ImageOps.equalize(Image.fromarray(levels)))
        np.testing.assert_array_equal(to_levels(jax.jit(augment.equalize)(levels_to_float(levels))),
                                      expected)


def test_posterize_solarize_sharpness_autocontrast_match_pil():
    levels = uint8_image(5)
    image = levels_to_float(levels)
    pil = Image.fromarray(levels)
    for bits in (1, 4, 7, 8):
        np.testing.assert_array_equal(to_levels(augment.posterize(image, bits)),
                                      np.asarray(ImageOps.posterize(pil, bits)))
    np.testing.assert_array_equal(to_levels(augment.solarize(image, 128 / 255.0)),
                                  np.asarray(ImageOps.solarize(pil, 128)))
    for factor in (0.0, 0.5, 1.7):
        sharp = to_levels(jax.jit(augment.adjust_sharpness)(image, factor))
        expected = np.asarray(ImageEnhance.Sharpness(pil).enhance(factor)).astype(np.int64)
        assert np.abs(sharp - expected).max() <= 1
    contrast = to_levels(augment.autocontrast(image))
    assert np.abs(contrast - np.asarray(ImageOps.autocontrast(pil))).max() <= 1


def test_pca_lighting_adds_one_rgb_offset(key):
    image = random_image(seed=6)
    out = np.asarray(augment.pca_lighting(key, image, alphastd=0.1))
    offset = out - np.asarray(image)
    np.testing.assert_allclose(offset, np.broadcast_to(offset[:1, :1], offset.shape), atol=1e-6)
    alpha = np.asarray(jax.random.normal(key, (3,))) * 0.1
    expected = np.asarray(augment.IMAGENET_PCA_EIGVEC) @ (alpha * np.asarray(augment.IMAGENET_PCA_EIGVAL))
    np.testing.assert_allclose(offset[0, 0], expected, atol=1e-6)


def test_fit_pca_lighting_recovers_the_covariance_and_streams():
    rng = np.random.default_rng(0)
    mixing = np.array([[0.3, 0.1, 0.0], [0.1, 0.2, 0.05], [0.0, 0.05, 0.1]])
    pixels = rng.normal(size=(4000, 3)) @ mixing + 0.5
    images = pixels.reshape(40, 10, 10, 3)
    eigval, eigvec = augment.fit_pca_lighting(images)
    covariance = np.cov(pixels, rowvar=False)
    np.testing.assert_allclose(eigvec @ np.diag(eigval) @ eigvec.T, covariance, atol=1e-6)
    assert np.all(np.diff(eigval) <= 0)
    streamed_val, streamed_vec = augment.fit_pca_lighting(iter(np.split(images, 4)))
    np.testing.assert_allclose(streamed_val, eigval, rtol=1e-5)
    np.testing.assert_allclose(np.abs(streamed_vec), np.abs(eigvec), atol=1e-5)


def test_cutout_erases_one_square_at_most():
    image = random_image(seed=7) + 1.0  # no pixel is 0 before cutout
    cut = jax.jit(jax.vmap(functools.partial(augment.cutout, size=6), in_axes=(0, None)))
    out = np.asarray(cut(KEYS, image))
    for erased in (out == 0).all(axis=-1):
        rows, cols = np.nonzero(erased)
        assert 0 < len(rows) <= 36
        assert len(rows) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # a solid rectangle
        assert np.ptp(rows) + 1 <= 6 and np.ptp(cols) + 1 <= 6


def test_random_erasing_area_in_range_and_p_zero_is_identity():
    image = random_image(seed=8) + 1.0
    erase = jax.jit(jax.vmap(functools.partial(augment.random_erasing, p=1.0, scale=(0.1, 0.3),
                                               value=0.0), in_axes=(0, None)))
    out = np.asarray(erase(KEYS, image))
    fractions = (out == 0).all(axis=-1).mean(axis=(1, 2))
    assert (fractions > 0).sum() >= 12  # nearly every draw finds a rectangle that fits
    assert fractions.max() <= 0.3 * 1.25  # rounding of the sides
    never = jax.jit(functools.partial(augment.random_erasing, p=0.0, value="random"))
    np.testing.assert_array_equal(never(KEYS[0], image), image)


@pytest.mark.parametrize("call, message", [
    (lambda k: augment.color_jitter(k, jnp.zeros((8, 8, 3)), hue=0.7), "hue"),
    (lambda k: augment.color_jitter(k, jnp.zeros((8, 8, 3)), brightness=-1), "brightness"),
    (lambda k: augment.pca_lighting(k, jnp.zeros((8, 8, 1))), "RGB"),
    (lambda k: augment.rand_augment(k, jnp.zeros((8, 8, 3)), magnitude=31), "magnitude"),
    (lambda k: augment.rand_augment(k, jnp.zeros((8, 8, 3)), ops=("blur",)), "ops"),
    (lambda k: augment.cutout(k, jnp.zeros((8, 8, 3)), size=0), "size"),
    (lambda k: augment.random_erasing(k, jnp.zeros((8, 8, 3)), value="noise"), "value"),
])
def test_bad_arguments_raise_value_error_naming_them(key, call, message):
    with pytest.raises(ValueError, match=message):
        call(key)
