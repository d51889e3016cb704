"""ViT's class-token pass (`class_token_pass=True`, the default): the logits come from a second run
of the last block for the class token alone. It must give the full pass's logits and every gradient
leaf, leave `features` as they were, and really remove work from a step that reads only the logits
(counted by XLA's own cost analysis of the compiled gradient)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision import models
from jaxvision.models import vit

# 16x16 inputs in 4x4 patches: 16 patch tokens + the class token; 2 heads of 16.
SMALL = dict(image_size=16, patch_size=4, depth=4, hidden_dim=32, num_heads=2, mlp_dim=64)
TOKENS = 1 + (16 // 4) ** 2


def small_vit(**kwargs):
    return models.create_model("vit_cifar", num_classes=10, **{**SMALL, **kwargs})


@pytest.fixture(scope="module")
def batch_and_params():
    images = jax.random.normal(jax.random.key(1), (3, 16, 16, 3))
    labels = jnp.array([0, 4, 9])
    params = small_vit().init(jax.random.key(0), images, train=False)["params"]
    # Random offsets on every leaf (the head is zero-initialised, biases near zero) so that the
    # logits and all gradients carry information.
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = treedef.unflatten([leaf + 0.2 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)])
    return images, labels, params


def cross_entropy(model, params, images, labels):
    logits, _ = model.apply({"params": params}, images, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def leaf_errors(grads, reference):
    """Per leaf: max |difference| relative to the leaf's scale."""
    return jax.tree.map(
        lambda a, b: float(jnp.abs(a - b).max() / jnp.maximum(jnp.abs(b).max(), 1e-30)), grads, reference
    )


@pytest.mark.parametrize("implementation", ["explicit", "xla"])
def test_logits_features_and_gradients_equal_the_full_pass(batch_and_params, implementation):
    images, labels, params = batch_and_params
    fast = small_vit(attention_implementation=implementation)
    full = small_vit(attention_implementation=implementation, class_token_pass=False)
    # Same parameter tree: the second pass owns no parameters of its own.
    assert jax.tree.structure(fast.init(jax.random.key(0), images, train=False)["params"]) == jax.tree.structure(params)

    fast_logits, fast_features = fast.apply({"params": params}, images, train=False)
    full_logits, full_features = full.apply({"params": params}, images, train=False)
    assert fast_logits.shape == (3, 10) and float(jnp.abs(full_logits).std()) > 0.1
    np.testing.assert_allclose(fast_logits, full_logits, rtol=1e-5, atol=1e-5)
    assert set(fast_features) == set(full_features)
    for name in full_features:
        np.testing.assert_allclose(fast_features[name], full_features[name], rtol=1e-5, atol=1e-6, err_msg=name)

    fast_grads = jax.jit(jax.grad(lambda p: cross_entropy(fast, p, images, labels)))(params)
    full_grads = jax.jit(jax.grad(lambda p: cross_entropy(full, p, images, labels)))(params)
    last_mlp = full_grads["encoder_layer_3"]["mlp_fc2"]["kernel"]
    assert float(jnp.abs(last_mlp).max()) > 1e-3  # the last block's gradient is really exercised
    errors = leaf_errors(fast_grads, full_grads)
    assert max(jax.tree.leaves(errors)) < 1e-4, errors


def compiled_flops(function, *args) -> float:
    analysis = jax.jit(function).lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis  # a list on older jaxlibs
    return float(analysis["flops"])


