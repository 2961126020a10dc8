"""Start the GUI: ``run_gui`` (what ``python app.py gui`` calls)."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from engine.jobs import Job
from engine.session import Autosaver, demo_session_paths
from gui.jobs import JobBridge
from gui.main_window import MainWindow
from gui.preferences import SETTINGS_APP, SETTINGS_ORG
from gui.theme import apply_dark_theme

#: A --screenshot run that has not drawn its lanes by then gives up with exit code 1.
SCREENSHOT_TIMEOUT_SECONDS = 120


def make_application() -> QApplication:
    """The QApplication (created once), named for QSettings, with the dark theme."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setOrganizationName(SETTINGS_ORG)
    app.setApplicationName(SETTINGS_APP)
    app.setApplicationDisplayName(SETTINGS_APP)
    apply_dark_theme(app)
    return app


class ScreenshotTaker:
    """Waits until nothing is loading and every lane is drawn, saves the window as PNG and
    ends the event loop: exit 0 when saved, 2 when a file could not be loaded or the PNG could
    not be written, 1 on timeout."""

    def __init__(self, app: QApplication, window: MainWindow, path: Path, expect_lanes: bool) -> None:
        self.app, self.window, self.path = app, window, path
        self.expect_lanes = expect_lanes
        self.code: int | None = None
        window.jobs.failed.connect(self._failed)
        self._poll = QTimer()
        self._poll.setInterval(50)
        self._poll.timeout.connect(self._check)
        self._poll.start()
        QTimer.singleShot(SCREENSHOT_TIMEOUT_SECONDS * 1000, self._timeout)

    def _ready(self) -> bool:
        w = self.window
        if w.jobs.active_jobs or not w.jobs.idle:
            return False
        if not self.expect_lanes:
            return True
        return w.lane_stack.is_drawn and not w.lane_stack.busy

    def _check(self) -> None:
        if self.code is None and self._ready():
            self._poll.stop()
            # one more turn of the event loop so the last images are painted
            QTimer.singleShot(150, self._save)

    def _save(self) -> None:
        if self.code is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.window.grab().save(str(self.path), "PNG"):
            self._finish(0)
        else:
            print(f"{self.path}: cannot write the screenshot (PNG)", file=sys.stderr)
            self._finish(2)

    def _failed(self, job: Job) -> None:
        if self.code is None:
            print(job.error or f"{job.name} failed", file=sys.stderr)
            self._finish(2)

    def _timeout(self) -> None:
        if self.code is None:
            print(f"the window was not drawn within {SCREENSHOT_TIMEOUT_SECONDS} s", file=sys.stderr)
            self._finish(1)

    def _finish(self, code: int) -> None:
        self.code = code
        self._poll.stop()
        self.app.exit(code)


def install_excepthook(window: MainWindow, taker: ScreenshotTaker | None) -> None:
    """An exception escaping a slot is a bug: log its traceback to stderr, tell the user in
    one sentence (a screenshot run exits 1 instead of hanging)."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        traceback.print_exception(kind, exc, tb, file=sys.stderr)
        if taker is not None:
            print("internal error while drawing the window", file=sys.stderr)
            taker._finish(1)
            return
        window.show_error("Internal error", f"Something went wrong: {kind.__name__}: {exc}. "
                          "The details were written to the terminal.")

    sys.excepthook = hook


def run_gui(
    mix: str | Path | None = None,
    acapella: str | Path | None = None,
    project: str | Path | None = None,
    screenshot: str | Path | None = None,
) -> int:
    """Open the main window and run the event loop; returns the exit code.

    With no files and no project, the bundled demo session opens. With ``screenshot`` the app
    waits until the lanes are drawn, writes a PNG of the main window and exits 0 (works with
    ``QT_QPA_PLATFORM=offscreen``); such a run neither autosaves nor offers recovery.
    """
    app = make_application()
    jobs = JobBridge()
    autosaver = None if screenshot is not None else Autosaver()
    window = MainWindow(jobs, autosaver=autosaver)
    window.show()
    if project is None and mix is None and acapella is None:
        demo_mix, demo_acapella = demo_session_paths()
        mix = demo_mix if demo_mix.exists() else None
        acapella = demo_acapella if demo_acapella.exists() else None
    taker = None
    if screenshot is not None:
        window.confirm_on_close = False
        expect = project is not None or mix is not None or acapella is not None
        taker = ScreenshotTaker(app, window, Path(screenshot), expect_lanes=expect)
    if project is not None:
        window.open_project(project)
    else:
        if mix is not None:
            window.open_audio("mix", mix)
        if acapella is not None:
            window.open_audio("acapella", acapella)
    if taker is None:
        window.offer_recovery()
    previous_hook = sys.excepthook
    install_excepthook(window, taker)
    try:
        code = app.exec()
    finally:
        sys.excepthook = previous_hook
        window.shutdown()
        jobs.shutdown()
        window.deleteLater()
    return int(taker.code if taker is not None and taker.code is not None else code)
