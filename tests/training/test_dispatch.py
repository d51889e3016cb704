"""jaxvision.training.dispatch.DispatchWindow: at most `max_in_flight` calls queued."""

import jax
import jax.numpy as jnp
import pytest

from jaxvision.training import dispatch


def test_window_blocks_on_the_oldest_call_once_more_are_queued(monkeypatch):
    blocked = []
    monkeypatch.setattr(dispatch.jax, "block_until_ready", lambda tree: blocked.append(tree) or tree)
    window = dispatch.DispatchWindow(max_in_flight=2)
    outputs = [{"loss": jnp.float32(i)} for i in range(5)]
    for index, output in enumerate(outputs):
        assert window.admit(output) is output
        assert window.num_in_flight == min(index + 1, 2)
    assert blocked == outputs[:3]  # oldest first, each exactly once


def test_window_results_are_the_unbounded_results():
    step = jax.jit(lambda x: x * 1.5 + 1.0)
    bounded, window = jnp.float32(0.0), dispatch.DispatchWindow(1)
    unbounded = jnp.float32(0.0)
    for _ in range(10):
        bounded = window.admit(step(bounded))
        unbounded = step(unbounded)
    assert float(bounded) == float(unbounded)


def test_window_needs_room_for_one_call():
    with pytest.raises(ValueError, match="max_in_flight must be >= 1"):
        dispatch.DispatchWindow(0)
