"""The notebooks in notebooks/: committed without outputs, and each one runs headless.

Execution needs nbformat, nbclient and ipykernel (skipped cleanly without them). The kernel
runs this interpreter (a private kernelspec put first on JUPYTER_PATH), so the notebooks see
the mailretry under test whatever kernels the machine or the user has installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "mailretry-test-python"


def _ids(path: Path) -> str:
    return path.stem


def _read(path: Path) -> Any:
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(path, as_version=4)


def test_the_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_policy_comparison.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_committed_without_outputs(path: Path) -> None:
    nb = _read(path)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name} cell {i}: outputs committed"
        assert cell.get("execution_count") is None, f"{path.name} cell {i}: execution count"
        assert "execution" not in cell.get("metadata", {}), f"{path.name} cell {i}: timings"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state committed"


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JUPYTER_PATH entry holding one kernelspec that runs this interpreter."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mailretry tests",
        "language": "python",
    }
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    return root


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs(
    path: Path, tmp_path: Path, jupyter_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # JUPYTER_PATH is searched before the user's and the system's kernel directories.
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    # Opt in to the platformdirs locations (silences jupyter_core's migration warning).
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError, naming the cell, if one fails

    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert errors == []
    executed = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert None not in executed
