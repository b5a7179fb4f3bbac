"""The loop FMN and DDN share: margin steps on a per-sample radius that adapts to success.

Both attacks keep, per sample, the iterate ``x_adv`` in the box, its perturbation ``delta`` and
norm, and the smallest adversarial point seen; each step takes one forward and one backward
pass of the logit margin (> 0 while the sample is not adversarial), records the iterate if it is
adversarial and smaller than the best, and hands the gradient to the attack's own rule, which
updates its radius and returns the next iterate. The step size ``alpha`` and the radius factor
``gamma`` are cosine-annealed, ``alpha`` to 1/100 and ``gamma`` to 1/50 of their start.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ._common import flat, input_grad, update_rows_
from .losses import margin_weights
from .norms import INF, lp_norm


def cosine(i: int, steps: int, start: float, end: float) -> float:
    """Cosine annealing from ``start`` (i = 0) to ``end`` (i = steps)."""
    return end + (start - end) * (1 + math.cos(math.pi * i / steps)) / 2


@dataclass
class Step:
    """What the attack's rule sees at step ``i``; every tensor is flat, (B, D) or (B,)."""

    i: int
    alpha: float  # annealed step size, relative to the radius
    gamma: float  # annealed radius factor
    x: Tensor  # the inputs
    x_adv: Tensor  # the iterate, in the box
    delta: Tensor  # x_adv - x (the rule may update it in place)
    d_norm: Tensor  # ||delta||_p
    margin: Tensor  # label margin at x_adv, > 0 while not adversarial
    grad: Tensor  # its input gradient
    is_adv: Tensor  # margin < 0
    best_norm: Tensor  # smallest adversarial norm so far (inf: none yet)
    worst_norm: Tensor  # largest norm the box allows


def adaptive_radius_descent(model: nn.Module, inputs: Tensor, labels: Tensor, *, p: float, steps: int,
                            targeted: bool, step_size: float, gamma: float,
                            rule: Callable[[Step], Tensor]) -> Tensor:
    """Run ``steps`` margin steps; ``rule(step)`` returns the next iterate (B, D) in the box.

    Returns the adversarial point of smallest Lp norm found per sample, the input where none was.
    """
    x = inputs.detach()
    if x.shape[0] == 0:
        return x.clone()
    shape = x.shape
    x = flat(x)  # the state is kept flat, (B, D); only the model sees the input's shape
    worst_norm = lp_norm(torch.maximum(x, 1 - x), p)  # largest radius the box allows
    best_norm = torch.full_like(worst_norm, INF)
    best_adv = x.clone()
    x_adv = x.clone()  # the iterate, in the box; delta = x_adv - x and its norm are kept with it
    delta = torch.zeros_like(x)
    d_norm = torch.zeros_like(worst_norm)

    def weigh(z):
        return margin_weights(z, labels, targeted)

    for i in range(steps):
        alpha = cosine(i, steps, step_size, step_size / 100)
        gam = cosine(i, steps, gamma, gamma / 50)
        _, margin, grad = input_grad(model, x_adv.view(shape), weigh)  # margin > 0 while not adversarial
        grad = grad.view_as(x)

        is_adv = margin < 0
        cand = torch.where(is_adv, d_norm, INF)
        update_rows_(best_adv, x_adv, cand < best_norm)
        best_norm = torch.minimum(best_norm, cand)

        x_adv = rule(Step(i, alpha, gam, x, x_adv, delta, d_norm, margin, grad, is_adv, best_norm, worst_norm))
        delta = x_adv - x
        d_norm = lp_norm(delta, p)

    return best_adv.view(shape)
