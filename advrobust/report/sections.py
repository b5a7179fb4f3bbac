"""The report's sections: one function each, taking the :class:`Context` (runs, norms, compare's
rows, options) and returning a :class:`~advrobust.report.document.Section` (blocks, figures, missing
pieces, flags). The scaling section is in :mod:`advrobust.report.scaling`."""
from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import compare, plots
from ..compare import first_value
from .._stats import quantile
from ..data import load_dataset, split as data_split
from ..errors import UserError
from ..norms import NORMS
from ..runs import MODEL_FILE, load_model, versions
from .config import ReportConfig
from .document import Section
from .loading import RunData, dataset_name, num, spread

SPLITS = ("test", "train")
#: relative tolerance when checking attack radii against certified lower bounds and exact radii
BRACKET_RTOL = 1e-4
#: most models drawn in one per-model figure (robust accuracy, radii, attacks, gallery): a study with seeds
#: has hundreds of runs, whose curves and legend would be unreadable; the tables keep every run
FIGURE_MAX_RUNS = 12
#: the full comparison table (every column of ``advrobust.compare``), written beside the report
COMPARISON_CSV = "comparison.csv"

#: Flags the report itself computes, with their explanations (also in docs/report.md).
REPORT_FLAGS = {
    "radius-below-certified": (
        "An attack's verified radius is smaller than a certified lower bound (IBP or CROWN) for the same "
        "sample. Both cannot be right: the bound is unsound (a bug in certify, or the model changed after "
        "certification) or the radius was measured on a different input. Trust neither number for these "
        "samples until the cause is found."),
    "radius-below-exact": (
        "An attack's verified radius is smaller than the exact (MILP, solved to optimality) minimal radius. "
        "The exact solver's model of the network or its tolerance is wrong, or the attack's point was "
        "verified with a different model: the 'exact' value is not a minimum for these samples."),
}


@dataclass
class Context:
    """What every section reads: the runs (ordered, labelled), the norms shown, compare's rows (one
    per run, in the runs' order) and the report's options."""

    runs: list[RunData]
    norms: list[str]
    rows: list[dict]
    config: ReportConfig

    def with_results(self, norm: str, split: str) -> list[RunData]:
        return [r for r in self.runs if (norm, split) in r.results]

    def tag(self, name: str) -> Any:
        return next((r.tag for r in self.runs if r.name == name), name)


# --------------------------------------------------------------------------- per-sample helpers
def radii(arrays: dict) -> np.ndarray:
    """The best radius over attacks per sample (0: misclassified, inf: unbroken, NaN: not attacked)."""
    return np.asarray(arrays["best_radius"], dtype=float)


def certified_lower(arrays: dict) -> np.ndarray | None:
    """Largest certified lower bound per sample (IBP, CROWN, MILP lower bound, exact radius when
    optimal); None when the file holds none. Samples without a bound get 0."""
    parts = []
    for key in ("lower__ibp", "lower__crown-ibp", "lower__crown", "exact_lower"):
        if key in arrays:
            parts.append(np.asarray(arrays[key], dtype=float))
    if "exact_radius" in arrays:
        exact = np.asarray(arrays["exact_radius"], dtype=float)
        status = np.asarray(arrays.get("exact_status", np.zeros(exact.shape)), dtype=int)
        parts.append(np.where(status == 0, exact, np.nan))
    if not parts:
        return None
    low = np.nanmax(np.vstack([np.nan_to_num(q, nan=-np.inf) for q in parts]), axis=0)
    low = np.where(np.isfinite(low) | (low == np.inf), low, 0.0)
    low = np.maximum(low, 0.0)
    if "pred" in arrays and "label" in arrays:
        low = np.where(np.asarray(arrays["pred"]) == np.asarray(arrays["label"]), low, 0.0)
    return low


def quartiles(r: np.ndarray) -> tuple[float, float, float]:
    """(median, 25%, 75%) by the project's one quantile (an observed value); NaNs when empty."""
    return (quantile(r, 0.5), quantile(r, 0.25), quantile(r, 0.75)) if r.size else (math.nan,) * 3


