"""The concept world: a synthetic two-modality benchmark whose ground truth we control.

Every concept c has a hidden latent vector μ_c. An *instance* of c is a noisy point around μ_c, and
each modality sees that instance through its own fixed random nonlinear "sensor":

    z   = μ_c + noise · ε                         (latent instance, shared by both modalities)
    x_s = f_s(z) + observation_noise · ε_s         (source, ``source_dim`` features)
    x_t = f_t(z) + observation_noise · ε_t         (target, ``target_dim`` features)

f_s and f_t are two *different* random 2-layer tanh networks, so neither modality is a linear
copy of the other: an encoder has to learn to undo its own sensor, which is what alignment teaches.

Concepts are grouped into ``num_clusters`` clusters (concepts of one cluster share part of their
latent mean, so a cluster is a real semantic group). That gives both kinds of pairing of the paper:

* **strong** — source example i and target example i are the same latent instance (eq. 3);
* **weak** — a source example is paired with a random target example of some concept of the same
  cluster (eq. 4).

Because we generate the data, every property the paper studies can be turned by one knob: the number
of pairs, their noise, strong vs weak pairing. The concept splits and evaluation tasks come from
random streams of their own (those of :mod:`~magma_teach.data.registry`), so turning a pair knob
never changes which concepts are meta-test: a comparison across knobs is over the same tasks. Label noise is not a knob here: ``labels`` always hold
the true concept ids (the episode samplers rely on them); corrupt task labels at task time with
:func:`magma_teach.evaluate.symmetric_noise`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from magma_teach.data.base import SPLITS, CrossModalDataset, Modality
from magma_teach.data.registry import STREAM_SPLITS, make_eval_tasks, rng
from magma_teach.utils import check_positive, check_range

__all__ = ["concept_world"]

PAIRINGS = ("strong", "weak")
HIDDEN_WIDTH = 64  # width of each random sensor network; wide enough to be a rich nonlinear map


def concept_world(num_concepts: int = 40, samples_per_concept: int = 30, latent_dim: int = 8,
                  source_dim: int = 32, target_dim: int = 24, noise: float = 0.3,
                  observation_noise: float = 0.05, cluster_weight: float = 0.5,
                  pairing: str = "strong", pairing_noise: float = 0.0, num_clusters: int = 8,
                  n_pairs: int | None = None, splits: tuple[float, float, float] = (0.6, 0.15, 0.25),
                  n_eval_tasks: int = 8, n_way: int = 5, target_gain: float = 1.0,
                  target_nuisance: float = 1.0, seed: int = 0) -> CrossModalDataset:
    """Generate a concept world (see the module docstring for the generative story).

    Args:
        num_concepts: number of concepts (classes) C; split between meta-train, val and meta-test.
        samples_per_concept: examples of each concept in *each* modality; N = C · samples_per_concept.
        latent_dim: dimension of the hidden latent space the concepts live in.
        source_dim: number of features of a source example, x_s of shape (N, source_dim).
        target_dim: number of features of a target example, x_t of shape (N, target_dim).
        noise: std of the latent instance noise around μ_c (the means have unit variance per
            dimension, so larger noise makes concepts overlap and the task harder), >= 0. The default
            0.3 keeps concepts separable in the latent space; the difficulty comes from the target
            sensor's nuisance instead (``target_nuisance``).
        observation_noise: std of the per-modality sensor noise added after f_s / f_t, >= 0.
        cluster_weight: in [0, 1], how much of μ_c is its cluster's shared mean:
            μ_c = √w · m_cluster + √(1−w) · δ_c. 0 = clusters are arbitrary groups; 1 = all concepts of a
            cluster coincide. Default 0.5: concepts of one cluster are related but separable.
        pairing: ``"strong"`` (instance pairs) or ``"weak"`` (pairs only share a cluster).
        pairing_noise: in [0, 1], the fraction of pairs whose target is replaced by a uniformly random
            target example (it may land on the right concept by chance, with probability ≈ 1/C);
            the broken pairs are marked in ``info["corrupted_pairs"]``.
        num_clusters: number of concept clusters (``clusters``), in [1, num_concepts]; concepts are
            dealt to clusters round-robin in random order, so cluster sizes differ by at most one.
        n_pairs: how many pairs exist (default: one per source example, N). Fewer pairs are kept
            balanced over concepts (per-concept counts differ by at most one), for "more pairs help"
            studies. Pairs exist for every concept; a method selects those of its split with
            ``CrossModalDataset.pairs_of``.
        splits: fractions of concepts for (meta_train, val, meta_test); positive, summing to 1. Each
            split must get at least ``n_way`` concepts.
        n_eval_tasks: number of fixed evaluation tasks (the paper uses 8).
        n_way: concepts per evaluation task (the paper uses 5).
        target_gain: > 0, multiplies the first-layer weights of the target sensor; above 1 it folds
            the latent space more sharply.
        target_nuisance: >= 0, std of a target-only latent factor (latent_dim dims, like the speaker
            of an utterance) that the target sensor mixes into every example and no source example
            shares. Default 1.0: it is what makes the raw target hard to learn from a few shots,
            while alignment with the source can learn to ignore it. At 0 a scratch encoder is
            already as good as a meta-aligned one (both near the latent ceiling).
        seed: a non-negative integer; same seed → identical tensors. The data and pairs come from one
            generator with this seed, the splits and evaluation tasks from separate streams of it,
            which depend only on ``seed``, ``num_concepts``, ``splits``, ``n_way`` and ``n_eval_tasks``.

    Returns:
        A :class:`CrossModalDataset` named ``"conceptworld"`` with ``"vector"`` modalities. ``info``
        holds the config, the latent instances (``"latent"``, (N, latent_dim)), the concept means
        (``"means"``, (C, latent_dim)) and ``"corrupted_pairs"`` ((P,) bool).
    """
    counts = _check_knobs(num_concepts, samples_per_concept, latent_dim, source_dim, target_dim, noise,
                          observation_noise, cluster_weight, pairing, pairing_noise, num_clusters, n_pairs,
                          splits, n_eval_tasks, n_way)
    config = dict(num_concepts=num_concepts, samples_per_concept=samples_per_concept, latent_dim=latent_dim,
                  source_dim=source_dim, target_dim=target_dim, noise=noise,
                  observation_noise=observation_noise, cluster_weight=cluster_weight, pairing=pairing,
                  pairing_noise=pairing_noise, num_clusters=num_clusters, n_pairs=n_pairs,
                  splits=tuple(splits), n_eval_tasks=n_eval_tasks, n_way=n_way, target_gain=target_gain,
                  target_nuisance=target_nuisance, seed=seed)
    check_positive("target_gain", target_gain)
    if not target_nuisance >= 0:
        raise ValueError(f"target_nuisance must be >= 0, got {target_nuisance!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    g = torch.Generator().manual_seed(int(seed))

    clusters = _assign_clusters(num_concepts, num_clusters, g)
    means = _concept_means(clusters, num_clusters, latent_dim, cluster_weight, g)
    labels = torch.arange(num_concepts).repeat_interleave(samples_per_concept)  # (N,) concept of each row
    latent = means[labels] + noise * torch.randn(len(labels), latent_dim, generator=g)

    # Two different sensors see the same latent instances: row i of both modalities is one instance.
    # The target sensor also sees a target-only nuisance factor (think: the speaker of an utterance),
    # which no source example shares: alignment learns to ignore it, a few labeled shots cannot.
    f_s = _random_sensor(latent_dim, source_dim, g)
    f_t = _random_sensor(2 * latent_dim, target_dim, g, target_gain)
    nuisance = target_nuisance * torch.randn(len(labels), latent_dim, generator=g)
    x_s = f_s(latent) + observation_noise * torch.randn(len(labels), source_dim, generator=g)
    x_t = f_t(torch.cat([latent, nuisance], 1)) + observation_noise * torch.randn(len(labels), target_dim, generator=g)
    ones = torch.ones(len(labels), dtype=torch.long)
    source = Modality("vector", x_s, ones.clone(), labels.clone())
    target = Modality("vector", x_t, ones.clone(), labels.clone())

    pairs = _make_pairs(labels, clusters, pairing, g)
    pairs = _limit_pairs(pairs, labels, n_pairs, g)
    pairs, corrupted = _corrupt_pairs(pairs, len(labels), pairing_noise, g)

    # Own streams, not g: the pair knobs above draw from g, and must not move the meta-test concepts.
    split_ids = _split_concepts(num_concepts, counts, rng(seed, STREAM_SPLITS))
    # n_way distinct meta-test concepts each, in random order; distinct sets while there are enough
    eval_tasks = make_eval_tasks(split_ids["meta_test"], n_eval_tasks, n_way, seed)

    return CrossModalDataset(
        name="conceptworld", class_names=[f"concept_{c:02d}" for c in range(num_concepts)],
        source=source, target=target, pairs=pairs, clusters=clusters, splits=split_ids,
        eval_tasks=eval_tasks,
        info=dict(config=config, latent=latent, means=means, corrupted_pairs=corrupted))


def _check_knobs(num_concepts, samples_per_concept, latent_dim, source_dim, target_dim, noise,
                 observation_noise, cluster_weight, pairing, pairing_noise, num_clusters, n_pairs,
                 splits, n_eval_tasks, n_way) -> tuple[int, int, int]:
    """Validate every knob; return the number of concepts in each split."""
    for name, value in (("num_concepts", num_concepts), ("samples_per_concept", samples_per_concept),
                        ("latent_dim", latent_dim), ("source_dim", source_dim), ("target_dim", target_dim),
                        ("num_clusters", num_clusters), ("n_eval_tasks", n_eval_tasks), ("n_way", n_way)):
        check_positive(name, value, integer=True)
    for name, value in (("noise", noise), ("observation_noise", observation_noise)):
        if not value >= 0:
            raise ValueError(f"{name} must be non-negative (>= 0), got {value!r}")
    check_range("cluster_weight", cluster_weight, 0.0, 1.0)
    check_range("pairing_noise", pairing_noise, 0.0, 1.0)
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    check_range("num_clusters", num_clusters, 1, num_concepts)
    if n_pairs is not None:
        check_positive("n_pairs", n_pairs, integer=True)
        check_range("n_pairs", n_pairs, 1, num_concepts * samples_per_concept)
    if len(splits) != 3 or any(not f > 0 for f in splits) or not math.isclose(sum(splits), 1.0, abs_tol=1e-6):
        raise ValueError(f"splits must be three positive fractions (meta_train, val, meta_test) summing to 1, "
                         f"got {splits!r}")
    n_train, n_val = round(splits[0] * num_concepts), round(splits[1] * num_concepts)
    counts = (n_train, n_val, num_concepts - n_train - n_val)
    if min(counts) < n_way:
        raise ValueError(f"num_concepts={num_concepts} with splits={tuple(splits)} gives {counts} concepts per "
                         f"split; every split needs at least n_way={n_way}: increase num_concepts")
    return counts


def _assign_clusters(num_concepts: int, num_clusters: int, g: torch.Generator) -> torch.Tensor:
    """(C,) cluster of each concept: a random order dealt round-robin, so sizes differ by at most one."""
    clusters = torch.empty(num_concepts, dtype=torch.long)
    clusters[torch.randperm(num_concepts, generator=g)] = torch.arange(num_concepts) % num_clusters
    return clusters


def _concept_means(clusters, num_clusters, latent_dim, weight, g) -> torch.Tensor:
    """(C, latent_dim) means μ_c = √w·m_cluster + √(1−w)·δ_c; unit variance per dimension for any w."""
    cluster_means = torch.randn(num_clusters, latent_dim, generator=g)
    own = torch.randn(len(clusters), latent_dim, generator=g)
    return math.sqrt(weight) * cluster_means[clusters] + math.sqrt(1 - weight) * own


def _random_sensor(in_dim: int, out_dim: int, g: torch.Generator, gain: float = 1.0):
    """A fixed random map z ↦ W2 · tanh(W1 · z + b1) + b2 (a 2-layer tanh network that is never trained).

    W1 has std √(2/in_dim): pre-activations have variance ≈ 2, so tanh is used well into its curved
    part (a truly nonlinear map) without saturating everywhere. W2 has std √(1/width), giving outputs
    of roughly unit scale. ``gain`` multiplies W1: above 1 the map folds the latent space more
    sharply (harder to learn from a few examples, still a fixed function of the instance).
    """
    w1 = torch.randn(HIDDEN_WIDTH, in_dim, generator=g) * math.sqrt(2.0 / in_dim) * gain
    b1 = 0.5 * torch.randn(HIDDEN_WIDTH, generator=g)
    w2 = torch.randn(out_dim, HIDDEN_WIDTH, generator=g) * math.sqrt(1.0 / HIDDEN_WIDTH)
    b2 = 0.1 * torch.randn(out_dim, generator=g)
    return lambda z: torch.tanh(z @ w1.T + b1) @ w2.T + b2


def _make_pairs(labels, clusters, pairing, g) -> torch.Tensor:
    """(N, 2) pairs (source i, target j), one per source example.

    Strong: j = i (the same latent instance). Weak: j is a random target example whose concept lies in
    the cluster of i's concept (possibly i's own concept, but almost never the same instance).
    """
    n = len(labels)
    src = torch.arange(n)
    if pairing == "strong":
        return torch.stack([src, src], dim=1)
    cluster_of_row = clusters[labels]  # (N,) cluster of every example (same rows in both modalities)
    tgt = torch.empty(n, dtype=torch.long)
    for k in range(int(clusters.max()) + 1):
        rows = torch.nonzero(cluster_of_row == k).flatten()
        tgt[rows] = rows[torch.randint(len(rows), (len(rows),), generator=g)]
    return torch.stack([src, tgt], dim=1)


def _limit_pairs(pairs, labels, n_pairs, g) -> torch.Tensor:
    """Keep ``n_pairs`` pairs balanced over concepts: shuffle, rank pairs within their concept, keep low ranks."""
    if n_pairs is None or n_pairs >= len(pairs):
        return pairs
    shuffled = pairs[torch.randperm(len(pairs), generator=g)]
    concept = labels[shuffled[:, 0]]
    # Rank of each pair within its concept (0, 1, 2, ...): group the pairs by concept, then subtract
    # the position where the concept's block starts.
    by_concept = torch.argsort(concept, stable=True)
    sizes = torch.bincount(concept)
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.empty(len(pairs), dtype=torch.long)
    rank[by_concept] = torch.arange(len(pairs)) - starts[concept[by_concept]]
    # All rank-0 pairs first, then all rank-1 pairs, ...: any prefix is balanced over concepts.
    keep = torch.argsort(rank, stable=True)[:n_pairs]
    kept = shuffled[keep]
    return kept[torch.argsort(kept[:, 0])]  # sorted by source row, for readability


def _corrupt_pairs(pairs, n_target, rate, g) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the target of exactly round(rate · P) randomly chosen pairs by a random target example."""
    corrupted = torch.zeros(len(pairs), dtype=torch.bool)
    n_bad = round(rate * len(pairs))
    if n_bad == 0:
        return pairs, corrupted
    corrupted[torch.randperm(len(pairs), generator=g)[:n_bad]] = True
    pairs = pairs.clone()
    pairs[corrupted, 1] = torch.randint(n_target, (n_bad,), generator=g)
    return pairs, corrupted


def _split_concepts(num_concepts, counts, gen: np.random.Generator) -> dict[str, list[int]]:
    """Disjoint random concept splits with ``counts`` concepts each, ids sorted within a split."""
    order = gen.permutation(num_concepts).tolist()
    out, start = {}, 0
    for name, size in zip(SPLITS, counts):
        out[name] = sorted(order[start:start + size])
        start += size
    return out
