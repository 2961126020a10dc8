"""``event.json``: what the query engine found and did (seed 002's metadata file, versioned).

Schema ``unmix-query-event/1`` (every time in seconds on the mix's timeline)::

    {
      "format": "unmix-query-event/1",
      "found": bool,                      # false: "not found", segments empty, no stems written
      "message": str,                     # one line for people
      "mix": {"path", "sample_rate", "channels", "duration_seconds"},
      "query": {"path" | "region": [start, end], "seconds", "class", "class_probability",
                "probabilities": {class: p}, "notes": [str]},
      "segments": [{"start", "end", "score"}],          # time order, non-overlapping
      "windows": {"window_seconds", "hop_seconds", "start": [...], "class_probability": [...],
                  "cosine": [...], "score": [...], "active": [...],
                  "stem_level_db": [...] | null},   # the stem gate's value (null: gate not run)
      "class_gate_used": bool,
      "stem_gate_alone": bool,            # the stem gate stood in for the similarity gate
      "parameters": {name: value},
      "separation": {...} | null,         # mask facts (prior, stem weights, losses, timings)
      "metrics": {stem: {...}} | null,     # with reference stems: SI-SDR, SDR, convergence, …
      "timings_seconds": {...}
    }
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from engine.files import atomic_write_text
from engine.query.detection import Detection

FORMAT = "unmix-query-event/1"
REQUIRED = ("format", "found", "message", "mix", "query", "segments", "windows", "class_gate_used",
            "parameters", "separation", "metrics", "timings_seconds")


def _finite(x: float) -> float | None:
    return round(float(x), 4) if math.isfinite(float(x)) else None


def not_found_message(detection: Detection) -> str:
    q = detection.query
    what = f"the query ({q.class_name})" if q is not None else "the query"
    gates = (["class"] if detection.class_gate_used else []) + (
        ["similarity"] if (detection.params.use_cosine_gate or not detection.class_gate_used)
        and not detection.stem_gate_alone else []) + (
        ["stem"] if detection.stem_level_db is not None and detection.params.use_stem_gate else [])
    names = gates[0] if len(gates) == 1 else ", ".join(gates[:-1]) + " and " + gates[-1]
    return (f"not found: {what} does not play in the mix — no window passed the {names} "
            + ("gate" if len(gates) == 1 else "gates"))


def found_message(detection: Detection) -> str:
    n = len(detection.segments)
    total = sum(s.duration for s in detection.segments)
    return f"found {n} segment{'s' if n != 1 else ''} ({total:.1f} s of {detection.duration_seconds:.1f} s)"


def build_event(detection: Detection, parameters: dict[str, Any], mix: dict[str, Any],
                query_source: dict[str, Any], separation: dict[str, Any] | None = None,
                metrics: dict[str, Any] | None = None, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """The event dictionary (JSON-ready; see the module docstring)."""
    q = detection.query
    query: dict[str, Any] = dict(query_source)
    if q is not None:
        query.update({"seconds": round(q.seconds, 4), "class": q.class_name,
                      "class_probability": round(q.class_probability, 4),
                      "probabilities": {k: round(v, 4) for k, v in q.probabilities.items()},
                      "notes": list(q.notes)})
    p = detection.params
    return {
        "format": FORMAT,
        "found": detection.found,
        "message": found_message(detection) if detection.found else not_found_message(detection),
        "mix": mix,
        "query": query,
        "segments": [s.to_json() for s in detection.segments],
        "windows": {
            "window_seconds": p.window_seconds, "hop_seconds": p.hop_seconds,
            "start": [round(float(v), 4) for v in detection.window_starts],
            "class_probability": [_finite(v) for v in detection.class_probability],
            "cosine": [_finite(v) for v in detection.cosine],
            "score": [_finite(v) for v in detection.score],
            "active": [bool(v) for v in detection.active],
            "stem_level_db": (None if detection.stem_level_db is None
                              else [_finite(v) for v in detection.stem_level_db]),
        },
        "class_gate_used": detection.class_gate_used,
        "stem_gate_alone": detection.stem_gate_alone,
        "parameters": parameters,
        "separation": separation,
        "metrics": metrics,
        "timings_seconds": {k: round(v, 4) for k, v in (timings or {}).items()},
    }


def validate_event(event: dict[str, Any]) -> None:
    """Raise ``ValueError`` when ``event`` does not follow the schema."""
    missing = [k for k in REQUIRED if k not in event]
    if missing:
        raise ValueError(f"event lacks {missing}")
    if event["format"] != FORMAT:
        raise ValueError(f"unknown event format {event['format']!r}")
    last_end = -math.inf
    for s in event["segments"]:
        if not (0 <= s["start"] < s["end"] <= event["mix"]["duration_seconds"] + 1e-3):
            raise ValueError(f"segment {s} outside the mix")
        if s["start"] < last_end:
            raise ValueError("segments overlap or are out of order")
        if not 0 <= s["score"] <= 1:
            raise ValueError(f"segment score {s['score']} outside [0, 1]")
        last_end = s["end"]
    if bool(event["segments"]) != bool(event["found"]):
        raise ValueError("'found' disagrees with the segments")
    w = event["windows"]
    n = len(w["start"])
    for key in ("class_probability", "cosine", "score", "active", "stem_level_db"):
        if key == "stem_level_db" and w.get(key) is None:
            continue
        if len(w[key]) != n:
            raise ValueError(f"windows.{key} has {len(w[key])} values for {n} windows")


def write_event(path: str | Path, event: dict[str, Any]) -> Path:
    """Write ``event`` atomically (temp file, fsync, rename)."""
    return atomic_write_text(path, json.dumps(event, indent=2, allow_nan=False))
