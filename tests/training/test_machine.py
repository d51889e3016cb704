"""training/machine.py: what results.json and the benchmarks record about the machine."""

import functools
import json

from jaxvision.training import machine

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse2 avx fma avx2 bmi2

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: not the first processor
flags\t\t: avx512f
"""


def test_cpuinfo_is_read_from_the_first_processor_block(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    fields = machine._cpuinfo_fields(str(path))
    assert fields["model name"] == "AMD EPYC 7B13" and fields["vendor_id"] == "AuthenticAMD"
    assert "avx512f" not in fields["flags"]


def test_isa_lists_the_vector_extensions_present_widest_first(monkeypatch, tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.replace("bmi2", "bmi2 avx512f avx512_bf16"))
    monkeypatch.setattr(machine, "_cpuinfo_fields", functools.partial(machine._cpuinfo_fields, str(path)))
    description = machine.describe_machine(packages=("jax", "no-such-package"))
    assert description["isa"] == ["avx512f", "avx512_bf16", "avx2", "fma", "avx"]
    assert description["cpu_model"] == "AMD EPYC 7B13" and description["cpu_vendor"] == "AuthenticAMD"
    assert description["accelerator"] == "cpu" and description["jax"] and description["no-such-package"] is None
    json.dumps(description)  # results.json and the benchmarks' JSON take it as is


def test_without_proc_files_the_processor_fields_are_unknown(monkeypatch, tmp_path):
    assert machine._cpuinfo_fields(str(tmp_path / "missing")) == {}
    assert machine._memory_gib(str(tmp_path / "missing")) is None
    monkeypatch.setattr(machine, "_cpuinfo_fields", lambda: {})
    monkeypatch.setattr(machine.platform, "processor", lambda: "")
    description = machine.describe_machine(packages=())
    assert description["isa"] is None and description["cpu_model"] is None and description["cpu_vendor"] is None


def test_machine_line_names_processor_isa_and_versions():
    description = {"cpu_model": "AMD EPYC", "cpu_vendor": "AuthenticAMD", "isa": ["avx2", "fma"],
                   "logical_cores": 2, "memory_gib": 23.5, "accelerator": "cpu", "python": "3.11.7",
                   "jax": "0.10.2", "torch": "2.13.0+cpu"}
    assert machine.machine_line(description) == (
        "AMD EPYC (AuthenticAMD; avx2 fma), 2 cores, 23.5 GiB; accelerator cpu; jax 0.10.2, torch 2.13.0+cpu"
    )
    assert "ISA unknown" in machine.machine_line({**description, "isa": None})
