"""jaxvision.ops.pooling: max pool with argmax vs a loop, unpooling, jit, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference  # tests/reference.py (tests/ is on sys.path through conftest.py)
from jaxvision.ops.pooling import max_pool_with_argmax, max_unpool


@pytest.mark.parametrize("window, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool_with_argmax_matches_loop(window, stride, padding):
    x = np.random.default_rng(0).normal(size=(2, 7, 9, 3)).astype(np.float32)
    x[0, 0, 0, 0] = x[0, 0, 1, 0] = 10.0  # a tie: the first in row-major order wins
    x[1, 3, 3, 1] = np.nan  # NaN wins, as torch
    values, indices = jax.jit(lambda x: max_pool_with_argmax(x, window, strides=stride, padding=padding))(x)
    exp_values, exp_indices = reference.max_pool_with_argmax(x, window, stride, padding)
    np.testing.assert_array_equal(values, exp_values)
    np.testing.assert_array_equal(indices, exp_indices)


def test_unpool_inverts_pool_and_gradients_flow():
    x = np.random.default_rng(1).normal(size=(1, 4, 6, 2)).astype(np.float32)
    values, indices = max_pool_with_argmax(x, 2)
    restored = np.asarray(max_unpool(values, indices, (4, 6)))
    kept = restored != 0
    assert kept.sum() == values.size
    np.testing.assert_array_equal(restored[kept], x[kept])
    # re-pooling the unpooled map gives the same values and positions
    again = max_pool_with_argmax(jnp.where(kept, restored, -jnp.inf), 2)
    np.testing.assert_array_equal(again[1], indices)
    grad = jax.grad(lambda x: max_pool_with_argmax(x, 2)[0].sum())(x)
    np.testing.assert_array_equal(np.asarray(grad) != 0, kept)
    grad_values = jax.grad(lambda v: max_unpool(v, indices, (4, 6)).sum())(values)
    np.testing.assert_array_equal(grad_values, np.ones_like(values))


def test_input_checks():
    with pytest.raises(ValueError, match="x"):
        max_pool_with_argmax(np.zeros((4, 4, 1)), 2)
    with pytest.raises(ValueError, match="padding"):
        max_pool_with_argmax(np.zeros((1, 4, 4, 1)), 2, padding=2)
    with pytest.raises(ValueError, match="indices"):
        max_unpool(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 2), np.int32), (4, 4))
    with pytest.raises(TypeError, match="indices"):
        max_unpool(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 1)), (4, 4))
