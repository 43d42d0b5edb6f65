"""Figure 3: MAGMA against the Oracle under symmetric noise on the target labels."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import torch

from magma_teach.data.base import CrossModalDataset, Modality
from magma_teach.evaluate import symmetric_noise
from magma_teach.experiments.context import Context, train_and_score
from magma_teach.experiments.presets import magma_config


def noisy_labels(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """Figure 3 on ``numbers``: MAGMA vs Oracle under symmetric noise on the target labels.

    Noise hits every target label a method sees: the Oracle's labeled meta-train target data and, for
    both methods, the k support labels at meta-test. MAGMA reads no target label in meta-training, so
    it is trained once; the Oracle is retrained at every noise rate.
    """
    data = ctx.benchmark("numbers")
    cfgs = {a: magma_config(ctx.preset, data, approach=a) for a in ("MAGMA", "Oracle")}
    rates = tuple(ctx.preset.noise_rates)
    _, magma = train_and_score({"MAGMA": ("MAGMA", cfgs["MAGMA"])}, data, ctx, label_noises=rates)
    rows = []
    for rate in rates:
        noisy = _with_noisy_target_labels(data, rate, ctx.seed)  # the Oracle trains on noisy target labels
        _, oracle = train_and_score({"Oracle": ("Oracle", cfgs["Oracle"])}, noisy, ctx, label_noises=(rate,))
        # scored on the clean evaluation tasks (noise on the support labels only): eval tasks are shared
        rows += [magma[rate].assign(noise=rate), oracle[rate].assign(noise=rate)]
    return pd.concat(rows, ignore_index=True), {}


def _with_noisy_target_labels(data: CrossModalDataset, rate: float, seed: int) -> CrossModalDataset:
    """A copy of ``data`` whose meta-train target labels suffer symmetric noise among meta-train concepts."""
    if rate == 0:
        return data
    concepts = torch.tensor(data.splits["meta_train"], device=data.target.labels.device)
    train = torch.isin(data.target.labels, concepts)
    position = torch.searchsorted(concepts, data.target.labels[train])  # concepts are sorted
    noisy = concepts[symmetric_noise(position, len(concepts), rate, seed)]
    labels = data.target.labels.clone()
    labels[train] = noisy
    target = Modality(data.target.kind, data.target.x, data.target.lengths, labels)
    return replace(data, target=target)
