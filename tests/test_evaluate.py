"""Tests for retrieval metrics, accuracy, mean ± std and symmetric label noise."""

import numpy as np
import pytest
import torch

from magma_teach import evaluate, losses
from magma_teach.evaluate import accuracy, concept_recall_at_1, mean_std, retrieval_metrics, symmetric_noise

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


@pytest.mark.parametrize("n", [1, 2, 7, 10])
def test_retrieval_constant_matrix_is_chance_not_perfect(n):
    m = retrieval_metrics(np.zeros((n, n)), ks=(1, 5, 10))
    assert m["rank"] == pytest.approx((n + 1) / 2)
    for k in (1, 5, 10):
        assert m[f"R@{k}"] == pytest.approx(100.0 * min(k, n) / n)


def test_retrieval_partial_ties_by_hand():
    sim = np.array([
        [0.5, 0.5, 0.9, 0.1],  # b=1 better, t=2 tied: rank 2.5; hits R@1 0, R@2 1/2, R@3 1
        [0.3, 0.3, 0.3, 0.3],  # b=0, t=4: rank 2.5; R@1 1/4, R@2 1/2, R@3 3/4
        [0.2, 0.7, 0.7, 0.7],  # b=0, t=3: rank 2;   R@1 1/3, R@2 2/3, R@3 1
    ])
    m = retrieval_metrics(sim, ks=(1, 2, 3, 4))
    assert m["R@1"] == pytest.approx(100 * (0 + 1 / 4 + 1 / 3) / 3)
    assert m["R@2"] == pytest.approx(100 * (1 / 2 + 1 / 2 + 2 / 3) / 3)
    assert m["R@3"] == pytest.approx(100 * (1 + 3 / 4 + 1) / 3)
    assert m["R@4"] == pytest.approx(100.0)
    assert m["rank"] == pytest.approx(2.5)  # median of [2.5, 2.5, 2]


def test_retrieval_infinite_scores_tie_like_any_other():
    m = retrieval_metrics(np.array([[np.inf, np.inf], [-np.inf, -np.inf]]), ks=(1,))
    assert m == {"R@1": 50.0, "rank": 1.5}


def test_retrieval_rank_is_scipy_average_rank():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    sim = rng.integers(0, 4, size=(20, 30)).astype(float)  # many ties
    ranks = stats.rankdata(-sim, method="average", axis=1)[np.arange(20), np.arange(20)]
    assert retrieval_metrics(sim)["rank"] == pytest.approx(np.median(ranks))


def test_retrieval_expected_hit_is_the_mean_over_random_tie_breaks():
    # R@k equals the average, over every tie-breaking order, of the plain "rank <= k" hit rate.
    rng = np.random.default_rng(1)
    sim = rng.integers(0, 3, size=(6, 6)).astype(float)
    hits = np.zeros(3)
    for _ in range(4000):
        order = np.argsort(-(sim + 1e-6 * rng.random(sim.shape)), axis=1)  # random tie-break, no reordering
        rank = np.argmax(order == np.arange(6)[:, None], axis=1) + 1
        hits += [np.mean(rank <= k) for k in (1, 2, 3)]
    m = retrieval_metrics(sim, ks=(1, 2, 3))
    for i, k in enumerate((1, 2, 3)):
        assert m[f"R@{k}"] == pytest.approx(100 * hits[i] / 4000, abs=1.5)


@pytest.mark.parametrize("seed", range(5))
def test_retrieval_invariant_to_gallery_order(seed):
    rng = np.random.default_rng(seed)
    sim = rng.integers(0, 3, size=(8, 12)).astype(float)  # ties everywhere
    base = retrieval_metrics(sim, ks=(1, 3, 5))
    # Reorder the pairs (rows and their matching columns together) and the distractors among themselves.
    pairs, distractors = rng.permutation(8), 8 + rng.permutation(4)
    shuffled = sim[pairs][:, np.concatenate([pairs, distractors])]
    assert retrieval_metrics(shuffled, ks=(1, 3, 5)) == pytest.approx(base)
    concepts = rng.integers(0, 3, size=12)
    assert concept_recall_at_1(shuffled, concepts[pairs], concepts[np.concatenate([pairs, distractors])]) == \
        pytest.approx(concept_recall_at_1(sim, concepts[:8], concepts))


