"""The align panel: auto-align, the nudge tool, the invert-check, the null meter, the residual
lane and the local-fit curve.

A view and controller only: the numbers come from :mod:`engine.align` (``align_acapella`` in
a job, ``AlignmentRenderer.null`` for the meter, ``render_residual`` in a job). The alignment
lives in the session — the acapella track's ``offset_frames``/``gain_db``/``polarity`` plus
``session.alignment`` (drift, confidence, ...) — so it is saved with the project and the
player follows it. Every change of placement is a :class:`QUndoCommand` on the window's undo
stack.

Playback: the player places lanes on whole frames, so a fractional offset plays rounded to the
nearest frame (the meter, the residual and the saved offset keep the fraction). With drift
the player is given the drift-corrected acapella (the renderer's cached conversion at the
mix's rate), so offset, gain and polarity still apply as lane parameters.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QMouseEvent, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QDockWidget,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.align import (
    AlignmentParams,
    AlignmentRenderer,
    AlignmentResult,
    align_acapella,
    render_residual,
)
from engine.audio import Audio
from engine.jobs import Job, JobContext
from engine.session import Session, Track
from engine.waveform import PeakPyramid
from gui.actions import window_action
from gui.views import TimelinePlot

#: The meter's scale: 0 dB (nothing cancelled) to this depth.
METER_FLOOR_DB = -60.0
#: Wait this long after the last nudge before measuring (coalesces key repeats).
NULL_DEBOUNCE_MS = 15
#: Render the residual lane once nudging has paused this long.
RESIDUAL_SETTLE_MS = 700
RESIDUAL_NAME = "Residual"
PANEL_WIDTH_PX = 330
#: A null measured on the GUI thread must take less than this, else nudges go to a job.
DIRECT_NULL_BUDGET_SECONDS = 0.02

#: (label, amount, unit, shortcut) — unit "samples" or "ms".
NUDGES: tuple[tuple[int, str, str], ...] = (
    (-100, "samples", "Ctrl+Alt+Left"), (-10, "samples", "Alt+Shift+Left"), (-1, "samples", "Alt+Left"),
    (1, "samples", "Alt+Right"), (10, "samples", "Alt+Shift+Right"), (100, "samples", "Ctrl+Alt+Right"),
    (-10, "ms", "Alt+Shift+Down"), (-1, "ms", "Alt+Down"), (1, "ms", "Alt+Up"), (10, "ms", "Alt+Shift+Up"),
)


@dataclass(frozen=True)
class Placement:
    """What an undo step restores: the acapella's lane parameters and the session's alignment."""

    offset_frames: float
    gain_db: float
    polarity: int
    alignment: dict[str, Any] | None


class PlacementCommand(QUndoCommand):
    """Moves the acapella from one :class:`Placement` to another (auto-align, nudge, drag)."""

    def __init__(self, panel: AlignPanel, text: str, before: Placement, after: Placement) -> None:
        super().__init__(text)
        self.panel, self.before, self.after = panel, before, after
        aca = panel.acapella
        self.audio = aca.audio if aca is not None else None  # the file this step placed

    def _applies(self) -> bool:
        aca = self.panel.acapella
        return aca is not None and aca.audio is self.audio  # not after the acapella was replaced

    def redo(self) -> None:
        if self._applies():
            self.panel.apply_placement(self.after)

    def undo(self) -> None:
        if self._applies():
            self.panel.apply_placement(self.before)


def nudge_text(amount: int, unit: str) -> str:
    return f"Nudge acapella {amount:+d} {unit}"


class _DragFilter(QObject):
    """Alt+drag on the acapella lane's views moves the acapella along the timeline."""

    def __init__(self, panel: AlignPanel) -> None:
        super().__init__(panel)
        self.panel = panel
        self._start: tuple[float, float, float] | None = None  # (x px, offset, frames per px)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802 - Qt's name
        kind = ev.type()
        if kind == QEvent.Type.MouseButtonPress and isinstance(ev, QMouseEvent):
            if ev.button() == Qt.MouseButton.LeftButton and ev.modifiers() & Qt.KeyboardModifier.AltModifier:
                track = self.panel.acapella
                width = max(getattr(obj, "width", lambda: 1)(), 1)
                tl = self.panel.session.timeline
                if track is None:
                    return False
                self._start = (ev.position().x(), track.offset_frames, (tl.view_stop - tl.view_start) / width)
                self.panel.begin_drag()
                return True
        elif kind == QEvent.Type.MouseMove and self._start is not None and isinstance(ev, QMouseEvent):
            x0, offset0, per_px = self._start
            self.panel.drag_to(offset0 + round((ev.position().x() - x0) * per_px))
            return True
        elif kind == QEvent.Type.MouseButtonRelease and self._start is not None and isinstance(ev, QMouseEvent):
            x0, offset0, per_px = self._start
            self._start = None
            self.panel.end_drag(offset0 + round((ev.position().x() - x0) * per_px))
            return True
        return False


