"""Figures for the report: one style, one palette, paper-sized, each returning its own metadata.

Every ``plot_*`` function takes plain numpy arrays and dicts (no run directories, no files) and
returns ``(figure, meta)``, where ``meta`` records what the figure holds (``curves``: how many
per-model curves or groups it draws, ``runs``: their names, plus figure-specific counts). The report
saves the figure and keeps ``meta`` so tests and ``--json`` can check that each figure shows the
runs it should.

matplotlib is imported inside the functions (``import advrobust.plots`` needs only numpy), and
always with the non-interactive Agg backend.
"""
from __future__ import annotations

import io
import math
import textwrap
from typing import Sequence

import numpy as np

from ._stats import median

#: Okabe & Ito (2008) colour-blind-safe palette; its yellow, faint on white, comes last.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
#: one marker per group of runs where a figure shows several groups
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">")
#: Line styles cycled after the palette runs out, so more than eight runs stay distinguishable.
LINESTYLES = ("-", (0, (4, 1.5)), (0, (1, 1)), (0, (4, 1, 1, 1)))
#: Figure widths in inches: one column and two columns of a two-column paper.
SINGLE = 3.5
DOUBLE = 7.0

#: The one style every figure uses (``matplotlib.rc_context(STYLE)``).
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.3,
    "lines.markersize": 4,
    "figure.dpi": 100,
    "savefig.dpi": 180,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "image.cmap": "viridis",
    "svg.hashsalt": "advrobust",
}

NORM_LABEL = {"l1": "L1", "l2": "L2", "linf": "L∞"}


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return matplotlib, plt


def _style() -> dict:
    from cycler import cycler

    out = dict(STYLE)
    out["axes.prop_cycle"] = cycler(color=list(PALETTE))
    return out


