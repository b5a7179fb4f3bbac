"""``python -m advrobust.report RUN_DIRS... --out DIR``: one self-contained report over runs.

Writes ``report.html`` (figures embedded as base64 PNG data URIs, inline CSS, no scripts, styles or
fonts fetched from anywhere: it reads offline), ``report.md`` with the same content and the PNG
figures beside it, and every figure also as PDF. Sections (see ``docs/report.md``):

comparison table, robust accuracy against epsilon, radius distributions, scaling with p (and n, d),
attack comparison, adversarial gallery, sanity flags, provenance, missing pieces.

Missing inputs (no attack results, no certified bounds, no Lipschitz estimates) never stop the
report: each missing piece is named with the command that would fill it.
"""
from __future__ import annotations

import base64
import html
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import plots
from .errors import UserError
from .cli._common import argument_parser, print_json, run_main
from .norms import norm_name, parse_norm
from ._stats import quantile
from .runs import (MODEL_FILE, RUN_FILE, atomic_write_bytes, atomic_write_text, find_runs, load_npz,
                   read_json, read_run_record, results_stem, versions)

NORMS = ("l1", "l2", "linf")
SPLITS = ("test", "train")
LIPSCHITZ_FILE = "lipschitz.json"
#: relative tolerance when checking attack radii against certified lower bounds and exact radii
BRACKET_RTOL = 1e-4

#: most models drawn in one per-model figure (robust accuracy, radii, attacks, gallery): a study with seeds
#: has hundreds of runs, whose curves and legend would be unreadable; the tables keep every run
FIGURE_MAX_RUNS = 12
#: the full comparison table (every column of ``advrobust.compare``), written beside the report
COMPARISON_CSV = "comparison.csv"
#: CSS pixels per inch of a figure's printed size in the HTML (a 7 in figure is 910 px wide)
CSS_PX_PER_INCH = 130

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


# --------------------------------------------------------------------------- loading
@dataclass
class RunData:
    """One run directory as the report sees it: its record and whatever results it holds."""

    path: Path
    name: str
    index: int
    meta: dict
    results: dict = field(default_factory=dict)  # (norm, split) -> (arrays, info json)
    lipschitz: dict | None = None
    label: str = ""  # short: data set, family, width (or p); unique among the report's runs

    @property
    def tag(self) -> "Label":
        """The run's short label as a table cell whose tooltip (HTML) is its full name."""
        return Label(self.label or self.name, self.name)

    @property
    def params(self) -> float:
        return _num(_get(self.meta, "params", "p", "param_count"))

    @property
    def n(self) -> float:
        return _num(_get(self.meta, "n", "n_train"))

    @property
    def d(self) -> float:
        return _num(_get(self.meta, "d", "dim"))

    @property
    def input_scale(self) -> float:
        """Typical L2 norm s of a centred input (``lipschitz.input_scale`` from the data meta, else the
        Lipschitz record's); NaN if unknown. Unit-norm values: Lipschitz * s, radius / s."""
        from .lipschitz import input_scale

        meta = self.meta.get("data_meta") if isinstance(self.meta.get("data_meta"), dict) else None
        s, _ = input_scale(None, meta)
        if s is None and isinstance(self.lipschitz, dict):
            s = self.lipschitz.get("input_scale")
        v = _num(s)
        return v if math.isfinite(v) and v > 0 else math.nan

    @property
    def d_intrinsic(self) -> float:
        """The dimension of the run's data distribution (compare's ``d_intrinsic``); NaN if unknown."""
        if "_d_intrinsic" not in self.__dict__:
            from .compare import intrinsic_columns

            self.__dict__["_d_intrinsic"] = _num(intrinsic_columns(self.meta, self.path, _dataset_name(self.meta),
                                                                   _get(self.meta, "d", "dim"))[0])
        return self.__dict__["_d_intrinsic"]

    @property
    def input_shape(self) -> list:
        spec = self.meta.get("spec", {}) if isinstance(self.meta.get("spec"), dict) else {}
        model = spec.get("model", {}) if isinstance(spec.get("model"), dict) else {}
        return list(model.get("input_shape") or self.meta.get("input_shape") or [])

    @property
    def image(self) -> bool:
        return len(self.input_shape) == 3


def _get(d: dict, *keys: str) -> Any:
    for k in keys:
        if isinstance(d, dict) and d.get(k) is not None:
            return d[k]
    return None


def _dataset_name(meta: dict) -> Any:
    """The data set's name: ``meta["dataset"]`` or ``meta["spec"]["data"]["name"]``."""
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
    return _get(meta, "dataset") or _get(data, "name")


class Label(str):
    """A short table cell (a run's label) that carries a longer text shown as its HTML tooltip."""

    def __new__(cls, text: str, full: str) -> "Label":
        obj = super().__new__(cls, text)
        obj.full = full
        return obj


def short_label(meta: dict, name: str) -> str:
    """``'digits mlp w6'``: data set, model family and width (``p=…`` for a family without one);
    ``(min)`` marks a width found by the minimal-width search. The run's name where the record lacks them."""
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    model = spec.get("model") if isinstance(spec.get("model"), dict) else {}
    data, family = _dataset_name(meta), _get(model, "family") or _get(meta, "model")
    if data is None or family is None:
        return name
    width = _get(model, "width")
    if width is not None:
        size = f"w{width}" + (" (min)" if "min_width_search" in meta else "")
    else:
        p = _num(_get(meta, "params"))
        size = f"p={p:,.0f}" if math.isfinite(p) else ""
    return " ".join(str(t) for t in (data, family, size) if t)


def _distinguish(meta: dict) -> dict[str, str]:
    """What may tell runs with the same short label apart, most telling first: {field: text}."""
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
    model = spec.get("model") if isinstance(spec.get("model"), dict) else {}
    out = {}
    for key, fmt in (("label_noise", "noise {:g}"), ("n", "n={}"), ("dim", "d={}"), ("resize", "{}px"),
                     ("classes", "k={}"), ("labels", "{} labels")):
        if data.get(key) is not None:
            out[key] = fmt.format(data[key])
    if model.get("depth") is not None:
        out["depth"] = f"depth {model['depth']}"
    if _get(meta, "seed") is not None:
        out["seed"] = f"s{_get(meta, 'seed')}"
    return out


