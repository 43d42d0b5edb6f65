"""Tests for retrieval metrics, accuracy, mean ± std and symmetric label noise."""

import numpy as np
import pytest
import torch

from magma_teach import evaluate, losses
from magma_teach.evaluate import accuracy, mean_std, retrieval_metrics, symmetric_noise

# Each row's true match is the diagonal entry; true ranks are [1, 2, 1, 4].
SIM = torch.tensor([
    [0.9, 0.1, 0.2, 0.3],  # nothing beats 0.9 → rank 1
    [0.8, 0.5, 0.1, 0.2],  # 0.8 beats 0.5 → rank 2
    [0.1, 0.2, 0.7, 0.3],  # rank 1
    [0.9, 0.8, 0.7, 0.1],  # three beat 0.1 → rank 4
])


def test_retrieval_metrics_on_crafted_matrix():
    m = retrieval_metrics(SIM)
    assert set(m) == {"R@1", "R@5", "R@10", "rank"}
    assert m["R@1"] == pytest.approx(50.0)
    assert m["R@5"] == pytest.approx(100.0) and m["R@10"] == pytest.approx(100.0)
    assert m["rank"] == pytest.approx(1.5)  # median of [1, 1, 2, 4]
    assert all(isinstance(v, float) for v in m.values())


def test_retrieval_custom_ks_and_numpy_input():
    m = retrieval_metrics(SIM.numpy(), ks=(1, 2, 3))
    assert m == {"R@1": 50.0, "R@2": 75.0, "R@3": 75.0, "rank": 1.5}


def test_retrieval_ties_count_only_strictly_more_similar():
    assert retrieval_metrics(torch.ones(3, 3))["rank"] == 1.0
    assert retrieval_metrics(torch.ones(3, 3))["R@1"] == 100.0


def test_retrieval_extra_gallery_items_are_distractors():
    sim = torch.tensor([[0.5, 0.0, 0.9], [0.0, 0.5, 0.1]])  # query 0 loses to distractor 2
    m = retrieval_metrics(sim, ks=(1,))
    assert m["R@1"] == 50.0 and m["rank"] == 1.5


def test_retrieval_bad_inputs_raise():
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics(torch.zeros(4))
    with pytest.raises(ValueError, match="queries"):
        retrieval_metrics(torch.zeros(4, 2))


def test_cosine_alignment_loss_is_re_exported():
    assert evaluate.cosine_alignment_loss is losses.cosine_alignment_loss
    z = torch.eye(3)
    assert evaluate.cosine_alignment_loss(z, z).item() == pytest.approx(0.0, abs=1e-7)


def test_noise_rate_zero_is_an_unchanged_copy():
    labels = torch.arange(10) % 4
    noisy = symmetric_noise(labels, 4, 0.0, seed=0)
    assert torch.equal(noisy, labels) and noisy is not labels and noisy.dtype == torch.int64


def test_noise_rate_one_changes_every_label():
    labels = torch.arange(1000) % 7
    assert (symmetric_noise(labels, 7, 1.0, seed=0) != labels).all()
    two = torch.arange(100) % 2
    assert torch.equal(symmetric_noise(two, 2, 1.0, seed=0), 1 - two)  # binary: flip = the other class


def test_noise_flip_rate_and_uniform_over_other_classes():
    k, rate = 5, 0.3
    labels = torch.randint(k, (20_000,), generator=torch.Generator().manual_seed(0))
    noisy = symmetric_noise(labels, k, rate, seed=1)
    flipped = noisy != labels
    assert flipped.float().mean().item() == pytest.approx(rate, abs=0.01)
    assert noisy.min() >= 0 and noisy.max() < k
    # shift (noisy − true) mod k of a flipped label is never 0 and uniform over 1..k−1: chi-square, 3 dof
    shift = ((noisy - labels) % k)[flipped]
    counts = torch.bincount(shift, minlength=k).double()
    assert counts[0] == 0
    expected = flipped.sum().item() / (k - 1)
    chi2 = (((counts[1:] - expected) ** 2) / expected).sum().item()
    assert chi2 < 16.3  # 99.9th percentile of chi-square with 3 dof
    # per true class, the new labels cover every other class about equally
    for c in range(k):
        new = noisy[flipped & (labels == c)]
        share = torch.bincount(new, minlength=k).double() / len(new)
        assert share[c] == 0
        assert torch.allclose(share[torch.arange(k) != c], torch.full((k - 1,), 1 / (k - 1), dtype=torch.double),
                              atol=0.05)


def test_noise_is_seeded_and_leaves_input_alone():
    labels = torch.arange(500) % 10
    before = labels.clone()
    a, b = symmetric_noise(labels, 10, 0.4, seed=3), symmetric_noise(labels, 10, 0.4, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, symmetric_noise(labels, 10, 0.4, seed=4))
    assert torch.equal(labels, before)


def test_noise_returns_numpy_for_numpy_input():
    out = symmetric_noise(np.array([0, 1, 2, 3]), 4, 1.0, seed=0)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64 and (out != np.arange(4)).all()


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_noise_bad_rate_raises(rate):
    with pytest.raises(ValueError, match="rate"):
        symmetric_noise(torch.zeros(3, dtype=torch.long), 3, rate, seed=0)


def test_noise_bad_classes_and_labels_raise():
    with pytest.raises(ValueError, match="num_classes"):
        symmetric_noise(torch.zeros(3, dtype=torch.long), 1, 0.5, seed=0)
    with pytest.raises(ValueError, match="labels"):
        symmetric_noise(torch.tensor([0, 3]), 3, 0.5, seed=0)
    with pytest.raises(ValueError, match="labels"):
        symmetric_noise(torch.tensor([-1, 0]), 3, 0.5, seed=0)


def test_accuracy_from_logits_and_predictions():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 1])
    assert accuracy(logits, labels) == pytest.approx(75.0)
    assert accuracy(torch.tensor([0, 1, 0, 0]), labels) == pytest.approx(50.0)
    assert accuracy(np.array([1, 1]), np.array([1, 1])) == 100.0
    with pytest.raises(ValueError):
        accuracy(torch.tensor([0, 1]), torch.tensor([0, 1, 1]))


def test_mean_std_uses_sample_std():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == pytest.approx(2.5)
    assert std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert mean_std(torch.tensor([7.0])) == (7.0, 0.0)
    with pytest.raises(ValueError):
        mean_std([])
