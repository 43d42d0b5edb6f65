"""Tests for the synthetic concept world."""

import time

import pytest
import torch

from magma_teach.data.base import SPLITS, CrossModalDataset
from magma_teach.data.conceptworld import concept_world
from magma_teach.data.episodes import sample_alignment_task, sample_classification_task


@pytest.fixture(scope="module")
def world():
    return concept_world()


def test_shapes_and_kinds(world):
    n = 40 * 30
    assert isinstance(world, CrossModalDataset) and world.num_classes == 40
    assert world.source.kind == world.target.kind == "vector"
    assert world.source.x.shape == (n, 32) and world.target.x.shape == (n, 24)
    assert world.source.x.dtype == world.target.x.dtype == torch.float32
    assert torch.equal(world.source.lengths, torch.ones(n, dtype=torch.long))
    assert torch.equal(world.source.labels, world.target.labels)
    assert torch.equal(torch.bincount(world.source.labels), torch.full((40,), 30))
    assert world.pairs.shape == (n, 2) and world.pairs.dtype == torch.int64
    assert world.clusters.shape == (40,)
    assert torch.bincount(world.clusters).tolist() == [5] * 8  # dealt round-robin
    assert world.info["latent"].shape == (n, 8) and world.info["means"].shape == (40, 8)


def test_strong_pairs_are_the_same_instance(world):
    assert torch.equal(world.pairs[:, 0], world.pairs[:, 1])
    assert torch.equal(world.pairs[:, 0], torch.arange(len(world.source)))


def test_modalities_see_the_latent_through_different_sensors(world):
    # same latent instances, but different features (different dims and different random maps)
    small = concept_world(source_dim=8, target_dim=8, observation_noise=0.0)
    assert not torch.allclose(small.source.x, small.target.x, atol=1e-2)
    # a concept is recognisable in both modalities: same-concept rows are closer than other rows
    for x in (world.source.x, world.target.x):
        centroids = torch.stack([x[world.source.labels == c].mean(0) for c in range(40)])
        nearest = torch.cdist(x, centroids).argmin(1)
        assert (nearest == world.source.labels).float().mean() > 0.5


