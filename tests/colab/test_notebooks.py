"""The Colab notebooks run offline with SMOKE=True, and each .ipynb matches its jupytext twin."""

import os

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

COLAB = os.path.join(os.path.dirname(__file__), "..", "..", "colab")
NOTEBOOKS = sorted(name[:-3] for name in os.listdir(COLAB) if name.endswith(".py"))
# What each notebook prints when its SMOKE run got through.
TRAINING_RUN = ("devices:", "test_accuracy", "resumed at step 8")
EXPECTED_OUTPUTS = {
    "01_train_classifier": TRAINING_RUN,
    "02_segmentation": (*TRAINING_RUN, "example1.jpg (128, 128): ", "_mask.png"),
    "03_pretrained_classifier": ("devices:", "saved ", "photo 0 top-5: class", "photo 1 top-5: class", "logits shape (2, 1000)"),
}


def test_every_notebook_has_expected_outputs():
    assert sorted(EXPECTED_OUTPUTS) == NOTEBOOKS


def with_parameters(notebook, **values):
    """Append an injected-parameters cell after the cell tagged "parameters" (as papermill does)."""
    for index, cell in enumerate(notebook.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
            notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
            return notebook
    raise AssertionError("no cell tagged 'parameters'")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_matches_its_py_twin(name):
    paired = jupytext.read(os.path.join(COLAB, f"{name}.py"))
    stored = nbformat.read(os.path.join(COLAB, f"{name}.ipynb"), as_version=4)
    assert [c.source for c in stored.cells] == [c.source for c in paired.cells], (
        f"run: jupytext --sync colab/{name}.py"
    )
    assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code"), "strip outputs"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_smoke_mode(name, tmp_path):
    notebook = with_parameters(jupytext.read(os.path.join(COLAB, f"{name}.py")), SMOKE=True, WORKDIR=str(tmp_path / "run"))
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    for expected in EXPECTED_OUTPUTS[name]:
        assert expected in outputs, f"{name}: {expected!r} not printed"
