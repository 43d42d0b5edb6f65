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
"""

from __future__ import annotations

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
    """

    steps: int = 5
    lr: float = 1e-3
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.0, 0.999)
    eps: float = 1e-8
    carry_state: bool = False

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
    for k, v in fast.items():
        finite = torch.isfinite(v).reshape(v.shape[0], -1).all(1)
        if not bool(finite.all()):
            tasks = torch.nonzero(~finite).flatten().tolist()
            raise NonFiniteError(f"the inner loop produced non-finite values in {k} for task(s) {tasks[:5]}: "
                                 f"check those tasks, or lower the inner learning rate (lr={inner.lr:g})")


# ---------------------------------------------------------------- the inner loop
def batched_adapt(loss_fn: LossFn, params: Params, tasks, inner: InnerLoop, state: AdamState | None = None,
                  per_step: bool = False) -> Params:
    """Adapt ``params`` to T stacked tasks at once; returns the adapted parameters, each (T, ...).

    ``tasks`` is a pytree (tuple, NamedTuple of tensors, ...) whose tensors all have a leading task
    axis T — and, with ``per_step=True``, a step axis next, (T, S, ...): inner step s uses batch s.
    The Adam update is written out (the same formula as ``torch.optim.Adam``, bias correction
    included) because each task needs its own moment estimates. ``state``: an :class:`AdamState`
    (shaped like ``params``, no task axis) to start from and to update in place — carried inner state,
    which needs T = 1. Raises ``ValueError`` for bad tasks and :class:`NonFiniteError` if a parameter
    becomes NaN or infinite.
    """
    n_tasks = check_tasks(loss_fn, tasks, per_step, inner.steps)
    if state is not None and n_tasks != 1:
        raise ValueError(f"a carried optimizer state adapts one task at a time, got T={n_tasks} stacked tasks")
    fast = {k: v.detach().unsqueeze(0).expand(n_tasks, *v.shape).clone() for k, v in params.items()}
    grads_of = vmap(grad(loss_fn))
    beta1, beta2 = inner.betas
    start = state.step if state is not None else 0
    m = {k: state.m[k][None].clone() for k in fast} if state is not None else {k: torch.zeros_like(v) for k, v in fast.items()}
    s = {k: state.s[k][None].clone() for k in fast} if state is not None else {k: torch.zeros_like(v) for k, v in fast.items()}
    for step in range(1, inner.steps + 1):
        batch = tree_map(lambda x: x[:, step - 1], tasks) if per_step else tasks
        grads = grads_of(fast, batch)
        t = start + step  # Adam's step count, for bias correction
        for k, g in grads.items():
            if inner.optimizer == "sgd":
                fast[k] = fast[k] - inner.lr * g
                continue
            m[k] = beta1 * m[k] + (1 - beta1) * g
            s[k] = beta2 * s[k] + (1 - beta2) * g * g
            denom = s[k].sqrt() / (1 - beta2**t) ** 0.5 + inner.eps
            fast[k] = fast[k] - inner.lr / (1 - beta1**t) * m[k] / denom
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
