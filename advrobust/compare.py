"""``python -m advrobust.compare RUN_DIRS...``: one row per model, and the law fit beneath.

Reads only files already in the run directories (``run.json``, ``attack-<norm>-<split>.npz``,
``lipschitz.json``); computes nothing expensive. A value that has not been measured is missing
(``None`` in Python and JSON, empty in CSV, ``-`` in tables), never 0, and the row's ``missing``
dict names the command that fills it.

Columns (per norm ``<nm>`` in l1, l2, linf and split ``<split>`` in train, test):
``run, dataset, n, d, params, p/n, p/(n*d), train_accuracy, test_accuracy``,
``<nm>_<split>_radius_median``, ``<nm>_<split>_attacked``, ``<nm>_<split>_robust_acc@<eps>``,
``<nm>_<split>_certified@<eps>`` (share with a certified lower bound >= eps, where bounds exist),
``<nm>_lip_lower``, ``<nm>_lip_upper`` (margin function, from lipschitz.json),
``<nm>_lip_local_median`` (median over training points of the local margin gradient norm: a
typical local slope, not a bound on the global constant),
``logit_lip_lower``, ``logit_lip_upper`` (l2 -> l2), ``input_scale``,
``interpolated`` (train accuracy 1: the model memorised its training set),
``d_intrinsic`` (the dimension of the data's distribution: exact for synthetic data, else the two-NN
estimate of Facco et al. 2017 on the training inputs), ``d_intrinsic_mle`` (the Levina-Bickel
estimate; see :mod:`advrobust.intrinsic`).
"""
from __future__ import annotations

import csv
import io
import json
import math
import operator
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import law, runs
from .errors import UserError
from .intrinsic import known_dimension
from .jsonio import to_json
from .lipschitz import input_scale
from .norms import norm_name, parse_norm
from ._stats import median

SPLITS = ("train", "test")
DEFAULT_EPS = {"l1": (1.0,), "l2": (0.5,), "linf": (0.05,)}
BASE_COLUMNS = ("run", "dataset", "family", "width", "n", "d", "params", "p/n", "p/(n*d)",
                "train_accuracy", "test_accuracy")
ATTACK_CMD = "python -m advrobust.attack {path} --norm {norm} --split {split}"
CERTIFY_CMD = "python -m advrobust.attack {path} --norm {norm} --split {split} --certify crown"
LIPSCHITZ_CMD = "python -m advrobust.lipschitz {path} --norm {norm}"
TRAIN_CMD = "python -m advrobust.train --out {path} ..."
INTRINSIC_CMD = "python -m advrobust.intrinsic {path}"


def attack_command(path: Path, norm: str, split: str, *, certify: str | None = None) -> str:
    """The command that fills a run's missing ``norm``/``split`` attack results or certified bounds.

    Certified bounds for existing results: ``--bounds-only`` adds them to those results (the same
    points; no attack runs, nothing replaced). Missing results: the attack configuration (attacks, n,
    steps, seed) the run's other attack results were made with, so the new file completes the study
    instead of redoing it differently; the command's defaults only when the run has none. The attacks
    are copied only from results of the same norm (attacks differ in the norms they support); from
    another norm only n, steps and seed, with that norm's default cascade.
    """
    path = Path(path)
    stem = f"attack-{norm}-{split}"
    if certify and (path / f"{stem}.npz").is_file() and (path / f"{stem}.json").is_file():
        return ATTACK_CMD.format(path=path, norm=norm, split=split) + f" --certify {certify} --bounds-only"
    cmd = ATTACK_CMD.format(path=path, norm=norm, split=split)
    siblings = sorted(path.glob("attack-*-*.json"), key=lambda f: (f"-{norm}-" not in f.name, f.name))
    for f in siblings:
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or not rec.get("attacks"):
            continue
        if rec.get("n"):
            cmd += f" --n {int(rec['n'])}"
        if rec.get("steps"):
            cmd += f" --steps {int(rec['steps'])}"
        if rec.get("norm") == norm:
            cmd += f" --attacks {','.join(map(str, rec['attacks']))}"
        if rec.get("seed") is not None:
            cmd += f" --seed {int(rec['seed'])}"
        break
    return cmd + (f" --certify {certify}" if certify else "")


