"""Episode samplers: the small tasks that meta-learning trains and tests on.

Two kinds of task, both deterministic under a ``torch.Generator``:

* a **classification task** (N-way, k-shot): N concepts, relabelled 0..N-1 in random order, with k
  support and q query examples each, from one modality;
* an **alignment task**: source/target pairs from N concepts. With strong pairing the rows are
  instance pairs (row i of the source shows what row i of the target shows, eq. 3); with weak
  pairing source and target rows are drawn independently and share only a group id (eq. 4).

Every task of a given configuration has the same tensor shapes, so T of them stack into one batch
for task-batched Reptile (:func:`stack_tasks`).

Invariants (tested): the N labels of a task name N distinct concepts (strong alignment: N distinct
concepts; weak: N distinct clusters), and no example is both a support and a query example of one
task. A concept list with a repeated id is refused, whether the task uses it as given
(``fixed_concepts=True``) or draws from it.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from magma_teach.data.base import Batch, CrossModalDataset, Modality, check_concepts
from magma_teach.utils import check_positive


class ClassificationTask(NamedTuple):
    """An N-way task: ``support``/``query`` batches, labels in 0..N-1, and the concepts they stand for."""

    support: Batch
    support_y: torch.Tensor  # (N*k,)
    query: Batch
    query_y: torch.Tensor  # (N*q,)
    concepts: torch.Tensor  # (N,) concept id of label 0, 1, ...


class AlignmentTask(NamedTuple):
    """Paired source/target rows; ``groups_*`` say which rows are positives of each other."""

    source: Batch  # (B, ...) source inputs
    target: Batch  # (B, ...) target inputs
    groups_s: torch.Tensor  # (B,) group of each source row
    groups_t: torch.Tensor  # (B,) group of each target row


def _choose(pool: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    # The generator lives on the CPU (same draws on every device); the pool may live on a GPU.
    return pool[torch.randperm(len(pool), generator=generator)[:n].to(pool.device)]


def _check_task(n_way: int, n_available: int, what: str) -> None:
    check_positive("n_way", n_way, integer=True)
    if n_way > n_available:
        raise ValueError(f"n_way must be in [1, {n_available}] ({what} available), got {n_way}")


def sample_classification_task(modality: Modality, concepts: Sequence[int], n_way: int, k_shot: int,
                               n_query: int, generator: torch.Generator,
                               fixed_concepts: bool = False) -> ClassificationTask:
    """Sample an N-way k-shot task from ``modality`` over ``concepts``.

    With ``fixed_concepts=True`` the task uses exactly ``concepts`` (``n_way == len(concepts)``), in
    that order, as the fixed evaluation tasks do; otherwise N of them are drawn at random and shuffled.
    Support and query examples of a concept never overlap.

    Raises ``ValueError`` when ``concepts`` repeats an id (:func:`~magma_teach.data.base.check_concepts`),
    when ``n_way != len(concepts)`` with ``fixed_concepts``, when a fixed concept has no example in
    ``modality``, and when a concept has fewer than ``k_shot + n_query`` examples.
    """
    concepts = torch.as_tensor(check_concepts(concepts), dtype=torch.long)
    device = modality.labels.device
    if fixed_concepts and n_way != len(concepts):
        raise ValueError(f"n_way must equal len(concepts) = {len(concepts)} with fixed_concepts=True, got {n_way!r}")
    if not fixed_concepts:  # a split may hold concepts seen in one modality only (CIFAR vs ESC-50 classes)
        concepts = concepts[torch.isin(concepts.to(device), modality.labels).cpu()]
    _check_task(n_way, len(concepts), f"concepts with {modality.kind} examples")
    check_positive("k_shot", k_shot, integer=True)
    check_positive("n_query", n_query, integer=True)
    chosen = concepts if fixed_concepts else _choose(concepts, n_way, generator)
    support, query = [], []
    for c in chosen.tolist():
        pool = modality.indices_of(c)
        if len(pool) == 0:
            raise ValueError(f"concepts must have {modality.kind} examples, concept {c} has none")
        if k_shot + n_query > len(pool):
            raise ValueError(f"k_shot + n_query must be at most {len(pool)} (examples of concept {c}), "
                             f"got k_shot={k_shot}, n_query={n_query}")
        picked = _choose(pool, k_shot + n_query, generator)
        support.append(picked[:k_shot])
        query.append(picked[k_shot:])
    support_idx, query_idx = torch.cat(support), torch.cat(query)
    return ClassificationTask(
        support=modality.batch(support_idx), support_y=torch.arange(n_way, device=device).repeat_interleave(k_shot),
        query=modality.batch(query_idx), query_y=torch.arange(n_way, device=device).repeat_interleave(n_query),
        concepts=chosen)


def sample_alignment_task(data: CrossModalDataset, concepts: Sequence[int], n_way: int, n_per_concept: int,
                          generator: torch.Generator, weak: bool = False,
                          pairing_noise: float = 0.0) -> AlignmentTask:
    """Sample source/target pairs from ``n_way`` of ``concepts``.

    Strong (``weak=False``): ``n_per_concept`` instance pairs per concept from ``data.pairs``; group of
    row i is i, so the only positive of a source row is its own partner. Weak (``weak=True``): N
    clusters (``data.clusters``) are drawn; for each, ``n_per_concept`` source and ``n_per_concept``
    target examples of concepts in that cluster, drawn independently; group = cluster.
    ``pairing_noise`` is the fraction of target rows replaced by a random other target row, to study
    alignment quality (the poster's second finding). A ``concepts`` list that repeats an id is a
    ``ValueError``.
    """
    check_positive("n_per_concept", n_per_concept, integer=True)
    if not 0.0 <= pairing_noise <= 1.0:
        raise ValueError(f"pairing_noise must be in [0, 1], got {pairing_noise}")
    concepts = torch.as_tensor(check_concepts(concepts, num_classes=data.num_classes), dtype=torch.long,
                               device=data.source.labels.device)
    if weak:
        src_idx, tgt_idx, groups = _weak_rows(data, concepts, n_way, n_per_concept, generator)
        groups_s = groups_t = groups
    else:
        # Only concepts with enough pairs can give n_per_concept of them (pairs may be scarce on purpose).
        counts = torch.bincount(data.source.labels[data.pairs[:, 0]], minlength=data.num_classes)
        eligible = concepts[counts[concepts] >= n_per_concept]
        _check_task(n_way, len(eligible), f"concepts with at least n_per_concept={n_per_concept} pairs")
        rows = torch.cat([_choose(data.pairs_of([c]), n_per_concept, generator)
                          for c in _choose(eligible, n_way, generator).tolist()])
        src_idx, tgt_idx = rows[:, 0], rows[:, 1]
        groups_s = groups_t = torch.arange(len(rows), device=rows.device)
    if pairing_noise > 0:
        tgt_idx = _corrupt(tgt_idx, data.target, pairing_noise, generator)
    return AlignmentTask(data.source.batch(src_idx), data.target.batch(tgt_idx), groups_s, groups_t)


def _weak_rows(data, concepts, n_way, n_per_concept, generator):
    usable = alignable(data)
    cluster_of = data.clusters[concepts]
    # Only clusters with usable examples in both modalities can form a weak pair.
    has = [torch.isin(concepts, m.labels[ok]) for m, ok in zip((data.source, data.target), usable)]
    clusters = torch.unique(cluster_of[has[0]])
    clusters = clusters[torch.isin(clusters, cluster_of[has[1]])]
    _check_task(n_way, len(clusters), "clusters with examples in both modalities")
    src, tgt, groups = [], [], []
    for g, cluster in enumerate(_choose(clusters, n_way, generator).tolist()):
        members = concepts[cluster_of == cluster]
        for modality, ok, out in ((data.source, usable[0], src), (data.target, usable[1], tgt)):
            pool = torch.nonzero(torch.isin(modality.labels, members) & ok).flatten()
            pick = torch.randint(len(pool), (n_per_concept,), generator=generator).to(pool.device)
            out.append(pool[pick])
        groups.append(torch.full((n_per_concept,), g, device=concepts.device))
    return torch.cat(src), torch.cat(tgt), torch.cat(groups)


def alignable(data: CrossModalDataset) -> list[torch.Tensor]:
    """(source, target) masks of the examples weak pairing may draw. When the dataset lists pairs, only
    paired examples (their number is a knob: ``n_pairs`` of the concept world); a dataset with weak pairs
    only (ESC-50) lists none, and then every example may be drawn."""
    masks = [torch.zeros(len(m.labels), dtype=torch.bool, device=m.labels.device) for m in (data.source, data.target)]
    if not len(data.pairs):
        return [~m for m in masks]
    masks[0][data.pairs[:, 0]] = True
    masks[1][data.pairs[:, 1]] = True
    return masks


def _corrupt(tgt_idx: torch.Tensor, target: Modality, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Replace a ``rate`` fraction of the target rows by random target examples (broken pairs)."""
    flip = (torch.rand(len(tgt_idx), generator=generator) < rate).to(tgt_idx.device)
    random_rows = torch.randint(len(target), (len(tgt_idx),), generator=generator).to(tgt_idx.device)
    return torch.where(flip, random_rows, tgt_idx)


def stack_tasks(tasks: Sequence):
    """Stack T tasks of the same shapes field by field: every tensor gains a leading task axis (T, ...).

    Tasks are NamedTuples of tensors and tuples, so the stacked result is again such a task — a
    pytree that ``torch.func.vmap`` maps over.
    """
    first = tasks[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(list(tasks))
    parts = [stack_tasks([t[i] for t in tasks]) for i in range(len(first))]
    return type(first)(*parts) if hasattr(first, "_fields") else tuple(parts)
