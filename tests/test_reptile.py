"""Task-batched Reptile must compute exactly what the plain sequential reference computes."""

import copy

import pytest
import torch

from magma_teach.data.episodes import AlignmentTask, stack_tasks
from magma_teach.encoders import AudioEncoder, Classifier, ImageEncoder
from magma_teach.magma import CrossModalModel, alignment_loss
from magma_teach.reptile import (EpsilonSchedule, InnerLoop, batched_adapt, meta_step, reptile_update,
                                 sequential_adapt)


def _model_and_tasks(n_tasks=4, batch=6, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = CrossModalModel(ImageEncoder(1, dim=16, width=8), AudioEncoder(12, dim=16, width=16), Classifier(16))
    tasks = []
    for _ in range(n_tasks):
        lengths = torch.randint(10, 31, (batch,))
        tasks.append(AlignmentTask((torch.randn(batch, 1, 8, 16, dtype=dtype), torch.ones(batch, dtype=torch.long)),
                                   (torch.randn(batch, 12, 30, dtype=dtype), lengths),
                                   torch.arange(batch), torch.arange(batch)))
    return model.to(dtype), tasks


# SGD is compared in float32. Adam is compared in float64: Adam divides by sqrt(v), so a gradient
# that is zero up to rounding (a dead ReLU) becomes a step of about ±lr whose sign is the rounding
# noise; batched and sequential kernels round differently, so in float32 those entries differ by
# chance, not by a bug. In float64 the same computation agrees to 1e-9.
@pytest.mark.parametrize("optimizer, dtype, atol", [("sgd", torch.float32, 1e-5), ("adam", torch.float64, 1e-9)])
def test_batched_equals_sequential(optimizer, dtype, atol):
    model, tasks = _model_and_tasks(dtype=dtype)
    loss = alignment_loss(model, temperature=0.1, weak=False)
    params = model.parts("source", "target")
    inner = InnerLoop(steps=3, lr=1e-2, optimizer=optimizer, betas=(0.9, 0.999))
    fast = batched_adapt(loss, params, stack_tasks(tasks), inner)
    slow = sequential_adapt(loss, params, tasks, inner)
    for k in params:
        assert fast[k].shape == (len(tasks), *params[k].shape)
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-4, atol=atol)
        assert not torch.allclose(fast[k][0], params[k])  # it really moved


def test_meta_step_batched_equals_sequential_update():
    model_a, tasks = _model_and_tasks(n_tasks=3)
    model_b = copy.deepcopy(model_a)
    inner = InnerLoop(steps=2, lr=1e-2, optimizer="sgd")
    meta_step(alignment_loss(model_a, 0.1, False), model_a.parts("source", "target"), stack_tasks(tasks), inner, 0.5)
    meta_step(alignment_loss(model_b, 0.1, False), model_b.parts("source", "target"), tasks, inner, 0.5,
              batched=False)
    for (k, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=k)


def test_reptile_update_hand_computed():
    params = {"w": torch.tensor([0.0, 2.0])}
    adapted = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]])}  # mean = [2, 3]
    reptile_update(params, adapted, epsilon=0.5)
    assert torch.equal(params["w"], torch.tensor([1.0, 2.5]))


def test_sgd_inner_loop_hand_computed():
    # loss = (w - target)^2 / 2 → one SGD step of lr 0.5 halves the distance to the target.
    def loss(p, target):
        return 0.5 * ((p["w"] - target) ** 2).sum()
    fast = batched_adapt(loss, {"w": torch.zeros(1)}, torch.tensor([[2.0], [4.0]]), InnerLoop(1, 0.5, "sgd"))
    assert torch.allclose(fast["w"], torch.tensor([[1.0], [2.0]]))


def test_epsilon_schedule():
    assert EpsilonSchedule(0.3)(5, 10) == 0.3
    lin = EpsilonSchedule(1.0, 0.0)
    assert lin(0, 11) == 1.0 and abs(lin(5, 11) - 0.5) < 1e-12 and lin(10, 11) == 0.0


@pytest.mark.parametrize("kwargs, field", [({"steps": 0}, "steps"), ({"lr": -1.0}, "lr"),
                                           ({"optimizer": "rmsprop"}, "optimizer"), ({"steps": 2.5}, "steps")])
def test_inner_loop_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        InnerLoop(**kwargs)


def test_epsilon_out_of_range():
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonSchedule(1.5)
    with pytest.raises(ValueError, match="epsilon"):
        reptile_update({"w": torch.zeros(1)}, {"w": torch.zeros(1, 1)}, -0.1)
