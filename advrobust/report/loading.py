"""The report's view of its runs: each run read once by :func:`advrobust.runs.load_results`, with
compare's row beside it, ordered (data set, then p) and given short unique labels."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import compare
from ..compare import first_value
from ..norms import NORMS
from ..runs import RunResults, find_runs, load_results



def num(v: Any) -> float:
    """``float(v)``, NaN where it is not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def dataset_name(meta: dict) -> Any:
    """The data set's name: ``meta["dataset"]`` or ``meta["spec"]["data"]["name"]``."""
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
    return first_value(meta, "dataset") or first_value(data, "name")


class Label(str):
    """A short table cell (a run's label) that carries a longer text shown as its HTML tooltip."""

    def __new__(cls, text: str, full: str) -> "Label":
        obj = super().__new__(cls, text)
        obj.full = full
        return obj


@dataclass(eq=False)
class RunData:
    """One run as the report sees it: what :func:`advrobust.runs.load_results` read, its name, its
    place in the report's order (``index``, fixing its colour), its short label and compare's row."""

    loaded: RunResults
    name: str
    index: int = 0
    label: str = ""  # short: data set, family, width (or p); unique among the report's runs
    row: dict = field(default_factory=dict)  # advrobust.compare's row for this run

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def meta(self) -> dict:
        return self.loaded.meta

    @property
    def results(self) -> dict:
        """``(norm, split) -> (arrays, summary)``."""
        return self.loaded.results

    @property
    def lipschitz(self) -> dict | None:
        return self.loaded.lipschitz

    @property
    def tag(self) -> Label:
        """The run's short label as a table cell whose tooltip (HTML) is its full name."""
        return Label(self.label or self.name, self.name)

    @property
    def params(self) -> float:
        return num(first_value(self.meta, "params", "p", "param_count"))

    @property
    def n(self) -> float:
        return num(first_value(self.meta, "n", "n_train"))

    @property
    def d(self) -> float:
        return num(first_value(self.meta, "d", "dim"))

    @property
    def input_scale(self) -> float:
        """Typical L2 norm s of a centred input (compare's ``input_scale``); NaN if unknown. Unit-norm
        values: Lipschitz * s, radius / s."""
        v = num(self.row.get("input_scale"))
        return v if math.isfinite(v) and v > 0 else math.nan

    @property
    def d_intrinsic(self) -> float:
        """The dimension of the run's data distribution (compare's ``d_intrinsic``); NaN if unknown."""
        return num(self.row.get("d_intrinsic"))

    @property
    def interpolated(self) -> bool:
        """Memorises its training set: compare's ``interpolated`` (train accuracy 1), the definition
        law uses for the interpolation threshold."""
        return bool(self.row.get("interpolated"))

    @property
    def input_shape(self) -> list:
        spec = self.meta.get("spec", {}) if isinstance(self.meta.get("spec"), dict) else {}
        model = spec.get("model", {}) if isinstance(spec.get("model"), dict) else {}
        return list(model.get("input_shape") or self.meta.get("input_shape") or [])

    @property
    def image(self) -> bool:
        return len(self.input_shape) == 3


def short_label(meta: dict, name: str) -> str:
    """``'digits mlp w6'``: data set, model family and width (``p=…`` for a family without one);
    ``(min)`` marks a width found by the minimal-width search. The run's name where the record lacks them."""
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    model = spec.get("model") if isinstance(spec.get("model"), dict) else {}
    data, family = dataset_name(meta), first_value(model, "family") or first_value(meta, "model")
    if data is None or family is None:
        return name
    width = first_value(model, "width")
    if width is not None:
        size = f"w{width}" + (" (min)" if "min_width_search" in meta else "")
    else:
        p = num(first_value(meta, "params"))
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
    if first_value(meta, "seed") is not None:
        out["seed"] = f"s{first_value(meta, 'seed')}"
    return out


def assign_labels(runs: list[RunData]) -> None:
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


def _run_names(paths: Sequence[Path]) -> list[str]:
    """Directory names, or paths relative to the common parent where names repeat."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    resolved = [p.resolve() for p in paths]
    common = Path(*[parts[0] for parts in zip(*[r.parts for r in resolved]) if len(set(parts)) == 1])
    return [str(r.relative_to(common)) if r != common else r.name for r in resolved]


def shown_norms(runs: Sequence[RunData], norms: Sequence[str] | None) -> list[str]:
    """The norms a report shows: ``norms`` (names) if given, else every norm with attack results in
    ``runs``, else l2."""
    if norms:
        return list(norms)
    found = {n for r in runs for (n, _) in r.results}
    return [n for n in NORMS if n in found] or ["l2"]


def load_runs(run_dirs: Sequence[str | Path], *, norms: Sequence[str] | None = None) -> list[RunData]:
    """Each run found in ``run_dirs`` (once, however often it is named) read by
    :func:`advrobust.runs.load_results` (attack results of ``norms``, names, default all), with
    compare's row for the norms shown (:func:`shown_norms`); nothing is recomputed, corrupt files
    are a :class:`UserError`. Runs come back ordered by data set, then parameter count, then name,
    and labelled."""
    paths = find_runs(list(run_dirs))
    seen, unique = set(), []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    kw = {} if norms is None else {"norms": norms}
    out = [RunData(loaded=load_results(p, **kw), name=name) for p, name in zip(unique, _run_names(unique))]
    rows = compare.rows_from_results([r.loaded for r in out], norms=shown_norms(out, norms))
    for r, row in zip(out, rows):
        r.row = row
    # smallest model first (the order of a scaling study); the index fixes each run's colour
    out.sort(key=lambda r: (str(dataset_name(r.meta) or ""), r.params if math.isfinite(r.params) else math.inf,
                            r.name))
    for i, r in enumerate(out):
        r.index = i
    assign_labels(out)
    return out


def spread(pool: list, k: int) -> list:
    """``k`` of ``pool`` (ordered by data set, then p): the first and last run of every data set (its
    smallest and largest model), then the rest evenly over the remaining positions, in pool order."""
    if len(pool) <= k:
        return list(pool)
    keys = [str(dataset_name(r.meta)) for r in pool]
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
