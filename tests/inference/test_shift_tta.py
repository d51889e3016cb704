"""Small-shift TTA (the digits' TTA): exact translations with edge fill, and the average."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.inference import tta


def test_shift_moves_pixels_and_repeats_the_edge():
    images = jnp.arange(16.0).reshape((1, 4, 4, 1))
    down = np.asarray(tta.shift(images, 1, 0))[0, :, :, 0]
    np.testing.assert_array_equal(down[1:], np.arange(16.0).reshape(4, 4)[:-1])
    np.testing.assert_array_equal(down[0], np.arange(4.0))  # the top row repeats
    left = np.asarray(tta.shift(images, 0, -2))[0, :, :, 0]
    np.testing.assert_array_equal(left[:, :2], np.arange(16.0).reshape(4, 4)[:, 2:])
    np.testing.assert_array_equal(tta.shift(images, 0, 0), images)
    with pytest.raises(ValueError, match="smaller than the images"):
        tta.shift(images, 4, 0)


def test_shift_average_is_exact_for_a_known_model():
    images = jax.random.normal(jax.random.key(0), (3, 6, 6, 2))
    weights = jax.random.normal(jax.random.key(1), (6 * 6 * 2, 5))

    def apply_fn(x):
        return x.reshape((x.shape[0], -1)) @ weights

    expected = np.mean([jax.nn.softmax(apply_fn(tta.shift(images, dy, dx))) for dy, dx in tta.DEFAULT_SHIFTS], axis=0)
    np.testing.assert_allclose(tta.shift_average(apply_fn, images), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tta.shift_average(apply_fn, images, shifts=((0, 0),)),
                               jax.nn.softmax(apply_fn(images)), rtol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        tta.shift_average(apply_fn, images, shifts=())