def attack_names(arrays: dict, info: dict) -> list[str]:
    names = [str(a) for a in info.get("attacks", [])] if isinstance(info.get("attacks"), list) else []
    cols = [k[len("radius__"):] for k in arrays if k.startswith("radius__")]
    return names + [c for c in cols if c not in names]


def _device(dev: Any) -> Any:
    """``{"device": "cuda:0", "gpu": "H100"}`` -> ``'cuda:0 (H100)'``; strings pass through."""
    if not isinstance(dev, dict):
        return dev
    extra = dev.get("gpu") or dev.get("cpu")
    return f"{dev.get('device', '?')} ({extra})" if extra else dev.get("device")


def flag_commands(path, norm: str, split: str) -> dict:
    """The commands that fill each kind of missing piece of a run directory for ``norm``/``split``;
    the same commands ``advrobust.compare`` names (:func:`advrobust.compare.attack_command`: the
    run's own attack configuration, and ``--bounds-only`` for bounds on existing results)."""
    return {"attack": compare.attack_command(path, norm, split),
            "certify": compare.attack_command(path, norm, split, certify="crown"),
            "lipschitz": compare.LIPSCHITZ_CMD.format(path=path, norm=norm)}


def _command(cmd: Any) -> Any:
    """A recorded command as one line (attack records store it as a list of arguments)."""
    if isinstance(cmd, (list, tuple)):
        return " ".join(shlex.quote(str(c)) for c in cmd)
    return cmd


# --------------------------------------------------------------------------- drawing many runs
def drawn(sec: Section, runs: list[RunData], what: str) -> tuple[list[RunData], dict]:
    """At most FIGURE_MAX_RUNS of ``runs`` for a per-model figure: those of the lowest seed, always the
    smallest and the largest model of each data set, the rest spread evenly over the runs' order (data
    set, then p); a paragraph says which when some are left out. Returns them and each one's colour and
    line style by name (:func:`plots.sequential_styles`: shades ordered by p within a data set, line
    style by data set)."""
    pool = list(runs)
    if len(runs) > FIGURE_MAX_RUNS:
        seeds = [num(first_value(r.meta, "seed")) for r in runs]
        known = [v for v in seeds if math.isfinite(v)]
        low = min(known) if known else math.nan
        pool = [r for r, v in zip(runs, seeds) if v == low] or list(runs)
        pool = spread(pool, FIGURE_MAX_RUNS)
        seed = f"seed {low:g}, " if math.isfinite(low) and len(set(known)) > 1 else ""
        sec.p(f"{what}: {len(pool)} of {len(runs)} runs drawn ({seed}the smallest and largest model of "
              f"each data set, the rest spread evenly over the parameter counts: "
              f"{', '.join(r.label for r in pool)}); the table lists every run.")
    styles = plots.sequential_styles([(str(dataset_name(r.meta)), r.params) for r in pool])
    return pool, {r.name: st for r, st in zip(pool, styles)}


def item(r: RunData, styles: dict, **values) -> dict:
    """A run's entry in a per-model figure: full name, short label, style (from :func:`drawn`)."""
    return {"run": r.name, "label": r.label, "index": r.index, "style": styles.get(r.name), **values}


# --------------------------------------------------------------------------- sections
def overview(ctx: Context) -> Section:
    sec = Section()
    sec.p(f"{len(ctx.runs)} run(s); norms: {', '.join(ctx.norms)}. Radii are minimal adversarial "
          "perturbations found by attacks (upper bounds on the true minimal radius); certified radii are "
          "lower bounds. Radius 0 means the point is misclassified already; ∞ means no attack broke it.")
    rows = []
    for r in ctx.runs:
        have = [f"{n}-{s}" for (n, s) in sorted(r.results)]
        rows.append([r.tag, str(r.path), dataset_name(r.meta), r.params, r.n, r.d, ", ".join(have) or "none",
                     ", ".join(n for n in NORMS if r.loaded.lipschitz_entry(n)) or "none"])
    sec.table(["run", "path", "dataset", "p", "n", "d", "attack results", "Lipschitz"], rows)
    # the runs' missing attack results first, in compare's words (the comparison section adds the rest)
    for r in ctx.runs:
        for norm in ctx.norms:
            for split in SPLITS:
                if (norm, split) not in r.results:
                    what = compare.describe_missing(f"{norm}_{split}_radius_median", has_results=False)
                    sec.need(f"{r.label}: {what}", flag_commands(r.path, norm, split)["attack"])
    return sec


