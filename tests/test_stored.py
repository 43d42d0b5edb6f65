"""Stored results (magma_teach/experiments/stored.py): used only while the code and libraries that
measured them are the ones installed, and present and current for every run the book makes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from magma_teach.experiments import runner, stored
from magma_teach.experiments.results import ExperimentResult

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the code fingerprint
def test_meaning_ignores_docstrings_and_comments_but_not_code():
    plain = "def f(x):\n    return x + 1\n"
    worded = '"""A module."""\n\ndef f(x):\n    """Add one."""\n    # why: because\n    return x + 1  # one\n'
    assert stored._meaning(plain) == stored._meaning(worded)
    assert stored._meaning(plain) != stored._meaning(plain.replace("1", "2"))
    # a function whose body is only a docstring still parses to a valid tree
    assert "Pass" in stored._meaning('def g():\n    """Nothing."""\n')


@pytest.fixture
def package(tmp_path) -> Path:
    """A copy of the package's sources to edit."""
    copy = tmp_path / "magma_teach"
    shutil.copytree(stored.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "stored"))
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + code, encoding="utf-8")


def test_fingerprint_follows_code_and_data_not_words_or_presentation(package):
    first = stored.code_fingerprint(package)
    assert first == stored.code_fingerprint(stored.PACKAGE)  # the copy is the package

    _edit(package / "magma.py", '"""', '"""Reworded. ')  # a docstring
    _append(package / "magma.py", "\n# a comment\n")
    _append(package / "viz" / "style.py", "\nPRESENTATION_ONLY = 1\n")  # a presentation module
    assert stored.code_fingerprint(package) == first

    _append(package / "losses.py", "\nSOME_CONSTANT = 1\n")  # code that computes
    assert stored.code_fingerprint(package) != first


def test_fingerprint_follows_tuned_settings(package):
    first = stored.code_fingerprint(package)
    tuned = package / "tuned.json"
    tuned.write_text(tuned.read_text(encoding="utf-8").replace("0", "1", 1), encoding="utf-8")
    assert stored.code_fingerprint(package) != first


# ---------------------------------------------------------------- find and run(stored=True)
def _result(**changes) -> ExperimentResult:
    fields = dict(experiment="image-audio", preset="tiny", data="offline", device="cpu", seconds=90.0,
                  rows=pd.DataFrame({"approach": ["MAGMA"], "shots": [1], "mean": [50.0], "std": [1.0]}),
                  seed=0, finished="2026-12-02T00:00:00+00:00")
    return ExperimentResult(**{**fields, **changes})


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """An empty store, a private cache, and a runner that fails if anything trains."""
    monkeypatch.setattr(stored, "FOLDER", tmp_path / "stored")
    monkeypatch.setenv("MAGMA_TEACH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "stored"


@pytest.fixture
def trained(monkeypatch) -> list:
    """Replace image-audio's runner by one that records its calls and returns one small row."""
    calls = []

    def fake(ctx):
        calls.append(ctx.seed)
        return pd.DataFrame({"approach": ["MAGMA"], "shots": [1], "mean": [20.0], "std": [0.0]}), {}

    spec = runner.EXPERIMENTS["image-audio"]
    monkeypatch.setitem(runner.EXPERIMENTS, "image-audio", runner.Experiment(fake, spec.about))
    return calls


def test_run_returns_a_current_stored_result_without_training(folder, trained):
    stored.store(_result())
    result = runner.run("image-audio", preset="tiny", device="cpu", stored=True)
    assert trained == [] and result.rows["mean"].tolist() == [50.0]
    assert result.stored["command"] == stored.COMMAND
    assert result.origin() == ("stored: measured in 1.5 min on cpu on 2026-12-02 by code identical to the "
                               "installed code (`python scripts/store_results.py` measures it again)")


def test_run_trains_when_not_asked_or_nothing_matches(folder, trained, monkeypatch):
    stored.store(_result())
    assert runner.run("image-audio", preset="tiny", device="cpu").rows["mean"].tolist() == [20.0]  # not asked
    runner.run("image-audio", preset="tiny", device="cpu", seed=1, stored=True)  # another seed
    runner.run("image-audio", preset="tiny", device="cpu", stored=True, data_settings={"per_concept": 12})
    assert trained == [0, 1, 0]


@pytest.mark.parametrize("change", ["code", "environment"])
def test_a_stored_result_of_other_code_or_libraries_is_not_used(folder, trained, change):
    path = stored.store(_result())
    blob = json.loads(path.read_text(encoding="utf-8"))
    blob["stored"][change] = "0" * 64 if change == "code" else {**blob["stored"]["environment"], "torch": "0.1"}
    path.write_text(json.dumps(blob), encoding="utf-8")
    result = runner.run("image-audio", preset="tiny", device="cpu", stored=True)
    assert trained == [0] and result.stored == {} and result.origin().startswith("measured in")
    assert stored.stale() == ([path.name] if change == "code" else [])


def test_a_stored_result_is_not_used_for_a_gpu_run(folder):
    stored.store(_result())
    assert stored.find("image-audio", "tiny", "offline", 0, {}, "cpu") is not None
    assert stored.find("image-audio", "tiny", "offline", 0, {}, "cuda") is None


def test_only_cpu_results_are_stored(folder):
    with pytest.raises(ValueError, match="only CPU results are stored"):
        stored.store(_result(device="cuda (NVIDIA H200)"))


def test_stored_must_be_a_bool(folder, trained):
    with pytest.raises(ValueError, match="stored must be True or False, got 'yes'"):
        runner.run("image-audio", preset="tiny", device="cpu", stored="yes")
    assert trained == []


def test_a_stored_result_reads_back_as_written(folder):
    path = stored.store(_result())
    again = ExperimentResult.read(path)
    assert again.stored == {"code": stored.code_fingerprint(), "environment": stored.environment(),
                            "command": stored.COMMAND}
    assert not path.with_suffix(".csv").exists()


# ---------------------------------------------------------------- the book's stored results
def _chapter_runs() -> list[tuple[str, str]]:
    """``(chapter, source line)`` of every ``run(`` call in the book's chapters."""
    calls = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                text = "".join(cell["source"])
                calls += [(path.stem, m.group(0)) for m in re.finditer(r"\brun\(\s*\"[^\"]+\"[^)]*\)", text)]
    return calls


def test_every_chapter_run_asks_for_its_stored_result():
    calls = [(c, line) for c, line in _chapter_runs() if 'data="full"' not in line]
    assert calls, "no run( call found in the chapters"
    for chapter, line in calls:
        assert "stored=STORED" in line, f"{chapter}: {line}"
        assert re.search(r'run\("([^"]+)"', line)[1] in stored.STORED_RUNS, f"{chapter}: {line}"


@pytest.mark.parametrize("experiment", stored.STORED_RUNS)
def test_every_stored_run_is_kept_and_current(experiment):
    path = stored.path_of(experiment, "quick", "offline", 0)
    assert path.is_file(), f"no stored result for {experiment}: run `{stored.COMMAND} {experiment}`"
    record = json.loads(path.read_text(encoding="utf-8"))["stored"]
    if record["environment"]["python"] != stored.environment()["python"]:
        pytest.skip("measured under another Python, whose syntax trees read differently")
    assert record["code"] == stored.code_fingerprint(), (
        f"{path.name} was measured by other code; measure it again: `{stored.COMMAND} {experiment}`")
