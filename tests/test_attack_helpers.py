"""The attacks' shared helpers: closed-form logit gradients, row updates and row sorts.

Each is a speed measure (see its docstring) that must give the same numbers as the plain torch
operation it replaces.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks._common import input_grad, pair_backward, sort_rows, update_rows_
from attacks.losses import ce_loss, dlr_loss, dlr_pair_loss, label_margin, logit_weights, margin_weights, pair_loss


@pytest.mark.parametrize("targeted", [False, True])
def test_input_grad_matches_autograd_of_the_margin(targeted):
    """The closed-form logit weights give the same margin and input gradient as autograd."""
    gen = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 7)).double()
    x = torch.rand(40, 3, 4, dtype=torch.float64, generator=gen)
    y = torch.randint(0, 7, (40,), generator=gen)
    xa = x.clone().requires_grad_(True)
    ref = label_margin(model(xa), y, targeted)
    (g_ref,) = torch.autograd.grad(ref.sum(), xa)
    with torch.no_grad():  # input_grad must not depend on the caller's grad mode
        z, margin, g = input_grad(model, x, lambda logits: margin_weights(logits, y, targeted))
    assert torch.equal(margin, ref.detach())
    assert torch.allclose(g, g_ref, rtol=0, atol=1e-12)
    assert g.shape == x.shape and not g.requires_grad and not z.requires_grad


class _ItemInBackward(torch.autograd.Function):
    """Identity whose backward calls .item(), which vmap cannot batch."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * (1.0 + 0.0 * g.sum().item())


class _Unbatchable(nn.Module):
    def forward(self, x):
        return _ItemInBackward.apply(x)


@pytest.mark.parametrize("model", ["mlp", "cnn", "unbatchable"])
def test_pair_backward_batched_gradients_equal_one_pass_each(model):
    """K pair gradients in one vectorised backward pass are those of K passes, bit for bit (on a
    layer vmap cannot batch, the K passes are taken instead)."""
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    net = {"mlp": nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 6)),
           "cnn": nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 6)),
           "unbatchable": nn.Sequential(nn.Flatten(), nn.Linear(16, 6), _Unbatchable())}[model]
    x = torch.rand(30, 1, 4, 4, generator=gen)
    y = torch.randint(0, 6, (30,), generator=gen)
    cands = torch.stack([(y + k) % 6 for k in range(1, 4)], 1)
    _, _, _, weights, grad = pair_backward(net, x, lambda z: (y.unsqueeze(1), cands))
    one_each = torch.stack([grad(weights[j]) for j in range(3)])
    assert torch.equal(grad(weights), one_each)
    assert one_each.shape == (3, 30, 16) and one_each.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_update_rows_copies_rows_bit_for_bit(dtype):
    """update_rows_ is dst[rows] = src[rows] exactly (it relies on lerp being exact at 0 and 1)."""
    gen = torch.Generator().manual_seed(0)
    dst = torch.rand(300, 2, 5, generator=gen).to(dtype)
    src = torch.rand(300, 2, 5, generator=gen).to(dtype) * 1e-3 + torch.rand(300, 2, 5, generator=gen).to(dtype)
    rows = torch.rand(300, generator=gen) < 0.5
    expect = dst.clone()
    expect[rows] = src[rows]
    out = update_rows_(dst, src, rows)
    assert out is dst and torch.equal(dst, expect)


@pytest.mark.parametrize("descending", [False, True])
def test_sort_rows_matches_torch_sort(descending):
    """The NumPy path of sort_rows sorts like torch.sort, and its indices point at the values."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(50, 33, generator=gen)
    x[:, :5] = 0.25  # ties
    values, order = sort_rows(x, descending=descending)
    ref = torch.sort(x, dim=1, descending=descending).values
    assert torch.equal(values, ref) and order.dtype == torch.int64
    assert torch.equal(x.gather(1, order), values)
    assert torch.equal(order.sort(dim=1).values, torch.arange(33).expand(50, 33))


@pytest.mark.parametrize("descending", [False, True])
def test_sort_rows_values_only(descending):
    x = torch.randn(20, 17, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    values, order = sort_rows(x, descending=descending, indices=False)
    assert order is None and torch.equal(values, torch.sort(x, dim=1, descending=descending).values)


@pytest.mark.parametrize("kind,targeted", [("ce", False), ("ce", True), ("dlr", False), ("dlr", True),
                                           ("pair", False), ("dlr-pair", False)])
@pytest.mark.parametrize("classes", [2, 3, 10])
def test_logit_weights_match_autograd_of_the_loss(kind, targeted, classes):
    """The closed-form logit gradients of the budget attacks' losses equal autograd's, and their
    loss values equal the plain loss functions' (float64, so rounding cannot hide a wrong term)."""
    gen = torch.Generator().manual_seed(classes)
    z = torch.randn(64, classes, dtype=torch.float64, generator=gen) * 3
    z[:4, : min(classes, 3)] = 1.5  # ties among the top logits
    labels = torch.randint(0, classes, (64,), generator=gen)
    rival = (labels + torch.randint(1, classes, (64,), generator=gen)) % classes
    loss_of = {"ce": lambda v: ce_loss(v, labels, targeted), "dlr": lambda v: dlr_loss(v, labels, targeted),
               "pair": lambda v: pair_loss(v, rival, labels), "dlr-pair": lambda v: dlr_pair_loss(v, rival, labels)}[kind]
    za = z.clone().requires_grad_(True)
    ref = loss_of(za)
    (w_ref,) = torch.autograd.grad(ref.sum(), za)
    w, loss = logit_weights(kind, labels, rival, targeted, classes, z.dtype)(z)
    assert torch.allclose(loss, ref.detach(), rtol=1e-12, atol=1e-12)
    tied = torch.zeros(64, dtype=torch.bool)
    tied[:4] = True  # at exact ties the two may pick different (equally valid) subgradients
    assert torch.allclose(w[~tied], w_ref[~tied], rtol=1e-10, atol=1e-12)
    _, none = logit_weights(kind, labels, rival, targeted, classes, z.dtype, with_loss=False)(z)
    assert none is None
