"""Strong (instance) against weak (cluster) pairs for MAGMA on the same data."""

from __future__ import annotations

import pandas as pd
import torch

from magma_teach.experiments.context import Context, _train, few_shot_rows
from magma_teach.experiments.presets import magma_config


def strong_weak(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """MAGMA with strong (instance) pairs vs weak (same decade) pairs on ``numbers``."""
    data = ctx.benchmark("numbers", needs_pairs=True)
    decades = int(torch.unique(data.clusters[data.splits["meta_train"]]).numel())
    weak = {"weak": True, "align_way": min(5, decades), "pairs_per_concept": 4}  # 5 decades x 4 pairs a task
    rows = []
    for label, changes in (("MAGMA (strong pairs)", {}), ("MAGMA (weak pairs)", weak)):
        cfg = magma_config(ctx.preset, data, **changes)
        trained = _train("MAGMA", data, cfg, ctx)
        rows.append(few_shot_rows(trained, data, cfg, ctx).assign(approach=label))
    return pd.concat(rows, ignore_index=True), {}
