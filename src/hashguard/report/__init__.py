"""Turn a study's results card (``results.json``) into ``report.md`` and a self-contained ``report.html``.

>>> from hashguard.report import write_report
>>> paths = write_report(card, run_dir)   # {"md": run_dir/"report.md", "html": run_dir/"report.html", ...}

The Markdown references PNG figures written to ``run_dir/figures/``; the HTML embeds the same figures as
data: URIs and needs nothing else (no network, no script), so it opens from disk or as an e-mail attachment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hashguard.io_utils import atomic_write, atomic_write_text
from hashguard.report.build import SECTIONS, build_document
from hashguard.report.document import Document, render_html, render_markdown

__all__ = ["write_report", "build_document", "render_html", "render_markdown", "Document", "SECTIONS", "FIGURE_DIR"]

#: Folder, relative to the run directory, of the PNG figures the Markdown report references.
FIGURE_DIR = "figures"
_KNOWN_FIGURES = ("defenses.png", "pr-curves.png", "precision-at-n.png", "eps-sweep.png", "retrieval-grid.png")


def _write_bytes(path: Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    atomic_write(path, write)


def write_report(card: Mapping[str, Any], run_dir: Path) -> dict[str, Path]:
    """Write ``run_dir/report.md``, ``run_dir/report.html`` and the figures; return their paths.

    The returned dict maps ``"md"`` and ``"html"`` to the two reports and ``"figure:<name>"`` to each PNG
    under ``run_dir/figures/``. Every file is written atomically. Sections whose data the card lacks (no
    defenses, no targeted attacks, no ε sweep, no retrieval grid) are left out.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = build_document(card, run_dir)
    paths: dict[str, Path] = {}
    figure_dir = run_dir / FIGURE_DIR
    written = set()
    for figure in doc.figures:
        path = figure_dir / figure.name
        _write_bytes(path, figure.png)
        paths[f"figure:{path.stem}"] = path
        written.add(figure.name)
    for stale in _KNOWN_FIGURES:  # figures of an earlier, fuller report would mislead
        if stale not in written and (figure_dir / stale).is_file():
            (figure_dir / stale).unlink()
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    atomic_write_text(md_path, render_markdown(doc, FIGURE_DIR))
    atomic_write_text(html_path, render_html(doc))
    return {"md": md_path, "html": html_path, **paths}
