"""Measuring results: retrieval (Table 3), accuracy, mean ± std, and symmetric label noise (Figure 3).

Every score-based measure here treats ties the same way: a tie is broken at random and the *expected*
hit is counted, so tied scores are shared, never won (a constant scorer gets chance level, not 100).

The few-shot protocol itself (fixed evaluation tasks, k shots, repeats) lives in
:mod:`magma_teach.protocol`; this module holds the small, model-free measurements it and the book use.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from magma_teach.losses import cosine_alignment_loss
from magma_teach.utils import check_positive, check_range

__all__ = ["retrieval_metrics", "concept_recall_at_1", "top_share", "cosine_alignment_loss", "symmetric_noise",
           "accuracy", "mean_std", "verdict"]


def _to_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _scores(name: str, values) -> np.ndarray:
    """Scores as float64, refusing NaN: a NaN compares false with everything, so it would silently
    rank as neither better than nor tied with anything."""
    scores = _to_numpy(values).astype(np.float64)
    n_nan = int(np.isnan(scores).sum())
    if n_nan:
        raise ValueError(f"{name} must not contain NaN, got {n_nan} NaN value(s) in shape {scores.shape}")
    return scores


def _similarity_matrix(similarity) -> np.ndarray:
    sim = _scores("similarity", similarity)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be 2-D (queries, gallery), got shape {sim.shape}")
    if sim.shape[0] == 0:
        raise ValueError(f"similarity must have at least one query row, got shape {sim.shape}")
    return sim


def top_share(scores: np.ndarray, hit: np.ndarray, k: int = 1) -> np.ndarray:
    """Per row, the expected share of hits among the k top-scoring items when ties are broken at random.

    Items scoring above the row's k-th highest score are all in the top k; the items tied *at* the
    k-th score share the slots left, each with the same chance. This is the one tie rule of the
    module (R@1, concept R@1 and accuracy are its k = 1 case), and the one to use for k-nearest-
    neighbour shares too.

    Args:
        scores: (..., M) float scores without NaN, higher = better.
        hit: (..., M) bool, which items count as correct.
        k: how many top items, 1 <= k <= M.

    Returns:
        (...,) floats in [0, 1]: expected number of hits among the top k, divided by k. With k = 1, the
        fraction of hits among the items tied at the maximum; a constant row gives the fraction of hits
        in the whole row.

    Raises:
        ValueError: ``k`` is not an integer in [1, M], or ``scores`` and ``hit`` differ in shape.
    """
    scores, hit = np.asarray(scores), np.asarray(hit, dtype=bool)
    if scores.shape != hit.shape:
        raise ValueError(f"scores and hit must have the same shape, got {scores.shape} and {hit.shape}")
    check_positive("k", k, integer=True)
    if k > scores.shape[-1]:
        raise ValueError(f"k must be at most the number of items per row ({scores.shape[-1]}), got {k}")
    kth = -np.partition(-scores, k - 1, axis=-1)[..., k - 1:k]  # the k-th highest score, kept as (..., 1)
    above, tied = scores > kth, scores == kth
    slots = k - above.sum(-1)  # 1..(number tied): what the tie at the k-th score fills
    expected = (above & hit).sum(-1) + slots * (tied & hit).sum(-1) / tied.sum(-1)
    return expected / k


def retrieval_metrics(similarity, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k and median rank of cross-modal retrieval (Table 3), with ties shared, never won.

    Args:
        similarity: (n_queries, n_gallery) tensor or array, higher = more similar, no NaN (±inf is
            allowed and compares as usual); the true match of query i is gallery item i, so
            ``1 <= n_queries <= n_gallery`` (extra gallery items are distractors).
        ks: the k of each recall@k (positive integers).

    Returns:
        ``{"R@1": ..., "R@5": ..., "R@10": ..., "rank": ...}`` (one ``"R@k"`` per k), all floats.

        **Ties.** Let b be the number of gallery items *strictly* more similar than the true match and
        t the number of items with exactly its similarity (t >= 1, the true match included). Breaking
        the tie at random puts the true match at each of the positions b + 1, ..., b + t with
        probability 1/t, so

        * ``"rank"`` is the median over queries of the mean position, 1 + b + (t − 1) / 2 (the
          "average" rank of ``scipy.stats.rankdata``); lower is better, and the median of an even
          number of ranks is the mean of the middle two;
        * ``"R@k"`` is the percent of queries whose true match is among the k most similar items,
          counting each query's *expected* hit ``clip(k − b, 0, t) / t`` — the fraction of its tie that
          falls within the top k.

        A constant n × n matrix therefore gives rank (n + 1) / 2 and R@k = 100 · min(k, n) / n (chance
        level), never 100: an encoder that outputs a constant cannot win by ties.

    Raises:
        ValueError: ``similarity`` is not 2-D, has no query, more queries than gallery items or a NaN;
            a k is not a positive integer.
    """
    sim = _similarity_matrix(similarity)
    n_queries, n_gallery = sim.shape
    if n_queries > n_gallery:
        raise ValueError(f"similarity must have at most as many queries as gallery items (query i matches "
                         f"gallery i), got {n_queries} queries and {n_gallery} gallery items")
    for k in ks:
        check_positive("ks", k, integer=True)
    true_score = sim[np.arange(n_queries), np.arange(n_queries)][:, None]
    better = (sim > true_score).sum(axis=1)
    tied = (sim == true_score).sum(axis=1)  # >= 1: the true match ties with itself (no NaN)
    metrics = {f"R@{k}": float(100.0 * np.mean(np.clip(k - better, 0, tied) / tied)) for k in ks}
    metrics["rank"] = float(np.median(1.0 + better + (tied - 1) / 2.0))
    return metrics