def comparison(ctx: Context) -> Section:
    """compare's rows (``ctx.rows``) as tables split by topic, every column in ``comparison.csv``.
    Its missing pieces are compare's (``row["missing"]``: certified bounds, Lipschitz estimates, ...),
    in compare's words: the one list of what is missing, which the figures' sections do not repeat."""
    sec = Section()
    sec.h(1, "Comparison", "comparison")
    rows = ctx.rows
    by_path = {str(r.path): r for r in ctx.runs}
    for row in rows:
        r = by_path[row["path"]]
        by_cmd: dict = {}
        for col, cmd in (row.get("missing") or {}).items():
            by_cmd.setdefault(cmd, []).append(col)
        for cmd, cols in by_cmd.items():
            has = any(c.startswith(f"{n}_{s}_") and (n, s) in r.results for c in cols for n in NORMS for s in SPLITS)
            sec.need(f"{r.label}: {compare.describe_missing(cols[0], has_results=has)}", cmd)
    sec.files[COMPARISON_CSV] = compare.format_table(rows, fmt="csv")
    sec.p(f"From `advrobust.compare`, split by topic so each table fits the page. Every column of every run "
          f"is in [`{COMPARISON_CSV}`]({COMPARISON_CSV}) (the table `python -m advrobust.compare --format csv` "
          "prints). Runs are named by their short label; hover a label for the run's full name (also in "
          "Provenance). `–`: not measured (see Missing pieces).")

    def table(title: str, cols: list[tuple[str, str]]) -> None:
        cols = [(k, h) for k, h in cols if any(row.get(k) is not None for row in rows)]
        if not cols:
            return
        sec.h(2, title)
        sec.table(["run"] + [h for _, h in cols], [[by_path[row["path"]].tag] + [row.get(k) for k, _ in cols]
                                                   for row in rows])

    table("Size and accuracy", [("dataset", "data"), ("width", "width"),
                                ("params", "p"), ("n", "n"), ("d", "d"), ("p/n", "p/n"),
                                ("train_accuracy", "train acc."), ("test_accuracy", "test acc."),
                                ("interpolated", "interpolated"), ("d_intrinsic", "intrinsic d")])
    for norm in ctx.norms:
        for split in compare.SPLITS:
            pre = f"{norm}_{split}_"
            keys = list(dict.fromkeys(k for row in rows for k in row if k.startswith(pre)))
            cols = [(pre + "attacked", "points"), (pre + "radius_median", "median radius")]
            cols += [(k, f"robust acc. ε={k.split('@')[1]}") for k in keys if "_robust_acc@" in k]
            cols += [(k, f"certified ε={k.split('@')[1]}") for k in keys if "_certified@" in k]
            table(f"Radii: {norm}, {split} points", cols)
    lip_cols = []
    for norm in ctx.norms:
        lip_cols += [(f"{norm}_lip_lower", f"{norm} lower"), (f"{norm}_lip_upper", f"{norm} upper"),
                     (f"{norm}_lip_local_median", f"{norm} local median")]
    table("Lipschitz constant of the margin", lip_cols + [("logit_lip_lower", "logits lower"),
                                                         ("logit_lip_upper", "logits upper"),
                                                         ("input_scale", "input scale")])
    cost = []
    for row in rows:
        r = by_path[row["path"]]
        search = r.meta.get("min_width_search") if isinstance(r.meta.get("min_width_search"), dict) else {}
        attack = [num(info.get("wall_time_s")) for _, info in r.results.values()]
        attack = [v for v in attack if math.isfinite(v)]
        lips = [num((r.loaded.lipschitz_entry(nm) or {}).get("wall_time_s")) for nm in NORMS]
        lips = [v for v in lips if math.isfinite(v)]
        cost.append([r.tag, first_value(r.meta, "epochs"), first_value(r.meta, "wall_time_s"),
                     search.get("wall_time_s"), sum(attack) if attack else None, sum(lips) if lips else None])
    if cost:
        sec.h(2, "Cost (wall time, seconds)")
        sec.table(["run", "epochs", "training", "min-width search", "attacks", "Lipschitz"], cost)
    return sec


