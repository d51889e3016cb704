"""Test-time augmentation on fake models whose logits read known pixels: exact expected averages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import inference


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ramp_images(batch=2, height=8, width=10):
    values = np.arange(batch * height * width, dtype=np.float32).reshape(batch, height, width, 1)
    return jnp.asarray(values / values.size)


def corner_model(images):
    """Logits read a view's top-left, top-right and bottom-right pixels (scaled)."""
    return 5.0 * jnp.stack([images[:, 0, 0, 0], images[:, 0, -1, 0], images[:, -1, -1, 0]], axis=-1)


def expected_average(views):
    logits = [5.0 * np.stack([v[:, 0, 0, 0], v[:, 0, -1, 0], v[:, -1, -1, 0]], -1) for v in views]
    return np.mean([softmax(l) for l in logits], axis=0)


def test_flip_average_is_exact():
    images = ramp_images()
    expected = expected_average([np.asarray(images), np.asarray(images)[:, :, ::-1]])
    np.testing.assert_allclose(jax.jit(lambda x: inference.flip_average(corner_model, x))(images),
                               expected, rtol=1e-6)


def test_ten_crop_views_and_average_are_exact():
    images = np.asarray(ramp_images())
    crops = np.asarray(inference.ten_crop(jnp.asarray(images), (5, 6)))
    assert crops.shape == (10, 2, 5, 6, 1)
    # top-left, top-right, bottom-left, bottom-right of an 8x10 image, then the centre (offset 2, 2)
    origins = [(0, 0), (0, 4), (3, 0), (3, 4), (2, 2)]
    views = [images[:, y:y + 5, x:x + 6] for y, x in origins]
    views += [view[:, :, ::-1] for view in views]
    np.testing.assert_array_equal(crops, np.stack(views))
    average = jax.jit(lambda x: inference.ten_crop_average(corner_model, x, crop_size=(5, 6)))
    np.testing.assert_allclose(average(jnp.asarray(images)), expected_average(views), rtol=1e-6)


def test_multi_scale_full_views_weigh_each_scale_equally():
    # Logits that depend only on the view's size check the resize rule and the weighting.
    def size_model(images):
        height, width = images.shape[1:3]
        return jnp.broadcast_to(jnp.array([height, width, 0.0]) / 10.0, (images.shape[0], 3))

    images = jnp.zeros((2, 8, 12, 3))
    scales = (8, 10, 16)
    out = jax.jit(lambda x: inference.multi_scale_average(size_model, x, scales=scales,
                                                          views="full"))(images)
    # the short side becomes s, the long side int(s * 12 / 8) (torchvision Resize(int))
    expected = np.mean([softmax(np.array([s, int(s * 12 / 8), 0.0]) / 10.0) for s in scales], axis=0)
    np.testing.assert_allclose(out, np.broadcast_to(expected, (2, 3)), rtol=1e-6)


def test_multi_scale_ten_crop_on_constant_images_is_exact():
    images = jnp.array([0.25, 0.75]).reshape(2, 1, 1, 1) * jnp.ones((2, 8, 12, 3))

    def mean_model(views):
        mean = views.mean(axis=(1, 2, 3))
        return jnp.stack([mean, -mean], axis=-1)

    out = jax.jit(lambda x: inference.multi_scale_average(mean_model, x, scales=(8, 10),
                                                          crop_size=6))(images)
    expected = softmax(np.array([[0.25, -0.25], [0.75, -0.75]]))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert inference.resize_short_side(images, 10).shape == (2, 10, 15, 3)
    assert inference.resize_short_side(jnp.zeros((1, 12, 8, 3)), 10).shape == (1, 15, 10, 3)


def test_tta_argument_checks():
    with pytest.raises(ValueError, match="images"):
        inference.flip_average(corner_model, jnp.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="crop_size"):
        inference.ten_crop(jnp.zeros((1, 8, 8, 3)), 9)
    with pytest.raises(ValueError, match="crop_size"):
        inference.multi_scale_average(corner_model, jnp.zeros((1, 8, 8, 3)), scales=(4,),
                                      crop_size=6)
    with pytest.raises(ValueError, match="views"):
        inference.multi_scale_average(corner_model, jnp.zeros((1, 8, 8, 3)), views="five")
