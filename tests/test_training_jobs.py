"""Training jobs: parallel processes give the sequential numbers, and a remembered model is the trained one."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

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


# ---------------------------------------------------------------- a killed run leaves no worker behind
KILLED_RUN = """
import torch
from magma_teach.data.conceptworld import concept_world
from magma_teach.experiments import PRESETS
from magma_teach.experiments.context import Context, train_all
from magma_teach.magma import MagmaConfig

if __name__ == "__main__":
    ctx = Context(PRESETS["tiny"], torch.device("cpu"), seed=0, progress=False)
    long = MagmaConfig(iterations=100_000, validate_every=100_000)  # far longer than the test waits
    train_all({"MAGMA": ("MAGMA", long)}, concept_world(seed=0), ctx, seeds=[0, 1])
"""


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from Linux's /proc")
def test_workers_end_when_the_run_that_started_them_is_killed(tmp_path):
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    env = {**os.environ, "MAGMA_TEACH_WORKERS": "2", "MAGMA_TEACH_MODEL_CACHE": "0",
           "MAGMA_TEACH_CACHE": str(tmp_path / "cache")}
    run = subprocess.Popen([sys.executable, str(script)], env=env, cwd=tmp_path)
    workers = []
    try:
        deadline = time.monotonic() + 120
        while len(workers := _children(run.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) >= 2, "the pool never started its two workers"
        time.sleep(3)  # both are training now
        workers = _children(run.pid)  # the two workers, and multiprocessing's resource tracker
        run.kill()  # SIGKILL: nothing of the run itself gets to clean up
        run.wait()
        deadline = time.monotonic() + 15
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "a worker outlived the run that started it"
    finally:  # leave nothing running whatever happened (after the kill, the workers are no children of run)
        run.kill()
        for w in workers + _children(run.pid):
            if _alive(w):
                os.kill(w, signal.SIGKILL)
