"""Separation with the acapella: quality per engine against naive inversion and the IRM oracle,
and speed on a 4-minute stereo song.

Development set: songs from the synthesizer (no bus, a mastered bus with EQ + limiter, a lossy
quieter acapella) and ``../shared/fixtures/real_stems`` with the true vocals as the acapella.
Every acapella goes through our aligner first (the full ``separate`` pipeline). SDR here is the
plain signal-to-distortion ratio ``10·log10(|s|² / |s − ŝ|²)`` over the whole song.
``reference static`` is the reference engine without its fine (bus-limiter) gain track.
Speed: three runs per engine, median and minimum, with the load average of the shared cores.

    python bench/bench_separate.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, SHARED_FIXTURES, table, write_results  # noqa: E402
from engine.align import align_acapella, render_aligned  # noqa: E402
from engine.audio import Audio, load_audio  # noqa: E402
from engine.separators import REGISTRY, get_separator  # noqa: E402
from engine.spectral import istft, stft  # noqa: E402


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    num = float(np.sum(ref.astype(np.float64) ** 2))
    den = float(np.sum((ref - est).astype(np.float64) ** 2)) + 1e-20
    return 10 * np.log10(num / den + 1e-20)


def lossy(audio: Audio) -> Audio:
    """An MP3 round trip (what an acapella downloaded from the web often is)."""
    buf = io.BytesIO()
    sf.write(buf, audio.samples.T, audio.sample_rate, format="MP3", subtype="MPEG_LAYER_III")
    buf.seek(0)
    data, rate = sf.read(buf, dtype="float32", always_2d=True)
    return Audio(np.ascontiguousarray(data.T[:, : audio.frames]), rate)


def irm_oracle(mix: Audio, vocals: np.ndarray) -> np.ndarray:
    """Ideal ratio mask (power) from the true stems at the engines' STFT: the vocal estimate."""
    x, v = stft(mix.samples), stft(vocals)
    i = x - v
    m = v.abs() ** 2 / (v.abs() ** 2 + i.abs() ** 2 + 1e-12)
    return istft(m * x, mix.frames).numpy()


def naive(mix: Audio, acapella: Audio, true_offset: float) -> np.ndarray:
    """Peers' method: integer shift (from a 1-second snippet cross-correlation, here the true
    offset rounded, which is the best that method can do) and one broadband least-squares gain."""
    from engine.align import AlignmentParams

    a = render_aligned(acapella, AlignmentParams(round(true_offset), 0.0, 0.0, 1), mix.sample_rate, mix.frames, mix.channels)
    g = float(np.sum(mix.samples * a) / (np.sum(a * a) + 1e-20))
    return (g * a).astype(np.float32)