def test_deterministic_given_seed():
    a, b, c = concept_world(seed=3), concept_world(seed=3), concept_world(seed=4)
    for name in ("pairs", "clusters"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert torch.equal(a.source.x, b.source.x) and torch.equal(a.target.x, b.target.x)
    assert a.splits == b.splits and a.eval_tasks == b.eval_tasks
    assert not torch.equal(a.source.x, c.source.x)
    wa, wb = concept_world(pairing="weak", seed=3), concept_world(pairing="weak", seed=3)
    assert torch.equal(wa.pairs, wb.pairs)


def test_splits_are_disjoint_and_cover_all_concepts(world):
    sizes = [len(world.splits[s]) for s in SPLITS]
    assert sizes == [24, 6, 10]
    union = set().union(*(set(world.splits[s]) for s in SPLITS))
    assert union == set(range(40)) and sum(sizes) == 40


def test_eval_tasks_use_meta_test_concepts_only(world):
    assert len(world.eval_tasks) == 8
    test = set(world.splits["meta_test"])
    for task in world.eval_tasks:
        assert len(task) == 5 and len(set(task)) == 5 and set(task) <= test
        assert all(isinstance(c, int) for c in task)
    custom = concept_world(n_eval_tasks=3, n_way=3, num_concepts=20)
    assert len(custom.eval_tasks) == 3 and all(len(t) == 3 for t in custom.eval_tasks)


def test_weak_pairs_share_a_cluster_not_an_instance():
    w = concept_world(pairing="weak")
    c_src = w.clusters[w.source.labels[w.pairs[:, 0]]]
    c_tgt = w.clusters[w.target.labels[w.pairs[:, 1]]]
    assert torch.equal(c_src, c_tgt)
    assert (w.pairs[:, 0] != w.pairs[:, 1]).float().mean() > 0.9
    # the partners spread over several concepts of the cluster, not just the source's own concept
    same_concept = w.source.labels[w.pairs[:, 0]] == w.target.labels[w.pairs[:, 1]]
    assert same_concept.float().mean() < 0.5


def test_n_pairs_keeps_pairs_balanced_over_concepts():
    w = concept_world(n_pairs=100)
    assert w.pairs.shape == (100, 2)
    per_concept = torch.bincount(w.source.labels[w.pairs[:, 0]], minlength=40)
    assert per_concept.max() - per_concept.min() <= 1
    assert torch.equal(w.pairs[:, 0], w.pairs[:, 1])  # still strong pairs
    assert len(set(w.pairs[:, 0].tolist())) == 100  # no pair twice


def test_pairing_noise_breaks_that_fraction_of_pairs():
    w = concept_world(pairing_noise=0.25)
    broken = w.info["corrupted_pairs"]
    assert broken.sum().item() == 300
    assert torch.equal(w.pairs[~broken, 0], w.pairs[~broken, 1])
    assert (w.pairs[broken, 0] != w.pairs[broken, 1]).float().mean() > 0.95
    assert concept_world().info["corrupted_pairs"].sum() == 0


def test_fast_enough():
    start = time.perf_counter()
    concept_world()
    assert time.perf_counter() - start < 0.5


def test_episode_samplers_run_on_it(world):
    g = torch.Generator().manual_seed(0)
    task = sample_classification_task(world.target, world.eval_tasks[0], 5, 5, 10, g, fixed_concepts=True)
    assert task.support[0].shape == (25, 24)
    strong = sample_alignment_task(world, world.splits["meta_train"], 5, 4, g)
    assert strong.source[0].shape == (20, 32) and strong.target[0].shape == (20, 24)
    weak = sample_alignment_task(concept_world(pairing="weak"), world.splits["meta_train"], 3, 4, g, weak=True)
    assert weak.groups_s.shape == (12,)


@pytest.mark.parametrize("knobs, field", [
    (dict(num_concepts=10), "num_concepts"),  # splits of 6/2/2 cannot hold a 5-way task
    (dict(num_concepts=0), "num_concepts"),
    (dict(samples_per_concept=0), "samples_per_concept"),
    (dict(latent_dim=2.5), "latent_dim"),
    (dict(noise=-0.1), "noise"),
    (dict(observation_noise=-1.0), "observation_noise"),
    (dict(pairing_noise=1.5), "pairing_noise"),
    (dict(pairing_noise=-0.1), "pairing_noise"),
    (dict(cluster_weight=2.0), "cluster_weight"),
    (dict(pairing="medium"), "pairing"),
    (dict(num_clusters=0), "num_clusters"),
    (dict(num_clusters=41), "num_clusters"),
    (dict(n_pairs=0), "n_pairs"),
    (dict(n_pairs=10**6), "n_pairs"),
    (dict(splits=(0.5, 0.5)), "splits"),
    (dict(splits=(0.7, 0.2, 0.2)), "splits"),
    (dict(splits=(1.0, 0.0, 0.0)), "splits"),
    (dict(n_eval_tasks=0), "n_eval_tasks"),
    (dict(n_way=0), "n_way"),
])
def test_bad_knobs_raise_naming_the_field(knobs, field):
    with pytest.raises(ValueError, match=field):
        concept_world(**knobs)


@pytest.mark.parametrize("seed", [0, 5])
def test_pair_knobs_do_not_move_the_splits_or_the_eval_tasks(seed):
    base = concept_world(seed=seed)
    for knobs in (dict(n_pairs=37), dict(pairing_noise=0.4), dict(pairing="weak"),
                  dict(pairing="weak", n_pairs=200, pairing_noise=0.1)):
        other = concept_world(seed=seed, **knobs)
        assert other.splits == base.splits and other.eval_tasks == base.eval_tasks, knobs
        assert torch.equal(other.clusters, base.clusters) and torch.equal(other.target.x, base.target.x)


def test_splits_depend_on_the_seed():
    assert concept_world(seed=0).splits["meta_test"] != concept_world(seed=1).splits["meta_test"]


@pytest.mark.parametrize("seed", range(4))
def test_eval_tasks_are_distinct_concepts_and_distinct_sets(seed):
    world = concept_world(seed=seed, n_eval_tasks=12)
    test = set(world.splits["meta_test"])
    for task in world.eval_tasks:
        assert len(set(task)) == len(task) == 5 and set(task) <= test
    assert len({frozenset(t) for t in world.eval_tasks}) == 12  # 10 meta-test concepts give 252 sets


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(ValueError, match="seed"):
        concept_world(seed=seed)
