"""spectral_backward_conv: lax.conv_general_dilated's values, and its gradients through the DFT."""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference  # tests/reference.py (tests/ is on sys.path through conftest.py)
from jax import lax

from jaxvision.models.spectral_conv import spectral_backward_conv

NHWC = ("NHWC", "HWIO", "NHWC")


def _conv_pair(window_strides=(1, 1), padding=((1, 1), (1, 1)), **kwargs):
    """(ours, lax's) as functions of (x, w), with flax's NHWC/HWIO dimension numbers."""

    def make(conv):
        def apply(x, w):
            numbers = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
            return conv(x, w, window_strides, padding, dimension_numbers=numbers, **kwargs)

        return apply

    return make(spectral_backward_conv), make(lax.conv_general_dilated)


def _values_and_gradients(conv, x, w, weights):
    """The convolution, and the gradients of a weighted nonlinear loss of it (under jit)."""
    loss = lambda x, w: jnp.sum(jnp.tanh(conv(x, w)) * weights)  # noqa: E731
    return jax.jit(conv)(x, w), jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)


def _relative_error(ours, expected):
    return float(jnp.max(jnp.abs(ours - expected)) / jnp.max(jnp.abs(expected)))


@pytest.mark.parametrize(
    "batch,height,width,in_features,out_features,kernel,padding",
    [
        (3, 14, 14, 20, 50, (5, 5), ((2, 2), (2, 2))),  # LeNet-5's conv2
        (2, 9, 12, 3, 4, (3, 5), ((0, 1), (2, 0))),  # asymmetric padding, non-square kernel
        (2, 8, 7, 3, 4, (3, 3), "SAME"),  # odd width: no Nyquist bin
        (1, 10, 10, 2, 6, (5, 5), "VALID"),
        (2, 6, 6, 4, 3, (1, 1), ((0, 0), (0, 0))),
    ],
)
def test_values_equal_lax_and_gradients_match_autodiff(batch, height, width, in_features, out_features, kernel,
                                                       padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, height, width, in_features)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(*kernel, in_features, out_features)), jnp.float32)
    ours, lax_conv = _conv_pair(padding=padding)
    weights = jnp.asarray(rng.normal(size=lax_conv(x, w).shape), jnp.float32)
    values, (x_grad, w_grad) = _values_and_gradients(ours, x, w, weights)
    ref_values, (ref_x_grad, ref_w_grad) = _values_and_gradients(lax_conv, x, w, weights)
    np.testing.assert_array_equal(values, ref_values)  # the forward is lax's convolution itself
    assert _relative_error(x_grad, ref_x_grad) < 1e-5
    assert _relative_error(w_grad, ref_w_grad) < 1e-5


def test_gradients_are_as_close_to_float64_as_autodiffs():
    """Against a float64 numpy reference, the DFT gradients are within a small factor of float32
    autodiff's own error (the DFT sums more terms, in another order)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 14, 14, 20)).astype(np.float32)
    w = (rng.normal(size=(5, 5, 20, 50)) / 10).astype(np.float32)
    cotangent = rng.normal(size=(4, 14, 14, 50)).astype(np.float32)
    padding = ((2, 2), (2, 2))
    truth = reference.conv2d_gradients(x, w, cotangent, padding)
    errors = {}
    for name, conv in zip(("dft", "autodiff"), _conv_pair(padding=padding)):
        grads = jax.grad(lambda x, w: jnp.sum(conv(x, w) * cotangent), argnums=(0, 1))(x, w)
        errors[name] = [_relative_error(np.asarray(g, np.float64), t) for g, t in zip(grads, truth)]
    assert max(errors["autodiff"]) < 1e-5, errors
    assert max(errors["dft"]) < 5 * max(errors["autodiff"]) + 1e-6, errors


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_strides": (2, 2)},
        {"rhs_dilation": (2, 2)},
        {"feature_group_count": 2},
    ],
)
def test_cases_it_does_not_cover_are_lax_with_its_own_gradient(kwargs):
    rng = np.random.default_rng(2)
    groups = kwargs.get("feature_group_count", 1)
    x = jnp.asarray(rng.normal(size=(2, 9, 9, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 4 // groups, 6)), jnp.float32)
    ours, lax_conv = _conv_pair(**kwargs)
    weights = jnp.asarray(rng.normal(size=lax_conv(x, w).shape), jnp.float32)
    ours_out, ref_out = (_values_and_gradients(conv, x, w, weights) for conv in (ours, lax_conv))
    jax.tree.map(np.testing.assert_array_equal, ours_out, ref_out)


def test_vmap_over_an_extra_axis_agrees_with_a_loop():
    rng = np.random.default_rng(3)
    xs = jnp.asarray(rng.normal(size=(3, 2, 8, 8, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(5, 5, 3, 4)), jnp.float32)
    ours, _ = _conv_pair(padding=((2, 2), (2, 2)))
    grad = jax.grad(lambda x, w: jnp.sum(jnp.tanh(ours(x, w))), argnums=(0, 1))
    batched = jax.vmap(grad, in_axes=(0, None))(xs, w)
    looped = [grad(x, w) for x in xs]
    for index, (x_grad, w_grad) in enumerate(looped):
        np.testing.assert_allclose(batched[0][index], x_grad, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched[1][index], w_grad, rtol=1e-5, atol=1e-5)


def test_data_parallel_gradient_needs_no_all_gather():
    """The transforms are dot_generals, which XLA splits along a sharded batch (an FFT it does not:
    it gathers the whole batch first). Checked in a process with 2 CPU devices."""
    script = textwrap.dedent("""
        import jax, jax.numpy as jnp
        from jax import lax
        from jax.sharding import NamedSharding, PartitionSpec
        from jaxvision.models.spectral_conv import spectral_backward_conv
        mesh = jax.make_mesh((2,), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))
        x = jax.device_put(jnp.ones((8, 14, 14, 20)), NamedSharding(mesh, PartitionSpec("batch")))
        w = jax.device_put(jnp.ones((5, 5, 20, 50)), NamedSharding(mesh, PartitionSpec()))
        numbers = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
        loss = lambda x, w: jnp.sum(jnp.tanh(spectral_backward_conv(x, w, (1, 1), ((2, 2), (2, 2)),
                                                                   dimension_numbers=numbers)))
        text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).compile().as_text()
        print("all-gather" in text, "all-reduce" in text)
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # No gather of the batch; the kernel gradient's sum over the batch is the one all-reduce.
    assert result.stdout.split() == ["False", "True"], result.stdout


def test_in_a_flax_conv_the_parameters_and_outputs_are_the_plain_conv_ones():
    import flax.linen as nn

    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 14, 14, 20)), jnp.float32)
    plain = nn.Conv(50, (5, 5), padding=2)
    ours = plain.clone(conv_general_dilated=spectral_backward_conv)
    variables = plain.init(jax.random.key(0), x)
    loss = lambda module, v: jnp.sum(jnp.tanh(module.apply(v, x)))  # noqa: E731
    np.testing.assert_array_equal(ours.apply(variables, x), plain.apply(variables, x))
    grads, ref_grads = (jax.jit(jax.grad(functools.partial(loss, m)))(variables) for m in (ours, plain))
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=2e-5), grads, ref_grads)
