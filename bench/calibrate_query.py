"""Calibrate the query detector's gates on held-out synthesized songs (not the benchmark's).

The detector (:mod:`engine.query.detection`) gates each 1-s window on three absolute values: the
AST's probability of the query's class ``p``, the cosine similarity of window and query
embeddings ``c``, and the stem level ``L`` (the share of the window's power that the 4-stem
U-Net, routed by the query, puts in the query's stem(s), dB). This script measures them on
cases built like bench/bench_query.py's but from other songs, with varied section times and
query lengths:

* **present** — one stem plays only in two random sections (the rest throughout); the query is
  its loudest 1.5–3 s in the first section. Half the songs also get a case with the stem
  playing throughout.
* **absent** — that query searched in the next song's mix without the stem.
* **swapped** — an "other" query searched in its own song with the "other" stem replaced by the
  next song's (same stem, different instruments: the class and cosine gates must tell them
  apart, the stem gate cannot).

Then it searches a grid (how the AST hears the query, and the thresholds) with the engine's own
gating (:func:`engine.query.detection.detect_from_sequences`: smoothing, hysteresis, clean-up)
for the best mean segment F1 on the present cases with at most ``--max-false`` (0) of the
absent cases and ``--max-swapped`` (0.3) of the swapped cases firing, class and cosine gates
both applied, on the calibration songs (seeds ``CAL_SEEDS``), and reports the chosen setting,
and the highest-F1 one with any gates and 5 % absent firings allowed, on separate validation
songs (``VAL_SEEDS``). Neither range meets the benchmark's songs (4100–4111), the AST's training
songs (10000+) or the U-Net's (0–159, 1 000 000+).

    .venv/bin/python bench/calibrate_query.py [--songs 24] [--val-songs 12]

Features are cached in ``tmp/query_calibration/`` (delete it to recompute); results go to
``bench/results/query_calibration.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.bench_query import f1, gate, loudest_excerpt  # noqa: E402
from bench.common import table, write_results  # noqa: E402
from engine.audio import Audio  # noqa: E402
from engine.models.ast import QueryEmbedder, load_query_embedder  # noqa: E402
from engine.query.detection import (  # noqa: E402
    DetectionParams,
    analyse_for_query,
    analyse_mix,
    choose_gate_classes,
    class_sequence,
    describe_heard_query,
    detect_from_sequences,
    prepare_query,
    routed_stem,
)

STEMS = ("drums", "bass", "other", "vocals")
RATE = 44100
SONG_SECONDS = 30.0
CAL_SEEDS = range(6001, 6100)
VAL_SEEDS = range(6100, 6200)
CACHE = REPO / "tmp" / "query_calibration"
FEATURES_VERSION = "v2"  # v2: every class's probabilities per window (the class gate's related classes)
ACTIVE_DB = -40.0


def song(seed: int) -> dict[str, np.ndarray]:
    from engine.synth.song import synthesize_song

    path = CACHE / "songs" / f"s{seed}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        s = synthesize_song(seed, SONG_SECONDS, RATE)
        np.savez(path, **{k: v.samples for k, v in s.stems.items()})
    d = np.load(path)
    return {k: d[k] for k in STEMS}


def window_truth(target: np.ndarray | None, starts: np.ndarray) -> np.ndarray:
    """Per window: the target active in its centre hop (RMS within 40 dB of its loudest 0.5 s)."""
    if target is None:
        return np.zeros(starts.size, bool)
    x = target.mean(0).astype(np.float64)
    n = RATE // 2
    k = x.size // n
    ref = np.sqrt(np.mean(x[: k * n].reshape(k, n) ** 2, axis=1)).max() + 1e-30
    out = np.zeros(starts.size, bool)
    for i, s in enumerate(starts):
        a = int((s + 0.25) * RATE)
        seg = x[a : a + n]
        out[i] = seg.size > 0 and 20 * np.log10(np.sqrt(np.mean(seg**2)) / ref + 1e-30) > ACTIVE_DB
    return out


def features(emb: QueryEmbedder, mix_np: np.ndarray, query_np: np.ndarray,
             target: np.ndarray | None) -> dict[str, Any]:
    mix, query = Audio(mix_np.astype(np.float32), RATE), Audio(query_np, RATE)
    q, _ = prepare_query(query)
    starts, probs, embs = analyse_mix(emb, mix, 0.5)
    heard = analyse_for_query(emb, mix, q, DetectionParams(listen="stem"))  # the stem estimate
    level, probs_s, embs_s = heard.level, heard.probs, heard.embeddings
    assert heard.prior is not None
    row: dict[str, Any] = {"routed_stem": routed_stem(heard.prior.shares), "starts": starts, "level": level,
                           "truth": window_truth(target, starts), "duration": mix.duration_seconds,
                           "classes": list(emb.classes), "probs": probs, "probs_stem": probs_s}
    for mode in ("clip", "stem"):  # the query as given / as its own routed stems
        info = describe_heard_query(emb, q, heard, DetectionParams(query_listen=mode), [])
        row[mode] = {"c": embs @ info.embedding, "c_stem": embs_s @ info.embedding,
                     "query_p": info.class_probability, "class": info.class_name,
                     "probabilities": info.probabilities}
    return row


def cases(seeds: list[int]) -> Any:
    """Yields ``(case, kind, stem, mix, query, target)`` for the songs ``seeds`` (deterministic)."""
    rng = np.random.default_rng(seeds[0])
    songs = {s: song(s) for s in seeds}
    for i, sd in enumerate(seeds):
        st, nxt = songs[sd], seeds[(i + 1) % len(seeds)]
        for stem in STEMS:
            a1 = rng.uniform(1, 6)
            b1 = a1 + rng.uniform(4, 9)
            a2 = b1 + rng.uniform(3, 6)
            b2 = min(SONG_SECONDS - 1, a2 + rng.uniform(4, 9))
            sections = ((a1, b1), (a2, b2))
            query = loudest_excerpt(st[stem], RATE, float(rng.uniform(1.5, 3.0)), sections[0])
            target = gate(st[stem], RATE, sections)
            rest = sum(st[s] for s in STEMS if s != stem)
            yield f"{sd}/{stem}/gated", "present", stem, rest + target, query, target
            if rng.random() < 0.5:
                yield f"{sd}/{stem}/throughout", "present", stem, rest + st[stem], query, st[stem]
            without = sum(songs[nxt][s] for s in STEMS if s != stem)
            yield f"{sd}/{stem} in {nxt} without", "absent", stem, without, query, None
            if stem == "other":
                yield f"{sd}/other swapped for {nxt}'s", "swapped", stem, rest + songs[nxt]["other"], query, None


def collect(emb: QueryEmbedder, seeds: list[int], tag: str) -> list[dict[str, Any]]:
    weights = str(emb.card.get("sha256", "unshipped"))[:12]  # features depend on the AST's weights
    path = CACHE / f"{tag}_{seeds[0]}_{len(seeds)}_{weights}_{FEATURES_VERSION}.npy"
    if path.exists():
        return list(np.load(path, allow_pickle=True))
    rows = []
    for name, kind, stem, mix, query, target in cases(seeds):
        rows.append({"case": name, "kind": kind, "stem": stem, **features(emb, mix, query, target)})
        print(f"{tag} {name} {time.strftime('%X')}", flush=True)
    np.save(path, np.array(rows, dtype=object), allow_pickle=True)
    return rows


def evaluate(rows: list[dict[str, Any]], params: DetectionParams) -> dict[str, Any]:
    """Mean F1 (present), fraction of absent / swapped cases with any segment."""
    f1s: list[float] = []
    fired = {"absent": [], "swapped": []}  # type: dict[str, list[bool]]
    stem = params.listen == "stem"
    # the engine hears the query's stems only with listen="stem"; "auto" is "clip" for these
    # isolated-stem queries
    mode = params.query_listen if stem and params.query_listen != "auto" else "clip"
    for r in rows:
        q = r[mode]
        # the class gate as gate_analysis applies it (class_follows_stem, related classes)
        cls, query_p, gate, matches = choose_gate_classes(q["probabilities"], q["class"], q["query_p"],
                                                          r["routed_stem"], params)
        p = class_sequence(r["probs_stem"] if stem else r["probs"], r["classes"], gate)
        c = q["c_stem"] if stem else q["c"]
        det = detect_from_sequences(p, c, r["starts"], r["duration"], params, query_p, r["level"],
                                    matches, r["routed_stem"])
        if r["kind"] == "present":
            mids = r["starts"] + 0.5
            pred = np.zeros(mids.size, bool)
            for s in det.segments:
                pred |= (mids >= s.start) & (mids < s.end)
            f1s.append(f1(r["truth"], pred))
        else:
            fired[r["kind"]].append(bool(det.segments))
    return {"f1": float(np.mean(f1s)), "absent_fired": float(np.mean(fired["absent"])) if fired["absent"] else 0.0,
            "swapped_fired": float(np.mean(fired["swapped"])) if fired["swapped"] else 0.0}


GRID: dict[str, list[Any]] = {
    "query_listen": ["clip", "stem"],
    "stem_threshold_db": [-18.0, -16.0, -14.0, -12.0, -10.0, -8.0],
    "cosine_threshold": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
    "class_threshold": [0.2, 0.3, 0.4, 0.5, 0.6],
    "use_class_gate": [True, False],
    "use_cosine_gate": [True, False],
    "query_class_confidence": [0.2, 0.5, 0.7],
    "class_must_match_stem": [True, False],
    "class_follows_stem": [False, True],
}


#: Second stage, with the gates the grid picked: how far the gates are lowered to extend a run.
#: Hysteresis only extends runs that hold a window passing the full gates, so it cannot make
#: an absent sound appear; it trades how much of a sound's quieter or less typical stretches is
#: kept against bleeding into its neighbours.
HYSTERESIS_GRID: dict[str, list[Any]] = {
    "hysteresis": [0.1, 0.2, 0.3, 0.4],
    "stem_hysteresis_db": [3.0, 6.0],
}


def search_hysteresis(rows: list[dict[str, Any]], gates: DetectionParams, max_false: float,
                      max_swapped: float) -> list[dict[str, Any]]:
    """:data:`HYSTERESIS_GRID` with ``gates``: best first (as :func:`search`)."""
    out = []
    keys = list(HYSTERESIS_GRID)
    for values in itertools.product(*(HYSTERESIS_GRID[k] for k in keys)):
        setting = dict(zip(keys, values, strict=True))
        out.append({**setting, **evaluate(rows, dataclasses.replace(gates, **setting))})
    ok = [r for r in out if r["absent_fired"] <= max_false + 1e-9 and r["swapped_fired"] <= max_swapped + 1e-9]
    default = DetectionParams().to_json()
    return sorted(ok or out, key=lambda r: (-round(r["f1"], 3), r["swapped_fired"], r["absent_fired"],
                                            sum(r[k] != default[k] for k in keys)))


def search(rows: list[dict[str, Any]], max_false: float, max_swapped: float = 1.0,
           both_gates: bool = False) -> list[dict[str, Any]]:
    """Every grid setting, best first: the highest F1 among those whose absent cases fire at
    most ``max_false`` of the time and swapped cases at most ``max_swapped`` (with
    ``both_gates``: only settings that apply the class and the cosine gate, as the issue asks);
    fewer swapped firings, then fewer absent ones, then the engine's defaults break ties. When none qualifies, the fewest absent firings first."""
    out = []
    keys = list(GRID)
    for values in itertools.product(*(GRID[k] for k in keys)):
        setting = dict(zip(keys, values, strict=True))
        if not setting["use_class_gate"] and setting["class_threshold"] != GRID["class_threshold"][0]:
            continue  # the class threshold is unused then
        if setting["class_follows_stem"] and not (setting["use_class_gate"] and setting["class_must_match_stem"]):
            continue  # the class only follows the routing when the class gate checks it against the routing
        if both_gates and not (setting["use_class_gate"] and setting["use_cosine_gate"]):
            continue
        res = evaluate(rows, DetectionParams(**setting))
        out.append({**setting, **res})
    ok = [r for r in out if r["absent_fired"] <= max_false + 1e-9 and r["swapped_fired"] <= max_swapped + 1e-9]
    if ok:
        default = DetectionParams().to_json()
        return sorted(ok, key=lambda r: (-round(r["f1"], 3), r["swapped_fired"], r["absent_fired"],
                                         sum(r[k] != default[k] for k in GRID)))  # ties: nearest the default
    return sorted(out, key=lambda r: (r["absent_fired"], -r["f1"]))


