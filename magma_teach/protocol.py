"""The paper's few-shot evaluation protocol, identical for every method.

A fixed list of evaluation tasks (by default 8 tasks × 5 unseen target concepts, stored with the
dataset) is evaluated at each k in ``shots``. One *repeat* draws, for every task, k labeled support
samples and ``n_query`` query samples per concept from a generator seeded by (seed, k, repeat) — so
every method sees exactly the same samples — fine-tunes, and records the accuracy of each task.
The score of a repeat is the mean over the tasks; the table reports mean ± std over repeats.

A *predictor* is any ``predict(tasks) -> (T, Q)`` label function over stacked tasks, such as
:func:`magma_teach.magma.finetune_predictor`.

The fixed tasks are checked before anything is drawn (:func:`~magma_teach.data.base.check_tasks`):
each lists N distinct concepts, the same N for every task. A task that named one concept twice
would give it two labels and put its query examples into the support set as well.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from magma_teach.data.base import Modality, check_tasks
from magma_teach.data.episodes import ClassificationTask, sample_classification_task, stack_tasks
from magma_teach.evaluate import symmetric_noise, top_share
from magma_teach.utils import check_positive, check_range

Predictor = Callable[[ClassificationTask], torch.Tensor]


def evaluation_tasks(modality: Modality, tasks: Sequence[Sequence[int]], k_shot: int, n_query: int,
                     generator: torch.Generator, label_noise: float = 0.0, noise_seed: int = 0) -> ClassificationTask:
    """Draw support/query samples for every fixed task and stack them (T, ...).

    With ``label_noise`` > 0, the support labels are corrupted with symmetric noise (the query labels
    stay true: they measure accuracy). ``tasks`` must be a non-empty list of N-way concept lists
    with N distinct concepts each and one N for all (``ValueError`` otherwise).
    """
    tasks = _checked_tasks(tasks)
    drawn = [sample_classification_task(modality, concepts, len(concepts), k_shot, n_query, generator,
                                        fixed_concepts=True) for concepts in tasks]
    stacked = stack_tasks(drawn)
    if label_noise > 0:
        n_way = len(tasks[0])
        noisy = [symmetric_noise(y, n_way, label_noise, seed=noise_seed * 1000 + i)
                 for i, y in enumerate(stacked.support_y)]
        stacked = stacked._replace(support_y=torch.stack(noisy))
    return stacked


def _checked_tasks(tasks) -> list[list[int]]:
    tasks = check_tasks(tasks)
    if not tasks:
        raise ValueError("tasks must contain at least one evaluation task")
    return tasks


def _checked_shots(shots) -> list[int]:
    if isinstance(shots, (str, bytes)) or not isinstance(shots, Sequence) or not shots:
        raise ValueError(f"shots must be a non-empty list of positive integers such as (1, 5, 10), got {shots!r}")
    for k in shots:
        check_positive("shots", k, integer=True)
    return [int(k) for k in shots]


def default_query_size(modality: Modality, tasks: Sequence[Sequence[int]], shots: Sequence[int], cap: int = 15) -> int:
    """The largest query size that leaves room for the largest k in every concept (at most ``cap``)."""
    tasks, shots = _checked_tasks(tasks), _checked_shots(shots)
    fewest = min(int((modality.labels == c).sum()) for task in tasks for c in task)
    n_query = min(cap, fewest - max(shots))
    if n_query < 1:
        raise ValueError(f"shots must leave at least one query sample per concept: the smallest concept has "
                         f"{fewest} samples, so max(shots) must be at most {fewest - 1}, got {max(shots)}")
    return n_query


def run_protocol(predict: Predictor, modality: Modality, tasks: Sequence[Sequence[int]],
                 shots: Sequence[int] = (1, 5, 10), repeats: int = 10, n_query: int | None = None,
                 seed: int = 0, label_noise: float = 0.0) -> pd.DataFrame:
    """Evaluate ``predict`` on the fixed ``tasks``; one row per (shots, repeat, task) with ``accuracy`` in %.

    Everything is checked before the first draw (``ValueError`` naming the argument): ``tasks`` (see
    the module docstring), ``shots`` (a non-empty list of positive integers), ``n_query`` (``None`` =
    :func:`default_query_size`, or a positive integer), ``repeats`` and ``label_noise`` in [0, 1].
    """
    check_positive("repeats", repeats, integer=True)
    check_range("label_noise", label_noise, 0.0, 1.0)
    tasks, shots = _checked_tasks(tasks), _checked_shots(shots)
    if n_query is None:
        n_query = default_query_size(modality, tasks, shots)
    else:
        check_positive("n_query", n_query, integer=True)
    rows = []
    for k in shots:
        for r in range(repeats):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + k * 1_009 + r)
            batch = evaluation_tasks(modality, tasks, k, n_query, generator, label_noise, noise_seed=seed + r)
            correct = task_accuracy(predict(batch), batch.query_y)
            rows += [{"shots": k, "repeat": r, "task": t, "accuracy": float(a)} for t, a in enumerate(correct)]
    return pd.DataFrame(rows)


def task_accuracy(output: torch.Tensor, query_y: torch.Tensor) -> torch.Tensor:
    """(T,) accuracy (%) of each task from a predictor's (T, Q) labels, or from its (T, Q, N) scores, where a
    query whose top score is shared by several labels counts the share of them that is right (ties are
    never a lucky hit: :func:`magma_teach.evaluate.top_share`)."""
    if output.dim() == query_y.dim() + 1:
        hit = torch.nn.functional.one_hot(query_y, output.shape[-1]).bool()
        shares = top_share(output.detach().cpu().numpy(), hit.cpu().numpy())
        return torch.as_tensor(shares, dtype=torch.float64).mean(-1) * 100
    return (output == query_y).double().mean(-1).cpu() * 100


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean over tasks within a draw, then mean ± std over draws: one row per ``shots``.

    A draw is one repeat of the protocol; when ``results`` also has a ``seed`` column (one training
    seed per trained model), a draw is one (seed, repeat), so the std spans training seeds × evaluation
    draws. The columns ``seeds`` and ``repeats`` say how many of each the spread covers.
    """
    draw = ["seed", "repeat"] if "seed" in results else ["repeat"]
    per_draw = results.groupby(["shots", *draw])["accuracy"].mean().reset_index()
    table = per_draw.groupby("shots")["accuracy"].agg(mean="mean", std=lambda a: float(np.std(a))).reset_index()
    return table.assign(seeds=int(results["seed"].nunique()) if "seed" in results else 1,
                        repeats=int(results["repeat"].nunique()))