def describe_missing(column: str, *, has_results: bool = True) -> str:
    """What a missing comparison column is, in words (not just its name)."""
    m = re.fullmatch(r"(l1|l2|linf)_(train|test)_(radius_median|attacked|robust_acc@.*|certified@.*)", column)
    if m:
        nm, split, what = m.groups()
        if what.startswith("certified") and has_results:
            return (f"{nm} certified accuracy on {split} points: the attack results hold no certified lower bounds "
                    "(attacked without --certify)")
        return f"{nm} radii on {split} points: this norm and split were never attacked (no attack-{nm}-{split}.npz)"
    m = re.fullmatch(r"(l1|l2|linf)_lip_(lower|upper|local_median)", column)
    if m and m.group(2) == "local_median":
        # the first column missing: the entry exists (lower is there) but predates the local-slope median
        return (f"{m.group(1)} median local slope of the margin (the lipschitz.json entry for {m.group(1)} was "
                "estimated before it was recorded)")
    if m:
        return f"{m.group(1)} Lipschitz estimates of the margin (no lipschitz.json entry for {m.group(1)})"
    if column.startswith("logit_lip_") or column == "input_scale":
        return "Lipschitz estimates of the logits and the data's input scale (no lipschitz.json)"
    if column.startswith("d_intrinsic"):
        return "intrinsic dimension of the training inputs (not recorded when the run was trained)"
    return f"{column} (not recorded)"


def training_kind(train_spec: Mapping) -> str:
    """``natural``, or the adversarial training a run had, e.g. ``adv linf 0.1`` (runs trained
    differently are never fitted together)."""
    if train_spec.get("adv_norm"):
        return f"adv {train_spec['adv_norm']} {train_spec.get('adv_eps')}"
    return "natural"


def intrinsic_columns(meta: Mapping, path: Path, dataset: Any, d: Any) -> tuple[Any, Any]:
    """``(d_intrinsic, d_intrinsic_mle)`` of a run: the dimension of its data's distribution.

    Synthetic data: the exact dimension (``d - 1`` on the sphere, ``d`` for the Gaussian) in both.
    Otherwise the two-NN and Levina-Bickel estimates recorded by training in ``run.json``
    (``intrinsic_dim``) or by ``python -m advrobust.intrinsic`` in ``intrinsic.json``; None if neither.
    """
    rec = meta.get("intrinsic_dim")
    if not isinstance(rec, dict) and (Path(path) / runs.INTRINSIC_FILE).is_file():
        rec = runs.read_json(Path(path) / runs.INTRINSIC_FILE, what="intrinsic-dimension record")
    return _intrinsic(rec if isinstance(rec, dict) else None, dataset, d)


def _intrinsic(rec: Mapping | None, dataset: Any, d: Any) -> tuple[Any, Any]:
    known = known_dimension(dataset, d)
    if known is not None:
        return known, known
    if rec is None:
        return None, None
    if rec.get("known") is not None:
        return rec["known"], rec["known"]
    return _finite_or_none(rec.get("two_nn")), _finite_or_none(rec.get("mle"))


def _norm_key(norm: Any) -> str:
    return norm_name(parse_norm(norm))


def _finite_or_none(v: Any) -> Any:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return None if math.isnan(f) else f


def first_value(d: Any, *keys: str) -> Any:
    """The first of ``keys`` with a non-None value in ``d`` (None if ``d`` is not a dict)."""
    for k in keys:
        if isinstance(d, dict) and d.get(k) is not None:
            return d[k]
    return None


def resolve_norms(norms: Iterable[Any] | None, found: Iterable[str]) -> list[str]:
    """The norms to compare: those asked for (``'l2'``, ``2.0``, ...), else every norm with attack
    results in ``found`` in the order l2, linf, l1, else l2."""
    if norms is not None:
        return [_norm_key(n) for n in norms]
    found = set(found)
    return [n for n in ("l2", "linf", "l1") if n in found] or ["l2"]


def _eps_map(eps: Mapping[str, Sequence[float]] | Sequence[float] | None, norm_list: Sequence[str]) -> dict:
    if eps is None:
        return {n: tuple(DEFAULT_EPS[n]) for n in norm_list}
    if isinstance(eps, Mapping):
        return {n: tuple(float(e) for e in eps.get(n, DEFAULT_EPS[n])) for n in norm_list}
    return {n: tuple(float(e) for e in eps) for n in norm_list}


