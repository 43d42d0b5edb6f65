"""The shared pieces of every runner: the :class:`Context` of a run, training by name, few-shot scoring."""

from __future__ import annotations

import multiprocessing
from contextlib import nullcontext
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import pandas as pd
import torch

from magma_teach.baselines import TrainedApproach
from magma_teach.data.base import CrossModalDataset
from magma_teach.experiments import trained_cache
from magma_teach.experiments.presets import FULL_DATA, Preset, magma_config
from magma_teach.interrupt import end_with_parent
from magma_teach.magma import MagmaConfig, finetune_predictor
from magma_teach.protocol import run_protocol, summarize
from magma_teach.utils import phase, phase_whole_lines, show_progress, use_threads, worker_count


@dataclass
class Context:
    """Everything a runner needs: preset, device, seed, data choice, cache and progress settings.

    ``datasets`` fills up as the runner loads benchmarks: name → ``{"config": the full generation
    config, "n_way": …, "eval_tasks": …}``; the results JSON records it, and the printed caption reads
    the task size and count from it.
    """

    preset: Preset
    device: torch.device
    seed: int
    data: str = "offline"
    cache_dir: str | None = None
    progress: bool | None = None
    data_settings: dict = field(default_factory=dict)  # changes to the benchmark's config (``--set``)
    datasets: dict = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        """The training seeds: ``seed, seed + 1, …`` (``preset.train_seeds`` of them; 1 if the preset has none)."""
        return list(range(self.seed, self.seed + int(getattr(self.preset, "train_seeds", 1))))

    def benchmark_name(self, name: str, needs_pairs: bool = False) -> str:
        """The benchmark actually loaded for the offline ``name``: itself, or with ``data="full"`` its real
        counterpart (:data:`FULL_DATA`). ``ValueError`` when that is impossible (checked before any work)."""
        from magma_teach.data.registry import FULL_BENCHMARKS

        if self.data == "full" and needs_pairs:
            raise ValueError("this experiment needs instance pairs, which the full image→audio data "
                             "(CIFAR/ESC-50, weak pairs only) does not have; use --data offline")
        if self.data == "full" and name not in FULL_BENCHMARKS:
            if name not in FULL_DATA:
                raise ValueError(f"this experiment runs on {name!r} only; it has no full-data version "
                                 f"(use --data offline)")
            return FULL_DATA[name]
        return name

    def benchmark_config(self, name: str, needs_pairs: bool = False) -> tuple[str, dict]:
        """``(benchmark name, its full generation config)`` for the offline ``name``, with the preset's
        data overrides and ``data_settings`` applied and validated. Nothing is generated or downloaded,
        so a runner (or :func:`~magma_teach.experiments.run`, before any work) can call it to refuse a
        bad ``--set`` key or value in one line (``ValueError`` naming the setting)."""
        name = self.benchmark_name(name, needs_pairs)
        overrides = {**(self.preset.data_overrides.get(name, {}) if self.data == "offline" else {}),
                     **self.data_settings}
        return name, self.generation_config(name, self._data_preset, self.seed, overrides)

    @staticmethod
    def generation_config(name: str, preset: str, seed: int, settings: dict) -> dict:
        """The validated generation config of benchmark ``name`` with ``settings`` (``--set``); nothing is built.

        A key that is not a setting of the benchmark (``seed``, ``preset`` and ``cache_dir`` included:
        they have options of their own; ``version`` too: it names the generator's code, and changing it
        would change only the cache file's name) is refused in the registry's words, and a value of the
        wrong kind is a ``ValueError`` too, never a ``TypeError``.
        """
        from magma_teach.data.registry import _module

        module = _module(name)
        allowed = sorted(set(module.DEFAULTS) - {"version"})  # version marks the generator's code, not a choice
        unknown = sorted(set(settings) - set(allowed))
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; choose from {allowed}")
        try:
            return module.make_config(preset=preset, seed=seed, **settings)
        except TypeError as err:  # a value of the wrong kind that a check compared before looking at its type
            raise ValueError(f"a setting of {name} has a value of the wrong kind ({err}); settings given: {settings}") from None

    @property
    def _data_preset(self) -> str:
        return "full" if self.preset.data == "full" else "quick"

    def benchmark(self, name: str, needs_pairs: bool = False) -> CrossModalDataset:
        """The dataset a runner asks for by its offline ``name``; with ``data="full"`` its real counterpart
        (:data:`FULL_DATA`), downloaded on first use. ``needs_pairs``: the runner needs instance pairs."""
        from magma_teach.data.registry import load

        name, config = self.benchmark_config(name, needs_pairs)  # checked before any download
        overrides = {**(self.preset.data_overrides.get(name, {}) if self.data == "offline" else {}),
                     **self.data_settings}
        with phase(f"{name} data: load or generate", self.progress):
            data = load(name, preset=self._data_preset, seed=self.seed, cache_dir=self.cache_dir,
                        progress=show_progress(self.progress), **overrides)
        self.datasets[name] = {"config": config, "n_way": len(data.eval_tasks[0]), "eval_tasks": len(data.eval_tasks)}
        return data.to(self.device)


