"""Pieces every trainer's loop shares: stop signals, NaN checks of host metrics, atomic JSON.

`SignalCatcher` turns SIGTERM/SIGINT into a flag that the loop checks after each step (it then saves
a checkpoint and raises `TrainingInterrupted`); `host_metrics` sums per-step `(sum, count)` metrics
on the host and returns each step's loss so a NaN/inf can be named by step (`NonFiniteLossError`).
"""

import json
import os
import signal
import threading

import jax
import numpy as np


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGINT arrived; a checkpoint of the current step was saved before raising."""


class SignalCatcher:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (main thread only)."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        if self.received is not None:  # A second signal: stop now.
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def host_metrics(step_metrics: list[dict]) -> tuple[dict[str, float], np.ndarray]:
    """Sum a list of per-step metrics dicts on the host; also return each step's mean loss."""
    host = jax.device_get(step_metrics)
    losses = np.asarray([m["loss"][0] / max(m["loss"][1], 1e-12) for m in host])
    totals = {name: (sum(m[name][0] for m in host), sum(m[name][1] for m in host)) for name in host[0]}
    return {name: float(s / max(c, 1e-12)) for name, (s, c) in totals.items()}, losses


def write_json(path: str, payload: dict) -> None:
    """Write JSON atomically (a killed run never leaves a truncated file)."""
    if jax.process_index() != 0:
        return
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
