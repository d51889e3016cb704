"""Optimizers and schedules built from configs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision.training import optimizers
from jaxvision.training.config import classification_config


def config_with(**optimizer):
    config = classification_config()
    config.optimizer.update(optimizer)
    return config


def schedule_values(config, steps, *, steps_per_epoch=10, num_steps=100, batch=128):
    schedule = optimizers.make_learning_rate_schedule(
        config, steps_per_epoch=steps_per_epoch, num_steps=num_steps, global_batch_size=batch
    )
    return np.asarray([schedule(s) for s in steps])


def test_warmup_then_cosine_reaches_peak_and_zero():
    config = config_with(learning_rate=0.1, schedule="cosine", warmup_epochs=1.0)
    values = schedule_values(config, [0, 5, 10, 55, 100])
    np.testing.assert_allclose(values, [0.0, 0.05, 0.1, 0.05, 0.0], atol=1e-6)


def test_step_schedule_multiplies_at_epochs():
    config = config_with(learning_rate=1.0, schedule="step", decay_epochs=(3, 6), decay_factor=0.1)
    values = schedule_values(config, [0, 29, 30, 59, 60, 99])
    np.testing.assert_allclose(values, [1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)


def test_linear_scaling_rule():
    config = config_with(learning_rate=0.1, schedule="constant", linear_scaling_base_batch_size=256)
    np.testing.assert_allclose(schedule_values(config, [0], batch=1024), [0.4], rtol=1e-6)


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_every_optimizer_descends_a_quadratic(name):
    config = config_with(name=name, learning_rate=0.05, schedule="constant")
    tx = optimizers.make_optimizer(config, optax.constant_schedule(0.05))
    params = {"w": jnp.full((2, 2), 3.0)}
    opt_state = tx.init(params)
    for _ in range(20):
        grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    assert float(jnp.abs(params["w"]).max()) < 3.0


def test_weight_decay_skips_biases_and_norm_scales():
    config = config_with(name="sgd", weight_decay=0.5)
    tx = optimizers.make_optimizer(config, optax.constant_schedule(1.0))
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2), "scale": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.5 * np.ones((2, 2)))
    np.testing.assert_allclose(updates["bias"], 0.0)
    np.testing.assert_allclose(updates["scale"], 0.0)


def test_l2_penalty_counts_kernels_only():
    params = {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full(3, 5.0)}
    assert float(optimizers.l2_penalty(params)) == pytest.approx(0.5 * 4 * 4.0)


def test_gradient_clipping_bounds_the_update():
    config = config_with(name="sgd", grad_clip_norm=1.0)
    tx = optimizers.make_optimizer(config, optax.constant_schedule(1.0))
    params = {"w": jnp.zeros(4)}
    updates, _ = tx.update({"w": jnp.full(4, 10.0)}, tx.init(params), params)
    assert float(jnp.linalg.norm(updates["w"])) == pytest.approx(1.0, rel=1e-5)


def test_accumulation_of_two_half_batches_equals_one_full_batch():
    target = jnp.arange(8.0)

    def grad_of(rows):
        return jax.grad(lambda p: jnp.mean((p["w"] - target[rows]) ** 2))({"w": jnp.zeros(())})

    schedule = optax.constant_schedule(0.1)
    plain = optimizers.make_optimizer(config_with(name="momentum"), schedule)
    accumulated = optimizers.make_optimizer(config_with(name="momentum", grad_accumulation_steps=2), schedule)
    params = {"w": jnp.zeros(())}
    full_updates, _ = plain.update(grad_of(slice(0, 8)), plain.init(params), params)
    state = accumulated.init(params)
    first, state = accumulated.update(grad_of(slice(0, 4)), state, params)
    second, state = accumulated.update(grad_of(slice(4, 8)), state, params)
    assert float(first["w"]) == 0.0
    np.testing.assert_allclose(second["w"], full_updates["w"], rtol=1e-6)


def test_unknown_optimizer_and_schedule_list_valid_names():
    with pytest.raises(ValueError, match="valid names: sgd, momentum"):
        optimizers.make_optimizer(config_with(name="lion"), optax.constant_schedule(1.0))
    with pytest.raises(ValueError, match="valid names: constant, step, cosine"):
        schedule_values(config_with(schedule="exponential"), [0])
