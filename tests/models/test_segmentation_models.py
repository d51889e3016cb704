"""Segmentation models: bilinear transposed convolution, its exact sub-pixel form, unpooling,
output shapes of every registry entry at odd sizes, and a few real forward passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models.segmentation import (SEGMENTATION_MODELS, backbones, create_segmentation_model,
                                           list_segmentation_models, upsampling)
from jaxvision.ops.pooling import max_pool_with_argmax, max_unpool


@pytest.mark.parametrize("factor", [2, 3, 4, 8, 32])
@pytest.mark.parametrize("formulation", ["transpose", "subpixel"])
def test_bilinear_transposed_conv_equals_bilinear_resize_on_interior(factor, formulation):
    x = jnp.asarray(np.random.default_rng(factor).normal(size=(2, 5, 6, 3)), jnp.float32)
    kernel = jnp.asarray(upsampling.bilinear_kernel(factor, 3, 3))  # [k, k, 3, 3], diagonal
    upsampled = upsampling.transposed_conv(x, kernel, factor, formulation=formulation)
    resized = jax.image.resize(x, (2, 5 * factor, 6 * factor, 3), "bilinear")
    assert upsampled.shape == resized.shape
    # Interior: output pixels whose two nearest input pixels both lie inside the image.
    margin = factor // 2 + 1
    interior = (slice(None), slice(margin, -margin), slice(margin, -margin))
    np.testing.assert_allclose(upsampled[interior], resized[interior], atol=1e-5)
    # Fixed depthwise form and the "resize" formulation agree there too.
    fixed = upsampling.bilinear_upsample(x, factor, formulation=formulation)
    np.testing.assert_allclose(fixed, upsampled, atol=1e-5)
    np.testing.assert_allclose(upsampling.bilinear_upsample(x, factor, formulation="resize")[interior],
                               resized[interior], atol=1e-6)


@pytest.mark.parametrize("factor, size, groups, cin, cout", [
    (2, 4, 1, 3, 5), (2, 2, 1, 4, 4), (3, 5, 1, 2, 3), (8, 16, 4, 4, 8), (16, 32, 1, 2, 2), (2, 3, 1, 2, 2),
])
def test_subpixel_formulation_equals_transposed_convolution(factor, size, groups, cin, cout):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 5, 3, cin)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(size, size, cin // groups, cout)), jnp.float32)
    expected = upsampling.transposed_conv(x, kernel, factor, groups=groups, formulation="transpose")
    # Reference for the "transpose" form itself: flax's ConvTranspose computes the same thing.
    got = jax.jit(lambda x, k: upsampling.transposed_conv(x, k, factor, groups=groups, formulation="subpixel"))(x, kernel)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-5)
    grads = jax.grad(lambda k: jnp.sum(upsampling.transposed_conv(x, k, factor, groups=groups) ** 2))(kernel)
    assert np.isfinite(np.asarray(grads)).all()


def test_transpose_formulation_matches_lax_conv_transpose():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(1, 4, 5, 3)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(4, 4, 3, 2)), jnp.float32)
    ours = upsampling.transposed_conv(x, kernel, 2, formulation="transpose")
    # PyTorch padding 1 on a 4x4/2 transposed conv is lax padding k - 1 - p = 2 per side.
    lax = jax.lax.conv_transpose(x, kernel, (2, 2), [(2, 2), (2, 2)], dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(ours, lax, atol=1e-5)
    assert ours.shape == (1, 8, 10, 2)


def test_unpool_of_pool_puts_each_max_back_at_its_argmax():
    x = np.random.default_rng(2).normal(size=(2, 7, 9, 3)).astype(np.float32)  # odd: floor pooling
    values, indices = max_pool_with_argmax(x, 2)
    restored = np.asarray(max_unpool(values, indices, (7, 9)))
    expected = np.zeros_like(x)
    for n in range(2):
        for c in range(3):
            for i in range(3):
                for j in range(4):
                    window = x[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, c]
                    r, s = np.unravel_index(np.argmax(window), window.shape)
                    expected[n, 2 * i + r, 2 * j + s, c] = window[r, s]
    np.testing.assert_array_equal(restored, expected)


@pytest.mark.parametrize("name", list_segmentation_models())
@pytest.mark.parametrize("height, width", [(37, 45)])
def test_every_model_keeps_odd_input_sizes(name, height, width):
    model = create_segmentation_model(name, num_classes=7)
    images = jax.ShapeDtypeStruct((2, height, width, 3), jnp.float32)
    (logits, features), _ = jax.eval_shape(
        lambda x: model.init_with_output({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, train=False), images
    )
    assert logits.shape == (2, height, width, 7) and logits.dtype == jnp.float32
    assert isinstance(features, dict) and features


@pytest.mark.parametrize("name", ["unet_small", "fcn8s_small", "fcn32s_small", "segnet_small"])
def test_small_models_run_and_jit_agrees(name):
    model = create_segmentation_model(name, num_classes=5)
    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 33, 35, 1)), jnp.float32)
    variables = model.init(jax.random.key(0), images, train=False)
    eager, _ = model.apply(variables, images, train=False)
    jitted, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    assert eager.shape == (2, 33, 35, 5) and np.isfinite(np.asarray(eager)).all()
    np.testing.assert_allclose(jitted, eager, atol=1e-4, rtol=1e-4)


def test_fcn_skips_start_at_zero_and_upsampling_starts_bilinear():
    model = create_segmentation_model("fcn8s_small", num_classes=4)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)), train=False)
    params = variables["params"]
    assert not np.asarray(params["score_stage3"]["kernel"]).any()
    assert not np.asarray(params["score_stage2"]["kernel"]).any()
    np.testing.assert_array_equal(params["upscore_stage3"]["kernel"], upsampling.bilinear_kernel(2, 4, 4))
    fcn32s = create_segmentation_model("fcn32s_small", num_classes=4)
    assert "upscore_stage3" not in fcn32s.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)), train=False)["params"]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_dilated_encoder_keeps_the_output_stride(output_stride):
    encoder = backbones.create_encoder("vgg16_small", output_stride=output_stride)
    features, _ = jax.eval_shape(
        lambda x: encoder.init_with_output(jax.random.key(0), x, train=False), jax.ShapeDtypeStruct((1, 64, 64, 1), jnp.float32)
    )
    strides = backbones.feature_strides("vgg16_small", output_stride)
    for name, feature in features.items():
        assert feature.shape[1] == -(-64 // strides[name]), name
    assert strides["stage4"] == output_stride


def test_registry_and_argument_errors():
    assert {"fcn8s_vgg16", "fcn32s_resnet18", "unet", "segnet_vgg16", "fcn_vgg16_dilated8"} <= set(SEGMENTATION_MODELS)
    with pytest.raises(ValueError, match="valid names"):
        create_segmentation_model("deeplab", num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        create_segmentation_model("unet", num_classes=0)
    model = create_segmentation_model("fcn8s_small", num_classes=3, output_stride=8)
    with pytest.raises(ValueError, match="no coarser map"):
        model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False)
    with pytest.raises(ValueError, match="formulation"):
        upsampling.bilinear_upsample(jnp.zeros((1, 2, 2, 1)), 2, formulation="nearest")
