"""Minimal-perturbation and budget attacks, one pure function per file.

Contract (see ``docs/internals.md``)::

    adv = attack(model, inputs, labels, *, norm, steps, targeted=False, ...)

``adv`` has the inputs' shape, dtype and device, lies in [0, 1], and equals the input where no
adversarial point was found. Importing this package needs only torch; each attack module is
imported the first time it is used.

``ATTACKS`` maps a name to an :class:`AttackInfo`: the function, the norms it supports, its
kind (``"minimal"``: finds the smallest perturbation; ``"budget"``: finds any perturbation
within ``eps``) and its paper.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from .norms import INF


@dataclass(frozen=True)
class AttackInfo:
    name: str
    module: str  # module inside this package
    function: str
    norms: tuple[float, ...]
    kind: str  # "minimal" or "budget"
    paper: str

    @property
    def fn(self) -> Callable:
        """The attack function (imported on first use)."""
        return getattr(importlib.import_module(f"{__name__}.{self.module}"), self.function)

    def supports(self, norm: float) -> bool:
        return float(norm) in self.norms


_ENTRIES = [
    AttackInfo("fmn", "fmn", "fmn", (1.0, 2.0, INF), "minimal",
               "Pintor, Roli, Brendel, Biggio. Fast Minimum-norm Adversarial Attacks through Adaptive Norm Constraints. NeurIPS 2021"),
    AttackInfo("ddn", "ddn", "ddn", (2.0,), "minimal",
               "Rony et al. Decoupling Direction and Norm for Efficient Gradient-Based L2 Adversarial Attacks and Defenses. CVPR 2019"),
    AttackInfo("alma", "alma", "alma", (1.0, 2.0), "minimal",
               "Rony, Granger, Pedersoli, Ben Ayed. Augmented Lagrangian Adversarial Attacks. ICCV 2021"),
    AttackInfo("fab", "fab", "fab", (1.0, 2.0, INF), "minimal",
               "Croce, Hein. Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack. ICML 2020"),
    AttackInfo("deepfool", "deepfool", "deepfool", (2.0, INF), "minimal",
               "Moosavi-Dezfooli, Fawzi, Frossard. DeepFool. CVPR 2016; L2 boundary refinement after Abdollahpour et al. SuperDeepFool, 2023"),
    AttackInfo("cw", "cw", "cw", (2.0,), "minimal",
               "Carlini, Wagner. Towards Evaluating the Robustness of Neural Networks. IEEE S&P 2017"),
    AttackInfo("boundary", "boundary", "boundary", (1.0, 2.0, INF), "minimal",
               "Brendel, Rauber, Kümmerer, Ustyuzhaninov, Bethge. Accurate, reliable and fast robustness evaluation. "
               "NeurIPS 2019 (boundary walk with an L-infinity trust box, far and ray starts, cutting-plane polish)"),
    AttackInfo("pgd", "pgd", "pgd", (1.0, 2.0, INF), "budget",
               "Madry et al. Towards Deep Learning Models Resistant to Adversarial Attacks. ICLR 2018"),
    AttackInfo("apgd", "apgd", "apgd", (1.0, 2.0, INF), "budget",
               "Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks. ICML 2020; L1: Croce, Hein. Mind the box. ICML 2021"),
    AttackInfo("pgd-min", "eps_search", "pgd_min", (1.0, 2.0, INF), "minimal",
               "PGD (Madry et al. 2018) made minimal by a per-sample epsilon search"),
    AttackInfo("apgd-min", "eps_search", "apgd_min", (1.0, 2.0, INF), "minimal",
               "APGD (Croce, Hein 2020) made minimal by a per-sample epsilon search"),
]

ATTACKS: dict[str, AttackInfo] = {e.name: e for e in _ENTRIES}


def get_attack(name: str) -> AttackInfo:
    """Look up an attack by name; ``foolbox:ClassName`` gives a foolbox 3 attack under our contract."""
    if name.startswith("foolbox:"):
        from .foolbox_adapter import foolbox_info  # here: importing this package stays torch only

        return foolbox_info(name.split(":", 1)[1])
    if name not in ATTACKS:
        raise KeyError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)} or foolbox:<AttackClass>")
    return ATTACKS[name]


__all__ = ["ATTACKS", "AttackInfo", "get_attack"]
