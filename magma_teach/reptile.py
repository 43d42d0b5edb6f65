"""Reptile, the first-order meta-update, run for T tasks at once.

For one task, Reptile starts from the meta-parameters θ, takes a few gradient steps on the task's
loss to reach θ̃, and moves the meta-parameters part of the way there:

    θ ← θ + ε (θ̃ − θ)                                        (Algorithm 1, the update lines)

With a meta-batch of T tasks the update uses the mean of the T adapted parameters,
θ ← θ + ε (mean_t θ̃_t − θ). The T inner loops are independent, so they can run as *one* computation:
:func:`batched_adapt` gives every task its own copy of the parameters along a leading task axis and
computes all T gradients with ``torch.func.vmap(torch.func.grad(loss))``. :func:`sequential_adapt`
is the plain reference — copy the parameters, run an optimizer, next task — which the tests show
computes the same update.

A loss function here is *functional*: ``loss_fn(params, task) -> scalar`` where ``params`` is a
dict of tensors (``torch.func.functional_call`` runs a module with them) and ``task`` is one task's
tensors. Nothing is shared between the copies: each task adapts its own parameters, which is the
fix for the authors' clones that shared encoder modules with the meta-model (PAPER_NOTES.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import grad, vmap
from torch.utils._pytree import tree_flatten

from magma_teach.utils import check_positive, check_range

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, object], torch.Tensor]


@dataclass(frozen=True)
class InnerLoop:
    """How each task adapts: ``steps`` full-batch steps of SGD or Adam with learning rate ``lr``.

    The authors' code used Adam with β₁ = 0 for the inner loop, so those are the defaults.
    """

    steps: int = 5
    lr: float = 1e-3
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.0, 0.999)
    eps: float = 1e-8

    def __post_init__(self):
        check_positive("steps", self.steps, integer=True)
        check_positive("lr", self.lr)
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        check_range("betas[0]", self.betas[0], 0.0, 0.999999)
        check_range("betas[1]", self.betas[1], 0.0, 0.999999)


def task_count(tasks) -> int:
    """Size of the leading task axis of a stacked pytree of tasks."""
    leaves, _ = tree_flatten(tasks)
    return leaves[0].shape[0]


def batched_adapt(loss_fn: LossFn, params: Params, tasks, inner: InnerLoop) -> Params:
    """Adapt ``params`` to T stacked tasks at once; returns the adapted parameters, each (T, ...).

    ``tasks`` is a pytree (tuple, dataclass of tensors, ...) whose tensors all have a leading task
    axis T. The Adam update below is written out by hand (the same formula as ``torch.optim.Adam``,
    bias correction included) because each task needs its own moment estimates.
    """
    n_tasks = task_count(tasks)
    fast = {k: v.detach().unsqueeze(0).expand(n_tasks, *v.shape).clone() for k, v in params.items()}
    grads_of = vmap(grad(loss_fn))
    beta1, beta2 = inner.betas
    m = {k: torch.zeros_like(v) for k, v in fast.items()}
    s = {k: torch.zeros_like(v) for k, v in fast.items()}
    for step in range(1, inner.steps + 1):
        grads = grads_of(fast, tasks)
        for k, g in grads.items():
            if inner.optimizer == "sgd":
                fast[k] = fast[k] - inner.lr * g
                continue
            m[k] = beta1 * m[k] + (1 - beta1) * g
            s[k] = beta2 * s[k] + (1 - beta2) * g * g
            denom = s[k].sqrt() / (1 - beta2**step) ** 0.5 + inner.eps
            fast[k] = fast[k] - inner.lr / (1 - beta1**step) * m[k] / denom
    return fast


def sequential_adapt(loss_fn: LossFn, params: Params, tasks: list, inner: InnerLoop) -> Params:
    """Reference implementation: one task after another, each on its own copy, with torch.optim.

    ``tasks`` is a list of single (unstacked) tasks. Returns adapted parameters stacked to (T, ...),
    directly comparable with :func:`batched_adapt`.
    """
    adapted = []
    for task in tasks:
        copy = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        if inner.optimizer == "sgd":
            opt = torch.optim.SGD(copy.values(), lr=inner.lr)
        else:
            opt = torch.optim.Adam(copy.values(), lr=inner.lr, betas=inner.betas, eps=inner.eps)
        for _ in range(inner.steps):
            opt.zero_grad()
            loss_fn(copy, task).backward()
            opt.step()
        adapted.append({k: v.detach() for k, v in copy.items()})
    return {k: torch.stack([a[k] for a in adapted]) for k in params}


@torch.no_grad()
def reptile_update(params: Params, adapted: Params, epsilon: float) -> None:
    """In place: θ ← θ + ε (mean_t θ̃_t − θ) for every tensor of ``params``."""
    check_range("epsilon", epsilon, 0.0, 1.0)
    for k, p in params.items():
        p.add_(epsilon * (adapted[k].mean(0) - p))


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


def meta_step(loss_fn: LossFn, params: Params, tasks, inner: InnerLoop, epsilon: float,
              batched: bool = True) -> None:
    """One Reptile meta-iteration over a meta-batch: adapt to every task, then update ``params``.

    ``batched=True`` takes stacked tasks (leading axis T); ``batched=False`` takes a list of tasks and
    runs the sequential reference.
    """
    adapt = batched_adapt if batched else sequential_adapt
    reptile_update(params, adapt(loss_fn, params, tasks, inner), epsilon)