def robust_accuracy(ctx: Context) -> Section:
    sec = Section()
    sec.h(1, "Robust accuracy against epsilon", "robust-accuracy")
    sec.p("Share of points whose radius exceeds ε, from the per-sample radii: thick, the best over attacks "
          "(an upper bound on true robust accuracy); thin with tick marks, the certified lower bounds where they "
          "exist (a lower bound). The truth lies between the two curves of a model. Colours: one sequential "
          "colormap per data set, darker for more parameters; line style by data set.")
    for norm in ctx.norms:
        for split in SPLITS:
            runs = ctx.with_results(norm, split)
            if not runs:
                continue
            pool, styles = drawn(sec, runs, f"{norm} robust accuracy on {split} points")
            curves = []
            for r in pool:
                arrays, _ = r.results[(norm, split)]
                curves.append(item(r, styles, radius=radii(arrays), lower=certified_lower(arrays)))
            fig, meta = plots.plot_robust_accuracy(curves, norm=norm, split=split, image=runs[0].image)
            sec.figure(fig, f"robust-accuracy-{norm}-{split}", meta,
                       f"{norm} robust accuracy on {split} points, one curve per model "
                       f"({meta['certified_curves']} with certified curves).")
    if not any(r.results for r in ctx.runs):
        sec.p("No attack results yet: run `python -m advrobust.attack RUN --norm l2 --split test` on each run.")
    return sec


def distributions(ctx: Context) -> Section:
    sec = Section()
    sec.h(1, "Distribution of radii", "radii")
    sec.p("Finite positive radii per model on training and test points; counts of misclassified (0) and "
          "unbroken (∞) points are written under each box and in the table.")
    for norm in ctx.norms:
        groups, rows = [], []
        for r in ctx.runs:
            by_split = {}
            for split in ("train", "test"):
                if (norm, split) in r.results:
                    rad = radii(r.results[(norm, split)][0])
                    by_split[split] = rad
                    rows.append([r.tag, split, rad.size, int(np.sum(rad == 0)), int(np.sum(np.isinf(rad))),
                                 quantile(rad, 0.1), quantile(rad, 0.5), quantile(rad, 0.9)])
            if by_split:
                groups.append((r, by_split))
        if not groups:
            continue
        sec.h(2, f"{norm}")
        pool, styles = drawn(sec, [r for r in ctx.runs if any((norm, s) in r.results for s in SPLITS)],
                             f"{norm} radii")
        keep = {r.name for r in pool}
        groups = [item(r, styles, radius=by_split) for r, by_split in groups if r.name in keep]
        fig, meta = plots.plot_radius_distribution(groups, norm=norm, image=ctx.runs[0].image)
        sec.figure(fig, f"radii-{norm}", meta, f"{norm} radii on training and test points per model.")
        sec.table(["run", "split", "samples", "misclassified (0)", "unbroken (∞)", "q10", "median", "q90"], rows)
    return sec


def _attack_rows(r: RunData, arrays: dict, info: dict, rows: list, attacks_all: list) -> dict:
    """Per attack of one run's results: its table rows (appended to ``rows``) and the figure's entry."""
    names = attack_names(arrays, info)
    best = radii(arrays)
    bi = np.asarray(arrays.get("best_attack", np.full(best.shape, -1)), dtype=int)
    broken = np.isfinite(best) & (best > 0)
    exact = None
    if "exact_radius" in arrays:
        st = np.asarray(arrays.get("exact_status", np.zeros(best.shape)), dtype=int)
        exact = np.where((st == 0) & broken, np.asarray(arrays["exact_radius"], float), np.nan)
        exact = np.where(exact > 0, exact, np.nan)
    m = {"run": r.name, "best_share": {}, "ratio_best": {}, "ratio_exact": {}}
    for ai, a in enumerate(names):
        col = arrays.get(f"radius__{a}")
        if col is None:
            continue
        col = np.asarray(col, dtype=float)
        ran = broken & ~np.isnan(col)
        nb = max(int(broken.sum()), 1)
        share = float(np.sum(broken & (bi == ai)) / nb)
        near = float(np.sum(ran & (col <= best * 1.01)) / nb)
        failed = float(np.sum(ran & np.isinf(col)) / max(int(ran.sum()), 1))
        hit = ran & np.isfinite(col)
        q3 = quartiles(col[hit] / best[hit])
        rex = math.nan
        if exact is not None:
            ok = hit & np.isfinite(exact)
            m["ratio_exact"][a] = quartiles(col[ok] / exact[ok])
            rex = m["ratio_exact"][a][0]
        t = arrays.get(f"time__{a}")
        fw = arrays.get(f"forward__{a}")
        m["best_share"][a] = share
        m["ratio_best"][a] = q3
        rows.append([r.tag, a, share, near, failed, q3[0], rex,
                     quantile(np.asarray(fw, float), 0.5) if fw is not None else None,
                     quantile(np.asarray(t, float), 0.5) if t is not None else None])
        if a not in attacks_all:
            attacks_all.append(a)
    if not m["ratio_exact"]:
        m.pop("ratio_exact")
    return m


