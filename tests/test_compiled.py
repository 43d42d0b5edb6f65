"""The fast path of task-batched Reptile (``InnerLoop.fast``): compiled inner steps compute what the
eager loop computes, compile once per shape, and fail the way the eager loop fails.

On the CPU the compiled step is inductor's C++ code; on CUDA (tests marked ``cuda``) it is
``mode="reduce-overhead"``, one CUDA graph per step. Compiling takes seconds per loss and shape, so
these tests reuse few shapes and losses.
"""

import os
import warnings
from dataclasses import replace

import pytest
import torch
from torch._dynamo.utils import counters

from magma_teach import reptile
from magma_teach.data.episodes import AlignmentTask, stack_tasks
from magma_teach.encoders import AudioEncoder, Classifier, ImageEncoder
from magma_teach.magma import CrossModalModel, alignment_loss
from magma_teach.reptile import AdamState, InnerLoop, NonFiniteError, Reptile, batched_adapt


@pytest.fixture(autouse=True)
def _compiled_cpu_code_matches_aten(request):
    """Skip the CPU compiled path when ATen's kernels are forced to ``ATEN_CPU_CAPABILITY=default``.

    Inductor picks the vector instructions of its generated C++ from the CPU itself, not from that
    variable, and the code it then writes uses ``at::vec`` types that a default-capability build of
    the headers leaves out: g++ refuses it (a torch limitation, seen with torch 2.14). The eager
    path, which the rest of the suite tests under that variable, is what such a machine runs.
    """
    if ("device" in request.fixturenames and os.environ.get("ATEN_CPU_CAPABILITY") == "default"
            and request.getfixturevalue("device").type == "cpu"):
        pytest.skip("inductor's CPU code does not compile under ATEN_CPU_CAPABILITY=default")


def _quadratic(params, task):
    """A task is (target (3,), scale ()): scale · |w − target|² / 2 + b² · scale + a coupling term."""
    target, scale = task
    w = params["w"]
    return 0.5 * scale * ((w - target) ** 2).sum() + 0.1 * (w.prod() ** 2) + params["b"] ** 2 * scale


def _tasks(n, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return stack_tasks([(torch.randn(3, generator=g, dtype=torch.float64).to(device),
                         (torch.rand((), generator=g, dtype=torch.float64) + 0.5).to(device)) for _ in range(n)])


def _theta(device="cpu"):
    return {"w": torch.full((3,), 0.3, dtype=torch.float64, device=device),
            "b": torch.tensor(0.2, dtype=torch.float64, device=device)}


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


def _model_and_tasks(device, n_tasks=3, batch=6):
    torch.manual_seed(0)
    model = CrossModalModel(ImageEncoder(1, dim=16, width=8), AudioEncoder(12, dim=16, width=16), Classifier(16))
    g = torch.Generator().manual_seed(1)
    tasks = [AlignmentTask((torch.randn(batch, 1, 8, 16, generator=g), torch.ones(batch, dtype=torch.long)),
                           (torch.randn(batch, 12, 30, generator=g), torch.randint(10, 31, (batch,), generator=g)),
                           torch.arange(batch), torch.arange(batch)) for _ in range(n_tasks)]
    stacked = stack_tasks(tasks)
    return model.to(device), type(stacked)(*[_to(x, device) for x in stacked])


def _to(x, device):
    return tuple(_to(v, device) for v in x) if isinstance(x, tuple) else x.to(device)


# ---------------------------------------------------------------- the switch
def test_fast_switch_defaults_to_cuda_only():
    assert InnerLoop().fast is None
    assert InnerLoop().fast_on("cuda") and InnerLoop().fast_on(torch.device("cuda", 0))
    assert not InnerLoop().fast_on("cpu")
    assert InnerLoop(fast=True).fast_on("cpu") and not InnerLoop(fast=False).fast_on("cuda")


@pytest.mark.parametrize("value", [1, 0, "yes", "auto"])
def test_fast_switch_rejects_anything_but_none_true_false(value):
    with pytest.raises(ValueError, match=r"fast must be None \(on for CUDA, off on the CPU\), True or False"):
        InnerLoop(fast=value)


def test_fast_none_on_the_cpu_never_compiles():
    before = _graphs()
    for _ in range(reptile.FAST_AFTER_CALLS + 1):  # even a hot loop stays eager on the CPU
        batched_adapt(_quadratic, _theta(), _tasks(2), InnerLoop(1, 0.1))
    assert _graphs() == before


# ---------------------------------------------------------------- compiled = eager
def test_compiled_alignment_steps_equal_the_eager_loop(device):
    """The small CNN encoders of the batched-vs-sequential test, in float32 with SGD (Adam's update is the
    same code for every loss and is compared on the quadratic tasks below, in float64: Adam turns a
    gradient that is zero up to rounding into a step of ±lr with a random sign, see test_reptile.py).
    One compile of this graph takes about a minute on a busy 2-core CPU, so there is one such test."""
    model, tasks = _model_and_tasks(device)
    loss = alignment_loss(model, temperature=0.1, weak=False)
    params = model.parts("source", "target")
    inner = InnerLoop(steps=3, lr=1e-2, optimizer="sgd")
    eager = batched_adapt(loss, params, tasks, replace(inner, fast=False))
    compiled = batched_adapt(loss, params, tasks, replace(inner, fast=True))
    for k in params:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5, msg=k)
    assert not torch.allclose(compiled["target.conv1.weight"][0], params["target.conv1.weight"])  # it moved


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_compiled_per_step_batches_equal_the_eager_loop(device, optimizer):
    stacked = stack_tasks([_tasks(3, seed=10 + t, device=device) for t in range(4)])  # (T=4, S=3, ...): a batch per step
    inner = InnerLoop(steps=3, lr=0.1, optimizer=optimizer, betas=(0.9, 0.999))
    eager = batched_adapt(_quadratic, _theta(device), stacked, replace(inner, fast=False), per_step=True)
    compiled = batched_adapt(_quadratic, _theta(device), stacked, replace(inner, fast=True), per_step=True)
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=0, atol=1e-12)


