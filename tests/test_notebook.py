"""The walkthrough notebook runs, top to bottom, against tiny trained policies.

The notebook reads its policies from $INTERP_A / $INTERP_B and the checkpoint root from
$INTERP_CHECKPOINTS; the kernel inherits this process's environment. Executed with
nbclient (what nbmake runs too); nothing is written back to the notebook.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_runs(path, tiny_root, monkeypatch):
    monkeypatch.setenv("INTERP_CHECKPOINTS", str(tiny_root))
    monkeypatch.setenv("INTERP_A", "tiny/beta0.1")
    monkeypatch.setenv("INTERP_B", "tiny/beta1.0")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # CellExecutionError (with the cell and traceback) if any cell fails
    names = "".join(
        o.get("data", {}).get("text/plain", "") + o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "tiny/beta0.1[attention←tiny/beta1.0]@step" in names
