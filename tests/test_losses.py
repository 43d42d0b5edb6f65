"""Tests for the alignment losses (eq. 3, eq. 4) and the Table 3 cosine loss."""

import math

import pytest
import torch

from magma_teach.losses import DEFAULT_TEMPERATURE, cosine_alignment_loss, strong_nce, weak_nce

# Tiny example worked by hand:
#   z_s = [[1, 0], [0, 1]],  z_t = [[1, 0], [1, 1]]
#   dot products S = z_s z_tᵀ = [[1, 1], [0, 1]]
#   raw eq. 3: row 0: −1 + 1 = 0;  row 1: −1 + 0 = −1;  mean = −0.5
#   cosines C = [[1, 1/√2], [0, 1/√2]]  (z_t[1] has norm √2)
#   InfoNCE, τ = 1: row 0: −log(e^1 / (e^1 + e^{1/√2})) = log(1 + e^{1/√2 − 1})
#                   row 1: −log(e^{1/√2} / (e^0 + e^{1/√2})) = log(1 + e^{−1/√2})
Z_S = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
Z_T = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
R = 1 / math.sqrt(2)


def test_strong_raw_by_hand():
    assert strong_nce(Z_S, Z_T).item() == pytest.approx(-0.5)


def test_strong_infonce_by_hand(device):
    expected = (math.log(1 + math.exp(R - 1)) + math.log(1 + math.exp(-R))) / 2
    assert strong_nce(Z_S.to(device), Z_T.to(device), temperature=1.0).item() == pytest.approx(expected, abs=1e-6)


def test_strong_infonce_temperature_scales_cosines():
    # τ = 0.5 doubles every logit: row 0 → log(1 + e^{2(1/√2 − 1)}), row 1 → log(1 + e^{−2/√2})
    expected = (math.log(1 + math.exp(2 * (R - 1))) + math.log(1 + math.exp(-2 * R))) / 2
    assert strong_nce(Z_S, Z_T, temperature=0.5).item() == pytest.approx(expected, abs=1e-6)


def test_weak_two_member_group_by_hand_differs_from_strong(device):
    # One group holding both rows: every target row is a positive of every source row, no negatives.
    # raw: row 0: −mean(1, 1) = −1;  row 1: −mean(0, 1) = −0.5;  mean = −0.75 (strong gives −0.5)
    z_s, z_t = Z_S.to(device), Z_T.to(device)
    groups = torch.tensor([0, 0], device=device)
    raw = weak_nce(z_s, z_t, groups, groups)
    assert raw.item() == pytest.approx(-0.75)
    assert raw.item() != pytest.approx(strong_nce(z_s, z_t).item())
    # τ = 1: row i loss = −mean_j log softmax(C[i])[j]
    row0 = -(1 - math.log(math.e + math.exp(R)) + R - math.log(math.e + math.exp(R))) / 2
    row1 = -(0 - math.log(1 + math.exp(R)) + R - math.log(1 + math.exp(R))) / 2
    soft = weak_nce(z_s, z_t, groups, groups, temperature=1.0)
    assert soft.item() == pytest.approx((row0 + row1) / 2, abs=1e-6)
    assert soft.item() != pytest.approx(strong_nce(z_s, z_t, temperature=1.0).item())


@pytest.mark.parametrize("temperature", [None, 1.0, DEFAULT_TEMPERATURE])
def test_weak_with_singleton_groups_equals_strong(temperature, device):
    g = torch.Generator().manual_seed(0)
    z_s, z_t = torch.randn(7, 5, generator=g).to(device), torch.randn(7, 5, generator=g).to(device)
    groups = torch.arange(7, device=device)
    strong = strong_nce(z_s, z_t, temperature)
    weak = weak_nce(z_s, z_t, groups, groups, temperature)
    assert torch.allclose(weak, strong, atol=1e-6)


def test_weak_group_ids_only_matter_through_equality():
    g = torch.Generator().manual_seed(1)
    z_s, z_t = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    relabelled = torch.tensor([7, 7, 3, 3, 9, 9])
    for tau in (None, 0.1):
        assert torch.allclose(weak_nce(z_s, z_t, groups, groups, tau),
                              weak_nce(z_s, z_t, relabelled, relabelled, tau), atol=1e-6)


def test_weak_accepts_sets_of_different_sizes(device):
    g = torch.Generator().manual_seed(2)
    z_s, z_t = torch.randn(4, 3, generator=g).to(device), torch.randn(6, 3, generator=g).to(device)
    loss = weak_nce(z_s, z_t, torch.tensor([0, 0, 1, 1], device=device), torch.tensor([0, 1, 0, 1, 1, 0], device=device), 0.1)
    assert loss.shape == () and torch.isfinite(loss)


def test_raw_form_is_unbounded_but_infonce_is_scale_invariant():
    # Why the book trains with τ: scaling embeddings by c scales the raw loss by c², so a negative raw
    # loss can be pushed to −∞ without aligning anything; cosines ignore the scale.
    for c in (10.0, 100.0):
        assert strong_nce(c * Z_S, c * Z_T).item() == pytest.approx(-0.5 * c * c)
        scaled = strong_nce(c * Z_S, c * Z_T, 0.1).item()
        assert scaled == pytest.approx(strong_nce(Z_S, Z_T, 0.1).item(), abs=1e-5)