def _assign_labels(runs: list) -> None:
    """Short unique labels: the short label, plus the fields that differ among runs sharing it (seed,
    label noise, n, d, ...); the run's name where nothing does."""
    base = {id(r): short_label(r.meta, r.name) for r in runs}
    for lab in set(base.values()):
        same = [r for r in runs if base[id(r)] == lab]
        extras = [_distinguish(r.meta) for r in same]
        keys = list(dict.fromkeys(k for e in extras for k in e))
        differing = [k for k in keys if len({e.get(k, "") for e in extras}) > 1]
        for r, e in zip(same, extras):
            r.label = " ".join([lab] + [e[k] for k in differing if k in e])
    # still shared (e.g. runs differing in training only): add the parts of their names that differ
    for lab in {r.label for r in runs}:
        same = [r for r in runs if r.label == lab]
        if len(same) < 2:
            continue
        parts = [r.name.replace("/", "-").split("-") for r in same]
        common = set(parts[0]).intersection(*parts[1:])
        for r, ps in zip(same, parts):
            extra = [t for t in ps if t not in common]
            r.label = " ".join([lab] + extra) if extra else lab
    labels = [r.label for r in runs]
    for r in runs:
        if labels.count(r.label) > 1:
            r.label = r.name


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _run_names(paths: Sequence[Path]) -> list[str]:
    """Directory names, or paths relative to the common parent where names repeat."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    resolved = [p.resolve() for p in paths]
    common = Path(*[parts[0] for parts in zip(*[r.parts for r in resolved]) if len(set(parts)) == 1])
    return [str(r.relative_to(common)) if r != common else r.name for r in resolved]


def load_runs(run_dirs: Sequence[str | Path], *, norms: Sequence[str] | None = None) -> list[RunData]:
    """Read each run's ``run.json``, attack results (``attack-<norm>-<split>.npz/.json``) and
    ``lipschitz.json``; nothing is recomputed. Corrupt files are a :class:`UserError`. Runs come
    back ordered by data set, then parameter count, then name."""
    paths = find_runs(list(run_dirs))
    seen, unique = set(), []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    out = []
    for p, name in zip(unique, _run_names(unique)):
        meta = read_run_record(p)
        if not isinstance(meta, dict):
            raise UserError(f"{p / RUN_FILE} is not an advrobust run record (expected a JSON object)")
        run = RunData(path=p, name=name, index=0, meta=meta)
        for norm in norms or NORMS:
            for split in SPLITS:
                stem = results_stem(norm, split)
                if not (p / f"{stem}.npz").is_file():
                    continue
                arrays = load_npz(p / f"{stem}.npz", what="attack results")
                if "best_radius" not in arrays:
                    raise UserError(f"{p / (stem + '.npz')} has no best_radius column; rerun python -m "
                                    f"advrobust.attack {p} --norm {norm} --split {split}")
                info = read_json(p / f"{stem}.json", what="attack summary") if (p / f"{stem}.json").is_file() else {}
                run.results[(norm, split)] = (arrays, info if isinstance(info, dict) else {})
        if (p / LIPSCHITZ_FILE).is_file():
            lip = read_json(p / LIPSCHITZ_FILE, what="Lipschitz estimates")
            run.lipschitz = lip if isinstance(lip, dict) else None
        out.append(run)
    # smallest model first (the order of a scaling study); the index fixes each run's colour
    out.sort(key=lambda r: (str(_dataset_name(r.meta) or ""), r.params if math.isfinite(r.params) else math.inf,
                            r.name))
    for i, r in enumerate(out):
        r.index = i
    _assign_labels(out)
    return out


def _spread(pool: list, k: int) -> list:
    """``k`` of ``pool`` (ordered by data set, then p): the first and last run of every data set (its
    smallest and largest model), then the rest evenly over the remaining positions, in pool order."""
    if len(pool) <= k:
        return list(pool)
    keys = [str(_dataset_name(r.meta)) for r in pool]
    ends = []
    for ds in dict.fromkeys(keys):
        idx = [i for i, v in enumerate(keys) if v == ds]
        ends += [idx[0], idx[-1]]
    chosen = list(dict.fromkeys(ends))[:k]
    others = [i for i in range(len(pool)) if i not in chosen]
    slots = k - len(chosen)
    if slots > 0 and others:
        chosen += [others[min(len(others) - 1, int(round((j + 0.5) * len(others) / slots - 0.5)))]
                   for j in range(slots)]
    return [pool[i] for i in sorted(set(chosen))]


# --------------------------------------------------------------------------- per-sample helpers
def _radius(arrays: dict) -> np.ndarray:
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


def _quantile(r: np.ndarray, q: float) -> float:
    """Quantile by the project's one definition (:func:`advrobust._stats.quantile`: an observed value)."""
    return quantile(r, q)


def _quartiles(r: np.ndarray) -> tuple[float, float, float]:
    """(median, 25%, 75%) without interpolation; NaNs when empty."""
    return (_quantile(r, 0.5), _quantile(r, 0.25), _quantile(r, 0.75)) if r.size else (math.nan,) * 3


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "–"
    if math.isinf(f):
        return "∞" if f > 0 else "-∞"
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    if f != 0 and (abs(f) >= 1e5 or abs(f) < 1e-3):
        return f"{f:.{digits - 1}e}"
    return f"{f:.{digits}g}"


def _attack_names(arrays: dict, info: dict) -> list[str]:
    names = [str(a) for a in info.get("attacks", [])] if isinstance(info.get("attacks"), list) else []
    cols = [k[len("radius__"):] for k in arrays if k.startswith("radius__")]
    return names + [c for c in cols if c not in names]


def _device(dev: Any) -> Any:
    """``{"device": "cuda:0", "gpu": "H100"}`` -> ``'cuda:0 (H100)'``; strings pass through."""
    if not isinstance(dev, dict):
        return dev
    extra = dev.get("gpu") or dev.get("cpu")
    return f"{dev.get('device', '?')} ({extra})" if extra else dev.get("device")


def _lipschitz_entry(lip: dict | None, norm: str) -> dict | None:
    """The Lipschitz estimates for one input norm from ``lipschitz.json`` (``by_norm`` or top level)."""
    if not isinstance(lip, dict):
        return None
    by = lip.get("by_norm")
    if isinstance(by, dict) and isinstance(by.get(norm), dict):
        return by[norm]
    return lip if lip.get("norm") == norm and isinstance(lip.get("margin"), dict) else None


def flag_commands(path: Path, norm: str, split: str) -> dict:
    """The commands that fill each kind of missing piece of a run directory for ``norm``/``split``;
    the same commands ``advrobust.compare`` names (:func:`advrobust.compare.attack_command`: the
    run's own attack configuration, and ``--bounds-only`` for bounds on existing results)."""
    from .compare import LIPSCHITZ_CMD, attack_command

    return {"attack": attack_command(path, norm, split), "certify": attack_command(path, norm, split, certify="crown"),
            "lipschitz": LIPSCHITZ_CMD.format(path=path, norm=norm)}


def _command(cmd: Any) -> Any:
    """A recorded command as one line (attack records store it as a list of arguments)."""
    if isinstance(cmd, (list, tuple)):
        import shlex

        return " ".join(shlex.quote(str(c)) for c in cmd)
    return cmd


# --------------------------------------------------------------------------- the document
class Doc:
    """A list of blocks rendered twice, to HTML and Markdown, so both hold the same content."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str, anchor: str | None = None) -> None:
        self.blocks.append(("h", level, text, anchor))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("list", list(items)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", [str(h) for h in headers],
                            [[c if isinstance(c, Label) else _fmt(c) for c in r] for r in rows]))

    def fig(self, name: str, caption: str) -> None:
        self.blocks.append(("fig", name, caption))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))


_INLINE_CODE = re.compile(r"`([^`]+)`")
_NUMERIC = re.compile(r"[-+]?(\d[\d,]*\.?\d*(e[-+]?\d+)?|∞|inf|–|-)", re.I)


_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _html_inline(text: str) -> str:
    """Inline `code` and [text](relative link) as HTML; everything else escaped."""
    out, pos = [], 0
    for m in _LINK.finditer(text):
        out.append(_html_code(text[pos:m.start()]))
        out.append(f'<a href="{html.escape(m.group(2), quote=True)}">{_html_code(m.group(1))}</a>')
        pos = m.end()
    out.append(_html_code(text[pos:]))
    return "".join(out)


def _html_code(text: str) -> str:
    parts = _INLINE_CODE.split(text)
    return "".join(f"<code>{html.escape(t)}</code>" if i % 2 else html.escape(t) for i, t in enumerate(parts))


def _html_cell(c: str) -> str:
    if isinstance(c, Label):
        return f'<td class="run" title="{html.escape(c.full, quote=True)}">{html.escape(c)}</td>'
    return f'<td class="num">{_html_inline(c)}</td>' if _NUMERIC.fullmatch(c) else f"<td>{_html_inline(c)}</td>"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45;font-size:15px}
h1{font-size:1.6em;border-bottom:2px solid #0072B2;padding-bottom:.2em}h2{font-size:1.3em;margin-top:1.8em;
border-bottom:1px solid #ccc}h3{font-size:1.08em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:13px;max-width:100%}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top;overflow-wrap:anywhere}
td.num{text-align:right;white-space:nowrap}th{background:#eef3f8}td.run{white-space:nowrap;cursor:help}
tr:nth-child(even) td{background:#fafafa}
.figs{display:flex;flex-wrap:wrap;gap:0 1.5em;align-items:flex-start}
figure{margin:1em 0 1.6em;flex:0 1 auto}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#444;margin-top:.3em}code{background:#f2f2f2;padding:0 .25em;border-radius:3px;
font-size:92%}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}
.missing li{color:#8a4b00}
"""


