"""Keep freed host memory for reuse, so XLA:CPU's per-step buffers are not page-faulted in anew.

Every execution of a compiled step on XLA:CPU allocates its temporary buffer (1.6 GB for the CIFAR
ResNet-18 train step at batch 128) and frees it at the end, and XLA's Eigen convolutions allocate
their packed operands (302 MB at a time for the 32x32x64 layers there) on every call. glibc's malloc
serves requests above 32 MB (and any large one made from a worker thread's arena) with a fresh
`mmap` and returns them with `munmap` on free, so each step touches all of that memory for the
first time again: 410,000 minor page faults per ResNet-18 step (strace: one 1.6 GB and fourteen
38-302 MB mmap/munmap pairs per step), each one a kernel trap plus zeroing a 4 KB page.

`configure_cpu_allocator("reuse")` asks glibc (through `mallopt`) to keep that memory instead:

  - `M_ARENA_MAX=1`: every thread allocates from the main arena, which grows with `brk` (a worker
    thread's own arena cannot hold a chunk over 64 MB and mmaps it whatever the other settings);
  - `M_MMAP_MAX=0`: large requests come from the heap, not from private mappings;
  - `M_TRIM_THRESHOLD=-1`: freed memory at the top of the heap is never given back to the kernel.

Measured on the 2-core VM (`experiments/README.md` has the benchmark tables): the ResNet-18 CIFAR
train step (threads + Eigen, batch 128) went from 410,000 to 0 minor faults per step; at the cost
of memory that stays resident: 5.3 GB between steps instead of 2.3 GB (the 1.6 GB temporary is kept,
and once more when fragmentation leaves the first copy too small; stable from the second step on,
12 x 2 steps). PyTorch's CPU training gains from the same setting too (its 610,000 faults per step
went to 0), and the benchmarks run both under it in one process.

"system" leaves malloc as it is. Nothing is changed where another allocator is preloaded (Colab
runtimes preload tcmalloc, which reuses memory by itself), off Linux, or on a C library other
than glibc. The settings apply to the whole process from then on and are best made before JAX
starts its thread pool (`jaxvision train` does so): a thread that already has its own arena keeps
it, so its large buffers would still be mapped and unmapped (slower, never wrong).
"""

import ctypes
import ctypes.util
import logging
import os
import platform

logger = logging.getLogger(__name__)

CPU_ALLOCATORS = ("reuse", "system")
# glibc's <malloc.h> parameter numbers for mallopt().
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
REUSE_SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))  # -1: never trim
PRELOADED_ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")


def preloaded_allocator() -> str | None:
    """The name of a malloc replacement loaded into this process (LD_PRELOAD or linked), or None."""
    try:
        with open("/proc/self/maps") as maps:
            mapped = maps.read()
    except OSError:
        mapped = ""
    loaded = mapped + " " + os.environ.get("LD_PRELOAD", "")
    return next((name for name in PRELOADED_ALLOCATORS if f"lib{name}" in loaded), None)


def configure_cpu_allocator(allocator: str) -> bool:
    """Apply `allocator` ("reuse" or "system", module doc) to this process; True if malloc was tuned.

    Raises:
      ValueError: for an unknown `allocator`.
    """
    if allocator not in CPU_ALLOCATORS:
        raise ValueError(f"unknown cpu_allocator {allocator!r}; valid: {', '.join(CPU_ALLOCATORS)}")
    if allocator == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        logger.info("cpu_allocator='reuse' applies to glibc's malloc only; leaving %s's as it is",
                    platform.libc_ver()[0] or platform.system())
        return False
    if (preloaded := preloaded_allocator()) is not None:
        logger.info("cpu_allocator='reuse': %s is preloaded and keeps freed memory itself", preloaded)
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    failed = [parameter for parameter, value in REUSE_SETTINGS if libc.mallopt(parameter, value) != 1]
    if failed:  # mallopt returns 1 on success; glibc accepts all three since 2.10
        logger.warning("cpu_allocator='reuse': glibc refused mallopt parameters %s", failed)
        return False
    return True
