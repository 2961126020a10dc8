"""Helpers for the GUI tests: the stream double, test audio, simulated drops, waiting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PySide6
import soundfile as sf
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget

RATE = 44_100
PYSIDE_VERSION = tuple(PySide6.__version_info__[:2])


class FakeStream:
    """Stands in for sounddevice.OutputStream (the device boundary): records the callback and
    lets the test pull buffers from it as PortAudio would."""

    def __init__(self, samplerate: int, channels: int, blocksize: int, device, callback) -> None:
        self.samplerate, self.channels, self.blocksize = samplerate, channels, blocksize
        self.device, self.callback = device, callback
        self.active = False
        self.closed = False

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.closed = True

    def pump(self, frames: int) -> np.ndarray:
        out = np.zeros((frames, self.channels), dtype=np.float32)
        self.callback(out, frames, None, 0)
        return out


class FakeOutput:
    """Stream factory double; ``streams`` lists every stream the player opened."""

    def __init__(self) -> None:
        self.streams: list[FakeStream] = []

    def __call__(self, **kw) -> FakeStream:
        stream = FakeStream(**kw)
        self.streams.append(stream)
        return stream


def write_tone(path: Path, seconds: float, freq_hz: float, channels: int = 2, rate: int = RATE) -> Path:
    """A short test file (never committed: tests write them into tmp_path)."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.4 * np.sin(2 * np.pi * freq_hz * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
    data = np.stack([x * (1.0 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)
    sf.write(str(path), data, rate)
    return path



def drop_files(widget: QWidget, paths: list[Path]) -> tuple[QMimeData, QDragEnterEvent, QDropEvent]:
    """Drag file URLs onto ``widget`` and drop them (Qt delivers a drop only to a widget that
    accepted the drag's enter event). Returns the mime data and events so the caller keeps
    them alive while Qt uses them."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.rect().center())
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    # PySide6 >= 6.12 takes a QPointF (its QPoint form is deprecated); earlier ones a QPoint.
    # Chosen by version: a failed overload costs PySide6 ~0.1 s to explain.
    enter_pos = pos if PYSIDE_VERSION >= (6, 12) else pos.toPoint()
    enter = QDragEnterEvent(enter_pos, *args)
    QApplication.sendEvent(widget, enter)
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return mime, enter, drop


def wait_loaded(qtbot, w, lanes: int, timeout: int = 15_000) -> None:
    """Wait until ``lanes`` lanes exist, nothing is loading and every lane is drawn."""

    def ready() -> None:
        assert len(w.lane_stack.lanes) == lanes
        assert not w.jobs.active_jobs
        assert w.lane_stack.is_drawn and not w.lane_stack.busy

    qtbot.waitUntil(ready, timeout=timeout)
