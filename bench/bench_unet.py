"""U-Net benchmark: separation quality against an oracle and oracle-free baselines, and speed.

Quality (per stem, BSS Eval v4 images SDR — museval's convention: 1 s windows, median over
windows — via ``engine.analysis.bss_eval``, plus plain whole-signal SDR):

* the held-out validation songs of a stem bank (synthetic, never seen in training), and
* ``../shared/fixtures/real_stems`` (3 real excerpts: MUSDB18 80s rock 4 stems, iKala, MIR-1K),

for the shipped 2-stem and 4-stem U-Nets (with and without the Wiener post-filter), the ideal
ratio mask at the same STFT (oracle, needs the answer), two-stage HPSS and REPET-SIM (librosa).

Speed: a 4-minute stereo 44.1 kHz song, 4 stems (and 2), on the CPU: the engine's own time
(``SeparationResult.seconds``: resampling, STFTs, network, masks, ISTFTs) with its breakdown,
and decoding the FLAC / encoding the stems as 24-bit WAV separately. Optional ``--memory``: peak
RSS of separating 5- and 15-minute files in fresh processes (working memory must not grow with
length beyond the outputs).

    .venv/bin/python bench/bench_unet.py [--bank tmp/bank_cpu] [--memory] [--repeats 2]

Prints tables and writes ``bench/results/unet.json``.
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.runtime import configure_memory  # noqa: E402

KEEP_MEMORY = configure_memory()  # as app.py does, before torch is imported

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.audio import Audio, load_audio, resample, save_audio  # noqa: E402
from engine.separators.unet import UNetSeparator  # noqa: E402
from engine.training.baselines import hpss_separate, oracle_irm, repet_sim_separate  # noqa: E402
from engine.training.evaluate import plain_sdr_db  # noqa: E402

RESULTS = REPO / "bench" / "results" / "unet.json"
FIXTURES = REPO / ".." / "shared" / "fixtures" / "real_stems"
TWO = ("vocals", "instrumental")
FOUR = ("drums", "bass", "other", "vocals")
MACHINE = "2-core CPU, 24 GiB, no GPU (shared with other jobs: see load_average)"


def bss_sdr(references: dict[str, np.ndarray], estimates: dict[str, np.ndarray], rate: int) -> tuple[dict[str, float], str]:
    """Median v4 images SDR per stem (museval convention), or plain SDR if BSS Eval is absent."""
    names = list(references)
    try:
        from engine.analysis.bss_eval import bss_eval_images_v4
    except ImportError:
        return {n: plain_sdr_db(references[n], estimates[n]) for n in names}, "plain SDR (BSS Eval unavailable)"
    ref = np.stack([references[n] for n in names]).astype(np.float32)
    est = np.stack([estimates[n] for n in names]).astype(np.float32)
    scores, _ = bss_eval_images_v4(ref, est, window=rate, hop=rate)
    # engine.analysis is being finished beside this bench: accept either spelling of the median
    med = scores.median("sdr") if hasattr(scores, "median") else scores.median_sdr
    return {n: float(med[i]) for i, n in enumerate(names)}, "BSS Eval v4 images, median of 1 s windows"


def evaluate_track(name: str, mix: Audio, refs: dict[str, np.ndarray], unet: UNetSeparator) -> dict[str, Any]:
    """All methods on one track. ``refs`` has the 2-stem names and, when known, the 4 stems."""
    rate = mix.sample_rate
    x = mix.samples
    n_fft = 2 * int(round(1024 * rate / 22050 / 2))  # the U-Net's window at this rate
    out: dict[str, Any] = {"track": name, "seconds": mix.duration_seconds, "rate": rate, "channels": mix.channels}
    two_refs = {"vocals": refs["vocals"], "instrumental": refs["instrumental"]}
    methods: dict[str, dict[str, np.ndarray]] = {}
    t = time.perf_counter()
    r2 = unet.separate(mix, parameters={"stems": "2", "masks": False})
    methods["unet2"] = {s: a.samples for s, a in r2.stems.items()}
    out["unet2_seconds"] = time.perf_counter() - t
    methods["unet2_wiener"] = {s: a.samples for s, a in unet.separate(
        mix, parameters={"stems": "2", "wiener": True, "masks": False}).stems.items()}
    methods["oracle_irm2"] = oracle_irm(x, two_refs, n_fft)
    methods["hpss2"] = hpss_separate(x, rate, TWO)
    methods["repet_sim"] = repet_sim_separate(x, rate)
    scores: dict[str, dict[str, float]] = {}
    plain: dict[str, dict[str, float]] = {}
    metric = ""
    for m, est in methods.items():
        scores[m], metric = bss_sdr(two_refs, {s: est[s] for s in TWO}, rate)
        plain[m] = {s: plain_sdr_db(two_refs[s], est[s]) for s in TWO}
    if all(s in refs for s in FOUR):
        four_refs = {s: refs[s] for s in FOUR}
        four: dict[str, dict[str, np.ndarray]] = {
            "unet4": {s: a.samples for s, a in unet.separate(mix, parameters={"stems": "4", "masks": False}).stems.items()},
            "unet4_wiener": {s: a.samples for s, a in unet.separate(
                mix, parameters={"stems": "4", "wiener": True, "masks": False}).stems.items()},
            "oracle_irm4": oracle_irm(x, four_refs, n_fft),
            "hpss4": hpss_separate(x, rate, FOUR),
        }
        for m, est in four.items():
            scores[m], metric = bss_sdr(four_refs, est, rate)
            plain[m] = {s: plain_sdr_db(four_refs[s], est[s]) for s in FOUR}
    out["sdr"] = scores
    out["plain_sdr"] = plain
    out["metric"] = metric
    return out


def bank_tracks(bank_dir: Path, limit: int) -> list[tuple[str, Audio, dict[str, np.ndarray]]]:
    from engine.training.bank import StemBank

    bank = StemBank.load(bank_dir, splits=("val",))
    tracks = []
    for t in bank.split("val")[:limit]:
        refs = {s: t.stem(s) for s in FOUR}
        refs["instrumental"] = refs["drums"] + refs["bass"] + refs["other"]
        mix = sum(refs[s] for s in FOUR)
        tracks.append((t.name, Audio(mix.astype(np.float32), bank.sample_rate), refs))
    return tracks


def fixture_tracks() -> list[tuple[str, Audio, dict[str, np.ndarray]]]:
    tracks = []
    if not FIXTURES.is_dir():
        return tracks
    for folder in sorted(FIXTURES.iterdir()):
        mix = load_audio(folder / "mixture.flac")
        refs = {p.stem: load_audio(p).samples for p in folder.glob("*.flac") if p.stem != "mixture"}
        if "accompaniment" in refs:
            refs["instrumental"] = refs.pop("accompaniment")
        if "instrumental" not in refs:
            refs["instrumental"] = refs["drums"] + refs["bass"] + refs["other"]
        tracks.append((folder.name, mix, refs))
    return tracks


def speed(unet: UNetSeparator, song: Audio, repeats: int) -> dict[str, Any]:
    """Engine time for the 4-minute song, best of ``repeats``; decode/encode measured apart."""
    res: dict[str, Any] = {"song_seconds": song.duration_seconds, "rate": song.sample_rate, "threads": torch.get_num_threads(),
                           "keep_memory": KEEP_MEMORY, "thp_mem_alloc_enable": os.environ.get("THP_MEM_ALLOC_ENABLE")}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "song.flac"
        save_audio(path, song, "16")
        t = time.perf_counter()
        song = load_audio(path)
        res["decode_flac_seconds"] = time.perf_counter() - t
        for stems, wiener, masks in (("4", False, True), ("4", False, False), ("2", False, True), ("4", True, True)):
            best: dict[str, Any] | None = None
            for _ in range(repeats):
                c = time.process_time()
                r = unet.separate(song, parameters={"stems": stems, "wiener": wiener, "masks": masks})
                cpu = time.process_time() - c
                if best is None or r.seconds < best["engine_seconds"]:
                    best = {"engine_seconds": r.seconds, "cpu_seconds": cpu, "breakdown": r.info["timings_seconds"],
                            "load_average": os.getloadavg()}
            key = f"stems{stems}" + ("_wiener" if wiener else "") + ("" if masks else "_no_masks")
            res[key] = best
        t = time.perf_counter()
        for name, a in r.stems.items():
            save_audio(Path(tmp) / f"{name}.wav", a, "24")
        res["encode_wav24_seconds_4_stems"] = time.perf_counter() - t
    return res


_MEMORY_CHILD = """
import sys, time, numpy as np
sys.path.insert(0, {repo!r})
from engine.runtime import configure_memory
configure_memory()  # as app.py does
from engine.audio import Audio
from engine.separators.unet import UNetSeparator
def hwm_kib():  # this process's peak RSS (VmHWM is per address space: not inherited across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
minutes = float(sys.argv[1])
n = int(minutes * 60 * 44100)
rng = np.random.default_rng(0)
x = np.empty((2, n), dtype=np.float32)
for s in range(0, n, 1 << 22):
    x[:, s:s + (1 << 22)] = 0.05 * rng.standard_normal((2, min(1 << 22, n - s)))
