"""The prepared GPU device check (`experiments/gpu_session.sh`) must work the first time a session
is lent a GPU: a session has 15 minutes of device time and the GPU image cannot install packages.
These tests check on the CPU what can go wrong before any GPU work starts."""

import json
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


def test_bench_models_keeps_the_repetitions_timed_before_a_stop(tmp_path, monkeypatch):
    """gpu_session.sh stops a network at its time limit: the results written after each repetition
    hold that repetition's figures, marked incomplete, and the final write marks them complete."""
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(EXPERIMENTS)
    import bench_models

    times = {("jaxvision", "forward"): [0.5, 0.25], ("torch", "forward"): [1.0, 1.0],
             ("jaxvision", "train"): [2.0, 4.0], ("torch", "train"): [2.0, 2.0]}
    rows = bench_models.summarize(times, "resnet50", "cpu", batch=8, params=10, roofline=1e9,
                                  flops={"forward": 8e9, "train": 24e9}, jax_compile={"forward": 1, "train": 2},
                                  torch_compile={"forward": 3, "train": 4}, agreement=1e-6)
    forward, train = rows
    assert forward["jaxvision_model_options"] == {} and forward["reps"] == 2
    assert forward["jaxvision_images_per_s"]["median"] == 24.0  # 16 and 32 img/s
    assert forward["ratio"] == 3.0 and train["ratio"] == 0.75  # 24 / 8 and 3 / 4 img/s
    assert forward["jaxvision_limit_ratio"] == pytest.approx(8e9 / (8 / 24) / 1e9)

    bench_models.write_results(str(tmp_path), rows, quick=False, complete=False)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["complete"] is False and written["rows"][1]["reps"] == 2
    bench_models.write_results(str(tmp_path), rows, quick=False)
    assert json.loads((tmp_path / "results.json").read_text())["complete"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary file left


def test_vit_falls_back_to_xla_attention_where_cudnn_refuses(monkeypatch, capsys):
    """On a GPU the ViT contender asks for cuDNN's fused attention first; where that is refused (here:
    no GPU) it runs with jax's fused XLA attention instead of losing the network's figures."""
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(EXPERIMENTS)
    import bench_models
    import jax
    import jax.numpy as jnp
    from jaxvision import models

    assert bench_models.jax_model_options("vit_b_16", recipe="gpu") == [
        {"attention_implementation": "cudnn"}, {"attention_implementation": "xla"}]
    assert bench_models.jax_model_options("vit_b_16", recipe="cpu") == [{}]
    assert bench_models.jax_model_options("resnet50", recipe="gpu") == [{}]

    small = dict(depth=4, hidden_dim=32, num_heads=4, mlp_dim=64)
    create_model = models.create_model  # bench_models.models is jaxvision.models: keep the original
    monkeypatch.setattr(models, "create_model", lambda name, **kwargs: create_model(name, **small, **kwargs))
    images = jnp.zeros((2, 32, 32, 3))
    labels = jnp.array([1, 2])
    variables = create_model("vit_cifar", num_classes=1000, **small).init(jax.random.key(0), images, train=False)
    *contenders, options = bench_models.make_fastest_jax_contenders(
        "vit_cifar", variables, images, labels, jnp.bfloat16, recipe="gpu")
    assert options == {"attention_implementation": "xla"}
    assert "'cudnn' needs an NVIDIA GPU" in capsys.readouterr().out
    assert contenders[3]().shape == (2, 1000)
