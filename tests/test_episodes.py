"""Episode samplers and the fixed tasks of a dataset: N labels are N distinct concepts, support and
query never share an example, splits are disjoint (magma_teach.data.episodes, base, registry)."""

import numpy as np
import pytest
import torch

from magma_teach.data.base import SPLITS, CrossModalDataset, Modality, check_concepts, check_tasks
from magma_teach.data.conceptworld import concept_world
from magma_teach.data.episodes import sample_alignment_task, sample_classification_task
from magma_teach.data.registry import make_eval_tasks, split_concepts


@pytest.fixture(scope="module")
def world():
    return concept_world(samples_per_concept=20, seed=1)


@pytest.fixture(scope="module")
def weak_world():
    return concept_world(samples_per_concept=20, pairing="weak", seed=1)


def _index_modality(modality: Modality) -> Modality:
    """The same labels with x = the example's own index, so a task shows which examples it drew."""
    return Modality("vector", torch.arange(len(modality)), modality.lengths, modality.labels)


# --- the concept lists a task is built from ------------------------------------------------------------

@pytest.mark.parametrize("concepts, match", [
    ([3, 3, 1, 2, 4], r"must name distinct concepts .* got \[3\] more than once"),
    ([1, 2, 1, 2], r"got \[1, 2\] more than once"),
    (torch.tensor([5, 5]), "distinct"), (np.array([7, 8, 7]), "distinct"),
    ([1.0, 2.0], "integer concept ids"), ([0.5, 2], "integer concept ids"), ([True, 2], "integer concept ids"),
    ([-1, 2], "integer concept ids"), (torch.tensor([1.0, 2.0]), "1-D integer tensor"),
    (torch.tensor([[1, 2]]), "1-D integer tensor"), ("01", "list of concept ids"), (3, "list of concept ids"),
])
def test_check_concepts_refuses(concepts, match):
    with pytest.raises(ValueError, match=match):
        check_concepts(concepts)


def test_check_concepts_accepts_ints_of_any_kind_in_order():
    assert check_concepts([4, np.int64(2), 9]) == [4, 2, 9]
    assert check_concepts(torch.tensor([3, 1])) == [3, 1] and check_concepts([]) == []
    with pytest.raises(ValueError, match=r"below 10"):
        check_concepts([3, 10], num_classes=10)


@pytest.mark.parametrize("tasks, match", [
    ([[0, 1], [2, 2]], r"tasks\[1\] must name distinct concepts"),
    ([[0, 1, 2], [3, 4]], r"same number of concepts N >= 1, got sizes \[2, 3\]"),
    ([[]], "N >= 1"), ([[0, 1], [5, 9]], r"tasks\[1\] must use meta_test concepts only, got \[9\]"),
    ("ab", "list of concept-id lists"),
])
def test_check_tasks_refuses(tasks, match):
    with pytest.raises(ValueError, match=match):
        check_tasks(tasks, within=[0, 1, 2, 3, 4, 5])


# --- classification tasks --------------------------------------------------------------------------------

def test_the_issue_task_with_a_repeated_concept_is_refused(world):
    c = world.splits["meta_test"]
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=rf"concepts must name distinct concepts .*\[{c[0]}\] more than once"):
        sample_classification_task(world.target, [c[0], c[0], c[1], c[2], c[3]], 5, 5, 5, g, fixed_concepts=True)


@pytest.mark.parametrize("fixed", [True, False])
def test_repeats_are_refused_whether_fixed_or_drawn(world, fixed):
    pool = world.splits["meta_train"][:6]
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="distinct"):
        sample_classification_task(world.source, pool + pool[:1], 5 if not fixed else 7, 2, 2, g,
                                   fixed_concepts=fixed)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_way=4), r"n_way must equal len\(concepts\) = 5 with fixed_concepts=True"),
    (dict(n_way=6), "n_way must equal"),
    (dict(k_shot=0), "k_shot"), (dict(n_query=0), "n_query"),
    (dict(k_shot=15, n_query=6), r"k_shot \+ n_query must be at most 20"),
])
def test_fixed_tasks_refuse_inconsistent_sizes(world, kwargs, match):
    args = {"n_way": 5, "k_shot": 2, "n_query": 2, **kwargs}
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=match):
        sample_classification_task(world.target, world.eval_tasks[0], args["n_way"], args["k_shot"],
                                   args["n_query"], g, fixed_concepts=True)


