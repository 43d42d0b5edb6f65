"""What makes meta-alignment work: an ablation of Reptile's update rule, on validation concepts only.

Algorithm 1 can be read in several ways (:mod:`magma_teach.reptile`), and the authors' code runs one
of them that the paper does not describe (PAPER_NOTES.md). Each *variant* below changes one thing
from the literal reading, and every variant gets the same budget of inner gradient steps on alignment
tasks (iterations × T × inner steps), the same number of validations and the same training seeds.
It is scored on the **validation** numbers only — the meta-test numbers stay unseen, so the variant
chosen here can become MAGMA's default without tuning on the test:

* few-shot accuracy at k = 1 and 5 on 5-way tasks over the validation numbers;
* alignment quality on the validation pairs, with no adaptation: the median rank of an utterance's
  own image among all validation images (lower is better) and Table 3's cosine loss (0 = pairs point
  the same way, 0.5 = unrelated).

Both splits of ``numbers`` are used: ``random`` (meta-test "42" shares "forty" and "two" with
meta-train numbers) and ``novel_tens`` (validation and meta-test decades never heard in meta-training).
``Align + Meta Classify`` (plain alignment) is trained alongside as the reference to beat.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from magma_teach.data.registry import make_eval_tasks
from magma_teach.evaluate import cosine_alignment_loss, retrieval_metrics
from magma_teach.experiments.context import Context, train_all
from magma_teach.experiments.presets import magma_config
from magma_teach.experiments.rules import CONCEPT, INSTANCE, MAGMA_UPDATE, UPDATE_RULES, update_rule
from magma_teach.magma import MagmaConfig, finetune_predictor
from magma_teach.protocol import run_protocol, summarize

PLAIN_INSTANCE = "plain alignment, instance pairs"
PLAIN_CONCEPT = "plain alignment, concept groups"
REFERENCES = (PLAIN_INSTANCE, PLAIN_CONCEPT)


# A second combination, which checks the chosen one rather than making a single change: the full preset
# runs it; the quick screen leaves it out to fit 10 minutes on 2 cores (Preset.ablation_confirming).
CONFIRMING = "concept groups, T = 1, fresh batches"


def rules(base: MagmaConfig, confirming: bool = True) -> dict[str, dict]:
    """The variants compared, as changes to a config: every update rule of
    :data:`~magma_teach.experiments.rules.UPDATE_RULES` with instance pairs (each one change away from
    the literal reading of Algorithm 1), then concept groups with the rules the single changes point to
    (:data:`CONFIRMING` only when ``confirming``)."""
    variants = {name: {**INSTANCE, **update_rule(name, base)} for name in UPDATE_RULES}
    variants["concept groups (eq. 4)"] = CONCEPT
    if confirming:
        variants[CONFIRMING] = {**CONCEPT, "meta_batch": 1, "fresh_batches": True}
    variants["concept groups, authors' rule"] = {**CONCEPT, **update_rule("authors' effective rule", base)}
    return variants


def variants(base: MagmaConfig, confirming: bool = True) -> dict[str, MagmaConfig]:
    """:func:`rules` applied to ``base``: the MAGMA configs of the ablation."""
    return {name: replace(base, **changes) for name, changes in rules(base, confirming).items()}


def references(base: MagmaConfig) -> dict[str, MagmaConfig]:
    """Plain alignment (Align + Meta Classify) with either pairing: the bar each variant must clear."""
    return {PLAIN_INSTANCE: replace(base, **INSTANCE), PLAIN_CONCEPT: replace(base, **CONCEPT)}


def equal_budget(cfg: MagmaConfig, steps: int, validations: int) -> MagmaConfig:
    """``cfg`` with as many iterations as ``steps`` inner alignment steps allow, and ``validations`` checks."""
    iterations = max(1, steps // (cfg.meta_batch * cfg.align_inner.steps))
    return replace(cfg, iterations=iterations, validate_every=max(1, iterations // validations))


def validation_scores(model, data, cfg: MagmaConfig, shots=(1, 5), repeats: int = 3, seed: int = 0) -> dict:
    """Few-shot accuracy (%) on 5-way tasks over the validation concepts, and alignment on their pairs."""
    tasks = make_eval_tasks(data.splits["val"], 8, cfg.n_way, 10_000 + seed)
    results = run_protocol(finetune_predictor(model, cfg.finetune, scores=True), data.target, tasks, shots=shots,
                           repeats=repeats, seed=seed)
    scores = {f"val acc {int(k)}-shot (%)": float(m) for k, m in summarize(results)[["shots", "mean"]].values}
    return {**scores, **validation_alignment(model, data)}


@torch.no_grad()
def validation_alignment(model, data) -> dict:
    """Median rank of each validation utterance's own image among all validation images, and the cosine loss."""
    pairs = data.pairs_of(data.splits["val"])
    z_s = model.source(*data.source.batch(pairs[:, 0]))
    z_t = model.target(*data.target.batch(pairs[:, 1]))
    sim = F.normalize(z_t, dim=-1) @ F.normalize(z_s, dim=-1).T
    return {"val median rank": retrieval_metrics(sim.cpu())["rank"], "val cosine loss": float(cosine_alignment_loss(z_s, z_t))}