def test_a_logits_only_gradient_skips_the_last_blocks_patch_token_work(batch_and_params):
    images, labels, params = batch_and_params
    fast, full = small_vit(), small_vit(class_token_pass=False)
    fast_flops = compiled_flops(jax.grad(lambda p: cross_entropy(fast, p, images, labels)), params)
    full_flops = compiled_flops(jax.grad(lambda p: cross_entropy(full, p, images, labels)), params)
    # The matmuls the class-token pass leaves out for the T - 1 patch tokens of the last block: the
    # query projection's share is still computed (the packed in_proj), so out_proj (D^2), the MLP
    # (2 D M) and the attention (2 T D) per token, x2 FLOPs per multiply-add, x3 for forward and
    # backward. XLA's count also has the elementwise work (GELU, softmax, LayerNorm) left out
    # with them, so the measured saving is larger (2.2M of 13.6M FLOPs here, against 0.6M).
    dim, mlp = SMALL["hidden_dim"], SMALL["mlp_dim"]
    skipped_matmuls = 2 * 3 * (TOKENS - 1) * (dim * dim + 2 * dim * mlp + 2 * TOKENS * dim)
    assert full_flops - fast_flops > skipped_matmuls, (full_flops, fast_flops, skipped_matmuls)

    # A caller that also reads the full pass's features pays for both passes, but the shared ln_1
    # and in_proj are computed once: at most the class-token pass's own small share more.
    def loss_and_stage4(model, p):
        logits, features = model.apply({"params": p}, images, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean() + features["stage4"].mean()

    both_flops = compiled_flops(jax.grad(lambda p: loss_and_stage4(fast, p)), params)
    full_both_flops = compiled_flops(jax.grad(lambda p: loss_and_stage4(full, p)), params)
    assert both_flops < 1.05 * full_both_flops, (both_flops, full_both_flops)


def test_with_dropout_the_class_token_pass_applies_the_full_passes_masks(batch_and_params):
    images, labels, params = batch_and_params
    rates = dict(dropout_rate=0.2, attention_dropout_rate=0.2)
    fast, full = small_vit(**rates), small_vit(**rates, class_token_pass=False)

    def loss(model, p, key):
        logits, _ = model.apply({"params": p}, images, train=True, rngs={"dropout": key})
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    fast_grad = jax.jit(jax.value_and_grad(lambda p, key: loss(fast, p, key)))
    full_grad = jax.jit(jax.value_and_grad(lambda p, key: loss(full, p, key)))
    (fast_loss, fast_grads), (full_loss, full_grads) = fast_grad(params, jax.random.key(5)), full_grad(params, jax.random.key(5))
    np.testing.assert_allclose(fast_loss, full_loss, rtol=1e-5)
    assert max(jax.tree.leaves(leaf_errors(fast_grads, full_grads))) < 1e-4
    # The masks do act: another key, another loss; no dropout, another loss again.
    other_loss, _ = fast_grad(params, jax.random.key(6))
    assert abs(float(other_loss) - float(fast_loss)) > 1e-4
    assert abs(float(cross_entropy(small_vit(), params, images, labels)) - float(fast_loss)) > 1e-4


@pytest.mark.parametrize("implementation", ["explicit", "xla"])
def test_an_encoder_blocks_class_token_row_equals_its_full_outputs_first_row(implementation):
    block = vit.EncoderBlock(num_heads=2, mlp_dim=8, attention_implementation=implementation)
    tokens = jax.random.normal(jax.random.key(0), (2, 5, 4))
    variables = block.init(jax.random.key(1), tokens, train=False)
    out, weights = block.apply(variables, tokens, train=False)
    out_too, weights_too, class_row = block.apply(variables, tokens, train=False, class_token=True)
    assert class_row.shape == (2, 1, 4) and out.shape == (2, 5, 4)
    np.testing.assert_array_equal(out_too, out)
    np.testing.assert_allclose(class_row, out[:, :1], rtol=1e-5, atol=1e-6)
    if implementation == "explicit":
        assert weights.shape == (2, 2, 5, 5)
        np.testing.assert_array_equal(weights_too, weights)


def test_summary_tabulates_the_published_network():
    # The class-token pass would add rows for the last block's second use and shrink encoder_ln's
    # output to one token; the table describes the network, so it is the full pass's.
    table = models.summary(small_vit(), (16, 16, 3))
    full_table = models.summary(small_vit(class_token_pass=False), (16, 16, 3))
    assert table == full_table
    names = [row.name for row in table.rows]
    assert len(names) == len(set(names))
    assert next(row for row in table.rows if row.name == "encoder_ln").output_shape == (TOKENS, SMALL["hidden_dim"])


def test_bf16_dropout_scales_each_kept_value_with_one_rounding():
    class Drop(nn.Module):
        @nn.compact
        def __call__(self, x):
            return vit._apply_mask(x, vit.dropout_mask(0.1, False, x.shape, name="drop"))

    x = jnp.linspace(0.5, 4.0, 4096, dtype=jnp.float32).astype(jnp.bfloat16)
    dropped = Drop().apply({}, x, rngs={"dropout": jax.random.key(0)})
    assert dropped.dtype == jnp.bfloat16
    kept = dropped != 0
    assert 0.85 < float(kept.mean()) < 0.95
    # Exactly x / 0.9 computed in float32 and rounded once to bf16 (a bf16 copy of 1 / 0.9 would
    # be off by one bf16 step on many entries).
    expected = (x.astype(jnp.float32) * (1 / 0.9)).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(dropped[kept], np.float32), np.asarray(expected[kept], np.float32))
