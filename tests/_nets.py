"""Shared fixtures-in-code: small random ReLU networks with boundaries in the box, and linear
classifiers whose exact radii have active box constraints."""
from __future__ import annotations

import torch
from torch import nn


def random_mlp(seed: int, d: int, widths: list[int], classes: int = 3, *, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """Flatten, (Linear, ReLU) per width, Linear(classes), in eval mode, seeded, in ``dtype``.

    The last bias is shifted so that all logits are equal at the box centre (plus a little noise),
    which puts decision boundaries through the [0, 1] box, where radii are small and interesting.
    """
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    prev = d
    for w in widths:
        layers += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, classes))
    model = nn.Sequential(*layers).to(dtype).eval()
    with torch.no_grad():
        centre = torch.full((1, d), 0.5, dtype=dtype)
        model[-1].bias -= model(centre)[0] + 0.05 * torch.randn(classes, dtype=dtype)
    return model


def linear_problem(seed: int = 0, d: int = 20, k: int = 4, b: int = 16):
    """A seeded affine classifier (Flatten, Linear; eval mode), ``b`` points with about 40% of their
    pixels at 0 or 1 (so the box constraint binds for some samples' exact radii), and the model's own
    labels. Exact radii: :func:`_linear_reference.linear_radii`."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, k)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g))
        lin.bias.copy_(torch.randn(k, generator=g) * 0.5)
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = torch.rand(b, d, generator=g)
    edge = torch.rand(b, d, generator=g) < 0.4
    x = torch.where(edge, (torch.rand(b, d, generator=g) < 0.5).float(), x)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def small_mlp(seed: int, batch: int, d: int, k: int, hidden: int):
    """Two hidden ReLU layers of ``hidden`` units (no Flatten; seeded, eval mode), ``batch`` uniform
    points of [0, 1]^d and the model's own labels (so every point is correctly classified)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, k))
    model.eval()
    gen = torch.Generator().manual_seed(seed + 100)
    x = torch.rand(batch, d, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y
