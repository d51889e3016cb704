"""The machine a run or a benchmark ran on: processor model, vector ISA, cores, memory, accelerator
and library versions.

Two facts make this worth recording. Bitwise reproducibility (`params_fingerprint` in
`results.json`) holds for the same device count and XLA flags *on the same processor and jaxlib*:
XLA:CPU picks kernels by vector ISA, so the default job that ends at 98.40% test accuracy on the
project's earlier VMs ends at 98.00% on an AMD EPYC with AVX2 only, bit for bit the same on each
(same network and model settings; 98.30% there since LeNet-5's conv2 takes processor-tuned kernels).
And CPU speed ratios against PyTorch depend on the processor too: on that AMD VM ViT-B/16's forward
pass read 0.97x of PyTorch where an earlier VM (the eleventh session noted AVX-512) had read 1.35x,
with no change to either library. So every trainer writes `describe_machine()` into `results.json`
and every benchmark into its JSON, with `machine_line()` above its table; compare reproductions and
speed figures only between the same machines.

Reads /proc/cpuinfo and /proc/meminfo (Linux); elsewhere those fields are None.
"""

import importlib.metadata
import os
import platform

# Vector extensions that decide which kernels XLA (YNNPACK, Eigen) and oneDNN/MKL pick.
_ISA_FLAGS = ("avx512f", "avx512_bf16", "amx_tile", "avx2", "fma", "avx")
_MACHINE_KEYS = ("cpu_model", "cpu_vendor", "isa", "logical_cores", "memory_gib", "accelerator", "python")


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


def cpu_has_flag(flag: str) -> bool:
    """Whether the first processor lists `flag` (e.g. "avx512f") in /proc/cpuinfo; False where
    there is no /proc/cpuinfo."""
    return flag in _cpuinfo_fields().get("flags", "").split()


def describe_machine(packages=("jax", "jaxlib", "flax", "optax")) -> dict:
    """A JSON-ready description of this machine and of the installed `packages`.

    Keys: cpu_model, cpu_vendor, isa (the vector extensions in `_ISA_FLAGS` the processor has,
    widest first), logical_cores, memory_gib, accelerator (JAX's first device kind, e.g. "cpu" or
    "NVIDIA H100 80GB HBM3"), python, then one key per package with its version (None if absent).
    Starts JAX's backends if nothing has yet (for `accelerator`).
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
        **{package: _version(package) for package in packages},
    }


def machine_line(description: dict | None = None) -> str:
    """One line for a printed header, e.g. "AMD EPYC (AuthenticAMD; avx2 fma avx), 2 cores,
    23.5 GiB; accelerator cpu; jax 0.10.2, jaxlib 0.10.2, flax 0.12.8, optax 0.2.8"."""
    d = description or describe_machine()
    isa = " ".join(d["isa"]) if d["isa"] else "ISA unknown"
    versions = ", ".join(f"{key} {value}" for key, value in d.items() if key not in _MACHINE_KEYS)
    return (
        f"{d['cpu_model']} ({d['cpu_vendor']}; {isa}), {d['logical_cores']} cores, {d['memory_gib']} GiB; "
        f"accelerator {d['accelerator']}; {versions}"
    )


if __name__ == "__main__":  # python -m jaxvision.training.machine
    print(machine_line())
