"""The Qt bridge of the engine's job queue: job callbacks become signals on the GUI thread.

:class:`engine.jobs.JobQueue` calls ``on_progress``/``on_done`` on its worker thread. The bridge
re-posts them through a queued signal to itself (it lives on the GUI thread), so every slot and
per-job callback runs on the GUI thread, where widgets may change. Progress is throttled to
~30 posts a second per job so a chatty job cannot flood the event loop.

Two queues run behind one bridge:

* ``queue`` — *the* engine queue: loading, saving, alignment, separation. Its jobs show in the
  status bar with a progress bar and Cancel, and run one at a time in submission order.
* ``render_queue`` — display work (spectrogram images, waveform overviews of new lanes). It is
  a second :class:`JobQueue` so a view stays responsive while a minutes-long separation holds
  the engine queue; its jobs are short, superseded ones are cancelled, and they do not show in
  the status bar.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from engine.jobs import Job, JobContext, JobQueue, JobState

_PROGRESS_INTERVAL_SECONDS = 1 / 30
#: How much lower than the GUI thread the worker threads run (Linux nice increment).
WORKER_NICE = 5


def lower_thread_priority(ctx: JobContext | None = None) -> bool:
    """Lower the calling thread's CPU priority (Linux: nice is per thread).

    Run as the first job of each queue, so background work yields the CPU to the GUI thread
    on a busy machine; threads the worker starts (numeric libraries' pools) inherit it.
    Returns False where the platform cannot do it.
    """
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICE)
    except OSError:
        return False
    return True


class JobBridge(QObject):
    """Submit engine jobs; get Qt signals on the GUI thread.

    Signals (all carry the :class:`engine.jobs.Job`):
        submitted: a visible job was queued.
        progress: a visible job reported progress (throttled).
        finished / failed / cancelled: a visible job ended that way.
        active_changed: the set of visible unfinished jobs changed.
    """

    submitted = Signal(object)
    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(object)
    cancelled = Signal(object)
    active_changed = Signal()
    _post = Signal(object, str)

    def __init__(
        self,
        queue: JobQueue | None = None,
        render_queue: JobQueue | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.queue = queue or JobQueue("unmix-engine")
        self.render_queue = render_queue or JobQueue("unmix-render")
        for q in (self.queue, self.render_queue):
            q.submit("Lower worker priority", lower_thread_priority)
        # id(job) -> (job, callbacks, visible); the job is held so its id is not reused.
        self._pending: dict[int, tuple[Job, dict[str, Callable[[Job], Any] | None], bool]] = {}
        self._visible: list[Job] = []
        self._last_post: dict[int, float] = {}
        self._post.connect(self._dispatch, Qt.ConnectionType.QueuedConnection)

    # ---- submitting --------------------------------------------------------------------------
    def submit(
        self,
        name: str,
        fn: Callable[[JobContext], Any],
        on_finished: Callable[[Job], Any] | None = None,
        on_failed: Callable[[Job], Any] | None = None,
        on_cancelled: Callable[[Job], Any] | None = None,
        on_progress: Callable[[Job], Any] | None = None,
        render: bool = False,
    ) -> Job:
        """Queue ``fn(ctx)``; the callbacks run on the GUI thread with the job.

        Must be called on the GUI thread. The worker's posts are queued behind this call, so
        the callbacks are registered before any of them can be delivered.

        Args:
            render: run on the display queue, silently (no status bar entry).
        """
        queue = self.render_queue if render else self.queue
        job = queue.submit(name, fn, on_progress=self._on_progress, on_done=self._on_done)
        callbacks = {"finished": on_finished, "failed": on_failed, "cancelled": on_cancelled,
                     "progress": on_progress}
        self._pending[id(job)] = (job, callbacks, not render)
        if not render:
            self._visible.append(job)
            self.submitted.emit(job)
            self.active_changed.emit()
        return job

    @property
    def active_jobs(self) -> list[Job]:
        """Visible jobs not yet delivered, oldest first."""
        return list(self._visible)

    @property
    def current(self) -> Job | None:
        """The visible job running now (else the next queued one)."""
        running = [j for j in self._visible if j.state is JobState.RUNNING]
        return running[0] if running else (self._visible[0] if self._visible else None)

    @property
    def idle(self) -> bool:
        """No job of either queue is waiting for delivery."""
        return not self._pending

    def cancel_all(self) -> None:
        self.queue.cancel_all()
        self.render_queue.cancel_all()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel everything, stop both worker threads and drop undelivered callbacks (their
        widgets are going away)."""
        self.queue.shutdown(timeout)
        self.render_queue.shutdown(timeout)
        self._pending.clear()
        self._visible.clear()

    # ---- worker thread -> GUI thread ---------------------------------------------------------
    def _on_progress(self, job: Job) -> None:  # worker thread
        now = time.monotonic()
        if now - self._last_post.get(id(job), 0.0) >= _PROGRESS_INTERVAL_SECONDS:
            self._last_post[id(job)] = now
            self._post.emit(job, "progress")

    def _on_done(self, job: Job) -> None:  # worker thread
        self._post.emit(job, "done")

    def _dispatch(self, job: Job, kind: str) -> None:  # GUI thread
        entry = self._pending.get(id(job))
        if entry is None or entry[0] is not job:
            return
        _, callbacks, visible = entry
        if kind == "progress":
            if job.done:
                return
            cb = callbacks["progress"]
            if cb is not None:
                cb(job)
            if visible:
                self.progress.emit(job)
            return
        del self._pending[id(job)]
        self._last_post.pop(id(job), None)
        if visible:
            self._visible.remove(job)
        outcome = {JobState.FINISHED: "finished", JobState.CANCELLED: "cancelled"}.get(
            job.state, "failed"
        )
        cb = callbacks[outcome]
        try:
            if cb is not None:
                cb(job)
        finally:
            if visible:
                getattr(self, outcome).emit(job)
                self.active_changed.emit()
