"""The few-shot tables: Table 2 (image → audio), Table 4 with Table 5's predictions (text → speech), and
the poster's recipe table (text → image)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import pandas as pd
import torch

from magma_teach.data.base import Modality
from magma_teach.experiments.context import Context, _comparison, protocol_scores, train_all
from magma_teach.experiments.presets import magma_config
from magma_teach.magma import finetune_predictor
from magma_teach.protocol import default_query_size, evaluation_tasks, summarize


def image_audio(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """Table 2 on ``numbers``: every approach at 1/5/10 shots with the target data it used."""
    _, _, _, rows = _comparison("numbers", "Random init", ctx)
    return rows, {}


def text_speech(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """Table 4 on ``languages``, plus Table-5-style predictions of MAGMA and the Oracle after 5 shots."""
    data, cfgs, trained, rows = _comparison("languages", "Supervised learning", ctx)
    return rows, {"predictions": sample_predictions(data, cfgs, trained, ctx)}


COMPARED = ("MAGMA", "Align + Meta Classify")


def text_speech_splits(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """MAGMA and Align + Meta Classify of Table 4 on the meta-test languages of several splits, each model
    fine-tuned at meta-test both ways: with its own tuned fine-tuning and with the other approach's.

    Which languages are meta-test depends on the data seed. Split ``i`` is the benchmark drawn with seed
    ``seed + i`` (as many splits as the preset has training seeds; split 0 is Table 4's own), each approach
    trained with the run's training seeds and scored on that split's meta-test tasks with the shared
    protocol. Nothing is chosen from these scores: they tell whether a gap between the two approaches
    belongs to the approaches or to one draw of the languages, and how much of it the meta-test
    fine-tuning (the one setting whose tuned value differs between them and that acts only at meta-test)
    accounts for. Rows: split × approach × ``finetuning`` (whose tuned fine-tuning) × k.
    """
    rows, languages = [], {}
    for offset in range(len(ctx.seeds)):
        split_ctx = replace(ctx, seed=ctx.seed + offset, datasets={})
        data = split_ctx.benchmark("languages")
        ctx.datasets[f"languages (split {offset})"] = split_ctx.datasets["languages"]
        cfgs = {a: magma_config(ctx.preset, data, approach=a) for a in COMPARED}
        score = partial(_score_each_finetuning, finetunes={a: c.finetune for a, c in cfgs.items()},
                        shots=ctx.preset.shots, repeats=ctx.preset.repeats, seed=ctx.seed)
        done = train_all({a: (a, cfgs[a]) for a in COMPARED}, data, replace(split_ctx, seed=ctx.seed), score=score)
        for approach, per_seed in done.items():  # per_seed: one {finetuning: scores} per training seed
            for tuned_for in COMPARED:
                table = summarize(pd.concat([scores[tuned_for].assign(seed=i) for i, scores in enumerate(per_seed)]))
                rows.append(table.assign(approach=approach, finetuning=tuned_for, split=offset,
                                         data_seed=ctx.seed + offset))
        languages[offset] = [data.class_names[c] for c in data.splits["meta_test"]]
    columns = ["split", "data_seed", "approach", "finetuning", "shots", "mean", "std", "seeds", "repeats"]
    return pd.concat(rows, ignore_index=True)[columns], {"meta_test_languages": languages}


def _score_each_finetuning(trained, data, cfg, finetunes: dict, shots, repeats: int, seed: int) -> dict:
    """The protocol's scores of one trained model fine-tuned with each of ``finetunes`` (name → InnerLoop)."""
    return {name: protocol_scores(trained, data, replace(cfg, finetune=finetune), shots=shots, repeats=repeats,
                                  seed=seed)[1][0.0] for name, finetune in finetunes.items()}


def text_image(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """The poster's recipe table on Yummly-28K (ingredients text → food photo); full data only."""
    if ctx.data != "full":
        raise ValueError("text-image runs on the Yummly-28K recipes only: add --data full")
    _, _, _, rows = _comparison("recipes", "Random init", ctx)
    return rows, {}


def sample_predictions(data, cfgs, trained, ctx, shots: int = 5, per_task: int = 2) -> pd.DataFrame:
    """For the first queries of every evaluation task: the sentence, its language, MAGMA's and the Oracle's guess."""
    k = min(shots, max(ctx.preset.shots))
    n_query = default_query_size(data.target, data.eval_tasks, ctx.preset.shots)
    g = lambda: torch.Generator().manual_seed(ctx.seed * 7 + 5)  # noqa: E731 - same draw for both calls
    tasks = evaluation_tasks(data.target, data.eval_tasks, k, n_query, g())
    proxy = Modality("vector", torch.arange(len(data.target)), data.target.lengths.cpu(), data.target.labels.cpu())
    indices = evaluation_tasks(proxy, data.eval_tasks, k, n_query, g()).query[0]  # the same draw, as indices
    # The model of the run's own seed (the first training seed) of each approach.
    guesses = {a: finetune_predictor(trained[a][0].model, cfgs[a].finetune)(tasks).cpu() for a in ("MAGMA", "Oracle")}
    rows, seen = [], set()
    for t, concepts in enumerate(data.eval_tasks):
        for q in range(per_task):
            j = q * n_query  # first query of concept q of this task
            name = lambda label: data.class_names[concepts[int(label)]]  # noqa: E731
            if int(indices[t, j]) in seen:  # tasks share languages; show each sentence once
                continue
            seen.add(int(indices[t, j]))
            rows.append({"task": t, "text": data.info["texts"][int(indices[t, j])],
                         "truth": name(tasks.query_y[t, j]), "MAGMA": name(guesses["MAGMA"][t, j]),
                         "Oracle": name(guesses["Oracle"][t, j])})
    return pd.DataFrame(rows)
