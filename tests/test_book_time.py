"""benchmarks/book_time.py: it refuses an unknown chapter in one line before executing anything."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_chapter_is_refused_in_one_line(capsys):
    pytest.importorskip("papermill")  # run_notebook needs it; the lowest-torch stage lacks it
    spec = importlib.util.spec_from_file_location("book_time", ROOT / "benchmarks" / "book_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as stop:
        module.main(["book/no_such_chapter"])
    assert stop.value.code == 2
    assert "no notebook chapter of _toc.yml matches book/no_such_chapter" in capsys.readouterr().err
