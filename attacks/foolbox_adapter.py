"""Run foolbox 3 minimization attacks under this package's attack contract.

``foolbox_info("L2FMNAttack").fn(model, inputs, labels, norm=2.0, steps=100)`` runs foolbox's
attack and returns ``adv`` like every attack here: the inputs' shape, dtype and device, in
[0, 1], equal to the input where foolbox reports no success. Only ``steps`` is passed on (to the
attack's own ``steps`` argument where it has one); every other hyperparameter keeps foolbox's
default, so results match what a foolbox user gets.

Notes (details in ``docs/attacks.md``):

* The norm is fixed by the class (``L2FMNAttack`` -> 2); asking for another is a ValueError.
  Classes whose distance is a constructor argument (``LinearSearchBlendedUniformNoiseAttack``)
  take the requested norm.
* Brendel & Bethge attacks need an adversarial starting point for every sample. The adapter
  runs foolbox's ``DDNAttack`` (same ``steps``) and then ``LinearSearchBlendedUniformNoiseAttack``
  on what DDN left unbroken, and runs Brendel & Bethge only on the samples with a start; the
  others are returned unchanged.
* Random attacks draw from torch's global generator; the adapter seeds it with ``seed`` inside
  ``torch.random.fork_rng`` so the caller's random state is untouched and runs repeat.
* foolbox needs ``numba`` for Brendel & Bethge; its ImportError is passed through as ValueError.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ._common import check_inputs
from .norms import NORMS, norm_name

_PAPERS = {
    "FMN": "Pintor et al. Fast Minimum-norm Adversarial Attacks through Adaptive Norm Constraints. NeurIPS 2021 (foolbox implementation)",
    "DDN": "Rony et al. Decoupling Direction and Norm. CVPR 2019 (foolbox implementation)",
    "CarliniWagner": "Carlini, Wagner. Towards Evaluating the Robustness of Neural Networks. IEEE S&P 2017 (foolbox implementation)",
    "DeepFool": "Moosavi-Dezfooli, Fawzi, Frossard. DeepFool. CVPR 2016 (foolbox implementation)",
    "EAD": "Chen et al. EAD: Elastic-Net Attacks to Deep Neural Networks. AAAI 2018 (foolbox implementation)",
    "BrendelBethge": "Brendel et al. Accurate, reliable and fast robustness evaluation. NeurIPS 2019 (foolbox implementation)",
}


@dataclass(frozen=True)
class FoolboxAttackInfo:
    """Same fields as :class:`attacks.AttackInfo`, for a foolbox class."""

    name: str
    fn: Callable
    norms: tuple[float, ...]
    kind: str
    paper: str

    def supports(self, norm: float) -> bool:
        return float(norm) in self.norms


def _foolbox():
    try:
        import foolbox
    except ImportError as exc:  # pragma: no cover - foolbox is a dependency
        raise ValueError(f"foolbox attacks need the foolbox package ({exc}); pip install foolbox") from None
    return foolbox


def _class_norm(cls) -> float | None:
    """The class's fixed norm, or None when the distance is a constructor argument."""
    for base in cls.__mro__:
        if "distance" in base.__dict__ and not isinstance(base.__dict__["distance"], property):
            dist = base.__dict__["distance"]
            break
    else:
        dist = None
    if dist is None:
        return None
    return float(getattr(dist, "p"))


