"""GUI test setup: offscreen Qt, isolated settings and data folders, a stream double at the
device boundary, and a fixture that fails any test leaving a worker thread running."""

from __future__ import annotations

import os

# Before anything imports Qt: no display needed.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _name_pulse_server() -> None:
    """The settings fixture moves XDG folders, where PulseAudio clients look for their server:
    name a running server explicitly so real-device tests still reach it."""
    import shutil
    import subprocess

    if os.environ.get("PULSE_SERVER") or not shutil.which("pactl"):
        return
    try:
        info = subprocess.run(["pactl", "info"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return
    for line in info.splitlines():
        if line.startswith("Server String: "):
            server = line.split(": ", 1)[1].strip()
            os.environ["PULSE_SERVER"] = f"unix:{server}" if server.startswith("/") else server


_name_pulse_server()

import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6.QtWidgets", reason="GUI tests need PySide6")

from PySide6.QtCore import QSettings, QThreadPool  # noqa: E402

from tests.gui.helpers import FakeOutput, write_tone  # noqa: E402


@pytest.fixture(autouse=True)
def no_dangling_threads() -> Iterator[None]:
    """Fail a test that leaves a thread (job worker, QThread pool) running after it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    extra: list[threading.Thread] = []
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            break
        time.sleep(0.01)
    assert not extra, f"test left threads running: {[t.name for t in extra]}"
    pool = QThreadPool.globalInstance()
    assert pool.waitForDone(5000), "test left QThreadPool work running"


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Autosaves and QSettings of the code under test go to a temporary folder."""
    base = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("UNMIX_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(base / "config"))
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(base / "config"))
    return base


@pytest.fixture
def fake_output() -> FakeOutput:
    return FakeOutput()


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def audio_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "mix": write_tone(tmp_path / "song mix.wav", 3.0, 220.0),
        "acapella": write_tone(tmp_path / "song acapella.flac", 2.5, 660.0),
        "other": write_tone(tmp_path / "other.wav", 1.5, 440.0, channels=1),
    }


@pytest.fixture
def window(qtbot, qapp, settings: QSettings, fake_output: FakeOutput):
    """A shown main window with its own job queues and the stream double."""
    from gui.jobs import JobBridge
    from gui.main_window import MainWindow
    from gui.theme import apply_dark_theme

    apply_dark_theme(qapp)
    jobs = JobBridge()
    w = MainWindow(jobs, settings=settings, stream_factory=fake_output)
    w.confirm_on_close = False
    w.resize(1100, 700)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.shutdown()
    jobs.shutdown()
    w.close()
    w.deleteLater()
