"""Find Similar: query by example in the GUI (the ``query`` engine, seed 002 done properly).

1. The query: select a region on any lane (the timeline's selection) and click **Use
   Selection**, or open/drop a 1–3 s clip.
2. **Find Similar** (a job with progress and Cancel) runs the AST detector over the whole mix;
   every segment where the sound plays is highlighted on the mix lane with its score. Nothing
   found says so: the detector's gates are absolute, an absent sound gives no segments.
3. The segments are the user's to change: drag a segment's edges or body on the mix lane, delete
   the selected one, or add the timeline's selection as a new segment.
4. **Separate** pulls the sound out of those segments: a ``target`` and a ``residual`` lane
   (they sum to the mix exactly), with masks the Mask Tools can edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.audio import Audio, load_audio
from engine.errors import InputError
from engine.jobs import Job, JobContext
from engine.query import Detection, Segment, detect_segments, query_from_region
from engine.separators.base import get_separator
from engine.separators.query import QuerySeparator, detection_params
from engine.session import Session
from gui.actions import add_run_row, set_scrolling_body, show_status, window_action
from gui.lanes import dropped_audio_paths, looks_like_audio
from gui.separate_panel import control_value, make_control, prepare_for_lanes
from gui.theme import COLORS
from gui.views import format_time

#: Parameters shown under "Detection" (the rest go under "Separation").
DETECTION_KEYS = ("hop_seconds", "class_threshold", "cosine_threshold", "use_class_gate", "use_cosine_gate",
                  "query_class_confidence", "class_must_match_stem", "class_follows_stem", "related_class_probability",
                  "stem_alone_for",
                  "listen", "query_listen", "use_stem_gate", "stem_threshold_db", "stem_hysteresis_db",
                  "hysteresis", "percentile", "class_weight", "smoothing_windows", "min_duration_ms",
                  "merge_gap_ms", "padding_ms")
SEGMENT_BRUSH = (120, 220, 140, 55)
SEGMENT_PEN = "#78dc8c"


class QueryPanel(QDockWidget):
    """Dock: query, detection parameters, Find Similar, editable segments, Separate."""

    def __init__(self, window: QMainWindow) -> None:
        super().__init__("Find Similar", window)
        self.setObjectName("QueryPanel")
        self.window_ = window
        self.jobs = window.jobs  # type: ignore[attr-defined]
        self.separator: QuerySeparator = get_separator("query")  # type: ignore[assignment]
        self.query: Audio | None = None
        self.query_label_text = ""
        self.query_from_mix = False  # the query is a region of the mix (query_listen "auto")
        self.detection: Detection | None = None
        self._detected_inputs: tuple[Audio | None, Audio | None] = (None, None)
        self.segments: list[Segment] = []
        self.job: Job | None = None
        self._items: list[list[pg.LinearRegionItem]] = []  # per segment: one region per mix view
        self._labels: list[pg.TextItem] = []
        self.controls: dict[str, QWidget] = {}
        self._build_ui()
        self._make_actions()
        self.setAcceptDrops(True)
        window.lanes_drawn.connect(self._draw_segments)  # type: ignore[attr-defined]
        self._update_enabled()

    # ================================================================= UI ===================
    def _build_ui(self) -> None:
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        self.query_label = QLabel("No query yet: select a region on a lane, or open a 1–3 s clip.")
        self.query_label.setWordWrap(True)
        lay.addWidget(self.query_label)
        row = QHBoxLayout()
        self.use_selection_button = QPushButton("Use Selection")
        self.use_selection_button.setToolTip("The timeline's selection on the mix becomes the query")
        self.use_selection_button.clicked.connect(self.use_selection)
        self.open_button = QPushButton("Open Clip…")
        self.open_button.setToolTip("Open a 1–3 s audio clip as the query (or drop it on this panel)")
        self.open_button.clicked.connect(self._open_clicked)
        row.addWidget(self.use_selection_button)
        row.addWidget(self.open_button)
        lay.addLayout(row)
        self.detect_box = QGroupBox("Detection")
        detect_form = QFormLayout(self.detect_box)
        self.sep_box = QGroupBox("Separation")
        sep_form = QFormLayout(self.sep_box)
        for p in self.separator.parameters:
            w = make_control(p)
            self.controls[p.name] = w
            (detect_form if p.name in DETECTION_KEYS else sep_form).addRow(p.name.replace("_", " "), w)
        lay.addWidget(self.detect_box)
        self.find_button, self.cancel_button, self.progress_bar, self.status_label = add_run_row(
            lay, "Find Similar", self.find_similar, self.cancel)
        lay.addWidget(QLabel("Segments (drag their edges on the mix lane):"))
        self.segment_list = QListWidget()
        self.segment_list.setMinimumHeight(90)
        lay.addWidget(self.segment_list)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add Selection")
        self.add_button.setToolTip("Add the timeline's selection as a segment")
        self.add_button.clicked.connect(self.add_selection)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected segment (Del)")
        self.delete_button.clicked.connect(self.delete_selected)
        row.addWidget(self.add_button)
        row.addWidget(self.delete_button)
        lay.addLayout(row)
        lay.addWidget(self.sep_box)
        self.separate_button = QPushButton("Separate Target")
        self.separate_button.setToolTip("Pull the sound out of the segments: target and residual lanes")
        self.separate_button.clicked.connect(self.separate)
        lay.addWidget(self.separate_button)
        lay.addStretch(1)
        set_scrolling_body(self, body)

    def _make_actions(self) -> None:
        w = self.window_
        self.act_find = window_action(w, "&Find Similar to Selection", "Ctrl+F", self._find_from_menu)
        self.act_delete = QAction("Delete Segment", self.segment_list)
        self.act_delete.setShortcut(QKeySequence.StandardKey.Delete)
        self.act_delete.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.act_delete.triggered.connect(self.delete_selected)
        self.segment_list.addAction(self.act_delete)
        menu = w.menus["separate"]  # type: ignore[attr-defined]
        menu.insertAction(menu.actions()[-1], self.act_find)
        menu.insertAction(menu.actions()[-1], self.toggleViewAction())

    # ================================================================= state ================
    @property
    def session(self) -> Session:
        return self.window_.session  # type: ignore[attr-defined, no-any-return]

    def _mix(self) -> Audio | None:
        t = self.session.track_by_role("mix")
        return t.audio if t is not None else None

    def values(self) -> dict[str, Any]:
        return self.separator.resolve_parameters({k: control_value(w) for k, w in self.controls.items()})

    def _update_enabled(self) -> None:
        running = self.job is not None and not self.job.done
        has_mix = self._mix() is not None
        self.find_button.setEnabled(not running and has_mix and self.query is not None)
        self.cancel_button.setEnabled(running)
        self.use_selection_button.setEnabled(not running and has_mix)
        self.separate_button.setEnabled(not running and has_mix and self.query is not None and bool(self.segments))
        self.add_button.setEnabled(not running and has_mix)
        self.delete_button.setEnabled(not running and bool(self.segments))

    def _say(self, text: str, error: bool = False) -> None:
        show_status(self.status_label, text, error)

    # ================================================================= query ================
    def set_query(self, audio: Audio, label: str, from_mix: bool = False) -> None:
        self.query = audio
        self.query_from_mix = from_mix
        self.query_label_text = label
        self.query_label.setText(f"Query: {label} ({audio.duration_seconds:.2f} s)")
        self._update_enabled()

    def use_selection(self) -> bool:
        """The timeline's selection becomes the query: the audio of the lane it was dragged on
        (a stem, the acapella), or the mix's when it was made elsewhere."""
        mix = self._mix()
        tl = self.session.timeline
        sel = tl.selection
        if mix is None:
            self._say("Load a mix first.", error=True)
            return False
        if not sel or sel[1] <= sel[0]:
            self._say("Select a region first: drag on a lane's waveform or spectrogram.", error=True)
            return False
        track = self.session.track_by_role("mix")
        if tl.selection_track is not None:
            try:
                track = self.session.track(tl.selection_track)
            except KeyError:  # the lane's track was removed since
                pass
        assert track is not None
        sr = self.session.sample_rate
        a, b = sel[0] / sr, sel[1] / sr
        lead = track.offset_frames / sr  # the track's sample 0 on the timeline
        try:
            clip = query_from_region(track.audio, (max(a - lead, 0.0), min(b - lead, track.audio.duration_seconds)))
        except InputError as exc:
            self._say(f"{track.name}: {exc}", error=True)
            return False
        where = "the mix" if track.role == "mix" else track.name
        self.set_query(clip, f"{where}, {format_time(a)}–{format_time(b)}", from_mix=track.role == "mix")
        return True

    def open_query(self, path: str | Path) -> bool:
        try:
            audio = load_audio(path)
        except InputError as exc:
            self._say(str(exc), error=True)
            return False
        self.set_query(audio, Path(path).name)
        return True

    def _open_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a query clip", "",
                                              "Audio (*.wav *.flac *.ogg *.mp3 *.aif *.aiff)")
        if path:
            self.open_query(path)

    def dragEnterEvent(self, ev: QDragEnterEvent) -> None:
        if any(looks_like_audio(p) for p in dropped_audio_paths(ev.mimeData())):
            ev.acceptProposedAction()

    def dropEvent(self, ev: QDropEvent) -> None:
        paths = [p for p in dropped_audio_paths(ev.mimeData()) if looks_like_audio(p)]
        if paths:
            ev.acceptProposedAction()
            self.open_query(paths[0])

    # ================================================================= detection ============
    def _find_from_menu(self) -> None:
        self.show()
        self.raise_()
        if self.session.timeline.selection and not self.use_selection():
            return
        self.find_similar()

    def find_similar(self) -> Job | None:
        """Run the detector over the whole mix (a job)."""
        mix, query = self._mix(), self.query
        if mix is None or query is None:
            self._say("Load a mix and choose a query first.", error=True)
            return None
        if self.job is not None and not self.job.done:
            return self.job
        try:
            params = detection_params(self.values())
        except InputError as exc:
            self._say(str(exc), error=True)
            return None

        from_mix = self.query_from_mix

        def work(ctx: JobContext) -> Detection:
            return detect_segments(mix, query, params, progress=lambda f, m: ctx.progress(f, m),
                                   cancel=ctx.cancel_token, query_from_mix=from_mix)

        def done(job: Job) -> None:
            self.job = None
            det: Detection = job.result
            self.detection = det
            self._detected_inputs = (mix, query)
            self.set_segments(list(det.segments))
            q = det.query
            what = f"{q.class_name}, p = {q.class_probability:.2f}" if q is not None else ""
            notes = "; ".join(q.notes) if q is not None and q.notes else ""
            if det.found:
                self._say(f"Found {len(det.segments)} segment{'s' if len(det.segments) != 1 else ''} "
                          f"({what}) in {det.seconds.get('detect', 0.0):.1f} s." + (f" {notes}" if notes else ""))
            else:
                self._say(f"Not found: no part of the mix passes the gates ({what})." + (f" {notes}" if notes else ""))
            self.progress_bar.setValue(1000)
            self._update_enabled()

        def ended(job: Job) -> None:
            self.job = None
            self.progress_bar.setValue(0)
            self._say("Find Similar cancelled." if job.error is None else f"Find Similar failed: {job.error}",
                      error=job.error is not None)
            self._update_enabled()

        self.progress_bar.setValue(0)
        self._say("Listening for the query…")
        self.job = self.jobs.submit("Find similar", work, on_finished=done, on_failed=ended,
                                    on_cancelled=ended, on_progress=self._progress)
        self._update_enabled()
        return self.job

    def _progress(self, job: Job) -> None:
        self.progress_bar.setValue(int(job.fraction * 1000))
        if job.message:
            self._say(job.message)

    def cancel(self) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel()

    # ================================================================= segments =============
    def set_segments(self, segments: list[Segment]) -> None:
        self.segments = sorted(segments, key=lambda s: s.start)
        self._refresh_list()
        self._draw_segments()
        self._update_enabled()

    def _refresh_list(self) -> None:
        self.segment_list.clear()
        for s in self.segments:
            self.segment_list.addItem(f"{format_time(s.start)} – {format_time(s.end)}   score {s.score:.2f}")

    def add_selection(self) -> None:
        sel = self.session.timeline.selection
        if not sel or sel[1] <= sel[0]:
            self._say("Select a region on a lane first, then Add Selection.", error=True)
            return
        sr = self.session.sample_rate
        self.set_segments([*self.segments, Segment(sel[0] / sr, sel[1] / sr, 1.0)])

    def delete_selected(self) -> None:
        row = self.segment_list.currentRow()
        if 0 <= row < len(self.segments):
            self.set_segments(self.segments[:row] + self.segments[row + 1 :])

    def _mix_views(self) -> list[Any]:
        mix = self.session.track_by_role("mix")
        lanes = self.window_.lane_stack.lanes  # type: ignore[attr-defined]
        if mix is None or mix.id not in lanes:
            return []
        lane = lanes[mix.id]
        return [lane.waveform, lane.spectrogram]

    def _draw_segments(self) -> None:
        """Segment overlays on the mix lane (movable regions; their edges are the segment's)."""
        for items in self._items:
            for item in items:
                if item.scene() is not None:
                    item.getViewBox().removeItem(item)
        for label in self._labels:
            if label.scene() is not None:
                label.getViewBox().removeItem(label)
        self._items, self._labels = [], []
        views = self._mix_views()
        if not views:
            return
        offset = self.session.track_by_role("mix").offset_frames / self.session.sample_rate  # type: ignore[union-attr]
        for i, seg in enumerate(self.segments):
            items = []
            for view in views:
                region = pg.LinearRegionItem(values=(seg.start + offset, seg.end + offset), movable=True,
                                             brush=pg.mkBrush(*SEGMENT_BRUSH), pen=pg.mkPen(SEGMENT_PEN))
                region.setZValue(6)
                region.setToolTip(f"score {seg.score:.2f}: drag the edges to adjust")
                region.sigRegionChangeFinished.connect(lambda r, i=i: self._region_moved(i, r))
                view.addItem(region)
                items.append(region)
            label = pg.TextItem(f"{seg.score:.2f}", color=COLORS.get("text", "#ffffff"), anchor=(0, 0))
            label.setPos(seg.start + offset, views[0].vb.viewRange()[1][1])
            views[0].addItem(label)
            self._labels.append(label)
            self._items.append(items)

    def _region_moved(self, index: int, region: pg.LinearRegionItem) -> None:
        if index >= len(self.segments):
            return
        offset = self.session.track_by_role("mix").offset_frames / self.session.sample_rate  # type: ignore[union-attr]
        a, b = region.getRegion()
        seg = self.segments[index]
        duration = self._mix().duration_seconds  # type: ignore[union-attr]
        start, end = max(0.0, a - offset), min(duration, b - offset)
        if end - start < 0.05:
            self._draw_segments()
            return
        self.segments[index] = Segment(start, end, seg.score)
        # redraw after the region's own signal has returned (it is one of the items replaced)
        QTimer.singleShot(0, lambda: self.set_segments(self.segments))

    # ================================================================= separation ===========
    def separate(self) -> Job | None:
        """Pull the query's sound out of the segments: target and residual lanes (a job)."""
        mix, query, segments = self._mix(), self.query, list(self.segments)
        if mix is None or query is None or not segments:
            self._say("Find (or add) segments first.", error=True)
            return None
        if self.job is not None and not self.job.done:
            return self.job
        values = self.values()
        separator = self.separator
        det = self.detection
        # the detection's whole-mix U-Net prior, if it was made for this mix, query and routing
        same = (det is not None and self._detected_inputs[0] is mix and self._detected_inputs[1] is query
                and det.params.stem_weight_power == values.get("stem_weight_power"))
        prior = det.prior if same and det is not None else None

        def work(ctx: JobContext) -> tuple[Any, Any]:
            result = separator.separate_segments(mix, query, segments, values,
                                                 progress=lambda f, m: ctx.progress(0.9 * f, m),
                                                 cancel=ctx.cancel_token, prior=prior)
            return result, prepare_for_lanes(result, ctx, 0.9)

        def done(job: Job) -> None:
            self.job = None
            result, pyramids = job.result
            if self._mix() is not mix:
                self._say("The mix changed while separating; separate again.", error=True)
                self._update_enabled()
                return
            panel = self.window_.panels["separate"]  # type: ignore[attr-defined]
            panel.show_result(result, pyramids, mix, {"segments": [s.to_json() for s in segments],
                                                      "query": self.query_label_text})
            self.progress_bar.setValue(1000)
            self._say(f"Separated the target from {len(segments)} segment{'s' if len(segments) != 1 else ''} "
                      f"in {result.seconds:.1f} s.")
            self._update_enabled()

        def ended(job: Job) -> None:
            self.job = None
            self.progress_bar.setValue(0)
            self._say("Separation cancelled; nothing was changed." if job.error is None
                      else f"Separation failed: {job.error}", error=job.error is not None)
            self._update_enabled()

        self.progress_bar.setValue(0)
        self._say("Separating the target…")
        self.job = self.jobs.submit("Separating the query's sound", work, on_finished=done, on_failed=ended,
                                    on_cancelled=ended, on_progress=self._progress)
        self._update_enabled()
        return self.job


def install(window: QMainWindow) -> QueryPanel:
    """Add the Find Similar dock (a tab beside Separate) and its menu entries."""
    panel = QueryPanel(window)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, panel)
    separate = getattr(window, "panels", {}).get("separate")
    if isinstance(separate, QDockWidget):
        window.tabifyDockWidget(separate, panel)
        align = getattr(window, "panels", {}).get("align")
        if isinstance(align, QDockWidget):
            align.raise_()
    return panel