def collect_rows(run_dirs: Sequence[str | Path], *, norms: Iterable[Any] | None = None,
                 eps: Mapping[str, Sequence[float]] | Sequence[float] | None = None) -> list[dict]:
    """One row per run directory (or per run found below a folder).

    Parameters
    ----------
    run_dirs : run directories, or folders holding them
    norms : norms to report (``'l2'``, ``2.0``, ...); default: every norm with an attack results
        file in any of the runs, or l2 if there is none
    eps : robust-accuracy radii: a sequence (the same for every norm) or ``{norm: [...]}``;
        default ``DEFAULT_EPS`` (l1 1.0, l2 0.5, linf 0.05, in input units of [0, 1] data)

    Returns
    -------
    list of dict, keys as in the module docstring, plus ``path`` and ``missing``:
    ``{column: command that fills it}`` for every column that is None because a file is absent.
    Radii medians include 0 (misclassified) and inf (no attack succeeded) samples.
    """
    paths = runs.find_runs(list(run_dirs))
    norm_list = resolve_norms(norms, set().union(*(runs.result_norms(p) for p in paths)))
    return rows_from_results([runs.load_results(p, norms=norm_list) for p in paths], norms=norm_list, eps=eps)


def compare(run_dirs: Sequence[str | Path], *, norms: Iterable[Any] | None = None,
            eps: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
            filters: Sequence[str] = (), sort: str | None = None) -> list[dict]:
    """The library entry behind ``python -m advrobust.compare``: :func:`collect_rows`, then each
    ``COLUMN OP VALUE`` filter (:func:`filter_rows`), then :func:`sort_rows` by ``sort``."""
    rows = collect_rows(run_dirs, norms=norms, eps=eps)
    for expr in filters:
        rows = filter_rows(rows, expr)
    return sort_rows(rows, sort) if sort else rows


def rows_from_results(loaded: Sequence[runs.RunResults], *, norms: Sequence[str],
                      eps: Mapping[str, Sequence[float]] | Sequence[float] | None = None) -> list[dict]:
    """:func:`collect_rows` over runs already read by :func:`advrobust.runs.load_results` (the report
    reads each run once and takes these rows as its comparison table). ``norms``: names (l1, l2, linf)."""
    norm_list = [_norm_key(n) for n in norms]
    eps_map = _eps_map(eps, norm_list)
    names = [r.path.name for r in loaded]
    rows = []
    for res in loaded:
        path = res.path
        row, missing = _run_columns(res, path.name if names.count(path.name) == 1 else str(path))
        for nm in norm_list:
            for split in SPLITS:
                _radius_columns(row, missing, res, nm, split, eps_map[nm])
            _lipschitz_columns(row, missing, res, nm)
        lg = (res.lipschitz or {}).get("logit") or {}
        for key in ("lower", "upper"):
            col = f"logit_lip_{key}"
            row[col] = _finite_or_none(lg.get(key))
            if row[col] is None:
                missing[col] = LIPSCHITZ_CMD.format(path=path, norm="l2")
        if row["d_intrinsic"] is None and row["d"] is not None:
            missing["d_intrinsic"] = INTRINSIC_CMD.format(path=path)
        if row["input_scale"] is None:
            missing["input_scale"] = LIPSCHITZ_CMD.format(path=path, norm="l2")
        row["missing"] = missing
        rows.append(row)
    return rows