def concept_recall_at_1(similarity, query_concepts, gallery_concepts) -> float:
    """Concept R@1: percent of queries whose most similar gallery item shows the same concept.

    A looser retrieval score than R@1: any item of the right concept counts, not only the paired one.
    Ties are shared as in :func:`retrieval_metrics`: when several gallery items share a query's highest
    similarity, the query counts the fraction of them that show its concept (the expected hit of a
    random tie-break). A constant matrix thus gives, per query, the share of same-concept items in the
    gallery — chance level, not 100.

    Args:
        similarity: (n_queries, n_gallery) tensor or array, higher = more similar, no NaN.
        query_concepts: (n_queries,) concept id of each query.
        gallery_concepts: (n_gallery,) concept id of each gallery item.

    Returns:
        A float in [0, 100].

    Raises:
        ValueError: ``similarity`` is not 2-D, has no query or a NaN; a concept array's shape does not
            match its axis of ``similarity``.
    """
    sim = _similarity_matrix(similarity)
    queries, gallery = _to_numpy(query_concepts), _to_numpy(gallery_concepts)
    if queries.shape != sim.shape[:1]:
        raise ValueError(f"query_concepts must have shape ({sim.shape[0]},) (one per similarity row), "
                         f"got {queries.shape}")
    if gallery.shape != sim.shape[1:]:
        raise ValueError(f"gallery_concepts must have shape ({sim.shape[1]},) (one per similarity column), "
                         f"got {gallery.shape}")
    return float(100.0 * np.mean(top_share(sim, queries[:, None] == gallery[None, :])))


