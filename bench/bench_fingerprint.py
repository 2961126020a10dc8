"""The ``fingerprint`` engine: quality against the ideal-ratio-mask oracle, and speed.

Quality: vocal and instrumental SDR (``10·log10(|s|² / |s − ŝ|²)`` over the whole excerpt) with the
true vocal as the acapella, for
  * ``fingerprint`` (full mode, defaults) and its starting point (``iterations = 0``),
  * the ideal ratio masks from the true stems at the same STFT: ``|V| / (|V| + |I|)`` (IRM1, the
    one the tests compare with) and ``|V|² / (|V|² + |I|²)`` (IRM2),
  * ``mode = "seed"`` (the seeds' setup: first 4.7 s, mono, 22.05 kHz, flat start, lr 0.01,
    100 steps), scored on the mono first 4.7 s against the mono vocal,
on synthetic songs (tests/engine/signals.py, 30 s stereo 44.1 kHz) and on the real excerpts in
``../shared/fixtures/real_stems`` when present.

Speed: a 4-minute stereo 44.1 kHz song, full mode, with torch on 2 threads and on 1 thread; and
the seed mode on a 4.7-s clip (the seeds needed 3–4 minutes for that).

    python bench/bench_fingerprint.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine.separators.fingerprint  # noqa: E402, F401  (registers "fingerprint")
from bench.common import SHARED_FIXTURES, table, write_results  # noqa: E402
from engine.audio import Audio, load_audio  # noqa: E402
from engine.separators.base import get_separator  # noqa: E402
from engine.separators.fingerprint import SEED_SECONDS  # noqa: E402
from engine.spectral import istft, stft  # noqa: E402
from tests.engine.signals import sdr_db, song  # noqa: E402


def irm(mix: np.ndarray, vocals: np.ndarray, power: float) -> np.ndarray:
    """Vocal estimate of the ideal ratio mask ``|V|^p / (|V|^p + |I|^p)`` at the engine's STFT."""
    x, v = stft(mix), stft(vocals)
    i = x - v
    num = v.abs() ** power
    return istft(num / (num + i.abs() ** power + 1e-12) * x, mix.shape[-1]).numpy()


def quality_row(name: str, mix: Audio, vocals: np.ndarray) -> dict[str, Any]:
    sep = get_separator("fingerprint")
    inst = mix.samples - vocals
    row: dict[str, Any] = {"excerpt": name, "seconds": round(mix.duration_seconds, 1),
                           "rate": mix.sample_rate, "channels": mix.channels}
    full = sep.separate(mix, acapella=vocals)
    start = sep.separate(mix, acapella=vocals, parameters={"iterations": 0})
    row["fingerprint_vocals"] = sdr_db(vocals, full.stems["vocals"].samples)
    row["fingerprint_instrumental"] = sdr_db(inst, full.stems["instrumental"].samples)
    row["start_vocals"] = sdr_db(vocals, start.stems["vocals"].samples)
    for p, key in ((1.0, "irm1"), (2.0, "irm2")):
        est = irm(mix.samples, vocals, p)
        row[f"{key}_vocals"] = sdr_db(vocals, est)
        row[f"{key}_instrumental"] = sdr_db(inst, mix.samples - est)
    row["gap_to_irm1_db"] = row["fingerprint_vocals"] - row["irm1_vocals"]
    # the seeds' setup, scored where it works: the mono first 4.7 s
    seed = sep.separate(mix, acapella=vocals, parameters={"mode": "seed"})
    keep = int(SEED_SECONDS * mix.sample_rate)
    mono_v = vocals[:, :keep].mean(0)
    row["seed_mode_vocals_4.7s"] = sdr_db(mono_v, seed.stems["vocals"].samples[0, :keep])
    row["irm1_vocals_4.7s_mono"] = sdr_db(mono_v, irm(mix.samples[:, :keep].mean(0, keepdims=True),
                                                      mono_v[None], 1.0)[0])
    return row


