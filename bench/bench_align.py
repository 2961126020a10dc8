"""Benchmark of the alignment engine (issue 3): speed, and quality against the naive method.

Speed: time to align a 4-minute stereo 44.1 kHz song (median of 3 runs, wall and CPU), the
fast null meter after a nudge, a 1 s playback block, and a full render.

Quality: on 4-minute synthetic songs with known truth (the generators of
``tests/engine/test_align.py``), ours against the naive method peers use — integer
cross-correlation of one 1 s snippet (the acapella's loudest second) against the mix, then a
broadband least-squares gain — on a clean copy, clock drift, a 48 kHz acapella and a mastered
mix (bus EQ + soft limiter). The naive method is given the acapella already converted to the
mix's rate (as loaders such as librosa do) so the comparison is about alignment, not I/O.
Reported: offset error at the acapella's first sample, the largest timing error anywhere along
the song, the vocal residual (aligned acapella minus the true vocal, dB re the vocal: how well
the vocal itself cancels) and the null depth over the region the acapella covers (the "ideal"
column subtracts the true vocal exactly: the deepest null the mix allows).

Usage: ``python bench/bench_align.py [--quick]`` (``--quick``: 60 s songs, one timing run).
Prints a table and writes ``bench/results/align.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.fft
from scipy.signal import sosfilt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.align import AlignmentParams, align_acapella, null_test, render_aligned  # noqa: E402
from engine.audio import Audio, resample  # noqa: E402
from tests.engine.test_align import Pair, make_pair  # noqa: E402

RESULTS = REPO / "bench" / "results" / "align.json"


# ------------------------------------------------------------------------------------------
# the mastering chain and the naive method
# ------------------------------------------------------------------------------------------


def _biquad(kind: str, f0: float, gain_db: float, q: float, rate: int) -> np.ndarray:
    """RBJ cookbook shelf/peak as one second-order section."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / rate
    alpha = math.sin(w0) / (2 * q)
    cw = math.cos(w0)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:
        sq = 2 * math.sqrt(a) * alpha
        if kind == "lowshelf":
            b = [a * ((a + 1) - (a - 1) * cw + sq), 2 * a * ((a - 1) - (a + 1) * cw), a * ((a + 1) - (a - 1) * cw - sq)]
            den = [(a + 1) + (a - 1) * cw + sq, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sq]
        else:
            b = [a * ((a + 1) + (a - 1) * cw + sq), -2 * a * ((a - 1) + (a + 1) * cw), a * ((a + 1) + (a - 1) * cw - sq)]
            den = [(a + 1) - (a - 1) * cw + sq, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sq]
    return np.array([b[0] / den[0], b[1] / den[0], b[2] / den[0], 1.0, den[1] / den[0], den[2] / den[0]])


def master(samples: np.ndarray, rate: int) -> np.ndarray:
    """Bus EQ (low shelf +3 dB at 100 Hz, presence +2 dB at 3 kHz, air +2.5 dB at 10 kHz)
    then a soft limiter (tanh, 6 dB of drive, ceiling -0.3 dBFS)."""
    sos = np.stack([_biquad("lowshelf", 100.0, 3.0, 0.7, rate), _biquad("peak", 3000.0, 2.0, 1.0, rate),
                    _biquad("highshelf", 10_000.0, 2.5, 0.7, rate)])
    eq = sosfilt(sos, samples.astype(np.float64), axis=-1)
    ceiling = 10 ** (-0.3 / 20)
    drive = 2.0 / max(float(np.max(np.abs(eq))), 1e-9)
    return (ceiling * np.tanh(drive * eq) / math.tanh(drive)).astype(np.float32)