class LocalFitPlot(TimelinePlot):
    """Null depth per window along the shared time axis (x follows the timeline)."""

    def __init__(self, timeline: Any, parent: QWidget | None = None) -> None:
        super().__init__(timeline, parent=parent)
        self.curve = pg.PlotDataItem(pen=pg.mkPen("#7fd0ff", width=1.5), connect="finite")
        self.overall = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen("#f0a040", style=Qt.PenStyle.DashLine))
        self.addItem(self.curve)
        self.addItem(self.overall)
        self.set_y_range(METER_FLOOR_DB, 0.0)
        self.left_axis.setLabel("dB")
        self.attach()
        self._drawn = False

    def set_curve(self, centre_seconds: np.ndarray, depth_db: np.ndarray, overall_db: float) -> None:
        self.curve.setData(np.asarray(centre_seconds, float), np.asarray(depth_db, float))
        finite = np.asarray(depth_db, float)[np.isfinite(depth_db)]
        # fit the curve (a shallow null would be a flat line on a fixed -60..0 scale)
        lo = min(float(finite.min()) if finite.size else METER_FLOOR_DB, overall_db)
        hi = max(float(finite.max()) if finite.size else 0.0, overall_db)
        self.set_y_range(math.floor(lo / 5) * 5 - 1, max(math.ceil(hi / 5) * 5, 0) + 0.5)
        self.overall.setPos(overall_db)
        self.drawn.emit()

    @property
    def has_data(self) -> bool:
        x, _ = self.curve.getData()
        return x is not None and len(x) > 0


