"""The quick ablation's time floor: what its arithmetic alone costs on this machine.

    python benchmarks/ablation_floor.py                     # quick preset, eager steps, fastest of 10
    python benchmarks/ablation_floor.py --compiled          # also the compiled inner step (InnerLoop(fast=True))
    python benchmarks/ablation_floor.py --preset tiny --repeats 1   # a smoke test of the script

Issue 10 asks for ``python -m magma_teach run ablation --preset quick`` in at most 10 minutes on 2 cores.
This script asks whether any execution of the same runs could fit. On the ``numbers`` data of the
quick preset (random split, seed 0; data generation is not timed), with one torch thread as in a
training process, it times:

* **one inner alignment step per task**: :func:`~magma_teach.reptile.batched_adapt` over real alignment
  tasks of each pairing (instance pairs, concept groups), ``steps`` Adam steps on T stacked tasks,
  divided by steps × T. T = 1 is how the one-task rules run; T = 3 is what training a rule's three
  seeds as one batched model would do (three seeds, one task each, stacked along the task axis: the
  same arithmetic as a meta-batch of three); T = 8 is the quick preset's meta-batch (other presets:
  1, their number of seeds and their meta-batch);
* **the scoring of a run** (:func:`~magma_teach.experiments.ablation.validation_scores`) and **one
  in-training validation** (:func:`~magma_teach.magma.validation_accuracy`), which every run needs.

It then prices every run of the quick ablation (its variants and references × training seeds × both
splits, each at its budget of inner alignment steps; and again without the plain-alignment references,
the issue's bare minimum) with nothing but those costs, and divides by the cores: a lower bound, as it
leaves out the meta-classifier's steps, task sampling, the outer update, process start-up and data
generation. Three bounds are given: each run batched as it is today, with a
one-task rule's (T = 1 or carried inner state) three seeds stacked, and every run at the cheapest
width measured for its pairing.

Prints a table of per-step costs and the bounds (in seconds of wall time), with eager steps and, under
``--compiled``, with whichever of eager and compiled is faster; ``--json PATH`` writes them too.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

import torch

from magma_teach.experiments import ablation
from magma_teach.experiments.context import Context
from magma_teach.experiments.presets import PRESETS, magma_config
from magma_teach.experiments.rules import CONCEPT, INSTANCE
from magma_teach.magma import (CrossModalModel, alignment_batches, alignment_loss, alignment_view, sample_meta_batch,
                               validation_accuracy)
from magma_teach.reptile import batched_adapt

PAIRINGS = {"instance pairs": INSTANCE, "concept groups": CONCEPT}
BATCHINGS = ("today", "seeds stacked", "cheapest")  # a run's task-axis width (ablation_runs); "cheapest": any
LIMIT_S = 600  # issue 10's limit for the quick ablation


def fastest_seconds(call, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls, after one untimed call. The fastest, not the median: other
    jobs on a shared machine only ever add time, and this script looks for a lower bound."""
    call()  # warm-up: first-call allocations (and, for the compiled step, the compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def step_costs(data, base, model, task_counts, repeats: int, methods: tuple[str, ...]) -> dict:
    """Seconds per inner alignment step per task: ``{(pairing, T, method): s}`` for each T of ``task_counts``."""
    params = {k: v.detach() for k, v in model.parts("source", "target").items()}
    concepts = data.splits["meta_train"]
    costs = {}
    for pairing, changes in PAIRINGS.items():
        cfg = replace(base, **{**changes, "align_way": min(changes["align_way"], len(concepts))})
        loss, view = alignment_loss(model, cfg.temperature, cfg.weak), alignment_view(data, cfg)
        generator = torch.Generator().manual_seed(0)
        for n_tasks in task_counts:
            tasks = sample_meta_batch(lambda: alignment_batches(view, concepts, cfg, generator),
                                      replace(cfg, meta_batch=n_tasks), cfg.align_inner)
            for method in methods:
                inner = replace(cfg.align_inner, fast=method == "compiled")
                seconds = fastest_seconds(lambda: batched_adapt(loss, params, tasks, inner), repeats)
                costs[pairing, n_tasks, method] = seconds / (inner.steps * n_tasks)
    return costs


