"""The wheel a user installs: it must carry the experiment configs, so that `jaxvision train` finds
its default config from any folder, not only from inside a checkout."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """(folder the built wheel was unpacked into as site-packages, the wheel's file names).

    Built from a copy of the sources: setuptools writes `build/` and `*.egg-info` into the tree it
    builds, and pytest-xdist workers (or the developer's own pip) must not race on the checkout's.
    """
    sources = tmp_path_factory.mktemp("sources") / "jaxvision"
    shutil.copytree(
        REPOSITORY, sources,
        ignore=shutil.ignore_patterns(".git", ".venv", "venv", "build", "*.egg-info", "workdirs", "bench_results", "__pycache__"),
    )
    wheel_dir = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheel_dir), str(sources)],
        check=True,
        cwd=wheel_dir,
    )
    (wheel_path,) = wheel_dir.glob("jaxvision-*.whl")
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel_path) as wheel:
        names = wheel.namelist()
        wheel.extractall(site)
    return site, names


def test_wheel_ships_every_config_and_no_tests(installed_wheel):
    _, names = installed_wheel
    configs = sorted(f for f in os.listdir(os.path.join(REPOSITORY, "experiments")) if f.endswith(".py"))
    assert configs, "experiments/ has no files"
    for file_name in configs:
        assert f"jaxvision/experiments/{file_name}" in names
    assert "jaxvision/cli.py" in names and "jaxvision/models/resnet.py" in names
    assert not [n for n in names if n.startswith("tests/")]


def test_installed_cli_finds_the_default_config_outside_a_checkout(installed_wheel, tmp_path):
    site, _ = installed_wheel
    probe = (
        "from jaxvision import cli; "
        "print(cli.resolve_config_path(cli.DEFAULT_CONFIG)); "
        "print(cli.load_config(cli.DEFAULT_CONFIG + ':smoke').model); "
        "print(','.join(cli.list_configs()))"
    )
    # Only the unpacked wheel on the path (not the checkout), run from an empty folder.
    environment = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    path, model_name, names = result.stdout.strip().splitlines()
    assert path == os.path.join(str(site), "jaxvision", "experiments", "digits_lenet.py")
    assert model_name == "lenet5_table"
    assert {"digits_lenet", "cifar10_resnet56", "digits_unet"} <= set(names.split(","))