def test_a_fixed_concept_without_examples_is_named():
    mod = Modality("vector", torch.zeros(6, 2), torch.ones(6, dtype=torch.long), torch.tensor([0, 0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="concept 2 has none"):
        sample_classification_task(mod, [0, 2], 2, 1, 1, torch.Generator(), fixed_concepts=True)


@pytest.mark.parametrize("fixed", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_classification_task_invariants(world, fixed, seed):
    proxy = _index_modality(world.target)
    g = torch.Generator().manual_seed(seed)
    concepts = world.eval_tasks[seed % len(world.eval_tasks)] if fixed else world.splits["meta_train"]
    task = sample_classification_task(proxy, concepts, 5, 3, 4, g, fixed_concepts=fixed)
    chosen = task.concepts.tolist()
    assert len(set(chosen)) == 5 and set(chosen) <= set(concepts)
    if fixed:
        assert chosen == list(concepts)  # exactly the given concepts, in their order
    support, query = task.support[0].tolist(), task.query[0].tolist()
    assert len(set(support)) == 15 and len(set(query)) == 20 and not set(support) & set(query)
    labels = world.target.labels
    # label l of the task is concept chosen[l], in both halves
    assert labels[task.support[0]].tolist() == [chosen[y] for y in task.support_y.tolist()]
    assert labels[task.query[0]].tolist() == [chosen[y] for y in task.query_y.tolist()]
    assert torch.bincount(task.support_y).tolist() == [3] * 5 and torch.bincount(task.query_y).tolist() == [4] * 5


# --- alignment tasks --------------------------------------------------------------------------------------

@pytest.mark.parametrize("weak", [False, True])
def test_alignment_tasks_refuse_repeated_concepts(world, weak_world, weak):
    data = weak_world if weak else world
    pool = data.splits["meta_train"]
    with pytest.raises(ValueError, match="distinct"):
        sample_alignment_task(data, pool + [pool[0]], 3, 2, torch.Generator().manual_seed(0), weak=weak)


@pytest.mark.parametrize("seed", range(5))
def test_strong_alignment_task_has_n_distinct_concepts_and_distinct_pairs(world, seed):
    g = torch.Generator().manual_seed(seed)
    proxy = CrossModalDataset(world.name, world.class_names, _index_modality(world.source),
                              _index_modality(world.target), world.pairs, world.clusters, world.splits,
                              world.eval_tasks)
    task = sample_alignment_task(proxy, world.splits["meta_train"], 5, 3, g)
    src, tgt = task.source[0], task.target[0]
    concepts = world.source.labels[src]
    assert torch.bincount(concepts).gt(0).sum() == 5 and torch.bincount(concepts).max() == 3
    assert set(concepts.tolist()) <= set(world.splits["meta_train"])
    assert len(set(zip(src.tolist(), tgt.tolist()))) == 15  # no pair twice
    assert torch.equal(task.groups_s, torch.arange(15))


@pytest.mark.parametrize("seed", range(5))
def test_weak_alignment_task_has_n_distinct_clusters(weak_world, seed):
    proxy = CrossModalDataset(weak_world.name, weak_world.class_names, _index_modality(weak_world.source),
                              _index_modality(weak_world.target), weak_world.pairs, weak_world.clusters,
                              weak_world.splits, weak_world.eval_tasks)
    g = torch.Generator().manual_seed(seed)
    task = sample_alignment_task(proxy, weak_world.splits["meta_train"], 4, 3, g, weak=True)
    assert torch.equal(task.groups_s, task.groups_t) and task.groups_s.unique().numel() == 4
    cluster_s = weak_world.clusters[weak_world.source.labels[task.source[0]]]
    cluster_t = weak_world.clusters[weak_world.target.labels[task.target[0]]]
    assert torch.equal(cluster_s, cluster_t)  # a group is one cluster in both modalities
    groups_per_cluster = {int(c): set(task.groups_s[cluster_s == c].tolist()) for c in cluster_s.unique()}
    assert len(groups_per_cluster) == 4 and all(len(g) == 1 for g in groups_per_cluster.values())


# --- splits and fixed evaluation tasks ---------------------------------------------------------------------

@pytest.mark.parametrize("n_concepts, n_way, seed", [(15, 5, 0), (41, 5, 3), (90, 5, 7), (14, 4, 1), (30, 10, 2)])
def test_split_concepts_partitions_the_concepts(n_concepts, n_way, seed):
    splits = split_concepts(n_concepts, seed, n_way)
    parts = [set(splits[s]) for s in SPLITS]
    assert sum(map(len, parts)) == n_concepts and set().union(*parts) == set(range(n_concepts))
    assert all(len(p) >= n_way for p in parts)


@pytest.mark.parametrize("concepts, n_tasks, n_way, seed", [
    (list(range(20, 30)), 8, 5, 0), (list(range(5)), 4, 5, 1), ([3, 9, 4, 7, 1, 8], 30, 3, 2)])
def test_make_eval_tasks_gives_n_distinct_concepts_each(concepts, n_tasks, n_way, seed):
    tasks = make_eval_tasks(concepts, n_tasks, n_way, seed)
    assert len(tasks) == n_tasks
    for task in tasks:
        assert len(task) == n_way and len(set(task)) == n_way and set(task) <= set(concepts)
    sets = [frozenset(t) for t in tasks]
    from math import comb

    assert len(set(sets)) == min(n_tasks, comb(len(concepts), n_way))  # distinct sets while there are enough


@pytest.mark.parametrize("concepts, n_tasks, n_way, match", [
    ([1, 2, 2, 3, 4, 5], 3, 5, "distinct"), ([1, 2, 3], 3, 5, "n_way must be at most the 3 concepts"),
    ([1, 2, 3], 0, 2, "n_eval_tasks"), ([1, 2, 3], 2, 0, "n_way"), ([1, 2, 3], 2, True, "n_way"),
    ([1.5, 2, 3], 2, 2, "integer concept ids"),
])
def test_make_eval_tasks_refuses(concepts, n_tasks, n_way, match):
    with pytest.raises(ValueError, match=match):
        make_eval_tasks(concepts, n_tasks, n_way, 0)


def _toy(splits, eval_tasks):
    labels = torch.arange(12) % 6
    vec = Modality("vector", torch.randn(12, 2), torch.ones(12, dtype=torch.long), labels)
    return CrossModalDataset("toy", [f"c{i}" for i in range(6)], vec, vec, torch.stack([torch.arange(12)] * 2, 1),
                             torch.arange(6), splits, eval_tasks)


@pytest.mark.parametrize("splits, eval_tasks, match", [
    ({"meta_train": [0, 1], "val": [2, 3], "meta_test": [4, 5]}, [[4, 4]], r"eval_tasks\[0\] must name distinct"),
    ({"meta_train": [0, 1], "val": [2, 3], "meta_test": [4, 5]}, [[4, 5], [3, 5]],
     r"eval_tasks\[1\] must use meta_test concepts only, got \[3\]"),
    ({"meta_train": [0, 1], "val": [2, 3], "meta_test": [4, 5]}, [[4, 5], [5]], "same number of concepts"),
    ({"meta_train": [0, 1], "val": [2, 3], "meta_test": [4, 5, 5]}, [], r"splits\['meta_test'\] must name distinct"),
    ({"meta_train": [0, 1], "val": [2, 3], "meta_test": [4, 6]}, [], r"below 6"),
    ({"meta_train": [0, 1], "val": [1, 3], "meta_test": [4, 5]}, [], "disjoint"),
    ({"meta_train": [0, 1], "val": [2, 3]}, [], "missing"),
])
def test_dataset_refuses_bad_splits_and_tasks(splits, eval_tasks, match):
    with pytest.raises(ValueError, match=match):
        _toy(splits, eval_tasks)


def test_dataset_stores_splits_and_tasks_as_int_lists():
    ds = _toy({"meta_train": np.array([0, 1]), "val": (2, 3), "meta_test": torch.tensor([4, 5])},
              [np.array([5, 4]), (4, 5)])
    assert ds.splits == {"meta_train": [0, 1], "val": [2, 3], "meta_test": [4, 5]}
    assert ds.eval_tasks == [[5, 4], [4, 5]] and all(type(c) is int for t in ds.eval_tasks for c in t)


def test_weak_alignment_tasks_draw_only_paired_examples():
    """n_pairs limits weak pairs too: a weak task never uses an example outside data.pairs."""
    from magma_teach.data.conceptworld import concept_world
    from magma_teach.data.episodes import sample_alignment_task

    world = concept_world(pairing="weak", n_pairs=40, seed=0)
    paired_s, paired_t = set(world.pairs[:, 0].tolist()), set(world.pairs[:, 1].tolist())
    index_s = {tuple(x.tolist()): i for i, x in enumerate(world.source.x)}
    index_t = {tuple(x.tolist()): i for i, x in enumerate(world.target.x)}
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        task = sample_alignment_task(world, world.splits["meta_train"], 3, 4, g, weak=True)
        assert {index_s[tuple(x.tolist())] for x in task.source[0]} <= paired_s
        assert {index_t[tuple(x.tolist())] for x in task.target[0]} <= paired_t
    many = concept_world(pairing="weak", seed=0)  # every example paired: the pools are whole clusters
    task = sample_alignment_task(many, many.splits["meta_train"], 3, 4, g, weak=True)
    assert task.source[0].shape[0] == 12