def ablation_runs(ctx: Context, data, references: bool = True) -> list[dict]:
    """Every training run of the ablation of ``ctx.preset`` on one split: its rule, pairing, budget of inner
    alignment steps, validations, and task-axis width as it runs today (1 for a rule that adapts one task at
    a time) and with its seeds stacked (such a rule's seeds as one batch; other rules keep their meta-batch)."""
    base = magma_config(ctx.preset, data)
    configs = {**ablation.variants(base, ctx.preset.ablation_confirming),
               **(ablation.references(base) if references else {})}
    runs = []
    for name, cfg in configs.items():
        cfg = ablation.equal_budget(cfg, ctx.preset.ablation_steps, ctx.preset.ablation_validations)
        one_at_a_time = cfg.meta_batch == 1 or cfg.align_inner.carry_state
        runs += [{"variant": name, "pairing": "concept groups" if cfg.weak else "instance pairs",
                  "steps": cfg.iterations * cfg.meta_batch * cfg.align_inner.steps,
                  "validations": cfg.iterations // cfg.validate_every + (cfg.iterations % cfg.validate_every != 0),
                  "today": 1 if one_at_a_time else cfg.meta_batch,
                  "seeds stacked": len(ctx.seeds) if one_at_a_time else cfg.meta_batch}
                 for _ in ctx.seeds]
    return runs


def bounds(runs: list[dict], costs: dict, score_s: float, validation_s: float, splits: int, cores: int) -> dict:
    """Lower bounds (s of wall time on ``cores``) for all runs on ``splits`` splits: the scoring and
    validations, and the alignment steps plus those at each batching (as today, seeds stacked, and every run
    at its pairing's cheapest measured width)."""
    def step(pairing, n_tasks=None):
        return min(s for (p, t, _), s in costs.items() if p == pairing and (n_tasks is None or t == n_tasks))

    share = splits / cores
    fixed = sum(score_s + r["validations"] * validation_s for r in runs) * share
    steps = {batching: sum(r["steps"] * step(r["pairing"], r.get(batching)) for r in runs) * share
             for batching in BATCHINGS}
    return {"scoring and validations": fixed, **{f"floor, {b}": fixed + s for b, s in steps.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of each; the fastest counts")
    parser.add_argument("--compiled", action="store_true", help="also time the compiled inner step")
    parser.add_argument("--cores", type=int, default=2, help="cores the ablation's runs are shared among")
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.cores < 1:
        parser.error("--repeats and --cores must be at least 1")
    torch.set_num_threads(1)  # as in a training process of train_all
    ctx = Context(PRESETS[args.preset], torch.device("cpu"), seed=0, progress=False, data_settings={"split": "random"})
    data = ctx.benchmark("numbers", needs_pairs=True)
    base = magma_config(ctx.preset, data)
    model = CrossModalModel.for_dataset(data, dim=64, n_way=base.n_way)
    methods = ("eager", "compiled") if args.compiled else ("eager",)
    task_counts = sorted({1, len(ctx.seeds), base.meta_batch})  # one task; the seeds batched; the meta-batch
    costs = step_costs(data, base, model, task_counts, args.repeats, methods)
    score_s = fastest_seconds(lambda: ablation.validation_scores(model, data, base), args.repeats)
    validation_s = fastest_seconds(lambda: validation_accuracy(model, data, base), args.repeats)
    sets = {"all runs": ablation_runs(ctx, data), "without the references": ablation_runs(ctx, data, references=False)}
    steps = {"eager steps": ("eager",), **({"eager or compiled steps": methods} if args.compiled else {})}
    results = {f"{label}, {name} ({len(runs) * 2})": bounds(runs, {k: v for k, v in costs.items() if k[2] in allowed},
                                                           score_s, validation_s, splits=2, cores=args.cores)
               for label, allowed in steps.items() for name, runs in sets.items()}

    print(f"{'pairing':<16} {'T':>3} {'method':<9} {'ms per task-step':>17}")
    for (pairing, n_tasks, method), seconds in costs.items():
        print(f"{pairing:<16} {n_tasks:>3} {method:<9} {1e3 * seconds:>17.2f}")
    print(f"scoring of a run: {score_s:.2f} s; one in-training validation: {validation_s:.2f} s; on {args.cores} cores:")
    for label, result in results.items():
        print(f"{label}: " + "; ".join(f"{name} {value:.0f}" for name, value in result.items()))
    print(f"limit: {LIMIT_S} s; load average {os.getloadavg()[0]:.2f}")
    if args.json:
        record = {"preset": args.preset, "torch": torch.__version__, "repeats": args.repeats, "cores": args.cores,
                  "load_average": os.getloadavg()[0], "score_s": score_s,
                  "validation_s": validation_s,
                  "ms_per_task_step": [{"pairing": p, "T": t, "method": m, "ms": 1e3 * s} for (p, t, m), s in costs.items()],
                  "bounds_s": results}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
