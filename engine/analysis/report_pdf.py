"""The PDF report (matplotlib's PdfPages; Agg figures; fonts embedded as TrueType so the text can
be searched and copied). Written atomically.

Pages: a title page (track, engine/model, date), a summary page, then for each stem its tables
(the sections of the Markdown report) and its six figures, and one comprehensive comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_pdf import PdfPages

from engine.analysis.document import (
    Block,
    Bullets,
    Cell,
    Paragraph,
    Table,
    stem_blocks,
    summary_blocks,
    title_lines,
)
from engine.analysis.figures import (
    GRADE_COLORS,
    PAGE_SIZE_IN,
    STEM_FIGURES,
    comprehensive_figure,
    new_figure,
)
from engine.analysis.report import AnalysisReport
from engine.analysis.statuses import GLYPH
from engine.files import atomic_path

ProgressFn = Callable[[float, str], None]

_RC: dict[str, Any] = {"pdf.fonttype": 42, "font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10}
_MARGIN_IN = 0.7
_LINE_IN = 0.19
_ROW_IN = 0.21
_CHAR_IN = 0.068  # average width of a 8.5 pt DejaVu Sans character


class _FlowPage:
    """Writes blocks of text and tables top to bottom, starting new pages as needed."""

    def __init__(self, pdf: PdfPages, header: str) -> None:
        self.pdf = pdf
        self.header = header
        self.fig: Any = None
        self.y = 0.0
        self.pages = 0

    def _new_page(self) -> None:
        self.flush()
        self.fig = new_figure("", PAGE_SIZE_IN)
        self.fig.suptitle("")
        w, h = PAGE_SIZE_IN
        self.fig.text(_MARGIN_IN / w, 1 - 0.45 / h, self.header + (" (continued)" if self.pages else ""),
                      fontsize=9, color="#666666")
        self.y = h - _MARGIN_IN - 0.25
        self.pages += 1

    def flush(self) -> None:
        if self.fig is not None:
            self.pdf.savefig(self.fig)
            self.fig = None

    def _need(self, height_in: float) -> None:
        if self.fig is None or self.y - height_in < _MARGIN_IN:
            self._new_page()

    def _text(self, x_in: float, text: str, **kw: Any) -> None:
        w, h = PAGE_SIZE_IN
        self.fig.text(x_in / w, self.y / h, text, va="top", **kw)

    def heading(self, text: str, level: int) -> None:
        size = {1: 18, 2: 15, 3: 11.5, 4: 10.5}.get(level, 10)
        self._need(0.45 + 3 * _ROW_IN)
        self.y -= 0.12 if level > 2 else 0.05
        self._text(_MARGIN_IN, text, fontsize=size, fontweight="bold")
        self.y -= size / 72.0 + 0.1

    def paragraph(self, text: str, bold: bool = False, color: str = "#222222") -> None:
        width_chars = int((PAGE_SIZE_IN[0] - 2 * _MARGIN_IN) / _CHAR_IN)
        for line in _wrap(text, width_chars):
            self._need(_LINE_IN)
            self._text(_MARGIN_IN, line, fontsize=8.5, fontweight="bold" if bold else "normal", color=color)
            self.y -= _LINE_IN
        self.y -= 0.06

    def bullets(self, part: Bullets) -> None:
        # Two columns: bold labels, then values (coloured by their verdict), wrapped.
        indent = 0.0 if part.style == "fields" else 0.18
        label_in = min(max(len(lbl) for lbl, _ in part.items) * _CHAR_IN * 1.05 + 0.25, 3.0)
        value_chars = int((PAGE_SIZE_IN[0] - 2 * _MARGIN_IN - indent - label_in) / _CHAR_IN)
        total = sum(len(_wrap(_cell_text(c), value_chars)) for _, c in part.items)
        if total <= 12:  # keep short lists on one page
            self._need(_LINE_IN * total)
        for label, cell in part.items:
            lines = _wrap(_cell_text(cell), value_chars)
            color = GRADE_COLORS.get(cell.grade or "", "#222222") if cell.grade else "#222222"
            self._need(_LINE_IN * min(len(lines), 3))
            if indent:
                self._text(_MARGIN_IN, "•", fontsize=8.5)
            self._text(_MARGIN_IN + indent, label, fontsize=8.5, fontweight="bold")
            for line in lines:
                self._need(_LINE_IN)
                self._text(_MARGIN_IN + indent + label_in, line, fontsize=8.5, color=color)
                self.y -= _LINE_IN
        self.y -= 0.06

    def table(self, table: Table) -> None:
        avail = PAGE_SIZE_IN[0] - 2 * _MARGIN_IN
        texts = [[_cell_text(c) for c in row] for row in table.rows]
        widths = [max([len(h)] + [len(r[i]) for r in texts]) + 2 for i, h in enumerate(table.headers)]
        scale = avail / max(sum(widths) * _CHAR_IN, 1e-6)
        col_in = [w * _CHAR_IN * min(scale, 1.6) for w in widths]
        font = 8.5 if scale >= 1 else max(6.0, 8.5 * scale)
        self._need(_ROW_IN * min(len(texts) + 1, 6))
        self._row(table.headers, [None] * len(table.headers), col_in, font, header=True)
        for row, cells in zip(texts, table.rows, strict=True):
            self._need(_ROW_IN)
            self._row(row, [c.grade for c in cells], col_in, font)
        self.y -= 0.1

    def _row(self, values: list[str], grades: list[str | None], col_in: list[float], font: float,
             header: bool = False) -> None:
        w, h = PAGE_SIZE_IN
        x = _MARGIN_IN
        if header:
            self.fig.patches.append(matplotlib.patches.Rectangle(
                (_MARGIN_IN / w, (self.y - _ROW_IN + 0.03) / h), sum(col_in) / w, _ROW_IN / h,
                transform=self.fig.transFigure, color="#e8edf5", zorder=0))
        for v, g, cw in zip(values, grades, col_in, strict=True):
            color = GRADE_COLORS.get(g or "", "#222222") if g else "#222222"
            self._text(x + 0.04, v, fontsize=font, color=color, fontweight="bold" if header else "normal")
            x += cw
        self.y -= _ROW_IN
        if header:
            self.fig.lines.append(matplotlib.lines.Line2D(
                [_MARGIN_IN / w, (_MARGIN_IN + sum(col_in)) / w], [(self.y + 0.02) / h] * 2,
                transform=self.fig.transFigure, color="#888888", lw=0.6))

    def block(self, b: Block) -> None:
        self.heading(b.title, b.level)
        for part in b.parts:
            if isinstance(part, Table):
                self.table(part)
            elif isinstance(part, Bullets):
                self.bullets(part)
            elif isinstance(part, Paragraph):
                if part.strong:
                    self.paragraph(part.text + ":", bold=True)
                else:
                    self.paragraph(part.text, color="#444444" if part.text.startswith("Note") else "#222222")


def _cell_text(c: Cell) -> str:
    glyph = GLYPH.get(c.grade or "", "") if c.grade else ""
    body = f"{glyph} {c.text}".strip() if glyph else c.text
    return f"{c.prefix} {body}" if c.prefix else body


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=max(width, 20)) or [""]


def _title_page(pdf: PdfPages, report: AnalysisReport) -> None:
    fig = new_figure("", PAGE_SIZE_IN)
    fig.suptitle("")
    fig.text(0.5, 0.78, "Audio Separation Analysis Report", ha="center", fontsize=22, fontweight="bold")
    y = 0.68
    for label, value in title_lines(report):
        fig.text(0.25, y, f"{label}:", fontsize=12, fontweight="bold", ha="left")
        fig.text(0.45, y, value, fontsize=12, ha="left")
        y -= 0.04
    fig.text(0.25, y, "Stems:", fontsize=12, fontweight="bold")
    fig.text(0.45, y, ", ".join(n.capitalize() for n in report.stems), fontsize=12)
    y -= 0.04
    fig.text(0.25, y, "Software:", fontsize=12, fontweight="bold")
    fig.text(0.45, y, str(report.meta.get("software", "")), fontsize=12)
    fig.text(0.5, 0.1, "Sections per stem follow the analysis report of the seed documents; the "
             "definitions are in the JSON report's settings and in the engine's documentation.",
             ha="center", fontsize=8, color="#666666", wrap=True)
    pdf.savefig(fig)


def write_pdf(report: AnalysisReport, path: str | Path, progress: ProgressFn | None = None) -> Path:
    """Write the PDF report atomically (temp file, fsync, rename); returns the path.

    Args:
        report: from :func:`engine.analysis.report.analyze_stems`.
        path: destination ``.pdf``.
        progress: ``progress(fraction, message)`` per page group.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    steps = 2 + len(report.stems) + 1
    done = 0

    def step(msg: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done / steps, msg)

    with atomic_path(p) as tmp:
        with matplotlib.rc_context(_RC), PdfPages(tmp) as pdf:  # type: ignore[arg-type]
            info = pdf.infodict()
            info["Title"] = f"Separation analysis — {report.meta.get('track') or 'untitled'}"
            info["Creator"] = str(report.meta.get("software", "Unmix Studio"))
            _title_page(pdf, report)
            step("Title page")
            flow = _FlowPage(pdf, "Summary")
            for b in summary_blocks(report):
                flow.block(b)
            flow.flush()
            step("Summary")
            for stem in report.stems.values():
                flow = _FlowPage(pdf, f"{stem.name.capitalize()} — tables")
                for b in stem_blocks(report, stem):
                    flow.block(b)
                flow.flush()
                if stem.figures is not None:
                    for _, make in STEM_FIGURES:
                        pdf.savefig(make(stem))
                step(f"{stem.name}: tables and figures")
            pdf.savefig(comprehensive_figure(report))
            step("Comprehensive comparison")
    return p
