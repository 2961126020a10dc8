"""GUI load benchmark: drop a mix + acapella on the window, time until both lanes are drawn.

Measures, offscreen (QT_QPA_PLATFORM=offscreen unless set):

1. a 4-minute stereo 44.1 kHz song (16-bit WAV mix + acapella, and the same as FLAC):
   time from the drop to both lanes' waveform and spectrogram drawn (target <= 1.5 s), and the
   longest gap of a 5 ms QTimer heartbeat on the GUI thread while loading (target <= 50 ms);
2. a 1-hour stereo 44.1 kHz WAV, in a fresh process: load + draw time, heartbeat gap, and peak
   RSS against the file's float32 size (target <= ~2x).

Prints a table and writes ``bench/results/gui_load.json``.

    .venv/bin/python bench/bench_gui_load.py [--skip-hour] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

RATE = 44_100
RESULTS = REPO / "bench" / "results" / "gui_load.json"
HEARTBEAT_MS = 5


# ---------------------------------------------------------------------------------------------
# test material (synthesised: harmonic chords, a sung-like vibrato line, noise percussion)
# ---------------------------------------------------------------------------------------------
def write_song(mix_path: Path, acapella_path: Path | None, seconds: float, seed: int = 0) -> None:
    """Write a stereo song (and its vocal line) block by block, so 1 hour fits in little RAM."""
    rng = np.random.default_rng(seed)
    frames = int(seconds * RATE)
    block = RATE * 10
    fmt = {"wav": "WAV", "flac": "FLAC"}
    mix_f = sf.SoundFile(str(mix_path), "w", RATE, 2, "PCM_16", format=fmt[mix_path.suffix[1:]])
    voc_f = (
        sf.SoundFile(str(acapella_path), "w", RATE, 2, "PCM_16", format=fmt[acapella_path.suffix[1:]])
        if acapella_path is not None else None
    )
    roots = 110.0 * 2 ** (np.array([0, 5, 7, 3]) / 12)
    with mix_f:
        for a in range(0, frames, block):
            n = min(block, frames - a)
            t = (a + np.arange(n)) / RATE
            bar = (t // 2.0).astype(int) % 4
            root = roots[bar]
            chords = sum(0.06 * np.sin(2 * np.pi * root * k * t) / k for k in (1, 2, 3, 4, 5))
            beat = np.mod(t, 0.5)
            drums = 0.25 * np.exp(-beat * 40) * rng.standard_normal(n)
            f0 = 2 * root * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
            phase = 2 * np.pi * np.cumsum(f0) / RATE
            sung = (np.mod(t, 4.0) < 3.2) * sum(0.08 * np.sin(k * phase) / k for k in (1, 2, 3))
            left = chords + drums + sung
            right = 0.9 * chords + drums * 0.8 + sung
            mix_f.write(np.stack([left, right], axis=1).astype(np.float32))
            if voc_f is not None:
                voc_f.write(np.stack([sung, sung], axis=1).astype(np.float32))
    if voc_f is not None:
        voc_f.close()


# ---------------------------------------------------------------------------------------------
# measuring inside the app
# ---------------------------------------------------------------------------------------------
class Heartbeat:
    """A fast QTimer on the GUI thread; the longest gap between ticks is the worst stall."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0
        self.max_gap = 0.0

    def start(self) -> None:
        self.last = time.perf_counter()
        self.max_gap = 0.0
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.max_gap = max(self.max_gap, now - self.last)
        self.last = now

    def stop(self) -> float:
        self._tick()
        self.timer.stop()
        return self.max_gap


def drop_files(widget, paths: list[Path]) -> None:
    """Deliver a real QDropEvent carrying file URLs to ``widget``."""
    import PySide6
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    PYSIDE_VERSION = tuple(PySide6.__version_info__[:2])

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.rect().center())
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    # PySide6 >= 6.12 takes a QPointF (its QPoint form is deprecated); earlier ones a QPoint.
    # Chosen by version: a failed overload costs PySide6 ~0.1 s to explain.
    enter_pos = pos if PYSIDE_VERSION >= (6, 12) else pos.toPoint()
    enter = QDragEnterEvent(enter_pos, *args)
    QApplication.sendEvent(widget, enter)
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)


def measure_drop(paths: list[Path], timeout_s: float = 600.0) -> dict[str, float]:
    """Open a window, drop ``paths``, wait for all lanes drawn; returns timings in seconds."""
    from PySide6.QtCore import QEventLoop, QTimer

    from gui.app import make_application
    from gui.jobs import JobBridge
    from gui.main_window import MainWindow

    app = make_application()
    jobs = JobBridge()
    window = MainWindow(jobs)
    window.confirm_on_close = False
    window.show()
    loop = QEventLoop()
    QTimer.singleShot(500, loop.quit)  # a window that is up and idle, as a user would drop on
    loop.exec()
    beat = Heartbeat()
    result: dict[str, float] = {}

    def check() -> None:
        w = window
        if (len(w.lane_stack.lanes) == len(paths) and not w.jobs.active_jobs
                and w.lane_stack.is_drawn and not w.lane_stack.busy):
            result["drawn_s"] = time.perf_counter() - t0
            loop.quit()

    def failed(job) -> None:
        result["error"] = job.error
        loop.quit()

    jobs.failed.connect(failed)
    poll = QTimer()
    poll.setInterval(2)
    poll.timeout.connect(check)
    beat.start()
    t0 = time.perf_counter()
    drop_files(window, paths)
    poll.start()
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    poll.stop()
    result["max_gui_stall_s"] = beat.stop()
    result["load_average_1min"] = os.getloadavg()[0]
    window.shutdown()
    jobs.shutdown()
    window.deleteLater()
    app.processEvents()
    if "error" in result:
        raise RuntimeError(result["error"])
    if "drawn_s" not in result:
        raise RuntimeError(f"not drawn within {timeout_s} s")
    return result


