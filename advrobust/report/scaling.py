"""The report's scaling section: median radii and Lipschitz estimates against p, n, d and the
intrinsic dimension, per group of comparable runs (:func:`advrobust.law.comparable_groups` over
compare's rows), with fitted power laws beside the law of robustness' slopes."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import law, plots
from .._stats import quantile
from ..errors import UserError
from .document import Section
from .loading import RunData, dataset_name, num
from .sections import Context, radii

INTRO = (
    "Per run: median radius and Lipschitz estimates of the margin against the parameter count p, and, "
    "in figures of their own, against the training-set size n, the pixel count d and the intrinsic "
    "dimension of the data (the law's d: exact for synthetic data, else the two-NN estimate; see "
    "docs/analysis.md), on log-log axes. Each arm gets its own figures: the p figures show the width "
    "sweeps (groups of comparable runs in which p varies), the n and d figures the groups in which n "
    "or d varies; one data set and at most "
    f"{plots.SCALING_MAX_GROUPS} groups per figure (more go to further figures, numbered). Each series "
    "of filled markers (training points, the Lipschitz lower bound: what the law speaks of) has its fitted "
    "power law drawn, its slope written at its end (the open markers' fits, test points and upper "
    "estimates, are in the table with every 95% bootstrap interval), fitted over the runs that interpolate (against p: at "
    "or beyond the interpolation threshold) when at least two distinct sizes are there, else over all; "
    "pale points are runs that did not interpolate. The dotted line beside each fit has the slope the law of "
    "robustness predicts (Bubeck & Sellke 2021: Lip ≳ sqrt(n·d/p), so Lipschitz constants of "
    "interpolating models fall at best like p^-1/2 and grow like n^1/2 and d^1/2; radii ≈ margin/Lip "
    "the reciprocal, a heuristic reading of the bound as tight), drawn through the fitted points' "
    "geometric mean since the law fixes slopes, not constants. Vertical lines, in the p figures only: "
    "each width sweep's interpolation threshold (the smallest p with a run that fits its training set "
    "exactly) and p = n·d. Values are in the theorem's unit-norm coordinates (radius / s, Lipschitz × s, "
    "s the typical norm of a centred input, as compare fits them; docs/analysis.md) when every run of a "
    "figure records s, as its axis label then says, else in input units.")

#: the arms beside p: (run attribute, symbol in names, axis label)
OTHER_ARMS = (("n", "n", "training samples n"), ("d", "d", "input dimension d (pixels)"),
              ("d_intrinsic", "d-intrinsic", "intrinsic dimension of the data"))


@dataclass
class _Study:
    """How the runs group (from compare's rows): per group comparable in p its interpolation
    threshold and n·d, which groups are width sweeps, and the notes the section ends with."""

    ctx: Context
    thresholds: dict = field(default_factory=dict)  # law.group_key(row, "params") -> smallest p that interpolates
    threshold_labels: dict = field(default_factory=dict)  # that key -> the group's label
    group_nd: dict = field(default_factory=dict)  # group label -> n·d
    sweep_labels: set = field(default_factory=set)
    pooled: dict = field(default_factory=dict)  # (run name, "x") -> pooled intrinsic dimension (one arm)
    notes: list = field(default_factory=list)

    def __post_init__(self) -> None:
        rows = self.ctx.rows
        for label, members in law.comparable_groups(rows, "params", min_distinct=0):
            self.threshold_labels[law.group_key(members[0], "params")] = label
            n, d = members[0]["n"], members[0]["d"]
            self.group_nd[label] = n * d if n is not None and d is not None else None
        self.thresholds = dict(law.interpolation_thresholds(rows))

    def groups(self, attr: str, *, min_distinct: int) -> list[tuple[str, list[RunData]]]:
        """Runs split into groups comparable against ``attr`` (law.comparable_groups on compare's rows)."""
        by_path = {str(r.path): r for r in self.ctx.runs}
        return [(label, [by_path[row["path"]] for row in members])
                for label, members in law.comparable_groups(self.ctx.rows, attr, min_distinct=min_distinct)]

    def beyond(self, r: RunData) -> bool:
        thr = self.thresholds.get(law.group_key(r.row, "params"))
        return thr is not None and math.isfinite(r.params) and r.params >= thr and r.interpolated

    def fitted(self, r: RunData, attr: str) -> bool:
        """Whether a run enters its series' fit: it interpolates (and, against p, is at or beyond its
        width sweep's interpolation threshold)."""
        return self.beyond(r) if attr == "params" else r.interpolated

    def x(self, r: RunData, attr: str) -> float:
        """A run's position on an arm's axis; against d_intrinsic the mean estimate over the runs of
        its group with its pixel count (seeds of one data set share one x, as in law.fit_law)."""
        if attr == "d_intrinsic":
            return self.pooled.get((r.name, "x"), r.d_intrinsic)
        return getattr(r, attr)

    def pool_intrinsic(self, groups: list) -> None:
        self.pooled = {}
        for _, runs in groups:
            by_d: dict = {}
            for r in runs:
                if math.isfinite(r.d_intrinsic):
                    by_d.setdefault(r.d, []).append(r.d_intrinsic)
            for r in runs:
                vals = by_d.get(r.d)
                if vals:
                    self.pooled[(r.name, "x")] = float(np.mean(vals))

    def vlines(self, order: list) -> list[dict]:
        """Interpolation thresholds (width sweeps only: groups with at least two distinct p) and p = n·d
        for the groups ``order`` of one p figure, each in its group's colour when there are several."""
        out = []
        several = len(order) > 1
        by_label = {self.threshold_labels.get(k): v for k, v in self.thresholds.items()}

        def colour(g: Any) -> str | None:
            return plots.PALETTE[order.index(g) % len(plots.PALETTE)] if several else None

        sweeps = [g for g in order if g in self.sweep_labels]
        thr = sorted(((by_label[g], g) for g in sweeps if by_label.get(g) is not None and math.isfinite(by_label[g])),
                     key=lambda t: t[0])
        for v, glabel in thr:
            out.append({"x": v, "label": f"interpolation threshold{', ' + glabel if several else ''} (p={v:.0f})",
                        "short": "threshold", "group": glabel, "color": colour(glabel)})
        none = [g for g in sweeps if by_label.get(g) is None]
        if none and not thr:
            self.notes.append(f"No run of {', '.join(none)} fits its training set exactly (train accuracy 1), so no "
                              "interpolation threshold is marked and fits use all runs.")
        elif none:
            self.notes.append(f"No run of {', '.join(none)} fits its training set exactly: no interpolation "
                              "threshold is marked for it and its fits use all its runs.")
        seen = set()
        for glabel in order:
            nd = self.group_nd.get(glabel)
            if nd is not None and math.isfinite(nd) and nd not in seen:
                seen.add(nd)
                out.append({"x": nd, "label": f"p = n·d = {nd:.0f}" + (f" ({glabel})" if several else ""),
                            "short": "p = n·d", "group": glabel, "color": colour(glabel)})
        return out

    def fit(self, s: dict, fit_rows: list, what: str, attr: str, kind: str) -> dict | None:
        """The power law of one series over its fitted runs (all runs where fewer than two distinct
        sizes are fitted); its row goes to ``fit_rows``, a note where there is no fit."""
        sym = {"params": "p", "d_intrinsic": "d_intrinsic"}.get(attr, attr)
        group = s.get("group") or "all runs"
        what_g = what if group == "all runs" else f"{what} ({group})"
        x, y, runs = np.asarray(s["x"], float), np.asarray(s["y"], float), s["run_data"]
        beyond = np.array([self.fitted(r, attr) for r in runs])
        regime = "beyond threshold" if attr == "params" else "interpolating"
        if len(set(x[beyond])) >= 2:
            x, y = x[beyond], y[beyond]
        else:
            regime = "all runs"
        if len(set(x)) < 2:
            self.notes.append(f"No fit for {what_g} against {sym}: fewer than two distinct values of {sym}.")
            return None
        try:
            fit = law.fit_power_law(x, y, bootstrap=self.ctx.config.bootstrap, seed=self.ctx.config.seed)
        except (ValueError, UserError) as exc:
            self.notes.append(f"No fit for {what_g} against {sym}: {exc}")
            return None
        pred = law.PREDICTED.get(kind, {}).get("d" if attr == "d_intrinsic" else attr)
        fit = dict(fit, predicted=pred)
        s["predicted"] = pred
        fit_rows.append([group, what, sym, int(len(x)), regime, fit.get("exponent"), fit.get("ci_low"),
                         fit.get("ci_high"), fit.get("r2"), plots.frac_label(pred) if pred is not None else None])
        return fit


def _arms(study: _Study, runs: list[RunData]) -> list[tuple]:
    """``(attr, symbol, axis label, groups)`` per arm with groups to draw: p (the width sweeps, and any
    run shown in no other arm: a lone run still shows where it lies), then n, d, d_intrinsic where
    comparable runs differ in them."""
    arms = []
    covered: set = set()
    for attr, sym, label in OTHER_ARMS:
        vals = {getattr(r, attr) for r in runs if math.isfinite(getattr(r, attr))}
        if len(vals) > 1:
            groups = study.groups(attr, min_distinct=2)
            if groups:
                arms.append((attr, sym, label, groups))
                covered |= {r.name for _, g in groups for r in g}
            elif attr != "d_intrinsic":
                study.notes.append(f"No scaling figure against {sym}: the runs differ in {sym} only across "
                                   f"groups that also differ in data set, labels, architecture or width, "
                                   f"so no fit against {sym} compares like with like.")
    sweeps = study.groups("params", min_distinct=2)
    study.sweep_labels = {g for g, _ in sweeps}
    shown = {r.name for _, g in sweeps for r in g}
    lone = [(g, grs) for g, grs in study.groups("params", min_distinct=0)
            if g not in study.sweep_labels and any(r.name not in covered | shown for r in grs)]
    arms.insert(0, ("params", "p", "parameter count p", sweeps + lone))
    return arms


def scaling(ctx: Context) -> Section:
    sec = Section()
    sec.h(1, "Scaling with parameters, samples and dimension", "scaling")
    sec.p(INTRO)
    study = _Study(ctx)
    fit_rows: list = []
    for attr, sym, label, groups in _arms(study, ctx.runs):
        if attr == "d_intrinsic":
            study.pool_intrinsic(groups)
        else:
            study.pooled = {}
        # one data set per figure, and at most SCALING_MAX_GROUPS groups in it
        step = plots.SCALING_MAX_GROUPS
        by_data: dict = {}
        for g in groups:
            by_data.setdefault(dataset_name(g[1][0].meta), []).append(g)
        chunks = [part[i:i + step] for part in by_data.values() for i in range(0, len(part), step)]
        for ci, chunk in enumerate(chunks):
            suffix = "" if ci == 0 else f"-{ci + 1}"
            part = "" if len(chunks) == 1 else f" ({ci + 1} of {len(chunks)})"
            vlines = study.vlines([g for g, _ in chunk]) if attr == "params" else []
            for norm in ctx.norms:
                for kind in ("radius", "lipschitz"):
                    _figure(sec, study, kind, attr, sym, label, chunk, norm, vlines, suffix, part, fit_rows)
    if fit_rows:
        sec.table(["group", "quantity", "against", "runs fitted", "regime", "fitted slope", "95% low", "95% high",
                   "r²", "law's slope"], fit_rows)
    for note in study.notes:
        sec.p(note)
    return sec


def _series(pts: list, *, label: str, marker: str, filled: bool, color: str) -> dict | None:
    pts = [t for t in pts if math.isfinite(t[1]) and t[1] > 0 and math.isfinite(t[2]) and t[2] > 0]
    if not pts:
        return None
    return {"label": label, "x": [t[1] for t in pts], "y": [t[2] for t in pts], "runs": [t[0].name for t in pts],
            "run_data": [t[0] for t in pts], "marker": marker, "filled": filled, "color": color}


def _points(study: _Study, kind: str, key: str, runs: list[RunData], attr: str, norm: str, unit: bool) -> list:
    """``(run, x, y)`` of one series: the median ``key`` (train, test) radius or the ``key`` (lower,
    upper) Lipschitz estimate of each run that has it, in unit-norm coordinates where ``unit``."""
    pts = []
    for r in runs:
        if kind == "radius":
            if (norm, key) in r.results:
                y = quantile(radii(r.results[(norm, key)][0]), 0.5)
                pts.append((r, study.x(r, attr), y / r.input_scale if unit else y))
        else:
            entry = r.loaded.lipschitz_entry(norm)
            if entry is not None:
                y = num((entry.get("margin") or {}).get(key))
                pts.append((r, study.x(r, attr), y * r.input_scale if unit else y))
    return pts


def _figure(sec: Section, study: _Study, kind: str, attr: str, sym: str, label: str, groups: list, norm: str,
            vlines: list, suffix: str, part: str, fit_rows: list) -> None:
    """The ``kind`` (radius or lipschitz) figure of one arm (one chunk of its groups) for one norm."""
    nm = plots.NORM_LABEL.get(norm, norm)
    # the theorem's coordinates (unit-norm data) where every run's input scale is known, as compare fits them
    unit = all(math.isfinite(r.input_scale) for _, gruns in groups for r in gruns)
    data = dataset_name(groups[0][1][0].meta) if groups and groups[0][1] else "runs"
    # filled: what the law speaks of (memorised training points, the Lipschitz lower bound)
    keys = (("train", "training points"), ("test", "test points")) if kind == "radius" else \
        (("lower", "lower estimate"), ("upper", "upper estimate"))
    series = []
    for gi, (glabel, gruns) in enumerate(groups):
        for si, (key, style) in enumerate(keys):
            what = f"median {key} radius" if kind == "radius" else f"Lipschitz {key} estimate"
            color = plots.PALETTE[gi % len(plots.PALETTE)] if len(groups) > 1 else plots.PALETTE[si]
            s = _series(_points(study, kind, key, gruns, attr, norm, unit), label=f"{glabel}: {what}",
                        marker=plots.MARKERS[gi % len(plots.MARKERS)], filled=si == 0, color=color)
            if s is None:
                continue
            s["group"], s["style"] = glabel, style
            s["faded"] = [not study.fitted(r, attr) for r in s["run_data"]]
            quantity = f"median {norm} {key} radius" if kind == "radius" else f"{norm} Lipschitz {key}"
            s["fit"] = study.fit(s, fit_rows, quantity, attr, kind)
            series.append(s)
    if not series:
        if kind == "radius" and study.ctx.with_results(norm, "test") + study.ctx.with_results(norm, "train"):
            study.notes.append(f"No {norm} radius-vs-{sym} figure{part}: no run has a positive, finite "
                               f"median {norm} radius (more than half of its points misclassified or unbroken).")
        return
    axis = {"d-intrinsic": "intrinsic d"}.get(sym, sym)
    if kind == "radius":
        ylabel = f"{nm} radius (unit-norm data)" if unit else plots.radius_label(norm, image=study.ctx.runs[0].image)
        title = f"median {nm} radius vs {axis}{part}"
        caption = (f"{data}: median {norm} radius ({'unit-norm data' if unit else 'input units'}) against "
                   f"{label}, log-log, one point per run")
    else:
        ylabel = f"margin Lipschitz const. ({nm}, unit-norm data)" if unit else \
            f"margin Lipschitz const. ({nm} input)"
        title = f"{nm} Lipschitz estimates vs {axis}{part}"
        caption = (f"{data}: Lipschitz constant of the margin (logit units per {norm} "
                   f"{'unit of unit-norm data' if unit else 'input unit'}): lower (filled) and upper (open) "
                   f"estimates against {label}, log-log, one point per run")
    fig, meta = plots.plot_scaling(series, xlabel=label, ylabel=ylabel, title=title, vlines=vlines)
    ngroups = len(meta["groups"])
    sec.figure(fig, f"scaling-{kind}-{norm}-vs-{sym}{suffix}", meta,
               caption + (f"; {ngroups} groups of comparable runs, one colour and marker each" if ngroups > 1
                          else "") + "; pale points did not interpolate.")