def _run_columns(res: runs.RunResults, name: str) -> tuple[dict, dict]:
    """A row's columns from ``run.json`` (and the input scale), and the missing ones among them."""
    meta, path = res.meta, res.path
    spec = meta.get("spec") or {}
    dspec = spec.get("data") or {}
    mspec = spec.get("model") or {}
    n, d, p = first_value(meta, "n"), first_value(meta, "d"), first_value(meta, "params", "p")
    dmeta = meta.get("data_meta") or {}
    row: dict[str, Any] = {
        "run": name, "path": str(path),
        "dataset": dspec.get("name") or dmeta.get("name") or meta.get("dataset"),
        "family": mspec.get("family"), "width": mspec.get("width"), "depth": mspec.get("depth"),
        "n": n, "d": d, "params": p, "params_target": meta.get("params_target"),
        "p/n": p / n if p and n else None,
        "p/(n*d)": p / (n * d) if p and n and d else None,
        "train_accuracy": _finite_or_none(meta.get("train_accuracy")),
        "test_accuracy": _finite_or_none(meta.get("test_accuracy")),
        "labels": dspec.get("labels"), "label_noise": dspec.get("label_noise"), "flip": dspec.get("flip"),
        "training": training_kind(spec.get("train") or {}),
        "input_scale": None,
        "interpolated": None,
        "d_intrinsic": None, "d_intrinsic_mle": None,
    }
    acc = row["train_accuracy"]
    row["interpolated"] = None if acc is None else bool(acc >= 1.0 - 1e-12)
    row["d_intrinsic"], row["d_intrinsic_mle"] = _intrinsic(res.intrinsic, row["dataset"], d)
    missing = {key: TRAIN_CMD.format(path=path) for key in ("n", "d", "params", "train_accuracy", "test_accuracy")
               if row[key] is None}
    scale, _ = input_scale(None, dmeta if isinstance(dmeta, dict) else None)
    if scale is None:
        scale = (res.lipschitz or {}).get("input_scale")
    row["input_scale"] = _finite_or_none(scale)
    return row, missing


def _radius_columns(row: dict, missing: dict, res: runs.RunResults, nm: str, split: str,
                    eps: Sequence[float]) -> None:
    """Median radius, count, robust and certified accuracy of one norm and split (None, with the
    command that fills them in ``missing``, where the run has no such results)."""
    med, cnt = f"{nm}_{split}_radius_median", f"{nm}_{split}_attacked"
    acc_cols = [f"{nm}_{split}_robust_acc@{e:g}" for e in eps]
    cert_cols = [f"{nm}_{split}_certified@{e:g}" for e in eps]
    if (nm, split) not in res.results:
        cmd = attack_command(res.path, nm, split)
        for c in (med, cnt, *acc_cols):
            row[c] = None
            missing[c] = cmd
        for c in cert_cols:
            row[c] = None
            missing[c] = attack_command(res.path, nm, split, certify="crown")
        return
    arrays = res.results[(nm, split)][0]
    r = np.asarray(arrays["best_radius"], dtype=np.float64)
    r = r[~np.isnan(r)]
    row[cnt] = int(r.size)
    row[med] = median(r) if r.size else None
    for c, e in zip(acc_cols, eps):
        row[c] = float(np.mean(r > e)) if r.size else None
    lower_key = next((k for k in ("exact_lower", "lower__crown", "lower__crown-ibp", "lower__ibp") if k in arrays), None)
    for c, e in zip(cert_cols, eps):
        if lower_key is None:
            row[c] = None
            missing[c] = attack_command(res.path, nm, split, certify="crown")
        else:
            lb = np.asarray(arrays[lower_key], dtype=np.float64)
            row[c] = float(np.mean(np.nan_to_num(lb, nan=-np.inf) >= e)) if lb.size else None


def _lipschitz_columns(row: dict, missing: dict, res: runs.RunResults, nm: str) -> None:
    """The margin's Lipschitz estimates for input norm ``nm`` from ``lipschitz.json``."""
    entry = res.lipschitz_entry(nm)
    lcmd = LIPSCHITZ_CMD.format(path=res.path, norm=nm)
    for key, col in (("lower", f"{nm}_lip_lower"), ("upper", f"{nm}_lip_upper"),
                     ("lower_gradient_median", f"{nm}_lip_local_median")):
        v = ((entry or {}).get("margin") or {}).get(key)
        row[col] = _finite_or_none(v)
        if row[col] is None:
            missing[col] = lcmd if entry is None or key != "upper" else \
                f"{lcmd} (the upper bound is unavailable for this architecture: " \
                f"{(entry.get('margin') or {}).get('upper_reason')})"


