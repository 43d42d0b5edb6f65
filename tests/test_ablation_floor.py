"""benchmarks/ablation_floor.py: its bounds on a hand-computed case, and what it refuses before any work."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("ablation_floor", ROOT / "benchmarks" / "ablation_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bounds_price_each_run_at_its_batching_or_the_cheapest():
    runs = [{"variant": "one task", "pairing": "p", "steps": 100, "validations": 2, "today": 1, "seeds stacked": 3},
            {"variant": "meta-batch", "pairing": "p", "steps": 200, "validations": 1, "today": 8, "seeds stacked": 8}]
    costs = {("p", 1, "eager"): 0.01, ("p", 1, "compiled"): 0.005, ("p", 3, "eager"): 0.003,
             ("p", 8, "eager"): 0.004, ("q", 8, "eager"): 0.001}  # another pairing's cost never prices these runs
    # scoring and validations: (1 + 2 × 0.5) + (1 + 1 × 0.5) = 3.5 s; then the alignment steps:
    # today 100 × 0.005 + 200 × 0.004 = 1.3 s; seeds stacked 100 × 0.003 + 200 × 0.004 = 1.1 s;
    # cheapest 300 × 0.003 = 0.9 s. Two splits on four cores: × 0.5
    out = load_script().bounds(runs, costs, score_s=1.0, validation_s=0.5, splits=2, cores=4)
    assert out == pytest.approx({"scoring and validations": 1.75, "floor, today": 2.4, "floor, seeds stacked": 2.3,
                                 "floor, cheapest": 2.2})


@pytest.mark.parametrize("flag", ["--repeats", "--cores"])
def test_fewer_than_one_is_refused_in_one_line(flag, capsys):
    with pytest.raises(SystemExit) as stop:
        load_script().main([flag, "0"])
    assert stop.value.code == 2
    assert "--repeats and --cores must be at least 1" in capsys.readouterr().err
