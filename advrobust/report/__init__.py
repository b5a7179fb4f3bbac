"""``python -m advrobust.report RUN_DIRS... --out DIR``: one self-contained report over runs.

Writes ``report.html`` (figures embedded as base64 PNG data URIs, inline CSS, no scripts, styles or
fonts fetched from anywhere: it reads offline), ``report.md`` with the same content and the PNG
figures beside it, and every figure also as PDF. Sections (see ``docs/report.md``):

comparison table, robust accuracy against epsilon, radius distributions, scaling with p (and n, d),
attack comparison, adversarial gallery, sanity flags, provenance, missing pieces.

Missing inputs (no attack results, no certified bounds, no Lipschitz estimates) never stop the
report: each missing piece is named with the command that would fill it.

The package: :mod:`.loading` reads the runs (each once, by :func:`advrobust.runs.load_results`) and
takes compare's rows for them; :mod:`.sections` and :mod:`.scaling` hold one function per section,
each returning its blocks, figures, missing pieces and flags as data; :mod:`.document` renders the
blocks to HTML and Markdown from templates. :func:`build_report` puts them together.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .._progress import bar
from ..errors import UserError
from ..runs import atomic_write_text
from .config import ReportConfig
from .document import Figure, Section, fmt_value, render_html, render_markdown, same_need, write_figures
from .loading import Label, RunData, load_runs, short_label, shown_norms, spread
from .scaling import scaling
from .sections import (BRACKET_RTOL, COMPARISON_CSV, FIGURE_MAX_RUNS, REPORT_FLAGS, SPLITS, Context,
                       attack_comparison, certified_lower, comparison, distributions, flag_commands, gallery,
                       missing_section, overview, provenance, robust_accuracy, sanity_flags)

#: the sections in the order they appear (the gallery only with ``samples`` > 0; missing pieces last)
SECTIONS = (overview, comparison, robust_accuracy, distributions, scaling, attack_comparison, gallery,
            sanity_flags, provenance)


def build_report(run_dirs: Sequence[str | Path], out: str | Path, config: ReportConfig | None = None, *,
                 norms: Sequence[str] | None = None, title: str | None = None, samples: int = 3,
                 bootstrap: int = 200, seed: int = 0, progress: bool = False) -> dict:
    """Write ``report.html``, ``report.md``, the figures (PNG and PDF) and ``comparison.csv`` for
    ``run_dirs`` into ``out``.

    Parameters
    ----------
    run_dirs : run directories, or folders searched for them (``runs.find_runs``).
    out : output folder (created).
    config : the options (:class:`ReportConfig`); or give them as keywords (``norms``, ``title``,
        ``samples``, ``bootstrap``, ``seed``, ``progress``, as in :class:`ReportConfig`), not both.

    Returns
    -------
    dict with ``html``, ``markdown`` (paths), ``figures`` (name -> metadata: ``curves``, ``runs``, ...),
    ``missing`` (``{"what", "command"}``), ``flags`` and ``runs``.
    """
    keywords = dict(norms=norms, title=title, samples=samples, bootstrap=bootstrap, seed=seed, progress=progress)
    if config is None:
        config = ReportConfig(**{**keywords, "norms": tuple(norms) if norms else None})
    elif keywords != dict(norms=None, title=None, samples=3, bootstrap=200, seed=0, progress=False):
        raise TypeError("build_report takes a ReportConfig or keyword options, not both")
    runs = load_runs(run_dirs, norms=config.norms)
    chosen = shown_norms(runs, config.norms)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder; pick another path")
    out.mkdir(parents=True, exist_ok=True)
    title = config.title or f"advrobust report: {len(runs)} run{'s' if len(runs) != 1 else ''}"
    ctx = Context(runs=runs, norms=chosen, rows=[r.row for r in runs], config=config)
    sections = [s for s in SECTIONS if s is not gallery or config.samples]
    done: list[Section] = []
    missing: list[dict] = []
    with bar(desc="report", total=len(sections) + 1, unit="section", enabled=config.progress) as steps:
        for section in sections:
            steps.set_description_str(f"report: {section.__name__.replace('_', ' ')}")
            sec = section(ctx)
            write_figures(out, sec.figures)
            for name, text in sec.files.items():
                atomic_write_text(out / name, text)
            for m in sec.missing:
                if not any(same_need(seen, m["what"], m["command"]) for seen in missing):
                    missing.append(m)
            done.append(sec)
            steps.update()
        steps.set_description_str("report: missing section")
        done.append(missing_section(missing))
        steps.update()
    blocks = [b for sec in done for b in sec.blocks]
    figures = [f for sec in done for f in sec.figures]
    html_path = atomic_write_text(out / "report.html",
                                  render_html(blocks, title=title, images={f.name: f.png for f in figures}))
    md_path = atomic_write_text(out / "report.md", render_markdown(blocks, title=title))
    return {"out": str(out), "html": str(html_path), "markdown": str(md_path), "norms": chosen,
            "runs": [r.name for r in runs], "figures": {f.name: f.meta for f in figures}, "missing": missing,
            "flags": [f for sec in done for f in sec.flags]}


__all__ = ["BRACKET_RTOL", "COMPARISON_CSV", "FIGURE_MAX_RUNS", "Figure", "Label", "REPORT_FLAGS", "ReportConfig",
           "RunData", "SECTIONS", "SPLITS", "Section", "build_report", "certified_lower", "flag_commands", "fmt_value",
           "load_runs", "short_label", "shown_norms", "spread"]
