"""Every notebook runs headlessly on small settings (AILA_NOTEBOOK_SMOKE=1)."""
import os
import pathlib

import nbclient
import nbformat
import pytest

from helpers import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
  assert NOTEBOOKS


def test_committed_outputs_name_no_path_of_the_machine_that_ran_them():
  for path in NOTEBOOKS:
    nb = nbformat.read(path, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    for root in ("/tmp/", "/home/", "/root/", "/work/", "/Users/"):
      assert root not in text, (path.name, root)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: pathlib.Path, tmp_path, data_dir, monkeypatch):
  monkeypatch.setenv("AILA_NOTEBOOK_SMOKE", "1")
  monkeypatch.setenv("AILA_NOTEBOOK_WORKDIR", str(tmp_path / "work"))
  monkeypatch.setenv("AILA_DATA_DIR", str(data_dir))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(REPO)}})
  client.execute()  # raises CellExecutionError with the failing cell's traceback
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert "Traceback" not in outputs
