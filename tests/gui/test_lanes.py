"""Lanes, drops, the shared time axis, seeking and selecting, lane controls."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from gui.views import format_time
from tests.gui.helpers import drop_files, wait_loaded

pytestmark = pytest.mark.gui


def _load_two(qtbot, window, audio_files):
    keep = drop_files(window, [audio_files["mix"], audio_files["acapella"]])
    wait_loaded(qtbot, window, 2)
    return keep


def _x_range(view) -> tuple[float, float]:
    lo, hi = view.vb.viewRange()[0]
    return lo, hi


def _all_views(window):
    views = [window.lane_stack.ruler]
    for lane in window.lane_stack.lanes.values():
        views += [lane.waveform, lane.spectrogram]
    return views


def _wheel(view, steps: float, modifiers=Qt.KeyboardModifier.NoModifier, x_fraction: float = 0.5) -> None:
    vp = view.viewport()
    pos = QPointF(vp.width() * x_fraction, vp.height() / 2)
    ev = QWheelEvent(
        pos, QPointF(vp.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, int(120 * steps)),
        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False,
    )
    QApplication.sendEvent(vp, ev)


def _time_at(view, x_fraction: float) -> float:
    """The time (s) under viewport column ``x_fraction`` of ``view``."""
    vp = view.viewport()
    scene = view.mapToScene(QPoint(int(vp.width() * x_fraction), vp.height() // 2))
    return view.vb.mapSceneToView(scene).x()


def _view_x_px(view, seconds: float) -> int:
    """Viewport pixel column of time ``seconds`` in ``view``."""
    scene_pt = view.vb.mapViewToScene(QPointF(seconds, 0.0))
    return view.mapFromScene(scene_pt).x()


def _drag(qtbot, widget, x0: int, x1: int, y: int) -> None:
    """Press at x0, move with the left button held, release at x1 (pyqtgraph drops mouse
    moves closer than ~16 ms apart, so the moves are spaced in time)."""
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    mods = Qt.KeyboardModifier.NoModifier

    def send(kind, x: int, button, buttons) -> None:
        local = QPointF(x, y)
        ev = QMouseEvent(kind, local, QPointF(widget.mapToGlobal(local.toPoint())), button, buttons, mods)
        QApplication.sendEvent(widget, ev)

    send(QEvent.Type.MouseButtonPress, x0, left, left)
    for x in np.linspace(x0, x1, 5).astype(int):
        qtbot.wait(25)
        send(QEvent.Type.MouseMove, int(x), none, left)
    send(QEvent.Type.MouseButtonRelease, x1, left, none)


def test_dropping_two_files_creates_mix_and_acapella_lanes(qtbot, window, audio_files) -> None:
    _load_two(qtbot, window, audio_files)
    s = window.session
    assert [t.role for t in s.tracks] == ["mix", "acapella"]
    assert [t.source_path for t in s.tracks] == [audio_files["mix"], audio_files["acapella"]]
    assert all(t.checksum and len(t.checksum) == 64 for t in s.tracks)
    assert s.tracks[0].audio.frames == 3 * 44_100 and s.tracks[1].audio.frames == int(2.5 * 44_100)
    assert window.windowTitle() == "Unmix Studio — song mix[*]"
    # one lane per track, in session order, each with both views drawn
    lanes = [window.lane_stack.lane_at(i) for i in range(2)]
    assert [lane.track.role for lane in lanes] == ["mix", "acapella"]
    assert all(lane.waveform.has_drawn and lane.spectrogram.has_drawn for lane in lanes)
    assert s.timeline.length_frames == 3 * 44_100
    assert window.cache.get(s.tracks[0].audio) is not None


def test_one_file_goes_to_the_free_lane_and_a_lane_drop_replaces_that_lane(
    qtbot, window, audio_files
) -> None:
    keep = drop_files(window, [audio_files["mix"]])
    wait_loaded(qtbot, window, 1)
    keep = drop_files(window, [audio_files["acapella"]])
    wait_loaded(qtbot, window, 2)
    mix, acapella = window.session.tracks
    assert (mix.role, acapella.role) == ("mix", "acapella")
    window.session.set_gain_db(acapella.id, -4.5)
    lane = window.lane_stack.lanes[acapella.id]
    keep = drop_files(lane, [audio_files["other"]])
    qtbot.waitUntil(lambda: window.session.tracks[1].audio.frames == int(1.5 * 44_100), timeout=10_000)
    wait_loaded(qtbot, window, 2)
    replaced = window.session.tracks[1]
    assert replaced.id == acapella.id and replaced.role == "acapella" and replaced.gain_db == -4.5
    assert replaced.source_path == audio_files["other"] and replaced.name == "other"
    assert replaced.audio.channels == 1
    assert window.session.tracks[0] is mix  # the mix lane is untouched
    new_lane = window.lane_stack.lanes[acapella.id]
    assert new_lane is not lane and new_lane.audio is replaced.audio
    assert new_lane.header.gain_slider.value() == -9  # the kept -4.5 dB, in half-dB steps
    del keep


def test_a_bad_file_is_reported_and_the_session_is_unchanged(qtbot, window, audio_files, tmp_path) -> None:
    _load_two(qtbot, window, audio_files)
    before = [(t.id, t.audio) for t in window.session.tracks]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio at all" * 10)
    with qtbot.waitSignal(window.error_shown, timeout=10_000) as blocker:
        keep = drop_files(window, [bad])
    text = blocker.args[0]
    assert "broken.wav" in text and window.last_error == text
    assert window.message_label.text() == text
    box = window._message_box  # shown with open(): window-modal, not blocking the event loop
    assert box is not None and box.isVisible()
    assert box.windowModality() == Qt.WindowModality.WindowModal
    box.close()
    assert [(t.id, t.audio) for t in window.session.tracks] == before
    assert len(window.lane_stack.lanes) == 2
    del keep


def test_ctrl_wheel_zoom_in_one_lane_moves_every_lane(qtbot, window, audio_files) -> None:
    _load_two(qtbot, window, audio_files)
    tl = window.session.timeline
    assert (tl.view_start, tl.view_stop) == (0, tl.length_frames)
    acapella_spec = window.lane_stack.lane_at(1).spectrogram
    # zoom in by 2 notches about the pointer at 25 % of the acapella's spectrogram
    anchor_s = _time_at(acapella_spec, 0.25)
    _wheel(acapella_spec, 2, Qt.KeyboardModifier.ControlModifier, x_fraction=0.25)
    span = tl.view_stop - tl.view_start
    assert span == pytest.approx(tl.length_frames / 1.25**2, rel=0.01)
    px_s = (tl.view_stop - tl.view_start) / tl.sample_rate / acapella_spec.plot_width_px()
    assert _time_at(acapella_spec, 0.25) == pytest.approx(anchor_s, abs=1.5 * px_s)  # stays put
    expected = (tl.view_start / tl.sample_rate, tl.view_stop / tl.sample_rate)
    for view in _all_views(window):
        assert _x_range(view) == pytest.approx(expected, abs=1e-6), type(view).__name__
    # the mix waveform was redrawn for the new range (envelope inside it)
    mix_wave = window.lane_stack.lane_at(0).waveform
    qtbot.waitUntil(lambda: mix_wave._curves[0].xData is not None and mix_wave._curves[0].xData.max() <= expected[1] + 1e-6)
    x = mix_wave._curves[0].xData
    assert x.min() >= expected[0] - 1e-6
    # and the acapella spectrogram was recomputed for it
    qtbot.waitUntil(lambda: not acapella_spec.busy)
    rect = acapella_spec._image.mapRectToParent(acapella_spec._image.boundingRect())
    assert rect.left() == pytest.approx(expected[0], abs=1e-3)
    assert rect.right() == pytest.approx(expected[1], abs=1e-3)


def test_wheel_scrolls_keyboard_zooms_and_fit_restores(qtbot, window, audio_files) -> None:
    _load_two(qtbot, window, audio_files)
    tl = window.session.timeline
    window.zoom(4.0)
    start, span = tl.view_start, tl.view_stop - tl.view_start
    _wheel(window.lane_stack.lane_at(0).waveform, -1)  # wheel down: later in time
    assert tl.view_start == pytest.approx(start + 0.1 * span, abs=2)
    assert tl.view_stop - tl.view_start == pytest.approx(span, abs=1)  # frames are rounded
    qtbot.keyClick(window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert (tl.view_start, tl.view_stop) == (0, tl.length_frames)
    qtbot.keyClick(window, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    assert tl.view_stop - tl.view_start == pytest.approx(tl.length_frames / 2, abs=2)
    qtbot.keyClick(window, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert tl.view_stop - tl.view_start == pytest.approx(tl.length_frames, abs=2)


def test_zoomed_in_close_the_waveform_shows_samples(qtbot, window, audio_files) -> None:
    _load_two(qtbot, window, audio_files)
    tl = window.session.timeline
    tl.set_range(1000, 1100)  # 100 samples over ~850 px
    wave = window.lane_stack.lane_at(0).waveform
    qtbot.waitUntil(lambda: wave._curves[0].xData is not None and len(wave._curves[0].xData) < 200)
    samples = window.session.tracks[0].audio.samples
    x, y = wave._curves[0].xData, wave._curves[0].yData
    k = np.round(x * tl.sample_rate).astype(int)
    np.testing.assert_allclose(y, 1.0 + 0.95 * samples[0, k], atol=1e-6)  # channel 0 around y=+1


def test_click_seeks_and_drag_selects_a_loop_region(qtbot, window, audio_files) -> None:
    _load_two(qtbot, window, audio_files)
    tl = window.session.timeline
    view = window.lane_stack.lane_at(1).waveform
    y = view.viewport().height() // 2
    x1 = _view_x_px(view, 1.0)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x1, y))
    assert tl.playhead == pytest.approx(44_100, abs=44_100 * 3 / view.plot_width_px() + 2)
    assert window.playback.player.position == tl.playhead
    # every lane's playhead line moved there
    for v in _all_views(window):
        assert v._playhead.value() == pytest.approx(tl.playhead / tl.sample_rate)
    assert window.time_label.text().startswith(format_time(tl.playhead / tl.sample_rate))
    # drag from 0.5 s to 2.0 s selects that region
    xa, xb = _view_x_px(view, 0.5), _view_x_px(view, 2.0)
    _drag(qtbot, view.viewport(), xa, xb, y)
    assert tl.selection is not None
    tol = 44_100 * 3 / view.plot_width_px() + 2
    assert tl.selection[0] == pytest.approx(22_050, abs=tol)
    assert tl.selection[1] == pytest.approx(88_200, abs=tol)
    # the selection is the player's loop region, looping when Loop is on
    assert window.playback.player.loop == (False, *tl.selection)
    window.act_loop.setChecked(True)
    assert window.playback.player.loop == (True, *tl.selection)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert tl.selection is None and window.playback.player.loop == (False, 0, 0)


def test_lane_controls_set_the_players_lane_parameters(qtbot, window, audio_files) -> None:
    _load_two(qtbot, window, audio_files)
    player = window.playback.player
    mix, acapella = window.session.tracks
    mix_header = window.lane_stack.lanes[mix.id].header
    acapella_header = window.lane_stack.lanes[acapella.id].header
    assert player.lane_gain(mix.id) == 1.0 and player.lane_gain(acapella.id) == 1.0
    qtbot.mouseClick(mix_header.mute_button, Qt.MouseButton.LeftButton)
    assert mix.mute and player.lane_gain(mix.id) == 0.0 and player.lane_gain(acapella.id) == 1.0
    qtbot.mouseClick(mix_header.solo_button, Qt.MouseButton.LeftButton)  # solo beats mute
    assert player.lane_gain(mix.id) == 1.0 and player.lane_gain(acapella.id) == 0.0
    qtbot.mouseClick(mix_header.solo_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(mix_header.mute_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(acapella_header.polarity_button, Qt.MouseButton.LeftButton)
    assert acapella.polarity == -1 and player.lane_gain(acapella.id) == -1.0
    acapella_header.gain_slider.setValue(-12)  # -6 dB
    assert acapella.gain_db == -6.0
    assert player.lane_gain(acapella.id) == pytest.approx(-(10 ** (-6 / 20)))
    assert acapella_header.gain_label.text() == "-6.0 dB"
    # a change made elsewhere (the session) shows in the header
    window.session.set_mute(acapella.id, True)
    assert acapella_header.mute_button.isChecked() and player.lane_gain(acapella.id) == 0.0


def test_view_options_log_frequency_and_hiding_views(qtbot, window, audio_files) -> None:
    _load_two(qtbot, window, audio_files)
    spec = window.lane_stack.lane_at(0).spectrogram
    window.act_log_freq.setChecked(True)
    qtbot.waitUntil(lambda: spec.has_drawn and not spec.busy and spec._image.image is not None)
    qtbot.waitUntil(lambda: spec._image.image.shape[1] == 256)
    rect = spec._image.mapRectToParent(spec._image.boundingRect())
    assert rect.top() == pytest.approx(np.log10(30.0), abs=1e-6)
    assert rect.bottom() == pytest.approx(np.log10(22_050.0), abs=1e-6)
    # the 220 Hz tone of the mix is the loudest row
    row_hz = np.geomspace(30.0, 22_050.0, 256)
    peak = row_hz[int(np.median(spec._image.image.argmax(axis=1)))]
    assert abs(np.log2(peak / 220.0)) < 0.1
    window.act_show_spec.setChecked(False)
    assert not spec.isVisibleTo(window) and window.lane_stack.lane_at(0).waveform.isVisibleTo(window)
    window.act_show_wave.setChecked(False)  # both hidden is refused
    assert window.act_show_spec.isChecked()


def test_lanes_scroll_vertically_with_shift_wheel(qtbot, window, audio_files) -> None:
    _load_two(qtbot, window, audio_files)
    window.resize(900, 420)  # too small for two lanes
    qtbot.waitUntil(lambda: window.lane_stack.scroll_area.verticalScrollBar().maximum() > 0)
    bar = window.lane_stack.scroll_area.verticalScrollBar()
    _wheel(window.lane_stack.lane_at(0).waveform, -1, Qt.KeyboardModifier.ShiftModifier)
    assert bar.value() > 0
