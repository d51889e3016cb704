"""Run logging: a progress bar, `metrics.jsonl`, TensorBoard events and a learning-curve PNG.

Only process 0 writes (multi-host runs would otherwise write every line N times).
"""

import json
import os
import time

import jax
import numpy as np


class RunLogger:
    """Writes metrics of a run into `workdir`.

    Files: `metrics.jsonl` (one JSON object per record, with "step", "split" and metric values),
    `events.out.tfevents.*` (TensorBoard scalars under "<split>/<name>"), `learning_curves.png`.
    """

    def __init__(self, workdir: str, *, total_steps: int, initial_step: int = 0, show_progress: bool = True):
        self.workdir = workdir
        self.is_writer = jax.process_index() == 0
        self.metrics_path = os.path.join(workdir, "metrics.jsonl")
        self._tensorboard = None
        self._progress = None
        if self.is_writer:
            os.makedirs(workdir, exist_ok=True)
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(logdir=workdir)
            if show_progress:
                from tqdm.auto import tqdm

                self._progress = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True)
        self._last_time = time.perf_counter()

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        """Append one record for `split` ("train"/"test"/"test_ema") at `step`."""
        if not self.is_writer:
            return
        record = {"step": int(step), "split": split, **{k: float(v) for k, v in metrics.items()}}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in metrics.items():
            self._tensorboard.add_scalar(f"{split}/{name}", float(value), global_step=int(step))
        self._tensorboard.flush()

    def advance(self, num_steps: int, postfix: dict[str, float] | None = None) -> None:
        """Move the progress bar by `num_steps` and show `postfix` (e.g. loss, accuracy, img/s)."""
        if self._progress is None:
            return
        self._progress.update(num_steps)
        if postfix:
            self._progress.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def message(self, text: str) -> None:
        if not self.is_writer:
            return
        if self._progress is not None:
            self._progress.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_metrics(workdir: str) -> list[dict]:
    """The records of `workdir/metrics.jsonl` (empty list if none)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_learning_curves(workdir: str, output_name: str = "learning_curves.png") -> str | None:
    """Plot loss and accuracy against step for every split in `metrics.jsonl`; returns the PNG path."""
    records = read_metrics(workdir)
    if not records or jax.process_index() != 0:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for split in sorted({r["split"] for r in records}):
            points = [(r["step"], r[metric]) for r in records if r["split"] == split and metric in r]
            if points:
                steps, values = np.asarray(points).T
                axis.plot(steps, values, marker="o" if split != "train" else None, markersize=3, label=split)
        axis.set_xlabel("step")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    axes[1].set_ylim(top=1.0)
    figure.suptitle(os.path.basename(os.path.abspath(workdir)))
    figure.tight_layout()
    path = os.path.join(workdir, output_name)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
