"""Early stopping, TTA/ensemble evaluation of workdirs, and the CIFAR recipe's smoke variant."""

import json
import os

import numpy as np
import pytest

from jaxvision import cli
from jaxvision.inference import evaluation
from jaxvision.trainers import classification
from jaxvision.training.early_stopping import EarlyStopping


def read_results(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


def test_early_stopping_counts_evaluations_without_improvement():
    stopper = EarlyStopping("acc", mode="max", patience=2)
    assert not stopper.update(1, {"acc": 0.5})
    assert not stopper.update(2, {"acc": 0.5})  # equal is no improvement
    assert not stopper.update(3, {"acc": 0.6})  # improvement resets the count
    assert not stopper.update(4, {"acc": 0.55})
    assert stopper.update(5, {"acc": 0.6})
    assert (stopper.best_step, stopper.best_value) == (3, 0.6)
    lowest = EarlyStopping("loss", mode="min", patience=1)
    assert not lowest.update(1, {"loss": 2.0}) and not lowest.update(2, {"loss": 1.0})
    assert lowest.update(3, {"loss": 1.5}) and lowest.best_step == 2


def test_early_stopping_resume_and_argument_checks():
    stopper = EarlyStopping("acc", patience=3)
    stopper.resume(best_step=100, best_value=0.9, step=300, eval_every=100)
    assert stopper.num_bad_evaluations == 2
    assert stopper.update(400, {"acc": 0.8})
    with pytest.raises(ValueError, match="'acc' is not among"):
        EarlyStopping("acc", patience=1).update(1, {"loss": 1.0})
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping("acc", patience=0)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping("acc", mode="up")


def test_training_stops_early_with_a_checkpoint_and_results(smoke_config, tmp_path):
    # lr 0: the accuracy cannot improve after the first evaluation, so patience 1 stops at the second.
    smoke_config.optimizer.learning_rate = 0.0
    smoke_config.eval_every_steps = 3
    smoke_config.early_stopping_patience = 1
    workdir = str(tmp_path / "run")
    results = classification.train_and_evaluate(smoke_config, workdir, show_progress=False)
    assert results["stopped_early"] is True and results["num_steps"] == 6
    assert results["best_checkpoint_step"] == 3
    assert read_results(workdir)["stopped_early"] is True
    assert 6 in [int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()]


def test_early_stopping_needs_a_metric(smoke_config, tmp_path):
    smoke_config.early_stopping_patience = 2
    smoke_config.checkpoint.best_metric = ""
    with pytest.raises(ValueError, match="needs config.checkpoint.best_metric"):
        classification.train_and_evaluate(smoke_config, str(tmp_path), show_progress=False)


@pytest.fixture(scope="module")
def two_seed_runs(tmp_path_factory, digits_data_dir):
    """Two 6-step smoke runs (seeds 0 and 1) with EMA, evaluated once at the end."""
    workdirs = []
    for seed in (0, 1):
        config = cli.load_config("digits_lenet:smoke")
        config.dataset.data_dir = digits_data_dir
        config.seed = seed
        config.num_train_steps = 6
        config.eval_every_steps = 6
        config.ema_decay = 0.5
        workdir = str(tmp_path_factory.mktemp(f"seed{seed}"))
        classification.train_and_evaluate(config, workdir, show_progress=False)
        workdirs.append(workdir)
    return workdirs


@pytest.fixture(scope="module")
def restored_runs(two_seed_runs):
    return [classification.restore_workdir(workdir) for workdir in two_seed_runs]


def test_no_tta_agrees_with_the_trainers_evaluation(two_seed_runs, restored_runs):
    experiment, state, step = restored_runs[0]
    plain = read_results(two_seed_runs[0])
    assert step == plain["num_steps"]
    for use_ema, prefix in ((False, "test"), (True, "test_ema")):
        metrics = evaluation.probability_metrics(*evaluation.predict_probabilities([experiment], [state], use_ema=use_ema))
        assert metrics["accuracy"] == pytest.approx(plain[f"{prefix}_accuracy"], abs=1e-6)
        assert metrics["nll"] == pytest.approx(plain[f"{prefix}_loss"], rel=1e-4)


def test_every_tta_runs_on_a_fixed_size_model(restored_runs):
    experiment, state, _ = restored_runs[0]
    plain, labels = evaluation.predict_probabilities([experiment], [state])
    for tta_name in ("shift", "flip", "ten_crop", "multi_scale"):
        probabilities, tta_labels = evaluation.predict_probabilities([experiment], [state], tta_name=tta_name)
        assert probabilities.shape == plain.shape and np.array_equal(labels, tta_labels)
        np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)
        assert not np.allclose(probabilities, plain)  # the views changed the prediction


