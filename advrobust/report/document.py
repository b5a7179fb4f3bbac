"""The report as a document: a list of blocks (headings, paragraphs, lists, tables, figures, code),
rendered to HTML and to Markdown from one set of templates per format, so both hold the same content.

Templates are Python format strings, one per kind of block, not jinja2: the blocks carry inline
markup (`code`, [links](target), numeric cells right-aligned) that needs Python either way, and
the HTML escaping is :func:`html.escape`'s (jinja2's escapes quotes differently, which would change
every report byte for byte). The page skeleton is a :class:`string.Template`.
"""
from __future__ import annotations

import base64
import html
import math
import re
import struct
from dataclasses import dataclass, field
from string import Template
from typing import Any, Sequence

import numpy as np

from .. import plots
from ..runs import atomic_write_bytes
from .loading import Label

#: CSS pixels per inch of a figure's printed size in the HTML (a 7 in figure is 910 px wide)
CSS_PX_PER_INCH = 130


def fmt_value(v: Any, digits: int = 3) -> str:
    """A table cell: ``–`` for a missing value (None, NaN), ``∞``, integers as such, else ``digits``
    significant digits (scientific notation outside [1e-3, 1e5))."""
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


@dataclass
class Figure:
    """A drawn figure: PNG and PDF bytes, what it shows (``meta``, from :mod:`advrobust.plots`)."""

    name: str
    png: bytes
    pdf: bytes
    meta: dict
    caption: str


@dataclass
class Section:
    """What one section function returns: its blocks, its figures, the missing pieces it found
    (``{"what", "command"}``), the sanity flags that fired, and files to write beside the report."""

    blocks: list[tuple] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)
    flags: list[dict] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def h(self, level: int, text: str, anchor: str | None = None) -> None:
        self.blocks.append(("h", level, text, anchor))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("list", list(items)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", [str(h) for h in headers],
                            [[c if isinstance(c, Label) else fmt_value(c) for c in r] for r in rows]))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def need(self, what: str, command: str | None) -> None:
        """Record a missing piece; one entry per command (the first description wins)."""
        if not any(same_need(m, what, command) for m in self.missing):
            self.missing.append({"what": what, "command": command})

    def figure(self, fig, name: str, meta: dict, caption: str) -> None:
        """Render ``fig`` (closing it) as PNG and PDF, with its layout check in ``meta``, and place it."""
        try:
            meta = dict(meta, **plots.layout_problems(fig))
            png = plots.figure_bytes(fig, "png")
            pdf = plots.figure_bytes(fig, "pdf")
        finally:
            plots.close(fig)
        self.figures.append(Figure(name, png, pdf, dict(meta, png=f"{name}.png", pdf=f"{name}.pdf"), caption))
        self.blocks.append(("fig", name, caption))


def same_need(m: dict, what: str, command: str | None) -> bool:
    """Whether missing piece ``m`` already covers (``what``, ``command``): the same command, or the
    same description where there is no command."""
    return (command is not None and m["command"] == command) or (command is None and m["what"] == what)


def write_figures(out, figures: Sequence[Figure]) -> None:
    for f in figures:
        atomic_write_bytes(out / f"{f.name}.png", f.png)
        atomic_write_bytes(out / f"{f.name}.pdf", f.pdf)


# --------------------------------------------------------------------------- inline markup
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
        return HTML["run_cell"].format(title=html.escape(c.full, quote=True), text=html.escape(c))
    return HTML["num_cell" if _NUMERIC.fullmatch(c) else "cell"].format(text=_html_inline(c))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------- templates
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

