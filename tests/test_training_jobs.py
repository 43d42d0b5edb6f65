"""Training jobs: parallel processes give the sequential numbers, and a remembered model is the trained one."""

from dataclasses import replace

import pytest
import torch

from magma_teach.data.conceptworld import concept_world
from magma_teach.experiments import PRESETS, trained_cache
from magma_teach.experiments.context import Context, longest_first, train_all
from magma_teach.magma import MagmaConfig
from magma_teach.reptile import InnerLoop

CFG = MagmaConfig(iterations=3, validate_every=3, meta_batch=2, align_inner=InnerLoop(2, 1e-3),
                  finetune=InnerLoop(2, 1e-3, betas=(0.9, 0.999)))


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGMA_TEACH_CACHE", str(tmp_path))
    return Context(PRESETS["tiny"], torch.device("cpu"), seed=0, cache_dir=str(tmp_path), progress=False)


def _states(results):
    return {label: [t.model.state_dict() for t in trained] for label, trained in results.items()}


def _assert_same(a, b):
    for label in a:
        for sa, sb in zip(a[label], b[label]):
            for k in sa:
                torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=f"{label} {k}")


def test_parallel_processes_give_the_sequential_result(ctx, monkeypatch):
    world = concept_world(seed=0)
    # the Oracle's longer run is started first in parallel (longest_first): results still land by label
    jobs = {"MAGMA": ("MAGMA", CFG), "Oracle": ("Oracle", replace(CFG, iterations=4, validate_every=4))}
    monkeypatch.setenv(trained_cache.ENV_VAR, "0")  # train for real both times
    monkeypatch.setenv("MAGMA_TEACH_WORKERS", "1")
    sequential = train_all(jobs, world, ctx, seeds=[0, 1])
    monkeypatch.setenv("MAGMA_TEACH_WORKERS", "2")
    parallel = train_all(jobs, world, ctx, seeds=[0, 1])
    assert [len(v) for v in parallel.values()] == [2, 2]
    _assert_same(_states(sequential), _states(parallel))
    assert not torch.equal(*[parallel["MAGMA"][s].model.state_dict()["target.net.0.weight"] for s in (0, 1)])


def test_longest_first_starts_the_runs_with_most_iterations_and_keeps_ties_in_order():
    runs = [(label, "MAGMA", replace(CFG, iterations=n), 0, None)
            for label, n in (("a", 50), ("b", 400), ("c", 50), ("d", 400), ("e", 1))]
    assert longest_first(runs) == [1, 3, 0, 2, 4]


def test_a_remembered_model_equals_the_trained_one_and_any_change_retrains(ctx, monkeypatch):
    monkeypatch.setenv("MAGMA_TEACH_WORKERS", "1")
    world = concept_world(seed=0)
    first = train_all({"m": ("MAGMA", CFG)}, world, ctx, seeds=[0])
    files = sorted(p.name for p in __import__("pathlib").Path(ctx.cache_dir).glob("model-*.pt"))
    assert len(files) == 1
    calls = []
    monkeypatch.setattr(trained_cache, "train_approach", lambda *a, **k: calls.append(1) or None)
    again = train_all({"m": ("MAGMA", CFG)}, world, ctx, seeds=[0])  # loaded, not trained
    assert calls == []
    _assert_same(_states(first), _states(again))
    assert again["m"][0].history == first["m"][0].history
    base = trained_cache.key("MAGMA", world, CFG, 0, 64)
    changed = [trained_cache.key("MAGMA", world, CFG, 1, 64),
               trained_cache.key("Oracle", world, CFG, 0, 64),
               trained_cache.key("MAGMA", world, CFG.with_(iterations=4), 0, 64),
               trained_cache.key("MAGMA", concept_world(seed=0, n_pairs=100), CFG, 0, 64)]
    assert all(k != base for k in changed)


def test_the_cache_can_be_turned_off_and_never_serves_a_gpu(monkeypatch):
    monkeypatch.setenv(trained_cache.ENV_VAR, "0")
    assert not trained_cache.enabled(torch.device("cpu"))
    monkeypatch.setenv(trained_cache.ENV_VAR, "1")
    assert trained_cache.enabled(torch.device("cpu"))
    assert not trained_cache.enabled(torch.device("cuda"))
