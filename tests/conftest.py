"""Test setup: CPU only, strict rank promotion, no network except loopback, shared keys."""

import atexit
import os
import shutil
import socket
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TFDS_DATA_DIR", os.path.join(os.path.dirname(__file__), ".tfds_unused"))

# One persistent XLA compilation cache per test run, shared through the environment by the xdist
# workers, the subprocess scenarios and the notebook kernels: the smoke trainings compile the same
# train/eval steps again and again, and those compiles were most of the suite's time (a segmentation
# CLI run: 20 s cold, 2-7 s cached). Created by the first process (the xdist controller) and
# removed when it exits; a fresh run starts cold, as CI does. The size cap turns on jax's file lock,
# so two workers never read a half-written entry.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _compilation_cache = tempfile.mkdtemp(prefix="jaxvision-tests-xla-cache-")
    atexit.register(shutil.rmtree, _compilation_cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _compilation_cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

_real_connect = socket.socket.connect
_LOOPBACK = ("127.", "localhost", "::1", "0.0.0.0")


def _guarded_connect(self, address, *args, **kwargs):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (host.startswith(_LOOPBACK) or self.family == socket.AF_UNIX):
        return _real_connect(self, address, *args, **kwargs)
    raise OSError(f"network access is blocked in tests (tried {address!r})")


@pytest.fixture(autouse=True)
def _block_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture
def key():
    """A fresh typed PRNG key for each test."""
    return jax.random.key(0)


@pytest.fixture(scope="session")
def digits_data_dir(tmp_path_factory):
    """A tfds data_dir with the embedded real digits prepared once per test session."""
    from jaxvision.data import tfds as datasets

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    datasets.prepare_dataset("embedded_digits", data_dir=data_dir)
    return data_dir


@pytest.fixture
def smoke_config(digits_data_dir):
    """The default digits config's smoke variant, reading the session's prepared data."""
    from jaxvision.cli import load_config

    config = load_config("digits_lenet:smoke")
    config.dataset.data_dir = digits_data_dir
    return config


@pytest.fixture(scope="session")
def scenes_data_dir(tmp_path_factory):
    """A tfds data_dir with the digit scenes (4,000 / 500 at 64x64) prepared once per session."""
    from jaxvision.data import segmentation as seg_data

    data_dir = str(tmp_path_factory.mktemp("tfds_scenes"))
    seg_data.prepare_segmentation_dataset("digit_scenes", data_dir=data_dir)
    return data_dir
