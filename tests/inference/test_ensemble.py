"""Ensemble averaging on fake parameter sets with known outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import inference


def apply_fn(params, images):
    """Logits = mean pixel * w + b: three members give three known probability vectors."""
    mean = images.mean(axis=(1, 2, 3))[:, None]  # [B, 1]
    return mean * params["w"][None, :] + params["b"][None, :]


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


MEMBERS = [{"w": np.array([1.0, 0.0, -1.0], np.float32), "b": np.zeros(3, np.float32)},
           {"w": np.array([0.0, 2.0, 0.0], np.float32), "b": np.array([0.5, 0.0, 0.0], np.float32)},
           {"w": np.array([-1.0, 1.0, 3.0], np.float32), "b": np.ones(3, np.float32)}]


@pytest.mark.parametrize("parallel", [False, True])
def test_ensemble_average_is_exact(parallel):
    images = jnp.array([0.5, 2.0]).reshape(2, 1, 1, 1) * jnp.ones((2, 4, 4, 3))
    stacked = inference.stack_params(MEMBERS)
    assert stacked["w"].shape == (3, 3)
    out = jax.jit(lambda p, x: inference.ensemble_average(apply_fn, p, x, parallel=parallel))(
        stacked, images)
    means = np.array([[0.5], [2.0]])
    expected = np.mean([softmax(means * m["w"][None] + m["b"][None]) for m in MEMBERS], axis=0)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-6)


def test_stack_params_checks():
    with pytest.raises(ValueError, match="params_list"):
        inference.stack_params([])
    with pytest.raises(ValueError, match="structure"):
        inference.stack_params([{"w": np.zeros(2)}, {"v": np.zeros(2)}])
    with pytest.raises(ValueError, match="stacked_params"):
        inference.ensemble_average(apply_fn, {"w": np.zeros((2, 3)), "b": np.zeros((3, 3))},
                                   jnp.zeros((1, 2, 2, 3)))
