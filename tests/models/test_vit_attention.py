"""ViT's fused attention (`attention_implementation="xla"`, jax.nn.dot_product_attention) gives the
written-out attention's logits and gradients from the same parameters, without the maps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision import models

# A small ViT for 32x32 inputs: 64 patch tokens + the class token, 4 heads of 8.
SMALL = dict(depth=4, hidden_dim=32, num_heads=4, mlp_dim=64)


def small_vit(**kwargs):
    return models.create_model("vit_cifar", num_classes=10, **SMALL, **kwargs)


@pytest.fixture(scope="module")
def batch_and_variables():
    images = jax.random.normal(jax.random.key(1), (3, 32, 32, 3))
    labels = jnp.array([0, 4, 9])
    variables = small_vit().init(jax.random.key(0), images, train=False)
    # The head is zero-initialised; random weights make the logits and their gradients informative.
    head = variables["params"]["head"]
    variables["params"]["head"] = {**head, "kernel": 0.5 * jax.random.normal(jax.random.key(2), head["kernel"].shape)}
    return images, labels, variables


def loss_and_grads(model, variables, images, labels):
    def loss_fn(params):
        logits, _ = model.apply({"params": params}, images, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return jax.jit(jax.value_and_grad(loss_fn))(variables["params"])


def test_fused_xla_attention_equals_the_explicit_one_with_gradients(batch_and_variables):
    images, labels, variables = batch_and_variables
    explicit, fused = small_vit(), small_vit(attention_implementation="xla")
    # Same parameter tree: weights move between the two without conversion.
    assert jax.tree.structure(fused.init(jax.random.key(0), images, train=False)) == jax.tree.structure(variables)
    explicit_logits, explicit_features = explicit.apply(variables, images, train=False)
    fused_logits, fused_features = jax.jit(lambda v, x: fused.apply(v, x, train=False))(variables, images)
    np.testing.assert_allclose(fused_logits, explicit_logits, rtol=1e-5, atol=1e-5)
    assert "attention" in explicit_features and "attention" not in fused_features
    assert set(fused_features) == set(explicit_features) - {"attention"}
    np.testing.assert_allclose(fused_features["stage4"], explicit_features["stage4"], rtol=1e-5, atol=1e-5)

    explicit_loss, explicit_grads = loss_and_grads(explicit, variables, images, labels)
    fused_loss, fused_grads = loss_and_grads(fused, variables, images, labels)
    np.testing.assert_allclose(fused_loss, explicit_loss, rtol=1e-6)
    query_kernel = fused_grads["encoder_layer_0"]["self_attention"]["in_proj"]["kernel"]
    assert float(jnp.abs(query_kernel).max()) > 1e-4  # the attention's gradient is really exercised
    for path, fused_leaf in jax.tree_util.tree_leaves_with_path(fused_grads):
        explicit_leaf = explicit_grads
        for entry in path:
            explicit_leaf = explicit_leaf[entry.key]
        # float32 reassociation: differences of ~1e-6 on entries of ~1e-3; relative to each leaf's scale.
        scale = float(jnp.abs(explicit_leaf).max())
        np.testing.assert_allclose(fused_leaf, explicit_leaf, rtol=0, atol=1e-4 * scale,
                                   err_msg=jax.tree_util.keystr(path))


def test_fused_xla_attention_in_bfloat16_stays_close_to_float32(batch_and_variables):
    images, _, variables = batch_and_variables
    reference, _ = small_vit().apply(variables, images, train=False)
    logits, _ = small_vit(attention_implementation="xla", dtype=jnp.bfloat16).apply(variables, images, train=False)
    assert logits.dtype == jnp.float32
    assert float(jnp.abs(logits - reference).max() / jnp.abs(reference).max()) < 5e-2


def test_bad_attention_settings_get_clear_errors(batch_and_variables):
    images, _, variables = batch_and_variables
    with pytest.raises(ValueError, match="unknown attention_implementation 'flash'; valid: explicit, xla, cudnn"):
        small_vit(attention_implementation="flash").apply(variables, images, train=False)
    with pytest.raises(ValueError, match="has no dropout on the attention weights"):
        small_vit(attention_implementation="xla", attention_dropout_rate=0.1).apply(variables, images, train=False)
    if jax.default_backend() != "gpu":
        with pytest.raises(ValueError, match="'cudnn' needs an NVIDIA GPU and dtype bfloat16 or float16"):
            small_vit(attention_implementation="cudnn", dtype=jnp.bfloat16).apply(variables, images, train=False)
