"""Background work: one engine worker thread runs a queue of jobs with progress and cancel.

A job is a function ``fn(ctx: JobContext) -> result``. It reports ``ctx.progress(fraction,
message)`` (which also raises :class:`Cancelled` once cancel was requested, so a job stops at its
next report) and may call ``ctx.check_cancelled()`` between steps. Callbacks run on the worker
thread; the GUI's bridge (``gui/jobs.py``) re-emits them as Qt signals on the GUI thread.
"""

from __future__ import annotations

import enum
import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import Cancelled, InputError


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CancelToken:
    """Thread-safe cancel flag shared by a job and whoever may cancel it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()


class JobContext:
    """What a running job sees: progress reporting and the cancel token."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self.cancel_token = job.cancel_token

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0..1). Raises :class:`Cancelled` if cancel was requested."""
        self.cancel_token.check()
        self._job._report(min(max(float(fraction), 0.0), 1.0), message)
        self.cancel_token.check()

    def check_cancelled(self) -> None:
        self.cancel_token.check()


@dataclass
class Job:
    """One unit of background work and its outcome."""

    name: str
    fn: Callable[[JobContext], Any]
    id: int = 0
    state: JobState = JobState.QUEUED
    fraction: float = 0.0
    message: str = ""
    result: Any = None
    error: str | None = None
    error_detail: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cancel_token: CancelToken = field(default_factory=CancelToken)
    on_progress: list[Callable[[Job], None]] = field(default_factory=list)
    on_done: list[Callable[[Job], None]] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ended; True if it did within ``timeout``."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def eta_seconds(self) -> float | None:
        """Remaining time extrapolated from progress so far, once there is some."""
        if self.started_at is None or self.fraction <= 0.02:
            return None
        elapsed = time.monotonic() - self.started_at
        return elapsed * (1.0 - self.fraction) / self.fraction

    def _report(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message or self.message
        for cb in list(self.on_progress):
            cb(self)


class JobQueue:
    """One worker thread running jobs in submission order.

    One thread owns the torch device and the loaded models, so jobs never race for them.
    """

    def __init__(self, name: str = "unmix-engine") -> None:
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._jobs: list[Job] = []
        self.current: Job | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(
        self,
        name: str,
        fn: Callable[[JobContext], Any],
        on_progress: Callable[[Job], None] | None = None,
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        """Queue ``fn`` to run on the engine thread; returns its :class:`Job` at once."""
        job = Job(name=name, fn=fn, id=next(self._ids))
        if on_progress is not None:
            job.on_progress.append(on_progress)
        if on_done is not None:
            job.on_done.append(on_done)
        with self._lock:
            self._jobs.append(job)
        self._queue.put(job)
        return job

    def pending(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs if not j.done]

    def cancel_all(self) -> None:
        for job in self.pending():
            job.cancel()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel everything, stop the worker and wait for it."""
        self.cancel_all()
        self._queue.put(None)
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self.current = job
            try:
                self._execute(job)
            finally:
                self.current = None
                with self._lock:
                    if job in self._jobs:
                        self._jobs.remove(job)

    @staticmethod
    def _execute(job: Job) -> None:
        job.started_at = time.monotonic()
        try:
            job.cancel_token.check()
            job.state = JobState.RUNNING
            job.result = job.fn(JobContext(job))
            job.state = JobState.FINISHED
            job.fraction = 1.0
        except Cancelled:
            job.state = JobState.CANCELLED
            job.message = "Cancelled"
        except InputError as exc:
            job.state = JobState.FAILED
            job.error = str(exc)
        except Exception as exc:  # a bug: keep the traceback for the log, show a sentence
            job.state = JobState.FAILED
            job.error = f"{job.name} failed: {type(exc).__name__}: {exc}"
            job.error_detail = traceback.format_exc()
        finally:
            job.finished_at = time.monotonic()
            job._done.set()
            for cb in list(job.on_done):
                cb(job)
