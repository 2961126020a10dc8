"""The Separate panel: engine and parameters from the registry, Separate as a job (progress, ETA,
Cancel), one lane per stem with its mask, A/B against the mix, and Export Stems.

A view and controller only. The controls are built from :data:`engine.separators.REGISTRY`
(each :class:`~engine.separators.base.Parameter` gives a control with the seeds' default, its
range and its description as the tooltip). The job does all the numeric work: for an engine
that needs an acapella, the acapella is rendered onto the mix's timeline with
:func:`engine.align.render_aligned` and the session's placement (the acapella lane's offset,
gain and polarity plus the alignment's drift).

No alignment yet: when the session has no alignment and the acapella still sits where it was
loaded (offset 0, 0 dB, normal polarity), the job aligns first (``align_acapella``), as the
``separate`` command does. Separating an unaligned acapella would subtract the wrong thing,
and asking the user to go and align first is one more step for the same result; a manual
placement (nudged without auto-align) is respected as it is. The alignment found is applied
to the session with the separation, so the acapella lane shows what the separation used; a
"no match" stops with a message and changes nothing.

Everything lands in the session on the GUI thread when the job finishes, so a cancelled or
failed run leaves the session as it was. A new separation replaces the previous stem lanes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

import engine.separators  # noqa: F401  (registers the engines)
from engine.align import AlignmentParams, AlignmentResult, align_acapella, render_aligned
from engine.audio import Audio
from engine.errors import InputError
from engine.jobs import Job, JobContext
from engine.maskedit import normalised_masks
from engine.separators.base import REGISTRY, Parameter, SeparationResult, get_separator
from engine.session import RESOURCES, Session, Track
from engine.waveform import PeakPyramid
from gui.actions import add_run_row, set_scrolling_body, show_status, window_action
from gui.export_dialog import ExportDialog
from gui.views import format_time

DEVICES = ("auto", "cpu", "cuda")
#: The engine the panel starts with (fast, exact sum, the signature mix + acapella workflow).
DEFAULT_ENGINE = "reference"


@dataclass
class SeparationOutcome:
    """What the separation job hands to the GUI thread."""

    result: SeparationResult
    pyramids: dict[str, PeakPyramid]
    alignment: AlignmentResult | None  # found inside the job (None: the session's was used)
    mix_audio: Audio
    acapella_audio: Audio | None


def prepare_for_lanes(result: SeparationResult, ctx: JobContext, start: float) -> dict[str, PeakPyramid]:
    """In the separation job, after the engine: masks in the editable form (engine.maskedit:
    one ``(bins, frames)`` mask per stem, summing to one) and the stems' waveform overviews."""
    if len(result.stems) >= 2 and all(stem in result.masks for stem in result.stems):
        ctx.progress(start, "Preparing the masks for editing")
        result.masks = normalised_masks(result.masks, list(result.stems))
    pyramids = {}
    for i, (stem, audio) in enumerate(result.stems.items()):
        ctx.progress(start + (1.0 - start) * i / max(len(result.stems), 1), f"Overview of {stem}")
        pyramids[stem] = PeakPyramid.build(audio.samples, cancel=ctx.cancel_token)
    return pyramids


def _decimals(p: Parameter) -> int:
    """Fewest decimals (2..6) that show the default exactly, else 4 (e.g. 1/6 octave)."""
    d = float(p.default)
    for n in range(2, 7):
        if abs(round(d, n) - d) < 1e-12:
            return n
    return 4


