"""Query engine benchmark: detection F1, target SI-SDR, absent-target false alarms, speed.

Cases (all deterministic):

* **present** — a synthesized song (``engine.synth``, seeds ``SEEDS``, 30 s, 44.1 kHz stereo)
  where one stem (drums, bass, other, vocals) plays only in known sections (on 4–12 s and
  18–25 s, 20 ms fades; the other stems play throughout); the query is a 2-s excerpt of that
  stem (its loudest 2 s inside the first section). Plus the real MUSDB18 excerpt in
  ``../shared/fixtures/real_stems`` (7 s, stems as recorded, query: 2 s of each stem).
* **absent** — the query of song ``i``'s stem X searched in song ``i+1``'s mix *without* stem X.
* **mix region** — each synthetic present case again, the query now 2 s of the *mix* where the
  stem is most exposed in its first section (:func:`exposed_region`: what a user selects on the
  mix lane); rows ``ours``, ``ours_query_clip`` / ``ours_query_stem`` and the true segments.
* **real absent** — the vocals of each real recording in ``../shared/fixtures/real_stems``
  (MUSDB18 excerpt, iKala and MIR-1K clips; query: its loudest 2 s, or 3/4 of a shorter clip)
  searched in each one's instrumental part (accompaniment, or drums + bass + other).

Truth: a stem is active in a 0.5-s frame when its RMS there is within 40 dB of its loudest
frame's. Predicted: the frame's centre lies in a segment. Segment F1 over all frames of a case.
Target SI-SDR: the target stem against the engine's target (whole song, channels concatenated).

Rows: ``ours`` (the engine: absolute class, cosine and stem gates with hysteresis; U-Net prior
routed by the query and the query's factorisation), ``ours_without_stem_gate`` (the previous
detector: the AST on the mix, class 0.6 and cosine 0.5 gates, no stem gate; our mask),
``seed_gating`` (seed 002's gating re-implemented: class probability min-max
normalised, 92nd percentile, cosine never applied; our mask), ``oracle_segments`` (true activity
as segments, our mask: the mask's ceiling), ``oracle_seed_mask_values`` (true segments, the
seed's query-profile weight 0.25 and mask floor 0.08 instead of ours), ``ours_query_only`` (our
detection, ``prior=none``: the mask from the query's own spectra), ``ours_vocal_stem_alone``
(ours with ``stem_alone_for=("vocals",)``: an unsure query the U-Net hears as vocals is found by
the vocal stem's level alone), ``ours_query_clip`` / ``ours_query_stem`` (ours with
``query_listen`` "clip" / "stem": the AST hears the query as given, or as its own routed U-Net
stems like the mix; one of the two is the default), ``ours_class_stays`` /
``ours_class_follows_stem`` (ours with ``class_follows_stem`` off / on: a query class outside the
routed stem is replaced by its best class inside it), ``ours_top_class_only`` (the class gate on
the query's top class alone, not also its related classes: ``related_class_probability`` 1).
Speed: the whole engine (detection + separation) on a 4-minute stereo 44.1 kHz song (the bench
songs concatenated) with 2 torch threads.

    .venv/bin/python bench/bench_query.py [--songs 6] [--no-speed]

Prints tables and writes ``bench/results/query.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.runtime import configure_memory  # noqa: E402

KEEP_MEMORY = configure_memory()  # as app.py does, before torch is imported

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import RESULTS, SHARED_FIXTURES, table, write_results  # noqa: E402
from engine.audio import Audio, load_audio  # noqa: E402
from engine.models.ast import load_query_embedder  # noqa: E402
from engine.query.detection import (  # noqa: E402
    DetectionParams,
    Segment,
    analyse_for_query,
    analyse_mix,
    clean_segments,
    describe_heard_query,
    detect_from_sequences,
    gate_analysis,
    prepare_query,
    resolve_query_listen,
    seed_gating,
)
from engine.query.masking import MaskParams, separate_segments  # noqa: E402

STEMS = ("drums", "bass", "other", "vocals")
SEEDS = tuple(range(4100, 4112))
RATE = 44100
SONG_SECONDS = 30.0
SECTIONS = ((4.0, 12.0), (18.0, 25.0))
FRAME = 0.5
ACTIVE_DB = -40.0


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    r, e = ref.reshape(-1).astype(np.float64), est.reshape(-1).astype(np.float64)
    if not np.any(e):
        return float("-inf")
    a = (e @ r) / max(r @ r, 1e-30)
    t = a * r
    return float(10 * np.log10(max(t @ t, 1e-30) / max((e - t) @ (e - t), 1e-30)))


def activity(stem: np.ndarray, rate: int) -> np.ndarray:
    """``(frames,)`` bool: 0.5-s frames whose RMS is within 40 dB of the loudest frame's."""
    x = stem.mean(axis=0).astype(np.float64)
    n = int(FRAME * rate)
    k = x.size // n
    rms = np.sqrt(np.mean(x[: k * n].reshape(k, n) ** 2, axis=1) + 1e-30)
    out: np.ndarray = 20 * np.log10(rms / rms.max()) > ACTIVE_DB
    return out


