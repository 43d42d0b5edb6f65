"""The poster's alignment-vs-supervision analysis on the concept world."""

from __future__ import annotations

import inspect
from dataclasses import replace

import pandas as pd
import torch

from magma_teach.data.base import CrossModalDataset, Modality
from magma_teach.data.conceptworld import concept_world
from magma_teach.experiments.context import Context, _train, few_shot_rows
from magma_teach.experiments.presets import magma_config
from magma_teach.magma import finetune_predictor
from magma_teach.protocol import run_protocol, summarize


def tradeoff(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """The poster's analysis on the concept world (5-shot accuracy of the target).

    1. more strong pairs → accuracy, against the source modality's own few-shot accuracy;
    2. pairing noise → accuracy;
    3. weak pairs (cluster level) of growing number against supervised target meta-learning (the
       Oracle's recipe) with a fixed number of target labels.
    """
    check_settings(ctx)  # --data and --set, before any training
    preset = replace(ctx.preset, shots=(5,))
    ctx = replace(ctx, preset=preset)
    base = dict(seed=ctx.seed, **world_settings(ctx))
    rows = []

    def magma_score(pairs_per_concept=None, **world):
        data = concept_world(**base, **world).to(ctx.device)
        changes = {"weak": True, "pairs_per_concept": 4} if world.get("pairing") == "weak" else {}
        if pairs_per_concept:  # scarce pairs: one per concept, from the meta-train concepts that have one
            counts = torch.bincount(data.source.labels[data.pairs[:, 0]], minlength=data.num_classes)
            with_pairs = int((counts[data.splits["meta_train"]] >= pairs_per_concept).sum())
            changes = {"pairs_per_concept": pairs_per_concept, "align_way": min(16, with_pairs)}
        cfg = magma_config(preset, data, source_pretrain_steps=0, **changes)
        trained = _train("MAGMA", data, cfg, ctx)
        return data, cfg, trained, few_shot_rows(trained, data, cfg, ctx).iloc[0]

    for n in preset.tradeoff_pairs:
        data, cfg, trained, row = magma_score(n_pairs=n, pairs_per_concept=1)
        rows.append({"study": "pairs", "x": n, "approach": "MAGMA (strong pairs)", "mean": row["mean"], "std": row["std"]})
    # The reference: the source modality's own few-shot accuracy with the same protocol.
    source = run_protocol(finetune_predictor(trained.model, cfg.finetune, encoder="source", scores=True), data.source,
                          data.eval_tasks, shots=(5,), repeats=preset.repeats, seed=ctx.seed)
    src = summarize(source).iloc[0]
    rows.append({"study": "pairs", "x": None, "approach": "source task (reference)", "mean": src["mean"], "std": src["std"]})
    for rate in preset.tradeoff_noise:
        row = magma_score(pairing_noise=rate)[3]
        rows.append({"study": "pairing noise", "x": rate, "approach": "MAGMA (strong pairs)", "mean": row["mean"], "std": row["std"]})
    for n in preset.tradeoff_pairs:
        row = magma_score(pairing="weak", n_pairs=n)[3]
        rows.append({"study": "weak vs supervised", "x": n, "approach": "MAGMA (weak pairs)", "mean": row["mean"], "std": row["std"]})
    for n_labels in preset.tradeoff_labels:
        data = _labeled_subset(concept_world(**base).to(ctx.device), n_labels, ctx.seed)
        cfg = magma_config(preset, data, source_pretrain_steps=0, source_shots=1)  # 1-shot tasks: 2 labels a concept
        row = few_shot_rows(_train("Oracle", data, cfg, ctx), data, cfg, ctx).iloc[0]
        rows.append({"study": "weak vs supervised", "x": n_labels, "approach": f"supervised target ({n_labels} labels)",
                     "mean": row["mean"], "std": row["std"]})
    return pd.DataFrame(rows), {}


# The concept-world knobs the study turns itself; every other keyword of concept_world can be --set.
SWEPT = {"n_pairs": "the preset's tradeoff_pairs", "pairing_noise": "the preset's tradeoff_noise",
         "pairing": "strong and weak pairs in turn", "seed": "--seed"}


def world_settings(ctx: Context) -> dict:
    """``ctx.data_settings`` checked as keyword arguments of :func:`~magma_teach.data.conceptworld.concept_world`.

    A key that is not a keyword of it is refused as unknown, a knob the study sweeps is refused
    (``--set n_pairs=…`` would be overwritten by the sweep), and a value of the wrong kind is refused
    naming the key; ranges are checked by :func:`check_settings`.
    """
    defaults = {k: p.default for k, p in inspect.signature(concept_world).parameters.items()}
    settable = sorted(set(defaults) - set(SWEPT))
    unknown = sorted(set(ctx.data_settings) - set(defaults))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; choose from {settable}")
    swept = sorted(set(ctx.data_settings) & set(SWEPT))
    if swept:
        raise ValueError(f"tradeoff sets {', '.join(swept)} itself ({'; '.join(SWEPT[k] for k in swept)}); "
                         f"choose from {settable}")
    settings = {}
    for key, value in ctx.data_settings.items():
        settings[key] = _typed(key, value, defaults[key])
    return settings


def _typed(key: str, value, default):
    """``value`` if it has the kind of ``default`` (integers for integers, numbers for floats, a list of
    three fractions for ``splits``), else a ``ValueError`` naming ``key``."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool) or default is None:
        return value
    if isinstance(default, int):
        if not (isinstance(value, int) and not isinstance(value, bool)):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not number:
            raise ValueError(f"{key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if not (isinstance(value, (list, tuple)) and len(value) == len(default)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise ValueError(f"{key} must be a list of {len(default)} numbers such as {list(default)}, got {value!r}")
        return tuple(float(v) for v in value)
    if not isinstance(value, type(default)):
        raise ValueError(f"{key} must be a {type(default).__name__}, got {value!r}")
    return value


def check_settings(ctx: Context) -> None:
    """Refuse bad ``--set`` keys or values before any training: type checks, then every concept world the
    study will build, built once (milliseconds each), so a range error (``num_concepts=5``,
    ``noise=-1``, fewer samples than the largest pair count) is a one-line ``ValueError`` now."""
    if ctx.data == "full":
        raise ValueError("tradeoff runs on the synthetic concept world only (use --data offline)")
    base = dict(seed=ctx.seed, **world_settings(ctx))
    preset = ctx.preset
    variants = [{}, *[{"n_pairs": n} for n in preset.tradeoff_pairs],
                *[{"pairing_noise": r} for r in preset.tradeoff_noise],
                *[{"pairing": "weak", "n_pairs": n} for n in preset.tradeoff_pairs]]
    worlds = []
    for changes in variants:
        try:
            worlds.append(concept_world(**base, **changes))
        except TypeError as err:
            raise ValueError(f"a tradeoff setting has a value of the wrong kind ({err}); "
                             f"settings given: {ctx.data_settings}") from None
    world = worlds[0]  # the study's base world; each part changes one knob of it
    ctx.datasets["conceptworld"] = {"config": world.info["config"], "n_way": len(world.eval_tasks[0]),
                                    "eval_tasks": len(world.eval_tasks)}


def _labeled_subset(data: CrossModalDataset, n_labels: int, seed: int) -> CrossModalDataset:
    """Keep ``n_labels`` labeled target examples of the meta-train concepts, at least 2 per concept.

    The labels go to as many meta-train concepts as can each get two (one to adapt on, one to test
    on in a 1-shot task); the meta-train split shrinks to those concepts. Dropped examples keep their
    rows but get label -1, which no task asks for, so every index stays valid.
    """
    g = torch.Generator().manual_seed(seed)
    train = data.splits["meta_train"]
    concepts = [train[i] for i in torch.randperm(len(train), generator=g)[:max(1, min(len(train), n_labels // 2))]]
    per = n_labels // len(concepts)
    t = data.target
    labels = t.labels.clone()
    for c in train:
        idx = t.indices_of(c).cpu()
        keep = per if c in concepts else 0
        labels[idx[torch.randperm(len(idx), generator=g)[keep:]].to(labels.device)] = -1
    splits = {**data.splits, "meta_train": sorted(concepts)}
    return replace(data, target=Modality(t.kind, t.x, t.lengths, labels), splits=splits)
