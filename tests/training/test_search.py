"""Random search: parameter specs, reproducible draws, the same-budget grid, and a 2-trial smoke run."""

import csv
import json
import math
import os

import numpy as np
import pytest

from jaxvision import cli
from jaxvision.training import search
from jaxvision.training.config import classification_config


def test_parse_param_forms_and_errors():
    lr = search.parse_param("optimizer.learning_rate:loguniform:1e-4:1e-1")
    assert (lr.key, lr.distribution, lr.low, lr.high) == ("optimizer.learning_rate", "loguniform", 1e-4, 1e-1)
    assert search.parse_param("optimizer.name:choice:adamw,sgd").choices == ("adamw", "sgd")
    assert search.parse_param("batch_size:choice:32,64").choices == (32, 64)
    for bad, message in [("lr:loguniform:0:1", "0 < low"), ("lr:gaussian:0:1", "must be one of"),
                         ("lr:uniform:1:0", "must be <= high"), ("lr:uniform:a:b", "must be numbers"),
                         ("lr", "must look like")]:
        with pytest.raises(ValueError, match=message):
            search.parse_param(bad)


def test_random_draws_are_reproducible_in_range_and_log_spread():
    params = [search.parse_param("a:loguniform:1e-4:1e-1"), search.parse_param("b:int:1:3"),
              search.parse_param("c:choice:x,y")]
    trials = search.sample_trials(params, 400, seed=3)
    assert trials == search.sample_trials(params, 400, seed=3)
    assert trials != search.sample_trials(params, 400, seed=4)
    exponents = np.log10([t["a"] for t in trials])
    assert exponents.min() >= -4 and exponents.max() <= -1
    # Log-uniform: each decade gets about a third of the draws.
    assert all(100 < np.sum((exponents >= lo) & (exponents < lo + 1)) < 170 for lo in (-4, -3, -2))
    assert {t["b"] for t in trials} == {1, 2, 3} and {t["c"] for t in trials} == {"x", "y"}


def test_grid_has_the_same_budget_and_spans_the_ranges():
    params = [search.parse_param("a:loguniform:1e-4:1e-2"), search.parse_param("b:uniform:0:1")]
    grid = search.grid_trials(params, 9)
    assert len(grid) == 9 and len({(t["a"], t["b"]) for t in grid}) == 9
    assert sorted({t["a"] for t in grid}) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert len(search.grid_trials(params, 8)) == 4  # floor(sqrt(8)) = 2 values per axis
    assert search.grid_trials([search.parse_param("a:loguniform:1e-4:1e-2")], 1) == [{"a": pytest.approx(1e-3)}]


def test_with_values_sets_dotted_keys_on_a_copy():
    config = classification_config().lock()
    changed = search.with_values(config, {"optimizer.learning_rate": 0.5, "batch_size": 32})
    assert changed.optimizer.learning_rate == 0.5 and changed.batch_size == 32
    assert config.optimizer.learning_rate == 1e-3
    with pytest.raises(ValueError, match="optimizer has no 'lr'"):
        search.with_values(config, {"optimizer.lr": 0.1})


def test_run_search_writes_the_table_and_plot_and_resumes(tmp_path):
    calls = []

    def fake_train(config, workdir):
        # A known landscape: best at lr = 1e-2; lr > 5e-2 diverges.
        calls.append(workdir)
        lr = config.optimizer.learning_rate
        if lr > 5e-2:
            from jaxvision.training.loop import NonFiniteLossError

            raise NonFiniteLossError("training loss is nan at step 3; stopping")
        accuracy = 1.0 - abs(math.log10(lr) + 2) / 10
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump({"test_accuracy": accuracy}, f)
        return {"test_accuracy": accuracy}

    params = [search.parse_param("optimizer.learning_rate:loguniform:1e-4:1e-1"),
              search.parse_param("optimizer.weight_decay:loguniform:1e-6:1e-2")]
    config = classification_config().lock()
    summary = search.run_search(config, str(tmp_path), params, num_trials=9, seed=0, train_fn=fake_train)
    assert len(summary["trials"]) == 18 and len(calls) == 18
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["strategy"] for r in rows] == ["random"] * 9 + ["grid"] * 9
    diverged = [r for r in summary["trials"] if r["optimizer.learning_rate"] > 5e-2]
    assert diverged and all(math.isnan(r["test_accuracy"]) and "nan" in r["error"] for r in diverged)
    for strategy in ("random", "grid"):
        finite = [r["test_accuracy"] for r in summary["trials"] if r["strategy"] == strategy and r["error"] == ""]
        assert summary["best"][strategy]["test_accuracy"] == max(finite)
    assert os.path.getsize(tmp_path / "search.png") > 1000
    calls.clear()
    search.run_search(config, str(tmp_path), params, num_trials=9, seed=0, train_fn=fake_train)
    assert len(calls) == len(diverged)  # finished trials are read back, diverged ones retried


def test_cli_search_smoke_two_tiny_trials(tmp_path, digits_data_dir, capsys):
    code = cli.main(["search", "--config=digits_lenet:smoke", f"--workdir={tmp_path}", "--trials=2", "--no_grid",
                     "--param=optimizer.learning_rate:loguniform:1e-4:1e-2",
                     f"--config.dataset.data_dir={digits_data_dir}", "--config.num_train_steps=2",
                     "--config.eval_every_steps=2"])
    assert code == 0
    assert "best random: test_accuracy" in capsys.readouterr().out
    with open(tmp_path / "results.json") as f:
        summary = json.load(f)
    assert len(summary["trials"]) == 2
    assert all(os.path.exists(os.path.join(row["workdir"], "results.json")) for row in summary["trials"])
    assert (tmp_path / "search.png").exists() and (tmp_path / "results.csv").exists()
