"""Mask tools: paint the separation masks on the stem lanes' spectrograms, hear the result.

After Separate, every stem lane shows its mask as a translucent overlay. With a tool chosen in
the Mask Tools bar (or the Masks menu) the left button paints on a stem lane's spectrogram
instead of moving the playhead:

* **Brush** (B) pulls the stem's mask toward 1 under the brush, **Eraser** (E) toward 0;
* **Harmonic brush** (H) paints the pointer's pitch and its harmonics (follow a note's f0);
* **Box** (X) drags a time × frequency rectangle, then fills, clears, scales or moves it;
* **Lasso** (L) draws round a free-hand region, then does the same (the Box setting);
* **Move** (T) moves what is under the brush from this stem to the chosen target stem
  (SpectraLayers' cut/paste between layers);
* **Contrast** applies a soft threshold to the chosen stem's mask (the selection, or the
  whole track).

The other stems change so all stems still sum to the mix (:mod:`engine.maskedit`). The overlay
follows the pointer; when the stroke ends only the edited time range is re-rendered and the
stems' arrays are written in place, so the player (which holds them by reference) plays the
edit within a few tens of milliseconds, without stopping. Every stroke and operation is one
step on the window's undo stack, named in the Edit menu. Masks at full STFT resolution live in
the session (``session.masks``) and are saved with the project.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QObject, QPointF, QRectF, Qt
from PySide6.QtGui import QActionGroup, QColor, QPainterPath, QPen, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QGraphicsEllipseItem,
    QGraphicsPathItem,
    QGraphicsRectItem,
    QLabel,
    QMainWindow,
    QMenu,
    QSlider,
    QSpinBox,
    QToolBar,
)

from engine.jobs import Job, JobContext
from engine.mask_display import update_mask_image
from engine.maskedit import (
    BoxEdit,
    Brush,
    ContrastEdit,
    EditRecord,
    LassoEdit,
    LiveStroke,
    MaskLayers,
)
from engine.maskedit.ops import LOG_F_FLOOR_HZ
from engine.session import Session, Track
from gui.actions import window_action
from gui.lanes import LaneWidget, mask_stft
from gui.views import MASK_OVERLAY_OPACITY

#: tool name -> (menu text, shortcut, tooltip)
TOOLS: dict[str, tuple[str, str, str]] = {
    "select": ("&Select (no mask tool)", "V", "Mouse moves the playhead and selects time, as usual"),
    "brush": ("&Brush", "B", "Paint the stem's mask toward 1 (louder in this stem, quieter in the others)"),
    "eraser": ("&Eraser", "E", "Paint the stem's mask toward 0 (the energy goes to the other stems)"),
    "harmonic": ("&Harmonic Brush", "H", "Paint a note: the pointer is the fundamental, its harmonics follow"),
    "box": ("Bo&x", "X", "Drag a time × frequency box, then fill, clear or scale it"),
    "lasso": ("&Lasso", "L", "Draw round a free-hand time × frequency region, then fill, clear, scale or "
              "move it (the Box setting)"),
    "move": ("&Move to Stem", "T", "Move what is under the brush from this stem to the target stem"),
}
BOX_MODES = {"Fill": "boost", "Clear": "cut", "Scale": "scale", "Move to target": "move"}


class MaskEditCommand(QUndoCommand):
    """One mask edit on the undo stack (already applied when pushed)."""

    def __init__(self, editor: MaskEditor, layers: MaskLayers, record: EditRecord) -> None:
        super().__init__(record.label)
        self.editor, self.layers, self.record = editor, layers, record
        self._first = True

    def redo(self) -> None:
        if self._first:  # pushed after it was applied
            self._first = False
            return
        self._step(self.layers.redo)

    def undo(self) -> None:
        self._step(self.layers.undo)

    def _step(self, fn: Any) -> None:
        if self.layers is not self.editor.layers:  # a newer separation replaced these masks
            self.setObsolete(True)
            return
        self.editor.wait_for_job()
        big = self.record.frame1 - self.record.frame0 > 4 * self.layers.block_frames * 16
        if big:
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            fn(self.record)
        finally:
            if big:
                QApplication.restoreOverrideCursor()
        self.editor.audio_changed(self.record.frame0, self.record.frame1)


class _LanePainter:
    """The mouse handler a stem lane's spectrogram gets while a mask tool is active."""

    def __init__(self, editor: MaskEditor, lane: LaneWidget) -> None:
        self.editor, self.lane = editor, lane

    def _track_point(self, pos: QPointF) -> tuple[float, float]:
        track = self.lane.track
        assert track is not None
        sr = self.editor.session.sample_rate
        t = pos.x() - track.offset_frames / sr
        y = pos.y()
        hz = 10.0 ** y if self.lane.spectrogram.log_frequency else y
        return t, max(hz, 0.0)

    def press(self, pos: QPointF) -> None:
        self.editor.press(self.lane, self._track_point(pos), pos)

    def drag(self, pos: QPointF) -> None:
        self.editor.drag(self.lane, self._track_point(pos), pos)

    def release(self, pos: QPointF) -> None:
        self.editor.release(self.lane, self._track_point(pos), pos)

    def hover(self, pos: QPointF | None) -> None:
        self.editor.show_brush(self.lane, pos)


