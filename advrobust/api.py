"""One call for people who bring their own model and data: :func:`radii`.

``advrobust.radii(model, x, y, norm="l2")`` runs the default attack cascade of that norm (the one
``python -m advrobust.attack`` runs) on a plain ``torch.nn.Module`` and returns, per sample, the
smallest verified adversarial radius, the point that achieves it, which attack found it, and the
cascade's sanity flags; optionally certified lower bounds (IBP, CROWN) and exact radii (MILP) to
bracket each radius from below. No run directory, no files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from torch import Tensor, nn

from .errors import UserError
from .norms import norm_name, parse_norm
from .certify import METHODS, certified_radii
from .evaluate import DEFAULT_CASCADES, CascadeResult, make_attack, run_cascade


@dataclass
class Radii:
    """What :func:`radii` found, per sample (numpy arrays over the B samples).

    ``radius``: the smallest verified adversarial radius (0 for misclassified samples, inf where no
    attack succeeded); ``adv``: the adversarial point at that radius (the input itself where there
    is none); ``attack``: the name of the attack that found it (None where none did); ``lower``:
    certified lower bounds when asked for (``radius >= lower`` always); ``exact`` and
    ``exact_status``: exact radii and the solver status (0 optimal, 1 time limit, 2 error) when
    asked for; ``flags``: the cascade's sanity flags (gradient masking, failed attacks, ...), each
    a dict with ``name``, ``count`` and ``message``; ``cascade``: the full
    :class:`advrobust.evaluate.CascadeResult` (per-attack radii, costs)."""

    norm: str
    radius: np.ndarray
    adv: np.ndarray
    attack: list
    correct: np.ndarray
    lower: np.ndarray | None = None
    exact: np.ndarray | None = None
    exact_status: np.ndarray | None = None
    flags: list = field(default_factory=list)
    cascade: CascadeResult | None = None


def radii(model: nn.Module, x: Tensor, y: Tensor, norm: str | float = "l2", *,
          attacks: Sequence[str] | None = None, lower: str | None = None, exact: bool = False,
          exact_time_limit: float = 10.0, steps: int | None = None, seed: int = 0, batch_size: int = 256,
          pool: Tensor | None = None) -> Radii:
    """Minimal adversarial radii of a classifier on a batch, with the default attack cascade.

    Parameters
    ----------
    model : torch.nn.Module
        Maps inputs in [0, 1] to logits of shape (B, classes); put in eval mode here.
    x, y : Tensor
        Inputs (B, ...) in [0, 1] and integer labels (B,), on the model's device.
    norm : "l1", "l2", "linf" (or 1, 2, inf)
    attacks : attack names (``attacks.ATTACKS``), in order; default the norm's default cascade
        (``advrobust.evaluate.DEFAULT_CASCADES``).
    lower : "ibp", "crown" or "crown-ibp", optional
        Also certify lower bounds (ReLU networks of Linear/Conv2d layers only); samples whose
        attack radius meets its bound are not attacked further.
    exact : bool
        Also compute exact radii by MILP/MIQP (small ReLU MLPs only; ``exact_time_limit`` s each).
    steps, seed, batch_size : attack steps (default each attack's own), seed of the attacks,
        samples per attack call.
    pool : Tensor, optional
        Candidate far starting points for the boundary attack (e.g. the training set);
        default ``x`` itself.

    Returns
    -------
    Radii

    Raises
    ------
    UserError
        Unknown norm, attack or method; inputs outside [0, 1]; mismatched shapes; NaN outputs.
    """
    p = parse_norm(norm)
    names = list(attacks) if attacks is not None else list(DEFAULT_CASCADES[p])
    if not names:
        raise UserError("attacks is empty; leave it out for the default cascade")
    if lower is not None and lower not in METHODS:
        raise UserError(f"unknown lower-bound method {lower!r}; use one of {', '.join(METHODS)}")
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise UserError("x and y must be torch tensors (inputs in [0, 1] and integer labels)")
    model.eval()
    configured = [(n, make_attack(n, norm=p, steps=steps, seed=seed)) for n in names]
    bounds = None
    if lower is not None:
        bounds = np.asarray(certified_radii(model, x, y, norm=p, method=lower), dtype=np.float64)
    result = run_cascade(model, x, y, norm=p, attacks=configured, batch_size=batch_size, seed=seed,
                         lower=bounds, pool=pool)
    out = Radii(norm=norm_name(p), radius=result.best_radius, adv=result.adv,
                attack=[result.attacks[i] if i >= 0 else None for i in result.best_attack],
                correct=result.correct, lower=bounds, flags=list(result.flags), cascade=result)
    if exact:
        from .exact import exact_radii

        solved = exact_radii(model, x, y, norm=p, upper=result.best_radius, time_limit=exact_time_limit)
        out.exact = np.asarray(solved["radius"], dtype=np.float64)
        out.exact_status = np.asarray(solved["status"], dtype=np.int64)
    return out


__all__ = ["Radii", "radii"]
