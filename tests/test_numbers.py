"""The *numbers* benchmark: handwritten two-digit numbers (image) → spoken numbers (audio)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from magma_teach.data import numbers, registry
from magma_teach.data.audio import log_mel
from magma_teach.data.base import SPLITS
from magma_teach.data.episodes import sample_alignment_task, sample_classification_task, stack_tasks

SMALL = dict(low=30, high=49, per_concept=4)  # 20 numbers (10/5/5 split), 80 examples per modality
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return registry.load("numbers", cache_dir=tmp_path_factory.mktemp("cache"), **SMALL)


def test_shapes_labels_and_pairs(small):
    n = 20 * 4
    assert small.num_classes == 20 and small.class_names[0] == "30" and small.class_names[-1] == "49"
    assert small.source.kind == "image" and small.source.x.shape == (n, 1, 16, 32)
    assert small.source.x.dtype == torch.float32 and 0 <= small.source.x.min() and small.source.x.max() <= 1
    assert (small.source.lengths == 1).all()
    assert small.target.kind == "audio" and small.target.x.shape == (n, 40, 144)
    assert ((small.target.lengths > 20) & (small.target.lengths <= 144)).all()
    frames = torch.arange(144)
    assert (small.target.x.abs().sum(1)[frames >= small.target.lengths[:, None]] == 0).all()  # zero padding
    assert torch.equal(small.source.labels[small.pairs[:, 0]], small.target.labels[small.pairs[:, 1]])
    assert (torch.bincount(small.source.labels) == 4).all()
    assert small.clusters.tolist() == [0] * 10 + [1] * 10  # the thirties and the forties
    assert small.info["sample_rate"] == 22_050


def test_same_seed_same_arrays_other_seed_different(small, tmp_path):
    again = registry.load("numbers", cache_dir=tmp_path, **SMALL)  # generated afresh in another folder
    for a, b in [(small.source.x, again.source.x), (small.target.x, again.target.x),
                 (small.target.lengths, again.target.lengths),
                 (small.info["digit_samples"], again.info["digit_samples"])]:
        assert torch.equal(a, b)
    assert small.splits == again.splits and small.eval_tasks == again.eval_tasks
    assert small.info["utterances"] == again.info["utterances"]
    other = registry.load("numbers", seed=1, cache_dir=tmp_path, **SMALL)
    assert not torch.equal(small.source.x, other.source.x)
    assert small.info["utterances"] != other.info["utterances"]


def test_splits_are_disjoint_and_eval_tasks_use_meta_test(small):
    seen = [c for s in SPLITS for c in small.splits[s]]
    assert sorted(seen) == list(range(20))
    assert all(len(small.splits[s]) >= 5 for s in SPLITS)
    assert len(small.eval_tasks) >= 8
    for task in small.eval_tasks:
        assert len(task) == 5 == len(set(task)) and set(task) <= set(small.splits["meta_test"])


def test_meta_test_numbers_use_only_the_held_out_handwriting(small):
    from sklearn.datasets import load_digits

    digit_labels = torch.from_numpy(load_digits().target)
    samples, pool = small.info["digit_samples"], small.info["digit_pool"]
    test = torch.isin(small.source.labels, torch.tensor(small.splits["meta_test"]))
    assert (pool[samples[test]] == 1).all() and (pool[samples[~test]] == 0).all()
    assert not set(samples[test].flatten().tolist()) & set(samples[~test].flatten().tolist())
    value = torch.tensor([int(small.class_names[c]) for c in small.source.labels])
    assert torch.equal(digit_labels[samples[:, 0]], value // 10)  # left scan shows the tens digit
    assert torch.equal(digit_labels[samples[:, 1]], value % 10)


def test_speech_of_n_was_synthesized_from_n(small):
    info = small.info
    for j in range(0, len(small.target), 7):
        number = small.class_names[int(small.target.labels[j])]
        assert info["texts"][j] == number == info["utterances"][j]["text"]
        wave, rate = numbers.speak_target(small, j)
        feat = (log_mel(wave, rate, info["n_mels"]) - info["audio_mean"]) / info["audio_std"]
        n = int(small.target.lengths[j])
        assert n == min(feat.shape[1], info["max_frames"])
        torch.testing.assert_close(feat[:, :n], small.target.x[j, :, :n], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("overrides, field", [
    (dict(low=10, high=20), "high - low + 1"), (dict(low=5), "low"), (dict(high=120), "high"),
    (dict(snr_db=-3.0), "snr_db"), (dict(snr_db=[10.0, 5.0]), "snr_db"), (dict(rate=[50, 100]), "rate"),
    (dict(per_concept=0), "per_concept"), (dict(variants=["robot"]), "variants"), (dict(seed=-1), "seed"),
    (dict(n_mels=90), "n_mels must be an integer in [1, 89]"), (dict(n_mels=True), "n_mels")])
def test_bad_settings_name_the_field(overrides, field, tmp_path):
    seed = overrides.pop("seed", 0)
    with pytest.raises(ValueError, match=re.escape(field)):
        registry.load("numbers", seed=seed, cache_dir=tmp_path, **overrides)


def test_episode_samplers_work_on_numbers(small):
    gen = torch.Generator().manual_seed(0)
    train = small.splits["meta_train"]
    for modality in (small.source, small.target):
        tasks = [sample_classification_task(modality, train, 5, 1, 3, gen) for _ in range(2)]
        batch = stack_tasks(tasks)
        assert batch.support[0].shape[:2] == (2, 5) and batch.query[0].shape[:2] == (2, 15)
    strong = sample_alignment_task(small, train, 5, 2, gen)
    assert strong.source[0].shape == (10, 1, 16, 32) and strong.target[0].shape == (10, 40, 144)
    weak = sample_alignment_task(small, train, 2, 3, gen, weak=True)  # 2 decades: thirties, forties
    assert weak.groups_s.tolist() == [0, 0, 0, 1, 1, 1]
    task = sample_classification_task(small.target, small.eval_tasks[0], 5, 1, 3, gen, fixed_concepts=True)
    assert task.concepts.tolist() == small.eval_tasks[0]


def test_nearest_centroid_baseline_runs_and_beats_nothing_absurd(small):
    acc = registry.nearest_centroid_baseline(small, shots=1, n_query=3, repeats=2)
    assert 0.0 <= acc <= 1.0


def test_cli_info_prints_classes(tmp_path):
    """The quick preset through ``python -m magma_teach data numbers --info`` (generates ~1,800 clips)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CI": "1"}
    out = subprocess.run([sys.executable, "-m", "magma_teach", "data", "numbers", "--info",
                          "--cache-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "90 classes" in lines
    assert any("meta_train 60, val 10, meta_test 20" in line for line in lines)
    assert any("(1800, 40, 144)" in line for line in lines) and any("(1800, 1, 16, 32)" in line for line in lines)
    assert any(line.startswith("cache: ") and "numbers-" in line for line in lines)
