"""The few-shot evaluation protocol (magma_teach.protocol): fixed tasks checked before any draw,
hand-computed accuracies, and support/query draws that never share an example."""

import pytest
import torch

from magma_teach.data.base import Modality
from magma_teach.protocol import default_query_size, evaluation_tasks, run_protocol, summarize

N_PER_CONCEPT = 12


@pytest.fixture(scope="module")
def indices():
    """10 concepts × 12 examples; x is the example's own index, so draws can be inspected."""
    labels = torch.arange(10).repeat_interleave(N_PER_CONCEPT)
    return Modality("vector", torch.arange(len(labels)), torch.ones(len(labels), dtype=torch.long), labels)


TASKS = [[0, 1, 2], [3, 4, 5], [9, 0, 7]]


@pytest.mark.parametrize("tasks, match", [
    ([[0, 0, 1], [2, 3, 4]], r"tasks\[0\] must name distinct concepts .*\[0\] more than once"),
    ([[0, 1, 2], [3, 4]], "same number of concepts"),
    ([], "at least one evaluation task"), ([[]], "N >= 1"),
    ([[0, 1.5, 2]], "integer concept ids"), ("012", "list of concept-id lists"),
])
def test_evaluation_tasks_refuse_bad_tasks(indices, tasks, match):
    with pytest.raises(ValueError, match=match):
        evaluation_tasks(indices, tasks, 1, 1, torch.Generator())
    with pytest.raises(ValueError, match=match):
        run_protocol(lambda batch: batch.query_y, indices, tasks, shots=(1,), repeats=1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(shots=()), "shots must be a non-empty list"), (dict(shots=5), "shots must be a non-empty list"),
    (dict(shots=(1, 0)), "shots"), (dict(shots=(1, True)), "shots"), (dict(shots=(2.5,)), "shots"),
    (dict(n_query=0), "n_query"), (dict(n_query=-3), "n_query"), (dict(n_query=2.0), "n_query"),
    (dict(repeats=0), "repeats"), (dict(label_noise=1.5), "label_noise"),
    (dict(label_noise=float("nan")), "label_noise"),
    (dict(shots=(12,)), r"max\(shots\) must be at most 11"),
])
def test_run_protocol_refuses_bad_settings_before_any_draw(indices, kwargs, match):
    calls = []
    with pytest.raises(ValueError, match=match):
        run_protocol(lambda batch: calls.append(1) or batch.query_y, indices, TASKS, **{"repeats": 1, **kwargs})
    assert not calls


def test_support_and_query_never_share_an_example(indices):
    for k in (1, 5, 10):
        batch = evaluation_tasks(indices, TASKS, k, N_PER_CONCEPT - k, torch.Generator().manual_seed(k))
        for t, concepts in enumerate(TASKS):
            support, query = batch.support[0][t].tolist(), batch.query[0][t].tolist()
            assert not set(support) & set(query) and len(set(support + query)) == len(support + query)
            labels = indices.labels
            assert labels[batch.support[0][t]].tolist() == [concepts[y] for y in batch.support_y[t].tolist()]
            assert labels[batch.query[0][t]].tolist() == [concepts[y] for y in batch.query_y[t].tolist()]


def test_hand_computed_accuracies(indices):
    perfect = run_protocol(lambda batch: batch.query_y, indices, TASKS, shots=(1, 5), repeats=2, n_query=4)
    assert len(perfect) == 2 * 2 * 3 and (perfect["accuracy"] == 100.0).all()
    # always label 0: one class in three is right, as every class has n_query queries
    constant = run_protocol(lambda batch: torch.zeros_like(batch.query_y), indices, TASKS, shots=(1,), repeats=3,
                            n_query=4)
    assert constant["accuracy"].tolist() == pytest.approx([100 / 3] * 9)
    table = summarize(constant)
    assert table["mean"].tolist() == pytest.approx([100 / 3]) and table["std"].tolist() == pytest.approx([0.0])


def test_default_query_size_leaves_room_for_the_largest_shot(indices):
    assert default_query_size(indices, TASKS, (1, 5)) == 7  # 12 examples - 5 shots
    assert default_query_size(indices, TASKS, (1,)) == 11 and default_query_size(indices, TASKS, (1,), cap=3) == 3


def test_a_tie_between_labels_counts_its_share_not_the_first_label():
    """Scores that tie all N labels give 1/N per query, wherever the true label is; labels give 0 or 1."""
    from magma_teach.protocol import task_accuracy

    query_y = torch.tensor([[0, 1, 2, 3]])  # one task, four queries of a 4-way task
    tied = torch.zeros(1, 4, 4)
    assert torch.allclose(task_accuracy(tied, query_y), torch.tensor([25.0], dtype=torch.float64))
    assert torch.allclose(task_accuracy(tied.argmax(-1), query_y), torch.tensor([25.0], dtype=torch.float64))
    half = torch.tensor([[[1.0, 1.0, 0.0, 0.0]] * 4])  # labels 0 and 1 tie on every query
    assert torch.allclose(task_accuracy(half, query_y), torch.tensor([25.0], dtype=torch.float64))
    one_sided = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]])
    assert torch.allclose(task_accuracy(one_sided, torch.tensor([[0, 1]])), torch.tensor([50.0], dtype=torch.float64))