def make_control(p: Parameter) -> QWidget:
    """A control for ``p`` showing its default, range and description (tooltip)."""
    tip = p.description + (f" ({p.unit})" if p.unit else "")
    if p.minimum is not None or p.maximum is not None:
        tip += f"\nRange: {p.minimum if p.minimum is not None else '−∞'} … {p.maximum if p.maximum is not None else '∞'}"
    tip += f"\nDefault: {p.default}"
    w: QWidget
    if p.kind == "bool":
        w = QCheckBox()
        w.setChecked(bool(p.default))
    elif p.kind == "choice":
        w = QComboBox()
        w.addItems(list(p.choices))
        w.setCurrentText(str(p.default))
    elif p.kind == "int":
        w = QSpinBox()
        w.setRange(int(p.minimum) if p.minimum is not None else -(2**31), int(p.maximum) if p.maximum is not None else 2**31 - 1)
        w.setValue(int(p.default))
        if p.unit:
            w.setSuffix(f" {p.unit}")
    else:
        w = QDoubleSpinBox()
        w.setDecimals(_decimals(p))
        w.setRange(p.minimum if p.minimum is not None else -1e9, p.maximum if p.maximum is not None else 1e9)
        w.setSingleStep(10 ** -(_decimals(p) - 1))
        w.setValue(float(p.default))
        # the box shows the default rounded (1/6 as 0.1667): keep the exact default unless edited
        w.setProperty("exact_default", float(p.default))
        if p.unit:
            w.setSuffix(f" {p.unit}")
    w.setToolTip(tip)
    w.setObjectName(f"param_{p.name}")
    return w


def control_value(w: QWidget) -> Any:
    if isinstance(w, QCheckBox):
        return w.isChecked()
    if isinstance(w, QComboBox):
        return w.currentText()
    if isinstance(w, QDoubleSpinBox):
        exact = w.property("exact_default")
        if exact is not None and abs(w.value() - round(float(exact), w.decimals())) < 0.5 * 10 ** -w.decimals():
            return float(exact)
        return w.value()
    if isinstance(w, QSpinBox):
        return w.value()
    raise TypeError(type(w))


