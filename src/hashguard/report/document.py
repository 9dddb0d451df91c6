"""A tiny document model and its two renderers (Markdown and self-contained HTML).

The report is built once as a list of blocks; both files are rendered from the same blocks, so they always
hold the same sections and the same formatted numbers. Every string that reaches the HTML is escaped.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Strong:
    """Bold inline text."""

    text: str


Inline = str | Strong


@dataclass(frozen=True)
class Heading:
    """A section heading; level-2 headings make the table of contents."""

    text: str
    anchor: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Running text made of plain and bold pieces."""

    parts: tuple[Inline, ...]
    muted: bool = False


@dataclass(frozen=True)
class Headline:
    """The key finding, shown prominently."""

    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Stat:
    """One big number in the summary cards."""

    label: str
    value: str
    note: str = ""
    tone: str = ""  # "", "bad" or "good"


@dataclass(frozen=True)
class Stats:
    """A row of summary cards."""

    items: tuple[Stat, ...]


@dataclass(frozen=True)
class Table:
    """A table; cells may be bold. ``numeric`` marks right-aligned columns."""

    header: tuple[str, ...]
    rows: tuple[tuple[Inline, ...], ...]
    numeric: tuple[bool, ...] = ()
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    """A PNG figure: a file under ``figures/`` for the Markdown, a data: URI in the HTML."""

    name: str
    png: bytes
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Code:
    """Preformatted text, collapsible in the HTML."""

    text: str
    summary: str
    language: str = ""


Block = Heading | Paragraph | Headline | Stats | Table | Figure | Code


@dataclass
class Document:
    """A report: a title, a subtitle and blocks."""

    title: str
    subtitle: str = ""
    blocks: list[Block] = field(default_factory=list)
    footer: str = ""

    def add(self, *blocks: Block) -> None:
        """Append blocks."""
        self.blocks.extend(blocks)

    @property
    def figures(self) -> list[Figure]:
        """All figures, in document order."""
        return [b for b in self.blocks if isinstance(b, Figure)]


# --------------------------------------------------------------------------------------------- Markdown


_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|])")
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def md_escape(text: str) -> str:
    """Escape Markdown syntax in ``text`` (intra-word underscores, as in ``small_cnn``, stay readable)."""
    text = _MD_SPECIAL.sub(r"\\\1", str(text))
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    return re.sub(r"\s+", " ", text)


def _md_inline(parts: Sequence[Inline]) -> str:
    out = []
    for part in parts:
        if isinstance(part, Strong):
            out.append(f"**{md_escape(part.text)}**" if part.text.strip() else "")
        else:
            out.append(md_escape(part))
    return "".join(out)


