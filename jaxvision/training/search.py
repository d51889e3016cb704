"""Random hyper-parameter search, with a grid of the same budget to compare against.

    params = [parse_param("optimizer.learning_rate:loguniform:1e-4:1e-1"),
              parse_param("optimizer.weight_decay:loguniform:1e-6:1e-2")]
    rows = run_search(config, "workdirs/search", params, num_trials=16, seed=0)

Each trial is a short `train_and_evaluate` of `config` with the sampled values, in its own
sub-workdir (`random/trial_000`, ..., `grid/trial_000`, ...); a finished trial is read back from its
`results.json` instead of retrained, so an interrupted search resumes. The search writes
`results.csv`, `results.json` (every trial, best of each strategy) and `search.png` (the first two
parameters as axes, coloured by the metric; circles random, squares grid).

Why random beats a grid of the same budget (Bergstra & Bengio 2012; CS231n "Neural Networks Part
3"): when only a few parameters matter, a k x k grid tries only k values of each, while k^2 random
trials try k^2 distinct values of every parameter.

Parameter specs (`parse_param`), KEY is a dotted config key:
  KEY:loguniform:LOW:HIGH   log-uniform in [LOW, HIGH] (learning rates, weight decay)
  KEY:uniform:LOW:HIGH      uniform in [LOW, HIGH]
  KEY:int:LOW:HIGH          integer uniform in [LOW, HIGH]
  KEY:choice:A,B,C          one of the listed values (parsed as Python literals, else strings)
"""

import ast
import copy
import csv
import dataclasses
import json
import logging
import math
import os
from typing import Any, Callable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")


@dataclasses.dataclass(frozen=True)
class SearchParam:
    """One searched config key and its distribution (`low`/`high` for the ranges, `choices` for choice)."""

    key: str
    distribution: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()

    def __post_init__(self):
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution of {self.key!r} must be one of {', '.join(DISTRIBUTIONS)}, "
                             f"got {self.distribution!r}")
        if self.distribution == "choice":
            if not self.choices:
                raise ValueError(f"choice parameter {self.key!r} needs at least one value")
            return
        if not self.low <= self.high:
            raise ValueError(f"{self.key!r}: low {self.low} must be <= high {self.high}")
        if self.distribution == "loguniform" and self.low <= 0:
            raise ValueError(f"{self.key!r}: loguniform needs 0 < low, got {self.low}")

    def sample(self, rng: np.random.Generator):
        if self.distribution == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.distribution == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.distribution == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        return self.choices[int(rng.integers(len(self.choices)))]

    def grid(self, num_points: int) -> list:
        """`num_points` evenly spaced values (geometric for loguniform), ends included."""
        if self.distribution == "choice":
            return list(self.choices[:num_points]) if num_points < len(self.choices) else list(self.choices)
        if num_points == 1:
            middle = (math.sqrt(self.low * self.high) if self.distribution == "loguniform"
                      else (self.low + self.high) / 2)
            return [int(round(middle)) if self.distribution == "int" else float(middle)]
        if self.distribution == "loguniform":
            return [float(v) for v in np.geomspace(self.low, self.high, num_points)]
        values = np.linspace(self.low, self.high, num_points)
        if self.distribution == "int":
            return sorted({int(round(v)) for v in values})
        return [float(v) for v in values]


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_param(spec: str) -> SearchParam:
    """`KEY:DISTRIBUTION:ARGS` (see the module docstring) -> SearchParam."""
    parts = spec.split(":")
    if len(parts) < 3:
        raise ValueError(f"--param {spec!r} must look like KEY:loguniform:LOW:HIGH or KEY:choice:A,B")
    key, distribution = parts[0], parts[1]
    if distribution == "choice":
        return SearchParam(key, "choice", choices=tuple(_literal(v) for v in ":".join(parts[2:]).split(",")))
    if len(parts) != 4:
        raise ValueError(f"--param {spec!r}: {distribution} needs KEY:{distribution}:LOW:HIGH")
    try:
        low, high = float(parts[2]), float(parts[3])
    except ValueError:
        raise ValueError(f"--param {spec!r}: LOW and HIGH must be numbers") from None
    return SearchParam(key, distribution, low=low, high=high)


def sample_trials(params: Sequence[SearchParam], num_trials: int, seed: int) -> list[dict[str, Any]]:
    """`num_trials` independent random draws of every parameter (reproducible from `seed`)."""
    if num_trials < 1:
        raise ValueError(f"num_trials must be positive, got {num_trials}")
    rng = np.random.default_rng(seed)
    return [{param.key: param.sample(rng) for param in params} for _ in range(num_trials)]


def grid_trials(params: Sequence[SearchParam], num_trials: int) -> list[dict[str, Any]]:
    """A full grid with at most `num_trials` points: floor(num_trials ** (1/d)) values per parameter."""
    if num_trials < 1:
        raise ValueError(f"num_trials must be positive, got {num_trials}")
    per_axis = max(1, int(math.floor(num_trials ** (1.0 / len(params)) + 1e-9)))
    axes = [param.grid(per_axis) for param in params]
    trials = [{}]
    for param, values in zip(params, axes):
        trials = [{**trial, param.key: value} for trial in trials for value in values]
    return trials


