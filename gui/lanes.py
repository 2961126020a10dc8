"""Lanes: one row per track (header with mute/solo/gain/polarity + waveform + spectrogram),
stacked under a shared time ruler.

Lanes show the session's tracks and send every edit to the session (``session.set_gain_db``
and friends); the session's events update the controls. The waveform overview of a track is a
:class:`engine.waveform.PeakPyramid` held in a :class:`DisplayCache` (built by the job that
loaded the file, or on the display queue for tracks that arrive another way).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QFontMetrics
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.audio import READ_EXTENSIONS, Audio
from engine.jobs import Job, JobContext
from engine.session import Session, Track
from engine.spectral import DEFAULT_STFT, StftConfig
from engine.waveform import PeakPyramid
from gui.jobs import JobBridge
from gui.theme import ROLE_COLORS
from gui.views import SpectrogramView, TimeRuler, WaveformView

HEADER_WIDTH_PX = 190
#: Lanes built ahead of need, so a loaded file's lane appears without building widgets.
SPARE_LANES = 2
# Spares are rebuilt this long after one was used (after the load's burst of work).
SPARE_REFILL_DELAY_MS = 1500
WAVEFORM_HEIGHT_PX = 96
SPECTROGRAM_HEIGHT_PX = 140
GAIN_RANGE_DB = (-60.0, 12.0)
_GAIN_STEPS_PER_DB = 2


def dropped_audio_paths(mime: Any) -> list[Path]:
    """Local files in a drop's mime data, in order (any extension; loading judges them)."""
    if not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]


def looks_like_audio(path: Path) -> bool:
    return path.suffix.lower() in READ_EXTENSIONS


def mask_stft(session: Session) -> StftConfig:
    """The STFT the session's masks live in (recorded with the separation)."""
    sep = session.separation or {}
    stft = sep.get("stft") or {}
    return StftConfig(int(stft.get("n_fft", DEFAULT_STFT.n_fft)), stft.get("hop")) if stft else DEFAULT_STFT


