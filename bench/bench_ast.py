"""AST benchmark: speed of the query engine's window pass, and quality of the shipped weights.

Speed: ``QueryEmbedder.embed_signal`` over a 4-minute 16 kHz mono signal (1-s windows, 0.5-s
hop: 479 windows) on the CPU with 1 and 2 torch threads, median of ``--repeats`` runs after a
warm-up, plus the log-mel alone.

Quality (held-out synthesized songs, seeds disjoint from training; rendered into the cache if
missing): per-class top-1 accuracy and ROC AUC of the sigmoid, same-source vs other-source cosine
ROC AUC, and the detection task (a solo 1-s query against the mix's windows) — the same
functions that write the model card (:mod:`engine.training.ast_train`). Plus a look at real
recordings (``../shared/fixtures/real_stems``, if present): the top class of each real stem's
loudest windows and the vocal detection AUC in the real mixes.

    .venv/bin/python bench/bench_ast.py [--repeats 3] [--no-quality] [--config C.json] [--weights W --out NAME]

Prints tables and writes ``bench/results/ast.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import RESULTS, SHARED_FIXTURES, table, write_results  # noqa: E402
from engine.audio import load_audio, resample  # noqa: E402
from engine.models.ast import QueryEmbedder, load_query_embedder, log_mel  # noqa: E402


def speed(embedder: QueryEmbedder, repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    signal = (0.1 * rng.standard_normal(240 * 16000)).astype(np.float32)
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        embedder.embed_signal(signal[: 16000 * 20])  # warm-up
        times, mel_times = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            starts, _, _ = embedder.embed_signal(signal)
            times.append(time.perf_counter() - t)
            windows = torch.from_numpy(np.stack([signal[i * 8000: i * 8000 + 16000] for i in range(64)]))
            t = time.perf_counter()
            with torch.inference_mode():
                log_mel(windows, embedder.config)
            mel_times.append((time.perf_counter() - t) * len(starts) / 64)
        rows.append({"threads": threads, "windows": len(starts), "seconds": float(np.median(times)),
                     "ms_per_window": 1000 * float(np.median(times)) / len(starts),
                     "log_mel_seconds": float(np.median(mel_times)), "runs": [round(x, 3) for x in times]})
    return rows


def real_stems(embedder: QueryEmbedder) -> dict[str, Any]:
    folder = SHARED_FIXTURES / "real_stems"
    if not folder.is_dir():
        return {"skipped": f"{folder} not found"}
    from engine.training.ast_train import roc_auc

    out: dict[str, Any] = {}
    for track in sorted(p for p in folder.iterdir() if p.is_dir()):
        mono: dict[str, np.ndarray] = {}
        for f in sorted(track.glob("*.flac")):
            a = load_audio(f)
            mono[f.stem] = resample(a.mono()[None, :], a.sample_rate, 16000)[0]
        res: dict[str, Any] = {}
        for stem, x in mono.items():
            if stem == "mixture":
                continue
            _, probs, _ = embedder.embed_signal(x, 0.5)
            rms = [float(np.sqrt(np.mean(x[int(i * 8000): int(i * 8000) + 16000] ** 2))) for i in range(len(probs))]
            top = probs[int(np.argmax(rms))]
            res[stem] = {"top_class_of_loudest_window": embedder.classes[int(top.argmax())],
                         "top_probability": float(top.max()),
                         "mean_probabilities": {c: round(float(v), 3) for c, v in zip(embedder.classes, probs.mean(0), strict=True)}}
        if "vocals" in mono and "mixture" in mono:
            v, mix = mono["vocals"], mono["mixture"]
            starts, _, emb = embedder.embed_signal(mix, 0.5)
            lv = np.array([10 * np.log10(np.mean(np.pad(v, (0, 16000))[int(s * 16000): int(s * 16000) + 16000] ** 2) + 1e-12)
                           for s in starts])
            mix_lv = np.array([10 * np.log10(np.mean(np.pad(mix, (0, 16000))[int(s * 16000): int(s * 16000) + 16000] ** 2) + 1e-12)
                               for s in starts])
            best = int(np.argmax(lv))
            _, qe = embedder.embed_windows(np.pad(v, (0, 16000))[best * 8000: best * 8000 + 16000][None, :])
            present = lv > mix_lv - 12
            res["vocal_detection"] = {"windows": len(starts), "positives": int(present.sum()),
                                      "cosine_auc": roc_auc(emb @ qe[0], present)}
        out[track.name] = res
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--config", default=str(REPO / "engine" / "training" / "configs" / "ast_cpu_voices.json"),
                    help="training config whose validation songs are used (its cache, voices)")
    ap.add_argument("--weights", type=Path, help="another AST weights file (default: the shipped one)")
    ap.add_argument("--out", default="ast", help="results name (bench/results/NAME.json)")
    a = ap.parse_args()
    embedder = load_query_embedder("cpu", a.weights)
    card = embedder.card
    payload: dict[str, Any] = {"model": {"sha256": card.get("sha256"), "status": card.get("status"),
                                         "parameters": card.get("parameters"), "tokens": embedder.config.tokens},
                               "load_average": list(os.getloadavg())}
    rows = speed(embedder, a.repeats)
    payload["speed_4min_song"] = rows
    print("AST window pass, 4-minute song (16 kHz mono, 1 s windows, 0.5 s hop):")
    print(table(rows, ["threads", "windows", "seconds", "ms_per_window", "log_mel_seconds"]))
    if not a.no_quality:
        torch.set_num_threads(2)
        from engine.training.ast_data import CLASSES, WindowSampler
        from engine.training.ast_train import (
            _load_config,
            evaluate_detection,
            evaluate_windows,
            load_songs,
            sampler_config,
        )

        cfg = _load_config(a.config, {})
        payload["validation_config"] = {k: cfg[k] for k in ("cache", "val_seeds", "recorded_voice_share",
                                                          "vocal_production")}
        cfg["cache"] = str(REPO / cfg["cache"])
        songs = load_songs(cfg, "val")
        sampler = WindowSampler(songs, CLASSES, embedder.config.window_samples, sampler_config(cfg), 12345)
        device = torch.device("cpu")
        w = evaluate_windows(embedder.model, sampler, int(cfg["val_batches"]), device)
        d = evaluate_detection(embedder.model, songs, device)
        payload["validation"] = {"windows": w, "detection": d}
        quality = [{"class": c, "top1": w["accuracy"].get(c, float("nan")),
                    "top1_solo": w["accuracy_solo"].get(c, float("nan")), "class_auc": w["auc"].get(c, float("nan")),
                    "detect_auc_cos": d["per_class"].get(c, {}).get("cosine_auc", float("nan")),
                    "detect_auc_prob": d["per_class"].get(c, {}).get("class_prob_auc", float("nan")),
                    "query_top1": d["per_class"].get(c, {}).get("query_top1", float("nan"))}
                   for c in embedder.classes]
        print(f"\nHeld-out synthetic songs ({len(songs)}; {w['windows']} windows):")
        print(table(quality, ["class", "top1", "top1_solo", "class_auc", "detect_auc_cos", "detect_auc_prob", "query_top1"]))
        print(f"same-source vs other-source cosine ROC AUC {w['source_auc']:.3f}; same-class vs other-class "
              f"{w['class_auc']:.3f}; cos same source {w['cos_same_source']:.2f}, same class "
              f"{w['cos_same_class']:.2f}, other class {w['cos_other_class']:.2f}")
        payload["real_stems"] = real_stems(embedder)
        print("\nReal stems (../shared/fixtures/real_stems):")
        for track, res in payload["real_stems"].items():
            print(f"  {track}: " + ", ".join(
                f"{k}→{v['top_class_of_loudest_window']} ({v['top_probability']:.2f})" if "top_class_of_loudest_window" in v
                else f"{k}: AUC {v.get('cosine_auc', float('nan')):.3f}" for k, v in (res.items() if isinstance(res, dict) else [])))
    else:  # keep the last run's quality results (same weights: only the speed is remeasured)
        previous_path = RESULTS / "ast.json"
        if previous_path.is_file():
            previous = json.loads(previous_path.read_text())
            if previous.get("model", {}).get("sha256") == payload["model"]["sha256"]:
                for key in ("validation", "real_stems"):
                    if key in previous:
                        payload[key] = previous[key]
    path = write_results(a.out, payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