def test_retrieval_extra_gallery_items_are_distractors():
    sim = torch.tensor([[0.5, 0.0, 0.9], [0.0, 0.5, 0.1]])  # query 0 loses to distractor 2
    m = retrieval_metrics(sim, ks=(1,))
    assert m["R@1"] == 50.0 and m["rank"] == 1.5


def test_retrieval_bad_inputs_raise():
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics(torch.zeros(4))
    with pytest.raises(ValueError, match="queries"):
        retrieval_metrics(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least one query"):
        retrieval_metrics(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(np.zeros((2, 2)), ks=(0,))


def test_retrieval_nan_raises():
    sim = np.eye(3)
    sim[1, 2] = np.nan
    with pytest.raises(ValueError, match="similarity must not contain NaN, got 1"):
        retrieval_metrics(sim)
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(torch.full((2, 2), float("nan")))


def test_concept_recall_by_hand_with_ties():
    sim = np.array([
        [0.9, 0.9, 0.1],  # top {0, 1}; concept 0 → 1 of 2
        [0.2, 0.8, 0.8],  # top {1, 2}; concept 1 → 2 of 2
        [0.0, 0.0, 0.0],  # all tied; concept 0 → 1 of 3
    ])
    assert concept_recall_at_1(sim, [0, 1, 0], np.array([0, 1, 1])) == pytest.approx(100 * (1 / 2 + 1 + 1 / 3) / 3)


def test_concept_recall_constant_is_share_of_same_concept_in_gallery():
    gallery = torch.tensor([0, 0, 0, 1, 2])
    queries = torch.tensor([0, 1, 2, 2])
    expected = 100 * np.mean([3 / 5, 1 / 5, 1 / 5, 1 / 5])
    assert concept_recall_at_1(torch.ones(4, 5), queries, gallery) == pytest.approx(expected)


def test_concept_recall_without_ties_is_argmax():
    g = torch.Generator().manual_seed(0)
    sim = torch.randn(15, 20, generator=g)
    queries, gallery = torch.randint(4, (15,), generator=g), torch.randint(4, (20,), generator=g)
    expected = 100.0 * float((gallery[sim.argmax(1)] == queries).float().mean())
    assert concept_recall_at_1(sim, queries, gallery) == pytest.approx(expected)


def test_concept_recall_bad_inputs_raise():
    with pytest.raises(ValueError, match="query_concepts must have shape \\(2,\\)"):
        concept_recall_at_1(np.zeros((2, 3)), [0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="gallery_concepts must have shape \\(3,\\)"):
        concept_recall_at_1(np.zeros((2, 3)), [0, 1], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        concept_recall_at_1(np.full((2, 2), np.nan), [0, 1], [0, 1])
    with pytest.raises(ValueError, match="2-D"):
        concept_recall_at_1(np.zeros(2), [0, 1], [0, 1])


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


@pytest.mark.parametrize("n_classes", [2, 5])
def test_accuracy_constant_logits_is_chance_not_argmax(n_classes):
    labels = torch.zeros(6, dtype=torch.long)  # argmax of constant logits would be 0: 100 %
    assert accuracy(torch.zeros(6, n_classes), labels) == pytest.approx(100.0 / n_classes)


def test_accuracy_partial_ties_by_hand():
    logits = np.array([[1.0, 1.0, 0.0],   # top {0, 1}, label 0 → 1/2
                       [2.0, 0.0, 2.0],   # top {0, 2}, label 1 → 0
                       [0.0, 3.0, 1.0]])  # top {1},    label 1 → 1
    assert accuracy(logits, np.array([0, 1, 1])) == pytest.approx(50.0)


def test_accuracy_on_stacked_tasks_and_class_order():
    g = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 3, (4, 7, 5), generator=g).float()  # (tasks, queries, classes), ties
    labels = torch.randint(0, 5, (4, 7), generator=g)
    base = accuracy(logits, labels)
    assert base == pytest.approx(np.mean([accuracy(logits[t], labels[t]) for t in range(4)]))
    perm = torch.randperm(5, generator=g)  # renaming the classes changes nothing
    assert accuracy(logits[..., perm], torch.argsort(perm)[labels]) == pytest.approx(base)


def test_accuracy_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        accuracy(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="labels must be integer class ids in \\[0, 2\\)"):
        accuracy(torch.zeros(2, 2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="labels must be integer"):
        accuracy(torch.zeros(2, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="leading shape"):
        accuracy(torch.zeros(3, 2, 4), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


def test_mean_std_uses_sample_std():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == pytest.approx(2.5)
    assert std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert mean_std(torch.tensor([7.0])) == (7.0, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_top_share_with_k_by_hand():
    scores = np.array([[3.0, 2.0, 2.0, 2.0, 0.0],   # top 2: item 0, then one of the three 2.0s
                       [1.0, 1.0, 1.0, 1.0, 1.0]])  # all tied: 2 of 5 slots
    hit = np.array([[True, True, False, False, True],
                    [True, True, False, False, True]])
    np.testing.assert_allclose(evaluate.top_share(scores, hit, k=2), [(1 + 1 / 3) / 2, 3 / 5])
    np.testing.assert_allclose(evaluate.top_share(scores, hit, k=1), [1.0, 3 / 5])
    np.testing.assert_allclose(evaluate.top_share(scores, hit, k=5), [3 / 5, 3 / 5])


def test_top_share_without_ties_is_the_share_in_the_sorted_top_k():
    rng = np.random.default_rng(0)
    scores, hit = rng.random((6, 9)), rng.random((6, 9)) < 0.4
    top3 = np.argsort(-scores, axis=1)[:, :3]
    np.testing.assert_allclose(evaluate.top_share(scores, hit, k=3), np.take_along_axis(hit, top3, 1).mean(1))


def test_top_share_bad_inputs_raise():
    with pytest.raises(ValueError, match="k must be at most"):
        evaluate.top_share(np.zeros((2, 3)), np.zeros((2, 3), bool), k=4)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        evaluate.top_share(np.zeros((2, 3)), np.zeros((2, 3), bool), k=0)
    with pytest.raises(ValueError, match="same shape"):
        evaluate.top_share(np.zeros((2, 3)), np.zeros((2, 2), bool))


def test_retrieval_recall_is_top_share_of_the_true_match():
    # R@k is the chance the true match is in the top k: k × its expected share of the top k.
    rng = np.random.default_rng(4)
    sim = rng.integers(0, 3, size=(7, 7)).astype(float)
    m = retrieval_metrics(sim, ks=(1, 2, 5))
    for k in (1, 2, 5):
        assert m[f"R@{k}"] == pytest.approx(100 * np.mean(k * evaluate.top_share(sim, np.eye(7, dtype=bool), k)))


@pytest.mark.parametrize("a, b, expected", [
    ((80.0, 1.0), (78.5, 2.0), "tie"),      # 1.5 apart, spread 2: inside the spread
    ((80.0, 1.0), (77.5, 2.0), "ahead"),    # 2.5 apart
    ((70.0, 0.5), (71.0, 0.2), "behind"),
    ((50.0, 0.0), (50.0, 0.0), "tie"),
])
def test_verdict_calls_a_difference_inside_the_spread_a_tie(a, b, expected):
    from magma_teach.evaluate import verdict

    assert verdict(*a, *b) == expected
    assert verdict(*b, *a) == {"ahead": "behind", "behind": "ahead", "tie": "tie"}[expected]


def test_verdict_rejects_negative_or_missing_spread():
    from magma_teach.evaluate import verdict

    with pytest.raises(ValueError, match="std_b"):
        verdict(1.0, 0.1, 2.0, float("nan"))
