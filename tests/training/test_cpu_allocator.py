"""jaxvision.training.cpu_allocator: freed host memory kept for reuse (glibc malloc via mallopt).

The setting changes the whole process's malloc, so the cases that apply it run in a fresh process
(`run_fresh` from test_cpu_devices) and count the page faults of a jitted computation whose 256 MB
intermediate XLA allocates and frees on every call.
"""

import json
import logging
import platform

import pytest

from jaxvision.training import cpu_allocator
from tests.training.test_cpu_devices import run_fresh

PROBE = """
import json, resource, sys
from jaxvision.training import cpu_allocator
applied = cpu_allocator.configure_cpu_allocator(sys.argv[1])
import jax, jax.numpy as jnp
# [8192, 8192] float32 product: a 256 MB temporary per call, above any size glibc keeps by default
largest_product = jax.jit(lambda a, b: (a @ b).max())
a, b = jnp.ones((8192, 16)), jnp.ones((16, 8192))
for _ in range(2):
    largest_product(a, b).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    largest_product(a, b).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
print(json.dumps({"applied": applied, "faults_per_call": faults}))
"""

PAGES_OF_THE_TEMPORARY = 256 * 2**20 // 4096  # 65,536 pages of 4 KB
glibc_linux = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)


def probe(allocator, env_extra=None):
    result = run_fresh(PROBE, allocator, env_extra=env_extra)
    return json.loads(result.stdout.strip().splitlines()[-1])


@glibc_linux
def test_reuse_keeps_xlas_per_call_buffers_resident():
    reused, system = probe("reuse"), probe("system")
    assert reused["applied"] is True and system["applied"] is False
    # "system": the temporary is mapped anew each call and every page of it faults in again
    assert system["faults_per_call"] > 0.5 * PAGES_OF_THE_TEMPORARY, system
    assert reused["faults_per_call"] < 0.05 * PAGES_OF_THE_TEMPORARY, reused


def test_preloaded_allocator_is_found_in_ld_preload(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4")
    assert cpu_allocator.preloaded_allocator() == "tcmalloc"


def test_reuse_is_skipped_where_another_allocator_is_preloaded(monkeypatch, caplog):
    monkeypatch.setattr(cpu_allocator.platform, "system", lambda: "Linux")
    monkeypatch.setattr(cpu_allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    monkeypatch.setattr(cpu_allocator.ctypes, "CDLL", _no_libc)
    with caplog.at_level(logging.INFO, logger=cpu_allocator.__name__):
        assert cpu_allocator.configure_cpu_allocator("reuse") is False
    assert "jemalloc is preloaded" in caplog.text


def test_reuse_is_skipped_off_glibc(monkeypatch, caplog):
    monkeypatch.setattr(cpu_allocator.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(cpu_allocator.ctypes, "CDLL", _no_libc)
    with caplog.at_level(logging.INFO, logger=cpu_allocator.__name__):
        assert cpu_allocator.configure_cpu_allocator("reuse") is False
    assert "glibc's malloc only" in caplog.text


def test_system_changes_nothing(monkeypatch):
    monkeypatch.setattr(cpu_allocator.ctypes, "CDLL", _no_libc)
    assert cpu_allocator.configure_cpu_allocator("system") is False


def test_refused_mallopt_is_reported(monkeypatch, caplog):
    monkeypatch.setattr(cpu_allocator.platform, "system", lambda: "Linux")
    monkeypatch.setattr(cpu_allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(cpu_allocator, "preloaded_allocator", lambda: None)

    class RefusingLibc:
        def __init__(self, name):
            pass

        @staticmethod
        def mallopt(parameter, value):
            return 0 if parameter == cpu_allocator.M_ARENA_MAX else 1

    monkeypatch.setattr(cpu_allocator.ctypes, "CDLL", RefusingLibc)
    assert cpu_allocator.configure_cpu_allocator("reuse") is False
    assert str(cpu_allocator.M_ARENA_MAX) in caplog.text


def test_unknown_allocator_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown cpu_allocator 'tcmalloc'; valid: reuse, system"):
        cpu_allocator.configure_cpu_allocator("tcmalloc")


def _no_libc(name):
    raise AssertionError(f"mallopt must not be called (asked to load {name})")
