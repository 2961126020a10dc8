"""The align panel: auto-align, no match, nudges with undo, null meter, invert-check, residual."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QKeySequence, QMouseEvent
from PySide6.QtWidgets import QApplication

from engine.audio import Audio
from tests.engine.signals import accompaniment, song, sung_line
from tests.gui.helpers import wait_loaded

pytestmark = pytest.mark.gui

RATE = 22_050
SECONDS = 8.0
OFFSET = 3_217  # acapella sample k plays at mix sample k + OFFSET
GAIN_DB = 3.0  # the acapella is this much quieter than the vocal in the mix


def _pair(wrong_song: bool = False) -> tuple[Audio, Audio]:
    vocals, inst = song(RATE, SECONDS, seed=4)
    mix = vocals + 0.1 * inst  # a quiet band: the exact vocal stem nulls about 25 dB deep
    if wrong_song:
        v = sung_line(RATE, SECONDS, seed=99) + 0.1 * accompaniment(RATE, SECONDS, seed=7)
        aca = np.stack([v, v])
    else:
        aca = vocals[:, OFFSET:] * np.float32(10 ** (-GAIN_DB / 20))
    return Audio(mix.astype(np.float32), RATE), Audio(np.ascontiguousarray(aca, dtype=np.float32), RATE)


def _load(qtbot, window, wrong_song: bool = False) -> None:
    mix, aca = _pair(wrong_song)
    window.session.set_track("mix", mix, name="mix")
    window.session.set_track("acapella", aca, name="acapella")
    wait_loaded(qtbot, window, 2)


def _panel(window):
    return window.panels["align"]


def _align(qtbot, window):
    panel = _panel(window)
    with qtbot.waitSignal(panel.aligned, timeout=30_000) as sig:
        panel.align_button.click()
    qtbot.waitUntil(lambda: not window.jobs.active_jobs, timeout=15_000)
    return sig.args[0]


@pytest.fixture
def aligned(qtbot, window):
    _load(qtbot, window)
    result = _align(qtbot, window)
    qtbot.waitUntil(lambda: _panel(window).null_depth_db is not None, timeout=5000)
    residual = window.session.track_by_role("residual")
    qtbot.waitUntil(lambda: residual.id in window.lane_stack.lanes, timeout=5000)
    # LaneStack shows a lane built without spares as a top-level window for a moment, which
    # leaves no active window (keyboard shortcuts need one): activate it again
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=2000)
    return result


def test_auto_align_moves_the_acapella_and_shows_the_numbers(qtbot, window, aligned) -> None:
    panel = _panel(window)
    aca = window.session.track_by_role("acapella")
    assert aligned.matched
    assert aca.offset_frames == pytest.approx(OFFSET, abs=0.25)
    assert aca.gain_db == pytest.approx(GAIN_DB, abs=0.05)
    assert aca.polarity == 1
    # the lane's views moved with it (the waveform is drawn from the track's offset)
    lane = window.lane_stack.lanes[aca.id]
    assert lane.waveform.offset_frames == aca.offset_frames
    assert lane.spectrogram.offset_frames == aca.offset_frames
    # saved in the session (so in projects)
    al = window.session.alignment
    assert al["offset_samples"] == pytest.approx(OFFSET, abs=0.25) and al["match"] is True
    assert al["drift_ppm"] == 0.0
    texts = {k: v.text() for k, v in panel.value_labels.items()}
    assert texts["offset"].startswith(f"+{OFFSET}.")
    assert f"({1000 * OFFSET / RATE:+.3f} ms)" in texts["offset"]
    assert texts["gain"] == f"{aca.gain_db:+.2f} dB"
    assert "normal" in texts["polarity"]
    assert texts["drift"] == "+0.00 ppm"
    assert float(texts["confidence"]) > 0.5
    assert panel.null_depth_db == pytest.approx(aligned.null_depth_db, abs=0.1)
    assert panel.null_depth_db < -20  # exact stem under a quiet band: a deep null
    # the player places the acapella exactly where the session says (a fraction of a frame plays
    # through the fractional delay, so the live invert-check nulls as the meter does)
    assert window.playback.player._lanes[aca.id].offset_frames == aca.offset_frames
    # one undo step for the whole auto-align
    assert window.undo_actions["undo"].text() == "&Undo Auto-align acapella"


def test_wrong_song_shows_no_match_and_changes_nothing(qtbot, window) -> None:
    _load(qtbot, window, wrong_song=True)
    panel = _panel(window)
    aca = window.session.track_by_role("acapella")
    result = _align(qtbot, window)
    assert not result.matched
    assert "No match" in panel.status_label.text()
    assert (aca.offset_frames, aca.gain_db, aca.polarity) == (0.0, 0.0, 1)
    assert window.session.alignment is None
    assert window.session.track_by_role("residual") is None
    assert panel.undo_stack.count() == 0


@pytest.mark.parametrize("amount,unit", [(1, "samples"), (-10, "samples"), (100, "samples"),
                                         (-1, "ms"), (10, "ms")])
def test_nudge_buttons_and_shortcuts_move_by_the_amount_and_undo_restores(
        qtbot, window, aligned, amount: int, unit: str) -> None:
    panel = _panel(window)
    aca = window.session.track_by_role("acapella")
    start = aca.offset_frames
    frames = amount if unit == "samples" else amount * RATE / 1000
    panel.nudge_buttons[(amount, unit)].click()
    assert aca.offset_frames == pytest.approx(start + frames, abs=1e-9)
    assert window.session.alignment["offset_samples"] == aca.offset_frames
    assert panel.undo_stack.undoText() == f"Nudge acapella {amount:+d} {unit}"
    assert window.undo_actions["undo"].text() == f"&Undo Nudge acapella {amount:+d} {unit}"
    # the same nudge by its keyboard shortcut (shown in the Align menu)
    action = panel.nudge_actions[(amount, unit)]
    assert action in window.menus["align"].actions()
    key = action.shortcut()
    assert not key.isEmpty()
    qtbot.keyClick(window, key[0].key(), key[0].keyboardModifiers())
    assert aca.offset_frames == pytest.approx(start + 2 * frames, abs=1e-9)
    # Ctrl+Z twice restores exactly; Ctrl+Shift+Z redoes
    assert window.undo_actions["undo"].shortcut() == QKeySequence(QKeySequence.StandardKey.Undo)
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert aca.offset_frames == start
    assert window.session.alignment["offset_samples"] == start
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert aca.offset_frames == pytest.approx(start + frames, abs=1e-9)


def test_null_meter_gets_worse_within_100_ms_of_a_nudge_away(qtbot, window, aligned) -> None:
    panel = _panel(window)
    best = panel.null_depth_db
    seen: list[float] = []
    panel.null_measured.connect(seen.append)
    t0 = time.monotonic()
    panel.nudge(10, "samples")
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=1000)
    elapsed_ms = 1000 * (time.monotonic() - t0)
    assert elapsed_ms < 100
    assert seen[-1] > best + 10  # 10 samples off: far shallower null
    assert panel.null_label.text() == f"Null: {seen[-1]:.1f} dB"
    seen.clear()
    panel.undo_stack.undo()
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=1000)
    assert seen[-1] == pytest.approx(best, abs=0.05)


def test_invert_check_flips_the_acapella_polarity_in_the_player(qtbot, window, aligned) -> None:
    panel = _panel(window)
    player = window.playback.player
    aca = window.session.track_by_role("acapella")
    gain = 10 ** (aca.gain_db / 20)
    assert player.lane_gain(aca.id) == pytest.approx(gain, rel=1e-6)
    panel.invert_button.click()
    assert panel.act_invert.isChecked()
    assert player.lane_gain(aca.id) == pytest.approx(-gain, rel=1e-6)
    assert aca.polarity == 1  # a listening mode: the session's polarity is kept
    panel.nudge(1, "samples")  # a nudge re-copies the track into the player; still inverted
    assert player.lane_gain(aca.id) == pytest.approx(-gain, rel=1e-6)
    window.playback.stop()
    panel.act_invert.trigger()
    assert not panel.invert_button.isChecked()
    assert player.lane_gain(aca.id) == pytest.approx(gain, rel=1e-6)


def test_residual_lane_appears_after_align_and_follows_nudges(qtbot, window, aligned) -> None:
    panel = _panel(window)
    residual = window.session.track_by_role("residual")
    assert residual is not None and residual.mute
    qtbot.waitUntil(lambda: residual.id in window.lane_stack.lanes, timeout=5000)
    mix = window.session.track_by_role("mix").audio.samples
    # mix − aligned acapella leaves (nearly) the accompaniment: far less energy than the mix
    ratio_db = 10 * np.log10(np.sum(residual.audio.samples.astype(np.float64) ** 2) / np.sum(mix.astype(np.float64) ** 2))
    assert ratio_db < -3
    assert panel.local_fit.has_data
    before = residual.audio
    with qtbot.waitSignal(panel.residual_ready, timeout=10_000):
        panel.nudge(100, "samples")
    new = window.session.track_by_role("residual")
    assert new.id == residual.id and new.audio is not before
    assert [t.role for t in window.session.tracks].count("residual") == 1


def test_alt_drag_on_the_acapella_lane_moves_it_as_one_undo_step(qtbot, window, aligned) -> None:
    panel = _panel(window)
    aca = window.session.track_by_role("acapella")
    start = aca.offset_frames
    vp = window.lane_stack.lanes[aca.id].waveform.viewport()
    tl = window.session.timeline
    per_px = (tl.view_stop - tl.view_start) / vp.width()
    alt, left = Qt.KeyboardModifier.AltModifier, Qt.MouseButton.LeftButton

    def send(kind, x, button, buttons) -> None:
        p = QPointF(x, vp.height() / 2)
        QApplication.sendEvent(vp, QMouseEvent(kind, p, QPointF(vp.mapToGlobal(p.toPoint())), button, buttons, alt))

    send(QEvent.Type.MouseButtonPress, 100, left, left)
    send(QEvent.Type.MouseMove, 120, Qt.MouseButton.NoButton, left)
    send(QEvent.Type.MouseMove, 140, Qt.MouseButton.NoButton, left)
    send(QEvent.Type.MouseButtonRelease, 140, left, Qt.MouseButton.NoButton)
    assert aca.offset_frames == pytest.approx(start + round(40 * per_px), abs=1e-9)
    assert tl.selection is None  # the drag moved the lane, it did not select
    assert panel.undo_stack.undoText().startswith("Drag acapella +")
    panel.undo_stack.undo()
    assert aca.offset_frames == start


def test_alignment_is_saved_in_the_project_and_shown_after_reopening(qtbot, window, aligned, tmp_path) -> None:
    panel = _panel(window)
    panel.nudge(-1, "ms")
    offset = window.session.track_by_role("acapella").offset_frames
    # the files behind the session's tracks: a project references its sources
    import soundfile as sf

    for role in ("mix", "acapella"):
        t = window.session.track_by_role(role)
        path = tmp_path / f"{role}.wav"
        sf.write(str(path), t.audio.samples.T, RATE, subtype="FLOAT")
        t.source_path = path
    with qtbot.waitSignal(window.jobs.finished, timeout=10_000):
        window._save_to(tmp_path / "p.unmix")
    job = window.open_project(tmp_path / "p.unmix")
    qtbot.waitUntil(lambda: job.done and window.session.project_path == tmp_path / "p.unmix", timeout=10_000)
    wait_loaded(qtbot, window, 3)
    s = window.session
    assert s.track_by_role("acapella").offset_frames == offset
    assert s.alignment["offset_samples"] == offset and s.alignment["match"] is True
    assert panel.session is s
    assert panel.value_labels["offset"].text().startswith(f"{offset:+.2f} samples")
    # the meter comes back too (its renderer is rebuilt in a job)
    qtbot.waitUntil(lambda: panel.null_depth_db is not None and panel.renderer is not None, timeout=10_000)


def test_with_drift_the_player_plays_the_drift_corrected_acapella(qtbot, window) -> None:
    _load(qtbot, window)
    panel = _panel(window)
    aca = window.session.track_by_role("acapella")
    raw_frames = aca.audio.frames
    window.session.set_alignment({"match": True, "drift_ppm": 500.0, "offset_samples": 0.0})
    panel.measure_null()  # no renderer yet: one is built in a job, then the lane is replaced
    qtbot.waitUntil(lambda: panel.renderer is not None and not window.jobs.active_jobs, timeout=10_000)
    lane = window.playback.player._lanes[aca.id]
    assert lane.samples.shape[1] == pytest.approx(raw_frames * (1 + 500e-6), abs=2)
    assert lane.samples is panel.renderer.drift_corrected(500.0)
    # nudges keep the corrected samples and move them
    panel.nudge(10, "samples")
    lane = window.playback.player._lanes[aca.id]
    assert lane.offset_frames == 10 and lane.samples.shape[1] != raw_frames


def test_replacing_the_acapella_drops_the_alignment_and_the_residual(qtbot, window, aligned) -> None:
    panel = _panel(window)
    _, other = _pair(wrong_song=True)
    window.session.set_track("acapella", other, name="other")
    qtbot.waitUntil(lambda: window.session.track_by_role("residual") is None, timeout=3000)
    aca = window.session.track_by_role("acapella")
    assert window.session.alignment is None and panel.renderer is None
    kept = (aca.offset_frames, aca.gain_db, aca.polarity)  # Session.set_track keeps lane gain
    panel.undo_stack.undo()  # the old auto-align step does not apply to another file
    assert (aca.offset_frames, aca.gain_db, aca.polarity) == kept
    assert aca.offset_frames == 0.0


def test_null_meter_measures_on_the_engine_thread_when_the_gui_budget_is_exceeded(qtbot, window, aligned) -> None:
    panel = _panel(window)
    panel._direct_null = False  # as after a direct measurement took longer than the budget
    seen: list[float] = []
    panel.null_measured.connect(seen.append)
    panel.nudge(-100, "samples")
    assert panel._null_job is None  # debounced: nothing measured yet
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=5000)
    assert panel._null_job is None
    aca = window.session.track_by_role("acapella")
    p = panel.current_params()
    assert p.offset_samples == aca.offset_frames
    assert seen[-1] == pytest.approx(panel.renderer.null(p, bands=False).null_depth_db, abs=1e-9)
