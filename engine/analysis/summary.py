"""The overall score of a stem: one number (percent) and its label, from the sections.

Each available check gives a sub-score in 0..1; the score is their mean × 100:

==================  ==========================================================================
energy balance      ``1 − |log2(total energy ratio)|`` (1 at ratio 1, 0 at ratio ½ or 2)
spectral similarity ``(overall correlation − 0.5) / 0.5``
distortion          total pseudo-SDR / 15 dB
silence leakage     ``1 − leakage ratio / 0.3`` (skipped when the reference has no silence)
onsets              onset F1 (skipped when neither has onsets)
artifacts           ``1 − musical-noise index / 4 ‰``
==================  ==========================================================================

Every sub-score is clipped to 0..1. Labels: ≥ 80 % Excellent, ≥ 60 % Good, ≥ 40 % Fair, else
Poor (see :mod:`engine.analysis.statuses`). On the seed report's own numbers this gives the
same labels as its summary (drums/other/vocals Good, bass Poor).
"""

from __future__ import annotations

import math
from typing import Any

from engine.analysis import statuses as st

DISTORTION_FULL_SCORE_DB = 15.0
LEAKAGE_ZERO_SCORE = 0.3
MUSICAL_NOISE_ZERO_SCORE = 4.0


def _clip01(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def _ok(x: Any) -> bool:
    return isinstance(x, (int, float)) and not math.isnan(x)


def stem_score(sections: dict[str, Any]) -> dict[str, Any]:
    """Score (percent), label and the sub-scores that made it, from a reference-mode stem."""
    parts: dict[str, float] = {}
    energy = sections.get("energy_distribution", {}).get("bands", [])
    if energy:
        ratio = energy[-1]["ratio"]
        if _ok(ratio):
            parts["energy_balance"] = 0.0 if ratio <= 0 or math.isinf(ratio) else _clip01(1.0 - abs(math.log2(ratio)))
    corr = sections.get("spectral_similarity", {}).get("overall_correlation")
    if _ok(corr):
        parts["spectral_similarity"] = _clip01((corr - 0.5) / 0.5)
    psdr = sections.get("pseudo_sdr", {}).get("bands", [])
    if psdr:
        total = psdr[-1]["pseudo_sdr_db"]
        if isinstance(total, float) and not math.isnan(total):
            parts["distortion"] = 1.0 if total == math.inf else _clip01(total / DISTORTION_FULL_SCORE_DB)
    leak = sections.get("silence_leakage", {}).get("leakage_ratio")
    if _ok(leak):
        parts["silence_leakage"] = _clip01(1.0 - leak / LEAKAGE_ZERO_SCORE)
    onsets = sections.get("onset_alignment", {})
    if onsets and (onsets.get("reference_onsets") or onsets.get("estimate_onsets")):
        parts["onsets"] = _clip01(float(onsets["f1"]))
    noise = sections.get("artifacts", {}).get("musical_noise", {}).get("index_per_mille")
    if _ok(noise):
        parts["artifacts"] = _clip01(1.0 - noise / MUSICAL_NOISE_ZERO_SCORE)
    percent = 100.0 * sum(parts.values()) / len(parts) if parts else float("nan")
    return {"score_percent": percent, "label": st.score_label(percent).to_json(), "components": parts}
