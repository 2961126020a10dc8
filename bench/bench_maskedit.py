"""Mask editing benchmark: painting frame rate and a stroke's re-synthesis on a 4-minute song.

A 4-minute stereo 44.1 kHz song with 2 and with 4 stems (masks at the default STFT, 2048/512,
i.e. 1025 × 20 673 cells per stem), measured two ways:

1. engine only (:mod:`engine.maskedit`): per pointer move, ``LiveStroke.extend`` plus the overlay
   columns (:func:`engine.mask_display.update_mask_image`) of every stem; at the stroke's end,
   ``finish`` (the local re-synthesis of the stems under the stroke); undo of the stroke; a
   box; a whole-track contrast;
2. the GUI, offscreen: the real main window with the stems' lanes, a stroke painted through the
   Mask Tools' handlers with the painted lane's spectrogram repainted synchronously after every
   pointer move (frames per second of painting), and the time from the stroke's end until the
   stems' arrays — which the player holds by reference — hold the new audio.

Targets (issue #8): painting ≥ 30 fps (aim 60), a stroke's re-synthesis ≤ 150 ms.

    .venv/bin/python bench/bench_maskedit.py [--repeats N] [--skip-gui]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import table, write_results  # noqa: E402
from engine.mask_display import mask_display_image, update_mask_image  # noqa: E402
from engine.maskedit import BoxEdit, Brush, ContrastEdit, MaskLayers, normalised_masks  # noqa: E402
from engine.spectral import istft, stft  # noqa: E402

RATE = 44_100
SECONDS = 240.0
NAMES = {2: ["vocals", "instrumental"], 4: ["drums", "bass", "other", "vocals"]}


def song(stems: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A noisy 'mix' with random smooth masks (float16, stereo, as separators return them) and
    mask-based stems that sum to it (the last stem is the rest)."""
    rng = np.random.default_rng(seed)
    n = int(SECONDS * RATE)
    mix = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
    x = stft(mix)
    frames = x.shape[-1]
    coarse = rng.random((stems, 2, 64, frames // 64 + 2)).astype(np.float32)
    raw = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(1025, frames), mode="bilinear").numpy()
    raw /= raw.sum(axis=0, keepdims=True)
    names = NAMES[stems]
    audio, masks, rest = {}, {}, mix.copy()
    for i, name in enumerate(names):
        masks[name] = raw[i].astype(np.float16)
        if i < stems - 1:
            audio[name] = istft(x * torch.from_numpy(raw[i]), n).numpy()
            rest -= audio[name]
        else:
            audio[name] = rest
    return mix, audio, masks


def stroke_points(start: float, seconds: float, moves_per_second: float = 60.0) -> list[tuple[float, float]]:
    """A wavy stroke as a pointer delivers it (60 moves per second of painting)."""
    k = int(seconds * moves_per_second)
    t = start + np.linspace(0.0, seconds, k)
    f = 1500.0 + 800.0 * np.sin(np.linspace(0.0, 6.0, k))
    return list(zip(t.tolist(), f.tolist(), strict=True))


def engine_case(stems: int, repeats: int) -> dict[str, float]:
    mix, audio, masks = song(stems)
    t0 = time.perf_counter()
    ready = normalised_masks(masks, list(audio))
    t_norm = time.perf_counter() - t0
    lay = MaskLayers(mix, audio, ready, RATE, already_normalised=True)
    images = {n: mask_display_image(lay.masks[n], RATE) for n in lay.names}
    brush = Brush(radius_seconds=0.05, radius_hz=150.0, hardness=0.5)
    moves, finishes, undos = [], [], []
    for r in range(repeats):
        live = lay.begin_stroke(lay.names[-1], "boost", brush)
        for p in stroke_points(30.0 + 20 * r, 2.0):
            a = time.perf_counter()
            changed = live.extend([p])
            if changed is not None:
                for n in lay.names:
                    update_mask_image(images[n], lay.masks[n], changed[0], changed[1], RATE)
            moves.append(time.perf_counter() - a)
        a = time.perf_counter()
        rec = live.finish()
        finishes.append(time.perf_counter() - a)
        assert rec is not None
        a = time.perf_counter()
        lay.undo(rec)
        undos.append(time.perf_counter() - a)
        lay.redo(rec)
    a = time.perf_counter()
    lay.apply(BoxEdit(lay.names[0], "cut", 100.0, 102.0, 200.0, 4000.0, feather_seconds=0.1))
    t_box = time.perf_counter() - a
    a = time.perf_counter()
    lay.apply(ContrastEdit(lay.names[0], 0.5, 2.0))
    t_contrast = time.perf_counter() - a
    err = lay.sum_error_db()
    return {
        "stems": stems, "prepare_masks_s": t_norm,
        "move_ms_median": 1e3 * statistics.median(moves), "move_ms_p95": 1e3 * float(np.percentile(moves, 95)),
        "stroke_resynth_ms_median": 1e3 * statistics.median(finishes), "stroke_resynth_ms_max": 1e3 * max(finishes),
        "undo_ms_median": 1e3 * statistics.median(undos), "box_2s_ms": 1e3 * t_box,
        "contrast_whole_track_s": t_contrast, "sum_error_db": err,
    }


def gui_case(stems: int, repeats: int) -> dict[str, float]:
    from PySide6.QtCore import QPointF, QSettings
    from PySide6.QtWidgets import QApplication

    from engine.audio import Audio
    from engine.session import Track
    from gui.jobs import JobBridge
    from gui.main_window import MainWindow
    from gui.theme import apply_dark_theme

    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)  # type: ignore[arg-type]
    jobs = JobBridge()
    import tempfile

    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.Format.IniFormat)
    w = MainWindow(jobs, settings=settings)
    w.confirm_on_close = False
    w.resize(1600, 1000)
    w.show()
    mix, audio, masks = song(stems)
    s = w.session
    s.set_track("mix", Audio(mix, RATE), name="song")
    ready = normalised_masks(masks, list(audio))
    for name, a in audio.items():
        t = Track(name=name, role="stem", audio=Audio(a, RATE))
        s.masks[t.id] = ready[name]
        s.add_track(t)
    deadline = time.monotonic() + 120
    editor = w.panels["masks"]  # type: ignore[index]
    stem_tracks = [t for t in s.tracks if t.role == "stem"]
    while time.monotonic() < deadline:
        app.processEvents()
        lanes = [w.lane_stack.lanes.get(t.id) for t in stem_tracks]
        if all(lane is not None and lane.spectrogram.mask_image is not None for lane in lanes) and not w.lane_stack.busy:
            break
        time.sleep(0.01)
    else:
        raise RuntimeError("lanes never drew")
    s.timeline.set_range(int(20 * RATE), int(50 * RATE))  # a 30-s view, as when working on a passage
    for _ in range(50):
        app.processEvents()
        time.sleep(0.01)
    lane = w.lane_stack.lanes[stem_tracks[0].id]  # the first stem lane: on screen under the mix
    editor.set_tool("brush")
    editor.width_ms.setValue(100)
    editor.height_hz.setValue(300)
    view = lane.spectrogram
    moves, ends = [], []
    for r in range(repeats):
        pts = stroke_points(25.0 + 7 * r, 2.0)
        editor.press(lane, pts[0], QPointF())
        for p in pts[1:]:
            a = time.perf_counter()
            editor.drag(lane, p, QPointF())
            view.viewport().repaint()  # paint now, as the next frame would
            moves.append(time.perf_counter() - a)
        a = time.perf_counter()
        editor.release(lane, pts[-1], QPointF())
        ends.append(time.perf_counter() - a)  # stems' arrays hold the new audio when this returns
        app.processEvents()
    err = editor.layers.sum_error_db()  # type: ignore[union-attr]
    w.shutdown()
    jobs.shutdown()
    w.close()
    frame = statistics.median(moves)
    return {
        "stems": stems, "paint_move_ms_median": 1e3 * frame, "paint_move_ms_p95": 1e3 * float(np.percentile(moves, 95)),
        "paint_fps_median": 1.0 / frame, "stroke_end_to_audio_ms_median": 1e3 * statistics.median(ends),
        "stroke_end_to_audio_ms_max": 1e3 * max(ends), "sum_error_db": err,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-gui", action="store_true")
    args = ap.parse_args()
    engine_rows = [engine_case(k, args.repeats) for k in (2, 4)]
    print("Engine (4-minute stereo song, one 2-s stroke per repeat, 60 pointer moves/s):")
    print(table(engine_rows, list(engine_rows[0])))
    gui_rows = [] if args.skip_gui else [gui_case(k, args.repeats) for k in (2, 4)]
    if gui_rows:
        print("\nGUI offscreen (real window, lane repainted after every move):")
        print(table(gui_rows, list(gui_rows[0])))
    path = write_results("maskedit", {"seconds": SECONDS, "rate": RATE, "engine": engine_rows, "gui": gui_rows,
                                      "load_average": os.getloadavg()})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
