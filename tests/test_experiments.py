"""Runners on the tiny preset: expected rows and columns, finite values, JSON round trip, provenance,
determinism, the caption and the computed comparison with the paper (the command line: test_cli.py)."""

import json
import math

import pandas as pd
import pytest

from magma_teach.baselines import APPROACHES
from magma_teach.experiments import (
    EXPERIMENTS,
    FULL_DATA_ONLY,
    ExperimentResult,
    paper_layout,
    run,
)
from magma_teach.experiments.results import TIME_FIELDS, csv_frame
from magma_teach.paper import beside_paper
from magma_teach.report import caption, format_result


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


@pytest.mark.parametrize("name, first", [("image-audio", "Random init"), ("text-speech", "Supervised learning")])
def test_comparison_tables(results, name, first):
    rows = results[0][name].rows
    expected = [first] + [a for a in APPROACHES if a not in ("Random init", "Supervised learning")]
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
    controls = results[0]["retrieval"].extras["controls"]  # each trained start: the other's loop, or none
    assert list(controls["experiment"]) == ["Align, MAGMA's loop", "Align, not adapted",
                                            "MAGMA, Align's loop", "MAGMA, not adapted"]
    assert list(controls.columns) == list(rows.columns) and _finite(controls, ["R@1", "rank", "cos"])
    own, control = rows.set_index("experiment"), controls.set_index("experiment")
    for start in ("Align", "MAGMA"):
        assert control.loc[f"{start}, not adapted", "cos"] != own.loc[start, "cos"]  # adaptation moved it


def test_noisy_labels_rows(results):
    rows = results[0]["noisy-labels"].rows
    assert set(rows["approach"]) == {"MAGMA", "Oracle"} and set(rows["noise"]) == {0.0, 0.5}
    assert _finite(rows, ["mean", "std"])


def test_tradeoff_and_strong_weak(results):
    tradeoff = results[0]["tradeoff"].rows
    assert set(tradeoff["study"]) == {"pairs", "pairing noise", "weak vs supervised"}
    assert (tradeoff["approach"] == "source task (reference)").sum() == 1
    strong_weak = results[0]["strong-weak"].rows
    assert set(strong_weak["approach"]) == {"MAGMA (instance pairs, eq. 3)", "MAGMA (concept groups, eq. 4)",
                                            "MAGMA (decade clusters, eq. 4)"}


def test_split_zero_of_text_speech_splits_is_table_4s_own_run(results):
    splits = results[0]["text-speech-splits"].rows
    table4 = results[0]["text-speech"].rows
    assert set(splits["split"]) == set(range(len(results[0]["text-speech-splits"].seeds)))
    for approach in ("MAGMA", "Align + Meta Classify"):
        own = (splits["split"] == 0) & (splits["approach"] == approach) & (splits["finetuning"] == approach)
        theirs = table4[table4["approach"] == approach].set_index("shots")
        pd.testing.assert_series_equal(splits[own].set_index("shots")["mean"], theirs["mean"])
        # and scored a second time with the other approach's fine-tuning
        assert set(splits.loc[splits["approach"] == approach, "finetuning"]) == {"MAGMA", "Align + Meta Classify"}
    assert set(results[0]["text-speech-splits"].extras["meta_test_languages"]) == set(splits["split"])


def test_width_languages_crosses_rule_and_width(results):
    rows = results[0]["width-languages"].rows
    assert list(rows["variant"]) == [f"{r}, {w}" for r in ("MAGMA's rule", "plain alignment")
                                     for w in ("5 languages a step", "every meta-train language a step")]
    assert _finite(rows, ["val acc 1-shot (%)", "val acc 5-shot (%)", "val median rank", "val cosine loss"])
    assert (rows["seeds"] == 1).all()


def test_json_round_trip(results):
    by_name, out = results
    for result in by_name.values():
        path = out / f"{result.stem}.json"
        blob = json.loads(path.read_text())
        assert {"experiment", "preset", "data", "device", "seed", "seeds", "provenance", "timing", "rows"} <= set(blob)
        again = ExperimentResult.read(path)
        csv = pd.read_csv(out / f"{result.stem}.csv")
        pd.testing.assert_frame_equal(csv_frame(again.rows), csv, check_dtype=False, check_exact=False, atol=0.051)
        assert format_result(again) == format_result(result)  # the table prints from the saved file too


