"""Time-synchronised views: the time ruler, the waveform view and the spectrogram view.

Every view draws one lane (or the ruler) against the session's
:class:`engine.timeline.Timeline`, the one source of truth for the visible range, playhead and
selection: views subscribe to its events and never keep their own range. Mouse gestures go
back into the timeline (Ctrl+wheel zooms about the pointer, wheel scrolls time, Shift+wheel
scrolls the lanes, click seeks, drag selects a loop region), so a zoom in one lane moves all.

x is in session seconds (``frame / timeline.sample_rate``); the timeline counts frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QWidget

from engine.jobs import Job, JobContext
from engine.mask_display import MaskImage, mask_display_image
from engine.spectral import DEFAULT_STFT, StftConfig
from engine.timeline import Timeline
from engine.waveform import PeakPyramid, SpectrogramImage, display_spectrogram
from gui.jobs import JobBridge
from gui.theme import COLORS

#: Width of every plot's left axis, so lanes and the ruler line up in x.
AXIS_WIDTH_PX = 46
#: Spectrogram colour range (dB re full scale) mapped onto the colour map.
SPECTROGRAM_LEVELS_DB = (-100.0, -15.0)
#: Most spectrogram columns computed per view (one per pixel up to this).
MAX_SPECTROGRAM_COLUMNS = 2048
#: Mask overlay: colour (RGB) and opacity; a mask value sets the alpha of its pixel.
MASK_OVERLAY_RGB = (80, 230, 255)
MASK_OVERLAY_OPACITY = 0.4
# Quiet period after the last range change before a spectrogram is recomputed.
_SPECTROGRAM_DEBOUNCE_MS = 40

_TIME_STEPS_SECONDS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300,
    600, 900, 1800, 3600, 7200,
)


def format_time(seconds: float, milliseconds: bool = True) -> str:
    """``m:ss.mmm`` (``h:mm:ss.mmm`` from one hour), with a sign when negative."""
    sign = "-" if seconds < 0 else ""
    total_ms = int(round(abs(seconds) * 1000.0))
    if not milliseconds:
        total_ms = int(round(total_ms / 1000.0)) * 1000
    h, rem = divmod(total_ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    core = f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
    return f"{sign}{core}.{ms:03d}" if milliseconds else f"{sign}{core}"


class TimeAxisItem(pg.AxisItem):
    """A time axis in ``m:ss(.mmm)`` with steps that are round in seconds and minutes."""

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:
        span = abs(maxVal - minVal)
        if span <= 0 or size <= 0:
            return []
        # about one labelled tick per 110 px
        wanted = span / max(size / 110.0, 1.0)
        major = next((s for s in _TIME_STEPS_SECONDS if s >= wanted), _TIME_STEPS_SECONDS[-1])
        minor_div = 5 if str(major)[0] in "15" else 2 if major in (2, 0.2, 0.02, 0.002) else 3
        if major in (30, 1800):
            minor_div = 6
        return [(major, 0.0), (major / minor_div, 0.0)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        ms = spacing < 1.0
        return [format_time(v, milliseconds=ms) for v in values]


class FrequencyAxisItem(pg.AxisItem):
    """Frequency labels (``500``, ``2k``); values are Hz, or log10(Hz) in log mode."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log_frequency = False

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, list[float]]]:
        if not self.log_frequency:
            # no label at 0 Hz: it would sit on the lane's bottom edge, half cut off
            return [(spacing, [v for v in vals if v > 0.5 * spacing])
                    for spacing, vals in super().tickValues(minVal, maxVal, size)]
        marks = [50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]
        vals = [math.log10(f) for f in marks if minVal <= math.log10(f) <= maxVal]
        return [(1.0, vals)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        out = []
        for v in values:
            hz = 10.0**v if self.log_frequency else v
            out.append(f"{hz / 1000:g}k" if hz >= 1000 else f"{hz:.0f}")
        return out


class TimelineViewBox(pg.ViewBox):
    """A ViewBox whose mouse gestures drive the shared :class:`Timeline`."""

    def __init__(self, timeline: Timeline, scroll_lanes: Callable[[int], None] | None = None) -> None:
        super().__init__(enableMenu=False, defaultPadding=0.0)
        self.timeline = timeline
        self.scroll_lanes = scroll_lanes
        self.setMouseEnabled(False, False)
        self._drag_anchor: int | None = None
        # A mask tool (gui.mask_editor) takes the left button while it is set: an object with
        # press(pos) / drag(pos) / release(pos) taking view coordinates (seconds, y).
        self.edit_handler: Any = None
        # The track shown (set by its lane): a selection dragged here names it.
        self.track_id: str | None = None

    def _frame_at(self, scene_pos: Any) -> int:
        x = self.mapSceneToView(scene_pos).x()
        return int(round(x * self.timeline.sample_rate))

    def wheelEvent(self, ev: Any, axis: Any = None) -> None:
        steps = ev.delta() / 120.0
        mods = ev.modifiers()
        if ev.orientation() == Qt.Orientation.Horizontal:
            self.timeline.scroll(-0.1 * steps)
        elif mods & Qt.KeyboardModifier.ControlModifier:
            self.timeline.zoom(1.25**steps, anchor=self._frame_at(ev.scenePos()))
        elif mods & Qt.KeyboardModifier.ShiftModifier:
            if self.scroll_lanes is not None:
                self.scroll_lanes(int(-steps * 60))
        else:
            self.timeline.scroll(-0.1 * steps)
        ev.accept()

    def hoverEvent(self, ev: Any) -> None:
        handler = self.edit_handler
        if handler is not None and hasattr(handler, "hover"):
            handler.hover(None if ev.isExit() else self.mapSceneToView(ev.scenePos()))

    def mouseClickEvent(self, ev: Any) -> None:
        if ev.button() == Qt.MouseButton.LeftButton and self.edit_handler is not None:
            pos = self.mapSceneToView(ev.scenePos())
            self.edit_handler.press(pos)
            self.edit_handler.release(pos)
            ev.accept()
            return
        if ev.button() == Qt.MouseButton.LeftButton:
            frame = self._frame_at(ev.scenePos())
            self.timeline.set_playhead(min(max(frame, 0), self.timeline.length_frames))
            ev.accept()
        else:
            ev.ignore()

    def mouseDragEvent(self, ev: Any, axis: Any = None) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        if self.edit_handler is not None:
            if ev.isStart():
                self.edit_handler.press(self.mapSceneToView(ev.buttonDownScenePos(Qt.MouseButton.LeftButton)))
            pos = self.mapSceneToView(ev.scenePos())
            self.edit_handler.drag(pos)
            if ev.isFinish():
                self.edit_handler.release(pos)
            return
        if ev.isStart() or self._drag_anchor is None:
            self._drag_anchor = self._frame_at(ev.buttonDownScenePos(Qt.MouseButton.LeftButton))
        self.timeline.set_selection(self._drag_anchor, self._frame_at(ev.scenePos()), track=self.track_id)
        if ev.isFinish():
            self._drag_anchor = None


class TimelinePlot(pg.GraphicsView):
    """A view whose x range, playhead line and selection follow the timeline.

    Built from a bare ViewBox and axes in a GraphicsLayout rather than a PlotItem: a PlotItem
    brings a title, four axes and a settings menu, and costs ~5x more to create — creating
    the lanes of a dropped file must not stall the GUI thread.

    Signals:
        drawn: the view finished drawing its current data for the current range.
    """

    drawn = Signal()

    def __init__(
        self,
        timeline: Timeline,
        scroll_lanes: Callable[[int], None] | None = None,
        left_axis: pg.AxisItem | None = None,
        top_axis: pg.AxisItem | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent, background=COLORS["plot_bg"])
        self.timeline = timeline
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.layout_item = pg.GraphicsLayout()
        self.layout_item.setContentsMargins(0, 0, 0, 0)
        self.layout_item.setSpacing(0)
        self.setCentralItem(self.layout_item)
        self.vb = TimelineViewBox(timeline, scroll_lanes)
        self.vb.disableAutoRange()
        self.left_axis = left_axis or pg.AxisItem("left")
        self.left_axis.linkToView(self.vb)
        self.left_axis.setWidth(AXIS_WIDTH_PX)
        row = 0
        if top_axis is not None:
            top_axis.linkToView(self.vb)
            self.layout_item.addItem(top_axis, row=0, col=1)
            row = 1
        self.top_axis = top_axis
        self.layout_item.addItem(self.left_axis, row=row, col=0)
        self.layout_item.addItem(self.vb, row=row, col=1)
        self._selection = pg.LinearRegionItem(
            movable=False, brush=pg.mkBrush(*COLORS["selection"]), pen=pg.mkPen(COLORS["accent"])
        )
        self._selection.setZValue(5)
        self._selection.hide()
        self.vb.addItem(self._selection, ignoreBounds=True)
        self._playhead = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(COLORS["playhead"], width=1.5))
        self._playhead.setZValue(10)
        self.vb.addItem(self._playhead, ignoreBounds=True)
        self._attached = False  # subclasses call attach() at the end of their __init__

    def addItem(self, item: Any, ignoreBounds: bool = True) -> None:  # noqa: N802, N803 - pyqtgraph's names
        self.vb.addItem(item, ignoreBounds=ignoreBounds)

    def removeItem(self, item: Any) -> None:  # noqa: N802
        self.vb.removeItem(item)

    def set_y_range(self, low: float, high: float, padding: float = 0.0) -> None:
        self.vb.setYRange(low, high, padding=padding)

    # ---- timeline subscription ---------------------------------------------------------------
    def attach(self) -> None:
        if self._attached:
            return
        tl = self.timeline
        tl.range_changed.connect(self._on_range)
        tl.playhead_changed.connect(self._on_playhead)
        tl.selection_changed.connect(self._on_selection)
        self._attached = True
        self._on_range(tl.view_start, tl.view_stop)
        self._on_playhead(tl.playhead)
        self._on_selection(tl.selection)

    def detach(self) -> None:
        """Stop following the timeline (call before the widget is deleted)."""
        if not self._attached:
            return
        tl = self.timeline
        tl.range_changed.disconnect(self._on_range)
        tl.playhead_changed.disconnect(self._on_playhead)
        tl.selection_changed.disconnect(self._on_selection)
        self._attached = False

    def _on_range(self, start: int, stop: int) -> None:
        sr = self.timeline.sample_rate
        self.vb.setXRange(start / sr, stop / sr, padding=0.0)
        self.range_changed()

    def range_changed(self) -> None:
        """Hook: the visible range changed (already applied to the plot)."""

    def _on_playhead(self, frame: int) -> None:
        self._playhead.setPos(frame / self.timeline.sample_rate)

    def _on_selection(self, selection: tuple[int, int] | None) -> None:
        if selection is None:
            self._selection.hide()
            return
        sr = self.timeline.sample_rate
        self._selection.setRegion((selection[0] / sr, selection[1] / sr))
        self._selection.show()

    def plot_width_px(self) -> int:
        return max(int(self.vb.width()), 1)

    def plot_height_px(self) -> int:
        return max(int(self.vb.height()), 1)


