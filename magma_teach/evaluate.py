"""Measuring results: retrieval (Table 3), accuracy, mean ± std, and symmetric label noise (Figure 3).

The few-shot protocol itself (fixed evaluation tasks, k shots, repeats) lives in
:mod:`magma_teach.protocol`; this module holds the small, model-free measurements it and the book use.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from magma_teach.losses import cosine_alignment_loss
from magma_teach.utils import check_positive, check_range

__all__ = ["retrieval_metrics", "cosine_alignment_loss", "symmetric_noise", "accuracy", "mean_std"]


def _to_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def retrieval_metrics(similarity, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k and median rank of cross-modal retrieval (Table 3).

    Args:
        similarity: (n_queries, n_gallery) tensor or array, higher = more similar; the true match of
            query i is gallery item i, so ``n_queries <= n_gallery`` (extra gallery items are
            distractors).
        ks: the k of each recall@k.

    Returns:
        ``{"R@1": ..., "R@5": ..., "R@10": ..., "rank": ...}`` (one ``"R@k"`` per k): R@k is the percent
        of queries whose true match is among the k most similar gallery items; ``"rank"`` is the median
        over queries of the 1-based rank of the true match (lower is better; the median of an even
        number of ranks is the mean of the middle two). Ties are resolved in the query's favour: the
        rank is 1 + the number of gallery items *strictly* more similar than the true match.
    """
    sim = _to_numpy(similarity).astype(np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be 2-D (queries, gallery), got shape {sim.shape}")
    n_queries, n_gallery = sim.shape
    if n_queries > n_gallery:
        raise ValueError(f"similarity must have at most as many queries as gallery items (query i matches "
                         f"gallery i), got {n_queries} queries and {n_gallery} gallery items")
    for k in ks:
        check_positive("ks", k, integer=True)
    true_score = sim[np.arange(n_queries), np.arange(n_queries)]
    ranks = (sim > true_score[:, None]).sum(axis=1) + 1
    metrics = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in ks}
    metrics["rank"] = float(np.median(ranks))
    return metrics


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
    """Percent of correct predictions.

    ``logits_or_predictions`` is either (N, C) scores (the argmax over the last axis is the prediction)
    or (N,) predicted class ids; ``labels`` is (N,). Tensors or arrays. Returns a float in [0, 100].
    """
    pred, y = _to_numpy(logits_or_predictions), _to_numpy(labels)
    if pred.ndim == y.ndim + 1:
        pred = pred.argmax(axis=-1)
    if pred.shape != y.shape:
        raise ValueError(f"predictions and labels must have the same shape, got {pred.shape} and {y.shape}")
    if y.size == 0:
        raise ValueError("labels must not be empty")
    return float(100.0 * np.mean(pred == y))


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