def measure_idle(seconds: float = 3.0) -> float:
    """The heartbeat's longest gap with the window open and nothing loading: the machine's own
    scheduling noise, to read the load measurements against."""
    from PySide6.QtCore import QEventLoop, QTimer

    from gui.app import make_application
    from gui.jobs import JobBridge
    from gui.main_window import MainWindow

    app = make_application()
    jobs = JobBridge()
    window = MainWindow(jobs)
    window.show()
    app.processEvents()
    loop = QEventLoop()
    QTimer.singleShot(500, loop.quit)  # let the spare lanes build first
    loop.exec()
    beat = Heartbeat()
    beat.start()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    gap = beat.stop()
    window.shutdown()
    jobs.shutdown()
    window.deleteLater()
    app.processEvents()
    return gap


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hour_child(path: Path) -> None:
    """Run in a fresh process: load the 1-hour file, report JSON on stdout."""
    from gui.app import make_application

    make_application()
    baseline = current_rss_bytes()
    info = sf.info(str(path))
    r = measure_drop([path])
    out = {
        "drawn_s": r["drawn_s"], "max_gui_stall_s": r["max_gui_stall_s"],
        "load_average_1min": r["load_average_1min"],
        "peak_rss_bytes": peak_rss_bytes(), "baseline_rss_bytes": baseline,
        "float32_bytes": int(info.frames) * int(info.channels) * 4, "frames": int(info.frames),
    }
    print(json.dumps(out))


# ---------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-hour", action="store_true", help="skip the 1-hour file")
    ap.add_argument("--repeats", type=int, default=3, help="runs per 4-minute case (default 3)")
    ap.add_argument("--hour-child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hour_child is not None:
        hour_child(args.hour_child)
        return 0

    rows = []
    idle_gap_s = measure_idle()
    with tempfile.TemporaryDirectory(prefix="unmix-bench-") as tmp:
        d = Path(tmp)
        for fmt in ("wav", "flac"):
            mix, voc = d / f"mix.{fmt}", d / f"acapella.{fmt}"
            write_song(mix, voc, 240.0)
            runs = [measure_drop([mix, voc]) for _ in range(args.repeats)]
            rows.append({
                "case": f"4 min stereo 44.1 kHz, mix + acapella ({fmt.upper()})",
                "runs": runs,
                "drawn_s_median": float(np.median([r["drawn_s"] for r in runs])),
                "drawn_s_max": float(max(r["drawn_s"] for r in runs)),
                "max_gui_stall_s": float(max(r["max_gui_stall_s"] for r in runs)),
                "load_average_1min": [r["load_average_1min"] for r in runs],
                "targets": {"drawn_s": 1.5, "max_gui_stall_s": 0.05},
            })
            mix.unlink()
            voc.unlink()
        hour = None
        if not args.skip_hour:
            long_path = d / "hour.wav"
            write_song(long_path, None, 3600.0, seed=1)
            proc = subprocess.run(
                [sys.executable, __file__, "--hour-child", str(long_path)],
                capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            hour = json.loads(proc.stdout.strip().splitlines()[-1])
            hour["peak_rss_over_float32"] = hour["peak_rss_bytes"] / hour["float32_bytes"]
            hour["added_rss_over_float32"] = (
                (hour["peak_rss_bytes"] - hour["baseline_rss_bytes"]) / hour["float32_bytes"]
            )
            hour["targets"] = {"peak_rss_over_float32": 2.0}

    print()
    print(f"{'case':<52} {'drawn (median/max)':>20} {'max GUI stall':>14} {'load avg':>9}")
    print("-" * 98)
    for r in rows:
        print(f"{r['case']:<52} {r['drawn_s_median']:>9.3f} / {r['drawn_s_max']:<7.3f}s "
              f"{r['max_gui_stall_s'] * 1000:>11.1f} ms {max(r['load_average_1min']):>9.2f}")
    print(f"{'idle window (no loading): scheduling noise':<52} {'':>20} {idle_gap_s * 1000:>11.1f} ms")
    if hour is not None:
        gib = 2.0**30
        print(f"{'1 hour stereo 44.1 kHz WAV (mix only)':<52} {hour['drawn_s']:>9.3f} s{'':>10} "
              f"{hour['max_gui_stall_s'] * 1000:>11.1f} ms {hour['load_average_1min']:>9.2f}")
        print(f"  peak RSS {hour['peak_rss_bytes'] / gib:.2f} GiB = {hour['peak_rss_over_float32']:.2f}x "
              f"the float32 size ({hour['float32_bytes'] / gib:.2f} GiB); above the app's baseline "
              f"({hour['baseline_rss_bytes'] / gib:.2f} GiB): {hour['added_rss_over_float32']:.2f}x")
    out = {
        "benchmark": "gui_load",
        "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}, {platform.system()}, no GPU",
        "note": "the machine is shared; load_average_1min says how busy it was during each run",
        "qt_platform": os.environ.get("QT_QPA_PLATFORM"),
        "heartbeat_ms": HEARTBEAT_MS,
        "idle_max_gui_gap_s": idle_gap_s,
        "four_minute": rows,
        "one_hour": hour,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
