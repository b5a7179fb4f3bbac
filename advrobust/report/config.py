"""What a report shows: :class:`ReportConfig`, the options of ``python -m advrobust.report``."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..norms import norm_name, parse_norm


@dataclass(frozen=True)
class ReportConfig:
    """Options of :func:`advrobust.report.build_report` (defaults: the command's).

    Parameters
    ----------
    norms : ``'l1'|'l2'|'linf'`` names (or numbers) to show; None: every norm with attack results
        (``l2`` if none). Stored as names, in order, without repeats.
    title : the report's title; None: ``advrobust report: N runs``.
    samples : adversarial examples per model in the gallery (0: no gallery). Three show the 10%,
        50% and 90% quantiles of a model's radii, which is what a reader compares between models.
    bootstrap, seed : resamples and seed of the power-law fits' intervals. 200 (compare uses 2000)
        keeps a report over a hundred runs within seconds; the figures only show the slopes.
    progress : a bar naming the section being built (once the report takes 2 s).
    """

    norms: tuple[str, ...] | None = None
    title: str | None = None
    samples: int = 3
    bootstrap: int = 200
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.samples < 0:
            raise UserError(f"--samples must be >= 0, got {self.samples}")
        if self.bootstrap < 0:
            raise UserError(f"--bootstrap must be >= 0, got {self.bootstrap}")
        if self.norms is not None:
            names = tuple(dict.fromkeys(norm_name(parse_norm(n)) for n in self.norms)) or None
            object.__setattr__(self, "norms", names)