def check_settings(ctx: Context) -> None:
    """Refuse ``--set split`` (the ablation runs both splits itself); validate the other ``numbers`` settings."""
    if "split" in ctx.data_settings:
        raise ValueError("the ablation runs both splits of numbers itself; remove --set split")
    ctx.benchmark_config("numbers", needs_pairs=True)


def ablation(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """Every variant × split × training seed → validation scores; rows are mean ± std over seeds."""
    runs = []
    for split in ("random", "novel_tens"):
        data = replace(ctx, data_settings={**ctx.data_settings, "split": split}).benchmark("numbers", needs_pairs=True)
        base = magma_config(ctx.preset, data)
        n_train = len(data.splits["meta_train"])
        jobs = {name: ("Align + Meta Classify" if name in REFERENCES else "MAGMA",
                       equal_budget(replace(cfg, align_way=min(cfg.align_way, n_train)), ctx.preset.ablation_steps,
                                    ctx.preset.ablation_validations))
                for name, cfg in {**variants(base, ctx.preset.ablation_confirming), **references(base)}.items()}
        scores = train_all(jobs, data, ctx, score=_validation_score)
        for name, per_seed in scores.items():
            for seed, result in zip(ctx.seeds, per_seed):
                runs.append({"split": split, "variant": name, "seed": seed, "iterations": jobs[name][1].iterations,
                             **result})
    runs = pd.DataFrame(runs)
    return summarize_seeds(runs), {"runs": runs, "selection": selection(runs)}


def _validation_score(trained, data, cfg) -> dict:
    return validation_scores(trained.model, data, cfg, seed=0)


def summarize_seeds(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over training seeds of every score, per (split, variant), in the order the runs came."""
    measures = [c for c in runs.columns if c.startswith("val ")]
    grouped = runs.groupby(["split", "variant"], sort=False)[measures]
    spread = grouped.agg(lambda v: float(np.std(v))).add_suffix(" std")
    table = grouped.mean().join(spread).reset_index()
    return table.assign(seeds=grouped.size().values)


def selection(runs: pd.DataFrame) -> pd.DataFrame:
    """How the variants rank by the ablation's one objective, best first.

    The objective of a run is its mean validation accuracy over the shots; for each variant and seed it
    is averaged over the two splits, then given as mean ± std over seeds. ``verdict`` compares every
    variant with the best MAGMA variant (:func:`~magma_teach.evaluate.verdict`: a difference inside the
    spread is a tie; the best variant's own row says "chosen"); ``chosen`` marks the best MAGMA variant,
    the default the ablation picks.
    """
    from magma_teach.evaluate import verdict

    shots = [c for c in runs.columns if c.startswith("val acc")]
    per_run = runs.assign(objective=runs[shots].mean(axis=1))
    per_seed = per_run.groupby(["variant", "seed"], sort=False)["objective"].mean()
    table = per_seed.groupby("variant", sort=False).agg(mean="mean", std=lambda v: float(np.std(v))).reset_index()
    table = table.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
    magma = table[~table["variant"].isin(REFERENCES)]
    best = magma.iloc[0]
    table["chosen"] = table["variant"] == best["variant"]
    table["verdict vs chosen"] = ["chosen" if chosen else verdict(m, s, best["mean"], best["std"])
                                  for m, s, chosen in zip(table["mean"], table["std"], table["chosen"])]
    return table


def languages_pairing(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """The pairing choice on ``languages``: instance pairs (eq. 3, one sentence per language in a task) or
    language groups (eq. 4), for MAGMA's chosen rule and for plain alignment, on validation languages.

    The same validation scores and training seeds as :func:`ablation`; this is the run behind
    ``ALIGNMENT["languages"]``.
    """
    data = ctx.benchmark("languages", needs_pairs=True)
    base = magma_config(ctx.preset, data)
    instance = {"weak": False, "align_way": min(16, len(data.splits["meta_train"])), "pairs_per_concept": 1}
    jobs = {}
    for pairing, changes in (("instance pairs", instance), ("language groups", CONCEPT)):
        magma = replace(base, **changes, **update_rule(MAGMA_UPDATE, base))
        jobs[f"MAGMA, {pairing}"] = ("MAGMA", equal_budget(magma, ctx.preset.ablation_steps,
                                                         ctx.preset.ablation_validations))
        jobs[f"plain alignment, {pairing}"] = ("Align + Meta Classify", equal_budget(
            replace(base, **changes), ctx.preset.ablation_steps, ctx.preset.ablation_validations))
    scores = train_all(jobs, data, ctx, score=_validation_score)
    runs = pd.DataFrame([{"split": "random", "variant": name, "seed": seed, **result}
                         for name, per_seed in scores.items() for seed, result in zip(ctx.seeds, per_seed)])
    return summarize_seeds(runs), {"runs": runs}


NARROW, WIDE = "5 languages a step", "every meta-train language a step"


def languages_width(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """MAGMA's update rule against plain alignment's on ``languages``, crossed with how many languages one
    alignment step contrasts. (Written when MAGMA trailed plain alignment there under the first, defective
    tuning studies, to ask whether the rule or the width of a step was the cause; chapter 8 no longer runs it.)

    Table 4's MAGMA and Align + Meta Classify configs (tuned rates included) differ in two things. MAGMA's
    rule takes one task of ``align_way`` = 5 languages per step, carried Adam with β₁ = 0 and θ ← θ̃; plain
    alignment takes one persistent Adam (β₁ = 0.9) on batches of ``align_way × meta_batch`` languages,
    capped by the meta-train split (every meta-train language when it has fewer than 40). This 2 × 2
    crosses the two: each rule at either width, and each cell sees as many alignment examples as its rule
    sees in Table 4 (a wider step means fewer steps). Scored like :func:`ablation`, on validation languages.
    """
    data = ctx.benchmark("languages")
    n_train = len(data.splits["meta_train"])
    jobs, shape = {}, {}
    for approach, rule in (("MAGMA", "MAGMA's rule"), ("Align + Meta Classify", "plain alignment")):
        table4 = magma_config(ctx.preset, data, approach=approach)
        for width, cfg in zip((NARROW, WIDE), _widths(table4, approach, n_train)):
            jobs[f"{rule}, {width}"] = (approach, cfg)
            shape[f"{rule}, {width}"] = {"rule": rule, "width": width, **alignment_shape(cfg, approach, n_train)}
    scores = train_all(jobs, data, ctx, score=_validation_score)
    runs = pd.DataFrame([{"split": "random", "variant": name, "seed": seed, **shape[name], **result}
                         for name, per_seed in scores.items() for seed, result in zip(ctx.seeds, per_seed)])
    table = summarize_seeds(runs.drop(columns=["rule", "width", "languages a step", "alignment steps"]))
    return table.merge(pd.DataFrame.from_dict(shape, orient="index").rename_axis("variant").reset_index(),
                       on="variant"), {"runs": runs}


def alignment_shape(cfg: MagmaConfig, approach: str, n_train: int) -> dict:
    """Languages (groups) one alignment step contrasts, and how many steps a run takes."""
    if approach == "MAGMA":  # T tasks of align_way groups, each adapted on its own
        return {"languages a step": min(cfg.align_way, n_train),
                "alignment steps": cfg.iterations * cfg.meta_batch * cfg.align_inner.steps}
    return {"languages a step": min(cfg.align_way * cfg.meta_batch, n_train),  # PlainAlignment's one batch
            "alignment steps": cfg.iterations * cfg.align_inner.steps}


def _widths(table4: MagmaConfig, approach: str, n_train: int) -> tuple[MagmaConfig, MagmaConfig]:
    """``(narrow, wide)`` versions of a Table 4 config with its number of alignment examples kept."""
    now = alignment_shape(table4, approach, n_train)
    examples = now["languages a step"] * now["alignment steps"]
    validations = max(1, table4.iterations // table4.validate_every)
    if approach == "MAGMA":  # one task a step: its width is align_way
        narrow, wide = replace(table4, align_way=5), replace(table4, align_way=n_train)
    else:  # one batch a step of align_way × meta_batch languages (meta_batch is also φ's T: kept where it can be)
        narrow, wide = replace(table4, align_way=5, meta_batch=1), replace(table4, align_way=n_train)
    out = []
    for cfg in (narrow, wide):
        per_iteration = alignment_shape(replace(cfg, iterations=1), approach, n_train)
        iterations = max(1, round(examples / (per_iteration["languages a step"] * per_iteration["alignment steps"])))
        out.append(replace(cfg, iterations=iterations, validate_every=max(1, iterations // validations)))
    return out[0], out[1]
