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
    pytest.importorskip("papermill")  # the script runs chapters with it; the lowest-torch stage lacks it
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


def test_first_error_names_the_first_failing_cell(seed_sweep, tmp_path):
    nb = nbformat.v4.new_notebook()
    ok = nbformat.v4.new_code_cell("x = 1")
    claim = nbformat.v4.new_code_cell("assert x == 2")
    claim.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="x is 1", traceback=[])]
    later = nbformat.v4.new_code_cell("1 / 0")
    later.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="", traceback=[])]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), ok, claim, later]
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    assert seed_sweep.first_error(path) == "cell 2: AssertionError: x is 1"