class DisplayCache:
    """Peak pyramids by audio object (a pyramid belongs to exactly one ``Audio``)."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[Audio, PeakPyramid]] = {}

    def put(self, audio: Audio, pyramid: PeakPyramid) -> None:
        self._items[id(audio)] = (audio, pyramid)

    def get(self, audio: Audio) -> PeakPyramid | None:
        item = self._items.get(id(audio))
        return item[1] if item is not None and item[0] is audio else None

    def prune(self, keep: list[Audio]) -> None:
        """Forget pyramids of audio no longer in the session."""
        alive = {id(a) for a in keep}
        for key in [k for k in self._items if k not in alive]:
            del self._items[key]


class LaneHeader(QFrame):
    """Name, role, Mute / Solo / Polarity buttons and a gain slider."""

    gain_changed = Signal(float)
    mute_toggled = Signal(bool)
    solo_toggled = Signal(bool)
    polarity_toggled = Signal(bool)  # True = inverted

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("LaneHeader")
        self.setFixedWidth(HEADER_WIDTH_PX)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(4)
        self.name_label = QLabel()
        self.name_label.setObjectName("LaneName")
        self.role_label = QLabel()
        self.role_label.setObjectName("LaneRole")
        lay.addWidget(self.name_label)
        lay.addWidget(self.role_label)
        row = QHBoxLayout()
        row.setSpacing(3)
        self.mute_button = self._button("M", "MuteButton", "Mute this lane")
        self.solo_button = self._button("S", "SoloButton", "Solo this lane (only soloed lanes play)")
        self.polarity_button = self._button("Ø", "PolarityButton", "Invert polarity (null test)")
        for b in (self.mute_button, self.solo_button, self.polarity_button):
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        gain_row = QHBoxLayout()
        gain_row.setSpacing(4)
        self.gain_slider = QSlider(Qt.Orientation.Horizontal)
        self.gain_slider.setRange(int(GAIN_RANGE_DB[0] * _GAIN_STEPS_PER_DB), int(GAIN_RANGE_DB[1] * _GAIN_STEPS_PER_DB))
        self.gain_slider.setToolTip("Lane gain (double-click the value to reset to 0 dB)")
        self.gain_label = QLabel()
        self.gain_label.setMinimumWidth(QFontMetrics(self.gain_label.font()).horizontalAdvance("-60.0 dB") + 4)
        self.gain_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.gain_label.installEventFilter(self)
        gain_row.addWidget(self.gain_slider, 1)
        gain_row.addWidget(self.gain_label)
        lay.addLayout(gain_row)
        lay.addStretch(1)
        self.mute_button.toggled.connect(self.mute_toggled)
        self.solo_button.toggled.connect(self.solo_toggled)
        self.polarity_button.toggled.connect(self.polarity_toggled)
        self.gain_slider.valueChanged.connect(self._gain_moved)

    @staticmethod
    def _button(text: str, name: str, tip: str) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setObjectName(name)
        b.setCheckable(True)
        b.setToolTip(tip)
        b.setFixedWidth(28)
        return b

    def _gain_moved(self, value: int) -> None:
        db = value / _GAIN_STEPS_PER_DB
        self.gain_label.setText(f"{db:+.1f} dB")
        self.gain_changed.emit(db)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if obj is self.gain_label and ev.type() == QEvent.Type.MouseButtonDblClick:
            self.gain_slider.setValue(0)
            return True
        return super().eventFilter(obj, ev)

    def show_track(self, track: Track) -> None:
        """Update the controls from ``track`` without echoing signals back."""
        metrics = QFontMetrics(self.name_label.font())
        self.name_label.setText(metrics.elidedText(track.name, Qt.TextElideMode.ElideMiddle, HEADER_WIDTH_PX - 18))
        self.name_label.setToolTip(str(track.source_path or track.name))
        audio = track.audio
        self.role_label.setText(
            f"{track.role.capitalize()} · {audio.sample_rate / 1000:g} kHz · "
            f"{'stereo' if audio.channels == 2 else 'mono' if audio.channels == 1 else f'{audio.channels} ch'}"
        )
        widgets = (self.mute_button, self.solo_button, self.polarity_button, self.gain_slider)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.mute_button.setChecked(track.mute)
            self.solo_button.setChecked(track.solo)
            self.polarity_button.setChecked(track.polarity < 0)
            self.gain_slider.setValue(int(round(track.gain_db * _GAIN_STEPS_PER_DB)))
            self.gain_label.setText(f"{track.gain_db:+.1f} dB")
        finally:
            for w in widgets:
                w.blockSignals(False)


class LaneWidget(QFrame):
    """One track: header + waveform view + spectrogram view. Accepts a dropped file.

    Signals:
        file_dropped(track_id, path): a file was dropped on this lane (replace its audio).
        drawn(): both visible views have drawn their current data.
    """

    file_dropped = Signal(str, object)
    drawn = Signal()

    def __init__(self, session: Session, jobs: JobBridge, stack: LaneStack) -> None:
        """An unbound lane; :meth:`bind` gives it a track. The stack builds lanes ahead of
        need (idle time) so that binding one to a newly loaded track costs almost nothing."""
        super().__init__()
        self.setObjectName("Lane")
        self.setAcceptDrops(True)
        self.track: Track | None = None
        self.session = session
        self.audio: Audio | None = None
        self.header = LaneHeader()
        tl = session.timeline
        self.waveform = WaveformView(tl, ROLE_COLORS["mix"], scroll_lanes=stack.scroll_lanes)
        self.waveform.setFixedHeight(WAVEFORM_HEIGHT_PX)
        self.spectrogram = SpectrogramView(tl, jobs, scroll_lanes=stack.scroll_lanes)
        self.spectrogram.setFixedHeight(SPECTROGRAM_HEIGHT_PX)
        views = QVBoxLayout()
        views.setContentsMargins(0, 0, 0, 0)
        views.setSpacing(1)
        views.addWidget(self.waveform)
        views.addWidget(self.spectrogram)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.header)
        lay.addLayout(views, 1)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.header.gain_changed.connect(lambda db: self._edit(session.set_gain_db, db))
        self.header.mute_toggled.connect(lambda on: self._edit(session.set_mute, on))
        self.header.solo_toggled.connect(lambda on: self._edit(session.set_solo, on))
        self.header.polarity_toggled.connect(lambda inv: self._edit(session.set_polarity, -1 if inv else 1))
        self.waveform.drawn.connect(self._view_drawn)
        self.spectrogram.drawn.connect(self._view_drawn)

    def bind(self, track: Track) -> None:
        """Show ``track`` (once per lane)."""
        self.track = track
        self.audio = track.audio
        self.waveform.vb.track_id = self.spectrogram.vb.track_id = track.id
        self.waveform.set_color(ROLE_COLORS.get(track.role, ROLE_COLORS["stem"]))
        self.header.show_track(track)
        self.spectrogram.set_data(track.audio.samples, track.audio.sample_rate, track.offset_frames)
        self.spectrogram.set_mask(self.session.masks.get(track.id), mask_stft(self.session))

    def _edit(self, setter: Any, value: Any) -> None:
        if self.track is not None:
            setter(self.track.id, value)

    # ---- data --------------------------------------------------------------------------------
    def set_pyramid(self, pyramid: PeakPyramid | None) -> None:
        t = self.track
        assert t is not None
        self.waveform.set_data(pyramid, t.audio.sample_rate, t.offset_frames)

    def update_from_track(self) -> None:
        """The track's settings changed (gain/mute/solo/polarity/offset)."""
        if self.track is None:
            return
        self.header.show_track(self.track)
        self.waveform.set_offset(self.track.offset_frames)
        self.spectrogram.set_offset(self.track.offset_frames)

    def set_views_visible(self, waveform: bool, spectrogram: bool) -> None:
        self.waveform.setVisible(waveform)
        self.spectrogram.setVisible(spectrogram)
        self.adjustSize()

    def set_log_frequency(self, on: bool) -> None:
        self.spectrogram.set_log_frequency(on)

    @property
    def is_drawn(self) -> bool:
        ok = True
        if self.waveform.isVisibleTo(self):
            ok &= self.waveform.has_drawn
        if self.spectrogram.isVisibleTo(self):
            ok &= self.spectrogram.has_drawn
        return ok

    def _view_drawn(self) -> None:
        if self.is_drawn:
            self.drawn.emit()

    def detach(self) -> None:
        """Disconnect from the timeline and cancel pending renders (before deletion)."""
        self.waveform.detach()
        self.spectrogram.detach()

    # ---- drag and drop -----------------------------------------------------------------------
    def dragEnterEvent(self, ev: QDragEnterEvent) -> None:
        if dropped_audio_paths(ev.mimeData()):
            ev.acceptProposedAction()
            self._set_drop_highlight(True)
        else:
            ev.ignore()

    def dragLeaveEvent(self, ev: Any) -> None:
        self._set_drop_highlight(False)

    def dropEvent(self, ev: QDropEvent) -> None:
        self._set_drop_highlight(False)
        paths = dropped_audio_paths(ev.mimeData())
        if not paths:
            ev.ignore()
            return
        ev.acceptProposedAction()
        if self.track is not None:
            self.file_dropped.emit(self.track.id, paths[0])

    def _set_drop_highlight(self, on: bool) -> None:
        self.setProperty("dropTarget", on)
        self.style().unpolish(self)
        self.style().polish(self)


