"""The main window: menus, transport bar, lanes, status bar with the running job.

It is a controller: files load, projects open and save through jobs on the engine queue
(``gui.jobs.JobBridge``); results land in the :class:`engine.session.Session` on the GUI
thread, and the lanes and the player follow the session's events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QToolBar,
    QWidget,
)

from engine.audio import READ_EXTENSIONS, Audio, file_checksum, load_audio
from engine.jobs import Job, JobContext
from engine.playback import StreamFactory
from engine.session import PROJECT_SUFFIX, Autosaver, Session
from engine.waveform import PeakPyramid
from gui import align_panel, analysis_dock, mask_editor, query_panel, separate_panel
from gui.jobs import JobBridge
from gui.lanes import DisplayCache, LaneStack, dropped_audio_paths
from gui.playback import PlaybackController
from gui.preferences import (
    PreferencesDialog,
    app_settings,
    setting_bool,
    setting_list,
    stored_output_device,
)
from gui.views import format_time

APP_NAME = "Unmix Studio"
RECENT_KEY = "recent_files"
MAX_RECENT = 10
AUTOSAVE_INTERVAL_MS = 60_000
AUDIO_FILTER = "Audio files (" + " ".join(f"*{e}" for e in READ_EXTENSIONS) + ");;All files (*)"
PROJECT_FILTER = f"Unmix Studio projects (*{PROJECT_SUFFIX});;All files (*)"


@dataclass
class LoadedAudio:
    """What a load job hands to the GUI thread."""

    audio: Audio
    pyramid: PeakPyramid
    checksum: str
    path: Path


def load_audio_for_lane(ctx: JobContext, path: Path) -> LoadedAudio:
    """Job body: read the file, build its waveform overview and its checksum (all off the GUI
    thread; the session would otherwise hash the file on the GUI thread)."""
    audio = load_audio(path, progress=lambda f, m: ctx.progress(0.85 * f, m), cancel=ctx.cancel_token)
    pyramid = PeakPyramid.build(
        audio.samples, progress=lambda f, m: ctx.progress(0.85 + 0.08 * f, m), cancel=ctx.cancel_token
    )
    ctx.progress(0.93, f"Checksum of {path.name}")
    checksum = file_checksum(path)
    return LoadedAudio(audio, pyramid, checksum, path)


class MainWindow(QMainWindow):
    """Unmix Studio's main window.

    Args:
        jobs: the app's job bridge (engine queue + display queue).
        session: the session to show (a new empty one by default).
        settings: QSettings for recent files and preferences (the app's own by default).
        stream_factory: the audio output seam (None = the real device via sounddevice).
        autosaver: crash-recovery saver (None = no autosave, e.g. in tests).

    Signals:
        lanes_drawn(): every lane has drawn its views.
        error_shown(str): a problem was reported to the user.
    """

    lanes_drawn = Signal()
    error_shown = Signal(str)

    def __init__(
        self,
        jobs: JobBridge,
        session: Session | None = None,
        settings: QSettings | None = None,
        stream_factory: StreamFactory | None = None,
        autosaver: Autosaver | None = None,
    ) -> None:
        super().__init__()
        self.jobs = jobs
        self.session = session or Session()
        self.settings = settings if settings is not None else app_settings()
        self.autosaver = autosaver
        self.cache = DisplayCache()
        self.confirm_on_close = True
        self.last_error: str | None = None
        self._message_box: QMessageBox | None = None
        self._autosave_job: Job | None = None
        self._shut_down = False
        self.setAcceptDrops(True)
        self.resize(1280, 780)
        self.setMinimumSize(760, 480)

        self.lane_stack = LaneStack(self.session, jobs, self.cache)
        self.lane_stack.all_drawn.connect(self.lanes_drawn)
        self.lane_stack.lane_file_dropped.connect(self.replace_lane_audio)
        self.setCentralWidget(self.lane_stack)

        self.playback = PlaybackController(
            self.session, jobs, stream_factory=stream_factory,
            device=stored_output_device(self.settings) if stream_factory is None else None,
        )
        self.playback.state_changed.connect(self._playing_changed)
        self.playback.message_changed.connect(self._device_message)

        self._make_actions()
        self._make_menus()
        self._make_toolbar()
        self._make_status_bar()
        self._install_panels()
        jobs.active_changed.connect(self._update_job_display)
        jobs.progress.connect(self._update_job_display)
        jobs.failed.connect(self._job_failed)
        self._connect_session(self.session)
        self._update_title()
        self._update_time()
        self._device_message(self.playback.status_message)

        self._autosave_timer = QTimer(self)
        self._autosave_timer.setInterval(AUTOSAVE_INTERVAL_MS)
        self._autosave_timer.timeout.connect(self.autosave)
        if self.autosaver is not None:
            self._autosave_timer.start()

    # ================================================================= actions and menus ====
    def _action(self, text: str, slot: Any, shortcut: Any = None, checkable: bool = False,
                tip: str | None = None) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            if isinstance(shortcut, list):
                a.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                a.setShortcut(QKeySequence(shortcut))
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        a.setCheckable(checkable)
        if tip:
            a.setStatusTip(tip)
        if checkable:
            a.toggled.connect(slot)
        else:
            a.triggered.connect(lambda _=False: slot())
        self.addAction(a)  # shortcuts work even while the menu bar is hidden
        return a

    def _make_actions(self) -> None:
        A = self._action
        K = QKeySequence.StandardKey
        self.act_open_mix = A("Open &Mix…", lambda: self.ask_open_audio("mix"), "Ctrl+O")
        self.act_open_acapella = A("Open &Acapella…", lambda: self.ask_open_audio("acapella"), "Ctrl+Shift+O")
        self.act_open_project = A("Open &Project…", self.ask_open_project, "Ctrl+Alt+O")
        self.act_save = A("&Save Project", self.save_project, K.Save)
        self.act_save_as = A("Save Project &As…", self.save_project_as, "Ctrl+Shift+S")
        self.act_quit = A("&Quit", self.close, K.Quit)
        self.act_preferences = A("&Preferences…", self.show_preferences, "Ctrl+,")
        self.act_zoom_in = A("Zoom &In", lambda: self.zoom(2.0), ["Ctrl+=", "Ctrl++"])
        self.act_zoom_out = A("Zoom &Out", lambda: self.zoom(0.5), "Ctrl+-")
        self.act_fit = A("&Fit to Window", self.session_fit, "Ctrl+0")
        self.act_log_freq = A("&Log-Frequency Spectrograms", self.set_log_frequency, "Ctrl+L", checkable=True)
        self.act_show_wave = A("Show &Waveforms", self._views_toggled, "Ctrl+1", checkable=True)
        self.act_show_spec = A("Show &Spectrograms", self._views_toggled, "Ctrl+2", checkable=True)
        wave, spec = self._view_setting("show_waveforms", True), self._view_setting("show_spectrograms", True)
        log_f = self._view_setting("log_frequency", False)
        for action, on in ((self.act_show_wave, wave or not spec), (self.act_show_spec, spec),
                           (self.act_log_freq, log_f)):
            action.blockSignals(True)
            action.setChecked(on)
            action.blockSignals(False)
        self.lane_stack.set_views_visible(self.act_show_wave.isChecked(), spec)
        self.lane_stack.set_log_frequency(log_f)
        self.act_play = A("&Play", self.toggle_playback, "Space", tip="Play / pause through the audio output")
        self.act_stop = A("&Stop", self.stop_playback, "Shift+Space")
        self.act_loop = A("&Loop Selection", self.set_loop_enabled, "Ctrl+R", checkable=True)
        self.act_home = A("Go to &Start", self.go_to_start, "Home")
        self.act_end = A("Go to &End", self.go_to_end, "End")
        self.act_clear_sel = A("&Clear Selection", lambda: self.session.timeline.set_selection(None), "Esc")
        self.act_about = A("&About Unmix Studio", self.show_about)
        self.act_help_keys = A("&Keyboard and Mouse", self.show_keys_help, "F1")
        self.act_loop.setChecked(self.session.timeline.loop_enabled)

    def _make_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        f.addAction(self.act_open_mix)
        f.addAction(self.act_open_acapella)
        f.addAction(self.act_open_project)
        self.recent_menu = f.addMenu("Recent &Files")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        f.addSeparator()
        f.addAction(self.act_save)
        f.addAction(self.act_save_as)
        f.addSeparator()
        f.addAction(self.act_quit)
        e = mb.addMenu("&Edit")
        e.addAction(self.act_clear_sel)
        e.addSeparator()
        e.addAction(self.act_preferences)
        v = mb.addMenu("&View")
        for a in (self.act_zoom_in, self.act_zoom_out, self.act_fit):
            v.addAction(a)
        v.addSeparator()
        for a in (self.act_show_wave, self.act_show_spec, self.act_log_freq):
            v.addAction(a)
        t = mb.addMenu("&Transport")
        for a in (self.act_play, self.act_stop, self.act_loop):
            t.addAction(a)
        t.addSeparator()
        t.addAction(self.act_home)
        t.addAction(self.act_end)
        h = mb.addMenu("&Help")
        h.addAction(self.act_help_keys)
        h.addAction(self.act_about)
        self.menus = {"file": f, "edit": e, "view": v, "transport": t, "help": h}

    def _install_panels(self) -> None:
        """Docked tool panels. Each panel module adds its own dock, menu entries and shortcuts
        (``install(window) -> panel``) and keeps its logic out of this file."""
        self.panels: dict[str, object] = {}
        self.panels["align"] = align_panel.install(self)
        self.panels["separate"] = separate_panel.install(self)
        self.panels["masks"] = mask_editor.install(self)
        self.panels["query"] = query_panel.install(self)
        self.panels["analysis"] = analysis_dock.install(self)

    def _make_toolbar(self) -> None:
        tb = QToolBar("Transport")
        tb.setObjectName("TransportBar")
        tb.setMovable(False)
        tb.setFloatable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
        self.act_home.setIconText("|◀ Start")
        self.act_play.setIconText("▶ Play")
        self.act_stop.setIconText("■ Stop")
        self.act_loop.setIconText("⟲ Loop")
        for a in (self.act_home, self.act_play, self.act_stop, self.act_loop):
            tb.addAction(a)
            w = tb.widgetForAction(a)
            if w is not None:
                w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
                w.setToolTip(f"{a.text().replace('&', '')} ({a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})")
        tb.addSeparator()
        self.time_label = QLabel()
        self.time_label.setObjectName("TimeDisplay")
        self.time_label.setToolTip("Playhead / session length")
        tb.addWidget(self.time_label)
        self.selection_label = QLabel()
        self.selection_label.setObjectName("LaneRole")
        tb.addWidget(self.selection_label)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        tb.addWidget(spacer)
        self.act_zoom_out.setIconText("−")
        self.act_zoom_in.setIconText("+")
        self.act_fit.setIconText("Fit")
        for a in (self.act_zoom_out, self.act_zoom_in, self.act_fit):
            tb.addAction(a)
            w = tb.widgetForAction(a)
            if w is not None:
                w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.transport_bar = tb

    def _make_status_bar(self) -> None:
        sb = self.statusBar()
        # Our own label for passing messages: QStatusBar.showMessage repaints synchronously,
        # which forces a paint of the whole window in the middle of a job's completion.
        self.message_label = QLabel()
        sb.addWidget(self.message_label, 1)
        self._message_timer = QTimer(self)
        self._message_timer.setSingleShot(True)
        self._message_timer.timeout.connect(self.message_label.clear)
        self.job_label = QLabel()
        self.job_progress = QProgressBar()
        self.job_progress.setRange(0, 1000)
        self.job_progress.setFixedWidth(180)
        self.job_progress.setTextVisible(False)
        self.job_cancel = QPushButton("Cancel")
        self.job_cancel.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.job_cancel.clicked.connect(self.cancel_current_job)
        # QProgressBar.setValue repaints synchronously (pulling every pending paint of the
        # window with it); applied from its own timer event it never stacks onto a job's
        # completion in one long turn of the event loop.
        self._progress_value = 0
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
        self._progress_timer.setInterval(0)
        self._progress_timer.timeout.connect(lambda: self.job_progress.setValue(self._progress_value))
        for w in (self.job_label, self.job_progress, self.job_cancel):
            sb.addWidget(w)
            w.hide()
        self.device_label = QLabel()
        sb.addPermanentWidget(self.device_label)

    # ================================================================= session wiring ======
    def _connect_session(self, session: Session) -> None:
        session.tracks_changed.connect(self._tracks_changed)
        session.dirty_changed.connect(self._dirty_changed)
        tl = session.timeline
        tl.playhead_changed.connect(self._playhead_changed)
        tl.selection_changed.connect(self._selection_changed)
        tl.length_changed.connect(self._length_changed)

    def _disconnect_session(self, session: Session) -> None:
        session.tracks_changed.disconnect(self._tracks_changed)
        session.dirty_changed.disconnect(self._dirty_changed)
        tl = session.timeline
        tl.playhead_changed.disconnect(self._playhead_changed)
        tl.selection_changed.disconnect(self._selection_changed)
        tl.length_changed.disconnect(self._length_changed)

    def set_session(self, session: Session) -> None:
        """Show another session (a project was opened or recovered)."""
        self.playback.stop()
        self._disconnect_session(self.session)
        self.session = session
        self.lane_stack.set_session(session)
        self.playback.set_session(session)
        self._connect_session(session)
        self.act_loop.setChecked(session.timeline.loop_enabled)
        self._update_title()
        self._update_time()
        self._selection_changed(session.timeline.selection)
        for warning in session.warnings:
            self.show_error("Project opened with warnings", warning)

    def _tracks_changed(self) -> None:
        self._update_title()
        self._update_time()

    def _dirty_changed(self, dirty: bool) -> None:
        self.setWindowModified(dirty)

    def _length_changed(self, frames: int) -> None:
        self._update_time()

    def _update_title(self) -> None:
        self.setWindowTitle(f"{APP_NAME} — {self.session.name}[*]")
        self.setWindowModified(self.session.dirty)

    def _playhead_changed(self, frame: int) -> None:
        self._update_time()
        tl = self.session.timeline
        if self.playback.playing and not tl.view_start <= frame < tl.view_stop:
            span = tl.view_stop - tl.view_start  # page along with the playhead
            tl.set_range(frame, frame + span)

    def _selection_changed(self, selection: tuple[int, int] | None) -> None:
        if selection is None:
            self.selection_label.setText("")
            return
        sr = self.session.timeline.sample_rate
        a, b = selection
        self.selection_label.setText(
            f"  Loop {format_time(a / sr)} – {format_time(b / sr)} ({(b - a) / sr:.3f} s)"
        )

    def _update_time(self) -> None:
        tl = self.session.timeline
        sr = tl.sample_rate
        self.time_label.setText(f"{format_time(tl.playhead / sr)} / {format_time(tl.length_frames / sr)}")

    # ================================================================= loading =============
    def open_audio(self, role: str, path: str | Path) -> Job:
        """Load ``path`` into the lane of ``role`` ("mix" or "acapella") through a job."""
        p = Path(path)

        def done(job: Job) -> None:
            loaded: LoadedAudio = job.result
            # The job already hashed the file: pass the checksum so the GUI thread does not.
            audio = Audio(loaded.audio.samples, loaded.audio.sample_rate, p)
            self.cache.put(audio, loaded.pyramid)
            self.session.set_track(role, audio, p, name=p.stem, checksum=loaded.checksum)
            self._add_recent(role, p)
            self.flash(f"Loaded {p.name} as the {role}", 4000)

        return self.jobs.submit(
            f"Loading {role}: {p.name}", lambda ctx: load_audio_for_lane(ctx, p), on_finished=done
        )

    def replace_lane_audio(self, track_id: str, path: str | Path) -> Job | None:
        """Replace one lane's audio with a file dropped on it (keeps its settings)."""
        p = Path(path)
        if p.suffix.lower() == PROJECT_SUFFIX:
            self.open_project(p)
            return None

        def done(job: Job) -> None:
            loaded: LoadedAudio = job.result
            if not any(t.id == track_id for t in self.session.tracks):
                return  # the lane went away while loading
            audio = Audio(loaded.audio.samples, loaded.audio.sample_rate, p)
            self.cache.put(audio, loaded.pyramid)
            track = self.session.replace_track_audio(track_id, audio, p, checksum=loaded.checksum)
            self.lane_stack.sync()
            self._add_recent(track.role if track.role in ("mix", "acapella") else "mix", p)

        return self.jobs.submit(f"Loading {p.name}", lambda ctx: load_audio_for_lane(ctx, p), on_finished=done)

    def load_dropped(self, paths: list[Path]) -> list[Job]:
        """Files dropped on the window: the first is the mix, the second the acapella.

        One file alone goes to the mix lane when there is no mix yet, else to the acapella.
        A project file opens the project.
        """
        projects = [p for p in paths if p.suffix.lower() == PROJECT_SUFFIX]
        if projects:
            self.open_project(projects[0])
            return []
        if len(paths) >= 2:
            roles = ["mix", "acapella"]
            if len(paths) > 2:
                self.flash(
                    f"Using the first two of {len(paths)} files (mix, acapella)", 6000
                )
        else:
            roles = ["acapella" if self.session.track_by_role("mix") is not None else "mix"]
        return [self.open_audio(role, p) for role, p in zip(roles, paths, strict=False)]

    def dragEnterEvent(self, ev: QDragEnterEvent) -> None:
        if dropped_audio_paths(ev.mimeData()):
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dropEvent(self, ev: QDropEvent) -> None:
        paths = dropped_audio_paths(ev.mimeData())
        if not paths:
            ev.ignore()
            return
        ev.acceptProposedAction()
        self.load_dropped(paths)

    # ================================================================= projects ============
    def open_project(self, path: str | Path, after: Callable[[Session], None] | None = None) -> Job:
        """Open a project through a job; ``after(session)`` runs once it is shown."""
        p = Path(path)

        def work(ctx: JobContext) -> tuple[Session, list[tuple[Audio, PeakPyramid]]]:
            ctx.progress(0.0, f"Opening {p.name}")
            session = Session.open_project(p)
            pyramids = []
            for i, t in enumerate(session.tracks):
                ctx.progress(0.7 + 0.3 * i / max(len(session.tracks), 1), f"Overview of {t.name}")
                pyramids.append((t.audio, PeakPyramid.build(t.audio.samples, cancel=ctx.cancel_token)))
            return session, pyramids

        def done(job: Job) -> None:
            session, pyramids = job.result
            for audio, pyr in pyramids:
                self.cache.put(audio, pyr)
            self.set_session(session)
            if after is not None:
                after(session)
            else:
                self._add_recent("project", p)

        return self.jobs.submit(f"Opening project {p.name}", work, on_finished=done)

    def save_project(self) -> Job | None:
        """Save to the session's project file (asks for one the first time)."""
        if self.session.project_path is None:
            return self.save_project_as()
        return self._save_to(self.session.project_path)

    def save_project_as(self) -> Job | None:
        start = str(self.session.project_path or Path.home() / f"{self.session.name}{PROJECT_SUFFIX}")
        path = self._ask_save_path("Save Project As", start, PROJECT_FILTER)
        if not path:
            return None
        return self._save_to(Path(path))

    def _save_to(self, path: Path) -> Job:
        session = self.session

        def work(ctx: JobContext) -> Path:
            ctx.progress(0.0, f"Saving {path.name}")
            return session.save_project(path)

        def done(job: Job) -> None:
            self._add_recent("project", job.result)
            self._update_title()
            self.flash(f"Saved {job.result}", 4000)

        return self.jobs.submit(f"Saving project {path.name}", work, on_finished=done)

    # ---- autosave and recovery ---------------------------------------------------------------
    def autosave(self) -> Job | None:
        """Write the crash-recovery copy when there are unsaved changes (every minute)."""
        if self.autosaver is None or not self.session.dirty or not self.session.tracks:
            return None
        if self._autosave_job is not None and not self._autosave_job.done:
            return None
        saver, session = self.autosaver, self.session

        def work(ctx: JobContext) -> Path:
            ctx.progress(0.0, "Autosaving")
            return saver.save(session)

        self._autosave_job = self.jobs.submit("Autosave", work)
        return self._autosave_job

    def offer_recovery(self) -> bool:
        """If a previous run crashed with unsaved work, ask whether to recover it (non-modal).

        Returns True when a question was asked.
        """
        if self.autosaver is None:
            return False
        pending = self.autosaver.pending_recovery()
        if not pending:
            return False
        entry = pending[0]
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(entry.get("saved_at", 0))))
        box = QMessageBox(
            QMessageBox.Icon.Question, "Recover unsaved session?",
            f"Unmix Studio did not close properly last time.\n\nRecover unsaved session "
            f"“{entry.get('name', 'Untitled')}” (autosaved {when})?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self,
        )

        def answered(button: int) -> None:
            if button == QMessageBox.StandardButton.Yes:
                self.recover(entry)
            else:
                Autosaver.discard(entry)

        box.finished.connect(answered)
        self._message_box = box
        box.open()
        return True

    def recover(self, entry: dict[str, Any]) -> Job:
        """Open an autosave; the recovered session keeps its original project path, unsaved."""

        def recovered(session: Session) -> None:
            project = entry.get("project") or ""
            session.project_path = Path(project) if project else None
            session.mark_dirty(True)
            self._update_title()
            Autosaver.discard(entry)

        return self.open_project(entry["autosave"], after=recovered)

    # ================================================================= dialogs =============
    def _ask_open_path(self, title: str, file_filter: str) -> str:
        path, _ = QFileDialog.getOpenFileName(self, title, self._last_dir(), file_filter)
        return path

    def _ask_save_path(self, title: str, start: str, file_filter: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, title, start, file_filter)
        return path

    def _last_dir(self) -> str:
        recent = self.recent_files()
        return str(Path(recent[0][1]).parent) if recent else str(Path.home())

    def ask_open_audio(self, role: str) -> Job | None:
        path = self._ask_open_path(f"Open {role.capitalize()}", AUDIO_FILTER)
        return self.open_audio(role, path) if path else None

    def ask_open_project(self) -> Job | None:
        path = self._ask_open_path("Open Project", PROJECT_FILTER)
        return self.open_project(path) if path else None

    def show_preferences(self) -> PreferencesDialog:
        dlg = PreferencesDialog(self.settings, self)

        def accepted() -> None:
            self.playback.set_device(dlg.chosen_device())

        dlg.accepted.connect(accepted)
        dlg.open()
        return dlg

    def show_about(self) -> None:
        from engine import __version__

        self._show_box(
            QMessageBox.Icon.Information, "About Unmix Studio",
            f"<b>Unmix Studio</b> {__version__}<br>Align a mix and its acapella, separate, edit "
            "masks, listen, export stems and reports.",
        )

    def show_keys_help(self) -> None:
        rows = [
            ("Space", "Play / pause"), ("Shift+Space", "Stop"), ("Home / End", "Go to start / end"),
            ("Ctrl+wheel", "Zoom about the pointer"), ("Wheel", "Scroll in time"),
            ("Shift+wheel", "Scroll the lanes"), ("Click", "Move the playhead"),
            ("Drag", "Select a loop region"), ("Esc", "Clear the selection"),
            ("Ctrl+= / Ctrl+- / Ctrl+0", "Zoom in / out / fit"),
            ("Ctrl+R", "Loop the selection"), ("Ctrl+L", "Log-frequency spectrograms"),
        ]
        table = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in rows)
        self._show_box(QMessageBox.Icon.Information, "Keyboard and mouse", f"<table>{table}</table>")

    def _show_box(self, icon: QMessageBox.Icon, title: str, text: str) -> QMessageBox:
        box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, self)
        self._message_box = box
        box.open()  # window-modal but not blocking: the event loop keeps running
        return box

    def show_error(self, title: str, text: str) -> None:
        """Tell the user about a problem: status bar + a non-blocking message box."""
        self.last_error = text
        self.flash(text, 10_000)
        self._show_box(QMessageBox.Icon.Warning, title, text)
        self.error_shown.emit(text)

    def _job_failed(self, job: Job) -> None:
        self.show_error(job.name, job.error or f"{job.name} failed")

    # ================================================================= jobs display ========
    def _update_job_display(self, *_: Any) -> None:
        job = self.jobs.current
        widgets = (self.job_label, self.job_progress, self.job_cancel)
        if job is None:
            for w in widgets:
                w.hide()
            return
        queued = len(self.jobs.active_jobs) - 1
        text = job.name if not job.message or job.message in job.name else f"{job.name} — {job.message}"
        eta = job.eta_seconds
        if eta is not None and eta >= 1.0:
            text += f" · {format_time(eta, milliseconds=False)} left"
        if queued > 0:
            text += f" · {queued} more queued"
        self.job_label.setText(text)
        self._progress_value = int(job.fraction * 1000)
        if not self._progress_timer.isActive():
            self._progress_timer.start()
        for w in widgets:
            w.show()

    def flash(self, text: str, timeout_ms: int = 5000) -> None:
        """Show a passing message in the status bar for ``timeout_ms``."""
        self.message_label.setText(text)
        self._message_timer.start(timeout_ms)

    def cancel_current_job(self) -> None:
        job = self.jobs.current
        if job is not None:
            job.cancel()
            self.flash(f"Cancelling {job.name}…", 3000)

    # ================================================================= view ================
    def zoom(self, factor: float) -> None:
        tl = self.session.timeline
        anchor = tl.playhead if tl.view_start <= tl.playhead <= tl.view_stop else None
        tl.zoom(factor, anchor)

    def session_fit(self) -> None:
        self.session.timeline.fit()

    def _view_setting(self, key: str, default: bool) -> bool:
        return setting_bool(self.settings, f"view/{key}", default)

    def set_log_frequency(self, on: bool) -> None:
        self.lane_stack.set_log_frequency(on)
        self.settings.setValue("view/log_frequency", bool(on))

    def _views_toggled(self, _: bool = False) -> None:
        wave, spec = self.act_show_wave.isChecked(), self.act_show_spec.isChecked()
        if not wave and not spec:  # never hide both: re-check the other one
            (self.act_show_spec if self.sender() is self.act_show_wave else self.act_show_wave).setChecked(True)
            return
        self.lane_stack.set_views_visible(wave, spec)
        self.settings.setValue("view/show_waveforms", wave)
        self.settings.setValue("view/show_spectrograms", spec)

    # ================================================================= transport ===========
    def toggle_playback(self) -> bool:
        playing = self.playback.toggle()
        if not playing and not self.playback.available:
            self.flash(self.playback.status_message, 6000)
        return playing

    def stop_playback(self) -> None:
        self.playback.stop()

    def set_loop_enabled(self, on: bool) -> None:
        self.playback.set_loop_enabled(on)

    def go_to_start(self) -> None:
        self.playback.seek(0)
        tl = self.session.timeline
        if tl.view_start > 0:
            tl.set_range(0, tl.view_stop - tl.view_start)

    def go_to_end(self) -> None:
        tl = self.session.timeline
        self.playback.seek(tl.length_frames)
        if tl.view_stop < tl.length_frames:
            span = tl.view_stop - tl.view_start
            tl.set_range(tl.length_frames - span, tl.length_frames)

    def _playing_changed(self, playing: bool) -> None:
        self.act_play.setIconText("❚❚ Pause" if playing else "▶ Play")
        self.act_play.setText("&Pause" if playing else "&Play")

    def _device_message(self, text: str) -> None:
        self.device_label.setText(text)
        off = text.startswith("Playback off")
        self.device_label.setStyleSheet("color: #f0a040;" if off else "")

    # ================================================================= recent files ========
    def recent_files(self) -> list[tuple[str, str]]:
        """``(kind, path)`` pairs, newest first; kind is mix, acapella or project."""
        raw = setting_list(self.settings, RECENT_KEY)
        out = []
        for item in raw:
            kind, _, path = str(item).partition("|")
            if path:
                out.append((kind, path))
        return out

    def _add_recent(self, kind: str, path: Path) -> None:
        entry = f"{kind}|{Path(path).resolve()}"
        items = [f"{k}|{p}" for k, p in self.recent_files() if f"{k}|{p}" != entry]
        self.settings.setValue(RECENT_KEY, [entry, *items][:MAX_RECENT])

    def _fill_recent_menu(self) -> None:
        menu: QMenu = self.recent_menu
        menu.clear()
        recent = self.recent_files()
        if not recent:
            a = menu.addAction("No recent files")
            a.setEnabled(False)
            return
        for kind, path in recent:
            a = menu.addAction(f"{kind.capitalize()}: {Path(path).name}")
            a.setToolTip(path)
            a.setStatusTip(path)
            a.triggered.connect(lambda _=False, k=kind, p=path: self._open_recent(k, p))
        menu.addSeparator()
        menu.addAction("Clear Recent Files", lambda: self.settings.setValue(RECENT_KEY, []))

    def _open_recent(self, kind: str, path: str) -> None:
        if kind == "project":
            self.open_project(path)
        else:
            self.open_audio(kind if kind in ("mix", "acapella") else "mix", path)

    # ================================================================= closing =============
    def _ask_save_changes(self) -> QMessageBox.StandardButton:
        return QMessageBox.question(
            self, "Unsaved changes", f"Save the changes to “{self.session.name}” before closing?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
        )

    def closeEvent(self, ev: QCloseEvent) -> None:
        if self.confirm_on_close and self.session.dirty and self.session.tracks:
            answer = self._ask_save_changes()
            if answer == QMessageBox.StandardButton.Cancel:
                ev.ignore()
                return
            if answer == QMessageBox.StandardButton.Save:
                job = self.save_project()
                if job is None:
                    ev.ignore()
                    return
                job.wait(120)
        self.shutdown()
        super().closeEvent(ev)

    def shutdown(self) -> None:
        """Stop playback, release the device, disconnect from the session, stop autosave."""
        if self._shut_down:
            return
        self._shut_down = True
        self._autosave_timer.stop()
        self.playback.detach()
        self.lane_stack.detach()
        self._disconnect_session(self.session)
        if self.autosaver is not None:
            self.autosaver.close()