def few_shot_rows(trained, data: CrossModalDataset, cfg: MagmaConfig, ctx: Context,
                  label_noise: float = 0.0) -> pd.DataFrame:
    """Evaluate one approach with the shared protocol → rows (approach, shots, mean, std, seeds, repeats, counts).

    ``trained`` is one :class:`TrainedApproach` or a list of them, one per training seed: every model
    meets the same evaluation draws, and mean ± std run over seeds × draws.
    """
    models = trained if isinstance(trained, list) else [trained]
    scores = [protocol_scores(t, data, cfg, shots=ctx.preset.shots, repeats=ctx.preset.repeats, seed=ctx.seed,
                              label_noises=(label_noise,))[1][label_noise] for t in models]
    return rows_of(models[0], scores)


def protocol_scores(trained: TrainedApproach, data: CrossModalDataset, cfg: MagmaConfig, *, shots, repeats: int,
                    seed: int, label_noises=(0.0,)) -> tuple[TrainedApproach, dict[float, pd.DataFrame]]:
    """The protocol's raw scores of one trained model at each support-label noise rate: ``(trained,
    {rate: rows})``. A ``score`` for :func:`train_all` (with :func:`functools.partial`), so that a
    training process also evaluates what it trained."""
    predict = finetune_predictor(trained.model, cfg.finetune, scores=True)
    return trained, {rate: run_protocol(predict, data.target, data.eval_tasks, shots=shots, repeats=repeats,
                                        seed=seed, label_noise=rate) for rate in label_noises}


def rows_of(trained: TrainedApproach, scores: list[pd.DataFrame]) -> pd.DataFrame:
    """One approach's table rows from its per-seed protocol scores (mean ± std over seeds × draws)."""
    table = summarize(pd.concat([s.assign(seed=i) for i, s in enumerate(scores)]))
    return table.assign(approach=trained.name, group=trained.group, target_samples=trained.target_samples,
                        target_labels=trained.target_labels)[
        ["approach", "group", "shots", "mean", "std", "seeds", "repeats", "target_samples", "target_labels"]]


def train_and_score(jobs: dict[str, tuple[str, MagmaConfig]], data: CrossModalDataset, ctx: Context,
                    label_noises=(0.0,)) -> tuple[dict[str, list[TrainedApproach]], dict[float, pd.DataFrame]]:
    """Train every job with every seed and score it with the protocol in the same process (in parallel on a
    CPU): ``(label → models per seed, rate → table rows of all jobs)``."""
    score = partial(protocol_scores, shots=ctx.preset.shots, repeats=ctx.preset.repeats, seed=ctx.seed,
                    label_noises=tuple(label_noises))
    done = train_all(jobs, data, ctx, score=score)
    trained = {label: [t for t, _ in results] for label, results in done.items()}
    rows = {rate: pd.concat([rows_of(trained[label][0], [scores[rate] for _, scores in results]).assign(approach=label)
                             for label, results in done.items()], ignore_index=True)
            for rate in label_noises}
    return trained, rows


def _train(name: str, data: CrossModalDataset, cfg: MagmaConfig, ctx: Context) -> TrainedApproach:
    """``name`` trained once, with the run's own seed (runners that do not average over seeds)."""
    return train_all({name: (name, cfg)}, data, ctx, seeds=[ctx.seed])[name][0]


