"""jaxvision.training.cpu_fusions and cpu_parallelism / cpu_convolutions: what XLA:CPU hands to YNNPACK.

The flag is read when JAX creates its CPU backend, so every case that sets it runs in a fresh
process (`run_fresh` from test_cpu_devices); the test process's JAX has started.
"""

import json
import logging
import os

import pytest

from jaxvision.training import cpu_devices, cpu_fusions
from tests.training.test_cpu_devices import run_fresh

FLAG = cpu_fusions.YNN_FUSION_FLAG

PROBE = """
import json, logging, os, sys
import jax, jax.numpy as jnp
from jaxvision.training import cpu_devices
logging.basicConfig(level=logging.WARNING)
strategy, convolutions, start_first = sys.argv[1], sys.argv[2], sys.argv[3] == "started"
if start_first:
    jnp.zeros(1).block_until_ready()
cpu_devices.configure_cpu_parallelism(strategy, 0, (128, 500), convolutions)
scale_relu = jax.jit(lambda x: jnp.maximum(x * 2.0 + 1.0, 0.0))  # elementwise only: XLA's own reduces may use YNNPACK anyway
conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
print(json.dumps({
    "xla_flags": os.environ.get("XLA_FLAGS", ""), "devices": len(jax.devices("cpu")),
    "elementwise_ynn_fusions": scale_relu.lower(jnp.ones((256, 64))).compile().as_text().count("ynn_fusion"),
    # 32 channels: XLA's default hands this convolution to YNNPACK (16 it keeps)
    "convolution_ynn_fusions": conv.lower(jnp.ones((2, 8, 8, 32)), jnp.ones((3, 3, 32, 32))).compile().as_text().count("ynn_fusion"),
}))
"""


def probe(strategy, convolutions="ynnpack", *, started=False, env_extra=None):
    result = run_fresh(PROBE, strategy, convolutions, "started" if started else "fresh", env_extra=env_extra)
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.parametrize("xla_flags, expected", [
    ("", None),
    ("--xla_force_host_platform_device_count=2", None),
    (f"{FLAG}=individual_dot", "individual_dot"),
    (f"{FLAG}=eltwise --xla_cpu_enable_fast_math=false {FLAG}=", ""),  # XLA reads the last
])
def test_fusion_types_are_read_from_xla_flags(monkeypatch, xla_flags, expected):
    monkeypatch.setenv("XLA_FLAGS", xla_flags)
    assert cpu_fusions.fusion_types_in_xla_flags() == expected


@pytest.mark.parametrize("parallelism, convolutions, expected", [
    ("devices", "ynnpack", cpu_fusions.XLA_DEFAULT_FUSION_TYPES),
    ("devices", "eigen", "individual_dot,reduce"),
    ("threads", "ynnpack", "individual_dot,individual_convolution,reduce,eltwise"),
    ("threads", "eigen", "individual_dot,reduce,eltwise"),
])
def test_fusion_types_of_each_setting(parallelism, convolutions, expected):
    assert cpu_fusions.ynn_fusion_types(parallelism, convolutions) == expected


def test_threads_puts_elementwise_work_into_ynnpack_fusions_on_one_device():
    outcome, _ = probe("threads")
    assert outcome["xla_flags"] == f"{FLAG}={cpu_fusions.ynn_fusion_types('threads', 'ynnpack')}"
    assert outcome["devices"] == 1
    assert outcome["elementwise_ynn_fusions"] > 0  # XLA took the flag: the elementwise chain became a YNNPACK fusion
    assert outcome["convolution_ynn_fusions"] > 0


def test_the_default_setting_leaves_xla_flags_alone_and_splits_over_the_cores():
    outcome, _ = probe("devices")
    assert FLAG not in outcome["xla_flags"] and outcome["elementwise_ynn_fusions"] == 0
    assert outcome["convolution_ynn_fusions"] > 0  # XLA's default: YNNPACK convolutions
    assert outcome["devices"] == cpu_devices.automatic_cpu_device_count((128, 500), cpu_devices.usable_cores())


