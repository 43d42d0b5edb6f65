"""The experiments by name, and :func:`run`, which runs one of them and writes its JSON and CSV."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from magma_teach.experiments.context import Context
from magma_teach.experiments.few_shot import image_audio, text_image, text_speech
from magma_teach.experiments.noisy_labels import noisy_labels
from magma_teach.experiments.presets import PRESETS
from magma_teach.experiments.results import ExperimentResult
from magma_teach.experiments.retrieval import retrieval
from magma_teach.experiments.strong_weak import strong_weak
from magma_teach.experiments.tradeoff import tradeoff
from magma_teach.utils import pick_device, seed_everything


# Experiments that exist only on downloaded data (they refuse data="offline").
FULL_DATA_ONLY = ("text-image",)

EXPERIMENTS: dict[str, tuple[Callable, str]] = {
    "image-audio": (image_audio, "Table 2: image -> audio on numbers, every approach, 1/5/10-shot"),
    "text-speech": (text_speech, "Table 4 + Table 5: text -> speech language ID on languages"),
    "retrieval": (retrieval, "Table 3: speech -> image retrieval (R@k, median rank, cosine loss) + gallery"),
    "noisy-labels": (noisy_labels, "Figure 3: MAGMA vs Oracle under symmetric target-label noise"),
    "tradeoff": (tradeoff, "Poster: alignment vs supervision (pairs, pairing noise, weak vs labels)"),
    "strong-weak": (strong_weak, "Strong (instance) vs weak (same-decade) pairs on numbers"),
    "text-image": (text_image, "Poster: text -> image on Yummly-28K recipes (needs --data full)"),
}


def run(experiment: str, preset: str = "quick", data: str = "offline", device: str = "auto", seed: int = 0,
        out: str | Path | None = None, cache_dir: str | None = None, progress: bool | None = None,
        data_settings: dict | None = None) -> ExperimentResult:
    """Run one experiment; write ``<experiment>.json`` and ``.csv`` under ``out`` when given.

    ``data_settings`` change the benchmark's config, e.g. ``{"archive_sha256": "sha256:…"}`` for the
    recipes or ``{"per_language": 40}`` (keys as in the ``DEFAULTS`` of the benchmark's module).
    """
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got {experiment!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(p for p in PRESETS)}, got {preset!r}")
    if data not in ("offline", "full"):
        raise ValueError(f"data must be 'offline' or 'full', got {data!r}")
    seed_everything(seed)
    ctx = Context(PRESETS[preset], pick_device(device), seed, data, cache_dir, progress, dict(data_settings or {}))
    start = time.perf_counter()
    rows, extras = EXPERIMENTS[experiment][0](ctx)
    result = ExperimentResult(experiment, preset, data, _device_name(ctx.device), time.perf_counter() - start,
                              rows, {k: v for k, v in extras.items() if v is not None})
    if out is not None:
        result.write(out)
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"
