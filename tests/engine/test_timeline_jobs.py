"""Timeline model and the job queue (progress, cancel, errors)."""

from __future__ import annotations

import threading
import time

import pytest

from engine.errors import InputError
from engine.jobs import JobContext, JobQueue, JobState
from engine.timeline import Timeline


def test_zoom_keeps_anchor_and_emits() -> None:
    tl = Timeline(44_100, 44_100 * 60)
    seen: list[tuple[int, int]] = []
    tl.range_changed.connect(lambda a, b: seen.append((a, b)))
    tl.zoom(4.0, anchor=44_100 * 30)
    assert seen and tl.view_stop - tl.view_start == pytest.approx(44_100 * 15, abs=1)
    assert (tl.view_start + tl.view_stop) / 2 == pytest.approx(44_100 * 30, abs=1)
    tl.scroll(0.5)
    assert tl.view_start == pytest.approx(44_100 * 22.5 + 44_100 * 7.5 / 1, abs=44_100 * 0.01)


def test_playhead_and_selection_clamped() -> None:
    tl = Timeline(1000, 5000)
    tl.set_playhead(99_999)
    assert tl.playhead == 5000
    tl.set_selection(4000, 100)
    assert tl.selection == (100, 4000)
    tl.set_selection(None)
    assert tl.selection is None


def test_selection_names_the_lane_it_was_dragged_on() -> None:
    tl = Timeline(1000, 5000)
    seen: list[object] = []
    tl.selection_changed.connect(seen.append)
    tl.set_selection(100, 400, track="t2")
    assert tl.selection == (100, 400) and tl.selection_track == "t2"
    tl.set_selection(100, 400)  # the same range from elsewhere: no lane, no new event
    assert tl.selection_track is None and seen == [(100, 400)]
    tl.set_selection(300, 300, track="t2")  # empty: cleared, no lane
    assert tl.selection is None and tl.selection_track is None


@pytest.fixture
def queue():
    q = JobQueue()
    yield q
    q.shutdown()
    assert not q.alive


def test_job_result_and_progress(queue: JobQueue) -> None:
    reports: list[float] = []

    def work(ctx: JobContext) -> int:
        for i in range(5):
            ctx.progress(i / 5, f"step {i}")
        return 42

    job = queue.submit("answer", work, on_progress=lambda j: reports.append(j.fraction))
    assert job.wait(5)
    assert job.state is JobState.FINISHED and job.result == 42
    assert reports == [0.0, 0.2, 0.4, 0.6, 0.8]


def test_cancel_stops_within_100_ms_of_next_report(queue: JobQueue) -> None:
    started = threading.Event()
    stopped_at: list[float] = []

    def long_job(ctx: JobContext) -> None:
        started.set()
        try:
            while True:
                time.sleep(0.01)  # one "chunk" of work
                ctx.progress(0.5, "working")
        finally:
            stopped_at.append(time.monotonic())

    job = queue.submit("long", long_job)
    assert started.wait(5)
    t0 = time.monotonic()
    job.cancel()
    assert job.wait(5)
    assert job.state is JobState.CANCELLED
    assert stopped_at[0] - t0 < 0.1


def test_queued_job_cancelled_before_it_starts(queue: JobQueue) -> None:
    gate = threading.Event()
    first = queue.submit("first", lambda ctx: gate.wait(5))
    second = queue.submit("second", lambda ctx: "ran")
    second.cancel()
    gate.set()
    assert first.wait(5) and second.wait(5)
    assert second.state is JobState.CANCELLED and second.result is None


def test_errors_are_readable(queue: JobQueue) -> None:
    def bad_input(ctx: JobContext) -> None:
        raise InputError("file is empty (0 bytes)", "/music/song.wav")

    def bug(ctx: JobContext) -> None:
        raise ZeroDivisionError("division by zero")

    a = queue.submit("load", bad_input)
    b = queue.submit("compute", bug)
    assert a.wait(5) and b.wait(5)
    assert a.state is JobState.FAILED and a.error == "/music/song.wav: file is empty (0 bytes)"
    assert b.state is JobState.FAILED and "ZeroDivisionError" in (b.error or "")
    assert "Traceback" in (b.error_detail or "")


def test_jobs_run_in_order_on_one_thread(queue: JobQueue) -> None:
    names: list[str] = []
    jobs = [queue.submit(str(i), lambda ctx, i=i: names.append(threading.current_thread().name) or i) for i in range(4)]
    assert all(j.wait(5) for j in jobs)
    assert [j.result for j in jobs] == [0, 1, 2, 3]
    assert len(set(names)) == 1
