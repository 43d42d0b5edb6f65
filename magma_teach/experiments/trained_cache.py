"""Trained starting points remembered on disk, so that a chapter needing a model that another chapter
(or an earlier run) trained with the same code, data, settings and seed loads it instead of training.

The key covers everything the trained weights depend on: the approach, every setting of its config,
the training seed, the model width, the data (a hash of its tensors, splits and tasks), the package's
source code, torch's version, the CPU kernels torch picked and its thread count (other kernels or
another split of the work round differently, so such models are never reused). Training is
deterministic for a given key on a CPU, which is how :func:`~magma_teach.experiments.context.train_all`
trains (one thread per job); on a GPU nothing is cached. ``MAGMA_TEACH_MODEL_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import dataclasses

import torch

from magma_teach.baselines import TrainedApproach, train_approach
from magma_teach.data.base import CrossModalDataset
from magma_teach.data.cache import MODEL_CACHE_ENV, cached, code_fingerprint, data_fingerprint, models_cached
from magma_teach.magma import CrossModalModel, MagmaConfig

ENV_VAR = MODEL_CACHE_ENV
enabled = models_cached  # on for CPU training unless $MAGMA_TEACH_MODEL_CACHE is 0


def train(name: str, data: CrossModalDataset, cfg: MagmaConfig, seed: int, progress: bool | None = None,
          dim: int = 64, cache_dir=None) -> TrainedApproach:
    """:func:`~magma_teach.baselines.train_approach`, or its result from the cache when the key matches."""
    device = data.target.x.device
    if not enabled(device):
        return train_approach(name, data, cfg, seed=seed, dim=dim, progress=progress)

    def build() -> dict:
        trained = train_approach(name, data, cfg, seed=seed, dim=dim, progress=progress)
        return {"state": trained.model.state_dict(), "target_samples": trained.target_samples,
                "target_labels": trained.target_labels, "history": trained.history}

    payload = cached("model", key(name, data, cfg, seed, dim), build, cache_dir)
    model = CrossModalModel.for_dataset(data, dim=dim, n_way=cfg.n_way).to(device)
    model.load_state_dict(payload["state"])
    return TrainedApproach(name, model, int(payload["target_samples"]), int(payload["target_labels"]),
                           dict(payload["history"]))


def key(name: str, data: CrossModalDataset, cfg: MagmaConfig, seed: int, dim: int) -> dict:
    """Everything the trained weights depend on, as plain JSON."""
    return {"approach": name, "config": _plain(dataclasses.asdict(cfg)), "seed": int(seed), "dim": int(dim),
            "data": data_fingerprint(data), "code": code_fingerprint(), "threads": torch.get_num_threads()}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