def symmetric_noise(labels, num_classes: int, rate: float, seed: int):
    """Symmetric label noise: each label flips, with probability ``rate``, to a uniformly random *other* class.

    A flipped label never keeps its true class: it becomes ``(y + u) mod num_classes`` with u uniform in
    1..num_classes−1, which is uniform over the other num_classes − 1 classes.

    Args:
        labels: (N,) integer labels in [0, num_classes) — a torch tensor (a tensor comes back, on the
            same device) or anything numpy accepts (a numpy int64 array comes back).
        num_classes: number of classes (>= 2 when ``rate > 0``).
        rate: flip probability in [0, 1]; 0 returns a copy, 1 changes every label.
        seed: seeds the draw, so the same inputs give the same noisy labels.

    Returns:
        New int64 labels; the input is not modified.
    """
    check_range("rate", rate, 0.0, 1.0)
    check_positive("num_classes", num_classes, integer=True)
    if rate > 0 and num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 to flip labels with rate > 0, got {num_classes}")
    is_tensor = isinstance(labels, torch.Tensor)
    y = labels.detach().cpu().long() if is_tensor else torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got values in [{int(y.min())}, {int(y.max())}]")
    generator = torch.Generator().manual_seed(seed)
    flip = torch.rand(y.shape, generator=generator) < rate  # rand is in [0, 1), so rate=1 flips all
    shift = torch.randint(1, max(num_classes, 2), y.shape, generator=generator)  # never 0: never the true class
    noisy = torch.where(flip, (y + shift) % num_classes, y)
    return noisy.to(labels.device) if is_tensor else noisy.numpy()


def accuracy(logits_or_predictions, labels) -> float:
    """Percent of correct predictions, with tied top scores shared, never won.

    Args:
        logits_or_predictions: either (..., C) scores without NaN (the highest score is the
            prediction) or (...,) predicted class ids. Tensor or array.
        labels: (...,) true class ids, in [0, C) when scores are given.

    Returns:
        A float in [0, 100]. From scores, each example counts its expected hit under a random
        tie-break (:func:`top_share`): when t classes share the highest score and the true class is
        one of them it counts 1/t, otherwise 0. A plain ``argmax`` would take the first tied class, so
        constant logits would score 100 on every example labelled 0; here they score 100 / C.

    Raises:
        ValueError: the shapes do not match, ``labels`` is empty, the scores contain NaN or a label is
            not a class id of the scores.
    """
    pred, y = _to_numpy(logits_or_predictions), _to_numpy(labels)
    if y.size == 0:
        raise ValueError("labels must not be empty")
    if pred.ndim == y.ndim + 1:
        return float(100.0 * np.mean(_score_hits(_scores("logits_or_predictions", pred), y)))
    if pred.shape != y.shape:
        raise ValueError(f"predictions and labels must have the same shape, got {pred.shape} and {y.shape}")
    return float(100.0 * np.mean(pred == y))


def _score_hits(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Expected hit per example of (..., C) scores against (...,) integer labels."""
    if scores.shape[:-1] != y.shape:
        raise ValueError(f"logits (..., C) and labels (...,) must agree on the leading shape, "
                         f"got {scores.shape} and {y.shape}")
    n_classes = scores.shape[-1]
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be integer class ids in [0, {n_classes}) for logits with {n_classes} "
                         f"classes, got dtype {y.dtype} with values in [{y.min()}, {y.max()}]")
    return top_share(scores, np.arange(n_classes) == y[..., None])


def mean_std(values) -> tuple[float, float]:
    """Mean and *sample* standard deviation (ddof=1) of repeated results, for "mean ± std" tables.

    The sample std is the usual choice for a handful of repeats (the paper uses 10); it is slightly
    larger than the population std. A single value has std 0.0.
    """
    v = _to_numpy(values).astype(np.float64).ravel()
    if v.size == 0:
        raise ValueError("values must not be empty")
    std = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return float(np.mean(v)), std


def verdict(mean_a: float, std_a: float, mean_b: float, std_b: float) -> str:
    """How result a compares with result b, each a mean ± std over training seeds and draws.

    Returns ``"ahead"`` or ``"behind"`` when the means differ by more than the larger of the two
    standard deviations, else ``"tie"``: the book's rule that a difference inside the spread is a tie.
    Stds must be non-negative numbers.
    """
    for name, value in (("std_a", std_a), ("std_b", std_b)):
        if not value >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    gap = float(mean_a) - float(mean_b)
    if abs(gap) <= max(float(std_a), float(std_b)):
        return "tie"
    return "ahead" if gap > 0 else "behind"
