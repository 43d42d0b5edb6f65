"""The few-shot tables: Table 2 (image → audio), Table 4 with Table 5's predictions (text → speech), and
the poster's recipe table (text → image)."""

from __future__ import annotations

import pandas as pd
import torch

from magma_teach.data.base import Modality
from magma_teach.experiments.context import Context, _comparison
from magma_teach.magma import finetune_predictor
from magma_teach.protocol import default_query_size, evaluation_tasks


def image_audio(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """Table 2 on ``numbers``: every approach at 1/5/10 shots with the target data it used."""
    _, _, _, rows = _comparison("numbers", "Random init", ctx)
    return rows, {}


def text_speech(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """Table 4 on ``languages``, plus Table-5-style predictions of MAGMA and the Oracle after 5 shots."""
    data, cfgs, trained, rows = _comparison("languages", "Supervised learning", ctx)
    return rows, {"predictions": sample_predictions(data, cfgs, trained, ctx)}


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
