"""Separation analysis: metrics, BSS Eval, figures and reports (JSON, Markdown, PDF).

Public API (the GUI's analysis dock and the ``analyze`` command use only these)::

    report = analyze_stems(estimates, references, mix=None, acapella=None, masks=None,
                           progress=None, cancel=None, meta=None)
    report.to_json()
    write_json(report, path); write_markdown(report, path); write_pdf(report, path, progress=None)

Report writers import matplotlib lazily; nothing here imports Qt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.analysis.report import AnalysisReport, StemReport, analyze_stems
from engine.analysis.report_json import write_json
from engine.analysis.report_markdown import write_markdown

__all__ = ["AnalysisReport", "StemReport", "analyze_stems", "write_json", "write_markdown", "write_pdf"]


def write_pdf(report: AnalysisReport, path: str | Path, progress: Any = None) -> Path:
    """Write the PDF report atomically (see :func:`engine.analysis.report_pdf.write_pdf`)."""
    from engine.analysis.report_pdf import write_pdf as _write_pdf

    return _write_pdf(report, path, progress)
