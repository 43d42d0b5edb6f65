"""Reptile, the first-order meta-update, run for T tasks at once, with the update rule as options.

For one task, Reptile starts from the meta-parameters θ, takes a few gradient steps on the task's
loss to reach θ̃, and moves the meta-parameters part of the way there:

    θ ← θ + ε (θ̃ − θ)                                        (Algorithm 1, the update lines)

With a meta-batch of T tasks the update uses the mean of the T adapted parameters,
θ ← θ + ε (mean_t θ̃_t − θ). The T inner loops are independent, so they can run as *one* computation:
:func:`batched_adapt` gives every task its own copy of the parameters along a leading task axis and
computes all T gradients with ``torch.func.vmap(torch.func.grad(loss))``. :func:`sequential_adapt`
is the plain reference — copy the parameters, run a ``torch.optim`` optimizer, next task — which the
tests show computes the same thing.

Algorithm 1 leaves several choices open, and each changes what is learned. They are options here,
each named for what it does (chapter 6 of the book measures them):

* **inner optimizer state** (:attr:`InnerLoop.carry_state`): every task starts a *fresh* inner Adam
  (the literal reading, and the default), or one Adam state is *carried* from task to task and from
  meta-iteration to meta-iteration, as the Reptile reference code (openai/supervised-reptile) and the
  authors' code (peter-yh-wu/xmodal, ``src/main.py``) do. A fresh Adam with β₁ = 0 makes the first step
  of every task lr·sign(g) on every weight; a carried one scales steps by a long-run gradient
  estimate. Carried state is sequential by nature: task t+1 starts from task t's moments, so a
  meta-batch with carried state runs its tasks one after another.
* **outer update** (:class:`OuterUpdate`): ε-interpolation as above, or an optimizer (Adam, SGD with
  momentum) fed the *pseudo-gradient* g = θ − mean_t θ̃_t, as the authors' code does. Plain SGD with
  learning rate ε and no momentum is exactly the interpolation.
* **meta-batch T**: any T ≥ 1.
* **task composition** (``per_step`` of :func:`batched_adapt`): one task reused for every inner step,
  or a fresh batch of the task's distribution at each step (tasks then carry a step axis).

A loss function here is *functional*: ``loss_fn(params, task) -> scalar`` where ``params`` is a
dict of tensors (``torch.func.functional_call`` runs a module with them) and ``task`` is one task's
tensors. A loss may carry a ``check_tasks(stacked_tasks)`` attribute: :func:`batched_adapt` calls it
*before* entering ``vmap``, where value checks are impossible, so a bad task fails with the same
clear error as in eager code instead of turning into NaN. No non-finite parameter leaves an inner loop:
:class:`NonFiniteError` is raised instead. Nothing is shared between the task copies: each task adapts
its own parameters, which is the fix for the authors' clones that shared encoder modules with the
meta-model (PAPER_NOTES.md).

**The fast path** (:attr:`InnerLoop.fast`). On a GPU the batched loop is launch-bound: the arithmetic of
small encoders takes microseconds, the hundreds of kernels each step launches from Python take far
longer. With ``fast`` on, one inner step (the T gradients and the update) is compiled with
``torch.compile`` into one graph — ``mode="reduce-overhead"`` on CUDA, which replays that step as one
CUDA graph; inductor's fused kernels on the CPU. The step count, the learning rate, β and ε reach the
compiled step as tensors, so nothing recompiles when they change; shapes and the loss function's code
and closure are what the graph is specialised to — a closure's model by its architecture, not its identity,
so the next model of a long run reuses the graph (``CrossModalModel.call`` looks up no tensor ids when it
need not). ``fast=None`` (the default) turns it on for tensors on
CUDA and leaves the CPU on the eager code, which stays the reference the compiled step is tested against.
Compiling costs tens of seconds per loss and shape, so under ``fast=None`` a loop is compiled only once
it is hot (its :data:`FAST_AFTER_CALLS`-th call with the same loss and shapes); ``fast=True`` compiles at
the first call. If compiling fails under ``fast=None``, a warning says so and the eager loop runs
instead; ``fast=True`` raises the error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.func import grad, vmap
from torch.utils._pytree import tree_flatten, tree_map

from magma_teach.utils import check_positive, check_range

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, object], torch.Tensor]
OUTER_RULES = ("interpolate", "adam", "sgd")


class NonFiniteError(ValueError):
    """An inner loop produced NaN or infinite parameters (a bad task, or too large a learning rate)."""


@dataclass(frozen=True)
class InnerLoop:
    """How each task adapts: ``steps`` steps of SGD or Adam with learning rate ``lr``.

    ``carry_state=False`` starts every task with a fresh optimizer state (Algorithm 1 read literally);
    ``True`` carries one Adam state across tasks and meta-iterations (the Reptile reference's way).
    The authors' code used Adam with β₁ = 0 for the inner loop, so those are the defaults.
    ``fast``: run :func:`batched_adapt`'s steps compiled (see the module docstring): ``None`` = on for
    parameters on CUDA once a loop is hot, off on the CPU; ``True`` / ``False`` = on from the first
    call / off, on every device. It changes speed only, never what is computed (to float rounding).
    """

    steps: int = 5
    lr: float = 1e-3
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.0, 0.999)
    eps: float = 1e-8
    carry_state: bool = False
    fast: bool | None = None

    def __post_init__(self):
        check_positive("steps", self.steps, integer=True)
        check_positive("lr", self.lr)
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        check_range("betas[0]", self.betas[0], 0.0, 0.999999)
        check_range("betas[1]", self.betas[1], 0.0, 0.999999)
        if not isinstance(self.carry_state, bool):
            raise ValueError(f"carry_state must be True or False, got {self.carry_state!r}")
        if self.carry_state and self.optimizer != "adam":
            raise ValueError("carry_state=True needs optimizer='adam' (plain SGD has no state to carry)")
        if self.fast is not None and not isinstance(self.fast, bool):
            raise ValueError(f"fast must be None (on for CUDA, off on the CPU), True or False, got {self.fast!r}")

    def fast_on(self, device: torch.device | str) -> bool:
        """Whether :func:`batched_adapt` runs compiled steps for parameters on ``device``."""
        return torch.device(device).type == "cuda" if self.fast is None else self.fast


@dataclass(frozen=True)
class OuterUpdate:
    """How the meta-parameters move towards the adapted ones.

    ``rule="interpolate"``: θ ← θ + ε (mean θ̃ − θ) with the schedule's ε (``lr`` unused).
    ``rule="adam"`` / ``"sgd"``: ``torch.optim.Adam(lr, betas)`` / ``torch.optim.SGD(lr, momentum)``
    stepped with the pseudo-gradient θ − mean θ̃ (ε unused); state persists across meta-iterations.
    """

    rule: str = "interpolate"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9

    def __post_init__(self):
        if self.rule not in OUTER_RULES:
            raise ValueError(f"rule must be one of {OUTER_RULES}, got {self.rule!r}")
        check_positive("outer lr", self.lr)
        check_range("outer betas[0]", self.betas[0], 0.0, 0.999999)
        check_range("outer betas[1]", self.betas[1], 0.0, 0.999999)
        check_range("outer momentum", self.momentum, 0.0, 0.999999)

    def optimizer(self, params: Params) -> torch.optim.Optimizer | None:
        """The ``torch.optim`` optimizer of this rule over ``params`` (``None`` for interpolation)."""
        if self.rule == "adam":
            return torch.optim.Adam(params.values(), lr=self.lr, betas=self.betas)
        if self.rule == "sgd":
            return torch.optim.SGD(params.values(), lr=self.lr, momentum=self.momentum)
        return None


@dataclass
class AdamState:
    """Adam's moments m, s (shaped like the parameters) and its step count, carried between tasks."""

    m: Params
    s: Params
    step: int = 0

    @classmethod
    def zeros(cls, params: Params) -> "AdamState":
        return cls({k: torch.zeros_like(v.detach()) for k, v in params.items()},
                   {k: torch.zeros_like(v.detach()) for k, v in params.items()})


@dataclass(frozen=True)
class EpsilonSchedule:
    """Meta step size ε: constant (``end=None``) or annealed linearly from ``start`` to ``end``."""

    start: float = 1.0
    end: float | None = None

    def __post_init__(self):
        check_range("epsilon start", self.start, 0.0, 1.0)
        if self.end is not None:
            check_range("epsilon end", self.end, 0.0, 1.0)

    def __call__(self, iteration: int, total: int) -> float:
        if self.end is None or total <= 1:
            return self.start
        frac = min(max(iteration / (total - 1), 0.0), 1.0)
        return self.start + frac * (self.end - self.start)


# ---------------------------------------------------------------- checks
def task_count(tasks) -> int:
    """Size of the leading task axis of a stacked pytree of tasks (the same for every tensor)."""
    leaves, _ = tree_flatten(tasks)
    sizes = {leaf.shape[0] for leaf in leaves if isinstance(leaf, torch.Tensor) and leaf.dim() > 0}
    if len(sizes) != 1:
        raise ValueError(f"tasks must be stacked along one leading task axis, got leading sizes {sorted(sizes)}")
    return sizes.pop()


def check_tasks(loss_fn: LossFn, tasks, per_step: bool = False, steps: int = 1) -> int:
    """Validate stacked tasks eagerly (outside ``vmap``); return the number of tasks T.

    With ``per_step`` every tensor has shape (T, S, ...) with S >= ``steps``. The loss's own
    ``check_tasks`` (if any) sees the tasks with the task and step axes merged.
    """
    n_tasks = task_count(tasks)
    if per_step:
        leaves, _ = tree_flatten(tasks)
        n_steps = min(leaf.shape[1] if leaf.dim() > 1 else 0 for leaf in leaves)
        if n_steps < steps:
            raise ValueError(f"per-step tasks need a step axis of at least steps={steps} batches, got {n_steps}")
    own_check = getattr(loss_fn, "check_tasks", None)
    if own_check is not None:
        own_check(tree_map(lambda x: x.flatten(0, 1), tasks) if per_step else tasks)
    return n_tasks


def _check_finite(fast: Params, inner: InnerLoop) -> None:
    # One (K, T) table and one host sync for all K tensors: on a GPU each bool() waits for the device.
    table = torch.stack([torch.isfinite(v).reshape(v.shape[0], -1).all(1) for v in fast.values()])
    if bool(table.all()):
        return
    for k, finite in zip(fast, table):
        if not bool(finite.all()):
            tasks = torch.nonzero(~finite).flatten().tolist()
            raise NonFiniteError(f"the inner loop produced non-finite values in {k} for task(s) {tasks[:5]}: "
                                 f"check those tasks, or lower the inner learning rate (lr={inner.lr:g})")


# ---------------------------------------------------------------- the inner loop
def _update(fast: Params, m: Params, s: Params, grads: Params, sgd: bool, lr, c1, c2, beta1, beta2, eps):
    """One SGD or Adam step of every tensor; returns the new (fast, m, s) (``m``, ``s`` untouched by SGD).

    Adam (the formula of ``torch.optim.Adam``, bias correction included), with c1 = lr / (1 − β₁ᵗ) and
    c2 = √(1 − β₂ᵗ) for step count t: m ← β₁ m + (1 − β₁) g, s ← β₂ s + (1 − β₂) g², θ ← θ − c1 m / (√s / c2 + ε).
    The coefficients are Python floats in the eager loop and 0-d tensors in the compiled step (so a new
    step count or learning rate is new data for the compiled graph, not a reason to recompile it).
    """
    if sgd:
        return {k: fast[k] - lr * g for k, g in grads.items()}, m, s
    new_fast, new_m, new_s = {}, {}, {}
    for k, g in grads.items():
        new_m[k] = beta1 * m[k] + (1 - beta1) * g
        new_s[k] = beta2 * s[k] + (1 - beta2) * g * g
        new_fast[k] = fast[k] - c1 * new_m[k] / (new_s[k].sqrt() / c2 + eps)
    return new_fast, new_m, new_s


def _fast_step(loss_fn: LossFn, fast: Params, m: Params, s: Params, batch, coef: torch.Tensor, sgd: bool):
    """The body the fast path compiles: T gradients by vmap(grad), then :func:`_update`.

    ``coef``: (6,) float64 tensor [lr, c1, c2, β₁, β₂, ε] of this step (0-d scalars of a float64 tensor
    do not change the parameters' dtype).
    """
    grads = vmap(grad(loss_fn))(fast, batch)
    return _update(fast, m, s, grads, sgd, coef[0], coef[1], coef[2], coef[3], coef[4], coef[5])


RECOMPILE_LIMIT = 64  # compiled graphs kept for _fast_step: one per (shapes, dtypes, loss code, closure structure)
# Under fast=None a loop is compiled from its FAST_AFTER_CALLS-th call with the same loss and shapes on:
# compiling costs tens of seconds, so a one-off call (a meta-test fine-tune, a short chapter run) stays
# eager and only the hot loops of meta-training pay for it. fast=True compiles at the first call.
FAST_AFTER_CALLS = 50
_COMPILED: dict[str, Callable] = {}  # one torch.compile wrapper per device type (its mode differs)
_FAST_FAILED: dict = {}  # (loss code, device type) -> the error, once compiling failed under fast=None
_CALLS: dict = {}  # (loss code, device type, shapes...) -> calls so far under fast=None


def compiled_step(device_type: str) -> Callable:
    """The compiled :func:`_fast_step` for ``"cuda"`` (mode ``reduce-overhead``: one CUDA graph per step)
    or any other device type (inductor's default mode). Dynamo keeps one compiled graph per set of shapes,
    dtypes, loss code and closure values, and reuses it on every later call that matches."""
    if device_type not in _COMPILED:
        mode = "reduce-overhead" if device_type == "cuda" else "default"
        _COMPILED[device_type] = torch.compile(_fast_step, mode=mode, fullgraph=True, dynamic=False)
    return _COMPILED[device_type]


def _coefficients(inner: InnerLoop, start: int, device) -> torch.Tensor:
    """(steps, 6) float64 table: row s-1 = [lr, c1, c2, β₁, β₂, ε] of inner step s after ``start`` earlier steps."""
    beta1, beta2 = inner.betas
    rows = [[inner.lr, inner.lr / (1 - beta1**t), (1 - beta2**t) ** 0.5, beta1, beta2, inner.eps]
            for t in range(start + 1, start + inner.steps + 1)]
    return torch.tensor(rows, dtype=torch.float64, device=device)


def _run_fast(loss_fn: LossFn, fast: Params, m: Params, s: Params, tasks, inner: InnerLoop, start: int,
              per_step: bool, device: torch.device):
    """The inner loop with compiled steps; returns (fast, m, s) like :func:`_run_eager` (overwrites its inputs).

    Under ``reduce-overhead`` a step's outputs live in the CUDA graph's memory and the next replay
    overwrites them, so they are copied into this call's own tensors before the next step.
    """
    from torch._dynamo import config as dynamo_config  # imported on first use: it takes seconds

    step_fn, coef = compiled_step(device.type), _coefficients(inner, start, device)
    sgd = inner.optimizer == "sgd"
    moments = ({}, {}) if sgd else (m, s)  # SGD has no moments: nothing to feed in or copy out
    # All compiled graphs hang off one function, and dynamo's default of 8 per function would send
    # the 9th (shape, loss) pair of a long run (several approaches, shot counts, benchmarks) back to
    # eager code; RECOMPILE_LIMIT keeps them compiled without changing the setting for the user's code.
    limit = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"  # older torch
    with dynamo_config.patch(**{limit: max(getattr(dynamo_config, limit), RECOMPILE_LIMIT)}):
        for step in range(inner.steps):
            batch = tree_map(lambda x, step=step: x[:, step], tasks) if per_step else tasks
            outs = step_fn(loss_fn, fast, *moments, batch, coef[step], sgd)
            for mine, out in zip((fast, *moments), outs):
                if mine:
                    torch._foreach_copy_(list(mine.values()), [out[k] for k in mine])
            del outs
    return fast, m, s


def _run_eager(loss_fn: LossFn, fast: Params, m: Params, s: Params, tasks, inner: InnerLoop, start: int,
               per_step: bool):
    """The reference inner loop: plain ``vmap(grad(loss))`` and :func:`_update` with Python-float coefficients."""
    grads_of = vmap(grad(loss_fn))
    beta1, beta2 = inner.betas
    for step in range(1, inner.steps + 1):
        batch = tree_map(lambda x, step=step: x[:, step - 1], tasks) if per_step else tasks
        t = start + step  # Adam's step count, for bias correction
        fast, m, s = _update(fast, m, s, grads_of(fast, batch), inner.optimizer == "sgd", inner.lr,
                             inner.lr / (1 - beta1**t), (1 - beta2**t) ** 0.5, beta1, beta2, inner.eps)
    return fast, m, s


def _starting_point(params: Params, n_tasks: int, state: AdamState | None) -> tuple[Params, Params, Params]:
    """Fresh (fast, m, s) for T tasks: T copies of ``params``; zero moments, or the carried ones."""
    fast = {k: v.detach().unsqueeze(0).expand(n_tasks, *v.shape).clone() for k, v in params.items()}
    if state is None:
        return fast, {k: torch.zeros_like(v) for k, v in fast.items()}, {k: torch.zeros_like(v) for k, v in fast.items()}
    return fast, {k: state.m[k][None].clone() for k in fast}, {k: state.s[k][None].clone() for k in fast}


def _fast_key(loss_fn: LossFn, device: torch.device):
    return getattr(loss_fn, "__code__", type(loss_fn)), device.type


def _wants_fast(loss_fn: LossFn, params: Params, tasks, inner: InnerLoop, per_step: bool, device) -> bool:
    """Whether this call runs compiled steps: ``fast=True``, or ``fast=None`` on CUDA for a hot loop whose
    compiling has not failed before (see :data:`FAST_AFTER_CALLS`)."""
    if not inner.fast_on(device):
        return False
    if inner.fast is True:
        return True
    if _fast_key(loss_fn, device) in _FAST_FAILED:
        return False
    leaves = [*params.values(), *tree_flatten(tasks)[0]]
    signature = (_fast_key(loss_fn, device), inner.optimizer, inner.steps, per_step,
                 tuple((tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else x for x in leaves))
    _CALLS[signature] = _CALLS.get(signature, 0) + 1
    return _CALLS[signature] >= FAST_AFTER_CALLS


def batched_adapt(loss_fn: LossFn, params: Params, tasks, inner: InnerLoop, state: AdamState | None = None,
                  per_step: bool = False) -> Params:
    """Adapt ``params`` to T stacked tasks at once; returns the adapted parameters, each (T, ...).

    ``tasks`` is a pytree (tuple, NamedTuple of tensors, ...) whose tensors all have a leading task
    axis T — and, with ``per_step=True``, a step axis next, (T, S, ...): inner step s uses batch s.
    The Adam update is written out (the same formula as ``torch.optim.Adam``, bias correction
    included) because each task needs its own moment estimates. ``state``: an :class:`AdamState`
    (shaped like ``params``, no task axis) to start from and to update in place — carried inner state,
    which needs T = 1. ``inner.fast`` chooses compiled steps or the eager loop (the same results to
    float rounding). Raises ``ValueError`` for bad tasks and :class:`NonFiniteError` if a parameter
    becomes NaN or infinite; a loss that fails compiled fails with its eager error.
    """
    n_tasks = check_tasks(loss_fn, tasks, per_step, inner.steps)
    if state is not None and n_tasks != 1:
        raise ValueError(f"a carried optimizer state adapts one task at a time, got T={n_tasks} stacked tasks")
    start = state.step if state is not None else 0
    device = next(iter(params.values())).device
    key = _fast_key(loss_fn, device)
    result = failure = None
    if _wants_fast(loss_fn, params, tasks, inner, per_step, device):
        try:
            result = _run_fast(loss_fn, *_starting_point(params, n_tasks, state), tasks, inner, start, per_step, device)
        except Exception as err:
            from torch._dynamo.exc import TorchDynamoException  # dynamo's and inductor's errors

            if not isinstance(err, TorchDynamoException):
                raise
            failure = err
    if result is None:
        # The eager loop, also after a failed compile: a loss that raises for these tasks raises its own
        # error here (dynamo reports it as "Unsupported: observed exception"), whatever ``fast`` says.
        result = _run_eager(loss_fn, *_starting_point(params, n_tasks, state), tasks, inner, start, per_step)
    if failure is not None:
        if inner.fast:
            raise failure
        _FAST_FAILED[key] = failure
        first_line = (str(failure).strip().splitlines() or [""])[0][:200]
        warnings.warn(f"compiling the inner loop failed ({type(failure).__name__}: {first_line}); this "
                      "loss runs eagerly from now on (InnerLoop(fast=False) chooses that without trying)",
                      RuntimeWarning, stacklevel=2)
    fast, m, s = result
    _check_finite(fast, inner)
    if state is not None:
        state.m, state.s, state.step = {k: v[0] for k, v in m.items()}, {k: v[0] for k, v in s.items()}, start + inner.steps
    return fast


def sequential_adapt(loss_fn: LossFn, params: Params, tasks: list, inner: InnerLoop, per_step: bool = False,
                     carry: bool = False) -> Params:
    """Reference implementation: one task after another, each from ``params``, with ``torch.optim``.

    ``tasks`` is a list of single (unstacked) tasks (with ``per_step``, each a list or stack of S
    batches). ``carry=True`` reuses one ``torch.optim.Adam`` for all tasks — only the parameters are
    reset between tasks, never the optimizer. Returns adapted parameters stacked to (T, ...),
    directly comparable with :func:`batched_adapt`.
    """
    copy = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}

    def new_optimizer():
        if inner.optimizer == "sgd":
            return torch.optim.SGD(copy.values(), lr=inner.lr)
        return torch.optim.Adam(copy.values(), lr=inner.lr, betas=inner.betas, eps=inner.eps)

    opt, adapted = new_optimizer(), []
    for task in tasks:
        with torch.no_grad():
            for k, v in copy.items():
                v.copy_(params[k])
        opt = opt if carry else new_optimizer()
        for step in range(inner.steps):
            opt.zero_grad()
            batch = task if not per_step else task[step] if isinstance(task, list) else tree_map(lambda x: x[step], task)
            loss_fn(copy, batch).backward()
            opt.step()
        adapted.append({k: v.detach().clone() for k, v in copy.items()})
    return {k: torch.stack([a[k] for a in adapted]) for k in params}


# ---------------------------------------------------------------- the outer update
@torch.no_grad()
def reptile_update(params: Params, adapted: Params, epsilon: float) -> None:
    """In place: θ ← θ + ε (mean_t θ̃_t − θ) for every tensor of ``params``."""
    check_range("epsilon", epsilon, 0.0, 1.0)
    for k, p in params.items():
        p.add_(epsilon * (adapted[k].mean(0) - p))


@dataclass
class Reptile:
    """A first-order meta-learner of the live tensors ``params`` (updated in place).

    Holds what persists between meta-iterations: the carried inner Adam state (when
    ``inner.carry_state``) and the outer optimizer (when ``outer.rule`` is not ``"interpolate"``).
    ``batched=False`` runs the sequential ``torch.optim`` reference instead of the task-batched path.
    """

    params: Params
    inner: InnerLoop
    outer: OuterUpdate = field(default_factory=OuterUpdate)
    batched: bool = True

    def __post_init__(self):
        self.state = AdamState.zeros(self.params) if self.inner.carry_state else None
        self.optimizer = self.outer.optimizer(self.params)

    def adapt(self, loss_fn: LossFn, tasks, per_step: bool = False) -> Params:
        """The adapted parameters (T, ...) of every task of the meta-batch (no update of θ)."""
        if self.state is not None:  # carried state: one task after another
            n_tasks = check_tasks(loss_fn, tasks, per_step, self.inner.steps)
            one = [tree_map(lambda x: x[t:t + 1], tasks) for t in range(n_tasks)]
            adapted = [batched_adapt(loss_fn, self.params, task, self.inner, self.state, per_step) for task in one]
            return {k: torch.cat([a[k] for a in adapted]) for k in self.params}
        if self.batched:
            return batched_adapt(loss_fn, self.params, tasks, self.inner, per_step=per_step)
        n_tasks = check_tasks(loss_fn, tasks, per_step, self.inner.steps)
        unstacked = [tree_map(lambda x: x[t], tasks) for t in range(n_tasks)]
        return sequential_adapt(loss_fn, self.params, unstacked, self.inner, per_step)

    def update(self, adapted: Params, epsilon: float) -> None:
        """Move θ towards the mean adapted parameters with the outer rule."""
        if self.optimizer is None:
            reptile_update(self.params, adapted, epsilon)
            return
        for k, p in self.params.items():
            p.grad = (p.detach() - adapted[k].mean(0)).to(p.dtype)  # the pseudo-gradient θ − mean θ̃
        self.optimizer.step()
        for p in self.params.values():
            p.grad = None

    def step(self, loss_fn: LossFn, tasks, epsilon: float, per_step: bool = False) -> None:
        """One meta-iteration over a meta-batch: adapt to every task, then update θ."""
        self.update(self.adapt(loss_fn, tasks, per_step), epsilon)


def meta_step(loss_fn: LossFn, params: Params, tasks, inner: InnerLoop, epsilon: float,
              batched: bool = True) -> None:
    """One literal Reptile meta-iteration (fresh inner state, ε-interpolation) over a meta-batch.

    ``batched=True`` takes stacked tasks (leading axis T); ``batched=False`` takes a list of tasks and
    runs the sequential reference. For the other update rules use :class:`Reptile`.
    """
    if not batched:
        reptile_update(params, sequential_adapt(loss_fn, params, tasks, inner), epsilon)
        return
    Reptile(params, inner, batched=True).step(loss_fn, tasks, epsilon)