# --------------------------------------------------------------------------- formatting
def default_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Columns shown by default: the base columns, then every measured column in first-seen order."""
    hidden = {"path", "missing", "labels", "label_noise", "flip", "depth", "training"}
    cols = list(BASE_COLUMNS)
    for r in rows:
        for k in r:
            if k not in cols and k not in hidden:
                cols.append(k)
    if rows and all(r.get("family") is None for r in rows):
        cols.remove("family")
    if rows and all(r.get("width") is None for r in rows):
        cols.remove("width")
    return cols


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4g}"
    return str(v)


def format_table(rows: Sequence[Mapping[str, Any]], fmt: str = "table", columns: Sequence[str] | None = None) -> str:
    """Render rows as an aligned text table, a Markdown table, CSV or JSON.

    Missing values are ``-`` in table/markdown (with a footnote listing the commands that fill
    them), empty cells in CSV and ``null`` in JSON (where each row keeps its ``missing`` dict).

    Raises
    ------
    UserError
        An unknown format or column.
    """
    if fmt not in ("table", "markdown", "csv", "json"):
        raise UserError(f"unknown format {fmt!r}; use table, markdown, csv or json")
    cols = list(columns) if columns is not None else default_columns(rows)
    known = set(BASE_COLUMNS) | {k for r in rows for k in r}
    unknown = [c for c in cols if c not in known]
    if unknown and rows:
        raise UserError(f"unknown column(s) {', '.join(unknown)}; known: {', '.join(sorted(known - {'missing'}))}")
    if fmt == "json":
        return to_json([{**{c: r.get(c) for c in cols}, "missing": dict(r.get("missing") or {})} for r in rows])
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else (repr(float(r[c])) if isinstance(r[c], float) and math.isfinite(r[c])
                                                   else _cell(r[c])) for c in cols])
        return buf.getvalue()
    body = [[_cell(r.get(c)) for c in cols] for r in rows]
    foot = []
    cmds: dict[str, list[str]] = {}
    for r in rows:
        for c, cmd in (r.get("missing") or {}).items():
            if c in cols:
                cmds.setdefault(cmd, []).append(c)
    if cmds:
        foot.append("missing values (-) are filled by:")
        for cmd, cs in cmds.items():
            foot.append(f"  {cmd}    # {', '.join(dict.fromkeys(cs))}")
    if fmt == "markdown":
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(esc(v) for v in b) + " |" for b in body]
        if cmds:
            lines += ["", "Missing values (-) are filled by:", ""]
            lines += [f"- `{cmd}` ({', '.join(dict.fromkeys(cs))})" for cmd, cs in cmds.items()]
        return "\n".join(lines) + "\n"
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines + ([""] + foot if foot else [])) + "\n"


# --------------------------------------------------------------------------- sort / filter
_FILTER = re.compile(r"^\s*([A-Za-z0-9_@./()*\-]+?)\s*(>=|<=|!=|==|=|>|<)\s*(.+?)\s*$")
_OPS = {">=": operator.ge, "<=": operator.le, "!=": operator.ne, "==": operator.eq, "=": operator.eq,
        ">": operator.gt, "<": operator.lt}


def _coerce(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def filter_rows(rows: Sequence[Mapping[str, Any]], expr: str) -> list:
    """Keep rows matching ``COL OP VALUE`` (OP one of = == != > >= < <=), e.g. ``dataset=digits``,
    ``params>1000``. Rows whose value is missing never match. UserError on bad syntax or column."""
    m = _FILTER.match(expr)
    if not m:
        raise UserError(f"cannot parse filter {expr!r}; write COLUMN OP VALUE, e.g. dataset=digits or params>1000")
    col, op, val = m.groups()
    if col == "p":
        col = "params"
    known = set(BASE_COLUMNS) | {k for r in rows for k in r}
    if col not in known:
        raise UserError(f"unknown column {col!r} in filter {expr!r}; known: {', '.join(sorted(known - {'missing'}))}")
    target = _coerce(val)
    out = []
    for r in rows:
        v = r.get(col)
        if v is None:
            continue
        if isinstance(target, float) and isinstance(v, (int, float)) and not isinstance(v, bool):
            keep = _OPS[op](float(v), target)
        elif op in ("=", "==", "!="):
            keep = _OPS[op](str(v), val)
        else:
            raise UserError(f"filter {expr!r} compares {col} (value {v!r}) with {op}; use a number")
        if keep:
            out.append(r)
    return out


def sort_rows(rows: Sequence[Mapping[str, Any]], col: str) -> list:
    """Sort by ``col`` (prefix ``-`` for descending); missing values last. UserError on unknown column."""
    desc = col.startswith("-")
    key = col[1:] if desc else col
    if key == "p":
        key = "params"
    known = set(BASE_COLUMNS) | {k for r in rows for k in r}
    if key not in known:
        raise UserError(f"unknown column {key!r} for --sort; known: {', '.join(sorted(known - {'missing'}))}")
    have = [r for r in rows if r.get(key) is not None]
    none = [r for r in rows if r.get(key) is None]
    have.sort(key=lambda r: (0, r[key]) if isinstance(r[key], (int, float)) else (1, str(r[key])), reverse=desc)
    return have + none


# --------------------------------------------------------------------------- paired comparison
def paired(run_a: str | Path, run_b: str | Path, *, norm: Any = "l2", split: str = "test") -> dict:
    """Per-sample radius ratio ``radius_b / radius_a`` on the samples both runs attacked.

    Only pairs with both radii finite and positive enter the ratios and the test; the counts
    excluded (a radius 0: misclassified, inf: unbroken) are reported. The two-sided Wilcoxon
    signed-rank test (``scipy.stats.wilcoxon``) is on the log-ratios (i.e. whether b's radii are
    systematically larger or smaller than a's on the same points).

    Returns
    -------
    dict: ``n_common``, ``n_used``, ``excluded`` (counts), ``median_ratio``, ``geomean_ratio``,
    ``share_b_larger``, ``wilcoxon_statistic``, ``p_value`` (None with fewer than 2 pairs),
    ``same_data`` (False if the runs' data specs differ: then indices are different points).
    """
    nm = _norm_key(norm)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use train or test")
    res, metas = [], []
    for run in (run_a, run_b):
        path = Path(run)
        f = path / f"{runs.results_stem(nm, split)}.npz"
        if not f.is_file():
            raise UserError(f"no {nm} {split} attack results in {path}; run "
                            + ATTACK_CMD.format(path=path, norm=nm, split=split))
        res.append(runs.load_npz(f))
        metas.append(runs.read_run_record(path) if (path / runs.RUN_FILE).is_file() else {})
    ia, ib = (np.asarray(r["index"], dtype=np.int64) for r in res)
    ra, rb = (np.asarray(r["best_radius"], dtype=np.float64) for r in res)
    common, pa, pb = np.intersect1d(ia, ib, return_indices=True)
    xa, xb = ra[pa], rb[pb]
    ok = np.isfinite(xa) & np.isfinite(xb) & (xa > 0) & (xb > 0)
    excluded = {"zero_a": int((xa == 0).sum()), "zero_b": int((xb == 0).sum()),
                "inf_a": int(np.isinf(xa).sum()), "inf_b": int(np.isinf(xb).sum()),
                "nan": int((np.isnan(xa) | np.isnan(xb)).sum())}
    ratio = xb[ok] / xa[ok]
    out = {"run_a": str(run_a), "run_b": str(run_b), "norm": nm, "split": split,
           "n_common": int(common.size), "n_used": int(ratio.size), "excluded": excluded,
           "median_ratio": median(ratio) if ratio.size else None,
           "geomean_ratio": float(np.exp(np.mean(np.log(ratio)))) if ratio.size else None,
           "share_b_larger": float(np.mean(ratio > 1)) if ratio.size else None,
           "wilcoxon_statistic": None, "p_value": None,
           "same_data": (metas[0].get("spec") or {}).get("data") == (metas[1].get("spec") or {}).get("data")}
    logr = np.log(ratio)
    if ratio.size >= 2 and np.any(logr != 0):
        from scipy.stats import wilcoxon  # only --pair needs scipy.stats (about a second to import)

        w = wilcoxon(logr)
        out["wilcoxon_statistic"], out["p_value"] = float(w.statistic), float(w.pvalue)
    return out


# --------------------------------------------------------------------------- law fit
def law_fits(rows: Sequence[Mapping[str, Any]], *, norms: Sequence[str], bootstrap: int = 2000, seed: int = 0) -> list:
    """Law fits for every variable (params, n, d and the intrinsic dimension d_intrinsic), one per
    group of comparable rows (:func:`advrobust.law.comparable_groups`: same data set, labels,
    architecture, and n, d or width as the variable requires) in which the variable takes at least
    two values, for the median train radius and the margin Lipschitz lower bound of each norm.
    Against p only runs that interpolate at or beyond the interpolation threshold are fitted
    (regime ``beyond``); against n, d and d_intrinsic every run that interpolates (``interpolating``).
    All seeds of a grid point enter as separate runs, and the bootstrap resamples runs. Each fit
    carries its ``group`` label; fits that cannot be made are listed with the reason."""
    out = []
    for var in ("params", "n", "d", "d_intrinsic"):
        for label, members in law.comparable_groups(rows, var):
            for nm in norms:
                for resp in ("train_radius_median", "lip_lower"):
                    try:
                        fit = law.fit_law(members, response=resp, against=var, norm=nm, bootstrap=bootstrap,
                                          seed=seed, regime="beyond" if var == "params" else "interpolating")
                        # the label among all groups (it names what tells this group from the others)
                        out.append(dict(fit, group=label))
                    except UserError as exc:
                        out.append({"group": label, "response": resp, "against": var, "norm": nm,
                                    "error": str(exc)})
    return out


def row_norms(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The norms with columns in ``rows`` (sorted), l2 if none: the norms :func:`law_fits` fits."""
    return sorted({k.split("_")[0] for r in rows for k in r if re.match(r"(l1|l2|linf)_", k)}) or ["l2"]


def format_fits(fits: Sequence[Mapping[str, Any]]) -> str:
    """The law fits as printed under compare's table (one line per fit, or per fit that failed)."""
    if not fits:
        return ""
    return "\nlaw of robustness fits (log-log least squares, bootstrap CI):\n" + \
        "".join(f"  {format_fit(f)}\n" for f in fits)


def format_pair(pair: Mapping[str, Any]) -> str:
    """The paired comparison (:func:`paired`) as printed under compare's table."""
    return (f"\npaired {pair['norm']} {pair['split']}: radius ratio B/A on {pair['n_used']} of "
            f"{pair['n_common']} common samples: median {_cell(pair['median_ratio'])}, geometric mean "
            f"{_cell(pair['geomean_ratio'])}, Wilcoxon p = {_cell(pair['p_value'])}"
            + ("" if pair["same_data"] else "  (WARNING: the runs' data differ)") + "\n")


def format_fit(f: Mapping[str, Any]) -> str:
    """One law fit (or why there is none) on one line."""
    head = f"{f['norm']} {f['response']} vs {f['against']}"
    if f.get("group"):
        head = f"{f['group']}: {head}"
    if "error" in f:
        return f"{head}: no fit ({f['error']})"
    fit = f["fit"]
    ci = "no CI (< 3 runs)" if fit["ci_low"] is None else f"95% CI [{fit['ci_low']:.3f}, {fit['ci_high']:.3f}]"
    pred = "none" if f["predicted_exponent"] is None else f"{f['predicted_exponent']:+.1f}"
    within = "" if f["within_ci"] is None else (" (inside CI)" if f["within_ci"] else " (outside CI)")
    s = (f"{head} [{f['regime']}, {fit['n']} runs{', unit scale' if f['unit_scale'] else ''}]: "
         f"exponent {fit['exponent']:+.3f}, {ci}, R^2 {fit['r2']:.3f}; law predicts {pred}{within}")
    if f.get("constant"):
        s += f"; {f['constant']['form']}: C = {f['constant']['constant']:.4g}"
    vals = [t for t in f.get("theorem3", []) if t.get("value") is not None]
    if vals:
        s += f"; Theorem 3 literal bound {min(t['value'] for t in vals):.3g}..{max(t['value'] for t in vals):.3g}"
    fails = sorted({h.split(":")[0] for t in f.get("theorem3", []) for h in t["hypotheses_failing"]})
    if fails:
        s += f"; Theorem 3 hypotheses not met/unknown: {', '.join(fails)}"
    return s


if __name__ == "__main__":
    from advrobust.cli.compare import main
    from advrobust.cli._common import run_main

    raise SystemExit(run_main(main))
