"""Contrastive alignment losses: strong pairs (eq. 3) and weak pairs (eq. 4), plus the Table 3 cosine loss.

Both alignment losses compare every source embedding with every target embedding through one
(n_s, n_t) similarity matrix. A *positive* is a target row that shows the same thing as the source
row; every other target row is a *negative*.

* **Strong pairs** (eq. 3): row i of ``z_s`` and row i of ``z_t`` come from the same instance, so the
  positives of source row i are exactly {i}.
* **Weak pairs** (eq. 4): rows only share a group (a cluster of concepts), so the positives of source
  row i are all target rows of its group. With one group per row, eq. 4 is eq. 3.

Each loss has two forms, chosen by ``temperature``:

* ``temperature=None`` — the paper's raw form on dot products: −(positive score) + Σ(negative scores).
  It is **unbounded below**: multiplying every embedding by a large constant multiplies the loss by
  that constant squared, so a model can drive it to −∞ by growing its embeddings instead of aligning
  them. It is only safe on normalised embeddings, and is kept here so the book can show the equation.
* ``temperature=τ`` — the InfoNCE form: cosine similarities divided by τ, then cross-entropy of a
  softmax over all target rows. Cosines live in [−1, 1], so the loss is bounded below by 0 and cannot
  be gamed by scale. **This is the form the book trains with**, at ``DEFAULT_TEMPERATURE = 0.1``.

Both are written as pure tensor algebra with no Python branching on tensor values, so they run inside
``torch.func.vmap`` (over a task axis) and ``torch.func.grad`` — which is how task-batched Reptile
calls them. Shape checks use only shapes, which are static under ``vmap``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["DEFAULT_TEMPERATURE", "strong_nce", "weak_nce", "check_positives", "cosine_alignment_loss"]

DEFAULT_TEMPERATURE = 0.1  # τ the package trains with; cosine/0.1 spans [-10, 10], a sharp but stable softmax


def _check_embeddings(z_s: torch.Tensor, z_t: torch.Tensor, same_rows: bool) -> None:
    """Shape-only checks (safe under vmap, where ``.shape`` is the per-task shape)."""
    if z_s.dim() != 2 or z_t.dim() != 2:
        raise ValueError(f"z_s and z_t must be 2-D (rows, dim), got shapes {tuple(z_s.shape)} and "
                         f"{tuple(z_t.shape)}")
    if z_s.shape[1] != z_t.shape[1]:
        raise ValueError(f"z_s and z_t must have the same embedding dim, got {z_s.shape[1]} and {z_t.shape[1]}")
    if same_rows and z_s.shape[0] != z_t.shape[0]:
        raise ValueError(f"z_s and z_t must have the same number of rows (row i pairs with row i), "
                         f"got {z_s.shape[0]} and {z_t.shape[0]}")


def _check_temperature(temperature) -> None:
    # Only a plain number can be checked without touching tensor values.
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise ValueError(f"temperature must be positive (> 0) or None, got {temperature!r}")


def _cosine_logits(z_s: torch.Tensor, z_t: torch.Tensor, temperature: float) -> torch.Tensor:
    """(n_s, n_t) matrix of cos(z_s[i], z_t[j]) / τ."""
    return F.normalize(z_s, dim=-1) @ F.normalize(z_t, dim=-1).T / temperature


def strong_nce(z_s: torch.Tensor, z_t: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
    """Strong-pair contrastive loss (eq. 3), averaged over the n pairs of a task.

    Args:
        z_s: (n, d) source embeddings e_s(x_s).
        z_t: (n, d) target embeddings e_t(x_t); row i is the partner of ``z_s[i]``, every other row
            is a negative for it.
        temperature: ``None`` for the raw eq. 3, a float τ > 0 for InfoNCE on cosines.

    Returns:
        A scalar tensor:

        * ``None``: mean_i [ −z_s[i]·z_t[i] + Σ_{j≠i} z_s[i]·z_t[j] ]  (unbounded below — see the
          module docstring);
        * τ: mean_i [ −log softmax_j(cos(z_s[i], z_t[j]) / τ)[i] ]  (what the book trains with).
    """
    _check_embeddings(z_s, z_t, same_rows=True)
    _check_temperature(temperature)
    if temperature is None:
        scores = z_s @ z_t.T  # (n, n); the diagonal holds the positive pairs
        positive = torch.diagonal(scores)
        negatives = scores.sum(dim=1) - positive  # every off-diagonal entry of the row
        return (negatives - positive).mean()
    log_prob = torch.log_softmax(_cosine_logits(z_s, z_t, temperature), dim=1)
    return -torch.diagonal(log_prob).mean()


def weak_nce(z_s: torch.Tensor, z_t: torch.Tensor, groups_s: torch.Tensor, groups_t: torch.Tensor,
             temperature: float | None = None) -> torch.Tensor:
    """Weak-pair contrastive loss (eq. 4): positives are the target rows of the same group.

    Args:
        z_s: (n_s, d) source embeddings.
        z_t: (n_t, d) target embeddings (n_t may differ from n_s: the paired *sets* need not match).
        groups_s: (n_s,) integer group of each source row.
        groups_t: (n_t,) integer group of each target row. Source row i and target row j are a
            positive pair when ``groups_s[i] == groups_t[j]``, a negative pair otherwise.
        temperature: ``None`` for the raw eq. 4, a float τ > 0 for InfoNCE on cosines.

    Returns:
        A scalar tensor, averaged over source rows:

        * ``None``: mean_i [ −mean_{j∈pos(i)} z_s[i]·z_t[j] + Σ_{j∈neg(i)} z_s[i]·z_t[j] ] — the
          positive term is the expectation over the pairs in X_s × X_t, the negatives are summed as
          in eq. 3;
        * τ: mean_i mean_{j∈pos(i)} [ −log softmax_k(cos(z_s[i], z_t[k]) / τ)[j] ], the softmax running
          over *all* target rows.

        With singleton groups (``groups_s = groups_t = arange(n)``) both forms equal :func:`strong_nce`.

    Raises:
        ValueError: on bad shapes, or when a source row has no positive. The "no positive" check needs
        tensor values, which ``torch.func.vmap`` cannot branch on, so under ``vmap`` it is skipped
        (such a row then yields NaN; the episode samplers never produce one). Outside ``vmap`` the check
        reads one boolean, which on a GPU costs one device synchronisation.
    """
    _check_embeddings(z_s, z_t, same_rows=False)
    _check_temperature(temperature)
    if groups_s.shape != z_s.shape[:1] or groups_t.shape != z_t.shape[:1]:
        raise ValueError(f"groups_s and groups_t must have shapes ({z_s.shape[0]},) and ({z_t.shape[0]},), "
                         f"got {tuple(groups_s.shape)} and {tuple(groups_t.shape)}")
    positive = (groups_s[:, None] == groups_t[None, :]).to(z_s.dtype)  # (n_s, n_t) 1 = positive pair
    n_positive = positive.sum(dim=1)
    _check_every_row_has_positive(n_positive)
    if temperature is None:
        scores = z_s @ z_t.T
        pos_term = (scores * positive).sum(dim=1) / n_positive
        neg_term = (scores * (1 - positive)).sum(dim=1)
        return (neg_term - pos_term).mean()
    log_prob = torch.log_softmax(_cosine_logits(z_s, z_t, temperature), dim=1)
    return -((log_prob * positive).sum(dim=1) / n_positive).mean()


def _check_every_row_has_positive(n_positive: torch.Tensor) -> None:
    """Raise if some source row has no positive; a no-op under vmap, which forbids reading values."""
    try:
        missing = bool((n_positive == 0).any())
    except RuntimeError:  # vmap: "data-dependent control flow" is not allowed — skip the check
        return
    if missing:
        raise ValueError("weak_nce: every source row needs at least one target row of its group "
                         "(groups_s has a group that groups_t lacks)")


def check_positives(groups_s: torch.Tensor, groups_t: torch.Tensor) -> None:
    """Eager check for stacked tasks: every source row of every task has a target row of its group.

    ``groups_s`` (..., n_s) and ``groups_t`` (..., n_t) with the same leading (task) axes. This is the
    check :func:`weak_nce` cannot make under ``vmap``; task-batched Reptile runs it before ``vmap``.
    Raises ``ValueError`` naming the first offending tasks.
    """
    if groups_s.shape[:-1] != groups_t.shape[:-1]:
        raise ValueError(f"groups_s and groups_t must have the same leading (task) axes, got shapes "
                         f"{tuple(groups_s.shape)} and {tuple(groups_t.shape)}")
    has = (groups_s[..., :, None] == groups_t[..., None, :]).any(-1)  # (..., n_s)
    ok = has.reshape(-1, has.shape[-1]).all(-1)
    if not bool(ok.all()):
        bad = torch.nonzero(~ok).flatten().tolist()
        where = f" (task(s) {bad[:5]})" if has.dim() > 1 else ""
        raise ValueError(f"weak_nce: every source row needs at least one target row of its group{where}: "
                         f"groups_s has a group that groups_t lacks")


def cosine_alignment_loss(z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
    """Table 3's "cos" alignment number: mean_i (1 − cos(z_s[i], z_t[i])) / 2, in [0, 1].

    ``z_s`` and ``z_t`` are (n, d) paired embeddings (row i with row i). The value is 0 when every pair
    points the same way, 0.5 when every pair is orthogonal (as unaligned random embeddings roughly
    are), and 1 when every pair points in opposite directions. Lower is better aligned. A zero row has
    cosine 0 with everything (``F.normalize`` keeps it at zero). Returns a scalar tensor.
    """
    z_s, z_t = torch.as_tensor(z_s), torch.as_tensor(z_t)
    _check_embeddings(z_s, z_t, same_rows=True)
    cos = (F.normalize(z_s, dim=-1) * F.normalize(z_t, dim=-1)).sum(dim=-1)
    return ((1 - cos) / 2).mean()
