"""Test setup: CPU only, strict rank promotion, no network except loopback, shared keys."""

import os
import socket

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TFDS_DATA_DIR", os.path.join(os.path.dirname(__file__), ".tfds_unused"))

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