class TimeRuler(TimelinePlot):
    """The time ruler above the lanes: ``m:ss.mmm`` ticks; click seeks, drag selects."""

    def __init__(self, timeline: Timeline, parent: QWidget | None = None) -> None:
        super().__init__(timeline, top_axis=TimeAxisItem("top"), parent=parent)
        self.left_axis.setStyle(showValues=False)
        self.left_axis.setPen(pg.mkPen(None))
        assert self.top_axis is not None
        self.top_axis.setHeight(26)
        self.set_y_range(0, 1)
        self.setFixedHeight(38)
        self.attach()


class WaveformView(TimelinePlot):
    """Min/max envelope per pixel (one vertical line each), raw samples when zoomed in close.

    Channels are stacked: channel ``c`` of ``C`` is drawn around ``y = C - 1 - 2c`` in [-1, 1].
    """

    def __init__(
        self, timeline: Timeline, color: str, scroll_lanes: Callable[[int], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(timeline, scroll_lanes, parent=parent)
        self.color = color
        self.pyramid: PeakPyramid | None = None
        self.track_rate = timeline.sample_rate
        self.offset_frames = 0.0
        self._curves: list[pg.PlotCurveItem] = []
        self._zero_lines: list[pg.InfiniteLine] = []
        self.has_drawn = False
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(0)
        self._redraw_timer.timeout.connect(self.redraw)
        self.left_axis.setStyle(tickLength=0)
        self.set_y_range(-1, 1, padding=0.02)
        self.attach()

    def set_color(self, color: str) -> None:
        """The waveform's colour (hex)."""
        self.color = color
        for curve in self._curves:
            curve.setPen(self._pen())

    def _pen(self) -> QPen:
        pen = QPen(QColor(self.color))
        pen.setCosmetic(True)
        pen.setWidth(1)
        return pen

    def set_data(self, pyramid: PeakPyramid | None, track_rate: int, offset_frames: float) -> None:
        """Show ``pyramid`` (None: nothing yet) of a track at ``track_rate`` placed at
        ``offset_frames`` (session frames)."""
        self.pyramid = pyramid
        self.track_rate = int(track_rate)
        self.offset_frames = float(offset_frames)
        channels = pyramid.channels if pyramid is not None else 0
        if channels != len(self._curves):
            for c in self._curves + self._zero_lines:
                self.removeItem(c)
            self._curves = [pg.PlotCurveItem(pen=self._pen(), antialias=False) for _ in range(channels)]
            zero_pen = pg.mkPen(COLORS["grid"])
            self._zero_lines = [
                pg.InfiniteLine(pos=channels - 1 - 2 * c, angle=0, movable=False, pen=zero_pen)
                for c in range(channels)
            ]
            for z in self._zero_lines:
                self.addItem(z, ignoreBounds=True)
            for curve in self._curves:
                self.addItem(curve, ignoreBounds=True)
            self.set_y_range(-max(channels, 1), max(channels, 1), padding=0.02)
            names = ["L", "R"] if channels == 2 else [f"{c + 1}" for c in range(channels)]
            ticks = [(channels - 1 - 2 * c, names[c]) for c in range(channels)] if channels > 1 else []
            self.left_axis.setTicks([ticks, []])
        self.has_drawn = False
        self.schedule_redraw()

    def set_offset(self, offset_frames: float) -> None:
        self.offset_frames = float(offset_frames)
        self.schedule_redraw()

    def range_changed(self) -> None:
        self.schedule_redraw()

    def resizeEvent(self, ev: Any) -> None:
        super().resizeEvent(ev)
        if "_redraw_timer" in self.__dict__:  # pyqtgraph resizes during __init__
            self.schedule_redraw()

    def schedule_redraw(self) -> None:
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def redraw(self) -> None:
        """Recompute the envelope for the visible range at one line per pixel (~1 ms)."""
        pyr = self.pyramid
        if pyr is None:
            return
        tl = self.timeline
        px = self.plot_width_px()
        sr = tl.sample_rate
        ratio = self.track_rate / sr  # track frames per session frame
        t0 = (tl.view_start - self.offset_frames) * ratio
        t1 = (tl.view_stop - self.offset_frames) * ratio
        spp = (t1 - t0) / px
        channels = pyr.channels
        x_of = lambda k: (self.offset_frames + k / ratio) / sr  # noqa: E731 - track frame -> s
        if spp >= 2.0:
            mins, maxs = pyr.envelope(t0, t1, px)
            x = x_of(t0 + (np.arange(px) + 0.5) * spp)
            for c, curve in enumerate(self._curves):
                ok = np.isfinite(mins[c])
                centre = channels - 1 - 2 * c
                ys = np.empty(2 * int(ok.sum()), dtype=np.float64)
                ys[0::2] = mins[c, ok]
                ys[1::2] = maxs[c, ok]
                # a pixel whose min == max would draw nothing: give it a hairline
                ys[1::2] = np.maximum(ys[1::2], ys[0::2] + 0.004)
                curve.setData(np.repeat(x[ok], 2), centre + 0.95 * ys, connect="pairs")
        else:
            a = max(int(math.floor(t0)) - 1, 0)
            b = min(int(math.ceil(t1)) + 2, pyr.frames)
            if b <= a:
                for curve in self._curves:
                    curve.setData([], [])
            else:
                k = np.arange(a, b)
                x = x_of(k)
                for c, curve in enumerate(self._curves):
                    centre = channels - 1 - 2 * c
                    curve.setData(x, centre + 0.95 * pyr.samples[c, a:b], connect="all")
        if not self.has_drawn:
            self.has_drawn = True
        self.drawn.emit()


class SpectrogramView(TimelinePlot):
    """The visible range's spectrogram as one image, recomputed (off the GUI thread, debounced)
    whenever the range, the size or the frequency scale changes. Until the new image arrives
    the previous one stays, stretched to where its columns now lie."""

    def __init__(
        self, timeline: Timeline, jobs: JobBridge, scroll_lanes: Callable[[int], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        self._freq_axis = FrequencyAxisItem("left")
        super().__init__(timeline, scroll_lanes, left_axis=self._freq_axis, parent=parent)
        self.jobs = jobs
        self.samples: np.ndarray | None = None
        self.track_rate = timeline.sample_rate
        self.offset_frames = 0.0
        self.log_frequency = False
        self.has_drawn = False
        self._job: Job | None = None
        self._request_key: tuple[Any, ...] | None = None
        self._image = pg.ImageItem(axisOrder="col-major")
        self._image.setLookupTable(pg.colormap.get("inferno").getLookupTable(nPts=256))
        self._image.setZValue(-10)
        self.addItem(self._image, ignoreBounds=True)
        # The separation mask over the spectrogram: one whole-track image (reduced once by
        # engine.mask_display), transparent where the mask is 0.
        self.mask: np.ndarray | None = None
        self.mask_stft: StftConfig = DEFAULT_STFT
        self.mask_visible = True
        self._mask_image: MaskImage | None = None
        self._mask_job: Job | None = None
        self._mask_item = pg.ImageItem(axisOrder="col-major")
        lut = np.zeros((256, 4), dtype=np.uint8)
        lut[:, :3] = MASK_OVERLAY_RGB
        lut[:, 3] = np.linspace(0, 255, 256).astype(np.uint8)
        self._mask_item.setLookupTable(lut)
        self._mask_item.setOpacity(MASK_OVERLAY_OPACITY)
        self._mask_item.setZValue(-5)
        self._mask_item.hide()
        self.addItem(self._mask_item, ignoreBounds=True)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(_SPECTROGRAM_DEBOUNCE_MS)
        self._debounce.timeout.connect(self.render)
        self._set_y_extent()
        self.attach()

    def set_data(self, samples: np.ndarray | None, track_rate: int, offset_frames: float) -> None:
        """Show the spectrogram of ``samples`` (float32 ``(channels, frames)``, referenced)."""
        self.samples = samples
        self.track_rate = int(track_rate)
        self.offset_frames = float(offset_frames)
        self.has_drawn = False
        self._set_y_extent()
        self.schedule_render(immediate=True)

    def set_offset(self, offset_frames: float) -> None:
        self.offset_frames = float(offset_frames)
        self.schedule_render()
        self._place_mask()

    def set_log_frequency(self, log_frequency: bool) -> None:
        if log_frequency != self.log_frequency:
            self.log_frequency = log_frequency
            self._set_y_extent()
            self.schedule_render(immediate=True)
            self._render_mask()

    # ---- mask overlay ------------------------------------------------------------------------
    def set_mask(self, mask: np.ndarray | None, stft: StftConfig = DEFAULT_STFT) -> None:
        """Overlay a separation mask ``(channels, bins, frames)`` in [0, 1] (None: none)."""
        self.mask, self.mask_stft = mask, stft
        self._mask_image = None
        self._render_mask()

    def set_mask_opacity(self, opacity: float) -> None:
        self._mask_item.setOpacity(float(opacity))

    def mask_columns_changed(self) -> None:
        """The overlay's image was updated in place (mask editing): show it again."""
        img = self._mask_image
        if img is not None:
            self._mask_item.setImage(img.image, autoLevels=False, levels=(0.0, 1.0))

    def refresh_audio(self) -> None:
        """The samples changed in place (a mask edit re-rendered them): draw them again."""
        self._request_key = None
        self.schedule_render(immediate=True)

    def set_mask_visible(self, on: bool) -> None:
        self.mask_visible = bool(on)
        self._mask_item.setVisible(self.mask_visible and self._mask_image is not None)

    @property
    def mask_image(self) -> MaskImage | None:
        """The overlay's display image (None until it arrives, or without a mask)."""
        return self._mask_image

    def _render_mask(self) -> None:
        if self._mask_job is not None:
            self._mask_job.cancel()
            self._mask_job = None
        mask = self.mask
        if mask is None:
            self._mask_item.hide()
            return
        rate, stft, log_f = self.track_rate, self.mask_stft, self.log_frequency

        def work(ctx: JobContext) -> MaskImage:
            return mask_display_image(mask, rate, stft, log_frequency=log_f)

        def done(job: Job) -> None:
            if job is not self._mask_job:
                return
            self._mask_job = None
            img: MaskImage = job.result
            if img.log_frequency != self.log_frequency:
                return
            self._mask_image = img
            self._mask_item.setImage(img.image, autoLevels=False, levels=(0.0, 1.0))
            self._place_mask()
            self._mask_item.setVisible(self.mask_visible)

        def dropped(job: Job) -> None:
            if job is self._mask_job:
                self._mask_job = None

        self._mask_job = self.jobs.submit("Mask overlay", work, on_finished=done, on_failed=dropped,
                                          on_cancelled=dropped, render=True)

    def _place_mask(self) -> None:
        img = self._mask_image
        if img is None:
            return
        x0 = self.offset_frames / self.timeline.sample_rate + img.start_seconds
        self._mask_item.setRect(QRectF(x0, img.y_low, img.stop_seconds - img.start_seconds,
                                       img.y_high - img.y_low))

    def _set_y_extent(self) -> None:
        nyquist = self.track_rate / 2.0
        self._freq_axis.log_frequency = self.log_frequency
        if self.log_frequency:
            self.set_y_range(math.log10(30.0), math.log10(nyquist))
        else:
            self.set_y_range(0, nyquist)
        self._freq_axis.picture = None
        self._freq_axis.update()

    def range_changed(self) -> None:
        self.schedule_render()

    def resizeEvent(self, ev: Any) -> None:
        super().resizeEvent(ev)
        if "_debounce" in self.__dict__:  # pyqtgraph resizes during __init__
            self.schedule_render()

    def schedule_render(self, immediate: bool = False) -> None:
        if self.samples is None:
            return
        self._debounce.start(0 if immediate else _SPECTROGRAM_DEBOUNCE_MS)

    def detach(self) -> None:
        super().detach()
        self._debounce.stop()
        if self._job is not None:
            self._job.cancel()
            self._job = None
        if self._mask_job is not None:
            self._mask_job.cancel()
            self._mask_job = None

    @property
    def busy(self) -> bool:
        return self._job is not None or self._debounce.isActive() or self._mask_job is not None

    def render(self) -> None:
        """Queue the image for the current range on the display queue (cancels a stale one)."""
        samples = self.samples
        if samples is None:
            return
        tl = self.timeline
        ratio = self.track_rate / tl.sample_rate
        t0 = (tl.view_start - self.offset_frames) * ratio
        t1 = (tl.view_stop - self.offset_frames) * ratio
        columns = min(self.plot_width_px(), MAX_SPECTROGRAM_COLUMNS)
        rows = 256 if self.log_frequency else min(1024, max(256, 2 * self.plot_height_px()))
        rate, log_f = self.track_rate, self.log_frequency
        key = (id(samples), round(t0), round(t1), columns, rows, log_f)
        if key == self._request_key and (self._job is not None or self.has_drawn):
            return  # that image is on its way or on screen (e.g. a resize that changed nothing)
        self._request_key = key
        if self._job is not None:
            self._job.cancel()

        def work(ctx: JobContext) -> SpectrogramImage:
            return display_spectrogram(
                samples, rate, t0, t1, columns, rows=rows, log_frequency=log_f,
                cancel=ctx.cancel_token,
            )

        self._job = self.jobs.submit(
            "Spectrogram", work, on_finished=self._on_image, on_failed=self._on_done_other,
            on_cancelled=self._on_done_other, render=True,
        )

    def _on_done_other(self, job: Job) -> None:
        if job is self._job:
            self._job = None
            self._request_key = None

    def _on_image(self, job: Job) -> None:
        if job is not self._job:
            return  # superseded
        self._job = None
        img: SpectrogramImage = job.result
        if img.log_frequency != self.log_frequency:
            return
        sr = self.timeline.sample_rate
        ratio = self.track_rate / sr
        x0 = (self.offset_frames + img.start / ratio) / sr
        x1 = (self.offset_frames + img.stop / ratio) / sr
        self._image.setImage(img.image_db, autoLevels=False, levels=SPECTROGRAM_LEVELS_DB)
        self._image.setRect(QRectF(x0, img.y_low, x1 - x0, img.y_high - img.y_low))
        self.has_drawn = True
        self.drawn.emit()
