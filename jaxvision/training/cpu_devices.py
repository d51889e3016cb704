"""One XLA CPU device per core, so that data parallelism uses every core of a CPU-only machine.

JAX exposes a single CPU device by default. XLA:CPU runs that device's convolutions and dots on
all cores, but its elementwise fusions (BatchNorm, ReLU, pooling, the optimizer update, layout
transposes) on one. Splitting the batch over one device per core with the same `jax.jit` +
`NamedSharding` step runs all of that in parallel: on a 2-core VM the LeNet-5 train step (batch 128)
went from 1,317 to 2,790 images/s and the CIFAR ResNet-18 step from 25 to 37
(`experiments/bench_train_step.py` measures it against PyTorch).

The device count has to be fixed before JAX starts its backends (`jax_num_cpu_devices`), so
`jaxvision train` calls `configure_cpu_devices` before any JAX operation. It never overrides a
count the user already chose (`XLA_FLAGS=--xla_force_host_platform_device_count=N`,
`JAX_NUM_CPU_DEVICES=N`, or `jax.config.update("jax_num_cpu_devices", N)`), and it leaves a
multi-process run (`jax.distributed.initialize`) at one device per process. On a GPU or TPU host
the training devices are the accelerators; the extra CPU devices are unused and harmless.

XLA:CPU runs every device's programs on one thread pool of max(cores, devices) threads. With one
thread per device, steps queued ahead of the devices can leave every thread waiting in an
all-reduce for a device that has no thread left: on 2 cores and 2 devices a loop that queued 33 or
more LeNet-5 steps (or 300 one-convolution steps) before reading a result aborted within a minute
("Termination timeout for `all reduce`"), every time. Two guards, each enough alone in the tests
(`tests/training/test_cpu_devices.py`): `configure_cpu_devices` raises `NPROC`, from which XLA sizes
the pool, to two threads per device (8 runs of 3,000 queued one-convolution steps, no stall; no
slower), and jaxvision's loops keep at most two steps queued (`jaxvision.training.dispatch`).

Splitting the batch is one of two ways to use the cores; `configure_cpu_parallelism` picks between
it and threaded elementwise fusions on one device, and which kernels run the convolutions
(`training/cpu_fusions.py`, which measures the combinations).

Results are bitwise reproducible for the same device count (`results.json` records it); a run on
another number of devices agrees to float32 rounding, not bit for bit.
"""

import logging
import math
import os
import re
from collections.abc import Sequence

import jax

from jaxvision.training import cpu_fusions

logger = logging.getLogger(__name__)

FORCE_COUNT_FLAG = "--xla_force_host_platform_device_count"
THREADS_PER_DEVICE = 2
CPU_PARALLELISM = ("devices", "threads")
# The environment variables that fix a process's CPU setup before JAX starts (device count, pool
# threads, XLA flags): a child process meant to make its own choice starts without them.
CPU_SETUP_VARIABLES = ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "NPROC")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity API
        return os.cpu_count() or 1


def automatic_cpu_device_count(batch_sizes: Sequence[int], cores: int) -> int:
    """The most devices, at most `cores`, over which every batch size in `batch_sizes` splits evenly.

    E.g. cores 2, batches (128, 500) -> 2; cores 6 -> 4; cores 8 -> 4 (500 is not divisible by 8).
    """
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if not batch_sizes or any(int(size) < 1 for size in batch_sizes):
        raise ValueError(f"batch_sizes must be positive, got {tuple(batch_sizes)}")
    common = math.gcd(*(int(size) for size in batch_sizes))
    return max(count for count in range(1, cores + 1) if common % count == 0)


def configure_cpu_parallelism(
    strategy: str, requested: int, batch_sizes: Sequence[int], convolutions: str = "ynnpack"
) -> int | None:
    """Spread a CPU-only run over the cores the way `strategy` says; call before any JAX operation.

    Args:
      strategy: "devices": one device per core (`configure_cpu_devices(requested, ...)`);
        "threads": elementwise fusions on every core (YNNPACK's, `cpu_fusions`) on `requested`
        devices, 1 when `requested` is 0.
      requested, batch_sizes: as for `configure_cpu_devices`.
      convolutions: "ynnpack" (XLA's default) or "eigen": which kernels run the convolutions
        (`cpu_fusions.ynn_fusion_types`).

    Returns:
      What `configure_cpu_devices` returns.
    """
    if strategy not in CPU_PARALLELISM:
        raise ValueError(f"unknown cpu_parallelism {strategy!r}; valid: {', '.join(CPU_PARALLELISM)}")
    fusion_types = cpu_fusions.ynn_fusion_types(strategy, convolutions)
    cpu_fusions.set_ynn_fusion_types(
        fusion_types, f"cpu_parallelism={strategy!r}, cpu_convolutions={convolutions!r}"
    )
    if strategy == "threads":
        requested = requested or 1
    return configure_cpu_devices(requested, batch_sizes)


def configure_cpu_devices(requested: int, batch_sizes: Sequence[int]) -> int | None:
    """Set how many devices JAX's CPU platform exposes; call before any JAX operation.

    Args:
      requested: 0 picks `automatic_cpu_device_count(batch_sizes, usable_cores())`; N >= 1 asks for
        exactly N (also more than the cores, e.g. to test an 8-device run on a laptop).
      batch_sizes: the global batch sizes the run will split over the devices (train, eval).

    Returns:
      The count set, or None when it was left alone: the user chose one already, the run is
      multi-process, or JAX had started (then an explicit `requested` that differs from the CPU
      devices JAX has is logged as a warning; the run uses the devices there are).
    """
    if requested < 0:
        raise ValueError(f"cpu_devices must be >= 0 (0: one per core), got {requested}")
    chosen = user_chosen_count()
    if chosen is not None:
        reserve_threads(chosen)
        return None
    if jax.distributed.is_initialized():
        return None
    count = requested or automatic_cpu_device_count(batch_sizes, usable_cores())
    try:
        jax.config.update("jax_num_cpu_devices", count)
        reserve_threads(count)
    except RuntimeError:  # backends already initialized (e.g. in a notebook that ran JAX code)
        cpu_count = len(jax.devices("cpu"))
        if requested and requested != cpu_count:
            logger.warning(
                "cpu_devices=%d has no effect: JAX already started with %d CPU device(s); set it "
                "before any JAX operation (or JAX_NUM_CPU_DEVICES=%d in the environment)",
                requested, cpu_count, requested,
            )
        return None
    return count


def user_chosen_count() -> int | None:
    """The CPU device count set through `jax_num_cpu_devices` (or JAX_NUM_CPU_DEVICES) or XLA_FLAGS."""
    if jax.config.jax_num_cpu_devices >= 0:
        return jax.config.jax_num_cpu_devices
    match = re.search(FORCE_COUNT_FLAG + r"=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(match.group(1)) if match else None


def reserve_threads(num_devices: int) -> None:
    """Ask XLA for `THREADS_PER_DEVICE` pool threads per CPU device (module doc) before JAX starts.

    XLA sizes the pool as max(NPROC or the cores, devices) when the CPU client is created; a
    larger NPROC already set is kept. One device needs no reserve (it has no collectives).
    """
    if num_devices < 2:
        return
    threads = THREADS_PER_DEVICE * num_devices
    current = os.environ.get("NPROC", "")
    if not (current.isdigit() and int(current) >= threads):
        os.environ["NPROC"] = str(threads)