class MaskEditor(QObject):
    """The Mask Tools bar, the Masks menu and the painting logic of a main window."""

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.window_ = window
        self.jobs = window.jobs  # type: ignore[attr-defined]
        stack = getattr(window, "undo_stack", None)
        if not isinstance(stack, QUndoStack):
            stack = QUndoStack(window)
            window.undo_stack = stack  # type: ignore[attr-defined]
        self.undo_stack: QUndoStack = stack
        self.layers: MaskLayers | None = None
        self._layers_key: tuple[Any, ...] | None = None
        self.tool = "select"
        self._live: LiveStroke | None = None
        self._live_lane: LaneWidget | None = None
        self._box_start: tuple[float, float] | None = None
        self._box_item: QGraphicsRectItem | None = None
        self._box_anchor = QPointF()
        self._box_lane: LaneWidget | None = None
        self._lasso: list[tuple[float, float]] = []  # the lasso's points (track seconds, Hz)
        self._lasso_view: list[QPointF] = []  # the same in view coordinates (for its outline)
        self._lasso_item: QGraphicsPathItem | None = None
        self._lasso_lane: LaneWidget | None = None
        self._outline: list[QGraphicsEllipseItem] = []  # the brush under the pointer
        self._outline_lane: LaneWidget | None = None
        self.last_record: EditRecord | None = None
        self.job: Job | None = None  # a whole-track edit being rendered
        self._built = False
        self._build_toolbar()
        self._built = True
        self._build_menu()
        window.lanes_drawn.connect(self.sync_lanes)  # type: ignore[attr-defined]
        separate = getattr(window, "panels", {}).get("separate")
        if separate is not None:
            separate.separated.connect(self.sync_lanes)
        self.sync_lanes()

    # ================================================================= UI ===================
    def _build_toolbar(self) -> None:
        w = self.window_
        tb = QToolBar("Mask Tools", w)
        tb.setObjectName("MaskToolBar")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toolbar = tb
        self.tool_group = QActionGroup(self)
        self.tool_group.setExclusive(True)
        self.tool_actions = {}
        for name, (text, key, tip) in TOOLS.items():
            a = window_action(w, text, key, lambda on, n=name: on and self._built and self.set_tool(n), checkable=True)
            a.setToolTip(f"{tip} ({key})")
            a.setIconText(text.replace("&", "").replace(" (no mask tool)", ""))
            self.tool_group.addAction(a)
            self.tool_actions[name] = a
            tb.addAction(a)
        self.tool_actions["select"].setChecked(True)  # (set_tool waits for the bar: _built)
        tb.addSeparator()

        def spin(lo: float, hi: float, value: float, suffix: str, tip: str, decimals: int = 0,
                 step: float = 1.0) -> QDoubleSpinBox:
            s = QDoubleSpinBox()
            s.setRange(lo, hi)
            s.setDecimals(decimals)
            s.setSingleStep(step)
            s.setValue(value)
            s.setSuffix(suffix)
            s.setToolTip(tip)
            s.setKeyboardTracking(False)
            return s

        self.width_ms = spin(5, 5000, 100, " ms", "Brush width in time")
        self.height_hz = spin(10, 20000, 300, " Hz", "Brush height on a linear frequency axis")
        self.height_oct = spin(0.02, 4, 0.4, " oct", "Brush height on a log frequency axis", 2, 0.05)
        self.feather = QSlider(Qt.Orientation.Horizontal)
        self.feather.setRange(0, 100)
        self.feather.setValue(50)
        self.feather.setFixedWidth(70)
        self.feather.setToolTip("Feather: 0 % hard edge, 100 % soft all the way to the centre")
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(1, 100)
        self.strength.setValue(100)
        self.strength.setFixedWidth(70)
        self.strength.setToolTip("Strength of the brush, box fill/clear or move")
        self.harmonics = QSpinBox()
        self.harmonics.setRange(2, 40)
        self.harmonics.setValue(8)
        self.harmonics.setToolTip("Harmonic brush: fundamental plus this many partials in all")
        self.box_mode = QComboBox()
        self.box_mode.addItems(list(BOX_MODES))
        self.box_mode.setToolTip("What the box does to the stem's mask")
        self.box_factor = spin(0.0, 4.0, 0.5, "×", "Box ▸ Scale: multiply the mask by this", 2, 0.1)
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("Move / Box ▸ Move to target: the stem that receives the energy")
        self.stem_combo = QComboBox()
        self.stem_combo.setToolTip("The stem Contrast applies to (painting on a lane selects it)")
        self.threshold = spin(0.05, 0.95, 0.5, "", "Contrast: mask values at this level map to 0.5", 2, 0.05)
        self.contrast = spin(0.25, 8.0, 2.0, "", "Contrast: above 1 pushes the mask toward 0/1", 2, 0.25)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(5, 100)
        self.opacity.setValue(int(round(MASK_OVERLAY_OPACITY * 100)))
        self.opacity.setFixedWidth(70)
        self.opacity.setToolTip("Opacity of the mask overlay")
        self.opacity.valueChanged.connect(self._opacity_changed)
        self.widget_actions = {}
        for label, widget in (("Size", self.width_ms), ("×", self.height_hz), ("", self.height_oct),
                              ("Feather", self.feather), ("Strength", self.strength),
                              ("Harmonics", self.harmonics), ("Box", self.box_mode), ("", self.box_factor),
                              ("Target", self.target_combo)):
            if label:
                tb.addWidget(QLabel(f" {label} "))
            self.widget_actions[widget] = tb.addWidget(widget)
        # second bar: whole-mask operations and the overlay
        tb2 = QToolBar("Mask Contrast and Overlay", w)
        tb2.setObjectName("MaskContrastBar")
        tb2.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toolbar2 = tb2
        tb2.addWidget(QLabel(" Stem "))
        tb2.addWidget(self.stem_combo)
        tb2.addWidget(QLabel(" Threshold "))
        tb2.addWidget(self.threshold)
        tb2.addWidget(QLabel(" Contrast "))
        tb2.addWidget(self.contrast)
        self.act_contrast = window_action(w, "Apply &Contrast to Stem", None, self.apply_contrast)
        self.act_contrast.setIconText("Apply")
        self.act_contrast.setToolTip("Apply threshold/contrast to the stem's mask (in the selection, "
                                     "or the whole track)")
        tb2.addAction(self.act_contrast)
        tb2.addSeparator()
        tb2.addWidget(QLabel(" Overlay opacity "))
        tb2.addWidget(self.opacity)
        w.addToolBarBreak(Qt.ToolBarArea.TopToolBarArea)
        w.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
        w.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb2)
        self._update_axis_controls()

    def _build_menu(self) -> None:
        w = self.window_
        menus: dict[str, QMenu] = w.menus  # type: ignore[attr-defined]
        menu = QMenu("&Masks", w)
        for a in self.tool_actions.values():
            menu.addAction(a)
        menu.addSeparator()
        menu.addAction(self.act_contrast)
        menu.addSeparator()
        menu.addAction(self.toolbar.toggleViewAction())
        menu.addAction(self.toolbar2.toggleViewAction())
        w.menuBar().insertMenu(menus["help"].menuAction(), menu)
        menus["masks"] = menu

    def _opacity_changed(self, value: int) -> None:
        for lane in self._stem_lanes():
            lane.spectrogram.set_mask_opacity(value / 100.0)

    def _update_axis_controls(self) -> None:
        log_f = bool(getattr(self.window_, "lane_stack", None) and self.window_.lane_stack.log_frequency)  # type: ignore[attr-defined]
        self.widget_actions[self.height_hz].setVisible(not log_f)
        self.widget_actions[self.height_oct].setVisible(log_f)

    # ================================================================= state ================
    @property
    def session(self) -> Session:
        return self.window_.session  # type: ignore[attr-defined, no-any-return]

    def _stem_tracks(self) -> list[Track]:
        s = self.session
        return [t for t in s.tracks if t.role in ("stem", "residual") and t.id in s.masks]

    def _stem_lanes(self) -> list[LaneWidget]:
        lanes = self.window_.lane_stack.lanes  # type: ignore[attr-defined]
        return [lanes[t.id] for t in self._stem_tracks() if t.id in lanes]

    def ensure_layers(self) -> MaskLayers | None:
        """The session's mask layers (built on first use; rebuilt after a new separation)."""
        session = self.session
        mix = session.track_by_role("mix")
        stems = self._stem_tracks()
        if mix is None or len(stems) < 2:
            self.layers, self._layers_key = None, None
            return None
        key = (id(session), id(mix.audio.samples), tuple((t.id, id(t.audio.samples)) for t in stems))
        if key == self._layers_key and self.layers is not None:
            return self.layers
        masks = {t.name: session.masks[t.id] for t in stems}
        ready = all(m.ndim == 2 and m.dtype.name == "float32" for m in masks.values())
        try:
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            layers = MaskLayers(mix.audio.samples, {t.name: t.audio.samples for t in stems}, masks,
                                mix.audio.sample_rate, mask_stft(session), already_normalised=ready)
        except ValueError as exc:
            self._say(f"These stems' masks cannot be edited: {exc}")
            self.layers, self._layers_key = None, None
            return None
        finally:
            QApplication.restoreOverrideCursor()
        for t in stems:
            if session.masks[t.id] is not layers.masks[t.name]:
                session.masks[t.id] = layers.masks[t.name]
                lane = self.window_.lane_stack.lanes.get(t.id)  # type: ignore[attr-defined]
                if lane is not None:
                    lane.spectrogram.set_mask(layers.masks[t.name], mask_stft(session))
        layers.listeners.append(self.masks_changed)
        self.layers, self._layers_key = layers, key
        return layers

    def sync_lanes(self) -> None:
        """Give the stem lanes the current tool and refresh the stem lists."""
        stems = [t.name for t in self._stem_tracks()]
        for combo in (self.stem_combo, self.target_combo):
            current = combo.currentText()
            if [combo.itemText(i) for i in range(combo.count())] != stems:
                combo.blockSignals(True)
                combo.clear()
                combo.addItems(stems)
                if current in stems:
                    combo.setCurrentText(current)
                elif combo is self.target_combo and len(stems) > 1:
                    combo.setCurrentIndex(1)
                combo.blockSignals(False)
        enabled = len(stems) >= 2
        for name, a in self.tool_actions.items():
            a.setEnabled(enabled or name == "select")
        self.act_contrast.setEnabled(enabled)
        if not enabled and self.tool != "select":
            self.tool_actions["select"].setChecked(True)
        self._update_axis_controls()
        painting = self.tool != "select"
        edit_ids = {t.id for t in self._stem_tracks()}
        for tid, lane in self.window_.lane_stack.lanes.items():  # type: ignore[attr-defined]
            handler = _LanePainter(self, lane) if painting and tid in edit_ids else None
            lane.spectrogram.vb.edit_handler = handler
            lane.spectrogram.setCursor(Qt.CursorShape.CrossCursor if handler else Qt.CursorShape.ArrowCursor)
            lane.spectrogram.set_mask_opacity(self.opacity.value() / 100.0)

    def set_tool(self, name: str) -> None:
        """Choose a tool (``select`` gives the mouse back to the timeline)."""
        if name not in TOOLS:
            raise ValueError(f"unknown mask tool {name!r}")
        if self._live is not None:
            self._live.cancel()
            self._live = None
        self.tool = name
        self._hide_brush()
        if not self.tool_actions[name].isChecked():
            self.tool_actions[name].setChecked(True)
        if name != "select" and self.ensure_layers() is None:
            self._say("Separate first: mask tools edit the stems' masks.")
        self.sync_lanes()

    def brush(self) -> Brush:
        log_f = self.window_.lane_stack.log_frequency  # type: ignore[attr-defined]
        return Brush(
            radius_seconds=self.width_ms.value() / 2000.0, radius_hz=self.height_hz.value() / 2.0,
            radius_octaves=self.height_oct.value() / 2.0, log_frequency=bool(log_f),
            hardness=1.0 - self.feather.value() / 100.0, strength=self.strength.value() / 100.0,
            harmonics=self.harmonics.value() if self.tool == "harmonic" else 1,
        )

    def _say(self, text: str) -> None:
        bar = self.window_.statusBar()
        if bar is not None:
            bar.showMessage(text, 5000)

    # ================================================================= painting =============
    def press(self, lane: LaneWidget, point: tuple[float, float], view_pos: QPointF) -> None:
        layers = self.ensure_layers()
        if layers is None or lane.track is None:
            return
        if self.job is not None:
            self._say("Wait: the contrast edit is still being rendered.")
            return
        stem = lane.track.name
        self.stem_combo.setCurrentText(stem)
        if self.tool == "box":
            self._box_start = point
            self._show_box(lane, view_pos, view_pos)
            return
        if self.tool == "lasso":
            self._lasso, self._lasso_view = [point], [QPointF(view_pos)]
            self._show_lasso(lane)
            return
        action = {"brush": "boost", "eraser": "cut", "harmonic": "boost", "move": "move"}[self.tool]
        target = None
        if action == "move":
            target = self.target_combo.currentText()
            if target == stem or not target:
                self._say("Move: choose a target stem other than the one you paint on.")
                return
        self._live = layers.begin_stroke(stem, action, self.brush(), target=target)
        self._live_lane = lane
        self._live.extend([point])

    def drag(self, lane: LaneWidget, point: tuple[float, float], view_pos: QPointF) -> None:
        if self.tool == "box":
            if self._box_start is not None:
                self._show_box(lane, view_pos, view_pos)
            return
        if self.tool == "lasso":
            if self._lasso and lane is self._lasso_lane:
                self._lasso.append(point)
                self._lasso_view.append(QPointF(view_pos))
                self._show_lasso(lane)
            return
        if self._live is not None and lane is self._live_lane:
            self._live.extend([point])

    def release(self, lane: LaneWidget, point: tuple[float, float], view_pos: QPointF) -> None:
        layers = self.layers
        if self.tool == "box":
            start, self._box_start = self._box_start, None
            self._hide_box()
            if start is None or layers is None or lane.track is None:
                return
            chosen = self._region_mode(lane.track.name, "Box")
            if chosen is None:
                return
            mode, target = chosen
            (t0, f0), (t1, f1) = start, point
            feather = self.feather.value() / 100.0
            edit = BoxEdit(lane.track.name, mode, min(t0, t1), max(t0, t1), min(f0, f1), max(f0, f1),
                           strength=self.strength.value() / 100.0, factor=self.box_factor.value(),
                           feather_seconds=0.5 * feather * abs(t1 - t0), feather_hz=0.5 * feather * abs(f1 - f0),
                           target=target)
            record = layers.apply(edit)
            if record is not None:
                self._push(layers, record)
            return
        if self.tool == "lasso":
            points = self._lasso + [point] if self._lasso and lane is self._lasso_lane else []
            self._hide_lasso()
            if len(points) < 3 or layers is None or lane.track is None:
                return
            self._apply_lasso(layers, lane, points)
            return
        live, self._live, self._live_lane = self._live, None, None
        if live is None or layers is None:
            return
        live.extend([point])
        record = live.finish()
        if record is not None:
            self._push(layers, record)

    def _region_mode(self, stem: str, tool: str) -> tuple[str, str | None] | None:
        """The Box setting's action and target for a box or lasso on ``stem``; None (with a
        message) for a move without another stem to move to."""
        mode = BOX_MODES[self.box_mode.currentText()]
        target = self.target_combo.currentText() if mode == "move" else None
        if mode == "move" and (not target or target == stem):
            self._say(f"{tool} ▸ Move: choose a target stem other than this one.")
            return None
        return mode, target

    def _apply_lasso(self, layers: MaskLayers, lane: LaneWidget, points: list[tuple[float, float]]) -> None:
        """The region drawn round ``points`` (track seconds, Hz), with the Box setting."""
        assert lane.track is not None
        chosen = self._region_mode(lane.track.name, "Lasso")
        if chosen is None:
            return
        mode, target = chosen
        log_f = bool(lane.spectrogram.log_frequency)
        t = [p[0] for p in points]
        f = [math.log2(max(p[1], LOG_F_FLOOR_HZ)) if log_f else p[1] for p in points]
        feather = self.feather.value() / 100.0  # of the region's half-extent, as the box
        edit = LassoEdit(lane.track.name, mode, tuple(points), strength=self.strength.value() / 100.0,
                         factor=self.box_factor.value(), feather_seconds=0.5 * feather * (max(t) - min(t)) / 2,
                         feather_freq=0.5 * feather * (max(f) - min(f)) / 2, log_frequency=log_f, target=target)
        record = layers.apply(edit)
        if record is not None:
            self._push(layers, record)

    def _push(self, layers: MaskLayers, record: EditRecord) -> None:
        self.last_record = record
        self.undo_stack.push(MaskEditCommand(self, layers, record))
        self.audio_changed(record.frame0, record.frame1)

    def apply_contrast(self) -> None:
        layers = self.ensure_layers()
        stem = self.stem_combo.currentText()
        if layers is None or not stem:
            self._say("Separate first: Contrast edits a stem's mask.")
            return
        sel = self.session.timeline.selection
        sr = self.session.sample_rate
        start, stop = (sel[0] / sr, sel[1] / sr) if sel else (None, None)
        edit = ContrastEdit(stem, self.threshold.value(), self.contrast.value(), start, stop)
        if self.job is not None:
            return

        def work(ctx: JobContext) -> EditRecord | None:
            # the masks and audio change off the GUI thread; painting waits (self.job)
            return layers.apply(edit, notify=False, progress=lambda f: ctx.progress(f, "Rendering the stems"))

        def done(job: Job) -> None:
            self._job_ended()
            record: EditRecord | None = job.result
            if record is not None and layers is self.layers:
                self.masks_changed(record.frame0, record.frame1)
                self._push(layers, record)

        def failed(job: Job) -> None:
            self._job_ended()
            self._say(f"Contrast failed: {job.error}")

        # while the job changes the masks, nothing else may: no painting (press), no undo/redo
        self.act_contrast.setEnabled(False)
        for a in getattr(self.window_, "undo_actions", {}).values():
            a.setEnabled(False)
        self.job = self.jobs.submit(edit.label, work, on_finished=done, on_failed=failed, on_cancelled=failed)

    def _job_ended(self) -> None:
        self.job = None
        self.act_contrast.setEnabled(True)
        actions = getattr(self.window_, "undo_actions", {})
        if "undo" in actions:
            actions["undo"].setEnabled(self.undo_stack.canUndo())
            actions["redo"].setEnabled(self.undo_stack.canRedo())

    def wait_for_job(self) -> None:
        """Block until a running whole-track edit has changed the masks and audio."""
        if self.job is not None:
            self.job.wait()

    # ================================================================= display ==============
    def masks_changed(self, frame0: int, frame1: int) -> None:
        """Redraw the overlay columns over frames ``[frame0, frame1)`` on every stem lane."""
        layers = self.layers
        if layers is None:
            return
        for lane in self._stem_lanes():
            view = lane.spectrogram
            img = view.mask_image
            if img is None or lane.track is None or view.mask is not layers.masks.get(lane.track.name):
                continue
            update_mask_image(img, view.mask, frame0, frame1, layers.sample_rate)
            view.mask_columns_changed()

    def audio_changed(self, frame0: int, frame1: int) -> None:
        """After a stroke, box, contrast, undo or redo: overlays, waveforms, spectrograms."""
        layers = self.layers
        if layers is None:
            return
        s0, s1 = layers.sample_span(frame0, frame1)
        size = layers.block_frames * layers.stft.hop_length
        s0, s1 = (s0 // size) * size, min(math.ceil(s1 / size) * size, layers.samples_count)
        cache = self.window_.cache  # type: ignore[attr-defined]
        for lane in self._stem_lanes():
            if lane.track is None:
                continue
            pyramid = cache.get(lane.track.audio)
            if pyramid is not None:
                pyramid.update(s0, s1)
                lane.waveform.schedule_redraw()
            lane.spectrogram.refresh_audio()
        self.session.mark_dirty()

    # ---- brush outline -----------------------------------------------------------------------
    def show_brush(self, lane: LaneWidget, pos: QPointF | None) -> None:
        """Outline the brush's footprint (and its harmonics) under the pointer; None hides it."""
        if pos is None or self.tool in ("select", "box", "lasso") or lane is not self._outline_lane:
            self._hide_brush()
            if pos is None or self.tool in ("select", "box", "lasso"):
                return
        view = lane.spectrogram
        log_f = view.log_frequency
        rw = self.width_ms.value() / 2000.0
        count = self.harmonics.value() if self.tool == "harmonic" else 1
        pen = QPen(QColor("#ffffff"))
        pen.setCosmetic(True)
        while len(self._outline) < count:
            item = QGraphicsEllipseItem()
            item.setPen(pen)
            item.setZValue(20)
            view.addItem(item)
            self._outline.append(item)
        while len(self._outline) > count:
            view.removeItem(self._outline.pop())
        self._outline_lane = lane
        for h, item in enumerate(self._outline, start=1):
            if log_f:
                rh = self.height_oct.value() / 2.0 * math.log10(2.0)
                y = pos.y() + math.log10(h)
            else:
                rh = self.height_hz.value() / 2.0
                y = pos.y() * h
            item.setRect(QRectF(pos.x() - rw, y - rh, 2 * rw, 2 * rh))

    def _hide_brush(self) -> None:
        if self._outline_lane is not None:
            for item in self._outline:
                self._outline_lane.spectrogram.removeItem(item)
        self._outline, self._outline_lane = [], None

    # ---- box rubber band -----------------------------------------------------------------------
    def _show_box(self, lane: LaneWidget, anchor: QPointF, b: QPointF) -> None:
        """Show the box from the press point (``anchor`` on the first call) to ``b``."""
        if self._box_item is None:
            self._box_anchor = anchor
            self._box_item = _dashed_outline(lane, QGraphicsRectItem())
            self._box_lane = lane
        self._box_item.setRect(QRectF(self._box_anchor, b).normalized())

    def _hide_box(self) -> None:
        if self._box_item is not None and self._box_lane is not None:
            self._box_lane.spectrogram.removeItem(self._box_item)
        self._box_item, self._box_lane = None, None


    # ---- lasso outline ---------------------------------------------------------------------------
    def _show_lasso(self, lane: LaneWidget) -> None:
        """Draw the lasso's path so far, closed back to its start."""
        if self._lasso_item is None:
            self._lasso_item, self._lasso_lane = _dashed_outline(lane, QGraphicsPathItem()), lane
        path = QPainterPath(self._lasso_view[0])
        for p in self._lasso_view[1:]:
            path.lineTo(p)
        path.closeSubpath()
        self._lasso_item.setPath(path)

    def _hide_lasso(self) -> None:
        if self._lasso_item is not None and self._lasso_lane is not None:
            self._lasso_lane.spectrogram.removeItem(self._lasso_item)
        self._lasso_item, self._lasso_lane = None, None
        self._lasso, self._lasso_view = [], []


def _dashed_outline(lane: LaneWidget, item: Any) -> Any:
    """``item`` (a rect or path item) drawn as a white dashed outline over ``lane``'s spectrogram."""
    pen = QPen(QColor("#ffffff"))
    pen.setCosmetic(True)
    pen.setStyle(Qt.PenStyle.DashLine)
    item.setPen(pen)
    item.setZValue(20)
    lane.spectrogram.addItem(item)
    return item


def install(window: QMainWindow) -> MaskEditor:
    """Add the Mask Tools bar and Masks menu to ``window``."""
    editor = MaskEditor(window)
    window.mask_editor = editor  # type: ignore[attr-defined]
    return editor

