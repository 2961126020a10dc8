"""Main window: playback through the stream double, the job display, projects, recent files,
preferences, autosave/recovery, the no-device case and the --screenshot CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMessageBox

from engine.errors import InputError
from gui.playback import PLAYHEAD_RATE_HZ
from tests.gui.helpers import drop_files, wait_loaded

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parents[2]


def _load_two(qtbot, window, audio_files):
    keep = drop_files(window, [audio_files["mix"], audio_files["acapella"]])
    wait_loaded(qtbot, window, 2)
    return keep


# ---- playback ---------------------------------------------------------------------------------
def test_space_toggles_the_output_stream_and_the_playhead_follows(
    qtbot, window, audio_files, fake_output
) -> None:
    _load_two(qtbot, window, audio_files)
    assert window.device_label.text() == "Audio output ready"
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert len(fake_output.streams) == 1
    stream = fake_output.streams[0]
    assert stream.active and window.playback.playing and stream.samplerate == 44_100
    assert window.act_play.iconText() == "❚❚ Pause"
    # the "device" pulls audio: what comes out is the lanes' sum
    out = stream.pump(4096)
    mix, acapella = (t.audio.samples for t in window.session.tracks)
    np.testing.assert_allclose(out, (mix[:, :4096] + acapella[:, :4096]).T, atol=1e-6)
    # the ~30 Hz poll moves the playhead line of every lane
    assert PLAYHEAD_RATE_HZ >= 30 and window.playback.timer.interval() <= 1000 / 30
    qtbot.waitUntil(lambda: window.session.timeline.playhead == 4096, timeout=1000)
    for lane in window.lane_stack.lanes.values():
        assert lane.waveform._playhead.value() == pytest.approx(4096 / 44_100)
        assert lane.spectrogram._playhead.value() == pytest.approx(4096 / 44_100)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not stream.active and not window.playback.playing
    assert window.act_play.iconText() == "▶ Play"
    assert window.session.timeline.playhead == 4096  # pause keeps the playhead
    qtbot.keyClick(window, Qt.Key.Key_Home)
    assert window.session.timeline.playhead == 0 and window.playback.player.position == 0


def test_playback_pauses_at_the_end(qtbot, window, audio_files, fake_output) -> None:
    _load_two(qtbot, window, audio_files)
    window.toggle_playback()
    stream = fake_output.streams[0]
    stream.pump(3 * 44_100 + 1000)
    qtbot.waitUntil(lambda: not window.playback.playing, timeout=2000)
    assert not stream.active and window.session.timeline.playhead == 3 * 44_100


def test_without_an_output_device_the_app_works_and_says_so(qtbot, qapp, settings, audio_files, monkeypatch) -> None:
    import engine.playback as playback
    from gui.jobs import JobBridge
    from gui.main_window import MainWindow

    monkeypatch.setattr(playback, "list_output_devices", lambda: [])
    jobs = JobBridge()
    w = MainWindow(jobs, settings=settings)  # the real device path, no device
    w.confirm_on_close = False
    w.show()
    try:
        keep = drop_files(w, [audio_files["mix"]])
        wait_loaded(qtbot, w, 1)
        assert w.device_label.text().startswith("Playback off")
        assert w.toggle_playback() is False and not w.playback.playing
        assert w.message_label.text().startswith("Playback off")
        w.session.timeline.set_playhead(1000)  # seeking still works
        assert w.playback.player.position == 1000
        del keep
    finally:
        w.shutdown()
        jobs.shutdown()
        w.deleteLater()


# ---- jobs in the status bar -------------------------------------------------------------------
def test_status_bar_shows_the_running_job_and_cancel_stops_it(qtbot, window) -> None:
    started = threading.Event()

    def slow(ctx):
        for i in range(400):
            ctx.progress(i / 400, "crunching")
            started.set()
            time.sleep(0.01)
        return "done"

    with qtbot.waitSignal(window.jobs.cancelled, timeout=10_000):
        job = window.jobs.submit("Slow job", slow)
        qtbot.waitUntil(lambda: window.job_label.isVisible() and window.job_progress.value() > 0)
        assert "Slow job" in window.job_label.text() and "crunching" in window.job_label.text()
        assert window.job_cancel.isVisible()
        qtbot.mouseClick(window.job_cancel, Qt.MouseButton.LeftButton)
    assert job.state.value == "cancelled" and job.result is None
    assert not window.job_label.isVisible() and not window.job_progress.isVisible()


def test_job_callbacks_run_on_the_gui_thread_with_errors_as_text(qtbot, window) -> None:
    seen: dict[str, object] = {}
    main = threading.main_thread()

    def ok(ctx):
        ctx.progress(0.5, "half")
        return 42

    def progress_cb(job):
        seen["progress_thread"] = threading.current_thread()

    def finished(job):
        seen["finished"] = (job.result, threading.current_thread())

    with qtbot.waitSignal(window.jobs.finished, timeout=5000):
        window.jobs.submit("ok", ok, on_finished=finished, on_progress=progress_cb)
    assert seen["finished"] == (42, main)
    assert seen.get("progress_thread", main) is main

    def bad(ctx):
        raise InputError("not an audio file", "/x/y.wav")

    with qtbot.waitSignal(window.error_shown, timeout=5000) as blocker:
        window.jobs.submit("Loading y", bad)
    assert blocker.args[0] == "/x/y.wav: not an audio file"
    window._message_box.close()


# ---- projects and recent files ---------------------------------------------------------------
def test_save_and_reopen_a_project(qtbot, window, audio_files, tmp_path, monkeypatch) -> None:
    _load_two(qtbot, window, audio_files)
    mix, acapella = window.session.tracks
    window.session.set_gain_db(acapella.id, -3.0)
    window.session.set_polarity(acapella.id, -1)
    target = tmp_path / "my song.unmix"
    monkeypatch.setattr(window, "_ask_save_path", lambda *a: str(target))
    assert window.windowTitle() == "Unmix Studio — song mix[*]" and window.isWindowModified()
    with qtbot.waitSignal(window.jobs.finished, timeout=10_000):
        window.act_save.trigger()
    assert target.exists() and not window.session.dirty and not window.isWindowModified()
    assert window.session.project_path == target
    # open it again (replaces the session and its lanes)
    with qtbot.waitSignal(window.jobs.finished, timeout=10_000):
        window.open_project(target)
    wait_loaded(qtbot, window, 2)
    s = window.session
    assert [t.role for t in s.tracks] == ["mix", "acapella"]
    assert s.tracks[1].gain_db == -3.0 and s.tracks[1].polarity == -1
    assert window.playback.player.lane_gain(s.tracks[1].id) == pytest.approx(-(10 ** (-3 / 20)))
    assert window.lane_stack.lanes[s.tracks[1].id].header.polarity_button.isChecked()
    kinds = [k for k, _ in window.recent_files()]
    assert kinds[0] == "project" and {"mix", "acapella"} <= set(kinds)
    window._fill_recent_menu()
    texts = [a.text() for a in window.recent_menu.actions()]
    assert "Project: my song.unmix" in texts and "Mix: song mix.wav" in texts


def test_menus_show_the_shortcuts(window) -> None:
    def find(menu_title: str, text: str):
        for menu_action in window.menuBar().actions():
            if menu_action.text().replace("&", "") == menu_title:
                for a in menu_action.menu().actions():
                    if a.text().replace("&", "") == text:
                        return a
        raise AssertionError(f"{menu_title} ▸ {text} missing")

    assert find("File", "Open Mix…").shortcut().toString() == "Ctrl+O"
    assert find("File", "Open Acapella…").shortcut().toString() == "Ctrl+Shift+O"
    assert find("File", "Save Project").shortcut().toString() == "Ctrl+S"
    assert find("File", "Save Project As…").shortcut().toString() == "Ctrl+Shift+S"
    assert find("View", "Zoom In").shortcut().toString() == "Ctrl+="
    assert find("View", "Zoom Out").shortcut().toString() == "Ctrl+-"
    assert find("View", "Fit to Window").shortcut().toString() == "Ctrl+0"
    assert find("Transport", "Play").shortcut().toString() == "Space"
    assert find("Transport", "Go to Start").shortcut().toString() == "Home"
    assert find("Transport", "Go to End").shortcut().toString() == "End"
    find("Edit", "Preferences…")
    find("Help", "About Unmix Studio")
    find("View", "Log-Frequency Spectrograms")


# ---- preferences -----------------------------------------------------------------------------
def test_preferences_store_the_output_device_by_name(qtbot, settings) -> None:
    from engine.playback import OutputDevice
    from gui.preferences import OUTPUT_DEVICE_KEY, PreferencesDialog, stored_output_device

    devices = [OutputDevice(3, "Speakers", "ALSA", 2, 48_000.0), OutputDevice(7, "USB DAC", "ALSA", 2, 44_100.0)]
    dlg = PreferencesDialog(settings, devices=devices)
    qtbot.addWidget(dlg)
    assert dlg.device_combo.count() == 3 and dlg.chosen_device() is None
    dlg.device_combo.setCurrentIndex(2)
    assert dlg.chosen_device() == 7
    dlg.accept()
    assert settings.value(OUTPUT_DEVICE_KEY) == "USB DAC (ALSA)"
    assert stored_output_device(settings, devices) == 7
    moved = [OutputDevice(1, "USB DAC", "ALSA", 2, 44_100.0)]  # indices change between runs
    assert stored_output_device(settings, moved) == 1
    assert stored_output_device(settings, []) is None  # gone: the system default


def test_choosing_a_device_reopens_the_stream_there(qtbot, window, audio_files, fake_output) -> None:
    _load_two(qtbot, window, audio_files)
    window.toggle_playback()
    window.playback.set_device(5)
    assert fake_output.streams[0].closed
    assert fake_output.streams[-1].device == 5 and window.playback.playing


# ---- autosave and recovery -------------------------------------------------------------------
def test_autosave_and_recovery_offer(qtbot, qapp, settings, audio_files, tmp_path, monkeypatch) -> None:
    from engine.session import Autosaver
    from gui.jobs import JobBridge
    from gui.main_window import MainWindow

    autosave_dir = tmp_path / "data"
    jobs = JobBridge()
    crashed = MainWindow(jobs, settings=settings, autosaver=Autosaver(autosave_dir))
    crashed.confirm_on_close = False
    try:
        keep = drop_files(crashed, [audio_files["mix"], audio_files["acapella"]])
        wait_loaded(qtbot, crashed, 2)
        crashed.session.set_gain_db(crashed.session.tracks[0].id, -2.0)
        with qtbot.waitSignal(jobs.finished, timeout=10_000):
            assert crashed.autosave() is not None
        assert crashed.autosaver.path.exists()
        # pretend that process died: its pid file now names a process that is gone
        pid_file = crashed.autosaver.path.with_suffix(".pid")
        pid_file.write_text(pid_file.read_text().replace(f'"pid": {os.getpid()}', '"pid": 999999999'))
        crashed.autosaver = None  # a crash does not clean up
        del keep
    finally:
        crashed.shutdown()
    restarted = MainWindow(jobs, settings=settings, autosaver=Autosaver(autosave_dir))
    restarted.confirm_on_close = False
    try:
        assert restarted.offer_recovery() is True
        box = restarted._message_box
        assert box.isVisible() and "Recover unsaved session" in box.text()
        with qtbot.waitSignal(jobs.finished, timeout=10_000):
            box.done(QMessageBox.StandardButton.Yes)
        wait_loaded(qtbot, restarted, 2)
        assert restarted.session.tracks[0].gain_db == -2.0 and restarted.session.dirty
        assert restarted.autosaver.pending_recovery() == []  # recovered copies are removed
    finally:
        restarted.shutdown()
        jobs.shutdown()
        restarted.deleteLater()
        crashed.deleteLater()


# ---- the CLI's --screenshot --------------------------------------------------------------------
def _run_app(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               UNMIX_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run([sys.executable, str(REPO / "app.py"), "gui", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_screenshot_writes_a_drawn_png_and_exits_0(audio_files, tmp_path) -> None:
    png = tmp_path / "shot.png"
    proc = _run_app(["--mix", str(audio_files["mix"]), "--acapella", str(audio_files["acapella"]),
                     "--screenshot", str(png)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    img = QImage(str(png))
    assert not img.isNull() and img.width() >= 760 and img.height() >= 480
    # sample a grid of pixels: a drawn window has many distinct colours and real variance
    pixels = np.array([[img.pixelColor(x, y).getRgb()[:3] for x in range(0, img.width(), 7)]
                       for y in range(0, img.height(), 7)], dtype=np.float64)
    assert pixels.std() > 20.0
    assert len({tuple(p) for p in pixels.reshape(-1, 3)}) > 50


@pytest.mark.slow
def test_screenshot_with_a_missing_file_exits_2_naming_it(tmp_path) -> None:
    missing = tmp_path / "nope.wav"
    proc = _run_app(["--mix", str(missing), "--screenshot", str(tmp_path / "x.png")], tmp_path)
    assert proc.returncode == 2
    assert "nope.wav" in proc.stderr and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def _has_output_device() -> bool:
    from engine.playback import output_usable

    return output_usable()


@pytest.mark.skipif(not _has_output_device(), reason="no usable audio output device (none listed, or it does not open)")
def test_space_plays_through_the_real_audio_output(qtbot, qapp, settings, audio_files) -> None:
    from gui.jobs import JobBridge
    from gui.main_window import MainWindow

    jobs = JobBridge()
    w = MainWindow(jobs, settings=settings)  # no stream double: sounddevice and the device
    w.confirm_on_close = False
    w.show()
    qtbot.waitExposed(w)
    try:
        keep = drop_files(w, [audio_files["mix"], audio_files["acapella"]])
        wait_loaded(qtbot, w, 2)
        assert w.device_label.text().startswith("Output: ")
        # Window shortcuts fire only in the active window (as for a user, who clicks it first).
        w.activateWindow()
        qtbot.waitUntil(w.isActiveWindow, timeout=5000)
        qtbot.keyClick(w, Qt.Key.Key_Space)
        assert w.playback.playing, w.message_label.text()
        qtbot.waitUntil(lambda: w.session.timeline.playhead > 0.3 * 44_100, timeout=5000)
        qtbot.keyClick(w, Qt.Key.Key_Space)
        assert not w.playback.playing
        del keep
    finally:
        w.shutdown()
        jobs.shutdown()
        w.deleteLater()