def test_compiled_carried_state_equals_the_eager_loop(device):
    """Carried Adam state: T = 1 at a time, the step count grows call after call."""
    tasks = _tasks(4, seed=3, device=device)
    thetas = {}
    for fast in (False, True):
        theta = _theta(device)
        learner = Reptile(theta, InnerLoop(steps=2, lr=0.05, betas=(0.9, 0.999), carry_state=True, fast=fast))
        for _ in range(2):
            learner.step(_quadratic, tasks, epsilon=0.5)
        thetas[fast] = (theta, learner.state)
    (a, state_a), (b, state_b) = thetas[False], thetas[True]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-12)
        torch.testing.assert_close(state_b.m[k], state_a.m[k], rtol=0, atol=1e-12)
        torch.testing.assert_close(state_b.s[k], state_a.s[k], rtol=0, atol=1e-12)
    assert state_a.step == state_b.step == 2 * 4 * 2


def test_an_earlier_result_survives_later_calls(device):
    """reduce-overhead replays overwrite a graph's outputs: what batched_adapt returned must not change."""
    inner = InnerLoop(steps=2, lr=0.1, fast=True)
    first = batched_adapt(_quadratic, _theta(device), _tasks(3, seed=5, device=device), inner)
    kept = {k: v.clone() for k, v in first.items()}
    for seed in (6, 7):
        batched_adapt(_quadratic, _theta(device), _tasks(3, seed=seed, device=device), inner)
    for k in first:
        assert torch.equal(first[k], kept[k]), k
    eager = batched_adapt(_quadratic, _theta(device), _tasks(3, seed=5, device=device), replace(inner, fast=False))
    for k in first:
        torch.testing.assert_close(first[k], eager[k], rtol=0, atol=1e-12)


# ---------------------------------------------------------------- compiled once per shape
def test_one_compile_per_shape_whatever_changes_between_calls(device):
    """Learning rate, betas, the carried step count and a fresh loss closure per call are data, not
    reasons to recompile; a new task count compiles once more, and only once."""
    def make_loss(weight):
        def loss(params, task):  # a new function object every call, as finetune_predictor makes them
            return weight * _quadratic(params, task)
        return loss

    inner = InnerLoop(steps=2, lr=0.1, betas=(0.9, 0.999), fast=True)
    batched_adapt(make_loss(1.0), _theta(device), _tasks(5, device=device), inner)
    before = _graphs()
    for i, lr in enumerate((0.2, 0.05, 0.1)):
        batched_adapt(make_loss(1.0), _theta(device), _tasks(5, seed=i, device=device),
                      replace(inner, lr=lr, betas=(0.5 + 0.1 * i, 0.99)))
    state = AdamState.zeros(_theta(device))
    for i in range(3):
        batched_adapt(make_loss(1.0), _theta(device), _tasks(1, seed=i, device=device), inner, state=state)
    assert state.step == 6
    after_t1 = _graphs()
    assert after_t1 - before == 1  # T = 1 is one new shape
    for i in range(3):
        batched_adapt(make_loss(1.0), _theta(device), _tasks(7, seed=i, device=device), inner)
    assert _graphs() - after_t1 == 1  # T = 7: one compile, then reused