def render_html(doc: Doc, *, title: str, images: dict[str, bytes]) -> str:
    """Self-contained HTML: inline CSS, figures as ``data:image/png;base64`` URIs, no scripts."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>"]
    in_figs = False
    for b in doc.blocks:
        kind = b[0]
        if kind == "fig" and not in_figs:
            out.append('<div class="figs">')
            in_figs = True
        elif kind != "fig" and in_figs:
            out.append("</div>")
            in_figs = False
        if kind == "h":
            _, level, text, anchor = b
            aid = f' id="{html.escape(anchor)}"' if anchor else ""
            out.append(f"<h{level + 1}{aid}>{html.escape(text)}</h{level + 1}>")
        elif kind == "p":
            out.append(f"<p>{_html_inline(b[1])}</p>")
        elif kind == "list":
            out.append('<ul class="missing">' if b[1] and b[1][0].startswith("missing") else "<ul>")
            out.extend(f"<li>{_html_inline(t)}</li>" for t in b[1])
            out.append("</ul>")
        elif kind == "table":
            _, headers, rows = b
            out.append("<table><thead><tr>" + "".join(f"<th>{_html_inline(h)}</th>" for h in headers)
                       + "</tr></thead><tbody>")
            for r in rows:
                out.append("<tr>" + "".join(_html_cell(c) for c in r) + "</tr>")
            out.append("</tbody></table>")
        elif kind == "fig":
            _, name, caption = b
            png = images[name]
            data = base64.b64encode(png).decode("ascii")
            # shown at its printed size (inches from the PNG's pixels and dpi) x CSS_PX_PER_INCH
            w, h = struct.unpack(">II", png[16:24])
            scale = CSS_PX_PER_INCH / plots.STYLE["savefig.dpi"]
            out.append(f'<figure style="max-width:{round(w * scale)}px"><img src="data:image/png;base64,{data}" '
                       f'width="{round(w * scale)}" height="{round(h * scale)}" '
                       f'alt="{html.escape(caption, quote=True)}">'
                       f"<figcaption>{_html_inline(caption)} (also <code>{html.escape(name)}.pdf</code>)"
                       "</figcaption></figure>")
        elif kind == "pre":
            out.append(f"<pre>{html.escape(b[1])}</pre>")
    if in_figs:
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_markdown(doc: Doc, *, title: str) -> str:
    """Markdown with the same blocks; figures link ``<name>.png`` beside the file."""
    out = [f"# {title}", ""]
    for b in doc.blocks:
        kind = b[0]
        if kind == "h":
            out += ["#" * (b[1] + 1) + " " + b[2], ""]
        elif kind == "p":
            out += [b[1], ""]
        elif kind == "list":
            out += [f"- {t}" for t in b[1]] + [""]
        elif kind == "table":
            _, headers, rows = b
            out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            out.append("|" + "|".join("---" for _ in headers) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
            out.append("")
        elif kind == "fig":
            _, name, caption = b
            out += [f"![{_md_cell(caption)}]({name}.png)", "", f"*{caption}* (PDF: [{name}.pdf]({name}.pdf))", ""]
        elif kind == "pre":
            out += ["```", b[1], "```", ""]
    return "\n".join(out).rstrip() + "\n"


def _parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]] | None:
    """Header and rows of the first pipe table in ``text`` (None if there is none)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        return None

    def cells(ln: str) -> list[str]:
        parts = re.split(r"(?<!\\)\|", ln.strip().strip("|"))
        return [c.strip().replace("\\|", "|") for c in parts]

    header = cells(lines[0])
    body = [cells(ln) for ln in lines[1:] if not re.fullmatch(r"\|?[\s:\-|]+\|?", ln)]
    return header, body


