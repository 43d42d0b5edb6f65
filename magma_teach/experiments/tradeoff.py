"""The poster's alignment-vs-supervision analysis on the concept world."""

from __future__ import annotations

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
    if ctx.data == "full":
        raise ValueError("tradeoff runs on the synthetic concept world only (use --data offline)")
    preset = replace(ctx.preset, shots=(5,))
    ctx = replace(ctx, preset=preset)
    base = dict(seed=ctx.seed)
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
    source = run_protocol(finetune_predictor(trained.model, cfg.finetune, encoder="source"), data.source,
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
