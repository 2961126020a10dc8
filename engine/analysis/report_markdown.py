"""The Markdown report, in seed 000's layout, verdicts as words and symbols; written atomically."""

from __future__ import annotations

from pathlib import Path

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
from engine.analysis.report import AnalysisReport
from engine.analysis.statuses import EMOJI
from engine.files import atomic_write_bytes


def _cell(c: Cell) -> str:
    text = c.text.replace("|", "\\|")
    out = f"{EMOJI.get(c.grade, '')} {text}".strip() if c.grade else text
    return f"{c.prefix} {out}" if c.prefix else out


def _bullet_value(c: Cell, plain: bool = False) -> str:
    # Band-wise correlations in the seed read "0.8373 ⚠️": value first, then the symbol.
    if plain and c.grade and c.text and c.text[0].isdigit():
        return f"{c.text} {EMOJI.get(c.grade, '')}".strip()
    return _cell(c)


def _block(b: Block) -> list[str]:
    out = [f"{'#' * b.level} {b.title}", ""]
    for part in b.parts:
        if isinstance(part, Table):
            out.append("| " + " | ".join(part.headers) + " |")
            out.append("|" + "---|" * len(part.headers))
            out.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in part.rows)
            out.append("")
        elif isinstance(part, Bullets):
            for label, value in part.items:
                if part.style == "fields":
                    out += [f"**{label}**: {_bullet_value(value)}", ""]
                elif part.style == "plain":
                    out.append(f"- {label}: {_bullet_value(value, plain=True)}")
                else:
                    out.append(f"- **{label}**: {_bullet_value(value)}")
            if part.style != "fields":
                out.append("")
        elif isinstance(part, Paragraph):
            out += [f"**{part.text}**:" if part.strong else part.text, ""]
    return out


def report_markdown_text(report: AnalysisReport) -> str:
    """The whole report as Markdown text."""
    lines = ["# Audio Separation Analysis Report", ""]
    for label, value in title_lines(report):
        lines += [f"**{label}**: {value}", ""]
    lines += ["---", ""]
    if report.mode == "reference-free" and report.mixture:
        from engine.analysis.document import mixture_block

        mb = mixture_block(report)
        if mb is not None:
            lines += _block(mb) + ["---", ""]
    for stem in report.stems.values():
        for b in stem_blocks(report, stem):
            lines += _block(b)
        lines += ["---", ""]
    for b in summary_blocks(report):
        lines += _block(b)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def write_markdown(report: AnalysisReport, path: str | Path) -> Path:
    """Write the Markdown report atomically; returns the path."""
    return atomic_write_bytes(path, report_markdown_text(report).encode("utf-8"))
