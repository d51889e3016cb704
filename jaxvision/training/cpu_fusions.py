"""Which XLA:CPU work runs through YNNPACK (dots, convolutions, reductions, elementwise fusions).

XLA:CPU hands some operations to the YNNPACK library instead of its own kernels, chosen by
`--xla_cpu_experimental_ynn_fusion_type` in XLA_FLAGS, read once when JAX creates its CPU backend.
In jaxlib 0.10 XLA's default is `individual_dot,individual_convolution,reduce` (checked in compiled
HLO): dots, convolutions and reductions in YNNPACK, elementwise fusions (BatchNorm, ReLU, residual
adds, the optimizer update) in XLA's own loops, one thread per device. Two config keys pick the
types (`cpu_devices.configure_cpu_parallelism` applies them before JAX starts):

  - `cpu_parallelism`: "devices" (the default) splits the batch over one device per core
    (`training/cpu_devices.py`); "threads" keeps one device and adds `eltwise`, so YNNPACK runs
    the elementwise fusions on every core;
  - `cpu_convolutions`: "ynnpack" (the default, XLA's) or "eigen": drop `individual_convolution`,
    so XLA runs convolutions with its own Eigen kernels.

Train steps on a quiet 2-core VM, float32, images/s. Batch 128 (LeNet-5 and ResNet-18 interleaved
in `experiments/bench_train_step.py`, the rest in alternating worker processes, 5 x 1-2 steps):

  | network              | devices, ynnpack | devices, eigen | threads, eigen | threads, eigen, no reduce |
  |----------------------|------------------|----------------|----------------|---------------------------|
  | LeNet-5 28x28        | **2,490**        | 2,177          | 1,651          |                           |
  | resnet18_cifar 32x32 | 34.1             | 38.1           | **39.7**       | 37.1                      |
  | resnet56 32x32       | 52.6             | 53.1           | **98.6**       | 94.1                      |
  | vit_cifar 32x32      | **109.6**        | 107.8          |                | 77 (an earlier run)       |

  and batch 8 at 224x224, one device (`experiments/bench_models.py`, interleaved with PyTorch):
  ResNet-50 train step 0.91x of PyTorch with YNNPACK convolutions, 0.95x with Eigen's (forward
  1.06x / 1.05x); ViT-B/16 equal within noise (5.9 vs 6.0 s per step); ResNet-50 with `eltwise`
  added was slower (4.0-4.2 vs 4.4-4.8 images/s), so was splitting its batch over two devices.

YNNPACK's convolutions suit LeNet-5's 5x5 filters over few channels; Eigen's the 3x3 ResNet layers.
The narrow CIFAR ResNets gain most from threads: their steps are mostly BatchNorm, ReLU and residual
adds. Hence the CIFAR ResNet configs say "threads" + "eigen", and `bench_models.py` runs ResNet-50
and ViT-B/16 with "eigen"; everything else keeps the defaults, under which jaxvision sets no flag.

The flag applies to every CPU compilation in the process; accelerators ignore it. jaxlib before
0.9.0 does not know it (0.8.x lacks `individual_convolution`) and XLA aborts the process on an
unknown flag, so there jaxvision leaves XLA_FLAGS alone and logs a warning. Gradients with the flag
agree with a float64 reference as closely as without (relative error ~6e-6, ResNet-18 CIFAR;
`tests/training/test_cpu_fusions.py` checks it in a fresh process). Set it through XLA_FLAGS, never
through `jax.jit(...).compile(compiler_options={"xla_cpu_experimental_ynn_fusion_type": ...})`: in
jax 0.10.2 that per-compilation route gave ResNet-18 gradients 12% off, even for the default value.
"""

import importlib.metadata
import logging
import os
import re

from jax._src import xla_bridge

logger = logging.getLogger(__name__)

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
CPU_CONVOLUTIONS = ("ynnpack", "eigen")
XLA_DEFAULT_FUSION_TYPES = "individual_dot,individual_convolution,reduce"  # jaxlib 0.10's
FIRST_JAXLIB_WITH_FUSION_TYPES = (0, 9, 0)


def fusion_types_in_xla_flags() -> str | None:
    """The value XLA_FLAGS gives `YNN_FUSION_FLAG` (the last one, as XLA reads it), or None."""
    values = re.findall(re.escape(YNN_FUSION_FLAG) + r"=(\S*)", os.environ.get("XLA_FLAGS", ""))
    return values[-1] if values else None


def ynn_fusion_types(parallelism: str, convolutions: str) -> str:
    """The `YNN_FUSION_FLAG` value for a `cpu_parallelism` and a `cpu_convolutions` setting.

    E.g. ("devices", "ynnpack") -> XLA_DEFAULT_FUSION_TYPES; ("threads", "eigen") ->
    "individual_dot,reduce,eltwise".
    """
    if convolutions not in CPU_CONVOLUTIONS:
        raise ValueError(f"unknown cpu_convolutions {convolutions!r}; valid: {', '.join(CPU_CONVOLUTIONS)}")
    types = ["individual_dot", *(["individual_convolution"] * (convolutions == "ynnpack")), "reduce"]
    return ",".join(types + ["eltwise"] * (parallelism == "threads"))


def jaxlib_version() -> tuple[int, ...]:
    """The installed jaxlib's (major, minor, patch), e.g. (0, 10, 2)."""
    return tuple(int(part) for part in re.findall(r"\d+", importlib.metadata.version("jaxlib"))[:3])


def backends_started() -> bool:
    """Whether JAX has created its backends (after which XLA_FLAGS is no longer read)."""
    return xla_bridge.backends_are_initialized()


def set_ynn_fusion_types(fusion_types: str, setting: str) -> bool:
    """Ask XLA:CPU to hand `fusion_types` to YNNPACK; call before JAX starts.

    Appends `YNN_FUSION_FLAG=fusion_types` to XLA_FLAGS. Returns True when it did; False when it
    left XLA_FLAGS alone: `fusion_types` is XLA's default; the user's XLA_FLAGS already sets the
    flag (theirs is kept); or, logged as a warning naming `setting` (the config that asked),
    jaxlib is older than 0.9.0 or JAX's backends had started (the run goes on with XLA's defaults).
    """
    if fusion_types == XLA_DEFAULT_FUSION_TYPES or fusion_types_in_xla_flags() is not None:
        return False
    if (installed := jaxlib_version()) < FIRST_JAXLIB_WITH_FUSION_TYPES:
        logger.warning(
            "%s has no effect: jaxlib %s predates %s (jaxlib >= %s); XLA's default fusions are used",
            setting, ".".join(map(str, installed)), YNN_FUSION_FLAG,
            ".".join(map(str, FIRST_JAXLIB_WITH_FUSION_TYPES)),
        )
        return False
    if backends_started():
        logger.warning(
            "%s has no effect: JAX has already started; set XLA_FLAGS=%s=%s before the first JAX "
            "operation", setting, YNN_FUSION_FLAG, fusion_types,
        )
        return False
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_FUSION_FLAG}={fusion_types}".strip()
    return True
