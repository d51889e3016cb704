"""The segmentation trainer: loss with ignore label and Dice, evaluation against a numpy confusion
matrix, a smoke run through the CLI with every artifact, and bitwise resumption after SIGTERM."""

import json
import os
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision import cli
from jaxvision.models.segmentation import create_segmentation_model
from jaxvision.trainers import segmentation
from jaxvision.training import loop
from jaxvision.training.segmentation_config import segmentation_config
from jaxvision.training.state import create_train_state

NUM_CLASSES = 11


def smoke_args(workdir, data_dir, *extra):
    return ["train", "--config=digits_unet:smoke", f"--workdir={workdir}",
            f"--config.dataset.data_dir={data_dir}", *extra]


class FixedLogits(nn.Module):
    """A fake model whose logits are the one-hot of a known prediction map stored in the image."""

    num_classes: int

    @nn.compact
    def __call__(self, images, *, train: bool):
        del train
        predictions = images[..., 0].astype(jnp.int32)
        return jax.nn.one_hot(predictions, self.num_classes) * 10.0, {}


def test_eval_step_matches_a_numpy_confusion_matrix():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(3, 5, 6)).astype(np.int32)
    labels[0, 0, :3] = 255  # ignored pixels
    predictions = np.where(rng.random(labels.shape) < 0.6, np.where(labels == 255, 0, labels),
                           rng.integers(0, 4, size=labels.shape)).astype(np.int32)
    mask = np.array([True, True, False])  # the last image is padding
    batch = {"image": predictions[..., None].astype(np.float32), "segmentation": labels, "mask": mask}
    model = FixedLogits(4)
    eval_step = segmentation.make_eval_step(num_classes=4, ignore_label=255)
    out = jax.jit(eval_step, static_argnums=0)(model.apply, {}, {}, batch)
    expected = np.zeros((4, 4), np.int64)
    for n in range(2):
        for label, prediction in zip(labels[n].ravel(), predictions[n].ravel()):
            if label != 255:
                expected[label, prediction] += 1
    np.testing.assert_array_equal(out["confusion"], expected)
    assert float(out["cross_entropy"][1]) == expected.sum()
    scores = segmentation.scores_from_confusion(expected)
    true_positive = np.diag(expected)
    iou = true_positive / (expected.sum(0) + expected.sum(1) - true_positive)
    assert scores["accuracy"] == pytest.approx(true_positive.sum() / expected.sum())
    assert scores["mean_class_accuracy"] == pytest.approx(np.mean(true_positive / expected.sum(1)))
    assert scores["mean_iou"] == pytest.approx(iou.mean())
    assert scores["voc_segmentation_accuracy"] == pytest.approx(100 * iou.mean())


@pytest.mark.parametrize("dice_weight", [0.0, 0.5])
def test_train_step_ignores_void_pixels_and_learns(dice_weight):
    config = segmentation_config()
    config.dice_weight = dice_weight
    model = create_segmentation_model("fcn32s_small", num_classes=3)
    state = create_train_state(jax.random.key(0), model, optax.adam(1e-3), (32, 32, 1))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 32, 32, 1)).astype(np.float32)
    labels = (images[..., 0] > 0).astype(np.int32)
    void = labels.copy()
    void[:, :8] = 255
    step = jax.jit(segmentation.make_train_step(config, ignore_label=255))
    _, metrics = step(state, {"image": images, "segmentation": void}, jax.random.key(1))
    assert float(metrics["accuracy"][1]) == (void != 255).sum()
    per_pixel, valid = segmentation.pixel_losses(jnp.ones((2, 32, 32, 3)), jnp.asarray(void), ignore_label=255)
    assert float(per_pixel[:, :8].sum()) == 0.0 and not np.asarray(valid[:, :8]).any()
    assert float(per_pixel[:, 8:].mean()) == pytest.approx(np.log(3.0), rel=1e-4)
    losses = []
    for _ in range(6):
        state, metrics = step(state, {"image": images, "segmentation": labels}, jax.random.key(1))
        losses.append(float(metrics["loss"][0]))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_check_batch_names_the_problem():
    good = {"image": np.zeros((2, 8, 8, 1), np.float32), "segmentation": np.zeros((2, 8, 8), np.int32)}
    segmentation.check_batch(good, image_shape=(8, 8, 1), num_classes=3, ignore_label=255)
    bad_labels = {**good, "segmentation": np.full((2, 8, 8), 7, np.int32)}
    with pytest.raises(ValueError, match="ignore label 255"):
        segmentation.check_batch(bad_labels, image_shape=(8, 8, 1), num_classes=3, ignore_label=255)
    with pytest.raises(ValueError, match=r"batch\['segmentation'\] must have shape"):
        segmentation.check_batch({**good, "segmentation": np.zeros((2, 8), np.int32)}, image_shape=(8, 8, 1),
                                 num_classes=3, ignore_label=255)


