"""The one time axis every lane shares, in integer sample frames of the session's rate.

Qt-free: views subscribe to the events and never keep their own copy of the range, playhead
or selection (Sonic Visualiser's ViewManager, as a plain model).
"""

from __future__ import annotations

from engine.events import Event

MIN_VISIBLE_FRAMES = 32


class Timeline:
    """Visible range, playhead, selection and loop, in sample frames.

    Events:
        range_changed(start, stop): the visible range changed.
        playhead_changed(frame): the playhead moved (seek or playback).
        selection_changed(selection): ``(start, stop)`` or ``None``.
        length_changed(frames): the session's length changed.

    ``selection_track`` is the id of the track whose lane the selection was dragged on (None
    when it was set another way); tools that take audio from a selection read that track.
    """

    def __init__(self, sample_rate: int = 44_100, length_frames: int = 0) -> None:
        self.sample_rate = int(sample_rate)
        self.length_frames = int(length_frames)
        self.view_start = 0
        self.view_stop = max(self.length_frames, self.sample_rate)
        self.playhead = 0
        self.selection: tuple[int, int] | None = None
        self.selection_track: str | None = None
        self.loop_enabled = False
        self.range_changed = Event()
        self.playhead_changed = Event()
        self.selection_changed = Event()
        self.length_changed = Event()

    # ---- conversions -------------------------------------------------------------------------
    def seconds(self, frame: float) -> float:
        return frame / self.sample_rate

    def frame(self, seconds: float) -> int:
        return int(round(seconds * self.sample_rate))

    # ---- length ------------------------------------------------------------------------------
    def set_length(self, frames: int, sample_rate: int | None = None) -> None:
        if sample_rate is not None:
            self.sample_rate = int(sample_rate)
        was_empty = self.length_frames == 0
        self.length_frames = max(int(frames), 0)
        self.length_changed.emit(self.length_frames)
        if was_empty:
            self.fit()  # the first material: show all of it; later changes keep the user's zoom
        else:
            self.set_range(self.view_start, self.view_stop)

    # ---- visible range -----------------------------------------------------------------------
    def set_range(self, start: float, stop: float) -> None:
        """Show ``[start, stop)``; clamped to a sensible window around the session."""
        start, stop = float(start), float(stop)
        if stop - start < MIN_VISIBLE_FRAMES:
            mid = (start + stop) / 2
            start, stop = mid - MIN_VISIBLE_FRAMES / 2, mid + MIN_VISIBLE_FRAMES / 2
        limit = max(self.length_frames, self.sample_rate)
        span = min(stop - start, 2.0 * limit)
        start = min(max(start, -0.5 * span), limit - 0.5 * span)
        first = int(round(start))
        new = (first, first + int(round(span)))  # round the span once: scrolling keeps its width
        if new != (self.view_start, self.view_stop):
            self.view_start, self.view_stop = new
            self.range_changed.emit(self.view_start, self.view_stop)

    def fit(self) -> None:
        """Show the whole session."""
        self.set_range(0, max(self.length_frames, self.sample_rate))

    def zoom(self, factor: float, anchor: float | None = None) -> None:
        """Zoom by ``factor`` (> 1 zooms in) keeping ``anchor`` (a frame) fixed on screen."""
        if anchor is None:
            anchor = (self.view_start + self.view_stop) / 2
        start = anchor - (anchor - self.view_start) / factor
        stop = anchor + (self.view_stop - anchor) / factor
        self.set_range(start, stop)

    def scroll(self, fraction: float) -> None:
        """Scroll by a fraction of the visible span (negative = earlier)."""
        shift = fraction * (self.view_stop - self.view_start)
        self.set_range(self.view_start + shift, self.view_stop + shift)

    # ---- playhead and selection --------------------------------------------------------------
    def set_playhead(self, frame: int) -> None:
        frame = min(max(int(frame), 0), max(self.length_frames, 0))
        if frame != self.playhead:
            self.playhead = frame
            self.playhead_changed.emit(frame)

    def set_selection(self, start: int | None, stop: int | None = None, track: str | None = None) -> None:
        """Select ``[start, stop)`` (either order; None clears), dragged on ``track``'s lane."""
        if start is None or stop is None or int(stop) == int(start):
            sel = None
        else:
            a, b = sorted((int(start), int(stop)))
            sel = (max(a, 0), min(b, self.length_frames)) if self.length_frames else (a, b)
        self.selection_track = track if sel is not None else None
        if sel != self.selection:
            self.selection = sel
            self.selection_changed.emit(sel)
