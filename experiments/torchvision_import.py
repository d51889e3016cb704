"""`torchvision.models` beside a CPU-only torch, for the benchmarks' and tests' PyTorch peers.

The package registry's torchvision wheels are built against CUDA torch. Beside the CPU torch wheel
(`torch==2.13.0+cpu`, what the `bench` and `test` extras install) its compiled operators do not
load, and `import torchvision` then fails in `torchvision._meta_registrations`, which registers fake
kernels for those operators. The model definitions are pure Python and need none of them, so with a
CPU torch that module is replaced by an empty one before the import. With a CUDA torch (a GPU
machine) torchvision is imported untouched. Nothing that uses `torchvision.ops` may rely on this.
"""

import sys
import types

import torch


def torchvision_models():
    """The `torchvision.models` module (0.28 with torch 2.13)."""
    if torch.version.cuda is None:
        name = "torchvision._meta_registrations"
        sys.modules.setdefault(name, types.ModuleType(name))
    import torchvision.models

    return torchvision.models
