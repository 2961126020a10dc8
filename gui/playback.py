"""Qt adapter of the engine's :class:`~engine.playback.Player`.

Keeps the player's lanes in step with the session (tracks, gain/mute/solo/polarity/offset),
the player's loop with the timeline's selection, and the timeline's playhead with the player: a
~30 Hz QTimer polls ``player.position`` while playing (the audio callback never touches Qt).
Lanes at another sample rate than the session's are resampled on the engine queue first.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from engine.audio import resample
from engine.jobs import Job, JobContext
from engine.playback import Player, StreamFactory
from engine.session import Session, Track
from gui.jobs import JobBridge

#: Playhead refresh while playing (Hz); the brief asks for at least 30.
PLAYHEAD_RATE_HZ = 40


class PlaybackController(QObject):
    """Transport for the window: play/pause/stop/seek/loop on the session's timeline.

    Signals:
        state_changed(bool): playing or not.
        message_changed(str): the output's status line (device in use, or why no sound).
    """

    state_changed = Signal(bool)
    message_changed = Signal(str)

    def __init__(
        self,
        session: Session,
        jobs: JobBridge,
        stream_factory: StreamFactory | None = None,
        device: int | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.player = Player(session.sample_rate, device=device, stream_factory=stream_factory)
        self.session = session
        self._lane_audio: dict[str, object] = {}
        self._pending: dict[str, Job] = {}
        self._publishing = False
        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / PLAYHEAD_RATE_HZ))
        self.timer.timeout.connect(self._poll)
        self._connect(session)
        self.sync_lanes()

    # ---- session wiring ----------------------------------------------------------------------
    def _connect(self, session: Session) -> None:
        session.tracks_changed.connect(self.sync_lanes)
        session.track_changed.connect(self._track_changed)
        tl = session.timeline
        tl.playhead_changed.connect(self._playhead_moved)
        tl.selection_changed.connect(self._selection_changed)

    def _disconnect(self, session: Session) -> None:
        session.tracks_changed.disconnect(self.sync_lanes)
        session.track_changed.disconnect(self._track_changed)
        tl = session.timeline
        tl.playhead_changed.disconnect(self._playhead_moved)
        tl.selection_changed.disconnect(self._selection_changed)

    def set_session(self, session: Session) -> None:
        self.stop()
        self._disconnect(self.session)
        self.session = session
        self.player.clear_lanes()
        self._lane_audio.clear()
        self._connect(session)
        self.sync_lanes()
        self.update_loop()
        self.player.seek(session.timeline.playhead)

    def detach(self) -> None:
        """Stop, release the device and disconnect (the window is closing)."""
        self.timer.stop()
        for job in self._pending.values():
            job.cancel()
        self._disconnect(self.session)
        self.player.close()

    def sync_lanes(self) -> None:
        """Give the player the session's tracks (resampling off the GUI thread if needed)."""
        session = self.session
        rate = session.sample_rate
        if rate != self.player.sample_rate:
            was_playing = self.player.playing
            self.player.set_sample_rate(rate)
            self._lane_audio.clear()
            if was_playing:
                self.state_changed.emit(False)
                self.timer.stop()
        ids = {t.id for t in session.tracks}
        for tid in [t for t in self.player.lane_ids if t not in ids]:
            self.player.remove_lane(tid)
            self._lane_audio.pop(tid, None)
        for t in session.tracks:
            if self._lane_audio.get(t.id) is t.audio:
                continue
            if t.audio.sample_rate == rate:
                self._set_lane(t, t.audio.samples)
            else:
                self._resample_lane(t, rate)

    def _set_lane(self, track: Track, samples: object) -> None:
        self.player.set_lane(
            track.id, samples, self.player.sample_rate, track.offset_frames,  # type: ignore[arg-type]
            track.gain_db, track.mute, track.solo, track.polarity,
        )
        self._lane_audio[track.id] = track.audio

    def _resample_lane(self, track: Track, rate: int) -> None:
        audio = track.audio
        old = self._pending.pop(track.id, None)
        if old is not None:
            old.cancel()

        def work(ctx: JobContext) -> object:
            ctx.progress(0.0, f"Resampling {track.name} to {rate} Hz for playback")
            return resample(audio.samples, audio.sample_rate, rate)

        def done(job: Job) -> None:
            self._pending.pop(track.id, None)
            current = next((t for t in self.session.tracks if t.id == track.id), None)
            if current is not None and current.audio is audio and self.player.sample_rate == rate:
                self._set_lane(current, job.result)

        def dropped(job: Job) -> None:
            self._pending.pop(track.id, None)

        self._pending[track.id] = self.jobs.submit(
            f"Preparing {track.name} for playback", work, on_finished=done, on_failed=dropped,
            on_cancelled=dropped,
        )

    def _track_changed(self, track: Track) -> None:
        if track.id in self.player.lane_ids:
            self.player.set_lane_params(
                track.id, gain_db=track.gain_db, mute=track.mute, solo=track.solo,
                polarity=track.polarity, offset_frames=track.offset_frames,
            )

    # ---- timeline wiring ---------------------------------------------------------------------
    def _playhead_moved(self, frame: int) -> None:
        if not self._publishing:  # a user seek, not our own poll
            self.player.seek(frame)

    def _selection_changed(self, selection: tuple[int, int] | None) -> None:
        self.update_loop()

    def update_loop(self) -> None:
        """Copy the timeline's selection and loop switch into the player."""
        tl = self.session.timeline
        if tl.selection is None:
            self.player.set_loop(None)
        else:
            self.player.set_loop(tl.selection[0], tl.selection[1], enabled=tl.loop_enabled)

    def set_loop_enabled(self, on: bool) -> None:
        self.session.timeline.loop_enabled = bool(on)
        self.update_loop()

    # ---- transport ---------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self.player.playing

    @property
    def available(self) -> bool:
        return self.player.available

    @property
    def status_message(self) -> str:
        return self.player.status_message

    def play(self) -> bool:
        if self.player.playing:
            return True
        ok = self.player.play()
        if ok:
            self.timer.start()
            self.state_changed.emit(True)
        self.message_changed.emit(self.player.status_message)
        return ok

    def pause(self) -> None:
        if not self.player.playing:
            return
        self.player.pause()
        self.timer.stop()
        self._publish()
        self.state_changed.emit(False)

    def toggle(self) -> bool:
        if self.player.playing:
            self.pause()
            return False
        return self.play()

    def stop(self) -> None:
        was_playing = self.player.playing
        self.player.stop()
        self.timer.stop()
        self._publish()
        if was_playing:
            self.state_changed.emit(False)

    def seek(self, frame: int) -> None:
        self.session.timeline.set_playhead(frame)
        self.player.seek(self.session.timeline.playhead)

    def set_device(self, device: int | None) -> None:
        was_playing = self.player.playing
        self.player.set_device(device)
        if was_playing and not self.player.playing:
            self.timer.stop()
            self.state_changed.emit(False)
        self.message_changed.emit(self.player.status_message)

    def _publish(self) -> None:
        self._publishing = True
        try:
            self.session.timeline.set_playhead(self.player.position)
        finally:
            self._publishing = False

    def _poll(self) -> None:
        self._publish()
        if self.player.at_end:
            self.pause()