def attack_comparison(ctx: Context) -> Section:
    sec = Section()
    sec.h(1, "Which attack found the best radius", "attacks")
    sec.p("Per attack: the share of broken points (0 < best radius < ∞) where it gave the best radius "
          "(as recorded, ties go to the first attack listed) and where it was within 1% of the best, how "
          "often it failed (no verified adversarial point), and, over the points it broke, its median ratio to "
          "the best radius over attacks and to the exact (MILP) radius where exact radii were computed "
          "(1 = as good as the best / optimal; the figure adds the interquartile range).")
    any_done = False
    for norm in ctx.norms:
        for split in SPLITS:
            runs = ctx.with_results(norm, split)
            if not runs:
                continue
            rows, attacks_all = [], []
            models = [_attack_rows(r, *r.results[(norm, split)], rows, attacks_all) for r in runs]
            if not attacks_all:
                continue
            any_done = True
            sec.h(2, f"{norm}, {split} points")
            pool, styles = drawn(sec, runs, f"attacks on {norm} {split} points")
            keep = {r.name: r for r in pool}
            models = [{**m, **item(keep[m["run"]], styles)} for m in models if m["run"] in keep]
            fig, meta = plots.plot_attack_comparison(models, attacks=attacks_all, norm=norm, split=split)
            sec.figure(fig, f"attacks-{norm}-{split}", meta,
                       f"Attacks on {norm} {split} points: share best, median gap to the best"
                       + (" and to the exact radius." if meta["exact"] else "."))
            sec.table(["run", "attack", "best (recorded)", "within 1% of best", "failed", "median radius/best",
                       "median radius/exact", "median forward passes", "median s/sample"], rows)
    if not any_done:
        sec.p("No per-attack radii yet (columns `radius__<attack>` of the attack results).")
    return sec


def _gallery_row(r: RunData, norm: str, split: str, samples: int, notes: list) -> dict | None:
    """Up to ``samples`` broken points of one run (the 10%, 50%, 90% quantiles of its radii) with
    their adversarial points and predictions; None (with a note where it is a problem) if none."""
    arrays, _ = r.results[(norm, split)]
    if "adv" not in arrays or "index" not in arrays:
        notes.append(f"{r.name} {norm}/{split}: no `adv` or `index` column, no gallery row.")
        return None
    best = radii(arrays)
    ok = np.flatnonzero(np.isfinite(best) & (best > 0))
    if ok.size == 0:
        return None
    order = ok[np.argsort(best[ok], kind="stable")]
    qs = (0.1, 0.5, 0.9) if samples >= 3 else (0.5,) * samples
    qs = qs + tuple(np.linspace(0, 1, samples)[3:]) if samples > 3 else qs
    picks = list(dict.fromkeys(int(order[int(round(q * (order.size - 1)))]) for q in qs))
    spec = r.meta.get("spec", {})
    try:
        ds = load_dataset(**spec["data"])
        x_all, _ = data_split(ds, split)
        model, _ = load_model(r.path / MODEL_FILE)
    except (UserError, KeyError, TypeError) as exc:
        notes.append(f"{r.name}: no gallery row, the run's data or model could not be loaded ({exc}).")
        return None
    x = x_all[torch.as_tensor(arrays["index"][picks])].detach().cpu().numpy()
    adv = np.asarray(arrays["adv"][picks], dtype=np.float32)
    if adv.shape != x.shape:
        notes.append(f"{r.name}: `adv` has shape {adv.shape[1:]} but the data {x.shape[1:]}; skipped.")
        return None
    with torch.no_grad():
        adv_pred = model(torch.as_tensor(adv)).argmax(1).tolist()
    return {"run": r.name, "label": r.label, "image": bool(r.image), "samples": [
        {"x": x[k], "adv": adv[k], "label": int(arrays["label"][i]) if "label" in arrays else "?",
         "pred": int(arrays["pred"][i]) if "pred" in arrays else "?", "adv_pred": int(adv_pred[k]),
         "radius": float(best[i])} for k, i in enumerate(picks)]}