def test_provenance_is_recorded(results):
    from dataclasses import asdict

    from magma_teach.experiments import PRESETS

    by_name, out = results
    for result in by_name.values():
        blob = json.loads((out / f"{result.stem}.json").read_text())
        assert (blob["seed"], blob["seeds"], blob["preset"], blob["data_settings"]) == (0, [0], "tiny", {})
        assert blob["preset_settings"] == json.loads(json.dumps(asdict(PRESETS["tiny"])))
        (benchmark,) = blob["datasets"].values()  # every runner here loads one kind of data
        assert benchmark["config"]["seed"] == 0 and benchmark["n_way"] == 5 and benchmark["eval_tasks"] >= 1
        prov = blob["provenance"]
        assert {"torch", "torchaudio", "numpy", "magma_teach"} <= {k for k, v in prov["packages"].items() if v}
        assert prov["torch_threads"] >= 1 and prov["device"] == blob["device"] == "cpu"
        assert prov["git"] is None or len(prov["git"]["commit"]) == 40


def test_same_seed_same_threads_give_byte_identical_json(results, cache, tmp_path):
    """Determinism: a second run of one experiment differs from the first only in TIME_FIELDS."""
    first = results[1] / f"{results[0]['strong-weak'].stem}.json"
    again = run("strong-weak", preset="tiny", cache_dir=cache, out=tmp_path, progress=False)
    texts = []
    for path in (first, tmp_path / f"{again.stem}.json"):
        blob = json.loads(path.read_text())
        for key in TIME_FIELDS:
            blob.pop(key)
        texts.append(json.dumps(blob, indent=1, ensure_ascii=False))
    assert texts[0] == texts[1]


def test_caption_says_metric_spread_tasks_draws_and_seeds(results):
    text = format_result(results[0]["image-audio"])
    first = text.splitlines()[0]
    assert "5-way" in first and "in %" in first and "8 fixed tasks" in first and "no spread" in first
    result = results[0]["image-audio"]
    three = ExperimentResult(**{**result.__dict__, "rows": result.rows.assign(repeats=3, seeds=2)})
    assert "± = std over 2 training seeds × 3 evaluation draws" in caption(three)
    assert "R@k" in caption(results[0]["retrieval"])


def _paper_as_ours(table):
    from magma_teach.paper import paper_rows

    return paper_rows(table)


def test_pattern_sentences_are_computed_from_the_numbers():
    from magma_teach.paper import (
        TABLE2_IMAGE_AUDIO,
        TABLE3_RETRIEVAL,
        pattern_sentences,
    )

    same = _paper_as_ours(TABLE2_IMAGE_AUDIO)
    leader, oracle = pattern_sentences(same, "image-audio")
    assert "the same at every k" in leader and "MAGMA at k = 1" in leader and "the same pattern as" in oracle
    moved = same.copy()
    moved.loc[(moved["approach"] == "MAGMA") & (moved["shots"] == 5), "mean"] = 70.0  # now below Align + Meta Classify
    leader, oracle = pattern_sentences(moved, "image-audio")
    assert "different at k = 5: ours is Align + Meta Classify (77.1), the paper's is MAGMA (ours: 70.0)" in leader
    assert "the same at k = 1, 10" in leader and "behind at k = 5 in both" in oracle
    ahead = same.copy()
    ahead.loc[(ahead["approach"] == "MAGMA") & (ahead["shots"] == 10), "mean"] = 99.0
    assert "ahead at k = 10 in ours but behind in the paper" in pattern_sentences(ahead, "image-audio")[1]
    level = same.copy()  # 1.1 points below the Oracle, inside our spread of 2.0: a tie, not "behind"
    level.loc[(level["approach"] == "MAGMA") & (level["shots"] == 10), ["mean", "std"]] = [93.4, 2.0]
    assert "tie at k = 10 in ours but behind in the paper" in pattern_sentences(level, "image-audio")[1]
    ours = pd.DataFrame([{"K": k, "experiment": e, "R@1": v[0]} for k, d in TABLE3_RETRIEVAL.items() for e, v in d.items()])
    assert pattern_sentences(ours, "retrieval") == [(
        "Order by R@1 against the paper's Table 3 (a difference inside our spread is a tie): the same at "
        "K = 5 (MAGMA > Align > No align), K = 10 (MAGMA > Align > No align).")]
    tied = ours.assign(**{"R@1 std": 0.0})  # MAGMA 4.0 ± 2.5 against Align 2.0 at K = 5: inside the spread
    tied.loc[(tied["K"] == 5) & (tied["experiment"] == "MAGMA"), "R@1 std"] = 2.5
    assert ("different at K = 5 (ours: MAGMA tied with Align; the paper's MAGMA > Align > No align)"
            in pattern_sentences(tied, "retrieval")[0])
    ours.loc[(ours["K"] == 10) & (ours["experiment"] == "No align"), "R@1"] = 50.0
    assert ("different at K = 10 (ours: MAGMA behind No align, Align behind No align; the paper's "
            "MAGMA > Align > No align)") in pattern_sentences(ours, "retrieval")[0]
    assert "No K in common" in pattern_sentences(ours.assign(K=2), "retrieval")[0]
    assert pattern_sentences(same, "strong-weak") == []


