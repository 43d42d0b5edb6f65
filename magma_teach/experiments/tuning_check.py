"""Do the tuned settings hold beyond the tuning seeds? A check of :mod:`magma_teach.tuning`.

A study keeps the best of its trials, so the value it records is an optimistic estimate of what its
setting gives: the trial was chosen *because* it scored high on the studies' training seeds (1000,
1001, …). This runner trains each approach of a few-shot table with its tuned config and the run's own
training seeds (0, 1, 2, …, the seeds of the tables) on the data the studies tuned on (their recorded
data seed, whatever the run's), scores the studies' objective on the very validation tasks and draws
the study scored (those of its seeds 1000, 1001, …, averaged), and sets the result beside the recorded
value: only the training seed differs from a trial. A setting that holds stays
within its spread; one that was lucky on the tuning seeds falls below it. With the models of Table 2
or 4 already trained (same code, data, config and seeds), only the scoring runs.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd

from magma_teach import tuning
from magma_teach.evaluate import verdict
from magma_teach.experiments.context import APPROACHES_AFTER_FIRST, FIRST_APPROACH, Context, train_all
from magma_teach.experiments.presets import magma_config


def tuning_check(ctx: Context, benchmark: str = "numbers") -> tuple[pd.DataFrame, dict]:
    """Every approach of ``benchmark``'s table: the studies' objective over the run's training seeds against
    the value its study recorded. Rows: approach, mean, std, seeds, recorded, verdict (of the re-measured
    mean ± std against the recorded value: "behind" means the setting did worse than its study said)."""
    study = tuning.recorded(benchmark)
    # The data the studies tuned on (its validation concepts are what they scored); the training seeds
    # stay the run's own, so with the default seed these are the very models of Table 2 or 4.
    data = replace(ctx, seed=int(study.get("data seed", ctx.seed))).benchmark(benchmark)
    approaches = [FIRST_APPROACH[benchmark], *APPROACHES_AFTER_FIRST]
    jobs = {a: (a, magma_config(ctx.preset, data, approach=a)) for a in approaches}
    draws = tuple(study.get("training seeds", [])) or tuning.TUNING_SEEDS
    scores = train_all(jobs, data, ctx, score=partial(_objective, draws=draws))
    rows = pd.DataFrame([judge(approach, values, study, ctx.preset.name) for approach, values in scores.items()])
    runs = pd.DataFrame([{"approach": a, "seed": s, "objective": v} for a, values in scores.items()
                         for s, v in zip(ctx.seeds, values)])
    recorded = pd.DataFrame([{"preset": study.get("preset"), "data seed": study.get("data seed"),
                              "tuning seeds": ", ".join(map(str, draws)),
                              "objective": study.get("objective"), "command": study.get("command")}])
    return rows, {"runs": runs, "study": recorded}


def check_settings(ctx: Context) -> None:
    """Refuse ``--set``: the check scores the data the studies tuned on, as they generated it."""
    if ctx.data_settings:
        raise ValueError(f"tuning-check scores the data its studies tuned on and takes no --set; "
                         f"got {sorted(ctx.data_settings)}")


def judge(approach: str, values, study: dict, preset: str) -> dict:
    """One row: ``values`` (the objective, %, one per training seed) as mean ± std, beside what ``study``
    (:func:`~magma_teach.tuning.recorded`) recorded for ``approach``, and the verdict of the two
    (:func:`~magma_teach.evaluate.verdict`, the recorded value having no spread). A study of another
    preset trained with another budget, so its value is not compared."""
    mean, std = float(np.mean(values)), float(np.std(values))
    stored = study.get("validation objective (%)", {}) if study.get("preset") == preset else {}
    value = float(stored.get(approach, float("nan")))
    if approach in stored:
        judged = verdict(mean, std, value, 0.0)
    elif study and study.get("preset") != preset:
        judged = f"its study ran the {study.get('preset')} preset"
    else:
        judged = "not tuned"
    return {"approach": approach, "mean": mean, "std": std, "seeds": len(values), "recorded": value,
            "verdict": judged}


def _objective(trained, data, cfg, draws: tuple[int, ...]) -> float:
    # Scored on the very validation draws its study scored (one per tuning seed, averaged), so that the
    # training seed is the only thing that differs from a trial.
    return float(np.mean([tuning.validation_objective(trained.model, data, cfg, seed=s) for s in draws]))


def tuning_check_languages(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """:func:`tuning_check` of Table 4's approaches on the validation languages."""
    return tuning_check(ctx, "languages")
