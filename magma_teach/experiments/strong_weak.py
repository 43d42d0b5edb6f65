"""Strong (instance) against weak (cluster) pairs for MAGMA on the same data."""

from __future__ import annotations

import pandas as pd
import torch

from magma_teach.experiments.context import Context, few_shot_rows, train_seeds
from magma_teach.experiments.presets import magma_config


PAIRINGS = {  # label → how alignment tasks pair the two modalities
    "MAGMA (instance pairs, eq. 3)": {"weak": False, "align_way": 20, "pairs_per_concept": 1},
    "MAGMA (concept groups, eq. 4)": {"weak": True, "groups": "concept", "align_way": 5, "pairs_per_concept": 4},
    "MAGMA (decade clusters, eq. 4)": {"weak": True, "groups": "cluster", "align_way": 5, "pairs_per_concept": 4},
}


def strong_weak(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """MAGMA on ``numbers`` with three pairings: instance pairs (eq. 3, one pair per number in a task),
    concept groups (eq. 4, every image and utterance of a number positive to each other) and decade
    clusters (eq. 4, the weak pairs of the paper: numbers of one decade count as one group)."""
    data = ctx.benchmark("numbers", needs_pairs=True)
    decades = int(torch.unique(data.clusters[torch.as_tensor(data.splits["meta_train"])]).numel())
    rows = []
    for label, changes in PAIRINGS.items():
        changes = {**changes, "align_way": min(changes["align_way"], decades if changes.get("groups") == "cluster"
                                               else len(data.splits["meta_train"]))}
        cfg = magma_config(ctx.preset, data, approach="MAGMA", **changes)
        rows.append(few_shot_rows(train_seeds("MAGMA", data, cfg, ctx), data, cfg, ctx).assign(approach=label))
    return pd.concat(rows, ignore_index=True), {}
