"""Shared layers: pooling against PyTorch's (ceil_mode, padding, adaptive bins, gradients), the
matmul form of 1x1/patch convolutions against lax (the torchvision parameter layout is tested
with the converter, in test_torchvision_weights.py)."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import layers

torch = pytest.importorskip("torch")


def _to_torch(x):
    return torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2)  # NHWC -> NCHW


def _from_torch(t):
    return t.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("size", [13, 14, 15, 28])
@pytest.mark.parametrize("window,stride,padding,ceil_mode", [(3, 2, 0, True), (3, 2, 1, False), (2, 2, 0, True), (3, 1, 1, True)])
def test_max_pool_matches_torch(size, window, stride, padding, ceil_mode):
    x = np.random.default_rng(0).normal(size=(1, size, size + 1, 2)).astype(np.float32)
    ours = layers.MaxPool(window, stride, padding, ceil_mode).apply({}, jnp.asarray(x))
    theirs = torch.nn.functional.max_pool2d(_to_torch(x), window, stride, padding, ceil_mode=ceil_mode)
    np.testing.assert_array_equal(np.asarray(ours), _from_torch(theirs))


@pytest.mark.parametrize("size", [7, 9, 10])
def test_avg_pool_ceil_without_padding_count_matches_torch(size):
    x = np.random.default_rng(1).normal(size=(1, size, size, 2)).astype(np.float32)
    ours = layers.AvgPool(2, 2, ceil_mode=True, count_include_pad=False).apply({}, jnp.asarray(x))
    theirs = torch.nn.functional.avg_pool2d(_to_torch(x), 2, 2, ceil_mode=True, count_include_pad=False)
    # atol: float32 rounding of a sum of N(0, 1) entries, which a cancelling window can leave near 0
    # (on an AMD EPYC, XLA's summation order gave -0.01346333 against torch's -0.01346332: rtol 1.1e-6).
    # A wrong count (the bug this guards against) is off by 25-50% of a window's mean.
    np.testing.assert_allclose(np.asarray(ours), _from_torch(theirs), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size,out", [(6, 6), (12, 6), (13, 6), (1, 7), (5, 7), (9, 4)])
def test_adaptive_avg_pool_matches_torch(size, out):
    x = np.random.default_rng(2).normal(size=(2, size, size, 3)).astype(np.float32)
    ours = layers.AdaptiveAvgPool(out).apply({}, jnp.asarray(x))
    theirs = torch.nn.functional.adaptive_avg_pool2d(_to_torch(x), out)
    np.testing.assert_allclose(np.asarray(ours), _from_torch(theirs), rtol=1e-5, atol=1e-6)


def test_max_pool_gradient_matches_torch_without_ties():
    import jax

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 15, 14, 3)).astype(np.float32)
    weights = rng.normal(size=(2, 8, 7, 3)).astype(np.float32)
    pool = layers.MaxPool(3, 2, padding=1)
    ours = jax.grad(lambda v: (pool.apply({}, v) * weights).sum())(jnp.asarray(x))
    x_torch = _to_torch(x).requires_grad_()
    out = torch.nn.functional.max_pool2d(x_torch, 3, 2, 1)
    (out * _to_torch(weights)).sum().backward()
    np.testing.assert_allclose(np.asarray(ours), _from_torch(x_torch.grad), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "kernel,stride,padding,groups",
    [(1, 1, 0, 1), (1, 2, 0, 1), (4, 4, 0, 1), (3, 1, 1, 1), (3, 2, 1, 1), (1, 1, 0, 2)],
)
def test_matmul_conv_equals_lax_conv_with_gradients(kernel, stride, padding, groups):
    import flax.linen as nn
    import jax

    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 9, 8, 4)).astype(np.float32))
    reference = nn.Conv(6, (kernel, kernel), strides=stride, padding=padding, feature_group_count=groups)
    ours = reference.clone(conv_general_dilated=layers.matmul_conv)
    variables = reference.init(jax.random.key(0), x)

    def loss(module, v, x):
        return (module.apply(v, x) ** 2).sum()

    np.testing.assert_allclose(ours.apply(variables, x), reference.apply(variables, x), rtol=1e-5, atol=1e-5)
    grads_ours = jax.grad(functools.partial(loss, ours), argnums=(0, 1))(variables, x)
    grads_reference = jax.grad(functools.partial(loss, reference), argnums=(0, 1))(variables, x)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-4), grads_ours, grads_reference
    )


@pytest.mark.parametrize("features,multiple,groups", [(6, 4, 1), (8, 4, 1), (5, 8, 1), (6, 4, 2)])
def test_padded_features_conv_equals_lax_conv_with_gradients_under_jit(features, multiple, groups):
    import flax.linen as nn
    import jax

    x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 7, 6, 4)).astype(np.float32))
    reference = nn.Conv(features, (3, 3), padding=1, feature_group_count=groups)
    ours = reference.clone(conv_general_dilated=layers.padded_features_conv(multiple))
    variables = reference.init(jax.random.key(0), x)

    def loss(module, v, x):
        return (jnp.tanh(module.apply(v, x)) * jnp.arange(features).reshape(1, 1, 1, -1)).sum()

    out = jax.jit(ours.apply)(variables, x)
    assert out.shape == (2, 7, 6, features)
    np.testing.assert_allclose(out, reference.apply(variables, x), rtol=1e-5, atol=1e-5)
    grads_ours = jax.jit(jax.grad(functools.partial(loss, ours), argnums=(0, 1)))(variables, x)
    grads_reference = jax.grad(functools.partial(loss, reference), argnums=(0, 1))(variables, x)
    assert grads_ours[0]["params"]["kernel"].shape == (3, 3, 4 // groups, features)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-4), grads_ours, grads_reference
    )


@pytest.mark.parametrize("x_shape", [(5, 4), (2, 3, 4), (2, 3, 2, 4)])
def test_flat_matmul_equals_matmul_with_gradients_under_jit_and_vmap(x_shape):
    import jax

    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=x_shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(4, 3)).astype(np.float32))
    cotangent = jnp.asarray(rng.normal(size=(*x_shape[:-1], 3)).astype(np.float32))

    def loss(f, x, w):
        return (jnp.tanh(f(x, w)) * cotangent).sum()  # a non-linear loss: the cotangent is not all ones

    np.testing.assert_allclose(jax.jit(layers.flat_matmul)(x, w), x @ w, rtol=1e-6, atol=1e-6)
    ours = jax.jit(jax.grad(functools.partial(loss, layers.flat_matmul), argnums=(0, 1)))(x, w)
    reference = jax.grad(functools.partial(loss, jnp.matmul), argnums=(0, 1))(x, w)
    for a, b in zip(ours, reference):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # vmap over a leading axis of x with a shared w: gradient w.r.t. w sums over the mapped axis.
    per_example = jax.vmap(jax.grad(lambda x, w: (layers.flat_matmul(x, w) ** 2).sum(), argnums=1), (0, None))(x, w)
    expected = jax.vmap(jax.grad(lambda x, w: ((x @ w) ** 2).sum(), argnums=1), (0, None))(x, w)
    np.testing.assert_allclose(per_example, expected, rtol=1e-5, atol=1e-5)


def test_matmul_dot_general_in_dense_and_its_fallback():
    import flax.linen as nn
    import jax
    from jax import lax

    x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 5, 4)).astype(np.float32))
    reference = nn.Dense(3)
    ours = nn.Dense(3, dot_general=layers.matmul_dot_general)
    variables = reference.init(jax.random.key(0), x)
    np.testing.assert_allclose(ours.apply(variables, x), reference.apply(variables, x), rtol=1e-6)
    grad = jax.grad(lambda v, m: (m.apply(v, x) ** 3).sum())
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5), grad(variables, ours), grad(variables, reference)
    )
    # Batched contractions are not Dense's case and go to lax.dot_general unchanged.
    a, b = x, jnp.swapaxes(x, 1, 2)
    numbers = (((2,), (1,)), ((0,), (0,)))
    np.testing.assert_array_equal(layers.matmul_dot_general(a, b, numbers), lax.dot_general(a, b, numbers))


@pytest.mark.parametrize("window,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_max_pool_gradient_matches_torch_with_ties_and_under_jit_and_vmap(window, stride, padding):
    """After a ReLU most windows tie at zero: the gradient goes to the first maximal entry, as in
    PyTorch, and not split among the ties. Also checked under jit and vmap (one image at a time)."""
    import jax

    rng = np.random.default_rng(5)
    x = np.maximum(rng.normal(size=(2, 9, 10, 3)), 0).astype(np.float32)
    x[0, :4, :4, :] = 0.0  # whole windows of ties
    pool = layers.MaxPool(window, stride, padding)
    out_shape = pool.apply({}, jnp.asarray(x)).shape
    weights = rng.normal(size=out_shape).astype(np.float32)

    def loss(v, w):
        return (pool.apply({}, v) * w).sum()

    ours = jax.jit(jax.grad(loss))(jnp.asarray(x), jnp.asarray(weights))
    per_image = jax.vmap(jax.grad(lambda v, w: loss(v[None], w[None])))(jnp.asarray(x), jnp.asarray(weights))
    x_torch = _to_torch(x).requires_grad_()
    out = torch.nn.functional.max_pool2d(x_torch, window, stride, padding)
    (out * _to_torch(weights)).sum().backward()
    expected = _from_torch(x_torch.grad)
    # Entries that win several overlapping windows sum their cotangents in another order.
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(ours) != 0, expected != 0)
    np.testing.assert_array_equal(np.asarray(per_image), np.asarray(ours))
    assert (np.asarray(ours) != 0).sum() <= weights.size  # one entry per output, never split


def test_max_pool_propagates_nan_like_torch():
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 1, 2, 0] = np.nan
    ours = np.asarray(layers.MaxPool(2, 2).apply({}, jnp.asarray(x)))
    theirs = _from_torch(torch.nn.functional.max_pool2d(_to_torch(x), 2, 2))
    np.testing.assert_array_equal(ours, theirs)
    assert np.isnan(ours[0, 0, 1, 0]) and not np.isnan(ours[0, 0, 0, 0])


def _traced_convs(model, images):
    """(output features, inside a custom_vjp?) of each convolution XLA is asked for when `model` is
    traced (a custom_vjp around a convolution: the spectral backward's)."""
    import jax

    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
    return list(_convs_in(jax.make_jaxpr(lambda v: model.apply(v, images, train=False))(variables).jaxpr))


def _convs_in(jaxpr, inside_custom_vjp=False):
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            yield eqn.invars[1].aval.shape[-1], inside_custom_vjp
        for value in eqn.params.values():  # pjit and custom_vjp bodies
            inner = getattr(value, "jaxpr", None)
            if inner is not None:
                yield from _convs_in(inner if hasattr(inner, "eqns") else inner.jaxpr,
                                     inside_custom_vjp or eqn.primitive.name == "custom_vjp_call")


def _conv_output_widths(model, images):
    return sorted(width for width, _ in _traced_convs(model, images))


@pytest.mark.parametrize(
    "backend,has_avx512,widths,spectral",
    [("cpu", True, [20, 64], False), ("cpu", False, [20, 50], True), ("gpu", True, [20, 50], False)],
)
def test_lenet5_table_conv2_kernels_follow_backend_and_processor(monkeypatch, backend, has_avx512, widths, spectral):
    import jax

    from jaxvision import models
    from jaxvision.training import machine

    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(machine, "cpu_has_flag", lambda flag: has_avx512 and flag == "avx512f")
    model = models.create_model("lenet5_table", num_classes=10)
    images = jnp.zeros((2, 28, 28, 1), jnp.float32)
    convs = _traced_convs(model, images)
    assert sorted(width for width, _ in convs) == widths
    assert any(inside_custom_vjp for _, inside_custom_vjp in convs) == spectral


def test_lenet_explicit_multiples_override_the_tuned_choice_and_lengths_are_checked(monkeypatch):
    from jaxvision.models import lenet
    from jaxvision.training import machine

    monkeypatch.setattr(machine, "cpu_has_flag", lambda flag: False)
    images = jnp.zeros((2, 28, 28, 1), jnp.float32)
    explicit = lenet.lenet5_table(num_classes=10, conv_feature_multiples=(32, 64))
    assert _conv_output_widths(explicit, images) == [32, 64]
    with pytest.raises(ValueError, match="cpu_tuned_convs .* one entry per conv"):
        _conv_output_widths(lenet.lenet5_table(num_classes=10, cpu_tuned_convs=(True,)), images)


def test_cpu_has_flag_reads_the_first_processor(monkeypatch):
    from jaxvision.training import machine

    monkeypatch.setattr(machine, "_cpuinfo_fields", lambda: {"flags": "fpu avx2 avx512f"})
    assert machine.cpu_has_flag("avx512f") and not machine.cpu_has_flag("avx512")
    monkeypatch.setattr(machine, "_cpuinfo_fields", lambda: {})
    assert not machine.cpu_has_flag("avx2")
