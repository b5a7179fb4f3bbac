"""The attacks' shared helpers: closed-form logit gradients, row updates and row sorts.

Each is a speed measure (see its docstring) that must give the same numbers as the plain torch
operation it replaces.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks._common import input_grad, sort_rows, update_rows_
from attacks.losses import label_margin, margin_weights


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