@pytest.fixture(scope="module")
def reference_run(scenes_data_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("seg_reference"))
    assert cli.main(smoke_args(workdir, scenes_data_dir)) == 0
    with open(os.path.join(workdir, "results.json")) as f:
        return workdir, json.load(f)


def test_cli_smoke_run_writes_every_artifact(reference_run, capsys):
    workdir, results = reference_run
    for name in ("config.json", "metrics.jsonl", "learning_curves.png", "overlays.png", "results.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert results["num_steps"] == 8 and results["model"] == "unet_small"
    for key in ("test_accuracy", "test_mean_class_accuracy", "test_mean_iou", "test_voc_segmentation_accuracy"):
        assert 0.0 <= results[key] <= (100.0 if "voc" in key else 1.0)
    assert len(results["test_per_class_iou"]) == NUM_CLASSES
    assert sorted(int(name) for name in os.listdir(os.path.join(workdir, "checkpoints")) if name.isdigit()) == [4, 8]
    from PIL import Image

    width, height = Image.open(os.path.join(workdir, "overlays.png")).size
    assert (width, height) == (4 * 256, 3 * 256)  # 4 images x (image, truth, prediction), 4x upscaled
    capsys.readouterr()
    assert cli.main(["eval", f"--workdir={workdir}"]) == 0
    assert '"test_mean_iou"' in capsys.readouterr().out


def test_eval_of_a_workdir_reproduces_the_final_metrics(reference_run):
    workdir, results = reference_run
    evaluated = segmentation.evaluate_workdir(workdir)
    assert evaluated["step"] == 8
    assert evaluated["test_mean_iou"] == pytest.approx(results["test_mean_iou"], abs=1e-6)


def test_sigterm_then_resume_is_bitwise_identical(reference_run, scenes_data_dir, tmp_path, monkeypatch):
    _, reference = reference_run
    workdir = str(tmp_path / "run")
    original = segmentation.check_batch
    calls = {"count": 0}

    def check_then_signal(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 6:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(segmentation, "check_batch", check_then_signal)
    assert cli.main(smoke_args(workdir, scenes_data_dir)) == 130  # interrupted, checkpoint saved
    assert "6" in os.listdir(os.path.join(workdir, "checkpoints"))
    monkeypatch.setattr(segmentation, "check_batch", original)
    assert cli.main(smoke_args(workdir, scenes_data_dir)) == 0
    with open(os.path.join(workdir, "results.json")) as f:
        resumed = json.load(f)
    assert resumed["params_fingerprint"] == reference["params_fingerprint"]
    assert resumed["test_mean_iou"] == reference["test_mean_iou"]


def test_classification_configs_still_dispatch_to_the_classifier():
    assert cli.trainer_for(cli.load_config("digits_lenet:smoke").task).__name__.endswith("classification")
    assert cli.trainer_for(cli.load_config("digits_fcn8s:smoke").task) is segmentation
    with pytest.raises(ValueError, match="valid tasks"):
        cli.trainer_for("detection")


def test_held_out_validation_split_is_evaluated_and_selects_the_best_checkpoint(scenes_data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    assert cli.main(smoke_args(workdir, scenes_data_dir, "--config.dataset.validation_fraction=0.05",
                               "--config.checkpoint.best_metric=validation_mean_iou")) == 0
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    assert 0.0 <= results["validation_mean_iou"] <= 1.0 and 0.0 <= results["test_mean_iou"] <= 1.0
    assert results["best_checkpoint_step"] in (4, 8)
    config = loop.read_workdir_config(workdir)
    spec = segmentation.seg_data.get_segmentation_spec(config.dataset.name)
    train_source, validation_source = segmentation.training_sources(config, spec)
    assert (len(train_source), len(validation_source)) == (3800, 200)