class SeparatePanel(QDockWidget):
    """Dock: engine, parameters, Separate with progress/ETA/Cancel, A/B, Export Stems.

    Signals:
        separated(): a separation's stems are in the session.
        separation_ended(str): a run ended without stems (the reason: cancelled, failed, no match).
    """

    separated = Signal()
    separation_ended = Signal(str)

    def __init__(self, window: QMainWindow) -> None:
        super().__init__("Separate", window)
        self.setObjectName("SeparatePanel")
        self.window_ = window
        self.jobs = window.jobs  # type: ignore[attr-defined]
        self.job: Job | None = None
        self.export_dialog: ExportDialog | None = None
        self.controls: dict[str, QWidget] = {}
        self._build_ui()
        self._make_actions()
        self.engine_combo.currentIndexChanged.connect(self._engine_changed)
        self._engine_changed()
        self._watched: Session | None = None
        self._watch_session()
        window.lanes_drawn.connect(self._watch_session)  # type: ignore[attr-defined]

    # ================================================================= UI ===================
    def _build_ui(self) -> None:
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        form = QFormLayout()
        self.engine_combo = QComboBox()
        for name, cls in sorted(REGISTRY.items()):
            if cls.needs_query:  # query by example has its own panel (Find Similar)
                continue
            self.engine_combo.addItem(cls.title or name, name)
            self.engine_combo.setItemData(self.engine_combo.count() - 1, cls.description, Qt.ItemDataRole.ToolTipRole)
        if DEFAULT_ENGINE in REGISTRY:
            self.engine_combo.setCurrentIndex(self.engine_combo.findData(DEFAULT_ENGINE))
        form.addRow("Engine", self.engine_combo)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.device_combo.setToolTip("auto: the GPU when there is one, else the CPU")
        form.addRow("Device", self.device_combo)
        lay.addLayout(form)
        self.description_label = QLabel()
        self.description_label.setWordWrap(True)
        self.description_label.setObjectName("LaneRole")
        lay.addWidget(self.description_label)
        self.params_box = QGroupBox("Parameters")
        self.params_form = QFormLayout(self.params_box)
        lay.addWidget(self.params_box)
        self.reset_button = QPushButton("Reset to defaults")
        self.reset_button.clicked.connect(self._engine_changed)
        lay.addWidget(self.reset_button)
        self.separate_button, self.cancel_button, self.progress_bar, self.status_label = add_run_row(
            lay, "Separate", self.separate, self.cancel, "Load a mix, then Separate.")
        self.separate_button.setToolTip("Separate the mix with this engine (Ctrl+Shift+E)")
        row2 = QHBoxLayout()
        self.ab_button = QPushButton("A/B: Mix")
        self.ab_button.setCheckable(True)
        self.ab_button.setToolTip("Listen to the mix (A) or the stems (B) (Ctrl+B)")
        self.export_button = QPushButton("Export Stems…")
        self.export_button.clicked.connect(self.show_export_dialog)
        row2.addWidget(self.ab_button)
        row2.addWidget(self.export_button)
        lay.addLayout(row2)
        lay.addStretch(1)
        set_scrolling_body(self, body)

    def _make_actions(self) -> None:
        w = self.window_

        def act(text: str, shortcut: str | None, slot: Any, checkable: bool = False) -> QAction:
            return window_action(w, text, shortcut, slot, checkable)

        self.act_separate = act("&Separate…", "Ctrl+Shift+E", self._separate_from_menu)
        self.act_export = act("&Export Stems…", "Ctrl+E", self.show_export_dialog)
        self.act_ab = act("&A/B: Stems instead of Mix", "Ctrl+B", self.set_ab_stems, checkable=True)
        self.ab_button.toggled.connect(self.act_ab.setChecked)
        self.act_ab.toggled.connect(self.ab_button.setChecked)
        self.act_masks = act("Show &Mask Overlay", "Ctrl+M", self.set_masks_visible, checkable=True)
        self.act_masks.blockSignals(True)
        self.act_masks.setChecked(True)
        self.act_masks.blockSignals(False)
        menus: dict[str, QMenu] = w.menus  # type: ignore[attr-defined]
        menu = QMenu("Se&parate", w)
        for a in (self.act_separate, self.act_export, self.act_ab):
            menu.addAction(a)
        menu.addSeparator()
        menu.addAction(self.toggleViewAction())
        w.menuBar().insertMenu(menus["help"].menuAction(), menu)
        menus["separate"] = menu
        menus["view"].addAction(self.act_masks)

    def _engine_changed(self, *_: Any) -> None:
        """Rebuild the parameter controls for the chosen engine, at its defaults."""
        cls = REGISTRY[self.engine_name]
        while self.params_form.rowCount():
            self.params_form.removeRow(0)
        self.controls = {}
        for p in cls.parameters:
            w = make_control(p)
            self.controls[p.name] = w
            label = QLabel(p.name.replace("_", " "))
            label.setToolTip(w.toolTip())
            self.params_form.addRow(label, w)
        needs = " Needs the mix and its acapella." if cls.needs_acapella else " Needs the mix."
        self.description_label.setText((cls.description or "") + needs)
        self._update_enabled()

    # ================================================================= state ===============
    @property
    def session(self) -> Session:
        return self.window_.session  # type: ignore[attr-defined,no-any-return]

    @property
    def engine_name(self) -> str:
        return str(self.engine_combo.currentData())

    def set_engine(self, name: str) -> None:
        self.engine_combo.setCurrentIndex(self.engine_combo.findData(name))

    def parameters(self) -> dict[str, Any]:
        """The controls' values (validated by the engine when the job starts)."""
        return {name: control_value(w) for name, w in self.controls.items()}

    def stem_tracks(self) -> list[Track]:
        return [t for t in self.session.tracks if t.role == "stem"]

    def _watch_session(self) -> None:
        s = self.session
        if s is self._watched:
            return
        if self._watched is not None:
            self._watched.tracks_changed.disconnect(self._update_enabled)
        s.tracks_changed.connect(self._update_enabled)
        self._watched = s
        self._update_enabled()

    def _update_enabled(self) -> None:
        s = self.session
        cls = REGISTRY[self.engine_name]
        have = s.track_by_role("mix") is not None and (not cls.needs_acapella or s.track_by_role("acapella") is not None)
        running = self.job is not None and not self.job.done
        self.separate_button.setEnabled(have and not running)
        self.act_separate.setEnabled(have and not running)
        self.cancel_button.setEnabled(running)
        stems = bool(self.stem_tracks())
        for x in (self.export_button, self.act_export, self.ab_button, self.act_ab):
            x.setEnabled(stems)

    # ================================================================= separation ==========
    def _alignment_params(self, aca: Track) -> AlignmentParams | None:
        """The session's placement of the acapella, or None when it was never placed."""
        al = self.session.alignment
        if al is not None and not al.get("match", True):
            al = None
        placed = aca.offset_frames != 0.0 or aca.gain_db != 0.0 or aca.polarity != 1
        if al is None and not placed:
            return None
        drift = float((al or {}).get("drift_ppm") or 0.0)
        return AlignmentParams(aca.offset_frames, drift, aca.gain_db, aca.polarity)

    def separate(self) -> Job | None:
        """Start a separation job with the panel's engine and parameters."""
        self._watch_session()
        if self.job is not None and not self.job.done:
            return self.job
        session = self.session
        mix = session.track_by_role("mix")
        if mix is None:
            self._say("Load a mix first (File ▸ Open Mix…).", error=True)
            return None
        name = self.engine_name
        separator = get_separator(name)
        try:
            values = separator.resolve_parameters(self.parameters())
        except InputError as exc:
            self._say(str(exc), error=True)
            return None
        aca = session.track_by_role("acapella") if separator.needs_acapella else None
        if separator.needs_acapella and aca is None:
            self._say(f"The {separator.title or name} engine needs an acapella: open one "
                      "(File ▸ Open Acapella…) or choose another engine.", error=True)
            return None
        params = self._alignment_params(aca) if aca is not None else None
        mix_audio = mix.audio
        aca_audio = aca.audio if aca is not None else None
        device = self.device_combo.currentText()

        def work(ctx: JobContext) -> SeparationOutcome:
            found: AlignmentResult | None = None
            aligned = None
            share = 0.0
            if aca_audio is not None:
                placement = params
                if placement is None:
                    share = 0.25
                    found = align_acapella(mix_audio, aca_audio,
                                           progress=lambda f, m: ctx.progress(share * f, f"Aligning: {m}"),
                                           cancel=ctx.cancel_token)
                    if not found.matched:
                        raise InputError(f"the acapella does not match this mix ({found.message}); "
                                         "nothing was separated", aca_audio.path)
                    placement = found.params
                ctx.progress(share, "Placing the acapella on the mix's timeline")
                aligned = render_aligned(aca_audio, placement, mix_audio.sample_rate, mix_audio.frames,
                                         mix_audio.channels)
                share += 0.05
            base, span = share, 0.92 - share
            result = separator.separate(
                mix_audio, acapella=aligned, device=device, parameters=values,
                progress=lambda f, m: ctx.progress(base + span * f, m), cancel=ctx.cancel_token,
            )
            pyramids = prepare_for_lanes(result, ctx, 0.92)
            return SeparationOutcome(result, pyramids, found, mix_audio, aca_audio)

        def progress(job: Job) -> None:
            self.progress_bar.setValue(int(job.fraction * 1000))
            eta = job.eta_seconds
            text = job.message or "Separating…"
            if eta is not None and eta >= 1.0:
                text += f" · {format_time(eta, milliseconds=False)} left"
            self._say(text)

        def done(job: Job) -> None:
            self.job = None
            self._update_enabled()
            self._apply(job.result)

        def ended(job: Job) -> None:
            self.job = None
            self.progress_bar.setValue(0)
            self._update_enabled()
            text = "Separation cancelled; nothing was changed." if job.error is None else \
                f"Separation failed: {job.error}"
            self._say(text, error=job.error is not None)
            self.separation_ended.emit(text)

        self.progress_bar.setValue(0)
        self._say("Separating…")
        self.job = self.jobs.submit(f"Separating ({separator.title or name})", work, on_finished=done,
                                    on_failed=ended, on_cancelled=ended, on_progress=progress)
        self._update_enabled()
        return self.job

    def _separate_from_menu(self) -> None:
        self.show()
        self.raise_()  # the panel shows the progress, the ETA and Cancel
        self.separate()

    def cancel(self) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel()

    def _apply(self, out: SeparationOutcome) -> None:
        """Put the stems, masks and (if found in the job) the alignment into the session."""
        session = self.session
        mix = session.track_by_role("mix")
        aca = session.track_by_role("acapella")
        if mix is None or mix.audio is not out.mix_audio or (
                out.acapella_audio is not None and (aca is None or aca.audio is not out.acapella_audio)):
            text = "The files changed while separating; separate again."
            self._say(text, error=True)
            self.separation_ended.emit(text)
            return
        r = out.result
        if out.alignment is not None and aca is not None:
            al = out.alignment
            session.set_alignment(al.to_json())
            session.set_gain_db(aca.id, al.gain_db)
            session.set_polarity(aca.id, al.polarity)
            session.set_offset(aca.id, al.offset_samples)
        self.show_result(r, out.pyramids, out.mix_audio)
        self.progress_bar.setValue(1000)
        self._say(f"Separated into {', '.join(r.stems)} in {r.seconds:.1f} s ({r.engine}, {r.device}).")

    def show_result(self, r: SeparationResult, pyramids: dict[str, PeakPyramid], mix_audio: Audio,
                    extra: dict[str, Any] | None = None) -> None:
        """Replace the stem lanes with ``r``'s stems and masks (also used by Find Similar)."""
        session = self.session
        for old in self.stem_tracks():
            session.remove_track(old.id)
        session.separation = {
            "engine": r.engine, "parameters": r.parameters, "seconds": round(r.seconds, 4),
            "device": r.device, "stems": list(r.stems), "stft": {"n_fft": r.stft.n_fft, "hop": r.stft.hop_length},
            "sum_error_db": round(r.sum_error_db(mix_audio), 2), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **(extra or {}),
        }
        cache = self.window_.cache  # type: ignore[attr-defined]
        for stem, audio in r.stems.items():
            cache.put(audio, pyramids[stem])
            track = Track(name=stem, role="stem", audio=audio)
            if stem in r.masks:
                session.masks[track.id] = r.masks[stem]
            session.add_track(track)
        self.act_ab.setChecked(False)
        self._update_enabled()
        self.separated.emit()

    def _say(self, text: str, error: bool = False) -> None:
        show_status(self.status_label, text, error)

    # ================================================================= listening ===========
    def set_ab_stems(self, stems: bool) -> None:
        """A/B: play the stems (True) or the mix (False); the other side is muted by solo."""
        session = self.session
        mix = session.track_by_role("mix")
        stem_tracks = self.stem_tracks()
        self.ab_button.setText("A/B: Stems" if stems else "A/B: Mix")
        if mix is None or not stem_tracks:
            return
        # soloing the unmuted stems keeps the user's stem mutes in the B side
        chosen = [t for t in stem_tracks if not t.mute] or stem_tracks
        session.set_solo(mix.id, not stems)
        for t in stem_tracks:
            session.set_solo(t.id, stems and t in chosen)

    def set_masks_visible(self, on: bool) -> None:
        self.window_.lane_stack.set_masks_visible(on)  # type: ignore[attr-defined]

    # ================================================================= export ==============
    def stems_for_export(self) -> dict[str, Audio]:
        return {t.name: t.audio for t in self.stem_tracks()}

    def show_export_dialog(self) -> ExportDialog | None:
        stems = self.stems_for_export()
        if not stems:
            self._say("Nothing to export yet: Separate first.", error=True)
            return None
        session = self.session
        mix = session.track_by_role("mix")
        folder = Path(mix.source_path).parent if mix is not None and mix.source_path else None
        if folder is not None and RESOURCES.resolve() in folder.resolve().parents:
            folder = None  # never suggest writing into the app's shipped data (the demo)
        engine = str((session.separation or {}).get("engine", ""))
        if self.export_dialog is not None:
            self.export_dialog.close()
            self.export_dialog.deleteLater()
        self.export_dialog = ExportDialog(self.jobs, stems, session.name, engine, folder, self.window_)
        self.export_dialog.show()
        return self.export_dialog


def install(window: QMainWindow) -> SeparatePanel:
    """Add the Separate panel (a dock on the right) and its Separate menu to ``window``."""
    panel = SeparatePanel(window)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, panel)
    align = getattr(window, "panels", {}).get("align")
    if isinstance(align, QDockWidget):  # one tab beside the align panel: align first, then separate
        window.tabifyDockWidget(align, panel)
        align.raise_()
    return panel
