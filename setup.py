"""Build hook beside pyproject.toml: ships `experiments/` inside the wheel as `jaxvision/experiments`.

The experiment configs live at the top of the repository (`experiments/NAME.py`), where people read
and edit them; packaging them too lets `jaxvision train` find its default config after a plain
`pip install` run from any folder, not only inside a checkout. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["jaxvision", "jaxvision.*"]), "jaxvision.experiments"],
    package_dir={"jaxvision.experiments": "experiments"},
)