def predicted(segments: list[Segment], frames: int) -> np.ndarray:
    centres = (np.arange(frames) + 0.5) * FRAME
    out = np.zeros(frames, bool)
    for s in segments:
        out |= (centres >= s.start) & (centres < s.end)
    return out


def f1(truth: np.ndarray, pred: np.ndarray) -> float:
    tp = float(np.sum(truth & pred))
    fp = float(np.sum(~truth & pred))
    fn = float(np.sum(truth & ~pred))
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def gate(stem: np.ndarray, rate: int,
         sections: tuple[tuple[float, float], ...] = SECTIONS) -> np.ndarray:
    """The stem on in ``sections`` only (20 ms raised-cosine fades)."""
    t = np.arange(stem.shape[-1]) / rate
    g = np.zeros_like(t)
    fade = 0.02
    for a, b in sections:
        rise = np.clip((t - a) / fade, 0, 1)
        fall = np.clip((b - t) / fade, 0, 1)
        g = np.maximum(g, np.minimum(0.5 - 0.5 * np.cos(np.pi * rise), 0.5 - 0.5 * np.cos(np.pi * fall)))
    return (stem * g[None]).astype(np.float32)


def exposed_region(stem: np.ndarray, mix: np.ndarray, rate: int, seconds: float = 2.0,
                   within: tuple[float, float] | None = None) -> np.ndarray:
    """The ``seconds`` of the **mix** where ``stem`` is most exposed (its largest share of the
    mix's energy, among regions where it is within 10 dB of its loudest): where a user would
    select it on the mix lane."""
    n = int(seconds * rate)
    lo, hi = (0, stem.shape[-1]) if within is None else (int(within[0] * rate), int(within[1] * rate))
    starts = np.arange(lo, hi - n + 1, rate // 10)
    cs = np.concatenate([[0.0], np.cumsum(np.square(stem.astype(np.float64)).sum(axis=0))])
    cm = np.concatenate([[0.0], np.cumsum(np.square(mix.astype(np.float64)).sum(axis=0))])
    e_stem, e_mix = cs[starts + n] - cs[starts], cm[starts + n] - cm[starts]
    share = np.where(e_stem >= 0.1 * e_stem.max(), e_stem / np.maximum(e_mix, 1e-20), -1.0)
    b = int(starts[np.argmax(share)])
    return np.ascontiguousarray(mix[:, b : b + n])


def loudest_excerpt(stem: np.ndarray, rate: int, seconds: float = 2.0, within: tuple[float, float] | None = None) -> np.ndarray:
    e = np.square(stem.astype(np.float64)).sum(axis=0)
    n = int(seconds * rate)
    lo, hi = (0, stem.shape[-1]) if within is None else (int(within[0] * rate), int(within[1] * rate))
    cs = np.concatenate([[0.0], np.cumsum(e)])
    starts = np.arange(lo, hi - n + 1, rate // 4)
    b = int(starts[np.argmax(cs[starts + n] - cs[starts])])
    return np.ascontiguousarray(stem[:, b : b + n])


def synth_songs(count: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    from engine.synth.song import synthesize_song

    out = []
    cache = REPO / "tmp" / "bench_query_songs"
    cache.mkdir(parents=True, exist_ok=True)
    for seed in SEEDS[:count]:
        path = cache / f"song{seed}.npz"
        if not path.exists():
            song = synthesize_song(seed, SONG_SECONDS, RATE)
            np.savez(path, **{k: v.samples for k, v in song.stems.items()})
        d = np.load(path)
        out.append((f"synth{seed}", {k: d[k] for k in STEMS}))
    return out


class Runner:
    def __init__(self) -> None:
        self.embedder = load_query_embedder("cpu")
        self.params = DetectionParams()
        self.mask = MaskParams()

    def sequences(self, mix: Audio, query: Audio, from_mix: bool = False) -> dict[str, Any]:
        q, _ = prepare_query(query)
        params = resolve_query_listen(self.params, from_mix)  # as detect_segments does
        a = analyse_for_query(self.embedder, mix, q, params)
        info = describe_heard_query(self.embedder, q, a, params, [])
        out = {"info": info, "analysis": a, "starts": a.starts, "prior": a.prior, "params": params}
        for mode in ("clip", "stem"):  # the query heard as given / as its routed stems
            p_mode = dataclasses.replace(self.params, query_listen=mode)
            out[f"info_query_{mode}"] = describe_heard_query(self.embedder, q, a, p_mode, [])
        if self.params.listen == "stem":  # the seed and the no-stem-gate rows listen to the mix
            _, probs_m, embs_m = analyse_mix(self.embedder, mix, self.params.hop_seconds)
            out["p_mix"], out["c_mix"] = probs_m[:, info.class_index], embs_m @ info.embedding
        else:
            out["p_mix"], out["c_mix"] = a.probs[:, info.class_index], a.embeddings @ info.embedding
        return out

    def detections(self, mix: Audio, query: Audio, from_mix: bool = False) -> dict[str, Any]:
        s = self.sequences(mix, query, from_mix)
        params = s["params"]
        det = gate_analysis(s["info"], s["analysis"], mix.duration_seconds, params)  # as detect_segments
        alone = gate_analysis(s["info"], s["analysis"], mix.duration_seconds,
                              dataclasses.replace(params, stem_alone_for=("vocals",)))
        # the detector before the U-Net gate: the AST on the mix, class 0.6 and cosine 0.5 gates
        before = DetectionParams(use_stem_gate=False, listen="mix", class_threshold=0.6, cosine_threshold=0.5)
        no_stem = detect_from_sequences(s["p_mix"], s["c_mix"], s["starts"], mix.duration_seconds, before,
                                        s["info"].class_probability)
        by_query = {}
        for key, changes in VARIANTS.items():  # ours with one option set either way
            p = dataclasses.replace(params, **changes)
            by_query[key] = gate_analysis(s[f"info_query_{p.query_listen}"], s["analysis"], mix.duration_seconds,
                                          p).segments
        return {"ours": det.segments, "ours_without_stem_gate": no_stem.segments,
                "ours_vocal_stem_alone": alone.segments, **by_query,
                "seed_gating": seed_gating(s["p_mix"], s["c_mix"], s["starts"], mix.duration_seconds),
                "prior": s["prior"],
                "meta": {"class": s["info"].class_name, "class_p": s["info"].class_probability,
                         "class_gate_used": det.class_gate_used}}


SEED_MASK = MaskParams(gamma_profile=0.25, mask_floor=0.08)  # the seed's values of the two changed defaults


def present_case(run: Runner, name: str, mix: Audio, query: Audio, target: np.ndarray,
                 keys: tuple[str, ...] | None = None, from_mix: bool = False) -> dict[str, Any]:
    """One present case: every row's F1 and SI-SDR (``keys``: only these rows; ``from_mix``:
    the query is a region of the mix)."""
    truth = activity(target, mix.sample_rate)
    frames = truth.size
    t = time.perf_counter()
    d = run.detections(mix, query, from_mix)
    t_detect = time.perf_counter() - t
    oracle = clean_segments([Segment(i * FRAME, (i + 1) * FRAME) for i in np.flatnonzero(truth)],
                            mix.duration_seconds, 0.0, 0.01, 0.0)
    prior = d["prior"]
    row: dict[str, Any] = {"case": name, **d["meta"], "true_active_fraction": round(float(truth.mean()), 3),
                           "detect_seconds": round(t_detect, 2),
                           "stem_weights": {k: round(v, 3) for k, v in prior.weights.items()}}
    variants: dict[str, tuple[list[Segment], MaskParams, bool]] = {
        "ours": (d["ours"], run.mask, True),
        "ours_without_stem_gate": (d["ours_without_stem_gate"], run.mask, True),
        "seed_gating": (d["seed_gating"], run.mask, True),
        "oracle_segments": (oracle, run.mask, True),
        "oracle_seed_mask_values": (oracle, SEED_MASK, True),
        "ours_query_only": (d["ours"], MaskParams(prior="none"), False),
        "ours_vocal_stem_alone": (d["ours_vocal_stem_alone"], run.mask, True),
        **{k: (d[k], run.mask, True) for k in QUERY_KEYS if k in d},
    }
    for key, (segs, mp, use_prior) in variants.items():
        if keys is not None and key not in keys:
            continue
        row[f"{key}_f1"] = round(f1(truth, predicted(segs, frames)), 4)
        row[f"{key}_segments"] = len(segs)
        if segs:
            out = separate_segments(mix, query, segs, mp, return_masks=False, prior=prior if use_prior else None)
            row[f"{key}_si_sdr"] = round(si_sdr(target, out.target.samples), 3)
            assert float(np.max(np.abs(out.target.samples + out.residual.samples - mix.samples))) < 1e-5
        else:
            row[f"{key}_si_sdr"] = float("-inf")
    return row


#: Rows that are ours with one detection option set each way (one of the two is the default).
VARIANTS: dict[str, dict[str, Any]] = {
    "ours_query_clip": {"query_listen": "clip"}, "ours_query_stem": {"query_listen": "stem"},
    "ours_class_stays": {"class_follows_stem": False}, "ours_class_follows_stem": {"class_follows_stem": True},
    "ours_top_class_only": {"related_class_probability": 1.0},
}
QUERY_KEYS = tuple(VARIANTS)
ABSENT_KEYS = ("ours", "ours_without_stem_gate", "seed_gating", "ours_vocal_stem_alone", *QUERY_KEYS)


def absent_case(run: Runner, name: str, mix: Audio, query: Audio) -> dict[str, Any]:
    d = run.detections(mix, query)
    row: dict[str, Any] = {"case": name, **d["meta"]}
    for k in ABSENT_KEYS:
        row[f"{k}_segments"] = len(d[k])
        row[f"{k}_seconds_flagged"] = round(sum(s.duration for s in d[k]), 2)
    return row


def real_absent_cases() -> list[tuple[str, Audio, Audio]]:
    """``(name, instrumental mix, vocal query)``: every real recording's vocals in every one's
    instrumental part."""
    root = SHARED_FIXTURES / "real_stems"
    if not root.is_dir():
        return []
    songs: dict[str, tuple[Audio, Audio]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        st = {p.stem: load_audio(p) for p in folder.glob("*.flac")}
        if "vocals" not in st:
            continue
        inst = (st["accompaniment"] if "accompaniment" in st
                else Audio(sum(st[k].samples for k in ("drums", "bass", "other")), st["vocals"].sample_rate))
        songs[folder.name] = (st["vocals"], inst)
    out = []
    for qn, (voc, _) in songs.items():
        seconds = min(2.0, 0.75 * voc.duration_seconds)
        query = Audio(loudest_excerpt(voc.samples, voc.sample_rate, seconds), voc.sample_rate)
        for mn, (_, inst) in songs.items():
            out.append((f"{qn} vocals in {mn}'s instrumental", inst, query))
    return out


def real_cases() -> list[tuple[str, dict[str, np.ndarray], int]]:
    folder = SHARED_FIXTURES / "real_stems" / "musdb18_music_delta_80s_rock"
    if not folder.is_dir():
        return []
    stems = {s: load_audio(folder / f"{s}.flac") for s in STEMS}
    return [("musdb_80s_rock", {k: v.samples for k, v in stems.items()}, stems["drums"].sample_rate)]


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in rows if key in r]
    vals = [max(v, -30.0) if isinstance(v, float) else v for v in vals]  # −inf (nothing found) counts as −30 dB
    return round(float(np.mean(vals)), 3) if vals else float("nan")


def _median(rows: list[dict[str, Any]], key: str) -> float:
    vals = [max(r[key], -30.0) for r in rows if key in r]
    return round(float(np.median(vals)), 3) if vals else float("nan")


def speed_once(songs: list[tuple[str, dict[str, np.ndarray]]]) -> dict[str, Any]:
    """One query run (detection and separation) on a 4-minute stereo song, in this process."""
    from engine.separators.query import QuerySeparator

    torch.set_num_threads(2)
    parts = [sum(st[s] for s in STEMS) for _, st in songs]
    mix = np.concatenate(parts * (int(np.ceil(240.0 / (SONG_SECONDS * len(parts))))), axis=1)[:, : int(240 * RATE)]
    query = Audio(loudest_excerpt(songs[0][1]["vocals"], RATE), RATE)
    sep = QuerySeparator()
    t = time.perf_counter()
    cpu0 = time.process_time()
    res = sep.separate(Audio(mix.astype(np.float32), RATE), query=query, device="cpu")
    wall = time.perf_counter() - t
    det = res.info["detection"]
    return {"engine_seconds": round(wall, 2), "cpu_seconds": round(time.process_time() - cpu0, 2),
            "segments": len(det.segments), "detect_seconds": {k: round(v, 2) for k, v in det.seconds.items()},
            "separation_timings": res.info.get("separation", {}).get("timings_seconds"),
            "load_average": list(os.getloadavg())}


def speed(songs: int, repeats: int) -> dict[str, Any]:
    """``repeats`` cold runs, each in a fresh process as a user's first query after start-up
    (models loaded, primitives built, memory faulted in within the timed run); the median."""
    import subprocess
    import tempfile

    runs: list[dict[str, Any]] = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "speed.json"
            subprocess.run([sys.executable, __file__, "--songs", str(songs), "--speed-once", str(out)],
                           check=True, env=os.environ.copy())
            runs.append(json.loads(out.read_text()))
        print("speed run:", runs[-1], flush=True)
    times = [r["engine_seconds"] for r in runs]
    median = runs[int(np.argsort(times)[len(times) // 2])]
    return {"song_seconds": 240.0, "rate": RATE, "channels": 2, "torch_threads": 2,
            "engine_seconds": round(float(np.median(times)), 2), "engine_seconds_runs": times,
            **{k: v for k, v in median.items() if k != "engine_seconds"},
            "thp_mem_alloc_enable": os.environ.get("THP_MEM_ALLOC_ENABLE"), "keep_memory": KEEP_MEMORY}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--songs", type=int, default=6)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--speed-only", action="store_true",
                    help="rerun only the speed part; the quality results of the last full run are kept")
    ap.add_argument("--repeats", type=int, default=3, help="cold speed runs (fresh processes); the median is kept")
    ap.add_argument("--speed-once", type=Path, help=argparse.SUPPRESS)  # one run, JSON to this path
    args = ap.parse_args()
    torch.set_num_threads(2)
    songs = synth_songs(args.songs)
    if args.speed_once:
        args.speed_once.write_text(json.dumps(speed_once(songs)))
        return
    if args.speed_only:
        previous = json.loads((RESULTS / "query.json").read_text())
        previous.pop("machine", None)
        previous["speed"] = speed(args.songs, args.repeats)
        print("speed:", previous["speed"])
        print("wrote", write_results("query", previous))
        return
    run = Runner()
    present: list[dict[str, Any]] = []
    absent: list[dict[str, Any]] = []
    regions: list[dict[str, Any]] = []  # the query: a region of the mix (the GUI's usual case)
    for i, (name, stems) in enumerate(songs):
        for stem in STEMS:
            target = gate(stems[stem], RATE)
            mix = Audio(sum(stems[s] for s in STEMS if s != stem) + target, RATE)
            query = Audio(loudest_excerpt(stems[stem], RATE, within=SECTIONS[0]), RATE)
            present.append(present_case(run, f"{name}/{stem}", mix, query, target))
            print(present[-1], flush=True)
            region = Audio(exposed_region(target, mix.samples, RATE, within=SECTIONS[0]), RATE)
            regions.append(present_case(run, f"{name}/{stem} (mix region)", mix, region, target,
                                        keys=("ours", *QUERY_KEYS, "oracle_segments"), from_mix=True))
            print(regions[-1], flush=True)
            other_name, other = songs[(i + 1) % len(songs)]
            without = Audio(sum(other[s] for s in STEMS if s != stem), RATE)
            absent.append(absent_case(run, f"{name}/{stem} in {other_name} without {stem}", without, query))
            print(absent[-1], flush=True)
    for name, stems, rate in real_cases():
        mix = Audio(sum(stems[s] for s in STEMS), rate)
        for stem in STEMS:
            query = Audio(loudest_excerpt(stems[stem], rate), rate)
            present.append(present_case(run, f"{name}/{stem}", mix, query, stems[stem]))
            print(present[-1], flush=True)
    real_absent: list[dict[str, Any]] = []
    for name, mix, query in real_absent_cases():
        real_absent.append(absent_case(run, name, mix, query))
        print(real_absent[-1], flush=True)
    keys = ["ours", "ours_without_stem_gate", "seed_gating", "oracle_segments", "oracle_seed_mask_values",
            "ours_query_only", "ours_vocal_stem_alone", *QUERY_KEYS]
    summary = {k: {"f1": _mean(present, f"{k}_f1"), "si_sdr_db": _mean(present, f"{k}_si_sdr"),
                   "si_sdr_median_db": _median(present, f"{k}_si_sdr")} for k in keys}
    region_summary = {k: {"f1": _mean(regions, f"{k}_f1"), "si_sdr_db": _mean(regions, f"{k}_si_sdr"),
                          "si_sdr_median_db": _median(regions, f"{k}_si_sdr")}
                      for k in ("ours", *QUERY_KEYS, "oracle_segments")}
    per_stem = {s: {k: {"f1": _mean([r for r in present if r["case"].endswith("/" + s)], f"{k}_f1"),
                        "si_sdr_db": _mean([r for r in present if r["case"].endswith("/" + s)], f"{k}_si_sdr")}
                    for k in ("ours", "seed_gating", "oracle_segments")} for s in STEMS}
    false_alarm: dict[str, Any] = {}
    for k in ABSENT_KEYS:
        false_alarm[k] = round(float(np.mean([r[f"{k}_segments"] > 0 for r in absent])), 3) if absent else None
        false_alarm[f"{k}_seconds_flagged_mean"] = _mean(absent, f"{k}_seconds_flagged")
        false_alarm[f"{k}_real"] = (round(float(np.mean([r[f"{k}_segments"] > 0 for r in real_absent])), 3)
                                    if real_absent else None)
    print()
    print(table([{"method": k, **v} for k, v in summary.items()], ["method", "f1", "si_sdr_db", "si_sdr_median_db"]))
    print()
    print(table([{"stem": s, **{f"{k}_{m}": v[k][m] for k in v for m in ("f1", "si_sdr_db")}} for s, v in per_stem.items()],
                ["stem", "ours_f1", "ours_si_sdr_db", "seed_gating_f1", "seed_gating_si_sdr_db",
                 "oracle_segments_si_sdr_db"]))
    print()
    print("queries that are a 2-s region of the mix:")
    print(table([{"method": k, **v} for k, v in region_summary.items()], ["method", "f1", "si_sdr_db", "si_sdr_median_db"]))
    print()
    print("absent-target false-alarm rate (cases with any segment):", false_alarm)
    payload: dict[str, Any] = {
        "description": __doc__.split("\n\n")[0] if __doc__ else "",
        "cases": {"present": len(present), "absent": len(absent), "mix_region": len(regions), "songs": [n for n, _ in songs],
                  "real": [n for n, _, _ in real_cases()], "real_absent": len(real_absent)},
        "detection_parameters": run.params.to_json(), "mask_parameters": run.mask.to_json(),
        "ast_card_status": run.embedder.card.get("status", ""),
        "summary": summary, "per_stem": per_stem, "false_alarm": false_alarm,
        "mix_region_summary": region_summary,
        "present": present, "absent": absent, "real_absent": real_absent, "mix_region": regions,
    }
    if not args.no_speed:
        payload["speed"] = speed(args.songs, args.repeats)
        print("speed:", payload["speed"])
    path = write_results("query", payload)
    print("wrote", path)


if __name__ == "__main__":
    main()
