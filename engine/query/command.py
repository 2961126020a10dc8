"""The query engine's part of ``python app.py separate``: event.json, figures, metrics, and the
"not found" outcome (exit 0, event.json with no segments, no stems)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio import Audio, load_audio, resample
from engine.errors import InputError
from engine.query.detection import Detection
from engine.query.event import build_event, write_event


def parse_region(text: str | None) -> tuple[float, float] | None:
    """``"12.5:14"`` → ``(12.5, 14.0)`` seconds."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, end = float(parts[0]), float(parts[1])
    except ValueError as exc:
        raise InputError(f"--query-region '{text}' must look like START:END in seconds (e.g. 12.5:14.5)") from exc
    if not end > start:
        raise InputError(f"--query-region '{text}': END must be after START")
    return start, end


def load_references(mix: Audio, references_dir: str | None, gt_path: str | None,
                    stems: tuple[str, ...]) -> dict[str, Audio]:
    """Reference stems for metrics: ``DIR/<stem>.<ext>`` for the engine's stems and/or ``--gt``
    (the target). Resampled to the mix's rate; channel means when channel counts differ."""
    refs: dict[str, Path] = {}
    if references_dir is not None:
        from engine.analysis.command import stem_files

        d = Path(references_dir)
        if not d.is_dir():
            raise InputError("reference folder not found", d)
        found = stem_files(d)
        refs.update({s: found[s] for s in stems if s in found})
        if not refs:
            raise InputError(f"no reference stems named {', '.join(stems)} in the folder", d)
    if gt_path is not None:
        refs[stems[0]] = Path(gt_path)
    out: dict[str, Audio] = {}
    for name, path in refs.items():
        a = load_audio(path)
        x = a.samples if a.sample_rate == mix.sample_rate else resample(a.samples, a.sample_rate, mix.sample_rate)
        if x.shape[0] != mix.channels:
            x = np.repeat(x.mean(axis=0, keepdims=True), mix.channels, axis=0)
        n = min(x.shape[1], mix.frames)
        y = np.zeros((mix.channels, mix.frames), np.float32)
        y[:, :n] = x[:, :n]
        out[name] = Audio(y, mix.sample_rate, path)
    return out


def stem_metrics(estimates: dict[str, Audio], references: dict[str, Audio]) -> dict[str, Any]:
    """Seed 002's metrics per stem with a reference (SI-SDR, SDR, spectral convergence,
    cross-correlation, energy ratio) via :mod:`engine.analysis`."""
    from engine.analysis.metrics import seed_metrics
    from engine.analysis.spectral_pass import spectral_pass

    out: dict[str, Any] = {}
    for name, ref in references.items():
        if name not in estimates:
            continue
        est = estimates[name]
        sums = spectral_pass(est.samples, ref.samples, est.sample_rate)
        m = seed_metrics(ref.samples, est.samples, sums)
        out[name] = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in m.items()}
    return out


def finish_query(
    out: Path, mix_path: str, mix: Audio, query_path: str | None, region: tuple[float, float] | None,
    detection: Detection, result_info: dict[str, Any], parameters: dict[str, Any],
    stems: dict[str, Audio] | None, references: dict[str, Audio], timings: dict[str, float],
    quiet: bool,
) -> dict[str, Any]:
    """Write event.json and the figures; returns the event (also the metrics)."""
    from engine.query.figures import comparison_figure, save_figure, timeline_figure

    t0 = time.perf_counter()
    metrics = stem_metrics(stems, references) if stems is not None and references else None
    if metrics is not None:
        timings["metrics_seconds"] = time.perf_counter() - t0
    source: dict[str, Any] = ({"path": str(Path(query_path).resolve())} if query_path is not None
                              else {"region": list(region) if region else None})
    mix_info = {"path": str(Path(mix_path).resolve()), "sample_rate": mix.sample_rate,
                "channels": mix.channels, "duration_seconds": round(mix.duration_seconds, 4)}
    timings.update({f"detect_{k}": v for k, v in detection.seconds.items()})
    event = build_event(detection, parameters, mix_info, source, result_info.get("separation"),
                        metrics, timings)
    out.mkdir(parents=True, exist_ok=True)
    write_event(out / "event.json", event)
    label = detection.query.class_name if detection.query is not None else "query"
    t1 = time.perf_counter()
    save_figure(timeline_figure(mix, detection, title=f"{Path(mix_path).name}"), out / f"{label}_timeline.png")
    if stems is not None:
        ref = references.get("target")
        save_figure(comparison_figure(mix, stems["target"], stems["residual"], ref, detection,
                                      title=f"{Path(mix_path).name} — {label}"), out / f"{label}_comparison.png")
    timings["figures_seconds"] = time.perf_counter() - t1
    if not quiet:
        print(event["message"], file=sys.stderr if not detection.found else sys.stdout)
        if detection.query is not None:
            for note in detection.query.notes:
                print(f"note: {note}", file=sys.stderr)
        for name, m in (metrics or {}).items():
            print(f"{name}: SI-SDR {m['si_sdr_db']:.2f} dB, SDR {m['sdr_db']:.2f} dB, "
                  f"spectral convergence {m['spectral_convergence']:.3f}, "
                  f"cross-correlation {m['cross_correlation']:.3f}, energy ratio {m['energy_ratio']:.3f}")
    return event
