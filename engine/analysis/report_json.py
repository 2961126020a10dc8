"""The JSON report: every number of :class:`AnalysisReport`, written atomically.

Standard JSON only: NaN (undefined) and ±infinity are written as ``null``; the report's notes
and the section texts say why (e.g. "+∞: a single source has no interference").
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from engine.analysis.report import AnalysisReport
from engine.files import atomic_write_bytes


def jsonable(value: Any) -> Any:
    """``value`` with numpy types converted and non-finite floats replaced by ``None``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def report_json_text(report: AnalysisReport) -> str:
    """The report as standard JSON text (``null`` for undefined / infinite numbers)."""
    return json.dumps(jsonable(report.to_json()), indent=1, ensure_ascii=False, allow_nan=False)


def write_json(report: AnalysisReport, path: str | Path) -> Path:
    """Write the JSON report atomically; returns the path."""
    return atomic_write_bytes(path, (report_json_text(report) + "\n").encode("utf-8"))