def stem_gate_alone(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per routed stem: the stem gate alone (no class or similarity gate, as
    ``DetectionParams.stem_alone_for`` allows): F1 on present cases, share of absent cases firing."""
    params = DetectionParams(use_class_gate=False, cosine_threshold=-1.0, hysteresis=0.0)
    out = []
    for stem in STEMS:
        mine = [r for r in rows if r["routed_stem"] == stem and r["kind"] in ("present", "absent")]
        res = evaluate(mine, params)
        out.append({"routed_stem": stem, "present": sum(r["kind"] == "present" for r in mine),
                    "absent": sum(r["kind"] == "absent" for r in mine), **res})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--songs", type=int, default=24)
    ap.add_argument("--val-songs", type=int, default=12)
    ap.add_argument("--max-false", type=float, default=0.0, help="allowed fraction of absent cases that fire")
    ap.add_argument("--max-swapped", type=float, default=0.3,
                    help="allowed fraction of swapped cases (same stem, other instruments) that fire")
    args = ap.parse_args()
    torch.set_num_threads(1)
    emb = load_query_embedder("cpu")
    cal = collect(emb, list(CAL_SEEDS)[: args.songs], "cal")
    val = collect(emb, list(VAL_SEEDS)[: args.val_songs], "val")
    ranked = search(cal, args.max_false, args.max_swapped, both_gates=True)
    best = ranked[0]
    chosen = DetectionParams(**{k: best[k] for k in GRID})
    hyst = search_hysteresis(cal, chosen, args.max_false, args.max_swapped)
    chosen = dataclasses.replace(chosen, **{k: hyst[0][k] for k in HYSTERESIS_GRID})
    loose = search(cal, 0.05)[0]  # any gates, 5 % absent firings allowed, swapped not counted
    highest = DetectionParams(**{k: loose[k] for k in GRID})
    default = DetectionParams()
    rows = [
        {"setting": "chosen (calibration songs)", **evaluate(cal, chosen)},
        {"setting": "chosen (validation songs)", **evaluate(val, chosen)},
        {"setting": "highest F1, ≤ 5 % absent firings, any gates (calibration)", **evaluate(cal, highest)},
        {"setting": "highest F1, ≤ 5 % absent firings, any gates (validation)", **evaluate(val, highest)},
        {"setting": "engine default (validation songs)", **evaluate(val, default)},
        {"setting": "engine default, hysteresis 0.1 and stem hysteresis 3 dB (the last defaults; validation)",
         **evaluate(val, dataclasses.replace(default, hysteresis=0.1, stem_hysteresis_db=3.0))},
        {"setting": "engine default, the class gate on the query's top class only (validation)",
         **evaluate(val, dataclasses.replace(default, related_class_probability=1.0))},
        {"setting": "engine default, class gate even against the U-Net's routing (validation)",
         **evaluate(val, dataclasses.replace(default, class_must_match_stem=False))},
        {"setting": "engine default, the query heard as given (validation)",
         **evaluate(val, dataclasses.replace(default, query_listen="clip"))},
        {"setting": "engine default, no stem gate, AST on the mix (validation)",
         **evaluate(val, dataclasses.replace(default, use_stem_gate=False, listen="mix"))},
        {"setting": "seed 002's gates made absolute (cosine 0.45, no stem gate; validation)",
         **evaluate(val, DetectionParams(use_stem_gate=False, listen="mix", cosine_threshold=0.45))},
    ]
    print(table([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in ranked[:10]],
                list(ranked[0].keys())))
    print()
    print("hysteresis, with the gates above:")
    print(table([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in hyst],
                list(hyst[0].keys())))
    print()
    print(table([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
                ["setting", "f1", "absent_fired", "swapped_fired"]))
    payload = {
        "description": __doc__.split("\n\n")[0] if __doc__ else "",
        "calibration_seeds": [int(s) for s in list(CAL_SEEDS)[: args.songs]],
        "validation_seeds": [int(s) for s in list(VAL_SEEDS)[: args.val_songs]],
        "cases": {"calibration": len(cal), "validation": len(val)},
        "grid": GRID, "max_false": args.max_false, "max_swapped": args.max_swapped,
        "chosen": {**{k: best[k] for k in GRID}, **{k: hyst[0][k] for k in HYSTERESIS_GRID}},
        "hysteresis_grid": HYSTERESIS_GRID, "hysteresis_ranked": hyst,
        "highest_f1_5pct_absent": {k: loose[k] for k in GRID},
        "top": ranked[:10], "results": rows, "engine_default": default.to_json(),
    }
    alone = stem_gate_alone(cal + val)
    print()
    print("the stem gate alone, calibration and validation songs together:")
    print(table([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in alone],
                ["routed_stem", "present", "absent", "f1", "absent_fired"]))
    payload["stem_gate_alone"] = alone
    print("wrote", write_results("query_calibration", payload))


if __name__ == "__main__":
    main()