def run_style(index: int) -> dict:
    """Colour and line style of the ``index``-th run (the same in every figure)."""
    return {"color": PALETTE[index % len(PALETTE)], "linestyle": LINESTYLES[(index // len(PALETTE)) % len(LINESTYLES)]}


#: One sequential colormap per data set in a per-model figure (light = few parameters, dark = many);
#: runs of different data sets also differ in line style (:data:`LINESTYLES`).
SEQUENTIAL_CMAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")


def sequential_styles(keys: Sequence[tuple]) -> list[dict]:
    """Colour and line style per run of one figure from ``(data set, parameter count)`` keys.

    Runs of a data set take evenly spaced shades of that data set's colormap, ordered by p (lightest
    for the smallest model); each data set has its own colormap and line style. Two runs of a figure
    never share a colour (shades are nudged apart if rounding to hex would merge them).
    """
    import matplotlib
    from matplotlib.colors import to_hex

    datasets = list(dict.fromkeys(k[0] for k in keys))
    out: list[dict] = [{} for _ in keys]
    used: set = set()
    for di, ds in enumerate(datasets):
        members = sorted((i for i, k in enumerate(keys) if k[0] == ds),
                         key=lambda i: (keys[i][1] if keys[i][1] == keys[i][1] else math.inf, i))
        cmap = matplotlib.colormaps[SEQUENTIAL_CMAPS[di % len(SEQUENTIAL_CMAPS)]]
        # the colormaps' palest quarter is too faint on white; beyond 6 data sets, shift the range
        lo, hi = 0.4 - 0.1 * (di // len(SEQUENTIAL_CMAPS) % 3), 0.95
        pos = np.linspace(lo, hi, len(members)) if len(members) > 1 else np.array([0.75])
        for j, i in zip(pos, members):
            c, t = to_hex(cmap(float(j))), float(j)
            while c in used and t > 0.05:  # extremely many runs: step to the next distinct shade
                t -= 0.002
                c = to_hex(cmap(t))
            used.add(c)
            out[i] = {"color": c, "linestyle": LINESTYLES[di % len(LINESTYLES)], "dataset": ds}
    return out


def _run_style(item: dict) -> dict:
    """A figure item's style: its ``style`` (from :func:`sequential_styles`), else by ``index``."""
    return item.get("style") or run_style(item.get("index", 0))


def radius_label(norm: str, *, image: bool) -> str:
    """Axis label with units, e.g. ``'L2 radius (pixel units, [0,1] scale)'``."""
    unit = "pixel units, [0,1] scale" if image else "input units"
    return f"{NORM_LABEL.get(norm, norm)} radius ({unit})"


def _legend_outside(ax, n_items: int, **kwargs) -> None:
    """Legend right of the axes (never over the data)."""
    if n_items == 0:
        return
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def figure_bytes(fig, fmt: str) -> bytes:
    """Render ``fig`` as ``'png'`` or ``'pdf'`` bytes, without timestamps (deterministic output)."""
    _, plt = _mpl()
    buf = io.BytesIO()
    meta = {"pdf": {"CreationDate": None, "ModDate": None, "Producer": None},
            "png": {"Software": None}}[fmt]
    with plt.rc_context(_style()):
        fig.savefig(buf, format=fmt, metadata=meta, dpi=STYLE["savefig.dpi"], bbox_inches="tight",
                    pad_inches=STYLE["savefig.pad_inches"])
    return buf.getvalue()


def _plain_log_ticks(ax, axis: str = "y") -> None:
    """Log axis ticks as plain numbers (0.2, 0.5, 1) rather than 2x10^-1 when under ~2 decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    which = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = (ax.get_ylim() if axis == "y" else ax.get_xlim())
    if lo > 0 and hi / lo < 150:
        fmt = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1000 else f"{v:.3g}")
        subs = (1.0, 2.0, 5.0) if hi / lo > 4 else tuple(float(k) for k in range(1, 10))
        which.set_major_locator(LogLocator(base=10, subs=subs))
        which.set_major_formatter(fmt)
        which.set_minor_formatter(NullFormatter())


def layout_problems(fig) -> dict:
    """Overlapping text and legends over data, measured through matplotlib's renderer after drawing.

    Returns ``{"overlaps": [(text a, text b), ...], "legend_over_axes": [legend's first entry, ...]}``:
    pairs of visible texts (suptitle, titles, axis labels, tick labels, annotations, legend entries)
    whose boxes intersect by more than half a pixel each way, and legends whose box intersects a panel.
    Both are empty for a figure a reader can read. The report records them in each figure's metadata.
    """
    _, plt = _mpl()
    with plt.rc_context(_style()):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
    texts: list = []

    def add(t, what: str) -> None:
        if t is not None and t.get_visible() and t.get_text().strip():
            texts.append((f"{what}: {t.get_text()!r}", t.get_window_extent(renderer)))

    for t in fig.texts:  # the suptitle is one of them
        add(t, "suptitle" if t is getattr(fig, "_suptitle", None) else "figure text")
    legends = list(fig.legends)
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        for t in (ax.title, ax._left_title, ax._right_title):
            add(t, f"axes {i} title")
        add(ax.xaxis.label, f"axes {i} xlabel")
        add(ax.yaxis.label, f"axes {i} ylabel")
        for axis, name in ((ax.xaxis, "xtick"), (ax.yaxis, "ytick")):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if tick.get_loc() is not None and lo - 1e-12 * abs(hi - lo) <= tick.get_loc() <= hi + 1e-12 * abs(hi - lo):
                    add(tick.label1, f"axes {i} {name}")
        for t in ax.texts:
            add(t, f"axes {i} text")
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
    for leg in legends:
        for t in leg.get_texts():
            add(t, "legend")
    overlaps = []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            a, b = texts[i][1], texts[j][1]
            if min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5:
                overlaps.append((texts[i][0], texts[j][0]))
    over = []
    for leg in legends:
        box = leg.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible() and ax.axison:
                p = ax.get_window_extent(renderer)
                if min(box.x1, p.x1) - max(box.x0, p.x0) > 0.5 and min(box.y1, p.y1) - max(box.y0, p.y0) > 0.5:
                    over.append(leg.get_texts()[0].get_text() if leg.get_texts() else "legend")
    return {"overlaps": overlaps, "legend_over_axes": over}


def close(fig) -> None:
    _, plt = _mpl()
    plt.close(fig)


# --------------------------------------------------------------------------- robust accuracy
def robust_accuracy(radii: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Fraction of samples whose radius exceeds each epsilon (radius 0: misclassified)."""
    r = np.nan_to_num(np.asarray(radii, dtype=float), nan=0.0)
    eps = np.asarray(eps, dtype=float)
    if r.size == 0:
        return np.full(eps.shape, np.nan)
    return (r[:, None] > eps[None, :]).mean(axis=0)


def plot_robust_accuracy(curves: Sequence[dict], *, norm: str, split: str, image: bool):
    """Robust accuracy against epsilon, one solid curve per model from its attack radii and a dashed
    one from its certified lower bounds where they exist.

    ``curves``: dicts with ``run``, ``index`` (style index), ``radius`` (per sample) and optionally
    ``lower`` (certified radius per sample, 0 where none).
    """
    _, plt = _mpl()
    finite = [c["radius"][np.isfinite(c["radius"])] for c in curves]
    top = max([float(f.max()) for f in finite if f.size] + [0.0])
    top = top * 1.08 if top > 0 else 1.0
    eps = np.linspace(0.0, top, 512)
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(SINGLE, 2.4))
        n_cert = 0
        from matplotlib.lines import Line2D

        handles = []
        for c in curves:
            st = _run_style(c)
            line, = ax.plot(eps, robust_accuracy(c["radius"], eps), color=st["color"], linestyle=st["linestyle"],
                            label=str(c.get("label", c["run"])), drawstyle="steps-post")
            handles.append(line)
            if c.get("lower") is not None:
                # certified: the same colour, thin, with markers every so often (the line style is the data set's)
                ax.plot(eps, robust_accuracy(c["lower"], eps), color=st["color"], linestyle=st["linestyle"],
                        linewidth=0.8, marker="|", markevery=40, markersize=4, drawstyle="steps-post", alpha=0.9)
                n_cert += 1
        if n_cert:
            handles.append(Line2D([], [], color="0.3", linewidth=0.8, marker="|", markersize=4,
                                  label="thin, ticked: certified"))
        ax.set_xlim(0.0, top)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"ε: {radius_label(norm, image=image)}")
        ax.set_ylabel(f"robust accuracy ({split} points)")
        ax.set_title(f"{NORM_LABEL.get(norm, norm)} robust accuracy on {split} points")
        if handles:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig, {"curves": len(curves), "certified_curves": n_cert, "runs": [c["run"] for c in curves],
                 "colors": [_run_style(c)["color"] for c in curves],
                 "norm": norm, "split": split, "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel()}


# --------------------------------------------------------------------------- distributions
def plot_radius_distribution(groups: Sequence[dict], *, norm: str, image: bool):
    """Box plots of the finite, positive radii per model, training and test points side by side.

    ``groups``: dicts with ``run``, ``index`` and ``radius`` per split (``{"train": arr, "test": arr}``).
    Zero (misclassified) and infinite (unbroken) radii cannot sit on a log axis; their counts are
    written under each box. The axis is logarithmic when the radii span more than a decade.
    """
    _, plt = _mpl()
    splits = [s for s in ("train", "test") if any(s in g["radius"] for g in groups)]
    width = max(SINGLE, min(DOUBLE + 1.5, 0.45 * len(groups) * max(1, len(splits)) + 1.6))
    positive = []
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(width, 2.6))
        n_boxes = 0
        offsets = {s: (i - (len(splits) - 1) / 2) * 0.36 for i, s in enumerate(splits)}
        hatch = {"train": "", "test": "////"}
        for gi, g in enumerate(groups):
            st = _run_style(g)
            for s in splits:
                if s not in g["radius"]:
                    continue
                r = np.asarray(g["radius"][s], dtype=float)
                ok = r[np.isfinite(r) & (r > 0)]
                pos = gi + offsets[s]
                if ok.size:
                    positive.append(ok)
                    bp = ax.boxplot([ok], positions=[pos], widths=0.3, patch_artist=True, showfliers=True,
                                    usermedians=[median(ok)],
                                    flierprops={"markersize": 2, "markeredgecolor": st["color"]},
                                    medianprops={"color": "black", "linewidth": 1.0})
                    for patch in bp["boxes"]:
                        patch.set_facecolor(st["color"])
                        patch.set_alpha(0.55 if s == "train" else 0.85)
                        patch.set_hatch(hatch[s])
                    n_boxes += 1
                zero = int(np.sum(r == 0))
                unbroken = int(np.sum(np.isinf(r)))
                ax.annotate(f"{s}\n0: {zero}\n∞: {unbroken}", xy=(pos, 0), xycoords=("data", "axes fraction"),
                            xytext=(0, -4), textcoords="offset points", ha="center", va="top", fontsize=5.5,
                            linespacing=1.1)
        ax.set_xticks(range(len(groups)))
        # long run names side by side overlap: slant them when there are several models
        # labels wrapped onto short lines, upright: slanted labels' boxes overlap their neighbours'
        names = [textwrap.fill(str(g.get("label", g["run"])), 11, break_long_words=False) for g in groups]
        # too wide for the space per model (many models, long labels): vertical labels, one line each
        spacing_pt = (width - 1.6) * 72 / max(len(groups), 1)
        widest_pt = max((len(line) for t in names for line in t.split("\n")), default=0) * 6 * 0.62
        if widest_pt > 0.9 * spacing_pt:
            ax.set_xticklabels([str(g.get("label", g["run"])) for g in groups], fontsize=6, rotation=90,
                               ha="center", va="top")
        else:
            ax.set_xticklabels(names, fontsize=6, linespacing=1.05)
        ax.tick_params(axis="x", pad=27, length=0)
        ax.grid(False, axis="x")
        ax.set_xlim(-0.6, len(groups) - 0.4)
        if positive:
            allpos = np.concatenate(positive)
            if allpos.max() / max(allpos.min(), 1e-300) > 10:
                ax.set_yscale("log")
                _plain_log_ticks(ax, "y")
        ax.set_ylabel(radius_label(norm, image=image))
        ax.set_title(f"{NORM_LABEL.get(norm, norm)} radii per model (counts under boxes: 0 = misclassified, "
                     "∞ = unbroken)")
        from matplotlib.patches import Patch

        handles = [Patch(facecolor="0.6", alpha=0.55 if s == "train" else 0.85, hatch=hatch[s], edgecolor="0.2",
                         label=f"{s} points") for s in splits]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig, {"curves": len(groups), "boxes": n_boxes, "runs": [g["run"] for g in groups], "norm": norm,
                 "colors": [_run_style(g)["color"] for g in groups],
                 "splits": splits, "ylabel": ax.get_ylabel(), "yscale": ax.get_yscale()}


# --------------------------------------------------------------------------- scaling
#: most groups of runs in one scaling figure: with two marker styles and the law's line, the legend
#: then holds at most 7 entries (more groups go to further figures)
SCALING_MAX_GROUPS = 4


def plot_scaling(series: Sequence[dict], *, xlabel: str, ylabel: str, title: str, vlines: Sequence[dict] = ()):
    """Log-log scatter of per-run quantities against a size (p, n or d), with fitted power laws.

    ``series``: dicts with ``label``, ``x``, ``y``, ``runs`` (names per point), ``marker``,
    ``filled`` (bool), ``color``, ``group`` (the group of comparable runs it belongs to),
    ``style`` (what filled or open markers mean, e.g. ``"test points"``) and optionally ``faded``
    (per point: True for runs left out of the fit, drawn pale), ``fit`` (``{"exponent",
    "intercept", "ci_low", "ci_high"}``, drawn over the fitted points' range, its slope written at
    its right end) and ``predicted`` (the
    law's exponent: a dotted line of that slope through the fitted points' geometric mean). Fits
    and the law's line are drawn for filled series only (what the law speaks of); open series are
    points beside them (their fits are in the report's table).
    ``vlines``: ``{"x", "label"}`` markers, optionally with ``color`` and ``short`` (the text
    written beside the line; lines carry no legend entry).

    The legend has one entry per group (its colour and marker), one per marker style (filled,
    open) and one for the law's line: at most ``SCALING_MAX_GROUPS + 3`` entries when the caller
    keeps to that many groups. With a single group its label goes to the title instead, and the
    style entries take the series' own colours.
    """
    _, plt = _mpl()

    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(SINGLE + 1.6, 2.6))
        allx, ally = [], []
        groups: dict = {}
        styles: dict = {}
        law_slopes = set()
        for s in series:
            drawn = _scaling_series(ax, s, law_slopes)
            if drawn is None:
                continue
            allx.append(drawn[0])
            ally.append(drawn[1])
            groups.setdefault(s.get("group") or s["label"], (s.get("marker", "o"), s["color"]))
            styles.setdefault(bool(s.get("filled", True)), s.get("style") or s["label"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        if allx:
            xs = np.concatenate(allx + [np.array([v["x"] for v in vlines], dtype=float)])
            ax.set_xlim(xs.min() / 1.6, xs.max() * 2.2)
            ys = np.concatenate(ally)
            lo, hi = ax.get_ylim()
            if hi / lo < 3:  # nearly constant values: show a factor of 3 around them, not 14.0 14.2 14.4
                mid = math.sqrt(ys.min() * ys.max())
                ax.set_ylim(min(lo, mid / math.sqrt(3)), max(hi, mid * math.sqrt(3)))
        for i, v in enumerate(vlines):
            color = v.get("color") or "0.35"
            ax.axvline(v["x"], color=color, linestyle=("--", "-.")[i % 2], linewidth=0.8, alpha=0.8)
            ax.annotate(v.get("short", v["label"]), xy=(v["x"], 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -2), textcoords="offset points", rotation=90, fontsize=5.5, color=color,
                        ha="left", va="top")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        _plain_log_ticks(ax, "x")
        _plain_log_ticks(ax, "y")
        if len(groups) == 1:
            ax.set_title(f"{title}\n{next(iter(groups))}", fontsize=7)
        handles = _scaling_legend(series, groups, styles, law_slopes)
        if handles:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    runs = sorted({r for s in series for r in s.get("runs", [])})
    return fig, {"curves": len([s for s in series if len(s["x"])]), "runs": runs, "xscale": ax.get_xscale(),
                 "yscale": ax.get_yscale(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                 "points": int(sum(len(x) for x in allx)), "vlines": [v["label"] for v in vlines],
                 "legend": [h.get_label() for h in handles],
                 "series": [{"label": s["label"], "group": s.get("group"), "runs": list(s.get("runs", [])),
                             "fit": None if not s.get("fit") else s["fit"].get("exponent")} for s in series],
                 "groups": list(dict.fromkeys(s["group"] for s in series if s.get("group") is not None))}


def _scaling_series(ax, s: dict, law_slopes: set) -> tuple[np.ndarray, np.ndarray] | None:
    """One series of :func:`plot_scaling`: its points (pale where ``faded``), and for a filled series its
    fitted power law (slope written at the end) and the law's slope (added to ``law_slopes``). Returns
    the points drawn, None if none is positive and finite."""
    x = np.asarray(s["x"], dtype=float)
    y = np.asarray(s["y"], dtype=float)
    faded = np.asarray(s.get("faded") or [False] * len(x), dtype=bool)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if not ok.any():
        return None
    x, y, faded = x[ok], y[ok], faded[ok]
    face = s["color"] if s.get("filled", True) else "white"
    for pale, alpha in ((False, 1.0), (True, 0.3)):
        sel = faded == pale
        if sel.any():
            ax.plot(x[sel], y[sel], linestyle="none", marker=s.get("marker", "o"), color=s["color"],
                    markerfacecolor=face, alpha=alpha)
    fit = s.get("fit")
    fx = x[~faded] if (~faded).sum() >= 2 and len(set(x[~faded])) >= 2 else x
    fy = y[~faded] if fx is not x else y
    grid = np.geomspace(fx.min(), fx.max(), 50) if fx.max() > fx.min() else None
    line = "-" if s.get("filled", True) else "--"
    if fit and grid is not None and np.isfinite(fit.get("exponent", np.nan)) and s.get("filled", True):
        yy = np.exp(fit["intercept"]) * grid ** fit["exponent"]
        ax.plot(grid, yy, color=s["color"], linewidth=1.0, linestyle=line)
        ax.annotate(f"{fit['exponent']:+.2f}", xy=(grid[-1], yy[-1]), xytext=(3, 0),
                    textcoords="offset points", fontsize=6, color=s["color"], va="center")
    pred = s.get("predicted")
    if pred is not None and grid is not None and s.get("filled", True):
        # the law fixes the slope, not the constant: anchored at the fitted points' geometric mean
        c = np.exp(np.mean(np.log(fy)) - pred * np.mean(np.log(fx)))
        ax.plot(grid, c * grid ** pred, color=s["color"], linestyle=":", linewidth=1.0)
        law_slopes.add(pred)
    return x, y


def _scaling_legend(series: Sequence[dict], groups: dict, styles: dict, law_slopes: set) -> list:
    """Legend handles of :func:`plot_scaling`: one per group (none for a single group, whose label is in
    the title), one per marker style (filled, open), one per law's slope."""
    from matplotlib.lines import Line2D

    single = len(groups) == 1
    handles = [] if single else [Line2D([], [], marker=m, color=c, linestyle="none", label=str(g))
                                 for g, (m, c) in groups.items()]
    for filled, text in sorted(styles.items(), reverse=True):
        c = next((s["color"] for s in series if bool(s.get("filled", True)) == filled), "0.3") if single else "0.3"
        m = next(iter(groups.values()))[0] if single else "o"
        handles.append(Line2D([], [], marker=m, color=c, markerfacecolor=c if filled else "white",
                              linestyle="-" if filled else "none", linewidth=1.0,
                              label=f"{text}; fit (slope at end)" if filled else text))
    for pred in sorted(law_slopes):
        c = next((s["color"] for s in series if s.get("filled", True)), "0.3") if single else "0.3"
        handles.append(Line2D([], [], color=c, linestyle=":", linewidth=1.0,
                              label=f"law's slope {frac_label(pred)}"))
    return handles


def frac_label(v: float) -> str:
    """Exponents as fractions where they are simple: 0.5 -> '1/2', -0.5 -> '-1/2'; else 2 decimals."""
    for num, den in ((1, 2), (-1, 2), (1, 1), (-1, 1), (1, 4), (-1, 4)):
        if abs(v - num / den) < 1e-9:
            return f"{num}/{den}" if den != 1 else f"{num}"
    return f"{v:.2f}"


# --------------------------------------------------------------------------- attacks
def plot_attack_comparison(models: Sequence[dict], *, attacks: Sequence[str], norm: str, split: str):
    """Per attack: how often it found the best radius, and its median ratio to the best (and to exact).

    ``models``: dicts with ``run``, ``index``, ``best_share`` ({attack: fraction}), ``ratio_best``
    ({attack: median radius/best}) and optionally ``ratio_exact`` ({attack: median radius/exact}).
    """
    _, plt = _mpl()
    has_exact = any(m.get("ratio_exact") for m in models)
    ncols = 3 if has_exact else 2
    with plt.rc_context(_style()):
        fig, axes = plt.subplots(1, ncols, figsize=(DOUBLE, 2.4), squeeze=False)
        axes = axes[0]
        k = max(len(models), 1)
        w = 0.8 / k
        xs = np.arange(len(attacks))
        panels = [("best_share", "share of broken points"),
                  ("ratio_best", "radius / best radius")]
        if has_exact:
            panels.append(("ratio_exact", "radius / exact radius"))
        for ax, (key, ylabel) in zip(axes, panels):
            for j, m in enumerate(models):
                color = _run_style(m)["color"]
                pos = xs + (j - (k - 1) / 2) * w
                label = str(m.get("label", m["run"])) if ax is axes[0] else None
                if key == "best_share":
                    vals = [m.get(key, {}).get(a, np.nan) for a in attacks]
                    ax.bar(pos, vals, width=w, color=color, label=label)
                    continue
                # (median, q25, q75) per attack; failed attacks (inf) and attacks not run are left out
                q = np.array([m.get(key, {}).get(a, (np.nan,) * 3) for a in attacks], dtype=float).reshape(-1, 3)
                q[~np.isfinite(q)] = np.nan
                err = np.vstack([q[:, 0] - q[:, 1], q[:, 2] - q[:, 0]])
                ax.errorbar(pos, q[:, 0], yerr=err, fmt="o", color=color, capsize=2, markersize=3.5,
                            elinewidth=1.0)
            if key != "best_share":
                ax.axhline(1.0, color="0.3", linewidth=0.8, linestyle="--")
                lo, hi = ax.get_ylim()
                ax.set_ylim(min(lo, 0.98), max(hi, 1.05))
            ax.set_xticks(xs)
            ax.set_xticklabels(list(attacks), rotation=30, ha="right")
            ax.set_xlim(-0.6, len(attacks) - 0.4)
            ax.set_ylabel(ylabel)
        axes[0].set_ylim(0, 1.02)
        axes[0].set_title("where it found the best radius")
        axes[1].set_title("gap to the best: median, IQR")
        if has_exact:
            axes[2].set_title("gap to exact (MILP): median, IQR")
        fig.suptitle(f"Attacks, {NORM_LABEL.get(norm, norm)} radii on {split} points", fontsize=8)
        fig.tight_layout()
        # one column right of the panels (a legend across the page squeezed them)
        fig.legend(loc="upper left", bbox_to_anchor=(1.0, 0.92), ncol=1)
    return fig, {"curves": len(models), "runs": [m["run"] for m in models], "attacks": list(attacks),
                 "colors": [_run_style(m)["color"] for m in models],
                 "norm": norm, "split": split, "exact": has_exact}


# --------------------------------------------------------------------------- gallery
def plot_gallery(rows: Sequence[dict], *, norm: str, image: bool):
    """Original, perturbation (diverging colormap, scaled to be visible) and adversarial input.

    ``rows``: one per model, dicts with ``run`` and ``samples``: dicts with ``x`` and ``adv``
    (arrays in the input shape: (C, H, W) for images, (d,) otherwise), ``label``, ``pred``,
    ``adv_pred`` (int or None) and ``radius``. For non-image data each sample is one bar chart of
    the perturbation per coordinate.
    """
    _, plt = _mpl()
    per = max((len(r["samples"]) for r in rows), default=0)
    n_rows = len(rows)
    cols = 3 * per if image else per
    with plt.rc_context(_style()):
        cell = DOUBLE / max(cols, 1)
        fig, axes = plt.subplots(n_rows, max(cols, 1), squeeze=False,
                                 figsize=(DOUBLE, 0.7 + n_rows * (cell * 1.6 if image else 1.6)))
        for ri, row in enumerate(rows):
            for si in range(per):
                if si >= len(row["samples"]):
                    for a in (axes[ri, 3 * si:3 * si + 3] if image else [axes[ri, si]]):
                        a.axis("off")
                    continue
                s = row["samples"][si]
                delta = np.asarray(s["adv"], dtype=float) - np.asarray(s["x"], dtype=float)
                scale = float(np.abs(delta).max()) or 1.0
                arrow = f"{s['pred']}→{'?' if s.get('adv_pred') is None else s['adv_pred']}"
                if s.get("adv_pred") is not None and s["adv_pred"] == s["label"]:
                    arrow += " (NOT adversarial)"
                if image:
                    ax0, ax1, ax2 = axes[ri, 3 * si:3 * si + 3]
                    _show(ax0, s["x"])
                    ax0.set_title(f"clean: {s['pred']}\n(label {s['label']})", fontsize=6)
                    if si == 0:
                        ax0.set_ylabel(textwrap.fill(str(row.get("label", row["run"])), 16, break_long_words=False),
                                       fontsize=6, linespacing=1.0)
                    d2 = delta.mean(axis=0) if delta.ndim == 3 else delta
                    ax1.imshow(d2, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
                    ax1.set_title(f"δ ×{1 / scale:.3g}\nr={s['radius']:.3g}", fontsize=6)
                    _bare(ax1)
                    _show(ax2, s["adv"])
                    ax2.set_title(f"adv: {arrow}", fontsize=6)
                else:
                    ax = axes[ri, si]
                    flatd = delta.reshape(-1)
                    colors = np.where(flatd >= 0, "#D55E00", "#0072B2")
                    ax.bar(np.arange(flatd.size), flatd, color=colors, width=1.0)
                    ax.set_title(f"{row.get('label', row['run'])}: {arrow}, r={s['radius']:.3g}", fontsize=6)
                    ax.set_xlabel("coordinate", fontsize=6)
                    ax.set_ylabel("δ (input units)", fontsize=6)
        fig.suptitle(f"{NORM_LABEL.get(norm, norm)} adversarial examples: clean prediction → adversarial prediction, "
                     "r = radius\n" + ("δ = adv − x in a diverging colormap (red +, blue −), scaled ×k to its largest entry"
                                        if image else "δ = adv − x per input coordinate (orange +, blue −)"),
                     fontsize=7)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # room for the 2-line suptitle
    return fig, {"curves": len(rows), "runs": [r["run"] for r in rows],
                 "samples": int(sum(len(r["samples"]) for r in rows)), "norm": norm, "image": bool(image)}


def _show(ax, x) -> None:
    x = np.asarray(x, dtype=float)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 3:
        ax.imshow(np.clip(np.transpose(x, (1, 2, 0)), 0, 1), interpolation="nearest")
    else:
        ax.imshow(np.clip(x, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    _bare(ax)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for sp in ax.spines.values():
        sp.set_visible(False)
