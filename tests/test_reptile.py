"""Task-batched Reptile must compute exactly what the plain sequential reference computes."""

import copy

import pytest
import torch

from magma_teach.data.episodes import AlignmentTask, stack_tasks
from magma_teach.encoders import AudioEncoder, Classifier, ImageEncoder
from magma_teach.magma import CrossModalModel, alignment_loss
from magma_teach.reptile import (EpsilonSchedule, InnerLoop, batched_adapt, meta_step, reptile_update,
                                 sequential_adapt)


def _model_and_tasks(n_tasks=4, batch=6, seed=0, dtype=torch.float32, device="cpu"):
    torch.manual_seed(seed)
    model = CrossModalModel(ImageEncoder(1, dim=16, width=8), AudioEncoder(12, dim=16, width=16), Classifier(16))
    tasks = []
    for _ in range(n_tasks):
        lengths = torch.randint(10, 31, (batch,))
        tasks.append(AlignmentTask((torch.randn(batch, 1, 8, 16, dtype=dtype), torch.ones(batch, dtype=torch.long)),
                                   (torch.randn(batch, 12, 30, dtype=dtype), lengths),
                                   torch.arange(batch), torch.arange(batch)))
    # Drawn on the CPU and then moved, so every device gets the same numbers.
    tasks = [AlignmentTask(*[_to(field, device) for field in task]) for task in tasks]
    return model.to(device=device, dtype=dtype), tasks


def _to(x, device):
    return tuple(_to(v, device) for v in x) if isinstance(x, tuple) else x.to(device)


# SGD is compared in float32. Adam is compared in float64: Adam divides by sqrt(v), so a gradient
# that is zero up to rounding (a dead ReLU) becomes a step of about ±lr whose sign is the rounding
# noise; batched and sequential kernels round differently, so in float32 those entries differ by
# chance, not by a bug. In float64 the same computation agrees to 1e-9.
@pytest.mark.parametrize("optimizer, dtype, atol", [("sgd", torch.float32, 1e-5), ("adam", torch.float64, 1e-9)])
def test_batched_equals_sequential(device, optimizer, dtype, atol):
    model, tasks = _model_and_tasks(dtype=dtype, device=device)
    loss = alignment_loss(model, temperature=0.1, weak=False)
    params = model.parts("source", "target")
    inner = InnerLoop(steps=3, lr=1e-2, optimizer=optimizer, betas=(0.9, 0.999))
    fast = batched_adapt(loss, params, stack_tasks(tasks), inner)
    slow = sequential_adapt(loss, params, tasks, inner)
    for k in params:
        assert fast[k].shape == (len(tasks), *params[k].shape)
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-4, atol=atol)
        assert not torch.allclose(fast[k][0], params[k])  # it really moved


def test_meta_step_batched_equals_sequential_update(device):
    model_a, tasks = _model_and_tasks(n_tasks=3, device=device)
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


def test_sgd_inner_loop_hand_computed(device):
    # loss = (w - target)^2 / 2 → one SGD step of lr 0.5 halves the distance to the target.
    def loss(p, target):
        return 0.5 * ((p["w"] - target) ** 2).sum()
    fast = batched_adapt(loss, {"w": torch.zeros(1, device=device)}, torch.tensor([[2.0], [4.0]], device=device),
                         InnerLoop(1, 0.5, "sgd"))
    assert torch.allclose(fast["w"], torch.tensor([[1.0], [2.0]], device=device))


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


# ---------------------------------------------------------------- update-rule options
from magma_teach.reptile import AdamState, NonFiniteError, OuterUpdate, Reptile  # noqa: E402


def _quadratic(params, task):
    """A task is (target (D,), scale ()): loss = scale · |w − target|² / 2 plus a coupling term."""
    target, scale = task
    w = params["w"]
    return 0.5 * scale * ((w - target) ** 2).sum() + 0.1 * (w.prod() ** 2)


def _quadratic_tasks(n, seed=0, dim=3, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(dim, generator=g, dtype=torch.float64).to(device),
             (torch.rand((), generator=g, dtype=torch.float64) + 0.5).to(device)) for _ in range(n)]


def test_carried_inner_state_equals_torch_adam_over_the_task_sequence(device):
    """T = 1, ε = 1, carried state: meta-training is one torch.optim.Adam over the tasks in sequence."""
    tasks = _quadratic_tasks(6, device=device)
    inner = InnerLoop(steps=3, lr=0.05, betas=(0.0, 0.999), carry_state=True)
    theta = {"w": torch.zeros(3, dtype=torch.float64, device=device)}
    reptile = Reptile(theta, inner)
    for task in tasks:
        reptile.step(_quadratic, stack_tasks([task]), epsilon=1.0)

    w = torch.zeros(3, dtype=torch.float64, device=device, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05, betas=(0.0, 0.999), eps=inner.eps)
    for task in tasks:
        for _ in range(inner.steps):
            opt.zero_grad()
            _quadratic({"w": w}, task).backward()
            opt.step()
    torch.testing.assert_close(theta["w"], w.detach(), rtol=0, atol=1e-12)
    assert reptile.state.step == len(tasks) * inner.steps