def _md_table(table: Table) -> str:
    numeric = list(table.numeric) + [False] * (len(table.header) - len(table.numeric))
    lines = [
        "| " + " | ".join(md_escape(h) for h in table.header) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    for row in table.rows:
        cells = [_md_inline([c]) for c in row] + [""] * (len(table.header) - len(row))
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    if table.caption:
        text += "\n\n" + f"*{md_escape(table.caption)}*"
    return text


def render_markdown(doc: Document, figure_dir: str = "figures") -> str:
    """The document as GitHub-flavoured Markdown; figures are referenced as ``figure_dir/<name>``."""
    chunks = [f"# {md_escape(doc.title)}"]
    if doc.subtitle:
        chunks.append(f"*{md_escape(doc.subtitle)}*")
    toc = [b for b in doc.blocks if isinstance(b, Heading) and b.level == 2]
    if toc:
        chunks.append("\n".join(f"- [{md_escape(h.text)}](#{h.anchor})" for h in toc))
    for block in doc.blocks:
        if isinstance(block, Heading):
            chunks.append(f'<a id="{html.escape(block.anchor)}"></a>\n\n{"#" * block.level} {md_escape(block.text)}')
        elif isinstance(block, Headline):
            chunks.append("> " + _md_inline(block.parts))
        elif isinstance(block, Paragraph):
            text = _md_inline(block.parts)
            chunks.append(f"*{text}*" if block.muted and "*" not in text else text)
        elif isinstance(block, Stats):
            lines = []
            for stat in block.items:
                note = f" ({md_escape(stat.note)})" if stat.note else ""
                lines.append(f"- {md_escape(stat.label)}: **{md_escape(stat.value)}**{note}")
            chunks.append("\n".join(lines))
        elif isinstance(block, Table):
            chunks.append(_md_table(block))
        elif isinstance(block, Figure):
            text = f"![{md_escape(block.alt)}]({figure_dir}/{block.name})"
            if block.caption:
                text += f"\n\n*{md_escape(block.caption)}*"
            chunks.append(text)
        elif isinstance(block, Code):
            fence = "````" if "```" in block.text else "```"
            chunks.append(f"**{md_escape(block.summary)}**\n\n{fence}{block.language}\n{block.text.rstrip()}\n{fence}")
    if doc.footer:
        chunks.append("---\n\n" + f"*{md_escape(doc.footer)}*")
    return "\n\n".join(chunks) + "\n"


# ------------------------------------------------------------------------------------------------- HTML

_CSS = """
:root { --fg: #1f2933; --muted: #616e7c; --line: #d9e2ec; --bg: #ffffff; --soft: #f5f7fa; --accent: #2f6fde;
        --bad: #c62828; --good: #2e7d32; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--soft); color: var(--fg);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: var(--bg); min-height: 100vh; }
h1 { font-size: 28px; margin: 8px 0 4px; }
h2 { font-size: 21px; margin: 36px 0 12px; padding-top: 12px; border-top: 1px solid var(--line); }
h3 { font-size: 17px; margin: 24px 0 8px; }
.subtitle { color: var(--muted); margin: 0 0 16px; }
nav.toc { display: flex; flex-wrap: wrap; gap: 6px 8px; margin: 12px 0 8px; }
nav.toc a { color: var(--accent); text-decoration: none; padding: 3px 10px; border: 1px solid var(--line);
            border-radius: 14px; font-size: 13px; }
nav.toc a:hover { background: var(--soft); }
.headline { font-size: 19px; line-height: 1.45; margin: 18px 0; padding: 14px 18px; background: #eef4ff;
            border-left: 5px solid var(--accent); border-radius: 4px; }
.stats { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin: 16px 0; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; background: var(--bg); }
.stat .label { color: var(--muted); font-size: 13px; }
.stat .value { font-size: 28px; font-weight: 650; font-variant-numeric: tabular-nums; }
.stat .note { color: var(--muted); font-size: 12px; }
.stat.bad .value { color: var(--bad); }
.stat.good .value { color: var(--good); }
.muted { color: var(--muted); font-size: 14px; }
.table-wrap { overflow-x: auto; margin: 8px 0 4px; }
table { border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 11px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #eef4ff; }
caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: 13px; padding-top: 6px; }
figure { margin: 12px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
details { margin: 10px 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; }
summary { cursor: pointer; font-weight: 600; }
pre { overflow-x: auto; background: var(--soft); padding: 10px; border-radius: 4px; font-size: 12.5px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line);
         padding-top: 10px; }
"""


def h(text: str) -> str:
    """HTML-escape ``text``, quotes included."""
    return html.escape(str(text), quote=True)


def _html_inline(parts: Sequence[Inline]) -> str:
    return "".join(f"<strong>{h(p.text)}</strong>" if isinstance(p, Strong) else h(p) for p in parts)


def _html_table(table: Table) -> str:
    numeric = list(table.numeric) + [False] * (len(table.header) - len(table.numeric))

    def cls(i: int) -> str:
        return ' class="num"' if i < len(numeric) and numeric[i] else ""

    head = "".join(f"<th{cls(i)}>{h(text)}</th>" for i, text in enumerate(table.header))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{_html_inline([c])}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    caption = f"<caption>{h(table.caption)}</caption>" if table.caption else ""
    return f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def data_uri(png: bytes) -> str:
    """``png`` as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(doc: Document) -> str:
    """The document as one self-contained HTML page: inline CSS, images as data: URIs, no script."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{h(doc.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{h(doc.title)}</h1>",
    ]
    if doc.subtitle:
        out.append(f'<p class="subtitle">{h(doc.subtitle)}</p>')
    toc = [b for b in doc.blocks if isinstance(b, Heading) and b.level == 2]
    if toc:
        out.append('<nav class="toc">' + "".join(f'<a href="#{h(t.anchor)}">{h(t.text)}</a>' for t in toc) + "</nav>")
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 2), 6)
            out.append(f'<h{level} id="{h(block.anchor)}">{h(block.text)}</h{level}>')
        elif isinstance(block, Headline):
            out.append(f'<p class="headline">{_html_inline(block.parts)}</p>')
        elif isinstance(block, Paragraph):
            muted = ' class="muted"' if block.muted else ""
            out.append(f"<p{muted}>{_html_inline(block.parts)}</p>")
        elif isinstance(block, Stats):
            cards = []
            for stat in block.items:
                tone = f" {h(stat.tone)}" if stat.tone else ""
                note = f'<div class="note">{h(stat.note)}</div>' if stat.note else ""
                cards.append(
                    f'<div class="stat{tone}"><div class="label">{h(stat.label)}</div>'
                    f'<div class="value">{h(stat.value)}</div>{note}</div>'
                )
            out.append('<div class="stats">' + "".join(cards) + "</div>")
        elif isinstance(block, Table):
            out.append(_html_table(block))
        elif isinstance(block, Figure):
            caption = f"<figcaption>{h(block.caption)}</figcaption>" if block.caption else ""
            out.append(f'<figure><img src="{data_uri(block.png)}" alt="{h(block.alt)}">{caption}</figure>')
        elif isinstance(block, Code):
            out.append(f"<details><summary>{h(block.summary)}</summary><pre>{h(block.text)}</pre></details>")
    if doc.footer:
        out.append(f"<footer>{h(doc.footer)}</footer>")
    out += ["</main>", "</body>", "</html>"]
    return "\n".join(out) + "\n"
