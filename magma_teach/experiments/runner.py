"""The experiments by name, and :func:`run`, which checks a call, runs one experiment and writes its files.

:func:`run` checks everything it can before any work (data generation, downloads, training): the
experiment, preset, data and seed; the output folder, the cache folder and an existing result; every
``--set`` setting, against the benchmark the experiment loads; the thread and progress settings.
A bad value is a one-line ``ValueError`` naming it, raised within a second rather than at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from magma_teach.experiments.ablation import ablation, languages_pairing, languages_width
from magma_teach.experiments.ablation import check_settings as ablation_settings
from magma_teach.experiments.context import Context
from magma_teach.experiments.few_shot import image_audio, text_image, text_speech, text_speech_splits
from magma_teach.experiments.noisy_labels import noisy_labels
from magma_teach.experiments.presets import PRESETS
from magma_teach.experiments.results import (
    ExperimentResult,
    check_free,
    now_utc,
    provenance,
    result_stem,
)
from magma_teach.experiments.retrieval import retrieval
from magma_teach.experiments.stored import find
from magma_teach.experiments.strong_weak import strong_weak
from magma_teach.experiments.tradeoff import check_settings as tradeoff_settings
from magma_teach.experiments.tradeoff import tradeoff
from magma_teach.experiments.tuning_check import check_settings as tuning_check_settings
from magma_teach.experiments.tuning_check import tuning_check, tuning_check_languages
from magma_teach.utils import (
    check_writable_dir,
    phase,
    pick_device,
    progress_env,
    seed_everything,
    thread_policy,
    use_threads,
)

SEED_MAX = 2**32 - 1  # what every random generator the package seeds accepts (NumPy's legacy seed included)


@dataclass(frozen=True)
class Experiment:
    """One runner and what :func:`run` needs to check a call to it before any work.

    ``run(ctx) -> (rows, extras)``; ``about``: one line for ``list``; ``benchmark``: the offline
    benchmark it loads, whose settings ``--set`` changes (``None`` for a runner that builds its own
    data and checks its settings with ``check``); ``data``: the ``--data`` choices it accepts;
    ``needs_pairs``: it needs instance pairs (no full-data version has them).
    """

    run: Callable[[Context], tuple[pd.DataFrame, dict]]
    about: str
    benchmark: str | None = "numbers"
    data: tuple[str, ...] = ("offline", "full")
    needs_pairs: bool = False
    check: Callable[[Context], None] | None = None

    def check_call(self, name: str, ctx: Context) -> None:
        """``ValueError`` for a ``--data`` this runner lacks or any ``--set`` key or value it cannot use."""
        if ctx.data not in self.data:
            hint = "add --data full" if self.data == ("full",) else f"use --data {' or '.join(self.data)}"
            raise ValueError(f"{name} does not run on --data {ctx.data}: {hint}")
        if self.check is not None:
            self.check(ctx)
        elif self.benchmark is not None:
            ctx.benchmark_config(self.benchmark, self.needs_pairs)
        elif ctx.data_settings:
            raise ValueError(f"{name} has no settings; unknown setting(s) {sorted(ctx.data_settings)}")


EXPERIMENTS: dict[str, Experiment] = {
    "image-audio": Experiment(image_audio, "Table 2: image -> audio on numbers, every approach, 1/5/10-shot"),
    "text-speech": Experiment(text_speech, "Table 4 + Table 5: text -> speech language ID on languages",
                              benchmark="languages"),
    "text-speech-splits": Experiment(text_speech_splits, "MAGMA vs Align + Meta Classify on the meta-test "
                                     "languages of several splits (data seeds)", benchmark="languages",
                                     data=("offline",)),
    "retrieval": Experiment(retrieval, "Table 3: speech -> image retrieval (R@k, median rank, cosine loss) + gallery",
                            needs_pairs=True),
    "noisy-labels": Experiment(noisy_labels, "Figure 3: MAGMA vs Oracle under symmetric target-label noise"),
    "tradeoff": Experiment(tradeoff, "Poster: alignment vs supervision (pairs, pairing noise, weak vs labels)",
                           benchmark=None, data=("offline",), check=tradeoff_settings),
    "strong-weak": Experiment(strong_weak, "Instance pairs vs concept groups vs decade clusters for MAGMA on numbers",
                              needs_pairs=True),
    "ablation": Experiment(ablation, "What makes meta-alignment work: Reptile update rules on validation numbers",
                           benchmark="numbers", data=("offline",), needs_pairs=True, check=ablation_settings),
    "pairing-languages": Experiment(languages_pairing, "Instance pairs vs language groups on validation languages",
                                    benchmark="languages", data=("offline",), needs_pairs=True),
    "width-languages": Experiment(languages_width, "MAGMA's rule vs plain alignment at 5 or all languages a "
                                  "step, on validation languages", benchmark="languages", data=("offline",)),
    "tuning-check": Experiment(tuning_check, "Do the tuned settings hold beyond the tuning seeds? Numbers' "
                               "approaches on validation numbers", data=("offline",), check=tuning_check_settings),
    "tuning-check-languages": Experiment(tuning_check_languages, "The same check of the tuned settings on "
                                         "validation languages", benchmark="languages", data=("offline",),
                                         check=tuning_check_settings),
    "text-image": Experiment(text_image, "Poster: text -> image on Yummly-28K recipes (needs --data full)",
                             benchmark="recipes", data=("full",)),
}

# Experiments that exist only on downloaded data (they refuse data="offline").
FULL_DATA_ONLY = tuple(name for name, e in EXPERIMENTS.items() if getattr(e, "data", None) == ("full",))


def experiment_spec(name: str) -> Experiment:
    """The :class:`Experiment` called ``name`` (a plain ``(run, about)`` tuple is read as one on ``numbers``)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got {name!r}")
    spec = EXPERIMENTS[name]
    return spec if isinstance(spec, Experiment) else Experiment(*spec)


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as an int in [0, :data:`SEED_MAX`], else a ``ValueError`` naming ``name``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{name} must be an integer in [0, {SEED_MAX}], got {seed!r}")
    return seed