def test_ensemble_averages_member_probabilities(restored_runs):
    experiments = [experiment for experiment, _, _ in restored_runs]
    states = [state for _, state, _ in restored_runs]
    predictor = evaluation.make_predictor(states[0].apply_fn, "none")
    members = [evaluation.predict_probabilities([e], [s], predictor=predictor) for e, s in zip(experiments, states)]
    together, labels = evaluation.predict_probabilities(experiments, states, predictor=predictor)
    np.testing.assert_allclose(together, (members[0][0] + members[1][0]) / 2, atol=1e-6)
    np.testing.assert_array_equal(labels, members[0][1])
    same_twice, _ = evaluation.predict_probabilities(experiments[:1] * 2, states[:1] * 2, predictor=predictor)
    np.testing.assert_allclose(same_twice, members[0][0], atol=1e-6)


def test_cli_eval_tta_and_ensemble(two_seed_runs, capsys):
    assert cli.main(["eval", f"--workdir={two_seed_runs[0]}", "--tta=shift"]) == 0
    assert "test_tta_accuracy" in json.loads(capsys.readouterr().out)
    assert cli.main(["eval", "--ensemble", *two_seed_runs, "--use_ema"]) == 0
    ensembled = json.loads(capsys.readouterr().out)
    assert len(ensembled["members"]) == 2 and 0.0 <= ensembled["test_ensemble_accuracy"] <= 1.0
    assert cli.main(["eval", f"--workdir={two_seed_runs[0]}", "--tta=mirror"]) == 2
    assert "unknown tta 'mirror'" in capsys.readouterr().err


@pytest.mark.parametrize("variant", [None, "short", "cutmix", "stochastic_depth"])
def test_cifar_recipe_variants_load(variant):
    config = cli.load_config("cifar10_resnet18_recipe" + (f":{variant}" if variant else ""))
    assert config.model == "resnet18_cifar" and config.dataset.name == "cifar10"
    assert config.augment.horizontal_flip and config.label_smoothing > 0 and config.ema_decay > 0


@pytest.mark.parametrize("model", ["resnet20", pytest.param("resnet18_cifar", marks=pytest.mark.slow)])
def test_cifar_recipe_smoke_variant_trains_two_steps(model, digits_data_dir, tmp_path):
    config = cli.load_config("cifar10_resnet18_recipe:smoke")
    config.dataset.data_dir = digits_data_dir
    config.model = model
    results = classification.train_and_evaluate(config, str(tmp_path), show_progress=False)
    assert results["num_steps"] == 2 and results["model"] == model
    assert np.isfinite(results["test_loss"]) and 0.0 <= results["test_ema_accuracy"] <= 1.0


def test_early_stopping_and_best_checkpoint_on_a_held_out_validation_split(smoke_config, tmp_path):
    """validation_fraction holds part of the training split out; the loop evaluates it next to the
    test split and selects checkpoints / stops on it, not on the test split."""
    smoke_config.optimizer.learning_rate = 0.0
    smoke_config.eval_every_steps = 3
    smoke_config.early_stopping_patience = 1
    smoke_config.dataset.validation_fraction = 0.1
    smoke_config.checkpoint.best_metric = "validation_accuracy"
    workdir = str(tmp_path / "run")
    results = classification.train_and_evaluate(smoke_config, workdir, show_progress=False)
    assert results["stopped_early"] is True and results["best_checkpoint_step"] == 3
    assert 0.0 <= results["validation_accuracy"] <= 1.0 and 0.0 <= results["test_accuracy"] <= 1.0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        splits = {json.loads(line).get("split") for line in f}
    assert {"validation", "test"} <= splits
    # 400 of the 4,000 training digits are held out, and training reads the other 3,600.
    experiment = classification.build_experiment(smoke_config)
    train_source, validation_source = classification.training_sources(smoke_config, experiment.spec)
    assert (len(train_source), len(validation_source)) == (3600, 400)


def test_validation_metric_without_a_held_out_split_is_a_config_error(smoke_config, tmp_path):
    smoke_config.checkpoint.best_metric = "validation_accuracy"
    with pytest.raises(ValueError, match="validation_fraction"):
        classification.train_and_evaluate(smoke_config, str(tmp_path), show_progress=False)
    smoke_config.checkpoint.best_metric = "test_accuracy"
    smoke_config.dataset.validation_fraction = 1.0
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\)"):
        classification.train_and_evaluate(smoke_config, str(tmp_path), show_progress=False)
