"""Tables for people: each experiment's tidy rows laid out the way the paper prints them, with a caption
that says what the numbers are and sentences, computed from the numbers, that say where the pattern
matches the paper's."""

from __future__ import annotations

import pandas as pd

from magma_teach.experiments import ExperimentResult, paper_layout
from magma_teach.paper import beside_paper, pattern_sentences

# What varies along the rows of experiments whose rows are not one approach per k.
_ROW_NOTES = {
    "noisy-labels": "noise: fraction of target labels replaced by a uniformly random other label",
    "tradeoff": "k = 5; x is the number of pairs, the pairing-noise fraction or the number of target labels "
                "(see study)",
    "strong-weak": "strong pairs: an image with its own utterance; weak pairs: any two items of one decade",
}


def retrieval_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 3: one row per (K, experiment) with R@1/5/10 in %, median rank and cosine loss, each as
    "mean ± std" over training seeds when the rows carry ``"<metric> std"`` columns."""
    digits = {"R@1": 1, "R@5": 1, "R@10": 1, "rank": 1, "cos": 3, "concept R@1": 1}
    table = rows[["K", "experiment"]].copy()
    for metric, d in digits.items():
        if metric not in rows:
            continue
        if f"{metric} std" in rows:
            table[metric] = [f"{m:.{d}f} ± {s:.{d}f}" for m, s in zip(rows[metric], rows[f"{metric} std"])]
        else:
            table[metric] = rows[metric].round(d)
    return table


def noise_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Figure 3 as a table: accuracy (mean ± std) per approach and k, one column per noise rate."""
    cell = rows["mean"].map("{:.1f}".format) + " ± " + rows["std"].map("{:.1f}".format)
    return rows.assign(cell=cell).pivot_table(index=["approach", "shots"], columns="noise", values="cell",
                                              aggfunc="first")


def _count(rows: pd.DataFrame, column: str, fallback) -> int | None:
    """A count the rows carry (``seeds``, ``repeats``), else ``fallback``."""
    if column in rows and len(rows):
        return int(rows[column].max())
    return fallback


def _plural(n, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def caption(result: ExperimentResult) -> str:
    """One line: the metric and its unit, what ± is, and how many tasks, evaluation draws and seeds."""
    rows = result.rows
    data = next(iter(result.datasets.values()), {})
    n_way, n_tasks = data.get("n_way"), data.get("eval_tasks")
    seeds = _count(rows, "seeds", len(result.seeds) or 1)
    if "R@1" in rows:
        return (f"{result.experiment} ({result.preset} preset, {result.data} data): R@k = % of spoken queries whose "
                f"own image ranks in the top k of the held-out images; rank = median rank of that image (ties "
                f"share their mean place); cos = cosine alignment loss; K = adaptation pairs per unseen "
                f"number; one adaptation per K, {_plural(seeds, 'training seed')}, so no ± is measured.")
    if "mean" not in rows:
        return f"{result.experiment} ({result.preset} preset, {result.data} data)."
    if result.experiment.startswith("tuning-check"):
        return (f"{result.experiment} ({result.preset} preset, {result.data} data): the tuning objective (mean "
                f"{n_way}-way accuracy in % at k = 1 and 5 on the validation concepts) of each approach's tuned "
                f"settings, mean ± std over {_plural(seeds, 'training seed')}, on the validation tasks its study scored; "
                f"recorded = its study's best value on the tuning seeds (magma_teach/tuned.json); verdict: "
                f"ours against recorded, a difference inside the spread being a tie.")
    repeats = _count(rows, "repeats", result.settings.get("repeats"))
    way = f"{n_way}-way " if n_way else ""
    tasks = f"; each draw averages {_plural(n_tasks, 'fixed task')} of unseen classes" if n_tasks else ""
    if (repeats or 1) * seeds == 1:
        spread = "± is 0: one evaluation draw of one training seed, so no spread is measured (use --preset quick)"
    else:
        spread = (f"± = std over {_plural(seeds, 'training seed')} × {_plural(repeats, 'evaluation draw')}"
                  if repeats else f"± = std over {_plural(seeds, 'training seed')} and the evaluation draws")
    note = f"; {_ROW_NOTES[result.experiment]}" if result.experiment in _ROW_NOTES else ""
    return (f"{result.experiment} ({result.preset} preset, {result.data} data): {way}few-shot accuracy on the "
            f"target modality in %, mean ± std; k = labeled examples per class; {spread}{tasks}{note}.")


def format_result(result: ExperimentResult) -> str:
    """The result as printable text: caption, the paper-style table, ours beside the paper's, and one
    computed sentence per comparison with the paper."""
    rows, name = result.rows, result.experiment
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        if name in ("image-audio", "text-speech", "text-image", "strong-weak"):
            text = paper_layout(rows).to_string(index=False)
            if name != "strong-weak":
                beside = beside_paper(rows, name, result.data)
                text += "\n\nBeside the paper:\n" + beside.to_string(index=False) + "\n" + beside.attrs["note"]
            if "predictions" in result.extras:
                text += "\n\nSample predictions after 5 shots:\n" + result.extras["predictions"].to_string(index=False)
        elif name == "retrieval":
            text = retrieval_table(rows).to_string(index=False)
        elif name == "noisy-labels":
            text = noise_table(rows).to_string()
        else:
            text = rows.round(1).to_string(index=False)
    sentences = pattern_sentences(rows, name)
    return caption(result) + "\n\n" + text + ("\n\n" + "\n".join(sentences) if sentences else "")