#: the HTML page; ``$body`` is the blocks, one element a line
HTML_PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title><style>$css</style></head><body>
<h1>$title</h1>
$body
</body></html>
""")

#: one HTML template per kind of block (and of table cell); values are escaped before they go in
HTML = {
    "h": "<h{level}{anchor}>{text}</h{level}>",
    "anchor": ' id="{anchor}"',
    "p": "<p>{text}</p>",
    "list_open": "<ul>",
    "missing_open": '<ul class="missing">',
    "item": "<li>{text}</li>",
    "list_close": "</ul>",
    "table_open": "<table><thead><tr>{headers}</tr></thead><tbody>",
    "th": "<th>{text}</th>",
    "tr": "<tr>{cells}</tr>",
    "table_close": "</tbody></table>",
    "run_cell": '<td class="run" title="{title}">{text}</td>',
    "num_cell": '<td class="num">{text}</td>',
    "cell": "<td>{text}</td>",
    "figs_open": '<div class="figs">',
    "figs_close": "</div>",
    "fig": ('<figure style="max-width:{width}px"><img src="data:image/png;base64,{data}" width="{width}" '
            'height="{height}" alt="{alt}"><figcaption>{caption} (also <code>{name}.pdf</code>)</figcaption></figure>'),
    "pre": "<pre>{text}</pre>",
}

#: the Markdown page, and one template per kind of block (each followed by a blank line)
MARKDOWN_PAGE = Template("# $title\n\n$body")
MARKDOWN = {
    "h": "{hashes} {text}",
    "p": "{text}",
    "item": "- {text}",
    "table_head": "| {headers} |\n|{rule}|",
    "tr": "| {cells} |",
    "fig": "![{alt}]({name}.png)\n\n*{caption}* (PDF: [{name}.pdf]({name}.pdf))",
    "pre": "```\n{text}\n```",
}


def _html_block(b: tuple, images: dict[str, bytes]) -> list[str]:
    kind = b[0]
    if kind == "h":
        _, level, text, anchor = b
        aid = HTML["anchor"].format(anchor=html.escape(anchor)) if anchor else ""
        return [HTML["h"].format(level=level + 1, anchor=aid, text=html.escape(text))]
    if kind == "p":
        return [HTML["p"].format(text=_html_inline(b[1]))]
    if kind == "list":
        opener = HTML["missing_open"] if b[1] and b[1][0].startswith("missing") else HTML["list_open"]
        return [opener, *(HTML["item"].format(text=_html_inline(t)) for t in b[1]), HTML["list_close"]]
    if kind == "table":
        _, headers, rows = b
        head = HTML["table_open"].format(headers="".join(HTML["th"].format(text=_html_inline(h)) for h in headers))
        return [head, *(HTML["tr"].format(cells="".join(_html_cell(c) for c in r)) for r in rows),
                HTML["table_close"]]
    if kind == "fig":
        _, name, caption = b
        png = images[name]
        # shown at its printed size (inches from the PNG's pixels and dpi) x CSS_PX_PER_INCH
        w, h = struct.unpack(">II", png[16:24])
        scale = CSS_PX_PER_INCH / plots.STYLE["savefig.dpi"]
        return [HTML["fig"].format(width=round(w * scale), height=round(h * scale), name=html.escape(name),
                                   data=base64.b64encode(png).decode("ascii"), alt=html.escape(caption, quote=True),
                                   caption=_html_inline(caption))]
    if kind == "pre":
        return [HTML["pre"].format(text=html.escape(b[1]))]
    raise ValueError(f"unknown block kind {kind!r}")


def render_html(blocks: Sequence[tuple], *, title: str, images: dict[str, bytes]) -> str:
    """Self-contained HTML: inline CSS, figures as ``data:image/png;base64`` URIs, no scripts.
    Consecutive figures share one flex row (``div.figs``)."""
    body: list[str] = []
    in_figs = False
    for b in blocks:
        if (b[0] == "fig") != in_figs:
            body.append(HTML["figs_open"] if not in_figs else HTML["figs_close"])
            in_figs = not in_figs
        body += _html_block(b, images)
    if in_figs:
        body.append(HTML["figs_close"])
    return HTML_PAGE.substitute(title=html.escape(title), css=CSS, body="\n".join(body))


def _markdown_block(b: tuple) -> str:
    kind = b[0]
    if kind == "h":
        return MARKDOWN["h"].format(hashes="#" * (b[1] + 1), text=b[2])
    if kind == "p":
        return MARKDOWN["p"].format(text=b[1])
    if kind == "list":
        return "\n".join(MARKDOWN["item"].format(text=t) for t in b[1])
    if kind == "table":
        _, headers, rows = b
        lines = [MARKDOWN["table_head"].format(headers=" | ".join(_md_cell(h) for h in headers),
                                               rule="|".join("---" for _ in headers))]
        lines += [MARKDOWN["tr"].format(cells=" | ".join(_md_cell(c) for c in r)) for r in rows]
        return "\n".join(lines)
    if kind == "fig":
        _, name, caption = b
        return MARKDOWN["fig"].format(alt=_md_cell(caption), name=name, caption=caption)
    if kind == "pre":
        return MARKDOWN["pre"].format(text=b[1])
    raise ValueError(f"unknown block kind {kind!r}")


def render_markdown(blocks: Sequence[tuple], *, title: str) -> str:
    """Markdown with the same blocks; figures link ``<name>.png`` beside the file."""
    body = "".join(_markdown_block(b) + "\n\n" for b in blocks)
    return (MARKDOWN_PAGE.substitute(title=title, body=body)).rstrip() + "\n"