def test_perfect_alignment_gives_small_infonce():
    z = torch.eye(4)
    assert strong_nce(z, z, temperature=0.1).item() < 1e-3
    assert strong_nce(z, z, temperature=0.1) < strong_nce(z, z.roll(1, 0), temperature=0.1)


@pytest.mark.parametrize("temperature", [None, DEFAULT_TEMPERATURE])
def test_vmap_matches_loop(temperature, device):
    g = torch.Generator().manual_seed(3)
    tasks, n, d = 4, 6, 3
    z_s, z_t = torch.randn(tasks, n, d, generator=g), torch.randn(tasks, n, d, generator=g)
    groups_s = torch.stack([torch.randperm(n, generator=g) // 2 for _ in range(tasks)])  # pairs of rows
    groups_t = torch.stack([row[torch.randperm(n, generator=g)] for row in groups_s])
    z_s, z_t, groups_s, groups_t = (x.to(device) for x in (z_s, z_t, groups_s, groups_t))

    strong = torch.func.vmap(lambda a, b: strong_nce(a, b, temperature))(z_s, z_t)
    weak = torch.func.vmap(lambda a, b, gs, gt: weak_nce(a, b, gs, gt, temperature))(z_s, z_t, groups_s, groups_t)
    assert strong.shape == weak.shape == (tasks,)
    for t in range(tasks):
        assert torch.allclose(strong[t], strong_nce(z_s[t], z_t[t], temperature), atol=1e-6)
        assert torch.allclose(weak[t], weak_nce(z_s[t], z_t[t], groups_s[t], groups_t[t], temperature), atol=1e-6)


def test_vmap_of_strong_with_default_arguments():
    z = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(4))
    batched = torch.func.vmap(strong_nce)(z, z.flip(1))
    assert torch.allclose(batched, torch.stack([strong_nce(a, a.flip(0)) for a in z]), atol=1e-6)


@pytest.mark.parametrize("temperature", [None, DEFAULT_TEMPERATURE])
def test_gradients_are_finite_under_grad_and_vmap(temperature, device):
    g = torch.Generator().manual_seed(5)
    z_s, z_t = torch.randn(3, 6, 4, generator=g).to(device), torch.randn(3, 6, 4, generator=g).to(device)
    groups = torch.arange(6, device=device).div(3, rounding_mode="floor").expand(3, 6)
    grad_strong = torch.func.vmap(torch.func.grad(lambda a, b: strong_nce(a, b, temperature)))(z_s, z_t)
    grad_weak = torch.func.vmap(torch.func.grad(lambda a, b, gs, gt: weak_nce(a, b, gs, gt, temperature)))(
        z_s, z_t, groups, groups)
    assert grad_strong.shape == grad_weak.shape == z_s.shape
    assert torch.isfinite(grad_strong).all() and torch.isfinite(grad_weak).all()
    # plain autograd agrees with torch.func.grad
    a = z_s[0].clone().requires_grad_(True)
    strong_nce(a, z_t[0], temperature).backward()
    assert torch.allclose(a.grad, grad_strong[0], atol=1e-6)


def test_weak_without_positive_raises(device):
    z = torch.randn(3, 2).to(device)
    with pytest.raises(ValueError, match="group"):
        weak_nce(z, z, torch.tensor([0, 1, 2], device=device), torch.tensor([0, 1, 1], device=device))


@pytest.mark.parametrize("z_s, z_t", [
    (torch.zeros(3, 2), torch.zeros(4, 2)),  # different n
    (torch.zeros(3, 2), torch.zeros(3, 5)),  # different d
    (torch.zeros(3), torch.zeros(3)),  # not 2-D
    (torch.zeros(2, 3, 2), torch.zeros(2, 3, 2)),  # not 2-D
])
def test_strong_bad_shapes_raise(z_s, z_t):
    with pytest.raises(ValueError, match="z_s"):
        strong_nce(z_s, z_t)


def test_weak_bad_shapes_raise():
    with pytest.raises(ValueError, match="embedding dim"):
        weak_nce(torch.zeros(3, 2), torch.zeros(3, 4), torch.arange(3), torch.arange(3))
    with pytest.raises(ValueError, match="groups_s"):
        weak_nce(torch.zeros(3, 2), torch.zeros(3, 2), torch.arange(4), torch.arange(3))


def test_bad_temperature_raises():
    with pytest.raises(ValueError, match="temperature"):
        strong_nce(Z_S, Z_T, temperature=0.0)


def test_cosine_alignment_loss_reference_values():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert cosine_alignment_loss(z, 3 * z).item() == pytest.approx(0.0, abs=1e-7)  # identical directions
    assert cosine_alignment_loss(z, z.flip(1)).item() == pytest.approx(0.5)  # orthogonal
    assert cosine_alignment_loss(z, -z).item() == pytest.approx(1.0)  # opposite
    mixed = torch.stack([z[0], -z[1]])  # one identical pair (0) and one opposite pair (1)
    assert cosine_alignment_loss(z, mixed).item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        cosine_alignment_loss(torch.zeros(3, 2), torch.zeros(2, 2))