def real_excerpts() -> list[tuple[str, Audio, np.ndarray]]:
    base = SHARED_FIXTURES / "real_stems"
    out = []
    if not base.is_dir():
        return out
    for folder in sorted(base.iterdir()):
        vocals_path = folder / "vocals.flac"
        if not vocals_path.exists():
            continue
        vocals = load_audio(vocals_path)
        stems = [load_audio(p).samples for p in sorted(folder.glob("*.flac")) if p.name not in ("mixture.flac",)]
        # the sum of the stems, so the mixture is exactly vocals + the rest (musdb's AAC mixture is not)
        n = min(s.shape[-1] for s in stems)
        mix = Audio(np.sum([s[:, :n] for s in stems], axis=0).astype(np.float32), vocals.sample_rate)
        out.append((folder.name, mix, vocals.samples[:, :n]))
    return out


def timed(mix: Audio, acapella: np.ndarray, parameters: dict[str, Any], threads: int) -> dict[str, Any]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        result = get_separator("fingerprint").separate(mix, acapella=acapella, parameters=parameters)
        wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)
    info = result.info
    return {
        "threads": threads, "wall_seconds": wall, "load_average_before": load,
        "setup_seconds": info["seconds_setup"], "profile_steps_seconds": info["seconds_profile_steps"],
        "detail_steps_seconds": info["seconds_detail_steps"], "render_seconds": info["render_seconds"],
        "iterations": info["iterations"], "detail_iterations": info["detail_iterations"],
        "sum_error_db": result.sum_error_db(mix),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer songs, 1-minute speed song")
    args = parser.parse_args()

    rows = []
    for seed in range(2 if args.quick else 4):
        v, i = song(44_100, 30.0, seed=seed)
        rows.append(quality_row(f"synthetic seed {seed}", Audio(v + i, 44_100), v))
        print(f"quality: synthetic seed {seed} done", flush=True)
    for name, mix, vocals in real_excerpts():
        rows.append(quality_row(name, mix, vocals))
        print(f"quality: {name} done", flush=True)
    columns = ["excerpt", "seconds", "rate", "fingerprint_vocals", "start_vocals", "irm1_vocals", "irm2_vocals",
               "gap_to_irm1_db", "fingerprint_instrumental", "irm1_instrumental", "seed_mode_vocals_4.7s",
               "irm1_vocals_4.7s_mono"]
    print("\nVocal / instrumental SDR (dB), the true vocal as the acapella\n")
    print(table(rows, columns))

    minutes = 1.0 if args.quick else 4.0
    v, i = song(44_100, 60.0 * minutes, seed=11)
    mix = Audio(v + i, 44_100)
    speed = [timed(mix, v, {}, threads) for threads in (2, 1)]
    for r in speed:
        r["song"] = f"{minutes:g}-min stereo 44.1 kHz"
    clip_v, clip_i = song(44_100, SEED_SECONDS, seed=12)
    clip = Audio(clip_v + clip_i, 44_100)
    seed_speed = [timed(clip, clip_v, {"mode": "seed"}, threads) for threads in (2, 1)]
    for r in seed_speed:
        r["song"] = "seed mode, 4.7-s clip"
    print("\nSpeed (wall seconds; the machine's load average before each run is shown)\n")
    print(table(speed + seed_speed, ["song", "threads", "wall_seconds", "load_average_before", "setup_seconds",
                                     "profile_steps_seconds", "detail_steps_seconds", "render_seconds",
                                     "iterations", "detail_iterations"]))
    path = write_results("fingerprint", {
        "quality": rows, "speed_full_mode": speed, "speed_seed_mode": seed_speed,
        "defaults": get_separator("fingerprint").resolve_parameters({}),
        "notes": "SDR = 10·log10(|s|²/|s−ŝ|²) over the whole excerpt; acapella = true vocal; "
                 "IRM1 = |V|/(|V|+|I|), IRM2 = |V|²/(|V|²+|I|²) at n_fft 2048 / hop 512; "
                 "real excerpts: mixture = sum of the stems.",
    })
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
