"""jaxvision.training.cpu_devices: how many CPU devices JAX exposes, decided before it starts.

Every case that sets the count runs in a fresh Python process: the test process's JAX has started.
"""

import json
import os
import subprocess
import sys

import pytest

from jaxvision.training import cpu_devices


@pytest.mark.parametrize(
    "batch_sizes, cores, expected",
    [
        ((128, 500), 2, 2),
        ((128, 500), 6, 4),  # 5 and 6 do not divide 128
        ((128, 500), 8, 4),  # 8 does not divide 500
        ((64, 500), 16, 4),
        ((128, 512), 16, 16),
        ((128,), 3, 2),
        ((7, 500), 8, 1),
        ((128, 500), 1, 1),
    ],
)
def test_automatic_count_is_the_most_devices_every_batch_splits_over(batch_sizes, cores, expected):
    count = cpu_devices.automatic_cpu_device_count(batch_sizes, cores)
    assert count == expected
    assert all(size % count == 0 for size in batch_sizes)
    # No larger count up to the cores would do.
    assert not any(all(size % c == 0 for size in batch_sizes) for c in range(count + 1, cores + 1))


@pytest.mark.parametrize("batch_sizes, cores, message", [
    ((128,), 0, "cores"), ((), 2, "batch_sizes"), ((128, 0), 2, "batch_sizes"),
])
def test_automatic_count_rejects_bad_input(batch_sizes, cores, message):
    with pytest.raises(ValueError, match=message):
        cpu_devices.automatic_cpu_device_count(batch_sizes, cores)


def test_usable_cores_is_at_least_one_and_at_most_the_machine():
    assert 1 <= cpu_devices.usable_cores() <= (os.cpu_count() or 1)


PROBE = """
import json, logging, sys
import jax
from jaxvision.training import cpu_devices
logging.basicConfig(level=logging.WARNING)
requested, start_first = int(sys.argv[1]), sys.argv[2] == "started"
if start_first:
    jax.numpy.zeros(1).block_until_ready()
returned = cpu_devices.configure_cpu_devices(requested, (128, 500))
print(json.dumps({"returned": returned, "devices": len(jax.devices("cpu"))}))
"""


def run_fresh(script, *args, env_extra=None, timeout=120):
    """Run `script` in a new Python process on CPU with no device count or thread pool size chosen
    (plus `env_extra`); fail on a non-zero exit; return the result."""
    env = {key: value for key, value in os.environ.items() if key not in cpu_devices.CPU_SETUP_VARIABLES}
    env.update({"JAX_PLATFORMS": "cpu", **(env_extra or {})})
    result = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def probe(requested, *, started=False, env_extra=None):
    result = run_fresh(PROBE, requested, "started" if started else "fresh", env_extra=env_extra)
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_automatic_count_is_exposed_before_jax_starts():
    expected = cpu_devices.automatic_cpu_device_count((128, 500), cpu_devices.usable_cores())
    assert probe(0)[0] == {"returned": expected, "devices": expected}


def test_an_explicit_count_may_exceed_the_cores():
    assert probe(3)[0] == {"returned": 3, "devices": 3}


@pytest.mark.parametrize("env_extra", [
    {"XLA_FLAGS": "--xla_force_host_platform_device_count=5"}, {"JAX_NUM_CPU_DEVICES": "5"},
])
def test_a_count_the_user_chose_is_never_overridden(env_extra):
    assert probe(3, env_extra=env_extra)[0] == {"returned": None, "devices": 5}


def test_after_jax_started_the_devices_stay_and_an_explicit_request_warns():
    outcome, stderr = probe(3, started=True)
    assert outcome == {"returned": None, "devices": 1}
    assert "cpu_devices=3 has no effect" in stderr and "JAX already started with 1 CPU device" in stderr
    outcome, stderr = probe(0, started=True)  # automatic: quietly keeps what there is
    assert outcome == {"returned": None, "devices": 1} and "no effect" not in stderr


def test_negative_count_is_a_clear_error():
    with pytest.raises(ValueError, match="cpu_devices must be >= 0"):
        cpu_devices.configure_cpu_devices(-1, (128,))


@pytest.mark.parametrize("env_extra, requested, expected", [
    ({}, 3, "6"),  # two pool threads per device
    ({"NPROC": "16"}, 3, "16"),  # a larger pool already asked for stays
    ({"NPROC": "2"}, 3, "6"),
    ({}, 1, None),  # one device has no collectives to wait in
    ({"JAX_NUM_CPU_DEVICES": "4"}, 0, "8"),  # the user's count gets the reserve too
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=5"}, 0, "10"),
])
def test_two_pool_threads_are_reserved_per_cpu_device(env_extra, requested, expected):
    script = ("import os, sys; from jaxvision.training import cpu_devices; "
              "cpu_devices.configure_cpu_devices(int(sys.argv[1]), (120,)); print(os.environ.get('NPROC'))")
    result = run_fresh(script, requested, env_extra=env_extra)
    assert result.stdout.strip().splitlines()[-1] == str(expected)


COLLECTIVE_STEPS = """
import sys
import jax, jax.numpy as jnp, numpy as np
from jaxvision.training import cpu_devices, sharding
from jaxvision.training.dispatch import DispatchWindow

num_steps, mode = int(sys.argv[1]), sys.argv[2]
if mode == "unbounded-with-thread-reserve":
    assert cpu_devices.configure_cpu_devices(2, (128,)) == 2
else:  # "window-only": two devices with XLA's default pool, one thread per device here
    jax.config.update("jax_num_cpu_devices", 2)
mesh = sharding.make_mesh(2)
images = sharding.shard_batch({"image": np.random.default_rng(0).normal(size=(128, 28, 28, 8)).astype(np.float32)},
                              mesh)["image"]
kernel = sharding.replicate(np.full((3, 3, 8, 8), 0.01, np.float32), mesh)

@jax.jit
def step(kernel, images):  # the kernel gradient sums over both devices' halves: an all-reduce
    def loss(kernel):
        out = jax.lax.conv_general_dilated(images, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.mean(jax.nn.relu(out) ** 2)
    value, gradient = jax.value_and_grad(loss)(kernel)
    return kernel - 0.1 * gradient, value

window = DispatchWindow() if mode == "window-only" else None
for _ in range(num_steps):
    kernel, value = step(kernel, images)
    if window is not None:
        window.admit(value)
print("finished", float(value))
"""


@pytest.mark.parametrize("mode", ["unbounded-with-thread-reserve", "window-only"])
def test_steps_with_an_all_reduce_run_on_two_cpu_devices_without_stalling(mode):
    """Either guard alone keeps XLA:CPU's collectives from stalling. Without both (XLA's default
    pool, every step queued at once) this loop aborted on the 2-core CI machine within a minute, every
    time ("Termination timeout for `all reduce`")."""
    # NPROC=1: the pool is then max(1, devices), one thread per device on any machine.
    env_extra = {"NPROC": "1"} if mode == "window-only" else None
    result = run_fresh(COLLECTIVE_STEPS, 300, mode, env_extra=env_extra, timeout=240)
    assert "finished" in result.stdout
