"""The Export Stems dialog: format and bit depth, the source's sample rate, a naming template,
an opt-in limiter, a preview of the files, a peak report, and never an overwrite without a
confirmation.

A view and controller only: :func:`engine.export.plan_paths` names the files and
:func:`engine.export.export_stems` writes them in a job. The dialog is non-modal; the overwrite
question goes through :attr:`ExportDialog.confirm_overwrite`, a callable tests replace with an
answer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.audio import Audio
from engine.errors import InputError
from engine.export import ExportOptions, ExportReport, export_stems, plan_paths
from engine.jobs import Job, JobContext

#: (label, file format, bit depth) in the order the dialog offers them.
FORMATS: tuple[tuple[str, str, str], ...] = (
    ("WAV 16-bit", "wav", "16"),
    ("WAV 24-bit", "wav", "24"),
    ("WAV 32-bit float", "wav", "float"),
    ("FLAC 16-bit", "flac", "16"),
    ("FLAC 24-bit", "flac", "24"),
)
DEFAULT_FORMAT = "WAV 24-bit"


def ask_overwrite(parent: QWidget, paths: list[Path]) -> bool:
    """The real question (modal): overwrite these files?"""
    names = "\n".join(p.name for p in paths)
    answer = QMessageBox.question(
        parent, "Overwrite files?",
        f"These files already exist in {paths[0].parent}:\n\n{names}\n\nOverwrite them?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class ExportDialog(QDialog):
    """Export the session's stems.

    Args:
        jobs: the window's :class:`gui.jobs.JobBridge` (the export runs on the engine queue).
        stems: stem name → audio (the separation's stems, as they are in the session).
        title: the ``{title}`` of the naming template (the session's name).
        engine: the ``{engine}`` of the template.
        folder: the initial output folder.

    Signals:
        exported(object): the files were written (the :class:`engine.export.ExportReport`).
        export_failed(str): the export did not happen (the reason).
    """

    exported = Signal(object)
    export_failed = Signal(str)

    def __init__(self, jobs: Any, stems: dict[str, Audio], title: str, engine: str = "",
                 folder: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export Stems")
        self.setModal(False)
        self.jobs = jobs
        self.stems = stems
        self.title = title
        self.engine = engine
        self.report: ExportReport | None = None
        self.job: Job | None = None
        #: ``confirm_overwrite(existing paths) -> bool``; replace it to answer without a dialog.
        self.confirm_overwrite: Callable[[list[Path]], bool] = lambda paths: ask_overwrite(self, paths)

        lay = QVBoxLayout(self)
        form = QFormLayout()
        folder_row = QHBoxLayout()
        self.folder_edit = QLineEdit(str(folder or Path.home()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        form.addRow("Folder", folder_row)
        self.format_combo = QComboBox()
        for label, _, _ in FORMATS:
            self.format_combo.addItem(label)
        self.format_combo.setCurrentText(DEFAULT_FORMAT)
        self.format_combo.setToolTip("32-bit float never clips; fixed-point formats clip above 0 dBFS "
                                     "unless the limiter is on")
        form.addRow("Format", self.format_combo)
        rates = sorted({a.sample_rate for a in stems.values()})
        rate_text = ", ".join(f"{r} Hz" for r in rates) or "—"
        self.rate_label = QLabel(f"{rate_text} (the source's rate; never resampled)")
        form.addRow("Sample rate", self.rate_label)
        self.template_edit = QLineEdit(ExportOptions().template)
        self.template_edit.setToolTip("Fields: {title}, {stem}, {engine}, {index}; must contain {stem}")
        form.addRow("Names", self.template_edit)
        self.limiter_check = QCheckBox("Limit peaks to −0.3 dBFS (10 ms look-ahead) instead of clipping")
        form.addRow("", self.limiter_check)
        lay.addLayout(form)
        self.preview_label = QLabel()
        self.preview_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.preview_label.setWordWrap(True)
        lay.addWidget(self.preview_label)
        self.report_label = QLabel()
        self.report_label.setTextFormat(Qt.TextFormat.RichText)
        self.report_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.report_label.setWordWrap(True)
        lay.addWidget(self.report_label, 1)
        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.export)
        self.buttons.rejected.connect(self.close)
        lay.addWidget(self.buttons)
        for signal in (self.folder_edit.textChanged, self.template_edit.textChanged):
            signal.connect(self._update_preview)
        self.format_combo.currentIndexChanged.connect(self._update_preview)
        self.resize(560, 380)
        self._update_preview()

    # ---- options -----------------------------------------------------------------------------
    def options(self, overwrite: bool = False) -> ExportOptions:
        _, fmt, depth = FORMATS[self.format_combo.currentIndex()]
        return ExportOptions(file_format=fmt, bit_depth=depth, template=self.template_edit.text(),
                             limiter=self.limiter_check.isChecked(), overwrite=overwrite)

    def set_format(self, label: str) -> None:
        """Choose a format by its label (one of :data:`FORMATS`)."""
        labels = [f[0] for f in FORMATS]
        self.format_combo.setCurrentIndex(labels.index(label))

    @property
    def folder(self) -> Path:
        return Path(self.folder_edit.text()).expanduser()

    def planned_paths(self) -> dict[str, Path]:
        """Where each stem will go (raises InputError for a bad template)."""
        return plan_paths(list(self.stems), self.folder, self.title, self.engine, self.options())

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export stems to", str(self.folder))
        if path:
            self.folder_edit.setText(path)

    def _update_preview(self, *_: Any) -> None:
        try:
            paths = self.planned_paths()
        except InputError as exc:
            self.preview_label.setText(f"<span style='color:#ff7070'>{exc}</span>")
            self.export_button.setEnabled(False)
            return
        existing = {p for p in paths.values() if p.exists()}
        lines = [f"{p.name}{'  (exists: will ask before overwriting)' if p in existing else ''}"
                 for p in paths.values()]
        self.preview_label.setText("Files:\n" + "\n".join(lines))
        self.export_button.setEnabled(bool(self.stems) and (self.job is None or self.job.done))

    # ---- export ------------------------------------------------------------------------------
    def export(self) -> Job | None:
        """Write the stems in a job; asks first when files would be overwritten.

        Returns the job, or None when nothing was started (bad options or overwrite declined).
        """
        try:
            paths = self.planned_paths()
        except InputError as exc:
            self._fail(str(exc))
            return None
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            self._fail(f"{folder} exists and is not a folder")
            return None
        existing = [p for p in paths.values() if p.exists()]
        if existing and not self.confirm_overwrite(existing):
            self._fail("Not exported: the files exist and overwriting was declined.")
            return None
        options = self.options(overwrite=bool(existing))
        stems, title, engine = dict(self.stems), self.title, self.engine

        def work(ctx: JobContext) -> ExportReport:
            ctx.progress(0.0, f"Writing {len(stems)} stems to {folder}")
            return export_stems(stems, folder, title, options, engine=engine)

        def done(job: Job) -> None:
            self.job = None
            self.report = job.result
            self._show_report(job.result)
            self._update_preview()
            self.exported.emit(job.result)

        def ended(job: Job) -> None:
            self.job = None
            self._update_preview()
            self._fail("Export cancelled." if job.error is None else f"Export failed: {job.error}")

        self.export_button.setEnabled(False)
        self.report_label.setText("Exporting…")
        self.job = self.jobs.submit("Exporting stems", work, on_finished=done, on_failed=ended,
                                    on_cancelled=ended)
        return self.job

    def _fail(self, text: str) -> None:
        self.report_label.setText(f"<span style='color:#ff7070'>{text}</span>")
        self.export_failed.emit(text)

    def _show_report(self, report: ExportReport) -> None:
        rows = []
        for f in report.files:
            colour = "#ff7070" if f.clipped_samples else "#80e080"
            extra = f"limited {f.limiter_reduction_db:.1f} dB" if f.limiter_reduction_db > 0 else ""
            clipped = f"{f.clipped_samples} clipped" if f.clipped_samples else "no clipping"
            rows.append(f"<tr><td>{f.path.name}&nbsp;&nbsp;</td><td>peak {f.peak_db:+.2f} dBFS&nbsp;&nbsp;</td>"
                        f"<td style='color:{colour}'>{clipped}</td><td>&nbsp;{extra}</td></tr>")
        warn = "".join(f"<p style='color:#f0a040'>{w}</p>" for w in report.warnings)
        where = report.files[0].path.parent if report.files else self.folder
        self.report_label.setText(f"<b>Exported to {where}</b><table>{''.join(rows)}</table>{warn}")