class LaneStack(QWidget):
    """The ruler and the lanes of a session, kept in step with ``session.tracks``.

    Signals:
        all_drawn(): every lane has drawn its visible views (after a change of tracks).
        lane_file_dropped(track_id, path): a file was dropped on a lane.
        overview_needed(track): a track has no waveform overview yet.
    """

    all_drawn = Signal()
    lane_file_dropped = Signal(str, object)

    def __init__(self, session: Session, jobs: JobBridge, cache: DisplayCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.cache = cache
        self.session = session
        self.lanes: dict[str, LaneWidget] = {}
        self.show_waveform = True
        self.show_spectrogram = True
        self.log_frequency = False
        self.show_masks = True
        self._building: dict[int, Job] = {}
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        ruler_row = QHBoxLayout()
        ruler_row.setContentsMargins(0, 0, 0, 0)
        ruler_row.setSpacing(0)
        self.ruler_corner = QLabel()
        self.ruler_corner.setObjectName("LaneRole")
        self.ruler_corner.setFixedWidth(HEADER_WIDTH_PX)
        self.ruler_corner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        ruler_row.addWidget(self.ruler_corner)
        self.ruler = TimeRuler(session.timeline)
        ruler_row.addWidget(self.ruler, 1)
        outer.addLayout(ruler_row)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._body = QWidget()
        self._lanes_layout = QVBoxLayout(self._body)
        self._lanes_layout.setContentsMargins(0, 0, 0, 0)
        self._lanes_layout.setSpacing(0)
        self.empty_hint = QLabel(
            "Drop a mix and its acapella here\n(the first file becomes the mix, the second the acapella)\n\n"
            "or use File ▸ Open Mix… (Ctrl+O) and File ▸ Open Acapella… (Ctrl+Shift+O)"
        )
        self.empty_hint.setObjectName("EmptyHint")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._lanes_layout.addWidget(self.empty_hint, 1)
        self._lanes_layout.addStretch(0)
        self.scroll_area.setWidget(self._body)
        outer.addWidget(self.scroll_area, 1)
        self._sync_timer = QTimer(self)
        self._sync_timer.setSingleShot(True)
        self._sync_timer.setInterval(0)
        self._sync_timer.timeout.connect(self.sync)
        self._spares: list[LaneWidget] = []
        self._spare_timer = QTimer(self)
        self._spare_timer.setSingleShot(True)
        self._spare_timer.timeout.connect(self._refill_spares)
        self._connect(session)
        self.sync()
        self._spare_timer.start(0)

    # ---- session -----------------------------------------------------------------------------
    def _connect(self, session: Session) -> None:
        session.tracks_changed.connect(self._tracks_changed)
        session.track_changed.connect(self._track_changed)

    def set_session(self, session: Session) -> None:
        """Show another session (a project was opened)."""
        self.session.tracks_changed.disconnect(self._tracks_changed)
        self.session.track_changed.disconnect(self._track_changed)
        for lane in list(self.lanes.values()) + self._spares:
            self._remove_lane(lane)
        self.lanes.clear()
        self._spares.clear()
        self._spare_timer.start(SPARE_REFILL_DELAY_MS)
        self.ruler.detach()
        self.session = session
        self.ruler.timeline = session.timeline
        self.ruler.attach()
        self._connect(session)
        self.sync()

    def detach(self) -> None:
        """Disconnect everything from the session (the window is closing)."""
        self.session.tracks_changed.disconnect(self._tracks_changed)
        self.session.track_changed.disconnect(self._track_changed)
        self._spare_timer.stop()
        for lane in list(self.lanes.values()) + self._spares:
            lane.detach()
        self.ruler.detach()
        for job in self._building.values():
            job.cancel()

    def _tracks_changed(self) -> None:
        self._sync_timer.start()

    def _track_changed(self, track: Track) -> None:
        lane = self.lanes.get(track.id)
        if lane is not None:
            lane.update_from_track()

    def sync(self) -> None:
        """Create, replace, reorder and remove lanes to match ``session.tracks``.

        At most one lane is created per call (then the next call is queued): a lane costs a
        few ms to build, and the event loop must keep turning while files arrive.
        """
        tracks = self.session.tracks
        wanted = {t.id for t in tracks}
        for tid in [t for t in self.lanes if t not in wanted]:
            self._remove_lane(self.lanes.pop(tid))
        created = False
        more = False
        for t in tracks:
            lane = self.lanes.get(t.id)
            if lane is not None and lane.audio is not t.audio:  # audio replaced (dropped on lane)
                self._remove_lane(self.lanes.pop(t.id))
                lane = None
            if lane is None:
                if created:
                    more = True
                    continue
                self.lanes[t.id] = self._make_lane(t)
                created = True
            else:
                lane.track = t
                lane.update_from_track()
        shown = [t for t in tracks if t.id in self.lanes]
        for i, t in enumerate(shown):
            if self._lanes_layout.indexOf(self.lanes[t.id]) != i:
                self._lanes_layout.insertWidget(i, self.lanes[t.id])
        self.empty_hint.setVisible(not tracks)
        self._lanes_layout.setStretch(self._lanes_layout.count() - 1, 0 if not tracks else 1)
        self.ruler_corner.setText(f"{len(tracks)} lane{'s' if len(tracks) != 1 else ''}" if tracks else "")
        if more:
            self._sync_timer.start()
        else:
            self.cache.prune([t.audio for t in tracks])
        self._check_drawn()

    def _new_lane(self) -> LaneWidget:
        lane = LaneWidget(self.session, self.jobs, self)
        # Parent it at once: a parentless widget shown later would briefly become its own
        # top-level window and take keyboard focus from the main window.
        lane.setParent(self._body)
        lane.hide()
        lane.file_dropped.connect(self.lane_file_dropped)
        lane.drawn.connect(self._check_drawn)
        return lane

    def _refill_spares(self) -> None:
        """Build one spare lane per call until there are SPARE_LANES (idle-time work)."""
        if len(self._spares) < SPARE_LANES:
            lane = self._new_lane()
            lane.setParent(self._body)
            lane.hide()
            self._spares.append(lane)
        if len(self._spares) < SPARE_LANES:
            self._spare_timer.start()

    def _make_lane(self, track: Track) -> LaneWidget:
        lane = self._spares.pop(0) if self._spares else self._new_lane()
        lane.bind(track)
        lane.show()
        self._spare_timer.start(SPARE_REFILL_DELAY_MS)
        if not (self.show_waveform and self.show_spectrogram):
            lane.set_views_visible(self.show_waveform, self.show_spectrogram)
        lane.set_log_frequency(self.log_frequency)
        lane.spectrogram.set_mask_visible(self.show_masks)
        pyramid = self.cache.get(track.audio)
        if pyramid is not None:
            lane.set_pyramid(pyramid)
        else:
            self._build_overview(track)
        return lane

    def _build_overview(self, track: Track) -> None:
        audio = track.audio
        if id(audio) in self._building:
            return

        def work(ctx: JobContext) -> PeakPyramid:
            return PeakPyramid.build(audio.samples, cancel=ctx.cancel_token)

        def done(job: Job) -> None:
            self._building.pop(id(audio), None)
            self.cache.put(audio, job.result)
            lane = self.lanes.get(track.id)
            if lane is not None and lane.audio is audio:
                lane.set_pyramid(job.result)

        def dropped(job: Job) -> None:
            self._building.pop(id(audio), None)

        self._building[id(audio)] = self.jobs.submit(
            f"Waveform overview of {track.name}", work, on_finished=done, on_failed=dropped,
            on_cancelled=dropped, render=True,
        )

    def _remove_lane(self, lane: LaneWidget) -> None:
        lane.detach()
        self._lanes_layout.removeWidget(lane)
        lane.hide()
        lane.deleteLater()

    # ---- view options ------------------------------------------------------------------------
    def set_views_visible(self, waveform: bool, spectrogram: bool) -> None:
        self.show_waveform, self.show_spectrogram = waveform, spectrogram
        for lane in self.lanes.values():
            lane.set_views_visible(waveform, spectrogram)

    def set_log_frequency(self, on: bool) -> None:
        self.log_frequency = on
        for lane in self.lanes.values():
            lane.set_log_frequency(on)

    def set_masks_visible(self, on: bool) -> None:
        """Show or hide the mask overlay on the stem lanes' spectrograms."""
        self.show_masks = on
        for lane in self.lanes.values():
            lane.spectrogram.set_mask_visible(on)

    def scroll_lanes(self, delta_px: int) -> None:
        bar = self.scroll_area.verticalScrollBar()
        bar.setValue(bar.value() + delta_px)

    # ---- drawn state -------------------------------------------------------------------------
    @property
    def is_drawn(self) -> bool:
        """Every track has a lane and every lane drew its visible views (False with none)."""
        tracks = self.session.tracks
        return (
            bool(tracks) and {t.id for t in tracks} == set(self.lanes)
            and all(lane.is_drawn for lane in self.lanes.values())
        )

    @property
    def busy(self) -> bool:
        """A render or overview is still on its way."""
        return bool(self._building) or any(lane.spectrogram.busy for lane in self.lanes.values())

    def _check_drawn(self) -> None:
        if self.is_drawn:
            self.all_drawn.emit()

    def lane_at(self, index: int) -> LaneWidget:
        return self.lanes[self.session.tracks[index].id]
