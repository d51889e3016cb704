"""Orbax checkpointing: keep latest + best, fallback from a corrupt newest checkpoint."""

import logging
import os

import jax
import jax.numpy as jnp
import pytest

from jaxvision.training.checkpoint import Checkpointer


def save_steps(checkpointer, accuracies):
    for step, accuracy in enumerate(accuracies, start=1):
        metrics = None if accuracy is None else {"test_accuracy": accuracy}
        checkpointer.save(step, {"w": jnp.full(3, float(step))}, {"next_index": step}, metrics)
    checkpointer.wait()


ABSTRACT = jax.eval_shape(lambda: {"w": jnp.zeros(3)})


def test_keeps_latest_and_best_and_never_deletes_latest(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), keep=2, best_metric="test_accuracy")
    save_steps(checkpointer, [0.5, 0.9, None, 0.7, 0.6])
    assert checkpointer.all_steps() == [2, 4, 5]
    assert checkpointer.best_step() == 2
    assert checkpointer.latest_step() == 5
    checkpointer.close()


def test_min_mode_keeps_the_smallest(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), keep=1, best_metric="test_accuracy", best_mode="min")
    save_steps(checkpointer, [0.5, 0.2, 0.7])
    assert checkpointer.all_steps() == [2, 3] and checkpointer.best_step() == 2
    checkpointer.close()


def test_restores_newest_with_data_state(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), keep=3)
    save_steps(checkpointer, [None, None])
    state, data_state, step = checkpointer.restore(ABSTRACT)
    assert step == 2 and data_state == {"next_index": 2}
    assert float(state["w"][0]) == 2.0
    checkpointer.close()


def test_no_checkpoint_returns_none(tmp_path):
    assert Checkpointer(str(tmp_path)).restore(ABSTRACT) is None


def test_corrupt_newest_checkpoint_warns_and_falls_back(tmp_path, caplog):
    checkpointer = Checkpointer(str(tmp_path), keep=3)
    save_steps(checkpointer, [None, None, None])
    checkpointer.close()
    # Corrupt step 3: truncate every array data file of its state.
    state_dir = tmp_path / "3" / "state"
    corrupted = 0
    for root, _, files in os.walk(state_dir):
        for name in files:
            if "manifest" in name or name.startswith(("d", "ocdbt")) or "_METADATA" in name:
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"garbage")
                corrupted += 1
    assert corrupted
    reopened = Checkpointer(str(tmp_path), keep=3)
    with caplog.at_level(logging.WARNING):
        state, _, step = reopened.restore(ABSTRACT)
    assert step == 2 and float(state["w"][0]) == 2.0
    assert "step 3" in caplog.text and "previous" in caplog.text
    reopened.close()


def test_invalid_arguments():
    with pytest.raises(ValueError, match="keep must be >= 1"):
        Checkpointer("/tmp/unused-jaxvision-ckpt", keep=0)
    with pytest.raises(ValueError, match="best_mode"):
        Checkpointer("/tmp/unused-jaxvision-ckpt", best_mode="largest")