def test_carried_state_with_a_meta_batch_restores_parameters_but_not_the_optimizer(device):
    """T = 3: each task restarts from θ while one Adam state runs on (supervised-reptile's way)."""
    tasks = _quadratic_tasks(3, seed=1, device=device)
    inner = InnerLoop(steps=2, lr=0.1, betas=(0.9, 0.999), carry_state=True)
    theta = {"w": torch.full((3,), 0.5, dtype=torch.float64, device=device)}
    adapted = Reptile(theta, inner).adapt(_quadratic, stack_tasks(tasks))
    reference = sequential_adapt(_quadratic, theta, tasks, inner, carry=True)
    torch.testing.assert_close(adapted["w"], reference["w"], rtol=0, atol=1e-12)
    fresh = sequential_adapt(_quadratic, theta, tasks, inner, carry=False)
    assert not torch.allclose(adapted["w"][1:], fresh["w"][1:])  # the carried moments matter


@pytest.mark.parametrize("rule", ["adam", "sgd"])
def test_outer_optimizer_equals_torch_optim_fed_the_pseudo_gradient(device, rule):
    tasks = _quadratic_tasks(8, seed=2, device=device)
    inner = InnerLoop(steps=2, lr=0.1, optimizer="sgd")
    outer = OuterUpdate(rule, lr=0.05, betas=(0.9, 0.99), momentum=0.8)
    theta = {"w": torch.zeros(3, dtype=torch.float64, device=device)}
    reptile = Reptile(theta, inner, outer)

    w = torch.zeros(3, dtype=torch.float64, device=device, requires_grad=True)
    opt = (torch.optim.Adam([w], lr=0.05, betas=(0.9, 0.99)) if rule == "adam"
           else torch.optim.SGD([w], lr=0.05, momentum=0.8))
    for batch in (tasks[:4], tasks[4:]):
        reptile.step(_quadratic, stack_tasks(batch), epsilon=0.3)  # ε is not used by an optimizer rule
        adapted = sequential_adapt(_quadratic, {"w": w.detach()}, batch, inner)["w"]
        w.grad = w.detach() - adapted.mean(0)
        opt.step()
    torch.testing.assert_close(theta["w"], w.detach(), rtol=0, atol=1e-12)


def test_outer_sgd_with_lr_epsilon_is_the_interpolation():
    tasks = stack_tasks(_quadratic_tasks(4, seed=3))
    inner = InnerLoop(steps=3, lr=0.1)
    a, b = {"w": torch.ones(3, dtype=torch.float64)}, {"w": torch.ones(3, dtype=torch.float64)}
    Reptile(a, inner).step(_quadratic, tasks, epsilon=0.4)
    Reptile(b, inner, OuterUpdate("sgd", lr=0.4, momentum=0.0)).step(_quadratic, tasks, epsilon=1.0)
    torch.testing.assert_close(a["w"], b["w"], rtol=0, atol=1e-12)


def test_meta_batch_of_one_task():
    task = _quadratic_tasks(1, seed=4)
    theta = {"w": torch.zeros(3, dtype=torch.float64)}
    inner = InnerLoop(steps=4, lr=0.1, optimizer="sgd")
    Reptile(theta, inner).step(_quadratic, stack_tasks(task), epsilon=1.0)
    torch.testing.assert_close(theta["w"], sequential_adapt(_quadratic, {"w": torch.zeros(3, dtype=torch.float64)},
                                                            task, inner)["w"][0])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fresh_batch_per_step_equals_the_sequential_reference(device, optimizer):
    """per_step: inner step s of task t uses batch s of that task."""
    steps = 3
    per_task = [_quadratic_tasks(steps, seed=10 + t, device=device) for t in range(4)]  # 4 tasks × 3 batches
    stacked = stack_tasks([stack_tasks(batches) for batches in per_task])  # (T, S, ...)
    inner = InnerLoop(steps=steps, lr=0.1, optimizer=optimizer, betas=(0.9, 0.999))
    theta = {"w": torch.full((3,), 0.3, dtype=torch.float64, device=device)}
    fast = batched_adapt(_quadratic, theta, stacked, inner, per_step=True)
    slow = sequential_adapt(_quadratic, theta, per_task, inner, per_step=True)
    torch.testing.assert_close(fast["w"], slow["w"], rtol=0, atol=1e-12)
    reused = batched_adapt(_quadratic, theta, stack_tasks([b[0] for b in per_task]), inner)
    assert not torch.allclose(fast["w"], reused["w"])  # a different batch per step really is different


