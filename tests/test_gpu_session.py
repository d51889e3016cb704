"""The prepared GPU device check (`experiments/gpu_session.sh`) must work the first time a session
is lent a GPU: a session has 15 minutes of device time and the GPU image cannot install packages.
These tests check on the CPU what can go wrong before any GPU work starts."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(REPO, "experiments")

# jaxvision's runtime dependencies that the GPU image lacks (its package list: the device tool's
# KINDS.md). bench_models.py must not import them, directly or through jaxvision.
NOT_ON_THE_GPU_IMAGE = ("tensorflow_datasets", "grain", "ml_collections", "mlxtend", "tensorboardX", "array_record")

_IMPORT_CHECK = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {NOT_ON_THE_GPU_IMAGE!r}:
            raise ModuleNotFoundError(name + " is not on the GPU image")
sys.meta_path.insert(0, Block())
import bench_models
bench_models.torchvision_models()
from jaxvision.models import torchvision_weights, summary
from jaxvision.training import machine
description = machine.describe_machine()
assert description["logical_cores"] >= 1 and description["jax"], description
print("imports ok:", machine.machine_line(description))
"""


def test_the_script_parses():
    subprocess.run(["bash", "-n", os.path.join(EXPERIMENTS, "gpu_session.sh")], check=True)


def test_bench_models_imports_without_the_packages_the_gpu_image_lacks():
    pytest.importorskip("torch")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, EXPERIMENTS])}
    result = subprocess.run([sys.executable, "-c", _IMPORT_CHECK], capture_output=True, text=True, env=env,
                            cwd=EXPERIMENTS, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imports ok:" in result.stdout


def test_the_import_check_fails_when_a_blocked_package_is_imported():
    """The check above can fail: importing a blocked package inside it raises."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, EXPERIMENTS])}
    check = _IMPORT_CHECK.split("import bench_models")[0] + "import ml_collections\n"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert "ml_collections is not on the GPU image" in result.stderr