class AlignPanel(QDockWidget):
    """Dock with auto-align, nudges, invert-check, null meter and local-fit curve.

    Signals:
        aligned(object): auto-align finished (the :class:`AlignmentResult`, matched or not).
        null_measured(float): the meter shows a new null depth (dB).
        residual_ready(): the residual lane was (re)rendered.
    """

    aligned = Signal(object)
    null_measured = Signal(float)
    residual_ready = Signal()

    def __init__(self, window: QMainWindow) -> None:
        super().__init__("Align", window)
        self.setObjectName("AlignPanel")
        self.window_ = window
        self.jobs = window.jobs  # type: ignore[attr-defined]
        self.session: Session = window.session  # type: ignore[attr-defined]
        self.renderer: AlignmentRenderer | None = None
        self.result: AlignmentResult | None = None
        self.null_depth_db: float | None = None
        self._renderer_job: Job | None = None
        self._null_job: Job | None = None
        self._residual_job: Job | None = None
        self._align_job: Job | None = None
        self._drag_before: Placement | None = None
        self._region: tuple[int, int] | None = None
        self._residual_id: str | None = None
        self._direct_null = True  # measure fast nudges on the GUI thread (while under budget)
        self._filtered: set[int] = set()
        self.drag_filter = _DragFilter(self)
        stack = getattr(window, "undo_stack", None)
        if not isinstance(stack, QUndoStack):  # one stack per window, shared with other panels
            stack = QUndoStack(window)
            window.undo_stack = stack  # type: ignore[attr-defined]
        self.undo_stack: QUndoStack = stack
        self._build_ui()
        self._make_actions()
        self._null_timer = QTimer(self)
        self._null_timer.setSingleShot(True)
        self._null_timer.setInterval(NULL_DEBOUNCE_MS)
        self._null_timer.timeout.connect(self.measure_null)
        self._residual_timer = QTimer(self)
        self._residual_timer.setSingleShot(True)
        self._residual_timer.setInterval(RESIDUAL_SETTLE_MS)
        self._residual_timer.timeout.connect(self.render_residual_lane)
        self._connect(self.session)
        window.lanes_drawn.connect(self._lanes_drawn)  # type: ignore[attr-defined]
        self._update_enabled()

    # ================================================================= UI ===================
    def _build_ui(self) -> None:
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        self.align_button = QPushButton("Auto-align")
        self.align_button.setToolTip("Find the acapella's offset, drift, gain and polarity (Ctrl+Shift+A)")
        self.align_button.clicked.connect(self.auto_align)
        lay.addWidget(self.align_button)
        self.status_label = QLabel("Load a mix and its acapella, then Auto-align.")
        self.status_label.setWordWrap(True)
        lay.addWidget(self.status_label)
        numbers = QGroupBox("Alignment")
        form = QFormLayout(numbers)
        self.value_labels: dict[str, QLabel] = {}
        for key, title in (("offset", "Offset"), ("drift", "Drift"), ("gain", "Gain"),
                           ("polarity", "Polarity"), ("confidence", "Confidence")):
            label = QLabel("—")
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.value_labels[key] = label
            form.addRow(title, label)
        lay.addWidget(numbers)

        nudge = QGroupBox("Nudge acapella (Alt+drag on its lane)")
        grid = QGridLayout(nudge)
        grid.setSpacing(2)
        self.nudge_buttons: dict[tuple[int, str], QToolButton] = {}
        for i, (amount, unit, _) in enumerate(NUDGES):
            b = QToolButton()
            b.setText(f"{amount:+d}" + (" ms" if unit == "ms" else ""))
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.nudge_buttons[(amount, unit)] = b
            if unit == "samples":
                grid.addWidget(b, 0, i)
            else:  # the ms row sits under the middle of the samples row
                grid.addWidget(b, 1, i - 5)
        grid.addWidget(QLabel("samples"), 0, 6)
        lay.addWidget(nudge)

        check = QGroupBox("Invert-check")
        cl = QVBoxLayout(check)
        row = QHBoxLayout()
        self.invert_button = QPushButton("Invert-check")
        self.invert_button.setCheckable(True)
        self.invert_button.setToolTip("Play the mix with the aligned acapella inverted: "
                                      "what you hear is what is left (Ctrl+I)")
        row.addWidget(self.invert_button)
        self.null_label = QLabel("Null: —")
        self.null_label.setObjectName("TimeDisplay")
        row.addWidget(self.null_label, 1)
        cl.addLayout(row)
        self.null_meter = QProgressBar()
        self.null_meter.setRange(0, int(-METER_FLOOR_DB * 10))
        self.null_meter.setTextVisible(False)
        self.null_meter.setFixedHeight(10)
        self.null_meter.setToolTip("Null depth: residual energy relative to the mix (deeper is better)")
        cl.addWidget(self.null_meter)
        cl.addWidget(QLabel("Local fit (null depth per second)"))
        self.local_fit = LocalFitPlot(self.session.timeline)
        self.local_fit.setMinimumHeight(110)
        cl.addWidget(self.local_fit, 1)
        lay.addWidget(check, 1)
        self.setWidget(body)
        self.setMinimumWidth(280)

    def _make_actions(self) -> None:
        w = self.window_

        def act(text: str, shortcut: str | None, slot: Any, checkable: bool = False) -> QAction:
            return window_action(w, text, shortcut, slot, checkable)

        self.act_align = act("&Auto-align Acapella", "Ctrl+Shift+A", self.auto_align)
        self.act_invert = act("&Invert-check", "Ctrl+I", self.set_invert_check, checkable=True)
        self.invert_button.toggled.connect(self.act_invert.setChecked)
        self.act_invert.toggled.connect(self.invert_button.setChecked)
        self.nudge_actions: dict[tuple[int, str], QAction] = {}
        for amount, unit, key in NUDGES:
            a = act(nudge_text(amount, unit).replace("Nudge acapella", "Nudge"), key,
                    lambda a=amount, u=unit: self.nudge(a, u))
            self.nudge_actions[(amount, unit)] = a
            b = self.nudge_buttons[(amount, unit)]
            b.clicked.connect(a.trigger)
            b.setToolTip(f"{nudge_text(amount, unit)} ({key})")
        menus: dict[str, QMenu] = w.menus  # type: ignore[attr-defined]
        if "undo" not in getattr(w, "undo_actions", {}):
            undo = self.undo_stack.createUndoAction(w, "&Undo")
            undo.setShortcut(QKeySequence.StandardKey.Undo)
            redo = self.undo_stack.createRedoAction(w, "&Redo")
            redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
            for a in (undo, redo):
                a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
                w.addAction(a)
            edit = menus["edit"]
            first = edit.actions()[0]  # the window's Edit menu is never empty
            edit.insertActions(first, [undo, redo])
            edit.insertSeparator(first)
            w.undo_actions = {"undo": undo, "redo": redo}  # type: ignore[attr-defined]
        self.act_undo = w.undo_actions["undo"]  # type: ignore[attr-defined]
        self.act_redo = w.undo_actions["redo"]  # type: ignore[attr-defined]
        menu = QMenu("&Align", w)
        menu.addAction(self.act_align)
        menu.addAction(self.act_invert)
        menu.addSeparator()
        for a in self.nudge_actions.values():
            menu.addAction(a)
        menu.addSeparator()
        menu.addAction(self.toggleViewAction())
        w.menuBar().insertMenu(menus["help"].menuAction(), menu)
        menus["align"] = menu

    # ================================================================= session =============
    def _connect(self, session: Session) -> None:
        session.tracks_changed.connect(self._tracks_changed)
        session.track_changed.connect(self._track_changed)

    def _disconnect(self, session: Session) -> None:
        session.tracks_changed.disconnect(self._tracks_changed)
        session.track_changed.disconnect(self._track_changed)

    def _check_session(self) -> None:
        """Follow the window to another session (a project was opened)."""
        current = self.window_.session  # type: ignore[attr-defined]
        if current is self.session:
            return
        self._disconnect(self.session)
        self.session = current
        self._connect(current)
        self.undo_stack.clear()
        self.renderer, self.result, self.null_depth_db = None, None, None
        self.local_fit.detach()
        self.local_fit.timeline = current.timeline
        self.local_fit.attach()
        self.local_fit.curve.setData([], [])
        self._show_alignment()
        self._update_enabled()
        if current.alignment and current.alignment.get("match", True):
            self._schedule_null()

    @property
    def mix(self) -> Track | None:
        return self.session.track_by_role("mix")

    @property
    def acapella(self) -> Track | None:
        return self.session.track_by_role("acapella")

    @property
    def player(self) -> Any:
        return self.window_.playback.player  # type: ignore[attr-defined]

    def _tracks_changed(self) -> None:
        mix, aca = self.mix, self.acapella
        r = self.renderer
        if r is not None and (mix is None or aca is None or r.mix is not mix.audio or r.acapella is not aca.audio):
            self.renderer = None  # another file: the cached conversions are stale
            self.null_depth_db = None
        if self.session.alignment is None:
            self.result = None
            stale = self.session.track_by_role("residual")
            if stale is not None and stale.id == self._residual_id:  # of an acapella now gone
                self._residual_id = None
                self.session.remove_track(stale.id)
                return
        self._show_alignment()
        self._update_enabled()
        QTimer.singleShot(0, self._after_lanes_synced)

    def _after_lanes_synced(self) -> None:
        self._hook_lanes()
        self._sync_player_lane()
        self._apply_invert()

    def _lanes_drawn(self) -> None:
        self._check_session()
        self._hook_lanes()

    def _track_changed(self, track: Track) -> None:
        if track.role != "acapella":
            return
        # the playback controller (connected first) has just copied the track into the player
        self._apply_invert()
        self._show_offset()
        self._schedule_null()
        if self.session.track_by_role("residual") is not None or self.result is not None:
            self._residual_timer.start()

    def _update_enabled(self) -> None:
        both = self.mix is not None and self.acapella is not None
        self.align_button.setEnabled(both)
        self.act_align.setEnabled(both)
        for a in self.nudge_actions.values():
            a.setEnabled(self.acapella is not None)
        for b in self.nudge_buttons.values():
            b.setEnabled(self.acapella is not None)

    def _hook_lanes(self) -> None:
        """Let Alt+drag on the acapella lane move it (lanes are rebuilt when tracks change)."""
        aca = self.acapella
        lane = self.window_.lane_stack.lanes.get(aca.id) if aca is not None else None  # type: ignore[attr-defined]
        if lane is None:
            return
        for view in (lane.waveform, lane.spectrogram):
            vp = view.viewport()
            if id(vp) not in self._filtered:
                vp.installEventFilter(self.drag_filter)
                self._filtered.add(id(vp))

    # ================================================================= placement ===========
    def placement(self) -> Placement:
        aca = self.acapella
        assert aca is not None
        return Placement(aca.offset_frames, aca.gain_db, aca.polarity,
                         dict(self.session.alignment) if self.session.alignment else None)

    def apply_placement(self, p: Placement) -> None:
        """Put the acapella where ``p`` says (undo commands call this)."""
        self._check_session()
        aca = self.acapella
        if aca is None:
            return
        alignment = dict(p.alignment) if p.alignment is not None else None
        if alignment is not None and alignment.get("match", True):
            rate = self.session.sample_rate
            alignment.update(offset_samples=p.offset_frames, offset_seconds=p.offset_frames / rate,
                             gain_db=p.gain_db, polarity=p.polarity)
        if alignment != self.session.alignment:
            self.session.set_alignment(alignment)
        self.session.set_gain_db(aca.id, p.gain_db)
        self.session.set_polarity(aca.id, p.polarity)
        self.session.set_offset(aca.id, p.offset_frames)
        self._sync_player_lane()
        self._show_alignment()

    def nudge(self, amount: int, unit: str) -> None:
        """Move the acapella by ``amount`` samples or ms (one undo step)."""
        self._check_session()
        if self.acapella is None:
            return
        frames = amount if unit == "samples" else amount * self.session.sample_rate / 1000.0
        before = self.placement()
        after = Placement(before.offset_frames + frames, before.gain_db, before.polarity, before.alignment)
        self.undo_stack.push(PlacementCommand(self, nudge_text(amount, unit), before, after))

    def begin_drag(self) -> None:
        self._drag_before = self.placement() if self.acapella is not None else None

    def drag_to(self, offset_frames: float) -> None:
        aca = self.acapella
        if aca is not None and self._drag_before is not None:
            self.session.set_offset(aca.id, float(offset_frames))

    def end_drag(self, offset_frames: float) -> None:
        before, self._drag_before = self._drag_before, None
        if before is None or self.acapella is None:
            return
        moved = int(round(offset_frames - before.offset_frames))
        if moved == 0:
            self.session.set_offset(self.acapella.id, before.offset_frames)
            return
        after = Placement(float(offset_frames), before.gain_db, before.polarity, before.alignment)
        self.undo_stack.push(PlacementCommand(self, f"Drag acapella {moved:+d} samples", before, after))

    # ================================================================= auto-align ==========
    def auto_align(self) -> Job | None:
        """Align the acapella to the mix in a job; a match moves the lane (one undo step)."""
        self._check_session()
        mix, aca = self.mix, self.acapella
        if mix is None or aca is None:
            self.status_label.setText("Auto-align needs a mix and an acapella.")
            return None
        if self._align_job is not None and not self._align_job.done:
            return self._align_job
        mix_audio, aca_audio = mix.audio, aca.audio
        self.status_label.setText("Aligning…")
        self._set_status_style("")

        def work(ctx: JobContext) -> AlignmentResult:
            return align_acapella(mix_audio, aca_audio, progress=ctx.progress, cancel=ctx.cancel_token)

        def done(job: Job) -> None:
            self._align_job = None
            result: AlignmentResult = job.result
            current = self.acapella
            if current is None or current.audio is not aca_audio or self.mix is None or self.mix.audio is not mix_audio:
                self.status_label.setText("The files changed while aligning; align again.")
                return
            self._aligned(result, current)

        def ended(job: Job) -> None:
            self._align_job = None
            self.status_label.setText("Auto-align cancelled." if job.error is None else f"Auto-align failed: {job.error}")

        self._align_job = self.jobs.submit("Auto-align", work, on_finished=done, on_failed=ended, on_cancelled=ended)
        return self._align_job

    def _aligned(self, result: AlignmentResult, aca: Track) -> None:
        if not result.matched:
            self.status_label.setText(f"No match — {result.message}. Nothing was changed.")
            self._set_status_style("color: #ff7070; font-weight: bold;")
            self.aligned.emit(result)
            return
        self.result = result
        self.renderer = result.renderer
        self._direct_null = True
        self.null_depth_db = None
        before = self.placement()
        after = Placement(result.offset_samples, result.gain_db, result.polarity, result.to_json())
        self.undo_stack.push(PlacementCommand(self, "Auto-align acapella", before, after))
        self.status_label.setText(f"Aligned (null {result.null_depth_db:.1f} dB).")
        self._set_status_style("color: #80e080;")
        lf = result.local_fit
        self.local_fit.set_curve(lf.centre_seconds, lf.null_depth_db, result.null_depth_db)
        self._show_null(result.null_depth_db)
        self._residual_timer.stop()
        self.render_residual_lane()
        self.aligned.emit(result)

    def _set_status_style(self, css: str) -> None:
        self.status_label.setStyleSheet(css)

    def _show_alignment(self) -> None:
        al = self.session.alignment if self.acapella is not None else None
        v = self.value_labels
        if not al or not al.get("match", True):
            for label in v.values():
                label.setText("—")
            if self.acapella is not None:
                self._show_offset()
            return
        self._show_offset()
        v["drift"].setText(f"{float(al.get('drift_ppm') or 0.0):+.2f} ppm")
        v["confidence"].setText(f"{float(al.get('confidence') or 0.0):.2f}")

    def _show_offset(self) -> None:
        aca = self.acapella
        if aca is None:
            return
        rate = self.session.sample_rate
        v = self.value_labels
        v["offset"].setText(f"{aca.offset_frames:+.2f} samples ({1000 * aca.offset_frames / rate:+.3f} ms)")
        v["gain"].setText(f"{aca.gain_db:+.2f} dB")
        v["polarity"].setText("inverted (−1)" if aca.polarity < 0 else "normal (+1)")

    # ================================================================= null meter ==========
    def current_params(self) -> AlignmentParams | None:
        aca = self.acapella
        if aca is None:
            return None
        al = self.session.alignment or {}
        return AlignmentParams(aca.offset_frames, float(al.get("drift_ppm") or 0.0), aca.gain_db, aca.polarity)

    def _schedule_null(self) -> None:
        if self.mix is not None and self.acapella is not None and (self.renderer is not None or self.session.alignment):
            self._null_timer.start()

    def measure_null(self) -> None:
        """Update the meter for the current placement: on this thread when the renderer has
        the placement cached (tens of ms), else as a job."""
        params = self.current_params()
        if params is None or self.mix is None:
            return
        if self._null_job is not None or self._renderer_job is not None:
            self._null_timer.start()  # the renderer is in use on the engine thread
            return
        r = self.renderer
        if r is None:
            self._build_renderer()
            return
        if r.is_fast(params) and self._direct_null:
            t0 = time.perf_counter()
            fast = r.null(params, bands=False)
            # a very long file makes even the fast path slow: then measure on the engine thread
            self._direct_null = time.perf_counter() - t0 < DIRECT_NULL_BUDGET_SECONDS
            self._region = r.region
            self._show_null(fast.null_depth_db)
            return

        def work(ctx: JobContext) -> tuple[float, tuple[int, int]]:
            ctx.progress(0.0, "Measuring the null")
            return r.null(params, bands=False).null_depth_db, r.region

        def done(job: Job) -> None:
            self._null_job = None
            depth, self._region = job.result
            if self.current_params() == params:
                self._show_null(depth)
            else:
                self._null_timer.start()

        def dropped(job: Job) -> None:
            self._null_job = None

        self._null_job = self.jobs.submit("Measuring the null", work, on_finished=done,
                                          on_failed=dropped, on_cancelled=dropped)

    def _build_renderer(self) -> None:
        mix, aca, params = self.mix, self.acapella, self.current_params()
        if mix is None or aca is None or params is None:
            return
        mix_audio, aca_audio = mix.audio, aca.audio

        def work(ctx: JobContext) -> AlignmentRenderer:
            ctx.progress(0.0, "Preparing the null meter")
            r = AlignmentRenderer(mix_audio, aca_audio, params)
            r.null(params, bands=False)
            return r

        def done(job: Job) -> None:
            self._renderer_job = None
            if self.mix is not None and self.mix.audio is mix_audio and self.acapella is not None \
                    and self.acapella.audio is aca_audio:
                self.renderer = job.result
                self._direct_null = True
                self._sync_player_lane()
                self.measure_null()

        def dropped(job: Job) -> None:
            self._renderer_job = None

        self._renderer_job = self.jobs.submit("Preparing the null meter", work, on_finished=done,
                                              on_failed=dropped, on_cancelled=dropped)

    def _show_null(self, depth_db: float) -> None:
        self.null_depth_db = float(depth_db)
        self.null_label.setText(f"Null: {depth_db:.1f} dB")
        self.null_meter.setValue(int(round(min(max(-depth_db, 0.0), -METER_FLOOR_DB) * 10)))
        self.null_measured.emit(float(depth_db))

    # ================================================================= residual lane =======
    def render_residual_lane(self) -> Job | None:
        """(Re)render the residual lane (mix − aligned acapella) and its local-fit curve."""
        params, mix, r = self.current_params(), self.mix, self.renderer
        if params is None or mix is None or r is None:
            return None
        if self._residual_job is not None and not self._residual_job.done:
            self._residual_job.cancel()
        converted = r.drift_corrected(params.drift_ppm)
        mix_audio, region = mix.audio, self._region or r.region

        def work(ctx: JobContext) -> tuple[Audio, PeakPyramid, Any]:
            ctx.progress(0.0, "Rendering the residual")
            residual, nt = render_residual(mix_audio, converted, params, region=region)
            ctx.progress(0.7, "Residual overview")
            pyramid = PeakPyramid.build(residual, cancel=ctx.cancel_token)
            return Audio(residual, mix_audio.sample_rate), pyramid, nt

        def done(job: Job) -> None:
            self._residual_job = None
            if self.mix is None or self.mix.audio is not mix_audio:
                return
            audio, pyramid, nt = job.result
            self.window_.cache.put(audio, pyramid)  # type: ignore[attr-defined]
            existing = self.session.track_by_role("residual")
            if existing is None:
                # muted: it is there to look at; the invert-check is how to listen to it
                existing = Track(name=RESIDUAL_NAME, role="residual", audio=audio, mute=True)
                self.session.add_track(existing)
            else:
                self.session.replace_track_audio(existing.id, audio)
            self._residual_id = existing.id
            centres = nt.window_start_seconds + nt.window_seconds / 2
            self.local_fit.set_curve(centres, nt.window_null_depth_db, nt.null_depth_db)
            self.residual_ready.emit()

        def dropped(job: Job) -> None:
            if self._residual_job is job:
                self._residual_job = None

        self._residual_job = self.jobs.submit("Rendering the residual", work, on_finished=done,
                                              on_failed=dropped, on_cancelled=dropped)
        return self._residual_job

    # ================================================================= playback ============
    def _sync_player_lane(self) -> None:
        """With drift, the player plays the drift-corrected acapella (same offset/gain/polarity)."""
        aca, r = self.acapella, self.renderer
        params = self.current_params()
        if aca is None or r is None or params is None or params.drift_ppm == 0.0:
            return
        if aca.id not in self.player.lane_ids or r.acapella is not aca.audio:
            return
        self.player.set_lane(aca.id, r.drift_corrected(params.drift_ppm), self.session.sample_rate,
                             aca.offset_frames, aca.gain_db, aca.mute, aca.solo, aca.polarity)
        self._apply_invert()

    def set_invert_check(self, on: bool) -> None:
        """Play the mix with the aligned acapella inverted (the session's polarity is kept)."""
        self._apply_invert()
        if on and not self.window_.playback.playing:  # type: ignore[attr-defined]
            self.window_.playback.play()  # type: ignore[attr-defined]

    @property
    def invert_check(self) -> bool:
        return self.act_invert.isChecked()

    def _apply_invert(self) -> None:
        aca = self.acapella
        if aca is None or aca.id not in self.player.lane_ids:
            return
        self.player.set_lane_params(aca.id, polarity=-aca.polarity if self.invert_check else aca.polarity)


def install(window: QMainWindow) -> AlignPanel:
    """Add the align panel (a dock on the right) and its Align menu to ``window``."""
    panel = AlignPanel(window)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, panel)
    window.resizeDocks([panel], [PANEL_WIDTH_PX], Qt.Orientation.Horizontal)
    return panel
