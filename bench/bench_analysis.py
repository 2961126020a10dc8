"""Benchmark: the full analysis (every metric, BSS Eval included) of a 4-stem separation of a
4-minute stereo 44.1 kHz song, time per section; then the three reports.

The song comes from the song synthesizer (true stems); if it cannot run here, the MUSDB preview
of the shared fixtures is looped to 4 minutes (with per-loop gains so it is not periodic). The
"separation" is an oracle soft mask made imperfect on purpose — the true stems' magnitudes with
log-normal noise (σ = 0.5) become ratio masks on the mix — so the estimates carry leakage,
musical noise and phase errors like a real model's.

    .venv/bin/python bench/bench_analysis.py [--seconds 240] [--threads 2] [--no-reports]

Target: all metrics for 4 stems of a 4-minute song ≤ 20 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import SHARED_FIXTURES, table, write_results  # noqa: E402
from engine.audio import Audio, load_audio  # noqa: E402
from engine.spectral import StftConfig, istft, stft  # noqa: E402

TARGET_SECONDS = 20.0
NAMES = ("drums", "bass", "other", "vocals")


def _song(seconds: float, rate: int) -> tuple[dict[str, np.ndarray], str]:
    try:
        from engine.synth import synthesize_song

        t = time.perf_counter()
        song = synthesize_song(seed=11, duration_seconds=seconds, sample_rate=rate)
        stems = {n: song.stems[n].samples for n in NAMES}
        return stems, f"song synthesizer (seed 11, {time.perf_counter() - t:.0f} s to render)"
    except Exception as exc:  # the synthesizer's tools may be missing: fall back to real stems
        folder = SHARED_FIXTURES / "real_stems" / "musdb18_music_delta_80s_rock"
        if not folder.is_dir():
            raise SystemExit(f"no song source: synthesizer failed ({exc}) and {folder} is missing") from exc
        clips = {n: load_audio(folder / f"{n}.flac").samples for n in NAMES}
        n = int(seconds * rate)
        rng = np.random.default_rng(3)
        stems = {}
        for name, clip in clips.items():
            reps = -(-n // clip.shape[1])
            gains = rng.uniform(0.5, 1.0, reps)
            stems[name] = np.concatenate([g * clip for g in gains], axis=1)[:, :n].astype(np.float32)
        return stems, f"MUSDB preview looped ({exc})"


def _imperfect_separation(stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ratio masks from noisy true magnitudes, applied to the mix, one channel at a time."""
    cfg = StftConfig(n_fft=2048)
    rng = np.random.default_rng(5)
    mix = np.sum(list(stems.values()), axis=0)
    n = mix.shape[-1]
    out = {name: np.zeros_like(mix) for name in stems}
    for c in range(mix.shape[0]):
        m = stft(torch.from_numpy(np.ascontiguousarray(mix[c])), cfg)
        power = {}
        for name, x in stems.items():
            mag = stft(torch.from_numpy(np.ascontiguousarray(x[c])), cfg).abs()
            noise = torch.from_numpy(rng.lognormal(0.0, 0.5, mag.shape).astype(np.float32))
            power[name] = (mag * noise) ** 2
        total = sum(power.values()) + 1e-10
        for name in stems:
            out[name][c] = istft(m * (power[name] / total), n, cfg).numpy()
        del m, power, total
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-reports", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rate = 44_100
    stems, source = _song(args.seconds, rate)
    estimates = _imperfect_separation(stems)
    mix = Audio(np.sum(list(stems.values()), axis=0), rate)
    from engine.analysis import analyze_stems, write_json, write_markdown, write_pdf

    load_before = os.getloadavg()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    report = analyze_stems({n: Audio(x, rate) for n, x in estimates.items()},
                           {n: Audio(x, rate) for n, x in stems.items()}, mix=mix,
                           meta={"track": "bench song", "engine": "oracle mask + noise"})
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    load_after = os.getloadavg()
    sections = dict(report.timings_seconds)
    rows = [{"section": k, "seconds": float(v)} for k, v in sorted(sections.items(), key=lambda kv: -kv[1])
            if k != "total"]
    rows.append({"section": "TOTAL (wall)", "seconds": wall})
    rows.append({"section": "TOTAL (process CPU)", "seconds": cpu})
    reports = {}
    if not args.no_reports:
        with tempfile.TemporaryDirectory() as tmp:
            for name, fn, ext in (("json", write_json, "json"), ("markdown", write_markdown, "md"),
                                  ("pdf", write_pdf, "pdf")):
                t = time.perf_counter()
                path = fn(report, Path(tmp) / f"report.{ext}")
                reports[name] = {"seconds": time.perf_counter() - t, "bytes": path.stat().st_size}
        for name, r in reports.items():
            rows.append({"section": f"write {name} ({r['bytes'] // 1024} KiB)", "seconds": r["seconds"]})
    print(f"Analysis of 4 stems, {args.seconds:.0f} s stereo 44.1 kHz ({source}); "
          f"torch threads {args.threads}; load average before/after {load_before[0]:.1f}/{load_after[0]:.1f}")
    print(table(rows, ["section", "seconds"]))
    print("(BSS Eval and the stems run on 2 worker threads side by side: section times overlap; "
          "process CPU counts every thread.)")
    verdict = "meets" if wall <= TARGET_SECONDS else "MISSES"
    print(f"\n{verdict} the target: {wall:.1f} s wall for all metrics (target ≤ {TARGET_SECONDS:.0f} s).")
    scores = {n: {"score_percent": s.score["score_percent"] if s.score else None,
                  "si_sdr_db": s.sections["seed_metrics"]["si_sdr_db"],
                  "bss_images_v4_sdr_db": s.sections["bss_eval"]["images_v4"]["sdr_db"],
                  "bss_sources_sdr_db": s.sections["bss_eval"]["sources"]["sdr_db"]}
              for n, s in report.stems.items()}
    path = write_results("analysis", {
        "song": source, "seconds_of_audio": args.seconds, "sample_rate": rate, "channels": 2, "stems": 4,
        "torch_threads": args.threads, "load_average_before": load_before, "load_average_after": load_after,
        "wall_seconds": wall, "process_cpu_seconds": cpu, "target_seconds": TARGET_SECONDS,
        "meets_target": wall <= TARGET_SECONDS, "sections_seconds": sections, "reports": reports,
        "scores": scores,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
