"""Shared fixtures-in-code for the bound tests: small random ReLU networks with boundaries in the box."""
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
