"""The shared pieces of every runner: the :class:`Context` of a run, training by name, few-shot scoring."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from magma_teach.baselines import TrainedApproach, train_approach
from magma_teach.data.base import CrossModalDataset
from magma_teach.experiments.presets import FULL_DATA, Preset, magma_config
from magma_teach.magma import MagmaConfig, finetune_predictor, show_progress
from magma_teach.protocol import run_protocol, summarize


@dataclass
class Context:
    """Everything a runner needs: preset, device, seed, data choice, cache and progress settings."""

    preset: Preset
    device: torch.device
    seed: int
    data: str = "offline"
    cache_dir: str | None = None
    progress: bool | None = None
    data_settings: dict = field(default_factory=dict)  # changes to the benchmark's config (``--set``)

    def benchmark(self, name: str, needs_pairs: bool = False) -> CrossModalDataset:
        """The dataset a runner asks for by its offline ``name``; with ``data="full"`` its real counterpart
        (:data:`FULL_DATA`), downloaded on first use. ``needs_pairs``: the runner needs instance pairs."""
        from magma_teach.data.registry import FULL_BENCHMARKS, load

        if self.data == "full" and needs_pairs:  # checked before any download
            raise ValueError("this experiment needs instance pairs, which the full image→audio data "
                             "(CIFAR/ESC-50, weak pairs only) does not have; use --data offline")
        if self.data == "full" and name not in FULL_BENCHMARKS:
            if name not in FULL_DATA:
                raise ValueError(f"this experiment runs on {name!r} only; it has no full-data version "
                                 f"(use --data offline)")
            name = FULL_DATA[name]
        overrides = {**(self.preset.data_overrides.get(name, {}) if self.data == "offline" else {}),
                     **self.data_settings}
        data = load(name, preset="full" if self.preset.data == "full" else "quick", seed=self.seed,
                    cache_dir=self.cache_dir, progress=show_progress(self.progress), **overrides)
        return data.to(self.device)


def few_shot_rows(trained: TrainedApproach, data: CrossModalDataset, cfg: MagmaConfig, ctx: Context,
                  label_noise: float = 0.0) -> pd.DataFrame:
    """Evaluate one trained approach with the shared protocol → rows (approach, shots, mean, std, counts)."""
    results = run_protocol(finetune_predictor(trained.model, cfg.finetune), data.target, data.eval_tasks,
                           shots=ctx.preset.shots, repeats=ctx.preset.repeats, seed=ctx.seed, label_noise=label_noise)
    table = summarize(results)
    return table.assign(approach=trained.name, group=trained.group, target_samples=trained.target_samples,
                        target_labels=trained.target_labels)[
        ["approach", "group", "shots", "mean", "std", "target_samples", "target_labels"]]


def _train(name, data, cfg, ctx) -> TrainedApproach:
    return train_approach(name, data, cfg, seed=ctx.seed, progress=ctx.progress)


def _comparison(benchmark: str, first: str, ctx: Context):
    data = ctx.benchmark(benchmark)
    cfg = magma_config(ctx.preset, data)
    approaches = [first, "Unsup. meta-learning (reconstruct)", "Align + Classify", "Align + Meta Classify",
                  "MAGMA", "Oracle"]
    trained = {a: _train(a, data, cfg, ctx) for a in approaches}
    rows = pd.concat([few_shot_rows(t, data, cfg, ctx) for t in trained.values()], ignore_index=True)
    return data, cfg, trained, rows