sep = UNetSeparator()
sep.model(4, __import__("torch").device("cpu"))
base = hwm_kib()
t = time.perf_counter()
r = sep.separate(Audio(x, 44100), parameters={{"stems": "4", "masks": False}})
print(base, hwm_kib(), time.perf_counter() - t)
"""


def memory(minutes_list: list[float]) -> list[dict[str, Any]]:
    rows = []
    for minutes in minutes_list:
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD.format(repo=str(REPO)), str(minutes)],
                             capture_output=True, text=True, check=True).stdout.split()
        base_kib, peak_kib, secs = int(out[0]), int(out[1]), float(out[2])
        stems_mib = 4 * 2 * minutes * 60 * 44100 * 4 / 2**20  # the 4 float32 stereo stems (output)
        rows.append({"minutes": minutes, "rss_before_mib": base_kib / 1024, "peak_rss_mib": peak_kib / 1024,
                     "stems_mib": stems_mib, "working_mib": peak_kib / 1024 - base_kib / 1024 - stems_mib,
                     "engine_seconds": secs})
    return rows


def four_minute_song(tracks: list[tuple[str, Audio, dict[str, np.ndarray]]]) -> Audio:
    """A 4-minute stereo 44.1 kHz mix: the validation songs, up-sampled and repeated."""
    pieces = [resample(mix.samples, mix.sample_rate, 44100) for _, mix, _ in tracks if mix.channels == 2]
    x = np.concatenate(pieces, axis=1)
    n = 240 * 44100
    x = np.tile(x, (1, -(-n // x.shape[1])))[:, :n]
    return Audio(np.ascontiguousarray(x, dtype=np.float32), 44100)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bank", default=str(REPO / "tmp" / "bank_cpu"), help="stem bank with a 'val' split")
    ap.add_argument("--val-songs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--memory", action="store_true", help="also measure peak RSS for 5 and 15 minutes")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-speed", action="store_true",
                    help="keep the last run's speed results (e.g. new weights, same architecture)")
    a = ap.parse_args()
    unet = UNetSeparator()
    keep = a.skip_quality or a.skip_speed
    previous = json.loads(RESULTS.read_text()) if keep and RESULTS.is_file() else {}
    results: dict[str, Any] = {**previous, "machine": MACHINE, "platform": platform.platform(), "torch": torch.__version__,
                               "date": time.strftime("%Y-%m-%d"), "load_average_start": os.getloadavg()}
    from engine.models import load_model

    results["models"] = {n: {k: load_model(n)[1][k] for k in ("sha256", "status", "parameters")} for n in ("unet2", "unet4")}
    val = bank_tracks(Path(a.bank), a.val_songs)
    if not a.skip_quality:
        rows = [evaluate_track(n, m, r, unet) for n, m, r in val]
        real = [evaluate_track(n, m, r, unet) for n, m, r in fixture_tracks()]
        results["validation"] = rows
        results["real_stems"] = real
        for title, group in (("held-out synthetic songs", rows), ("real excerpts", real)):
            if not group:
                continue
            print(f"\n{title}: median over tracks, {group[0]['metric']} (dB)")
            methods = sorted({m for r in group for m in r["sdr"]}, key=lambda m: (m[-1] == "4" or "4_" in m, m))
            stems_all = ["vocals", "instrumental", "drums", "bass", "other"]
            print(f"{'method':>14} " + " ".join(f"{s:>12}" for s in stems_all))
            summary = {}
            for m in methods:
                vals = {}
                for s in stems_all:
                    v = [r["sdr"][m][s] for r in group if m in r["sdr"] and s in r["sdr"][m] and np.isfinite(r["sdr"][m][s])]
                    vals[s] = float(np.median(v)) if v else None
                summary[m] = vals
                print(f"{m:>14} " + " ".join(f"{vals[s]:12.2f}" if vals[s] is not None else f"{'':>12}" for s in stems_all))
            results[f"summary_{'validation' if group is rows else 'real'}"] = summary
    if a.skip_speed:
        RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
        print(f"\nspeed kept from the last run; wrote {RESULTS}")
        return 0
    song = four_minute_song(val)
    sp = speed(unet, song, a.repeats)
    results["speed"] = sp
    print(f"\nspeed, 4-minute stereo 44.1 kHz song on the CPU ({sp['threads']} threads), best of {a.repeats}:")
    for key in ("stems4", "stems4_no_masks", "stems2", "stems4_wiener"):
        s = sp[key]
        print(f"  {key:>14}: engine {s['engine_seconds']:.2f} s (cpu {s['cpu_seconds']:.2f} s; "
              f"{', '.join(f'{k} {v:.2f}' for k, v in s['breakdown'].items())}; load {s['load_average'][0]:.1f})")
    print(f"  decode FLAC {sp['decode_flac_seconds']:.2f} s, encode 4 stems WAV24 {sp['encode_wav24_seconds_4_stems']:.2f} s")
    if a.memory:
        results["memory"] = memory([5.0, 15.0])
        for r in results["memory"]:
            print(f"  {r['minutes']:.0f} min, 4 stems, no masks: peak RSS {r['peak_rss_mib']:.0f} MiB (before "
                  f"{r['rss_before_mib']:.0f} with input + model), output stems {r['stems_mib']:.0f} MiB, "
                  f"working memory {r['working_mib']:.0f} MiB, engine {r['engine_seconds']:.1f} s")
    results["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