def test_runner_spec_is_checked_before_work():
    with pytest.raises(ValueError, match="experiment must be one of"):
        run("nope")
    with pytest.raises(ValueError, match="seed must be an integer"):
        run("image-audio", seed=-1)
    with pytest.raises(ValueError, match="unknown setting"):
        run("image-audio", preset="tiny", data_settings={"nosuchkey": 1})
    with pytest.raises(ValueError, match="progress must be"):
        run("image-audio", progress="yes")


@pytest.mark.parametrize("name, first", [("tuning-check", "Random init"), ("tuning-check-languages", "Supervised learning")])
def test_tuning_check_rows(results, name, first):
    """Every approach of the table, scored with the studies' objective; the tiny preset is not what the studies ran."""
    from magma_teach.experiments.context import APPROACHES_AFTER_FIRST

    rows = results[0][name].rows
    assert list(rows["approach"]) == [first, *APPROACHES_AFTER_FIRST]
    assert rows["mean"].between(0, 100).all() and (rows["std"] >= 0).all() and (rows["seeds"] == 1).all()
    assert rows["recorded"].isna().all() and rows["verdict"].eq("its study ran the quick preset").all()
    runs = results[0][name].extras["runs"]
    assert len(runs) == len(rows) and runs["objective"].tolist() == rows["mean"].tolist()
    text = caption(results[0][name])
    assert "tuning objective" in text and "validation concepts" in text and "1 training seed," in text
    assert "unseen classes" not in text  # not the meta-test caption of the few-shot tables


def test_tuning_check_judges_against_the_recorded_value():
    from magma_teach.experiments.tuning_check import judge

    study = {"preset": "quick", "validation objective (%)": {"MAGMA": 99.4, "Oracle": 93.0}}
    row = judge("MAGMA", [90.0, 92.0, 94.0], study, "quick")  # 92.0 ± 1.63: 7.4 below what its study recorded
    assert row["mean"] == pytest.approx(92.0) and row["std"] == pytest.approx((8 / 3) ** 0.5)
    assert (row["recorded"], row["verdict"], row["seeds"]) == (99.4, "behind", 3)
    assert judge("Oracle", [90.0, 92.0, 94.0], study, "quick")["verdict"] == "tie"  # 1.0 inside 1.63
    assert judge("Random init", [70.0], study, "quick")["verdict"] == "not tuned"
    assert judge("MAGMA", [90.0], study, "full")["verdict"] == "its study ran the quick preset"
    assert judge("MAGMA", [90.0], {}, "quick")["verdict"] == "not tuned"


def test_tuning_check_scores_the_data_its_studies_tuned_on(tmp_path):
    """Whatever the run's seed, the data are those of the studies' data seed; the training seeds are the run's."""
    from magma_teach import tuning

    result = run("tuning-check", preset="tiny", seed=1, cache_dir=str(tmp_path), out=tmp_path, progress=False)
    assert result.datasets["numbers"]["config"]["seed"] == tuning.recorded("numbers")["data seed"] == 0
    assert result.seeds == [1] and result.extras["runs"]["seed"].tolist() == [1] * len(result.rows)
    with pytest.raises(ValueError, match="takes no --set"):
        run("tuning-check", preset="tiny", cache_dir=str(tmp_path), out=tmp_path, data_settings={"split": "novel_tens"})