def cases(quick: bool) -> list[dict]:
    from engine.synth import make_acapella, synthesize_song

    out = []
    seeds = [101, 102] if quick else [101, 102, 103, 104]
    for seed in seeds:
        for kind in ("exact", "bus", "bus+lossy"):
            song = synthesize_song(seed, 30.0, bus=kind != "exact")
            aca, truth = make_acapella(song, offset_seconds=0.4 + 0.1 * (seed % 3), gain_db=-3.0)
            if "lossy" in kind:
                aca = lossy(aca)
            out.append({"name": f"synth {seed} {kind}", "mix": song.mix,
                        "vocals": song.stems["vocals"].samples, "acapella": aca,
                        "offset": float(truth["offset_samples"])})
    for folder in ("musdb18_music_delta_80s_rock", "ikala_10161_chorus", "mir1k_amy_3_01"):
        d = SHARED_FIXTURES / "real_stems" / folder
        if not d.is_dir():
            continue
        mix = load_audio(d / "mixture.flac")
        vocals = load_audio(d / "vocals.flac")
        n = min(mix.frames, vocals.frames)
        mix = Audio(mix.samples[:, :n], mix.sample_rate)
        out.append({"name": f"real {folder}", "mix": mix, "vocals": vocals.samples[:, :n],
                    "acapella": Audio(vocals.samples[:, :n].copy(), vocals.sample_rate), "offset": 0.0})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer songs, shorter speed test")
    ap.add_argument("--speed-only", action="store_true",
                    help="rerun only the speed part (e.g. on a quiet machine); the SDR rows of the last "
                    "full run are kept in the results file")
    args = ap.parse_args()
    engines = [e for e in ("reference", "fingerprint") if e in REGISTRY]
    rows: list[dict] = []
    if args.speed_only:
        rows = json.loads((RESULTS / "separate.json").read_text())["sdr"]
    for case in ([] if args.speed_only else cases(args.quick)):
        mix, vocals = case["mix"], case["vocals"]
        inst = mix.samples - vocals
        row = {"case": case["name"]}
        v_naive = naive(mix, case["acapella"], case["offset"])
        row["naive vocals"], row["naive instr."] = sdr(vocals, v_naive), sdr(inst, mix.samples - v_naive)
        v_irm = irm_oracle(mix, vocals)
        row["IRM vocals"], row["IRM instr."] = sdr(vocals, v_irm), sdr(inst, mix.samples - v_irm)
        found = align_acapella(mix, case["acapella"])
        aligned = render_aligned(case["acapella"], found.params, mix.sample_rate, mix.frames, mix.channels)
        row["offset error (samples)"] = abs(found.offset_samples - case["offset"])
        for engine in engines:
            res = get_separator(engine).separate(mix, acapella=aligned)
            row[f"{engine} vocals"] = sdr(vocals, res.stems["vocals"].samples)
            row[f"{engine} instr."] = sdr(inst, res.stems["instrumental"].samples)
            if engine == "reference":
                fine = res.info.get("fine_gain", {})
                row["reference fine gain"] = f"{fine['time_constant_ms']:g} ms" if fine.get("used") else "off"
                row["reference static instr."] = sdr(inst, get_separator(engine).separate(
                    mix, acapella=aligned, parameters={"fine_gain": False}).stems["instrumental"].samples)
        print(f"  {row['case']}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items() if isinstance(v, float)), flush=True)
        rows.append(row)
    cols = ["case", "naive vocals", "naive instr."]
    for engine in engines:
        cols += [f"{engine} vocals", f"{engine} instr."]
    if "reference" in engines:
        cols += ["reference static instr.", "reference fine gain"]
    cols += ["IRM vocals", "IRM instr.", "offset error (samples)"]
    if not args.speed_only:
        print("\nSDR (dB, plain SDR over the whole song; higher is better)\n")
        print(table(rows, cols))

    # Speed: a 4-minute stereo 44.1 kHz song (noise-like material: speed does not depend on it).
    rate, seconds = 44_100, 60 if args.quick else 240
    rng = np.random.default_rng(0)
    v = (0.1 * rng.standard_normal((2, rate * seconds))).astype(np.float32)
    m = Audio((v + 0.1 * rng.standard_normal((2, rate * seconds))).astype(np.float32), rate)
    # Three runs each: the minimum is the machine's best case, the median what a user sees; the
    # load average says how busy the (shared) cores were meanwhile.
    speed = []
    for engine in engines:
        sep = get_separator(engine)
        times = []
        load_before = os.getloadavg()[0]
        for _ in range(3):
            t0 = time.perf_counter()
            res = sep.separate(m, acapella=v, device="cpu")
            times.append(time.perf_counter() - t0)
        speed.append({"engine": engine, "song seconds": float(seconds),
                      "engine seconds": float(np.median(times)), "engine seconds (min)": float(min(times)),
                      "runs": times, "load average (1 min, before/after)": [load_before, os.getloadavg()[0]],
                      "sum error dB": res.sum_error_db(m)})
    print(f"\nSpeed, {seconds} s stereo 44.1 kHz, CPU (3 runs)\n")
    print(table(speed, ["engine", "song seconds", "engine seconds", "engine seconds (min)", "sum error dB"]))
    print("load average (1 min) before/after: " + ", ".join(
        f"{s['engine']} {s['load average (1 min, before/after)'][0]:.2f}/{s['load average (1 min, before/after)'][1]:.2f}"
        for s in speed))
    path = write_results("separate", {"sdr": rows, "speed": speed, "quick": args.quick})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