# --------------------------------------------------------------------------- the report
class _Builder:
    def __init__(self, runs: list[RunData], out: Path, norms: list[str], *, samples: int, bootstrap: int,
                 seed: int) -> None:
        self.runs, self.out, self.norms = runs, out, norms
        self.samples, self.bootstrap, self.seed = samples, bootstrap, seed
        self.doc = Doc()
        self.images: dict[str, bytes] = {}
        self.figures: dict[str, dict] = {}
        self.missing: list[dict] = []
        self.flags: list[dict] = []
        self._styles: dict[str, dict] = {}  # run name -> colour and line style in the per-model figure drawn
        self.notes: list[str] = []

    # ---- helpers
    def need(self, what: str, command: str | None) -> None:
        """Record a missing piece; one entry per command (the first description wins)."""
        for m in self.missing:
            if (command is not None and m["command"] == command) or (command is None and m["what"] == what):
                return
        self.missing.append({"what": what, "command": command})

    def save(self, fig, name: str, meta: dict, caption: str) -> None:
        try:
            meta = dict(meta, **plots.layout_problems(fig))
            png = plots.figure_bytes(fig, "png")
            pdf = plots.figure_bytes(fig, "pdf")
        finally:
            plots.close(fig)
        atomic_write_bytes(self.out / f"{name}.png", png)
        atomic_write_bytes(self.out / f"{name}.pdf", pdf)
        self.images[name] = png
        self.figures[name] = dict(meta, png=f"{name}.png", pdf=f"{name}.pdf")
        self.doc.fig(name, caption)

    def drawn(self, runs: list[RunData], what: str) -> list[RunData]:
        """At most FIGURE_MAX_RUNS of ``runs`` for a per-model figure: those of the lowest seed, always the
        smallest and the largest model of each data set, the rest spread evenly over the runs' order (data
        set, then p); a paragraph says which when some are left out. Sets each drawn run's colour and line
        style (:func:`plots.sequential_styles`: shades ordered by p within a data set, line style by data set)."""
        pool = list(runs)
        if len(runs) > FIGURE_MAX_RUNS:
            seeds = [_num(_get(r.meta, "seed")) for r in runs]
            known = [v for v in seeds if math.isfinite(v)]
            low = min(known) if known else math.nan
            pool = [r for r, v in zip(runs, seeds) if v == low] or list(runs)
            pool = _spread(pool, FIGURE_MAX_RUNS)
            seed = f"seed {low:g}, " if math.isfinite(low) and len(set(known)) > 1 else ""
            self.doc.p(f"{what}: {len(pool)} of {len(runs)} runs drawn ({seed}the smallest and largest model of "
                       f"each data set, the rest spread evenly over the parameter counts: "
                       f"{', '.join(r.label for r in pool)}); the table lists every run.")
        styles = plots.sequential_styles([(str(_dataset_name(r.meta)), r.params) for r in pool])
        self._styles = {r.name: st for r, st in zip(pool, styles)}
        return pool

    def item(self, r: RunData, **values) -> dict:
        """A run's entry in a per-model figure: full name, short label, style (after :meth:`drawn`)."""
        return {"run": r.name, "label": r.label, "index": r.index, "style": self._styles.get(r.name), **values}

    def _tag(self, name: str) -> Any:
        return next((r.tag for r in self.runs if r.name == name), name)

    def with_results(self, norm: str, split: str) -> list[RunData]:
        return [r for r in self.runs if (norm, split) in r.results]

    # ---- sections
    def overview(self) -> None:
        d = self.doc
        d.p(f"{len(self.runs)} run(s); norms: {', '.join(self.norms)}. Radii are minimal adversarial "
            "perturbations found by attacks (upper bounds on the true minimal radius); certified radii are "
            "lower bounds. Radius 0 means the point is misclassified already; ∞ means no attack broke it.")
        rows = []
        for r in self.runs:
            have = [f"{n}-{s}" for (n, s) in sorted(r.results)]
            rows.append([r.tag, str(r.path), _dataset_name(r.meta),
                         r.params, r.n, r.d, ", ".join(have) or "none",
                         ", ".join(n for n in NORMS if _lipschitz_entry(r.lipschitz, n)) or "none"])
        d.table(["run", "path", "dataset", "p", "n", "d", "attack results", "Lipschitz"], rows)
        for r in self.runs:
            for norm in self.norms:
                for split in SPLITS:
                    if (norm, split) not in r.results:
                        self.need(f"{r.label}: {norm} radii on {split} points (this norm and split were never "
                                  "attacked)",
                                  flag_commands(r.path, norm, split)["attack"])

    def comparison(self) -> None:
        d = self.doc
        d.h(1, "Comparison", "comparison")
        try:
            from . import compare
        except ImportError as exc:
            d.p(f"The comparison table needs `advrobust.compare`, which could not be imported ({exc}).")
            self.need("comparison table (advrobust.compare)", None)
            return
        rows = compare.collect_rows([str(r.path) for r in self.runs], norms=self.norms)
        for row in rows:
            by_cmd: dict = {}
            for col, cmd in (row.get("missing") or {}).items():
                by_cmd.setdefault(cmd, []).append(col)
            for cmd, cols in by_cmd.items():
                r = next((x for x in self.runs if str(x.path) == str(row.get("path"))), None)
                has = r is not None and any(c.startswith(f"{n}_{s}_") and (n, s) in r.results
                                            for c in cols for n in NORMS for s in SPLITS)
                self.need(f"{r.label if r else row.get('run', '?')}: "
                          f"{compare.describe_missing(cols[0], has_results=has)}", cmd)
        csv_text = compare.format_table(rows, fmt="csv")
        atomic_write_text(self.out / COMPARISON_CSV, csv_text)
        d.p(f"From `advrobust.compare`, split by topic so each table fits the page. Every column of every run "
            f"is in [`{COMPARISON_CSV}`]({COMPARISON_CSV}) (the table `python -m advrobust.compare --format csv` "
            "prints). Runs are named by their short label; hover a label for the run's full name (also in "
            "Provenance). `–`: not measured (see Missing pieces).")
        by_name = {r.name: r for r in self.runs}
        by_path = {str(r.path): r for r in self.runs}

        def tag(row: dict) -> Any:
            r = by_path.get(str(row.get("path"))) or by_name.get(str(row.get("run")))
            return r.tag if r is not None else row.get("run")

        def table(title: str, cols: list[tuple[str, str]]) -> None:
            cols = [(k, h) for k, h in cols if any(row.get(k) is not None for row in rows)]
            if not cols:
                return
            d.h(2, title)
            d.table(["run"] + [h for _, h in cols], [[tag(row)] + [row.get(k) for k, _ in cols] for row in rows])

        table("Size and accuracy", [("dataset", "data"), ("width", "width"),
                                    ("params", "p"), ("n", "n"), ("d", "d"), ("p/n", "p/n"),
                                    ("train_accuracy", "train acc."), ("test_accuracy", "test acc."),
                                    ("interpolated", "interpolated"), ("d_intrinsic", "intrinsic d")])
        for norm in self.norms:
            for split in compare.SPLITS:
                pre = f"{norm}_{split}_"
                keys = [k for row in rows for k in row if k.startswith(pre)]
                keys = list(dict.fromkeys(keys))
                cols = [(pre + "attacked", "points"), (pre + "radius_median", "median radius")]
                cols += [(k, f"robust acc. ε={k.split('@')[1]}") for k in keys if "_robust_acc@" in k]
                cols += [(k, f"certified ε={k.split('@')[1]}") for k in keys if "_certified@" in k]
                table(f"Radii: {norm}, {split} points", cols)
        lip_cols = []
        for norm in self.norms:
            lip_cols += [(f"{norm}_lip_lower", f"{norm} lower"), (f"{norm}_lip_upper", f"{norm} upper"),
                         (f"{norm}_lip_local_median", f"{norm} local median")]
        table("Lipschitz constant of the margin", lip_cols + [("logit_lip_lower", "logits lower"),
                                                             ("logit_lip_upper", "logits upper"),
                                                             ("input_scale", "input scale")])
        cost = []
        for row in rows:
            r = by_path.get(str(row.get("path"))) or by_name.get(str(row.get("run")))
            if r is None:
                continue
            search = r.meta.get("min_width_search") if isinstance(r.meta.get("min_width_search"), dict) else {}
            attack = [info.get("wall_time_s") for _, info in r.results.values()]
            attack = [_num(v) for v in attack if math.isfinite(_num(v))]
            lips = [_num((_lipschitz_entry(r.lipschitz, nm) or {}).get("wall_time_s")) for nm in NORMS]
            lips = [v for v in lips if math.isfinite(v)]
            cost.append([r.tag, _get(r.meta, "epochs"), _get(r.meta, "wall_time_s"),
                         search.get("wall_time_s"), sum(attack) if attack else None, sum(lips) if lips else None])
        if cost:
            d.h(2, "Cost (wall time, seconds)")
            d.table(["run", "epochs", "training", "min-width search", "attacks", "Lipschitz"], cost)

    def robust_accuracy(self) -> None:
        d = self.doc
        d.h(1, "Robust accuracy against epsilon", "robust-accuracy")
        d.p("Share of points whose radius exceeds ε, from the per-sample radii: thick, the best over attacks "
            "(an upper bound on true robust accuracy); thin with tick marks, the certified lower bounds where they "
            "exist (a lower bound). The truth lies between the two curves of a model. Colours: one sequential "
            "colormap per data set, darker for more parameters; line style by data set.")
        for norm in self.norms:
            for split in SPLITS:
                runs = self.with_results(norm, split)
                if not runs:
                    continue
                curves = []
                for r in runs:
                    if certified_lower(r.results[(norm, split)][0]) is None:
                        self.need(f"{r.label}: {norm} certified lower bounds on {split} points (optional; attacked "
                                  "without --certify)",
                                  flag_commands(r.path, norm, split)["certify"])
                for r in self.drawn(runs, f"{norm} robust accuracy on {split} points"):
                    arrays, _ = r.results[(norm, split)]
                    curves.append(self.item(r, radius=_radius(arrays), lower=certified_lower(arrays)))
                fig, meta = plots.plot_robust_accuracy(curves, norm=norm, split=split, image=runs[0].image)
                self.save(fig, f"robust-accuracy-{norm}-{split}", meta,
                          f"{norm} robust accuracy on {split} points, one curve per model "
                          f"({meta['certified_curves']} with certified curves).")
        if not any(r.results for r in self.runs):
            d.p("No attack results yet: run `python -m advrobust.attack RUN --norm l2 --split test` on each run.")

    def distributions(self) -> None:
        d = self.doc
        d.h(1, "Distribution of radii", "radii")
        d.p("Finite positive radii per model on training and test points; counts of misclassified (0) and "
            "unbroken (∞) points are written under each box and in the table.")
        for norm in self.norms:
            groups = []
            rows = []
            for r in self.runs:
                radii = {}
                for split in ("train", "test"):
                    if (norm, split) in r.results:
                        rad = _radius(r.results[(norm, split)][0])
                        radii[split] = rad
                        rows.append([r.tag, split, rad.size, int(np.sum(rad == 0)), int(np.sum(np.isinf(rad))),
                                     _quantile(rad, 0.1), _quantile(rad, 0.5), _quantile(rad, 0.9)])
                if radii:
                    groups.append((r, radii))
            if not groups:
                continue
            d.h(2, f"{norm}")
            keep = {r.name for r in self.drawn([r for r in self.runs if any((norm, s) in r.results for s in SPLITS)],
                                               f"{norm} radii")}
            groups = [self.item(r, radius=radii) for r, radii in groups if r.name in keep]
            fig, meta = plots.plot_radius_distribution(groups, norm=norm, image=self.runs[0].image)
            self.save(fig, f"radii-{norm}", meta, f"{norm} radii on training and test points per model.")
            d.table(["run", "split", "samples", "misclassified (0)", "unbroken (∞)", "q10", "median", "q90"], rows)

    def scaling(self) -> None:
        d = self.doc
        d.h(1, "Scaling with parameters, samples and dimension", "scaling")
        d.p("Per run: median radius and Lipschitz estimates of the margin against the parameter count p, and, "
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
        try:
            from . import law
        except ImportError as exc:
            law = None
            d.p(f"No fits: `advrobust.law` could not be imported ({exc}).")
            self.need("power-law fits (advrobust.law)", None)
        self._law = law
        self._thresholds = self._interpolation_thresholds(law)
        arms = []
        covered: set = set()
        for attr, sym, label in (("n", "n", "training samples n"), ("d", "d", "input dimension d (pixels)"),
                                 ("d_intrinsic", "d-intrinsic", "intrinsic dimension of the data")):
            vals = {getattr(r, attr) for r in self.runs if math.isfinite(getattr(r, attr))}
            if len(vals) > 1:
                groups = self._groups(attr, min_distinct=2)
                if groups:
                    arms.append((attr, sym, label, groups))
                    covered |= {r.name for _, g in groups for r in g}
                elif attr != "d_intrinsic":
                    self.notes.append(f"No scaling figure against {sym}: the runs differ in {sym} only across "
                                      f"groups that also differ in data set, labels, architecture or width, "
                                      f"so no fit against {sym} compares like with like.")
        # against p: the width sweeps, and any run shown in no other arm (a lone run still shows where it lies)
        sweeps = self._groups("params", min_distinct=2)
        self._sweep_labels = {g for g, _ in sweeps}
        shown = {r.name for _, g in sweeps for r in g}
        lone = [(g, runs) for g, runs in self._groups("params", min_distinct=0)
                if g not in self._sweep_labels and any(r.name not in covered | shown for r in runs)]
        arms.insert(0, ("params", "p", "parameter count p", sweeps + lone))
        fit_rows = []
        for attr, sym, label, groups in arms:
            self._pooled = self._pooled_intrinsic(groups) if attr == "d_intrinsic" else {}
            # one data set per figure, and at most SCALING_MAX_GROUPS groups in it
            step = plots.SCALING_MAX_GROUPS
            by_data: dict = {}
            for g in groups:
                by_data.setdefault(self._dataset(g[1][0]), []).append(g)
            chunks = [part[i:i + step] for part in by_data.values() for i in range(0, len(part), step)]
            for ci, chunk in enumerate(chunks):
                suffix = "" if ci == 0 else f"-{ci + 1}"
                part = "" if len(chunks) == 1 else f" ({ci + 1} of {len(chunks)})"
                vlines = self._vlines([g for g, _ in chunk]) if attr == "params" else []
                for norm in self.norms:
                    self._scaling_figures(law, attr, sym, label, chunk, norm, vlines, suffix, part, fit_rows)
        for r in self.runs:
            for norm in self.norms:
                if _lipschitz_entry(r.lipschitz, norm) is None:
                    self.need(f"{r.label}: {norm} Lipschitz estimates (no lipschitz.json entry)",
                              flag_commands(r.path, norm, "train")["lipschitz"])
        if fit_rows:
            d.table(["group", "quantity", "against", "runs fitted", "regime", "fitted slope", "95% low", "95% high", "r²",
                     "law's slope"], fit_rows)
        for note in self.notes:
            d.p(note)
        self.notes.clear()

    def _scaling_figures(self, law, attr: str, sym: str, label: str, groups: list, norm: str, vlines: list,
                         suffix: str, part: str, fit_rows: list) -> None:
        """The radius and the Lipschitz figure of one arm (one chunk of its groups) for one norm."""
        nm = plots.NORM_LABEL.get(norm, norm)
        # the theorem's coordinates (unit-norm data) where every run's input scale is known, as compare fits
        unit = all(math.isfinite(r.input_scale) for _, gruns in groups for r in gruns)
        data = self._dataset(groups[0][1][0]) if groups and groups[0][1] else "runs"
        for kind in ("radius", "lipschitz"):
            # filled: what the law speaks of (memorised training points, the Lipschitz lower bound)
            keys = (("train", "training points"), ("test", "test points")) if kind == "radius" else \
                (("lower", "lower estimate"), ("upper", "upper estimate"))
            series = []
            for gi, (glabel, gruns) in enumerate(groups):
                for si, (key, style) in enumerate(keys):
                    pts = []
                    for r in gruns:
                        if kind == "radius":
                            if (norm, key) in r.results:
                                y = _quantile(_radius(r.results[(norm, key)][0]), 0.5)
                                pts.append((r, self._x(r, attr), y / r.input_scale if unit else y))
                        else:
                            entry = _lipschitz_entry(r.lipschitz, norm)
                            if entry is not None:
                                y = _num((entry.get("margin") or {}).get(key))
                                pts.append((r, self._x(r, attr), y * r.input_scale if unit else y))
                    what = f"median {key} radius" if kind == "radius" else f"Lipschitz {key} estimate"
                    color = plots.PALETTE[gi % len(plots.PALETTE)] if len(groups) > 1 else plots.PALETTE[si]
                    s = self._series(pts, label=f"{glabel}: {what}", marker=plots.MARKERS[gi % len(plots.MARKERS)],
                                     filled=si == 0, color=color)
                    if s is None:
                        continue
                    s["group"], s["style"] = glabel, style
                    s["faded"] = [not self._fitted(r, attr) for r in s["run_data"]]
                    quantity = f"median {norm} {key} radius" if kind == "radius" else f"{norm} Lipschitz {key}"
                    s["fit"] = self._fit(law, s, fit_rows, quantity, attr, kind)
                    series.append(s)
            if not series:
                if kind == "radius" and self.with_results(norm, "test") + self.with_results(norm, "train"):
                    self.notes.append(f"No {norm} radius-vs-{sym} figure{part}: no run has a positive, finite "
                                      f"median {norm} radius (more than half of its points misclassified or unbroken).")
                continue
            axis = {"d-intrinsic": "intrinsic d"}.get(sym, sym)
            if kind == "radius":
                ylabel = f"{nm} radius (unit-norm data)" if unit else plots.radius_label(norm, image=self.runs[0].image)
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
            self.save(fig, f"scaling-{kind}-{norm}-vs-{sym}{suffix}", meta,
                      caption + (f"; {ngroups} groups of comparable runs, one colour and marker each" if ngroups > 1
                                 else "") + "; pale points did not interpolate.")

    def _x(self, r: RunData, attr: str) -> float:
        """A run's position on an arm's axis; against d_intrinsic the mean estimate over the runs of
        its group with its pixel count (seeds of one data set share one x, as in law.fit_law)."""
        if attr == "d_intrinsic":
            return self._pooled.get((r.name, "x"), r.d_intrinsic)
        return getattr(r, attr)

    def _pooled_intrinsic(self, groups: list) -> dict:
        out = {}
        for _, runs in groups:
            by_d: dict = {}
            for r in runs:
                if math.isfinite(r.d_intrinsic):
                    by_d.setdefault(r.d, []).append(r.d_intrinsic)
            for r in runs:
                vals = by_d.get(r.d)
                if vals:
                    out[(r.name, "x")] = float(np.mean(vals))
        return out

    def _fitted(self, r: RunData, attr: str) -> bool:
        """Whether a run enters its series' fit: it interpolates (and, against p, is at or beyond its
        width sweep's interpolation threshold)."""
        return self._beyond(r) if attr == "params" else self._interpolated(r)

    @staticmethod
    def _series(pts: list, *, label: str, marker: str, filled: bool, color: str) -> dict | None:
        pts = [t for t in pts if math.isfinite(t[1]) and t[1] > 0 and math.isfinite(t[2]) and t[2] > 0]
        if not pts:
            return None
        return {"label": label, "x": [t[1] for t in pts], "y": [t[2] for t in pts], "runs": [t[0].name for t in pts],
                "run_data": [t[0] for t in pts], "marker": marker, "filled": filled, "color": color}

    def _law_row(self, r: RunData) -> dict:
        """The fields :func:`advrobust.law.comparable_groups` groups on, read from a run record."""
        from .compare import training_kind

        spec = r.meta.get("spec") if isinstance(r.meta.get("spec"), dict) else {}
        data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
        model = spec.get("model") if isinstance(spec.get("model"), dict) else {}
        num = lambda v: v if math.isfinite(v) else None  # noqa: E731
        return {"run": r.name, "dataset": self._dataset(r), "n": num(r.n), "d": num(r.d), "params": num(r.params),
                "family": model.get("family"), "width": model.get("width"), "depth": model.get("depth"),
                "params_target": r.meta.get("params_target"), "labels": data.get("labels"), "label_noise": data.get("label_noise"), "flip": data.get("flip"),
                "d_intrinsic": num(r.d_intrinsic), "training": training_kind(spec.get("train") or {}),
                "train_accuracy": 1.0 if self._interpolated(r) else 0.0, "_run": r}

    def _groups(self, attr: str, *, min_distinct: int) -> list[tuple[str, list[RunData]]]:
        """Runs split into groups comparable against ``attr`` (law.comparable_groups)."""
        law = getattr(self, "_law", None)
        if law is None or not hasattr(law, "comparable_groups"):
            return [("all runs", list(self.runs))]
        rows = [self._law_row(r) for r in self.runs]
        return [(label, [row["_run"] for row in members])
                for label, members in law.comparable_groups(rows, attr, min_distinct=min_distinct)]

    def _interpolation_thresholds(self, law) -> dict:
        """Smallest p that fits its training set per group of runs comparable in p
        (law.interpolation_thresholds), keyed by law.group_key(row, "params")."""
        self._threshold_labels, self._group_nd = {}, {}
        if law is None or not hasattr(law, "interpolation_thresholds"):
            return {}
        rows = [self._law_row(r) for r in self.runs]
        for label, members in law.comparable_groups(rows, "params", min_distinct=0):
            self._threshold_labels[law.group_key(members[0], "params")] = label
            n, d = members[0]["n"], members[0]["d"]
            self._group_nd[label] = n * d if n is not None and d is not None else None
        return dict(law.interpolation_thresholds(rows))

    def _beyond(self, r: RunData) -> bool:
        law = getattr(self, "_law", None)
        if law is None:
            return False
        thr = self._thresholds.get(law.group_key(self._law_row(r), "params"))
        return thr is not None and math.isfinite(r.params) and r.params >= thr and self._interpolated(r)

    @staticmethod
    def _dataset(r: RunData) -> Any:
        return _dataset_name(r.meta)

    def _vlines(self, order: list) -> list[dict]:
        """Interpolation thresholds (width sweeps only: groups with at least two distinct p) and p = n·d
        for the groups ``order`` of one p figure, each in its group's colour when there are several."""
        out = []
        several = len(order) > 1
        by_label = {self._threshold_labels.get(k): v for k, v in self._thresholds.items()}

        def colour(g: Any) -> str | None:
            return plots.PALETTE[order.index(g) % len(plots.PALETTE)] if several else None

        sweeps = [g for g in order if g in self._sweep_labels]
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
            nd = self._group_nd.get(glabel)
            if nd is not None and math.isfinite(nd) and nd not in seen:
                seen.add(nd)
                out.append({"x": nd, "label": f"p = n·d = {nd:.0f}" + (f" ({glabel})" if several else ""),
                            "short": "p = n·d", "group": glabel, "color": colour(glabel)})
        return out

    @staticmethod
    def _interpolated(r: RunData) -> bool:
        """Memorises its training set: train accuracy 1, the same definition as compare and law use
        for the interpolation threshold (the trainer's own ``interpolated`` also asks for a small loss)."""
        acc = _num(_get(r.meta, "train_accuracy", "train_acc"))
        if math.isfinite(acc):
            return acc >= 1.0
        return bool(_get(r.meta, "interpolated"))

    def _fit(self, law, s: dict, fit_rows: list, what: str, attr: str, kind: str) -> dict | None:
        if law is None:
            return None
        sym = {"params": "p", "d_intrinsic": "d_intrinsic"}.get(attr, attr)
        group = s.get("group") or "all runs"
        what_g = what if group == "all runs" else f"{what} ({group})"
        x, y, runs = np.asarray(s["x"], float), np.asarray(s["y"], float), s["run_data"]
        beyond = np.array([self._fitted(r, attr) for r in runs])
        regime = "beyond threshold" if attr == "params" else "interpolating"
        if len(set(x[beyond])) >= 2:
            x, y = x[beyond], y[beyond]
        else:
            regime = "all runs"
        if len(set(x)) < 2:
            self.notes.append(f"No fit for {what_g} against {sym}: fewer than two distinct values of {sym}.")
            return None
        try:
            fit = law.fit_power_law(x, y, bootstrap=self.bootstrap, seed=self.seed)
        except (ValueError, UserError) as exc:
            self.notes.append(f"No fit for {what_g} against {sym}: {exc}")
            return None
        pred = getattr(law, "PREDICTED", {}).get(kind, {}).get("d" if attr == "d_intrinsic" else attr)
        fit = dict(fit, predicted=pred)
        s["predicted"] = pred
        fit_rows.append([group, what, sym, int(len(x)), regime, fit.get("exponent"), fit.get("ci_low"), fit.get("ci_high"),
                         fit.get("r2"), plots.frac_label(pred) if pred is not None else None])
        return fit

    def attack_comparison(self) -> None:
        d = self.doc
        d.h(1, "Which attack found the best radius", "attacks")
        d.p("Per attack: the share of broken points (0 < best radius < ∞) where it gave the best radius "
            "(as recorded, ties go to the first attack listed) and where it was within 1% of the best, how "
            "often it failed (no verified adversarial point), and, over the points it broke, its median ratio to "
            "the best radius over attacks and to the exact (MILP) radius where exact radii were computed "
            "(1 = as good as the best / optimal; the figure adds the interquartile range).")
        any_done = False
        for norm in self.norms:
            for split in SPLITS:
                runs = self.with_results(norm, split)
                if not runs:
                    continue
                models, rows, attacks_all = [], [], []
                for r in runs:
                    arrays, info = r.results[(norm, split)]
                    names = _attack_names(arrays, info)
                    best = _radius(arrays)
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
                        q3 = _quartiles(col[hit] / best[hit])
                        ratio = q3[0]
                        rex = math.nan
                        if exact is not None:
                            ok = hit & np.isfinite(exact)
                            m["ratio_exact"][a] = _quartiles(col[ok] / exact[ok])
                            rex = m["ratio_exact"][a][0]
                        t = arrays.get(f"time__{a}")
                        fw = arrays.get(f"forward__{a}")
                        m["best_share"][a] = share
                        m["ratio_best"][a] = q3
                        rows.append([r.tag, a, share, near, failed, ratio, rex,
                                     _quantile(np.asarray(fw, float), 0.5) if fw is not None else None,
                                     _quantile(np.asarray(t, float), 0.5) if t is not None else None])
                        if a not in attacks_all:
                            attacks_all.append(a)
                    if not m["ratio_exact"]:
                        m.pop("ratio_exact")
                    models.append(m)
                if not attacks_all:
                    continue
                any_done = True
                d.h(2, f"{norm}, {split} points")
                keep = {r.name: r for r in self.drawn(runs, f"attacks on {norm} {split} points")}
                models = [{**m, **self.item(keep[m["run"]])} for m in models if m["run"] in keep]
                fig, meta = plots.plot_attack_comparison(models, attacks=attacks_all, norm=norm, split=split)
                self.save(fig, f"attacks-{norm}-{split}", meta,
                          f"Attacks on {norm} {split} points: share best, median gap to the best"
                          + (" and to the exact radius." if meta["exact"] else "."))
                d.table(["run", "attack", "best (recorded)", "within 1% of best", "failed", "median radius/best",
                         "median radius/exact", "median forward passes", "median s/sample"], rows)
        if not any_done:
            d.p("No per-attack radii yet (columns `radius__<attack>` of the attack results).")

    def gallery(self) -> None:
        d = self.doc
        d.h(1, "Adversarial examples", "gallery")
        d.p(f"Up to {self.samples} broken test points per model (the 10%, 50% and 90% quantiles of its radii): "
            "original, perturbation δ = adv − x in a diverging colormap scaled to its largest entry, and the "
            "adversarial input; titles give label, clean prediction → adversarial prediction, and radius.")
        try:
            from .data import load_dataset, split as data_split
            from .runs import load_model
        except ImportError as exc:
            d.p(f"No gallery: the data or model modules could not be imported ({exc}).")
            return
        import torch

        for norm in self.norms:
            split = "test" if self.with_results(norm, "test") else "train"
            rows = []
            shown = self.with_results(norm, split)
            left_out = [r.name for r in self.with_results(norm, "train") if r not in shown]
            if left_out:
                self.notes.append(f"{norm} gallery shows {split} points; not shown, for want of {split} results: "
                                  f"{', '.join(left_out)}.")
            shown = self.drawn(shown, f"{norm} gallery")
            for r in shown:
                arrays, _ = r.results[(norm, split)]
                if "adv" not in arrays or "index" not in arrays:
                    self.notes.append(f"{r.name} {norm}/{split}: no `adv` or `index` column, no gallery row.")
                    continue
                best = _radius(arrays)
                ok = np.flatnonzero(np.isfinite(best) & (best > 0))
                if ok.size == 0:
                    continue
                order = ok[np.argsort(best[ok], kind="stable")]
                qs = (0.1, 0.5, 0.9) if self.samples >= 3 else (0.5,) * self.samples
                qs = qs + tuple(np.linspace(0, 1, self.samples)[3:]) if self.samples > 3 else qs
                picks = list(dict.fromkeys(int(order[int(round(q * (order.size - 1)))]) for q in qs))
                spec = r.meta.get("spec", {})
                try:
                    ds = load_dataset(**spec["data"])
                    x_all, _ = data_split(ds, split)
                    model, _ = load_model(r.path / MODEL_FILE)
                except (UserError, KeyError, TypeError) as exc:
                    self.notes.append(f"{r.name}: no gallery row, the run's data or model could not be loaded ({exc}).")
                    continue
                x = x_all[torch.as_tensor(arrays["index"][picks])].detach().cpu().numpy()
                adv = np.asarray(arrays["adv"][picks], dtype=np.float32)
                if adv.shape != x.shape:
                    self.notes.append(f"{r.name}: `adv` has shape {adv.shape[1:]} but the data {x.shape[1:]}; skipped.")
                    continue
                with torch.no_grad():
                    adv_pred = model(torch.as_tensor(adv)).argmax(1).tolist()
                rows.append({"run": r.name, "label": r.label, "image": bool(r.image), "samples": [
                    {"x": x[k], "adv": adv[k], "label": int(arrays["label"][i]) if "label" in arrays else "?",
                     "pred": int(arrays["pred"][i]) if "pred" in arrays else "?", "adv_pred": int(adv_pred[k]),
                     "radius": float(best[i])} for k, i in enumerate(picks)]})
            if not rows:
                continue
            d.h(2, f"{norm}, {split} points")
            # image and vector inputs cannot share one grid of panels: one figure for each kind present
            for image in (True, False):
                group = [row for row in rows if row["image"] == image]
                if not group:
                    continue
                if not image:
                    d.p("Inputs are not images: each panel shows the perturbation per coordinate as a bar chart.")
                fig, meta = plots.plot_gallery(group, norm=norm, image=image)
                both = len({row["image"] for row in rows}) == 2
                self.save(fig, f"gallery-{norm}-{split}" + ("-vectors" if both and not image else ""), meta,
                          f"{norm} adversarial examples on {split} points, one row per model.")
        for note in self.notes:
            d.p(note)
        self.notes.clear()

    def sanity_flags(self) -> None:
        d = self.doc
        d.h(1, "Sanity flags", "flags")
        for r in self.runs:
            for (norm, split), (arrays, info) in sorted(r.results.items()):
                for f in info.get("flags") or []:
                    if not isinstance(f, dict) or not f.get("count", 1):
                        continue
                    self.flags.append({"run": r.name, "norm": norm, "split": split, "name": str(f.get("name", "?")),
                                       "count": f.get("count"), "message": str(f.get("message", "")),
                                       "doc": f"docs/attacks.md#{f.get('name', '')}"})
                best = _radius(arrays)
                tol = lambda v: BRACKET_RTOL * (1.0 + np.abs(v))  # noqa: E731
                fired = {f.get("name") for f in info.get("flags") or [] if isinstance(f, dict)}
                for key in ("lower__ibp", "lower__crown-ibp", "lower__crown"):
                    if key in arrays and "radius-below-certified" not in fired:
                        low = np.asarray(arrays[key], float)
                        bad = int(np.sum(np.isfinite(best) & (best > 0) & np.isfinite(low) & (best < low - tol(low))))
                        if bad:
                            self.flags.append({"run": r.name, "norm": norm, "split": split,
                                               "name": "radius-below-certified", "count": bad,
                                               "message": f"({key[7:]}) " + REPORT_FLAGS["radius-below-certified"],
                                               "doc": "docs/report.md#radius-below-certified"})
                if "exact_radius" in arrays and "radius-below-exact" not in fired:
                    ex = np.asarray(arrays["exact_radius"], float)
                    st = np.asarray(arrays.get("exact_status", np.zeros(ex.shape)), int)
                    bad = int(np.sum((st == 0) & np.isfinite(best) & (best > 0) & np.isfinite(ex) & (best < ex - tol(ex))))
                    if bad:
                        self.flags.append({"run": r.name, "norm": norm, "split": split, "name": "radius-below-exact",
                                           "count": bad, "message": REPORT_FLAGS["radius-below-exact"],
                                           "doc": "docs/report.md#radius-below-exact"})
        if not self.flags:
            d.p("No sanity check fired" + (" (no attack results to check)." if not any(r.results for r in self.runs)
                                           else " on any run, norm or split."))
            return
        d.p("Every check that fired, with its stable name; each is explained in `docs/attacks.md` (attack "
            "flags) or `docs/report.md` (bracket checks done by the report).")
        d.table(["run", "norm", "split", "flag", "count", "explanation", "documented in"],
                [[self._tag(f["run"]), f["norm"], f["split"], f["name"], f["count"], f["message"], f["doc"]]
                 for f in self.flags])

    def provenance(self) -> None:
        d = self.doc
        d.h(1, "Provenance", "provenance")
        d.p("Each run: its short label (used in every table and figure), full name and folder, seed, device, "
            "library versions and training time. For a run whose width was found by the minimal-width search "
            "(`width=min`), the search's own time is given too: the search trains every width it tries, so it "
            "costs more than the final model's training.")
        rows, stages = [], []
        for r in self.runs:
            m = r.meta
            v = m.get("versions") or {}
            search = m.get("min_width_search") if isinstance(m.get("min_width_search"), dict) else None
            rows.append([r.tag, r.name, str(r.path), _get(m, "seed"), _device(m.get("device")),
                         f"torch {v.get('torch')}, advrobust {v.get('advrobust')}" if v else None,
                         _get(m, "wall_time_s"), search.get("wall_time_s") if search else None,
                         len(search.get("tried") or []) if search else None])
            stages.append([r.tag, "train", _command(_get(m, "command")), _get(m, "wall_time_s")])
            for (norm, split), (_, info) in sorted(r.results.items()):
                stages.append([r.tag, f"attack {norm}/{split}", _command(info.get("command")), info.get("wall_time_s")])
            for norm in NORMS:
                lip = _lipschitz_entry(r.lipschitz, norm)
                if lip is not None:
                    stages.append([r.tag, f"lipschitz {norm}", _command(lip.get("command")), lip.get("wall_time_s")])
        d.table(["run", "full name", "folder", "seed", "device", "versions", "training (s)",
                 "min-width search (s)", "widths tried"], rows)
        d.p("Commands and wall times recorded by each stage.")
        d.table(["run", "stage", "command", "wall time (s)"], stages)
        attack_rows = []
        for r in self.runs:
            for (norm, split), (_, info) in sorted(r.results.items()):
                attack_rows.append([r.tag, norm, split, info.get("n"), ", ".join(map(str, info.get("attacks") or [])),
                                    info.get("steps"), info.get("batch_size")])
        if attack_rows:
            d.table(["run", "norm", "split", "samples", "attacks", "steps", "batch size"], attack_rows)
        v = versions()
        d.p("Report made with " + ", ".join(f"{k} {v[k]}" for k in ("advrobust", "python", "numpy", "matplotlib")
                                             if v.get(k)) + ".")

    def missing_section(self) -> None:
        d = self.doc
        d.h(1, "Missing pieces", "missing")
        if not self.missing:
            d.p("Nothing missing: every run has attack results for every norm and split shown, and Lipschitz estimates.")
            return
        d.p("Parts of the report that are empty or partial, and the command that fills each:")
        d.items([f"missing: {m['what']}" + (f": `{m['command']}`" if m["command"] else "") for m in self.missing])


def build_report(run_dirs: Sequence[str | Path], out: str | Path, *, norms: Sequence[str] | None = None,
                 title: str | None = None, samples: int = 3, bootstrap: int = 200, seed: int = 0,
                 progress: bool = False) -> dict:
    """Write ``report.html``, ``report.md`` and the figures (PNG and PDF) for ``run_dirs`` into ``out``.

    Parameters
    ----------
    run_dirs : run directories, or folders searched for them (``runs.find_runs``).
    out : output folder (created).
    norms : ``'l1'|'l2'|'linf'`` names to show; default every norm with attack results (``l2`` if none).
    title : the report's title.
    samples : adversarial examples per model in the gallery.
    bootstrap, seed : resamples and seed of the power-law fits' intervals.
    progress : show a bar naming the section being built (once the report takes 2 s).

    Returns
    -------
    dict with ``html``, ``markdown`` (paths), ``figures`` (name -> metadata: ``curves``, ``runs``, ...),
    ``missing`` (``{"what", "command"}``), ``flags`` and ``runs``.
    """
    if samples < 0:
        raise UserError(f"--samples must be >= 0, got {samples}")
    if bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0, got {bootstrap}")
    chosen = [norm_name(parse_norm(n)) for n in norms] if norms else None
    runs = load_runs(run_dirs, norms=chosen)
    if chosen is None:
        found = {n for r in runs for (n, _) in r.results}
        chosen = [n for n in NORMS if n in found] or ["l2"]
    chosen = list(dict.fromkeys(chosen))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder; pick another path")
    out.mkdir(parents=True, exist_ok=True)
    title = title or f"advrobust report: {len(runs)} run{'s' if len(runs) != 1 else ''}"
    b = _Builder(runs, out, chosen, samples=samples, bootstrap=bootstrap, seed=seed)
    from ._progress import bar

    sections = [b.overview, b.comparison, b.robust_accuracy, b.distributions, b.scaling, b.attack_comparison,
                *([b.gallery] if samples else []), b.sanity_flags, b.provenance, b.missing_section]
    with bar(desc="report", total=len(sections), unit="section", enabled=progress) as steps:
        for section in sections:
            steps.set_description_str(f"report: {section.__name__.replace('_', ' ')}")
            section()
            steps.update()
    html_path = atomic_write_text(out / "report.html", render_html(b.doc, title=title, images=b.images))
    md_path = atomic_write_text(out / "report.md", render_markdown(b.doc, title=title))
    return {"out": str(out), "html": str(html_path), "markdown": str(md_path), "norms": chosen,
            "runs": [r.name for r in runs], "figures": b.figures, "missing": b.missing, "flags": b.flags}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argument_parser(prog="python -m advrobust.report",
                                 description="Build a self-contained HTML + Markdown report (with PNG/PDF figures) "
                                             "over run directories.")
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories, or folders holding them")
    ap.add_argument("--out", required=True, help="output folder for report.html, report.md and the figures")
    ap.add_argument("--norm", action="append", default=None,
                    help="norm to show: l1, l2 or linf; repeatable (default: every norm with attack results)")
    ap.add_argument("--title", default=None, help="report title")
    ap.add_argument("--samples", type=int, default=3, help="gallery samples per model (0: no gallery)")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the fits' intervals")
    ap.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    ap.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    res = build_report(args.run_dirs, args.out, norms=args.norm, title=args.title, samples=args.samples,
                       bootstrap=args.bootstrap, seed=args.seed, progress=not args.quiet)
    if args.json:
        print_json(res)
    else:
        print(f"wrote {res['html']} and {res['markdown']} ({len(res['figures'])} figures, "
              f"{len(res['missing'])} missing pieces, {len(res['flags'])} flags)")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(run_main(main))
