"""Mask tools driven with synthesized mouse events: the stems change where painted, still sum to
the mix, and undo restores them exactly."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from tests.gui.test_separate_panel import load_song, separate

pytestmark = pytest.mark.gui


def _sum_error_db(session) -> float:
    mix = session.track_by_role("mix").audio.samples.astype(np.float64)
    total = sum(t.audio.samples.astype(np.float64) for t in session.tracks if t.role == "stem")
    return 10 * np.log10(np.sum((total - mix) ** 2) / np.sum(mix**2) + 1e-30)


def _ready(qtbot, window):
    load_song(window)
    separate(qtbot, window.panels["separate"])
    s = window.session
    stems = {t.name: t for t in s.tracks if t.role == "stem"}
    qtbot.waitUntil(lambda: all(t.id in window.lane_stack.lanes for t in stems.values()), timeout=10_000)
    lane = window.lane_stack.lanes[stems["vocals"].id]
    qtbot.waitUntil(lambda: lane.spectrogram.mask_image is not None, timeout=10_000)
    window.session.timeline.set_range(0, s.length_frames())
    qtbot.wait(50)
    return s, stems, lane


def _to_widget(view, seconds: float, hz: float) -> QPoint:
    scene = view.vb.mapViewToScene(QPointF(seconds, hz))
    return view.mapFromScene(scene)


def _drag(qtbot, view, points: list[tuple[float, float]]) -> None:
    viewport = view.viewport()
    pts = [_to_widget(view, t, f) for t, f in points]
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[0])
    for p in pts[1:]:
        QTest.mouseMove(viewport, p, 5)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[-1], 5)
    qtbot.wait(20)


def _drag_path(qtbot, view, points: list[tuple[float, float]]) -> None:
    """Like :func:`_drag`, with every move sent as a left-button drag event and given time to
    arrive (pyqtgraph drops moves within its 10-ms rate limit): a lasso needs the whole path."""
    viewport = view.viewport()
    pts = [QPointF(_to_widget(view, t, f)) for t, f in points]
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[0].toPoint())
    for p in pts[1:]:
        move = QMouseEvent(QEvent.Type.MouseMove, p, viewport.mapToGlobal(p), Qt.MouseButton.NoButton,
                           Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, move)
        qtbot.wait(20)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[-1].toPoint(), 5)
    qtbot.wait(20)


def test_brush_stroke_changes_the_stem_where_painted_and_undo_restores(qtbot, window) -> None:
    s, stems, lane = _ready(qtbot, window)
    editor = window.panels["masks"]
    before = {n: t.audio.samples.copy() for n, t in stems.items()}
    masks_before = {n: s.masks[t.id].copy() for n, t in stems.items()}
    editor.width_ms.setValue(100)
    editor.height_hz.setValue(4000)
    editor.tool_actions["eraser"].trigger()
    assert editor.tool == "eraser" and lane.spectrogram.vb.edit_handler is not None
    _drag(qtbot, lane.spectrogram, [(0.8, 1500.0), (0.9, 1500.0), (1.0, 1600.0), (1.1, 1500.0)])
    vocals = stems["vocals"].audio.samples
    changed = np.flatnonzero(np.any(vocals != before["vocals"], axis=0))
    assert changed.size > 0
    rate = stems["vocals"].audio.sample_rate
    # only around the stroke (its time span ± the brush radius and one STFT window)
    assert changed.min() / rate > 0.6 and changed.max() / rate < 1.3
    seg = slice(int(0.85 * rate), int(1.05 * rate))
    assert np.sum(vocals[:, seg] ** 2) < 0.9 * np.sum(before["vocals"][:, seg] ** 2)
    assert _sum_error_db(s) <= -100.0
    assert not np.array_equal(s.masks[stems["vocals"].id], masks_before["vocals"])
    undo = window.undo_actions["undo"]
    assert undo.isEnabled() and "Eraser on vocals" in undo.text()
    undo.trigger()
    for n, t in stems.items():
        assert np.array_equal(t.audio.samples, before[n])
        assert np.array_equal(s.masks[t.id], masks_before[n])
    window.undo_actions["redo"].trigger()
    assert np.array_equal(stems["vocals"].audio.samples, vocals) or not np.array_equal(
        stems["vocals"].audio.samples, before["vocals"])
    assert s.dirty


def test_box_fill_moves_energy_into_the_stem_and_select_gives_the_mouse_back(qtbot, window) -> None:
    s, stems, lane = _ready(qtbot, window)
    editor = window.panels["masks"]
    before = {n: t.audio.samples.copy() for n, t in stems.items()}
    editor.set_tool("box")
    editor.box_mode.setCurrentText("Fill")
    editor.feather.setValue(0)
    _drag(qtbot, lane.spectrogram, [(0.5, 100.0), (1.0, 2000.0), (1.5, 5000.0)])
    rate = stems["vocals"].audio.sample_rate
    seg = slice(int(0.7 * rate), int(1.3 * rate))
    inst = stems["instrumental"].audio.samples
    assert np.sum(inst[:, seg] ** 2) < 0.5 * np.sum(before["instrumental"][:, seg] ** 2)
    assert _sum_error_db(s) <= -100.0
    assert "Box Fill on vocals" in window.undo_actions["undo"].text()
    editor.tool_actions["select"].trigger()
    assert lane.spectrogram.vb.edit_handler is None
    # the mask overlay shows the edit: the box is (nearly) opaque on the vocals lane
    img = lane.spectrogram.mask_image
    col = int((1.0 - img.start_seconds) / (img.stop_seconds - img.start_seconds) * img.image.shape[0])
    assert img.image[col, 5:40].min() > 0.95


def test_lasso_clears_the_region_drawn_and_undoes(qtbot, window) -> None:
    """Draw round a triangle with the Lasso (L) set to Clear: the vocals lose energy inside its
    time span, the stems still sum to the mix, the outline is gone, and undo restores them."""
    s, stems, lane = _ready(qtbot, window)
    editor = window.panels["masks"]
    before = {n: t.audio.samples.copy() for n, t in stems.items()}
    editor.tool_actions["lasso"].trigger()
    assert editor.tool == "lasso"
    editor.box_mode.setCurrentText("Clear")
    editor.feather.setValue(0)
    path = [(0.5, 50.0), (0.8, 50.0), (1.1, 50.0), (1.4, 50.0), (1.4, 3000.0), (1.1, 6000.0), (0.8, 8000.0),
            (0.5, 9000.0)]
    _drag_path(qtbot, lane.spectrogram, path)
    rate = stems["vocals"].audio.sample_rate
    vocals = stems["vocals"].audio.samples
    seg = slice(int(0.7 * rate), int(1.2 * rate))
    assert np.sum(vocals[:, seg] ** 2) < 0.5 * np.sum(before["vocals"][:, seg] ** 2)
    changed = np.flatnonzero(np.any(vocals != before["vocals"], axis=0))
    assert changed.min() / rate > 0.35 and changed.max() / rate < 1.6
    assert _sum_error_db(s) <= -100.0
    assert editor._lasso_item is None and not editor._lasso
    assert "Lasso Clear on vocals" in window.undo_actions["undo"].text()
    window.undo_actions["undo"].trigger()
    for n, t in stems.items():
        assert np.array_equal(t.audio.samples, before[n])


def test_playback_plays_the_edit_without_stopping(qtbot, window, fake_output) -> None:
    s, stems, lane = _ready(qtbot, window)
    editor = window.panels["masks"]
    panel = window.panels["separate"]
    s.set_mute(stems["instrumental"].id, True)
    panel.act_ab.setChecked(True)  # B: the stems, the instrumental muted: the vocals alone
    window.playback.play()
    stream = fake_output.streams[-1]
    rate = stems["vocals"].audio.sample_rate
    start = int(1.0 * rate)
    window.playback.seek(start)
    editor.set_tool("box")
    editor.box_mode.setCurrentText("Clear")
    editor.feather.setValue(0)
    # clear everything the vocals have from 0.9 s to 1.6 s, while playing
    editor.press(lane, (0.9, 0.0), QPointF(0.9, 0.0))
    editor.release(lane, (1.6, rate / 2), QPointF(1.6, rate / 2))
    out = stream.pump(4096)  # the next buffers the device asks for hold the edited audio
    assert np.max(np.abs(out)) < 1e-5
    assert window.playback.player.playing
    window.undo_actions["undo"].trigger()
    out = stream.pump(4096)
    assert np.max(np.abs(out)) > 1e-3
    window.playback.stop()


def test_contrast_runs_as_a_job_and_undoes(qtbot, window) -> None:
    s, stems, lane = _ready(qtbot, window)
    editor = window.panels["masks"]
    vocals_id = stems["vocals"].id
    before = s.masks[vocals_id].copy()
    audio_before = stems["vocals"].audio.samples.copy()
    editor.stem_combo.setCurrentText("vocals")
    editor.threshold.setValue(0.5)
    editor.contrast.setValue(4.0)
    editor.act_contrast.trigger()
    assert editor.job is not None and not window.undo_actions["undo"].isEnabled()
    qtbot.waitUntil(lambda: editor.job is None, timeout=30_000)
    m = s.masks[vocals_id]
    # contrast pushes values away from the threshold: more of the mask sits near 0 or 1
    assert np.mean((m < 0.1) | (m > 0.9)) > np.mean((before < 0.1) | (before > 0.9)) + 0.05
    assert _sum_error_db(s) <= -100.0
    assert "Contrast 4 at 0.5 on vocals" in window.undo_actions["undo"].text()
    window.undo_actions["undo"].trigger()
    assert np.array_equal(s.masks[vocals_id], before)
    assert np.array_equal(stems["vocals"].audio.samples, audio_before)


def test_brush_outline_follows_the_pointer_with_harmonics(qtbot, window) -> None:
    s, stems, lane = _ready(qtbot, window)
    editor = window.panels["masks"]
    editor.set_tool("harmonic")
    editor.harmonics.setValue(4)
    editor.width_ms.setValue(200)
    editor.height_hz.setValue(100)
    lane.spectrogram.vb.edit_handler.hover(QPointF(1.0, 300.0))
    rects = [item.rect() for item in editor._outline]
    assert len(rects) == 4
    assert [round(r.center().y()) for r in rects] == [300, 600, 900, 1200]
    assert rects[0].width() == pytest.approx(0.2) and rects[0].height() == pytest.approx(100.0)
    lane.spectrogram.vb.edit_handler.hover(None)
    assert editor._outline == []
    # a real pointer move over the lane (no button) shows it too
    viewport = lane.spectrogram.viewport()
    p = QPointF(_to_widget(lane.spectrogram, 1.0, 2000.0))
    move = QMouseEvent(QEvent.Type.MouseMove, p, viewport.mapToGlobal(p), Qt.MouseButton.NoButton,
                       Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(viewport, move)
    qtbot.waitUntil(lambda: len(editor._outline) == 4, timeout=2_000)