def naive_align(mix: Audio, acapella: Audio) -> AlignmentParams:
    """The peers' method: integer cross-correlation of the acapella's loudest second against
    the whole mix, then one broadband least-squares gain (its sign gives the polarity)."""
    rate = mix.sample_rate
    a = resample(acapella.mono(), acapella.sample_rate, rate)
    m = mix.mono()
    w = rate
    cum = np.concatenate([[0.0], np.cumsum(a.astype(np.float64) ** 2)])
    starts = np.arange(0, max(len(a) - w, 0) + 1, w // 10)
    s0 = int(starts[np.argmax(cum[starts + min(w, len(a))] - cum[starts])])
    snippet = a[s0:s0 + w]
    n = scipy.fft.next_fast_len(len(m) + len(snippet), real=True)
    xc = scipy.fft.irfft(scipy.fft.rfft(m, n) * np.conj(scipy.fft.rfft(snippet, n)), n)[: len(m)]
    lag = int(np.argmax(np.abs(xc)))
    offset = lag - s0
    # broadband least-squares gain over the overlap at that integer offset
    a0, a1 = max(0, -offset), min(len(a), len(m) - offset)
    seg_a, seg_m = a[a0:a1].astype(np.float64), m[a0 + offset:a1 + offset].astype(np.float64)
    g = float(np.dot(seg_m, seg_a) / max(np.dot(seg_a, seg_a), 1e-30))
    return AlignmentParams(float(offset), 0.0, 20 * math.log10(max(abs(g), 1e-12)), 1 if g >= 0 else -1)


# ------------------------------------------------------------------------------------------
# measurements
# ------------------------------------------------------------------------------------------


def _timing_error(pair: Pair, p: AlignmentParams) -> tuple[float, float]:
    """(offset error at converted acapella frame 0, largest |timing error| over the acapella)."""
    k_last = pair.acapella.frames * pair.mix.sample_rate / pair.acapella.sample_rate
    k = np.array([0.0, k_last])
    truth = pair.offset_samples + k * (1 + pair.drift_ppm * 1e-6)
    est = p.offset_samples + k * (1 + p.drift_ppm * 1e-6)
    return float(est[0] - truth[0]), float(np.max(np.abs(est - truth)))


def _nulls(pair: Pair, p: AlignmentParams, region: tuple[int, int]) -> tuple[float, float]:
    """(null depth of the mix, dB; vocal residual: aligned acapella minus the true vocal in the
    mix, dB re that vocal — how well the vocal itself cancels, which the band's level hides)."""
    mix = pair.mix
    aligned = render_aligned(pair.acapella, p, mix.sample_rate, mix.frames, mix.channels)
    depth = null_test(mix.samples, aligned, mix.sample_rate, region=region).null_depth_db
    r0, r1 = region
    err = aligned[:, r0:r1].astype(np.float64) - pair.vocal[:, r0:r1]
    ref = pair.vocal[:, r0:r1]
    return depth, 10 * math.log10(float(np.sum(err * err)) / float(np.sum(ref * ref)))


def _case(name: str, pair: Pair) -> dict:
    t0 = time.perf_counter()
    r = align_acapella(pair.mix, pair.acapella)
    ours_seconds = time.perf_counter() - t0
    region = r.renderer.region if r.matched else (0, pair.mix.frames)
    naive = naive_align(pair.mix, pair.acapella)
    ideal = null_test(pair.mix.samples, pair.vocal.astype(np.float32), pair.mix.sample_rate, region=region)
    row: dict = {"case": name, "truth": {"offset_samples": pair.offset_samples, "drift_ppm": pair.drift_ppm,
                                         "gain_db": pair.gain_db, "polarity": pair.polarity},
                 "ideal_null_db": ideal.null_depth_db}
    for label, p, secs in (("ours", r.params, ours_seconds), ("naive", naive, None)):
        err0, err_max = _timing_error(pair, p)
        depth, residual = _nulls(pair, p, region)
        row[label] = {
            "matched": bool(r.matched) if label == "ours" else True,
            "offset_error_samples": err0, "max_timing_error_samples": err_max,
            "drift_ppm": p.drift_ppm, "gain_db": p.gain_db, "polarity": p.polarity,
            "null_depth_db": depth, "vocal_residual_db": residual,
        }
        if secs is not None:
            row[label]["seconds"] = secs
            row[label]["confidence"] = r.confidence
    return row


def _timing(duration: float, runs: int) -> dict:
    pair = make_pair(duration, seed=31, offset_samples=12.3456 * 44_100)
    wall, cpu = [], []
    result = None
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        result = align_acapella(pair.mix, pair.acapella)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert result is not None and result.matched
    renderer = result.renderer
    meter = []
    for i in range(20):  # nudges within the cached placement, as the GUI's nudge tool makes
        p = result.params.nudged(offset_samples=result.offset_samples + (i - 10) * 0.37)
        t0 = time.perf_counter()
        renderer.null(p)
        meter.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(10):
        renderer.render_segment(44_100 * (10 + i), 44_100 * (11 + i), result.params.nudged(offset_samples=result.offset_samples + 0.5))
    block = (time.perf_counter() - t0) / 10
    t0 = time.perf_counter()
    renderer.render(result.params.nudged(offset_samples=result.offset_samples + 0.25))
    full = time.perf_counter() - t0
    return {
        "song": f"{duration:.0f} s stereo 44.1 kHz, mono acapella",
        "align_seconds_median": statistics.median(wall), "align_seconds_runs": wall,
        "align_cpu_seconds_median": statistics.median(cpu),
        "null_meter_ms_median": 1e3 * statistics.median(meter),
        "render_segment_1s_ms": 1e3 * block, "render_full_seconds": full,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 s songs and one timing run")
    args = parser.parse_args()
    duration = 60.0 if args.quick else 240.0
    runs = 1 if args.quick else 3

    timing = _timing(duration, runs)
    cases = [
        ("clean copy, fractional offset", make_pair(duration, seed=32, offset_samples=98_765.43)),
        ("drift +300 ppm", make_pair(duration, seed=33, offset_samples=54_321.0, drift_ppm=300.0)),
        ("drift -1000 ppm", make_pair(duration, seed=34, offset_samples=-22_050.5, drift_ppm=-1000.0)),
        ("48 kHz acapella", make_pair(duration, seed=35, acapella_rate=48_000, offset_samples=33_333.3)),
        ("48 kHz acapella + drift +50 ppm",
         make_pair(duration, seed=36, acapella_rate=48_000, offset_samples=7_000.0, drift_ppm=50.0)),
    ]
    mastered = make_pair(duration, seed=37, offset_samples=44_100.7, gain_db=-6.0)
    mastered.mix = Audio(master(mastered.mix.samples, 44_100), 44_100)
    cases.append(("mastered mix (bus EQ + soft limiter)", mastered))
    rows = [_case(name, pair) for name, pair in cases]

    print(f"Alignment benchmark — {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"Align {timing['song']}: {timing['align_seconds_median']:.2f} s wall "
          f"(runs {', '.join(f'{t:.2f}' for t in timing['align_seconds_runs'])}), "
          f"{timing['align_cpu_seconds_median']:.2f} s CPU; fast null meter {timing['null_meter_ms_median']:.1f} ms; "
          f"1 s playback block {timing['render_segment_1s_ms']:.1f} ms; full render {timing['render_full_seconds']:.2f} s")
    head = (f"{'case':38s} {'method':6s} {'offset err':>11s} {'max err':>10s} {'drift ppm':>10s} "
            f"{'vocal res':>9s} {'null dB':>8s} {'ideal':>7s}")
    print(head)
    print("-" * len(head))
    for row in rows:
        for label in ("ours", "naive"):
            d = row[label]
            ideal = f"{row['ideal_null_db']:7.2f}" if label == "ours" else ""
            print(f"{row['case'] if label == 'ours' else '':38s} {label:6s} {d['offset_error_samples']:+11.3f} "
                  f"{d['max_timing_error_samples']:10.3f} {d['drift_ppm']:+10.2f} {d['vocal_residual_db']:9.1f} "
                  f"{d['null_depth_db']:8.2f} {ideal}")
    print("offset err: samples at the acapella's first sample; max err: largest timing error along the song;\n"
          "vocal res: aligned acapella minus the true vocal, dB re the vocal (the mastered case compares with\n"
          "the vocal before mastering); null dB: mix minus aligned acapella, dB re the mix; ideal: the true\n"
          "vocal subtracted.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "load_average_1min": os.getloadavg()[0]},
               "duration_seconds": duration, "timing": timing, "cases": rows}
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
