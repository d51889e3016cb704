"""Early stopping on an evaluation metric: stop after `patience` evaluations without improvement.

    stopper = EarlyStopping("test_accuracy", mode="max", patience=3)
    for each evaluation at `step`:
        if stopper.update(step, eval_metrics):
            break          # checkpoint + results.json as at the normal end

Configured by `config.early_stopping_patience` (0: off) and `config.checkpoint.best_metric`/`best_mode`,
the same metric that picks the kept best checkpoint. The trainers evaluate on the data set's test
split, so choosing the stopping step on it is selection on the test set; hold out a validation
split when the number must stay an unbiased estimate.
"""

import dataclasses


@dataclasses.dataclass
class EarlyStopping:
    """Counts evaluations since the best value of `metric` (strictly better by more than `min_delta`)."""

    metric: str
    mode: str = "max"
    patience: int = 1
    min_delta: float = 0.0
    best_value: float | None = None
    best_step: int | None = None
    num_bad_evaluations: int = 0

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if not self.metric:
            raise ValueError("early stopping needs a metric name (config.checkpoint.best_metric)")

    def is_better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        if self.mode == "max":
            return value > self.best_value + self.min_delta
        return value < self.best_value - self.min_delta

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """Record the evaluation at `step`; True when `patience` evaluations in a row did not improve."""
        if self.metric not in metrics:
            raise ValueError(f"early stopping metric {self.metric!r} is not among the evaluation metrics "
                             f"{sorted(metrics)}; set config.checkpoint.best_metric to one of them")
        value = float(metrics[self.metric])
        if self.is_better(value):
            self.best_value, self.best_step, self.num_bad_evaluations = value, step, 0
        else:
            self.num_bad_evaluations += 1
        return self.num_bad_evaluations >= self.patience

    def resume(self, *, best_step: int | None, best_value: float | None, step: int, eval_every: int) -> None:
        """Continue a restored run: the best kept checkpoint and the evaluations made since it."""
        if best_step is None or best_value is None:
            return
        self.best_value, self.best_step = float(best_value), best_step
        self.num_bad_evaluations = max(step - best_step, 0) // max(eval_every, 1)