def with_values(config, values: dict[str, Any]):
    """A copy of `config` with dotted `values` set; unknown keys fail listing the valid ones."""
    config = copy.deepcopy(config)
    for key, value in values.items():
        node, parts = config, key.split(".")
        for depth, part in enumerate(parts):
            if part not in node:
                where = ".".join(parts[:depth]) or "config"
                raise ValueError(f"unknown config key {key!r}: {where} has no {part!r}; "
                                 f"valid keys: {', '.join(sorted(node.keys()))}")
            if depth < len(parts) - 1:
                node = node[part]
        current = node[parts[-1]]
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        node[parts[-1]] = value
    return config


def _run_trial(train_fn: Callable, config, workdir: str, metric: str) -> dict:
    from jaxvision.training.loop import NonFiniteLossError

    results_path = os.path.join(workdir, "results.json")
    if os.path.exists(results_path):
        with open(results_path) as f:
            return {metric: json.load(f)[metric], "error": ""}
    try:
        return {metric: float(train_fn(config, workdir)[metric]), "error": ""}
    except NonFiniteLossError as error:  # A diverging learning rate is a result, not a crash.
        logger.warning("trial in %s diverged: %s", workdir, error)
        return {metric: float("nan"), "error": str(error).split(";")[0]}


def run_search(config, workdir: str, params: Sequence[SearchParam], *, num_trials: int, seed: int = 0,
               with_grid: bool = True, metric: str = "test_accuracy", mode: str = "max",
               train_fn: Callable | None = None) -> dict:
    """Random search (and a same-budget grid) over `params`; returns and writes the results.

    `train_fn(config, workdir) -> results dict` defaults to the classification trainer (quietly).
    Returns `{"trials": [row, ...], "best": {"random": row, "grid": row}}`, each row holding the
    strategy, trial index, parameter values, `metric`, error text (diverged) and sub-workdir.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if not params:
        raise ValueError("search needs at least one parameter")
    if train_fn is None:
        from jaxvision.trainers import classification

        def train_fn(trial_config, trial_workdir):
            return classification.train_and_evaluate(trial_config, trial_workdir, show_progress=False)

    strategies = {"random": sample_trials(params, num_trials, seed)}
    if with_grid:
        strategies["grid"] = grid_trials(params, num_trials)
    for values_list in strategies.values():
        for values in values_list:
            with_values(config, values)  # Fail on a bad key before the first training.
    rows = []
    for strategy, values_list in strategies.items():
        for index, values in enumerate(values_list):
            trial_workdir = os.path.join(workdir, strategy, f"trial_{index:03d}")
            outcome = _run_trial(train_fn, with_values(config, values), trial_workdir, metric)
            row = {"strategy": strategy, "trial": index, **values, **outcome, "workdir": trial_workdir}
            rows.append(row)
            logger.info("%s trial %d %s -> %s %.4f", strategy, index, values, metric, outcome[metric])
    best = {}
    for strategy in strategies:
        finite = [row for row in rows if row["strategy"] == strategy and math.isfinite(row[metric])]
        if finite:
            best[strategy] = (max if mode == "max" else min)(finite, key=lambda row: row[metric])
    summary = {"metric": metric, "mode": mode, "num_trials": num_trials, "seed": seed,
               "params": [dataclasses.asdict(param) for param in params], "trials": rows, "best": best}
    write_results(workdir, summary, params)
    return summary


def write_results(workdir: str, summary: dict, params: Sequence[SearchParam]) -> None:
    """`results.csv`, `results.json` and `search.png` in `workdir`."""
    os.makedirs(workdir, exist_ok=True)
    rows, metric = summary["trials"], summary["metric"]
    columns = ["strategy", "trial", *[param.key for param in params], metric, "error", "workdir"]
    with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    plot_search(os.path.join(workdir, "search.png"), rows, params, metric)


def plot_search(path: str, rows: list[dict], params: Sequence[SearchParam], metric: str) -> None:
    """Scatter of the first two numeric parameters coloured by `metric` (one parameter: metric vs it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = [param for param in params if param.distribution != "choice"]
    figure, axis = plt.subplots(figsize=(6, 5))
    markers = {"random": "o", "grid": "s"}
    scatter = None
    for strategy, marker in markers.items():
        chosen = [row for row in rows if row["strategy"] == strategy]
        if not chosen or not numeric:
            continue
        xs = [row[numeric[0].key] for row in chosen]
        values = [row[metric] for row in chosen]
        ys = [row[numeric[1].key] for row in chosen] if len(numeric) > 1 else values
        scatter = axis.scatter(xs, ys, c=values, marker=marker, cmap="viridis", edgecolors="k", label=strategy,
                               vmin=np.nanmin([row[metric] for row in rows]),
                               vmax=np.nanmax([row[metric] for row in rows]))
    if numeric:
        axis.set_xlabel(numeric[0].key)
        axis.set_xscale("log" if numeric[0].distribution == "loguniform" else "linear")
        if len(numeric) > 1:
            axis.set_ylabel(numeric[1].key)
            axis.set_yscale("log" if numeric[1].distribution == "loguniform" else "linear")
        else:
            axis.set_ylabel(metric)
    if scatter is not None:
        figure.colorbar(scatter, ax=axis, label=metric)
        axis.legend()
    axis.set_title(f"random vs grid search ({metric})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