def test_a_new_model_of_the_same_architecture_reuses_the_compiled_step(device):
    """A long run trains model after model in one process (train_all's workers, a GPU session): each
    must meet the graph the first one compiled, not compile its own until dynamo's limit fails the run.
    The losses close over their model, so a guard on that model's identity would recompile each time."""
    inner = InnerLoop(steps=1, lr=1e-2, optimizer="sgd", fast=True)
    for n in range(3):
        model, tasks = _model_and_tasks(device)  # a new model object each time, the same shapes
        batched_adapt(alignment_loss(model, temperature=0.1, weak=False), model.parts("source", "target"), tasks,
                      inner)
        if n == 0:
            after_first = _graphs()
    assert _graphs() == after_first


# ---------------------------------------------------------------- failures
def test_a_bad_task_fails_with_the_eager_error(device):
    def picky(params, task):
        if task[0].shape[-1] == 3:  # a Python-level check, as a loss's own validation would be
            raise ValueError("picky: targets must not have 3 entries")
        return _quadratic(params, task)
    for fast in (False, True):
        with pytest.raises(ValueError, match="picky: targets must not have 3 entries"):
            batched_adapt(picky, _theta(device), _tasks(2, device=device), InnerLoop(1, 0.1, fast=fast))


def test_no_nan_leaves_the_compiled_loop(device):
    def exploding(params, task):
        return (params["w"] * task).sum() / (params["w"] - params["w"].detach()).sum()  # 0/0 gradient → NaN
    with pytest.raises(NonFiniteError, match=r"non-finite values in w for task\(s\) \[0, 1\]"):
        batched_adapt(exploding, {"w": torch.ones(2, device=device)}, torch.ones(2, 2, device=device),
                      InnerLoop(1, 0.1, "sgd", fast=True))


def _uncompilable(params, task):
    torch._dynamo.graph_break()  # a no-op in eager code; fullgraph compiling refuses it
    return _quadratic(params, task)


def test_fast_true_raises_a_compile_failure():
    from torch._dynamo.exc import TorchDynamoException

    with pytest.raises(TorchDynamoException):
        batched_adapt(_uncompilable, _theta(), _tasks(2), InnerLoop(1, 0.1, fast=True))


def test_fast_none_warns_once_and_runs_eagerly_after_a_compile_failure(monkeypatch):
    monkeypatch.setattr(reptile, "_FAST_FAILED", {})
    monkeypatch.setattr(reptile, "_CALLS", {})
    monkeypatch.setattr(reptile, "FAST_AFTER_CALLS", 1)
    monkeypatch.setattr(InnerLoop, "fast_on", lambda self, device: self.fast is not False)  # as if on CUDA
    inner = InnerLoop(2, 0.1)
    with pytest.warns(RuntimeWarning, match="compiling the inner loop failed .* runs eagerly from now on"):
        result = batched_adapt(_uncompilable, _theta(), _tasks(2), inner)
    eager = batched_adapt(_uncompilable, _theta(), _tasks(2), replace(inner, fast=False))
    for k in eager:
        assert torch.equal(result[k], eager[k])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call neither warns nor tries again
        batched_adapt(_uncompilable, _theta(), _tasks(2), inner)
    assert list(reptile._FAST_FAILED) == [(_uncompilable.__code__, "cpu")]


def test_fast_none_compiles_a_loop_only_once_it_is_hot(monkeypatch):
    monkeypatch.setattr(reptile, "_CALLS", {})
    monkeypatch.setattr(reptile, "FAST_AFTER_CALLS", 3)
    ran = []
    monkeypatch.setattr(reptile, "_run_fast", lambda *args: ran.append("fast") or reptile._run_eager(*args[:-1]))
    monkeypatch.setattr(InnerLoop, "fast_on", lambda self, device: self.fast is not False)
    for _ in range(4):
        batched_adapt(_quadratic, _theta(), _tasks(2), InnerLoop(1, 0.1))
    assert ran == ["fast", "fast"]  # calls 3 and 4
    batched_adapt(_quadratic, _theta(), _tasks(4), InnerLoop(1, 0.1))  # a new shape starts cold
    assert ran == ["fast", "fast"]