def gallery(ctx: Context) -> Section:
    sec = Section()
    samples = ctx.config.samples
    sec.h(1, "Adversarial examples", "gallery")
    sec.p(f"Up to {samples} broken test points per model (the 10%, 50% and 90% quantiles of its radii): "
          "original, perturbation δ = adv − x in a diverging colormap scaled to its largest entry, and the "
          "adversarial input; titles give label, clean prediction → adversarial prediction, and radius.")
    notes: list[str] = []
    for norm in ctx.norms:
        split = "test" if ctx.with_results(norm, "test") else "train"
        shown = ctx.with_results(norm, split)
        left_out = [r.name for r in ctx.with_results(norm, "train") if r not in shown]
        if left_out:
            notes.append(f"{norm} gallery shows {split} points; not shown, for want of {split} results: "
                         f"{', '.join(left_out)}.")
        shown, _ = drawn(sec, shown, f"{norm} gallery")
        rows = [row for row in (_gallery_row(r, norm, split, samples, notes) for r in shown) if row is not None]
        if not rows:
            continue
        sec.h(2, f"{norm}, {split} points")
        # image and vector inputs cannot share one grid of panels: one figure for each kind present
        for image in (True, False):
            group = [row for row in rows if row["image"] == image]
            if not group:
                continue
            if not image:
                sec.p("Inputs are not images: each panel shows the perturbation per coordinate as a bar chart.")
            fig, meta = plots.plot_gallery(group, norm=norm, image=image)
            both = len({row["image"] for row in rows}) == 2
            sec.figure(fig, f"gallery-{norm}-{split}" + ("-vectors" if both and not image else ""), meta,
                       f"{norm} adversarial examples on {split} points, one row per model.")
    for note in notes:
        sec.p(note)
    return sec


def _bracket_flags(r: RunData, norm: str, split: str, arrays: dict, info: dict) -> list[dict]:
    """The flags the attack recorded, and the report's own bracket checks (a radius below a certified
    bound or an exact radius) where the attack did not already raise them."""
    out = []
    for f in info.get("flags") or []:
        if not isinstance(f, dict) or not f.get("count", 1):
            continue
        out.append({"run": r.name, "norm": norm, "split": split, "name": str(f.get("name", "?")),
                    "count": f.get("count"), "message": str(f.get("message", "")),
                    "doc": f"docs/attacks.md#{f.get('name', '')}"})
    best = radii(arrays)
    tol = lambda v: BRACKET_RTOL * (1.0 + np.abs(v))  # noqa: E731
    fired = {f.get("name") for f in info.get("flags") or [] if isinstance(f, dict)}
    for key in ("lower__ibp", "lower__crown-ibp", "lower__crown"):
        if key in arrays and "radius-below-certified" not in fired:
            low = np.asarray(arrays[key], float)
            bad = int(np.sum(np.isfinite(best) & (best > 0) & np.isfinite(low) & (best < low - tol(low))))
            if bad:
                out.append({"run": r.name, "norm": norm, "split": split, "name": "radius-below-certified",
                            "count": bad, "message": f"({key[7:]}) " + REPORT_FLAGS["radius-below-certified"],
                            "doc": "docs/report.md#radius-below-certified"})
    if "exact_radius" in arrays and "radius-below-exact" not in fired:
        ex = np.asarray(arrays["exact_radius"], float)
        st = np.asarray(arrays.get("exact_status", np.zeros(ex.shape)), int)
        bad = int(np.sum((st == 0) & np.isfinite(best) & (best > 0) & np.isfinite(ex) & (best < ex - tol(ex))))
        if bad:
            out.append({"run": r.name, "norm": norm, "split": split, "name": "radius-below-exact",
                        "count": bad, "message": REPORT_FLAGS["radius-below-exact"],
                        "doc": "docs/report.md#radius-below-exact"})
    return out


