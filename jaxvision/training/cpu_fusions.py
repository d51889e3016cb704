"""Elementwise work on every core of a CPU: XLA:CPU's YNNPACK elementwise fusions, set before JAX starts.

XLA:CPU runs its own elementwise fusions (BatchNorm, ReLU, residual adds, the optimizer update) on
one thread per device. It can hand them to YNNPACK instead, which splits them over the cores:
`--xla_cpu_experimental_ynn_fusion_type=individual_dot,eltwise` (by default XLA keeps elementwise
fusions in its own loops). How a CPU-only machine should spread a step over its cores depends on the
network, so `config.cpu_parallelism` chooses (`cpu_devices.configure_cpu_parallelism`):

  - "devices" (the default): one XLA device per core, the batch split over them
    (`training/cpu_devices.py`);
  - "threads": one device whose elementwise fusions run on every core (this module).

Train steps, batch 128, float32, on a quiet 2-core VM, images/s (LeNet-5 and ResNet-18 interleaved
in `experiments/bench_train_step.py`; ResNet-56 and the small ViT in alternating processes):

  | network              | 1 device | one device per core | 1 device, threads |
  |----------------------|----------|---------------------|-------------------|
  | LeNet-5 28x28        | 1,497    | **2,844**           | 1,850             |
  | resnet18_cifar 32x32 | 26       | 37 (37.6)           | 37 (**40**)       |
  | resnet56 32x32       | 46       | 54-57               | **88-96**         |
  | vit_cifar 32x32      | 107      | **108**             | 77                |

ImageNet-scale nets at batch 8 were slower with it too (ResNet-50 train step 0.90x -> 0.68x of
PyTorch, ViT-B/16 forward 1.13x -> 0.63x, `experiments/bench_models.py`, 3 repetitions), and both at once
(threads on per-core devices) was slower than either for LeNet-5 and no faster for the ResNets.
The narrow CIFAR ResNets gain most: their steps are mostly BatchNorm, ReLU and residual adds.
Hence the CIFAR ResNet configs say "threads" and everything else keeps "devices".

The flag is read once, when JAX creates its CPU backend, and applies to every CPU compilation in
the process; accelerators ignore it. Gradients with it agree with a float64 reference as closely as
without (relative error ~6e-6, ResNet-18 CIFAR; `tests/training/test_cpu_fusions.py` checks it in
a fresh process). Set it through XLA_FLAGS, never through `jax.jit(...).compile(compiler_options=
{"xla_cpu_experimental_ynn_fusion_type": ...})`: in jax 0.10.2 that per-compilation route gave
ResNet-18 gradients 12% off, even for the default value.
"""

import logging
import os
import re

from jax._src import xla_bridge

logger = logging.getLogger(__name__)

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
THREADED_FUSION_TYPES = "individual_dot,eltwise"


def fusion_types_in_xla_flags() -> str | None:
    """The value XLA_FLAGS gives `YNN_FUSION_FLAG` (the last one, as XLA reads it), or None."""
    values = re.findall(re.escape(YNN_FUSION_FLAG) + r"=(\S*)", os.environ.get("XLA_FLAGS", ""))
    return values[-1] if values else None


def backends_started() -> bool:
    """Whether JAX has created its backends (after which XLA_FLAGS is no longer read)."""
    return xla_bridge.backends_are_initialized()


def thread_elementwise_fusions() -> bool:
    """Ask XLA:CPU to run elementwise fusions through YNNPACK on every core; call before JAX starts.

    Appends `YNN_FUSION_FLAG=THREADED_FUSION_TYPES` to XLA_FLAGS. Returns True when it did; False
    when it left XLA_FLAGS alone: the user's XLA_FLAGS already sets the flag (theirs is kept), or
    JAX's backends had started (logged as a warning; the run goes on with XLA's default fusions).
    """
    if fusion_types_in_xla_flags() is not None:
        return False
    if backends_started():
        logger.warning(
            "cpu_parallelism='threads' has no effect: JAX has already started; set "
            "XLA_FLAGS=%s=%s before the first JAX operation", YNN_FUSION_FLAG, THREADED_FUSION_TYPES,
        )
        return False
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_FUSION_FLAG}={THREADED_FUSION_TYPES}".strip()
    return True
