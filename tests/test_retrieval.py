"""Table 3's adaptation: each starting point adapts on the K pairs with the alignment loop it was trained with."""

import copy
from dataclasses import replace

import pytest
import torch

from magma_teach.data.episodes import sample_alignment_task
from magma_teach.data.registry import load
from magma_teach.experiments import PRESETS, magma_config
from magma_teach.experiments.retrieval import _adapt_alignment, _only, _retrieval_split
from magma_teach.magma import CrossModalModel, alignment_loss, alignment_view

K = 3


@pytest.fixture(scope="module")
def numbers():
    data = load("numbers", preset="quick", seed=0)
    adapt, held_out = _retrieval_split(data, K, seed=0)
    return data, adapt, held_out


def _start(data, approach):
    cfg = magma_config(PRESETS["quick"], data, approach=approach)
    cfg = replace(cfg, align_inner=replace(cfg.align_inner, steps=3))  # a short loop keeps the test fast
    torch.manual_seed(0)
    return CrossModalModel.for_dataset(data, n_way=cfg.n_way), cfg


def _encoders(model):
    return {k: v.detach().clone() for k, v in model.parts("source", "target").items()}


def test_adaptation_pairs_are_k_per_meta_test_number_and_disjoint_from_the_held_out(numbers):
    data, adapt, held_out = numbers
    labels = data.source.labels[adapt[:, 0]]
    assert sorted(set(labels.tolist())) == sorted(data.splits["meta_test"])
    assert torch.bincount(labels).max() == K
    assert not set(map(tuple, adapt.tolist())) & set(map(tuple, held_out.tolist()))


def test_plain_alignment_start_adapts_as_torch_adam_with_default_betas_over_wide_batches(numbers):
    data, adapt, _ = numbers
    model, cfg = _start(data, "Align + Meta Classify")
    assert cfg.align_inner.betas[0] == 0.0  # the meta loop's Adam; plain alignment never trained with it
    adapted = _encoders(_adapt_alignment(model, data, adapt, cfg, meta=False))

    # Reference: torch.optim.Adam with its default betas (0.9, 0.999) over the batches plain alignment
    # draws — every meta-test number in each one, as align_way × meta_batch covers them all here.
    reference, cfg_k = copy.deepcopy(model), replace(cfg, pairs_per_concept=min(cfg.pairs_per_concept, K))
    only, concepts = _only(data, adapt), data.splits["meta_test"]
    assert (cfg.align_way or cfg.n_way) * cfg.meta_batch >= len(concepts)
    opt = torch.optim.Adam(reference.parts("source", "target").values(), lr=cfg.align_inner.lr)
    loss, view, g = alignment_loss(reference, cfg.temperature, cfg.weak), alignment_view(only, cfg_k), torch.Generator()
    g.manual_seed(0)
    for _ in range(cfg.align_inner.steps):
        task = sample_alignment_task(view, concepts, len(concepts), cfg_k.pairs_per_concept, g, weak=cfg.weak)
        assert torch.unique(task.groups_s).numel() == len(concepts)
        opt.zero_grad()
        loss(reference.parts("source", "target"), task).backward()
        opt.step()
    for key, value in _encoders(reference).items():
        assert torch.allclose(adapted[key], value, atol=1e-6), key


def test_the_two_loops_move_one_start_differently_and_leave_the_start_untouched(numbers):
    data, adapt, _ = numbers
    model, cfg = _start(data, "Align + Meta Classify")
    before = _encoders(model)
    plain = _encoders(_adapt_alignment(model, data, adapt, cfg, meta=False))
    meta = _encoders(_adapt_alignment(model, data, adapt, cfg, meta=True))
    assert all(torch.equal(before[k], v) for k, v in _encoders(model).items())  # adaptation works on a copy
    assert any(not torch.allclose(plain[k], meta[k]) for k in plain)
    assert all(not torch.equal(plain[k], before[k]) for k in plain if k.startswith("target"))