def train_seeds(name: str, data: CrossModalDataset, cfg: MagmaConfig, ctx: Context) -> list[TrainedApproach]:
    """``name`` trained once per training seed of the run (:attr:`Context.seeds`)."""
    return train_all({name: (name, cfg)}, data, ctx)[name]


def train_all(jobs: dict[str, tuple[str, MagmaConfig]], data: CrossModalDataset, ctx: Context,
              score: Callable | None = None, seeds: list[int] | None = None) -> dict[str, list]:
    """Every job (label → (approach, config)) trained once per training seed (``seeds``, default
    :attr:`Context.seeds`); label → one result per seed.

    A result is the :class:`TrainedApproach`, or ``score(trained, data, cfg)`` when ``score`` (a
    module-level function, so that it can travel to another process) is given. On a CPU every job
    trains with one torch thread, in parallel processes as many as the cores
    (:func:`~magma_teach.utils.worker_count`); every job is seeded on its own, so the results are the
    same whatever the number of processes. On a GPU they run one after another in this process. A job
    whose model was trained before with the same code, data, settings and seed is loaded from disk
    (:mod:`~magma_teach.experiments.trained_cache`).
    """
    runs = [(label, approach, cfg, seed, score) for label, (approach, cfg) in jobs.items()
            for seed in (ctx.seeds if seeds is None else seeds)]
    workers = worker_count(len(runs), ctx.device, threads=1)
    if workers == 1:
        _WORKER.update(data=data, progress=ctx.progress, cache_dir=ctx.cache_dir)
        with use_threads(1) if ctx.device.type == "cpu" else nullcontext():  # as in a worker: same numbers
            done = [_worker_run(run) for run in runs]
        _WORKER.clear()
    else:
        context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools mid-use
        order = longest_first(runs)
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start,
                                 initargs=(data, ctx.progress, ctx.cache_dir)) as pool:
            finished = dict(zip(order, pool.map(_worker_run, [runs[i] for i in order])))
        done = [finished[i] for i in range(len(runs))]
    out: dict[str, list] = {label: [] for label in jobs}
    for run, result in zip(runs, done):
        out[run[0]].append(result)
    return out


def longest_first(runs: list[tuple]) -> list[int]:
    """Indices of ``runs`` (``(label, approach, cfg, seed, score)``) with the most meta-training iterations
    first, ties in their given order.

    Iterations stand in for time: each costs its steps' kernels and a fixed share of Python, so a run of
    400 one-task iterations outlasts one of 50 eight-task iterations. Starting the long runs first keeps
    a core from waiting alone on one at the end (longest-processing-time-first scheduling). Every run is
    seeded on its own, so the order changes no result.
    """
    return sorted(range(len(runs)), key=lambda i: -runs[i][2].iterations)


_WORKER: dict = {}  # what a training process keeps between jobs: the data, progress and cache settings


def _worker_start(data: CrossModalDataset, progress: bool | None, cache_dir) -> None:
    end_with_parent()  # a killed run leaves no worker behind
    torch.set_num_threads(1)
    phase_whole_lines()  # workers share stderr: one whole line per finished job
    _WORKER.update(data=data, progress=progress, cache_dir=cache_dir)


def _worker_run(run):
    label, approach, cfg, seed, score = run
    with phase(f"{label} (seed {seed}): training", _WORKER["progress"]):
        trained = trained_cache.train(approach, _WORKER["data"], cfg, seed, progress=False,
                                      cache_dir=_WORKER["cache_dir"])
    return trained if score is None else score(trained, _WORKER["data"], cfg)


FIRST_APPROACH = {"numbers": "Random init", "languages": "Supervised learning"}  # the table's first row, by benchmark
APPROACHES_AFTER_FIRST = ("Unsup. meta-learning (reconstruct)", "Align + Classify", "Align + Meta Classify", "MAGMA",
                          "Oracle")


def _comparison(benchmark: str, first: str, ctx: Context):
    """Every approach of a few-shot table on ``benchmark``, each with its own (tuned) config and every seed."""
    data = ctx.benchmark(benchmark)
    approaches = [first, *APPROACHES_AFTER_FIRST]
    cfgs = {a: magma_config(ctx.preset, data, approach=a) for a in approaches}
    trained, rows = train_and_score({a: (a, cfgs[a]) for a in approaches}, data, ctx)
    return data, cfgs, trained, rows[0.0]
