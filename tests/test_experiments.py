"""Runners on the tiny preset: expected rows and columns, finite values, JSON round trip, CLI errors."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from magma_teach.baselines import APPROACHES
from magma_teach.experiments import EXPERIMENTS, FULL_DATA_ONLY, ExperimentResult, paper_layout, run
from magma_teach.paper import beside_paper
from magma_teach.report import format_result


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def results(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return {name: run(name, preset="tiny", cache_dir=cache, out=out, progress=False)
            for name in EXPERIMENTS if name not in FULL_DATA_ONLY}, out


def _finite(frame, columns):
    return all(math.isfinite(v) for c in columns for v in frame[c])


@pytest.mark.parametrize("name, first", [("image-audio", "Unsup. pre-training"), ("text-speech", "Supervised learning")])
def test_comparison_tables(results, name, first):
    rows = results[0][name].rows
    expected = [first] + [a for a in APPROACHES if a not in ("Unsup. pre-training", "Supervised learning")]
    assert list(dict.fromkeys(rows["approach"])) == expected
    assert set(rows["shots"]) == {1, 5}
    assert _finite(rows, ["mean", "std"]) and rows["mean"].between(0, 100).all()
    oracle = rows[rows["approach"] == "Oracle"].iloc[0]
    assert oracle["target_labels"] == oracle["target_samples"] > 0  # only the Oracle reads target labels
    assert (rows[rows["approach"] != "Oracle"]["target_labels"] == 0).all()
    table = paper_layout(rows)
    assert list(table.columns) == ["type", "approach", "1-shot", "5-shot", "#target (labels)"]
    assert list(table["type"]) == ["Uni", "Uni", "Cross", "Cross", "Cross", "Oracle"]
    assert "paper" in " ".join(beside_paper(rows, name).columns)


def test_text_speech_predictions(results):
    predictions = results[0]["text-speech"].extras["predictions"]
    assert {"text", "truth", "MAGMA", "Oracle"} <= set(predictions.columns) and len(predictions) > 0
    assert predictions["text"].is_unique


def test_retrieval_table(results):
    rows = results[0]["retrieval"].rows
    assert list(rows["experiment"]) == ["No align", "Align", "MAGMA"]
    assert _finite(rows, ["R@1", "R@5", "R@10", "rank", "cos"])
    assert (rows["R@1"] <= rows["R@5"]).all() and (rows["R@5"] <= rows["R@10"]).all()
    gallery = results[0]["retrieval"].extras["gallery"]
    assert all(len(top) == 5 for top in gallery["top_sources"])


def test_noisy_labels_rows(results):
    rows = results[0]["noisy-labels"].rows
    assert set(rows["approach"]) == {"MAGMA", "Oracle"} and set(rows["noise"]) == {0.0, 0.5}
    assert _finite(rows, ["mean", "std"])


def test_tradeoff_and_strong_weak(results):
    tradeoff = results[0]["tradeoff"].rows
    assert set(tradeoff["study"]) == {"pairs", "pairing noise", "weak vs supervised"}
    assert (tradeoff["approach"] == "source task (reference)").sum() == 1
    strong_weak = results[0]["strong-weak"].rows
    assert set(strong_weak["approach"]) == {"MAGMA (strong pairs)", "MAGMA (weak pairs)"}


def test_json_round_trip(results):
    by_name, out = results
    for name, result in by_name.items():
        blob = json.loads((out / f"{name}.json").read_text())
        assert {"experiment", "preset", "data", "device", "torch", "seconds", "rows"} <= set(blob)
        again = ExperimentResult.read(out / f"{name}.json")
        pd.testing.assert_frame_equal(again.rows.reset_index(drop=True), pd.read_csv(out / f"{name}.csv"),
                                      check_dtype=False, check_exact=False)
        assert format_result(again)  # the table prints from the saved file too


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "magma_teach", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, word", [(["run", "nope"], "EXPERIMENT"), (["run", "retrieval", "--preset", "huge"], "--preset"),
                                        (["run", "retrieval", "--seed", "x"], "--seed"),
                                        (["run", "retrieval", "--data", "full", "--preset", "tiny"], "data"),
                                        (["data", "nowhere", "--info"], "benchmark")])
def test_cli_bad_arguments(args, word):
    done = _cli(*args)
    assert done.returncode == 2
    assert word in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_list():
    done = _cli("list")
    assert done.returncode == 0 and len(done.stdout.strip().splitlines()) == len(EXPERIMENTS)


def test_cli_full_data_needs_consent_and_says_where_to_go_offline():
    done = _cli("data", "esc50")
    assert done.returncode == 2 and "--download" in done.stderr and "'numbers'" in done.stderr
    for args in (["run", "tradeoff", "--data", "full"], ["run", "strong-weak", "--data", "full"],
                 ["run", "text-image"]):
        done = _cli(*args)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, args
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [["data", "esc50", "--download"], ["data", "cifar", "--download"],
                                  ["data", "fleurs", "--download"], ["data", "recipes", "--download"],
                                  ["run", "image-audio", "--data", "full", "--preset", "tiny"]])
def test_cli_without_network_exits_1_with_one_line(no_network, args):
    done = _cli(*args)
    assert done.returncode == 1, done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "offline benchmark" in line or "checksum" in line
    files = [p for p in no_network.rglob("*") if p.is_file()] if no_network.exists() else []
    assert files == []  # nothing half-written


def test_cli_settings_are_json_or_text_and_checked():
    from magma_teach.cli import parse_settings

    assert parse_settings(["per_language=40", "folder=/data/x", "languages=[\"en_us\"]"]) == {
        "per_language": 40, "folder": "/data/x", "languages": ["en_us"]}
    with pytest.raises(ValueError, match="--set takes KEY=VALUE"):
        parse_settings(["oops"])
    done = _cli("data", "numbers", "--set", "colour=red")
    assert done.returncode == 2 and "unknown setting(s) ['colour']" in done.stderr