def test_per_step_tasks_need_a_step_axis_as_long_as_the_inner_loop():
    stacked = stack_tasks([stack_tasks(_quadratic_tasks(2, seed=t)) for t in range(2)])  # S = 2
    with pytest.raises(ValueError, match="steps=3"):
        batched_adapt(_quadratic, {"w": torch.zeros(3, dtype=torch.float64)}, stacked, InnerLoop(3, 0.1), per_step=True)


def test_batched_path_raises_the_eager_error_for_a_group_without_target_rows(device):
    """weak_nce cannot check values under vmap: the loss's check runs before it, with the same message."""
    model, tasks = _model_and_tasks(n_tasks=2, device=device)
    bad = tasks[1]._replace(groups_s=torch.tensor([0, 0, 1, 1, 2, 9], device=device),
                            groups_t=torch.tensor([0, 0, 1, 1, 2, 2], device=device))
    loss = alignment_loss(model, temperature=0.1, weak=True)
    with pytest.raises(ValueError, match=r"every source row needs at least one target row of its group \(task\(s\) \[1\]\)"):
        batched_adapt(loss, model.parts("source", "target"), stack_tasks([tasks[0], bad]), InnerLoop(2, 1e-3))
    with pytest.raises(ValueError, match="every source row needs at least one target row of its group"):
        loss(model.parts("source", "target"), bad)  # the eager path says the same


def test_no_nan_leaves_an_inner_loop(device):
    def exploding(params, task):
        return (params["w"] * task).sum() / (params["w"] - params["w"].detach()).sum()  # 0/0 gradient → NaN
    with pytest.raises(NonFiniteError, match=r"non-finite values in w for task\(s\) \[0, 1\]"):
        batched_adapt(exploding, {"w": torch.ones(2, device=device)}, torch.ones(2, 2, device=device),
                      InnerLoop(1, 0.1, "sgd"))


def test_carried_state_refuses_stacked_tasks_and_sgd():
    with pytest.raises(ValueError, match="one task at a time"):
        batched_adapt(_quadratic, {"w": torch.zeros(3, dtype=torch.float64)}, stack_tasks(_quadratic_tasks(2)),
                      InnerLoop(1, 0.1), state=AdamState.zeros({"w": torch.zeros(3, dtype=torch.float64)}))
    with pytest.raises(ValueError, match="carry_state"):
        InnerLoop(optimizer="sgd", carry_state=True)


@pytest.mark.parametrize("kwargs, field", [({"rule": "rmsprop"}, "rule"), ({"lr": 0.0}, "outer lr"),
                                           ({"momentum": 1.5}, "outer momentum"), ({"betas": (0.9, 1.0)}, "outer betas")])
def test_outer_update_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        OuterUpdate(**kwargs)


# ---------------------------------------------------------------- tied parameters
def test_one_encoder_for_both_modalities_sums_both_uses(device):
    """CrossModalModel(enc, enc, φ): the shared tensors are listed once and get both uses' gradients."""
    from magma_teach.encoders import VectorEncoder

    torch.manual_seed(0)
    enc = VectorEncoder(4, dim=5, hidden=6)
    model = CrossModalModel(enc, enc, Classifier(5)).to(device)
    params = model.parts("source", "target")
    assert len(params) == len(list(enc.parameters())) == 4
    assert set(params) == {f"source.{k}" for k, _ in enc.named_parameters()}
    ids = torch.arange(6)
    task = AlignmentTask((torch.randn(6, 4), torch.ones(6, dtype=torch.long)),
                         (torch.randn(6, 4), torch.ones(6, dtype=torch.long)), ids, ids)
    task = AlignmentTask(*[_to(field, device) for field in task])
    loss = alignment_loss(model, 0.1, weak=False)
    inner = InnerLoop(steps=1, lr=0.1, optimizer="sgd")
    fast = batched_adapt(loss, params, stack_tasks([task]), inner)
    # Reference: ordinary autograd through the one shared module.
    reference = {k: p.detach().clone().requires_grad_(True) for k, p in enc.named_parameters()}
    z_s = torch.func.functional_call(enc, reference, task.source)
    z_t = torch.func.functional_call(enc, reference, task.target)
    from magma_teach.losses import strong_nce
    strong_nce(z_s, z_t, 0.1).backward()
    for k, p in reference.items():
        torch.testing.assert_close(fast[f"source.{k}"][0], p.detach() - 0.1 * p.grad)


def test_a_part_called_with_all_its_names_never_looks_for_aliases(monkeypatch):
    """Aliases are found by comparing tensor ids, which would tie a compiled step to one model
    (test_compiled.py): a call whose params hold every name of the part must not look them up."""
    from magma_teach.encoders import VectorEncoder

    model = CrossModalModel(VectorEncoder(4, dim=5, hidden=6), VectorEncoder(3, dim=5, hidden=6), Classifier(5))
    params = model.parts("source", "target")
    expected = model.source(torch.ones(2, 4))
    monkeypatch.setattr(CrossModalModel, "_aliases", lambda self: pytest.fail("aliases looked up"))
    torch.testing.assert_close(model.call("source", params, torch.ones(2, 4)), expected)
