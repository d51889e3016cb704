"""What machine a benchmark ran on: processor model, vector ISA, cores, memory, accelerator and versions.

CPU ratios against PyTorch depend on the processor, not only on the code. The project's 2-core VMs
are not all the same machine: the eleventh session noted AVX-512 on its VM, the fifteenth drew an
AMD EPYC (Zen 3) with AVX2 only, and there ViT-B/16's forward pass read 0.97x of PyTorch where the
fourteenth session had read 1.35x, with no change to either library. Until now the benchmarks did
not record which processor they ran on. So every benchmark writes `describe_machine()` into its
JSON and prints `machine_line()` above its table, and figures are compared only between runs on the
same processor.

Reads /proc/cpuinfo and /proc/meminfo (Linux); elsewhere those fields are None.
"""

import importlib.metadata
import os
import platform

# Vector extensions that decide which kernels XLA (YNNPACK, Eigen) and oneDNN/MKL pick.
_ISA_FLAGS = ("avx512f", "avx512_bf16", "amx_tile", "avx2", "fma", "avx")


def _cpuinfo_fields(path: str = "/proc/cpuinfo") -> dict:
    """The first processor's `key: value` fields from /proc/cpuinfo, or {} where there is none."""
    fields = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block ends at a blank line
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return {}
    return fields


def _memory_gib(path: str = "/proc/meminfo") -> float | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_machine() -> dict:
    """A JSON-ready description of this machine and the libraries a benchmark compares.

    Keys: cpu_model, cpu_vendor, isa (the vector extensions in `_ISA_FLAGS` the processor has,
    widest first), logical_cores, memory_gib, accelerator (JAX's first device kind, e.g. "cpu" or
    "NVIDIA H100 80GB HBM3"), python, and versions of jax, jaxlib, flax, torch.
    """
    cpu = _cpuinfo_fields()
    flags = set(cpu.get("flags", "").split())
    try:
        import jax

        accelerator = jax.devices()[0].device_kind
    except Exception as error:  # noqa: BLE001 - a description must never stop a benchmark
        accelerator = f"unknown ({type(error).__name__})"
    return {
        "cpu_model": cpu.get("model name") or platform.processor() or None,
        "cpu_vendor": cpu.get("vendor_id"),
        "isa": [flag for flag in _ISA_FLAGS if flag in flags] if flags else None,
        "logical_cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "accelerator": accelerator,
        "python": platform.python_version(),
        **{package: _version(package) for package in ("jax", "jaxlib", "flax", "torch")},
    }


def machine_line(description: dict | None = None) -> str:
    """One line for a benchmark's printed header, e.g.
    "AMD EPYC (AuthenticAMD; avx2 fma avx), 2 cores, 23.4 GiB; accelerator cpu; jax 0.10.2, torch 2.13.0+cpu".
    """
    d = description or describe_machine()
    isa = " ".join(d["isa"]) if d["isa"] else "ISA unknown"
    return (
        f"{d['cpu_model']} ({d['cpu_vendor']}; {isa}), {d['logical_cores']} cores, {d['memory_gib']} GiB; "
        f"accelerator {d['accelerator']}; jax {d['jax']}, flax {d['flax']}, torch {d['torch']}"
    )


if __name__ == "__main__":
    print(machine_line())