def cache_location(cache_dir) -> tuple[str, Path]:
    """``(how the user named it, the folder)`` of the cache a run writes to."""
    from magma_teach.data.cache import ENV_VAR, cache_root

    if cache_dir is not None:
        return "cache_dir", cache_root(cache_dir)
    if os.environ.get(ENV_VAR):
        return f"${ENV_VAR}", cache_root(None)
    return "the default cache folder", cache_root(None)


def prepare(experiment: str, preset: str = "quick", data: str = "offline", device: str = "auto", seed: int = 0,
            out: str | Path | None = None, cache_dir: str | None = None, progress: bool | None = None,
            data_settings: dict | None = None, force: bool = False,
            threads: int | str | None = None) -> tuple[Experiment, Context, int]:
    """Every check :func:`run` makes before work; returns ``(experiment, context, torch threads)``."""
    spec = experiment_spec(experiment)
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if data not in ("offline", "full"):
        raise ValueError(f"data must be 'offline' or 'full', got {data!r}")
    check_seed(seed)
    if progress not in (None, True, False):
        raise ValueError(f"progress must be True, False or None (automatic), got {progress!r}")
    progress_env()  # a bad $MAGMA_TEACH_PROGRESS fails now, not at the first progress line
    settings = dict(data_settings or {})
    if not all(isinstance(k, str) and k for k in settings):
        raise ValueError(f"data_settings must map setting names to values, got {data_settings!r}")
    n_threads = thread_policy(threads)
    ctx = Context(PRESETS[preset], pick_device(device), seed, data, cache_dir, progress, settings)
    if out is not None:
        check_writable_dir("out", out)
        check_free(out, result_stem(experiment, preset, data, seed, settings), force)
    if spec.benchmark is not None:  # only runners that load a benchmark touch the cache
        check_writable_dir(*cache_location(cache_dir))
    spec.check_call(experiment, ctx)
    return spec, ctx, n_threads


def run(experiment: str, preset: str = "quick", data: str = "offline", device: str = "auto", seed: int = 0,
        out: str | Path | None = None, cache_dir: str | None = None, progress: bool | None = None,
        data_settings: dict | None = None, force: bool = False, threads: int | str | None = None,
        stored: bool = False) -> ExperimentResult:
    """Run one experiment; write ``<stem>.json`` and ``.csv`` under ``out`` when given (see :func:`result_stem`).

    ``data_settings`` change the benchmark's config, e.g. ``{"archive_sha256": "sha256:…"}`` for the
    recipes or ``{"per_language": 40}`` (keys as in the ``DEFAULTS`` of the benchmark's module; for
    ``tradeoff`` the keywords of ``concept_world``). ``force``: replace an existing result of the same
    name (else a ``ValueError`` before any work). ``threads``: torch threads, a count or a policy of
    :func:`~magma_teach.utils.thread_policy` (default: ``$MAGMA_TEACH_THREADS``, else the package's
    default policy). ``progress``: ``None`` = automatic (:func:`~magma_teach.utils.show_phases`).
    ``stored``: return the result kept in the package for this very run, if the code and libraries
    installed here are the ones that measured it (:mod:`~magma_teach.experiments.stored`; the book's
    chapters use it), instead of training; when there is none, train as usual.

    Every argument is checked before any work (:func:`prepare`): a bad one is a one-line ``ValueError``.
    """
    spec, ctx, n_threads = prepare(experiment, preset, data, device, seed, out, cache_dir, progress,
                                   data_settings, force, threads)
    if stored not in (True, False):
        raise ValueError(f"stored must be True or False, got {stored!r}")
    kept = stored and find(experiment, preset, data, seed, ctx.data_settings, ctx.device.type)
    if kept:
        if out is not None:
            kept.write(out, force=force)
        return kept
    with use_threads(n_threads), phase(f"[{experiment}]", progress):
        seed_everything(seed)
        start = time.perf_counter()
        rows, extras = spec.run(ctx)
        seconds = time.perf_counter() - start
    device_name = _device_name(ctx.device)
    result = ExperimentResult(experiment, preset, data, device_name, seconds, rows,
                              {k: v for k, v in extras.items() if v is not None}, seed=seed, seeds=ctx.seeds,
                              settings=asdict(ctx.preset), data_settings=ctx.data_settings,
                              datasets=ctx.datasets, provenance=provenance(device_name, n_threads),
                              finished=now_utc())
    if out is not None:
        result.write(out, force=force)
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"
