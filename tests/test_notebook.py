"""The filter-spectra notebook runs from top to bottom (so that it cannot rot).

Whether it runs, not how fast: no time limit here (a slow or busy machine is no failure);
its time is measured by running it (README, "notebooks/filter_spectra.ipynb").
"""

from pathlib import Path

import pytest

from conftest import SHARED

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "filter_spectra.ipynb"


def test_filter_spectra_notebook_executes():
    if not SHARED.exists():
        pytest.skip(f"shared trained filters not found at {SHARED}")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=None, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4
