"""scripts/seed_sweep.py: which chapters it runs, and how it reports a failed run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seed_sweep():
    pytest.importorskip("papermill")  # run_notebook needs it (and nbclient); the lowest-torch stage lacks it
    spec = importlib.util.spec_from_file_location("seed_sweep", ROOT / "scripts" / "seed_sweep.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return module


def test_unknown_chapter_is_refused_in_one_line(seed_sweep, capsys):
    with pytest.raises(SystemExit) as stop:
        seed_sweep.main(["book/no_such_chapter"])
    assert stop.value.code == 2
    assert "not a notebook chapter of _toc.yml: book/no_such_chapter" in capsys.readouterr().err


def test_a_failing_cell_is_named_and_the_executed_copy_kept(seed_sweep, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell("SEED = 0")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell("x = SEED"),
                nbformat.v4.new_code_cell("assert x == 0, f'x is {x}'")]
    source, target = tmp_path / "chapter.ipynb", tmp_path / "chapter_seed1.ipynb"
    nbformat.write(nb, source)
    with pytest.raises(seed_sweep.NotebookFailed, match=r"chapter.ipynb: cell 3 raised AssertionError: x is 1"):
        seed_sweep.execute(source, target, {"SEED": 1})  # cell 0: the parameters, 1: the injected SEED = 1
    executed = nbformat.read(target, as_version=4)
    assert "SEED = 1" in executed.cells[1].source
    seed_sweep.execute(source, target, {"SEED": 0})  # the same chapter with SEED = 0 runs through