def sanity_flags(ctx: Context) -> Section:
    sec = Section()
    sec.h(1, "Sanity flags", "flags")
    for r in ctx.runs:
        for (norm, split), (arrays, info) in sorted(r.results.items()):
            sec.flags += _bracket_flags(r, norm, split, arrays, info)
    if not sec.flags:
        sec.p("No sanity check fired" + (" (no attack results to check)." if not any(r.results for r in ctx.runs)
                                         else " on any run, norm or split."))
        return sec
    sec.p("Every check that fired, with its stable name; each is explained in `docs/attacks.md` (attack "
          "flags) or `docs/report.md` (bracket checks done by the report).")
    sec.table(["run", "norm", "split", "flag", "count", "explanation", "documented in"],
              [[ctx.tag(f["run"]), f["norm"], f["split"], f["name"], f["count"], f["message"], f["doc"]]
               for f in sec.flags])
    return sec


def provenance(ctx: Context) -> Section:
    sec = Section()
    sec.h(1, "Provenance", "provenance")
    sec.p("Each run: its short label (used in every table and figure), full name and folder, seed, device, "
          "library versions and training time. For a run whose width was found by the minimal-width search "
          "(`width=min`), the search's own time is given too: the search trains every width it tries, so it "
          "costs more than the final model's training.")
    rows, stages, attack_rows = [], [], []
    for r in ctx.runs:
        m = r.meta
        v = m.get("versions") or {}
        search = m.get("min_width_search") if isinstance(m.get("min_width_search"), dict) else None
        rows.append([r.tag, r.name, str(r.path), first_value(m, "seed"), _device(m.get("device")),
                     f"torch {v.get('torch')}, advrobust {v.get('advrobust')}" if v else None,
                     first_value(m, "wall_time_s"), search.get("wall_time_s") if search else None,
                     len(search.get("tried") or []) if search else None])
        stages.append([r.tag, "train", _command(first_value(m, "command")), first_value(m, "wall_time_s")])
        for (norm, split), (_, info) in sorted(r.results.items()):
            stages.append([r.tag, f"attack {norm}/{split}", _command(info.get("command")), info.get("wall_time_s")])
            attack_rows.append([r.tag, norm, split, info.get("n"), ", ".join(map(str, info.get("attacks") or [])),
                                info.get("steps"), info.get("batch_size")])
        for norm in NORMS:
            lip = r.loaded.lipschitz_entry(norm)
            if lip is not None:
                stages.append([r.tag, f"lipschitz {norm}", _command(lip.get("command")), lip.get("wall_time_s")])
    sec.table(["run", "full name", "folder", "seed", "device", "versions", "training (s)",
               "min-width search (s)", "widths tried"], rows)
    sec.p("Commands and wall times recorded by each stage.")
    sec.table(["run", "stage", "command", "wall time (s)"], stages)
    if attack_rows:
        sec.table(["run", "norm", "split", "samples", "attacks", "steps", "batch size"], attack_rows)
    v = versions()
    sec.p("Report made with " + ", ".join(f"{k} {v[k]}" for k in ("advrobust", "python", "numpy", "matplotlib")
                                           if v.get(k)) + ".")
    return sec


def missing_section(missing: list[dict]) -> Section:
    """The missing pieces every other section found, each with the command that fills it."""
    sec = Section()
    sec.h(1, "Missing pieces", "missing")
    if not missing:
        sec.p("Nothing missing: every run has attack results for every norm and split shown, and Lipschitz estimates.")
        return sec
    sec.p("Parts of the report that are empty or partial, and the command that fills each:")
    sec.items([f"missing: {m['what']}" + (f": `{m['command']}`" if m["command"] else "") for m in missing])
    return sec