def test_eigen_convolutions_keep_convolutions_out_of_ynnpack():
    outcome, _ = probe("devices", "eigen")
    assert outcome["xla_flags"] == f"{FLAG}=individual_dot,reduce"
    assert outcome["convolution_ynn_fusions"] == 0 and outcome["elementwise_ynn_fusions"] == 0
    assert outcome["devices"] == cpu_devices.automatic_cpu_device_count((128, 500), cpu_devices.usable_cores())


def test_a_fusion_setting_the_user_chose_is_kept():
    outcome, _ = probe("threads", "eigen", env_extra={"XLA_FLAGS": f"{FLAG}=individual_dot"})
    assert outcome["xla_flags"] == f"{FLAG}=individual_dot"
    assert outcome["elementwise_ynn_fusions"] == 0 and outcome["convolution_ynn_fusions"] == 0


def test_after_jax_started_threads_warns_and_changes_nothing():
    outcome, stderr = probe("threads", "eigen", started=True)
    assert FLAG not in outcome["xla_flags"] and outcome["elementwise_ynn_fusions"] == 0
    assert "cpu_parallelism='threads', cpu_convolutions='eigen' has no effect: JAX has already started" in stderr


def test_a_jaxlib_without_the_flag_gets_a_warning_not_an_abort(monkeypatch, caplog):
    """jaxlib 0.7.2 (Colab's) aborts the process on an unknown flag in XLA_FLAGS: never set it there."""
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    monkeypatch.setattr(cpu_fusions, "jaxlib_version", lambda: (0, 7, 2))
    with caplog.at_level(logging.WARNING):
        assert not cpu_fusions.set_ynn_fusion_types("individual_dot,reduce,eltwise", "cpu_parallelism='threads'")
    assert "cpu_parallelism='threads' has no effect: jaxlib" in caplog.text and "jaxlib >= 0.9.0" in caplog.text
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"


def test_jaxlib_version_is_read():
    assert cpu_fusions.jaxlib_version() >= (0, 7, 2)


def test_unknown_settings_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown cpu_parallelism 'cores'; valid: devices, threads"):
        cpu_devices.configure_cpu_parallelism("cores", 0, (128,))
    with pytest.raises(ValueError, match="unknown cpu_convolutions 'mkl'; valid: ynnpack, eigen"):
        cpu_devices.configure_cpu_parallelism("threads", 0, (128,), "mkl")


GRADIENTS = """
import json
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np, optax
from jaxvision import models
from jaxvision.training import cpu_devices
cpu_devices.configure_cpu_parallelism("threads", 1, (8,), "eigen")  # the CIFAR ResNet configs'
model = models.create_model("resnet20", num_classes=10)
rng = np.random.default_rng(0)
images = rng.normal(size=(8, 16, 16, 3)).astype(np.float32)
labels = rng.integers(0, 10, 8)
variables = model.init(jax.random.key(0), jnp.asarray(images), train=False)

def loss(params, batch_stats, images):
    (logits, _), _ = model.apply({"params": params, "batch_stats": batch_stats}, images, train=True,
                                 mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

grad = jax.jit(jax.grad(loss))
hlo = grad.lower(variables["params"], variables["batch_stats"], images).compile().as_text()
float32 = grad(variables["params"], variables["batch_stats"], images)
as64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
float64 = grad(as64(variables["params"]), as64(variables["batch_stats"]), jnp.asarray(images, jnp.float64))
errors = [float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))
          for a, b in zip(jax.tree.leaves(float32), jax.tree.leaves(float64))]
print(json.dumps({"ynn_fusions": hlo.count("ynn_fusion"), "max_relative_error": max(errors),
                  "dtypes": sorted({str(a.dtype) for a in jax.tree.leaves(float32)})}))
"""


def test_threaded_fusions_with_eigen_convolutions_give_the_float64_gradients_of_a_batchnorm_resnet():
    """A miscompiled YNNPACK fusion would show here (the per-compilation route to the same flag
    gave gradients 12% off; the module doc)."""
    result = run_fresh(GRADIENTS, timeout=300)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["ynn_fusions"] > 0 and outcome["dtypes"] == ["float32"]
    assert outcome["max_relative_error"] < 1e-4, outcome
