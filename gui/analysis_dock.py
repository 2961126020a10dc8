"""The analysis dock: per-stem tabs with the report's tables (status colours) and time plots on
the shared time axis (clicking a plot seeks), run as a job; "Export report…" writes PDF,
Markdown or JSON.

In the app the normal case has no ground truth: the current stem lanes are analysed against
the mix (and the acapella, placed where the session has it, for the vocal stem) with
``analyze_stems(estimates, None, mix=..., acapella=...)``. "Use reference stems…" takes a
folder of true stems (files named like the stems) for the reference mode instead. All numbers
come from :mod:`engine.analysis`; the dock only lays them out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.analysis import (
    AnalysisReport,
    StemReport,
    analyze_stems,
    write_json,
    write_markdown,
    write_pdf,
)
from engine.audio import READ_EXTENSIONS, load_audio
from engine.errors import InputError
from engine.jobs import Job, JobContext
from engine.session import Session
from gui.views import TimeAxisItem, TimelinePlot

#: Row colours of a status grade.
GRADE_COLORS = {
    "excellent": "#2e7d32", "ok": "#2e7d32", "good": "#558b2f", "fair": "#a67c00", "warn": "#a67c00",
    "poor": "#b23b3b", "bad": "#b23b3b", "na": "#4a4d55",
}
REPORT_FILTER = "PDF report (*.pdf);;Markdown (*.md);;JSON (*.json)"


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    if isinstance(v, list):
        return f"[{len(v)} values]" if len(v) > 6 else ", ".join(format_value(x) for x in v)
    return str(v)


def section_rows(section: str, data: Any) -> list[tuple[str, str, str, str | None]]:
    """Flatten one report section into ``(section, item, value, grade)`` rows."""
    rows: list[tuple[str, str, str, str | None]] = []
    if not isinstance(data, dict):
        return [(section, "", format_value(data), None)]
    status = data.get("status") if isinstance(data.get("status"), dict) else None
    if status is not None:
        rows.append((section, "status", str(status.get("text", "")), str(status.get("grade", ""))))
    for key, value in data.items():
        if key == "status":
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                label = str(item.get("band") or item.get("metric") or item.get("name") or "")
                st = item.get("status") if isinstance(item.get("status"), dict) else None
                vals = ", ".join(f"{k} {format_value(v)}" for k, v in item.items()
                                 if k not in ("band", "metric", "name", "status") and not isinstance(v, dict | list))
                rows.append((section, f"{key}: {label}", vals, st.get("grade") if st else None))
        elif isinstance(value, dict):
            for sub_section, item, val, grade in section_rows(f"{section} · {key}", value):
                rows.append((sub_section, item, val, grade))
        elif isinstance(value, list) and len(value) > 6:
            continue  # long per-event lists (onset times) are in the exported report
        else:
            rows.append((section, key.replace("_", " "), format_value(value), None))
    return rows


class AnalysisTimePlot(TimelinePlot):
    """A time plot whose x follows the shared timeline; a click seeks (the ViewBox does it)."""

    def __init__(self, timeline: Any, title: str, parent: QWidget | None = None) -> None:
        super().__init__(timeline, top_axis=TimeAxisItem("top"), parent=parent)
        self.title = title
        self.curves: list[pg.PlotDataItem] = []
        self.setMinimumHeight(110)
        self.attach()

    def plot(self, x: np.ndarray, y: np.ndarray, color: str, name: str) -> pg.PlotDataItem:
        finite = np.isfinite(y)
        curve = pg.PlotDataItem(np.asarray(x)[finite], np.asarray(y)[finite], pen=pg.mkPen(color, width=1.3), name=name)
        self.addItem(curve)
        self.curves.append(curve)
        ys = np.concatenate([np.asarray(c.yData) for c in self.curves if c.yData is not None and len(c.yData)])
        if ys.size:
            lo, hi = float(np.min(ys)), float(np.max(ys))
            self.set_y_range(lo, hi if hi > lo else lo + 1.0, padding=0.05)
        return curve


class StemTab(QWidget):
    """One stem: its status table and its time plots (envelope, band energies)."""

    def __init__(self, stem: StemReport, session: Session) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        rows = []
        if stem.score is not None:
            rows += section_rows("summary", stem.score)
        for name, data in stem.sections.items():
            rows += section_rows(name.replace("_", " "), data)
        rows += [("notes", "", n, None) for n in stem.notes]
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["Section", "Item", "Value"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for i, (section, item, value, grade) in enumerate(rows):
            cells = [QTableWidgetItem(section), QTableWidgetItem(item), QTableWidgetItem(value)]
            for j, cell in enumerate(cells):
                cell.setToolTip(value if j == 2 else cell.text())
                if grade:
                    cell.setBackground(QBrush(QColor(GRADE_COLORS.get(grade, GRADE_COLORS["na"]))))
                self.table.setItem(i, j, cell)
        self.table.resizeColumnsToContents()
        for col, most_px in ((0, 150), (1, 190)):  # leave the width to the values
            self.table.setColumnWidth(col, min(self.table.columnWidth(col), most_px))
        self.table.horizontalHeader().setStretchLastSection(True)
        self.rows = rows
        # table beside the plots: the dock is wide and short
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        plots_box = QWidget()
        plots_lay = QVBoxLayout(plots_box)
        plots_lay.setContentsMargins(0, 0, 0, 0)
        splitter.addWidget(plots_box)
        splitter.setSizes([520, 680])
        lay.addWidget(splitter, 1)
        self.plots: list[AnalysisTimePlot] = []
        fig = stem.figures
        if fig is not None:
            x = fig.columns_seconds
            env = AnalysisTimePlot(session.timeline, "Level (dB)")
            if fig.envelope_ref_db is not None:  # under the stem's curve, which is drawn on top
                env.plot(x, fig.envelope_ref_db, "#ffb74d", fig.comparison_label)
            env.plot(x, fig.envelope_est_db, "#81c784", stem.name)
            bands = AnalysisTimePlot(session.timeline, "Band energy (dB)")
            palette = ("#4fc3f7", "#81c784", "#ffb74d", "#ce93d8", "#ff8a65", "#e0e0e0")
            for b, name in enumerate(fig.band_names):
                bands.plot(x, fig.band_est_db[b], palette[b % len(palette)], name)
            for label, plot in ((f"Level: {stem.name} (green) vs {fig.comparison_label} (orange), dB", env),
                                ("Band energy of the stem, dB: " + ", ".join(fig.band_names), bands)):
                caption = QLabel(label)
                caption.setObjectName("LaneRole")
                plots_lay.addWidget(caption)
                plots_lay.addWidget(plot, 1)
                self.plots.append(plot)

    def detach(self) -> None:
        for p in self.plots:
            p.detach()


class AnalysisDock(QDockWidget):
    """Dock: Analyze (a job), per-stem tabs, Export report…

    Signals:
        analyzed(object): a report is shown (the :class:`AnalysisReport`).
        report_written(object): a report file was written (its Path).
    """

    analyzed = Signal(object)
    report_written = Signal(object)

    def __init__(self, window: QMainWindow) -> None:
        super().__init__("Analysis", window)
        self.setObjectName("AnalysisDock")
        self.window_ = window
        self.jobs = window.jobs  # type: ignore[attr-defined]
        self.report: AnalysisReport | None = None
        self.references_dir: Path | None = None
        self.job: Job | None = None
        self.tabs_by_stem: dict[str, StemTab] = {}
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        row = QHBoxLayout()
        self.analyze_button = QPushButton("Analyze stems")
        self.analyze_button.setToolTip("Analyse the stem lanes against the mix (and acapella) (Ctrl+Shift+Y)")
        self.analyze_button.clicked.connect(self.analyze)
        self.refs_button = QPushButton("Reference stems…")
        self.refs_button.setToolTip("Compare with true stems from a folder (files named like the stems)")
        self.refs_button.clicked.connect(self._choose_references)
        self.export_button = QPushButton("Export report…")
        self.export_button.clicked.connect(self._ask_export)
        self.export_button.setEnabled(False)
        for b in (self.analyze_button, self.refs_button, self.export_button):
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        self.status_label = QLabel("Separate, then Analyze stems.")
        self.status_label.setWordWrap(True)
        lay.addWidget(self.status_label)
        self.mixture_label = QLabel()
        self.mixture_label.setWordWrap(True)
        lay.addWidget(self.mixture_label)
        self.tabs = QTabWidget()
        lay.addWidget(self.tabs, 1)
        self.setWidget(body)
        self.act_analyze = QAction("&Analyze Stems", window)
        self.act_analyze.setShortcut(QKeySequence("Ctrl+Shift+Y"))
        self.act_analyze.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.act_analyze.triggered.connect(lambda _=False: self.analyze())
        window.addAction(self.act_analyze)
        menus: dict[str, QMenu] = window.menus  # type: ignore[attr-defined]
        menu = menus.get("separate")
        if menu is not None:
            menu.addSeparator()
            menu.addAction(self.act_analyze)
            menu.addAction(self.toggleViewAction())
        else:
            menus["view"].addAction(self.toggleViewAction())

    @property
    def session(self) -> Session:
        return self.window_.session  # type: ignore[attr-defined,no-any-return]

    # ---- running -----------------------------------------------------------------------------
    def analyze(self) -> Job | None:
        """Analyse the stem lanes (reference-free, or against the chosen reference folder)."""
        session = self.session
        stems = {t.name: t.audio for t in session.tracks if t.role == "stem"}
        if not stems:
            self._say("No stems yet: Separate first.", error=True)
            return None
        if self.job is not None and not self.job.done:
            return self.job
        mix = session.track_by_role("mix")
        mix_audio = mix.audio if mix is not None else None
        aca = session.track_by_role("acapella")
        aca_audio = aca.audio if aca is not None else None
        masks = {t.name: session.masks[t.id] for t in session.tracks if t.role == "stem" and t.id in session.masks}
        refs_dir = self.references_dir
        meta = {"track": session.name, "engine": (session.separation or {}).get("engine")}

        def work(ctx: JobContext) -> AnalysisReport:
            references = None
            if refs_dir is not None:
                references = {}
                for f in sorted(refs_dir.iterdir()):
                    if f.suffix.lower() in READ_EXTENSIONS and f.stem in stems:
                        references[f.stem] = load_audio(f)
                if not references:
                    raise InputError(f"no reference files named like the stems ({', '.join(stems)})", refs_dir)
            return analyze_stems(stems, references, mix=mix_audio, acapella=aca_audio, masks=masks,
                                 progress=ctx.progress, cancel=ctx.cancel_token, meta=meta)

        def done(job: Job) -> None:
            self.job = None
            self.show_report(job.result)

        def ended(job: Job) -> None:
            self.job = None
            self._say("Analysis cancelled." if job.error is None else f"Analysis failed: {job.error}",
                      error=job.error is not None)

        self.show()
        self.raise_()
        self._say("Analysing…")
        self.job = self.jobs.submit("Analysing stems", work, on_finished=done, on_failed=ended, on_cancelled=ended)
        return self.job

    def show_report(self, report: AnalysisReport) -> None:
        for tab in self.tabs_by_stem.values():
            tab.detach()
        self.tabs.clear()
        self.tabs_by_stem = {}
        self.report = report
        for name, stem in report.stems.items():
            tab = StemTab(stem, self.session)
            self.tabs.addTab(tab, name)
            self.tabs_by_stem[name] = tab
        mixture = report.mixture or {}
        if "error_db" in mixture:
            status = mixture.get("status") or {}
            self.mixture_label.setText(f"Stems vs mix: {format_value(mixture['error_db'])} dB — {status.get('text', '')}")
        else:
            self.mixture_label.setText("")
        mode = "reference-free (against the mix)" if report.mode != "reference" else "against reference stems"
        self._say(f"Analysed {len(report.stems)} stems, {mode}.")
        self.export_button.setEnabled(True)
        self.analyzed.emit(report)

    def _say(self, text: str, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #ff7070;" if error else "")

    def _choose_references(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of reference stems")
        self.set_references(Path(path) if path else None)

    def set_references(self, folder: Path | None) -> None:
        """Compare with true stems in ``folder`` (None: reference-free)."""
        self.references_dir = folder
        self.refs_button.setText(f"References: {folder.name}" if folder else "Reference stems…")

    # ---- export ------------------------------------------------------------------------------
    def _ask_export(self) -> None:
        start = str(Path.home() / f"{self.session.name} analysis.pdf")
        path, _ = QFileDialog.getSaveFileName(self, "Export report", start, REPORT_FILTER)
        if path:
            self.export_report(Path(path))

    def export_report(self, path: Path) -> Job | None:
        """Write the report as PDF, Markdown or JSON (by the file's extension) in a job."""
        report = self.report
        if report is None:
            return None
        suffix = path.suffix.lower()
        if suffix not in (".pdf", ".md", ".json"):
            path = path.with_suffix(".pdf")
            suffix = ".pdf"

        def work(ctx: JobContext) -> Path:
            ctx.progress(0.0, f"Writing {path.name}")
            if suffix == ".json":
                return write_json(report, path)
            if suffix == ".md":
                return write_markdown(report, path)
            return write_pdf(report, path, progress=ctx.progress)

        def done(job: Job) -> None:
            self._say(f"Wrote {path}")
            self.report_written.emit(path)

        def failed(job: Job) -> None:
            self._say(f"Could not write the report: {job.error}", error=True)

        return self.jobs.submit(f"Writing report {path.name}", work, on_finished=done, on_failed=failed,
                                on_cancelled=failed)


def install(window: QMainWindow) -> AnalysisDock:
    """Add the analysis dock (bottom) to ``window``; its actions go in the Separate menu."""
    dock = AnalysisDock(window)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    dock.hide()  # shown when an analysis runs
    return dock