def foolbox_info(class_name: str) -> FoolboxAttackInfo:
    """Look up a foolbox 3 minimization attack by class name.

    Parameters
    ----------
    class_name : str
        e.g. ``"L2FMNAttack"``, ``"DDNAttack"``, ``"L2BrendelBethgeAttack"``, ``"EADAttack"``.

    Returns
    -------
    FoolboxAttackInfo
        ``fn(model, inputs, labels, *, norm, steps, targeted=False, seed=0) -> adv``.

    Raises
    ------
    ValueError
        Unknown class, or a class that is not a minimization attack (fixed-epsilon attacks such as
        ``LinfPGD`` have no minimal-radius meaning here).
    """
    fb = _foolbox()
    cls = getattr(fb.attacks, class_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, fb.attacks.base.Attack)):
        raise ValueError(f"unknown foolbox attack {class_name!r}; use a class name from foolbox.attacks, "
                         "e.g. foolbox:L2FMNAttack")
    if not issubclass(cls, fb.attacks.base.MinimizationAttack) or inspect.isabstract(cls):
        raise ValueError(f"foolbox:{class_name} is not a concrete minimization attack; only minimization attacks "
                         "(FMN, DDN, CW, DeepFool, EAD, Brendel-Bethge, ...) can give minimal radii")
    fixed = _class_norm(cls)
    params = inspect.signature(cls.__init__).parameters
    norms = (fixed,) if fixed is not None else (tuple(NORMS.values()) if "distance" in params else ())
    norms = tuple(n for n in norms if n in NORMS.values())
    if not norms:
        raise ValueError(f"foolbox:{class_name} minimises a norm this package does not measure (only l1, l2, linf)")
    paper = next((v for k, v in _PAPERS.items() if k in class_name), f"foolbox 3 {class_name}")
    needs_start = "BrendelBethge" in class_name

    def run(model: torch.nn.Module, inputs: Tensor, labels: Tensor, *, norm: float, steps: int = 100,
            targeted: bool = False, seed: int = 0) -> Tensor:
        p = float(norm)
        if p not in norms:
            raise ValueError(f"foolbox:{class_name} does not support norm {norm!r}; it minimises "
                             + ", ".join(norm_name(n) for n in norms))
        check_inputs(inputs, labels)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        kwargs = {}
        if "steps" in params:
            kwargs["steps"] = int(steps)
        if "distance" in params:
            kwargs["distance"] = fb.distances.LpDistance(p)
        try:
            attack = cls(**kwargs)
        except ImportError as exc:
            raise ValueError(f"foolbox:{class_name} needs an optional library: {exc}") from None
        fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=inputs.device)
        x = inputs.detach()
        y = labels.detach()
        crit = fb.criteria.TargetedMisclassification(y) if targeted else fb.criteria.Misclassification(y)
        devices = [inputs.device] if inputs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            if needs_start:
                adv = _run_with_start(fb, attack, fmodel, x, y, crit, targeted, steps)
            else:
                _, adv, success = attack(fmodel, x, crit, epsilons=None)
                adv = torch.where(success.view(-1, *[1] * (x.ndim - 1)), adv, x)
        return adv.detach().clamp(0, 1).to(inputs.dtype)

    run.__name__ = f"foolbox_{class_name}"
    run.__doc__ = f"foolbox 3 ``{class_name}`` under the attack contract ({paper})."
    return FoolboxAttackInfo(name=f"foolbox:{class_name}", fn=run, norms=norms, kind="minimal", paper=paper)


def _run_with_start(fb, attack, fmodel, x: Tensor, y: Tensor, crit, targeted: bool, steps: int) -> Tensor:
    """Brendel & Bethge from adversarial starting points (DDN, then blended noise on the rest)."""
    def adversarial(z: Tensor) -> Tensor:
        with torch.no_grad():
            pred = fmodel(z).argmax(1)
        return pred == y if targeted else pred != y

    _, start, _ = fb.attacks.DDNAttack(steps=int(steps))(fmodel, x, crit, epsilons=None)
    ok = adversarial(start)
    if not ok.all():
        rest = ~ok
        crit_rest = (fb.criteria.TargetedMisclassification(y[rest]) if targeted
                     else fb.criteria.Misclassification(y[rest]))
        _, start_rest, _ = fb.attacks.LinearSearchBlendedUniformNoiseAttack(distance=fb.distances.l2)(
            fmodel, x[rest], crit_rest, epsilons=None)
        start = start.clone()
        start[rest] = start_rest
        ok = adversarial(start)
    adv = x.clone()
    if ok.any():
        idx = ok.nonzero().squeeze(1)
        crit_ok = (fb.criteria.TargetedMisclassification(y[idx]) if targeted
                   else fb.criteria.Misclassification(y[idx]))
        _, out, success = attack(fmodel, x[idx], crit_ok, epsilons=None, starting_points=start[idx])
        out = torch.where(success.view(-1, *[1] * (x.ndim - 1)), out, start[idx])
        adv[idx] = out
    return adv


__all__ = ["FoolboxAttackInfo", "foolbox_info"]
