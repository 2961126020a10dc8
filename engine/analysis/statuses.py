"""Verdicts: the thresholds that turn numbers into words, in one place.

Every status is a :class:`Status` with a *grade* (``excellent``, ``good``, ``fair``,
``poor``, ``ok``, ``warn``, ``bad``, ``na``) and the words shown to the user. Reports render the
grade as a symbol: Markdown with the seed report's emoji, the PDF with glyphs every font has.

Thresholds (taken from the seed report where it shows them, chosen and documented here where
it does not):

=========================  ===================================================================
energy ratio (est/ref)     0.9 ≤ r ≤ 1.1 good; r < 0.9 under-extraction; r > 1.1 over-extraction
band / overall correlation ≥ 0.9 good; ≥ 0.5 fair; < 0.5 poor
pseudo-SDR, SI-SDR (dB)    > 10 excellent; > 5 good; > 0 fair; ≤ 0 poor  (seed 002's scale)
silence leakage ratio      < 0.1 minimal; < 0.3 moderate; ≥ 0.3 high  (estimate RMS in the
                           reference's silent frames / in its active frames)
onset F1 (±50 ms)          ≥ 0.8 excellent; ≥ 0.6 good; ≥ 0.4 fair; < 0.4 poor
phase consistency          ≥ 0.9 good; ≥ 0.7 fair; < 0.7 poor  (magnitude-weighted mean cos Δφ)
musical-noise index (‰)    < 0.5 low; < 2 moderate; ≥ 2 high  (isolated peaks per 1000 active
                           time-frequency points, see ``artifacts``)
mixture error (dB)         ≤ −30 exact; ≤ −15 close; > −15 far  (stems summed vs the mix)
overall score (%)          ≥ 80 excellent; ≥ 60 good; ≥ 40 fair; < 40 poor
=========================  ===================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ENERGY_RATIO_GOOD = (0.9, 1.1)
CORRELATION_GOOD, CORRELATION_FAIR = 0.9, 0.5
SDR_EXCELLENT_DB, SDR_GOOD_DB, SDR_FAIR_DB = 10.0, 5.0, 0.0
LEAKAGE_MINIMAL, LEAKAGE_MODERATE = 0.1, 0.3
ONSET_EXCELLENT, ONSET_GOOD, ONSET_FAIR = 0.8, 0.6, 0.4
PHASE_GOOD, PHASE_FAIR = 0.9, 0.7
MUSICAL_NOISE_LOW, MUSICAL_NOISE_MODERATE = 0.5, 2.0
MIXTURE_EXACT_DB, MIXTURE_CLOSE_DB = -30.0, -15.0
SCORE_EXCELLENT, SCORE_GOOD, SCORE_FAIR = 80.0, 60.0, 40.0

#: Markdown symbols (the seed report's).
EMOJI = {
    "excellent": "✅", "ok": "✅", "good": "👍", "fair": "⚠️", "warn": "⚠️", "poor": "❌",
    "bad": "❌", "na": "➖",
}
#: PDF symbols: glyphs present in DejaVu Sans (matplotlib's bundled font).
GLYPH = {
    "excellent": "✔", "ok": "✔", "good": "✔", "fair": "⚠", "warn": "⚠", "poor": "✘",
    "bad": "✘", "na": "–",
}


@dataclass(frozen=True)
class Status:
    """A verdict: ``grade`` (machine-readable) and ``text`` (the words a user reads)."""

    grade: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"grade": self.grade, "text": self.text}

    @property
    def emoji(self) -> str:
        return EMOJI.get(self.grade, "")

    @property
    def glyph(self) -> str:
        return GLYPH.get(self.grade, "")


NA = Status("na", "n/a")


def _finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def energy_status(ratio: float | None) -> Status:
    if not _finite(ratio):
        return NA
    assert ratio is not None
    lo, hi = ENERGY_RATIO_GOOD
    if ratio < lo:
        return Status("warn", "Under-extraction")
    if ratio > hi:
        return Status("warn", "Over-extraction")
    return Status("ok", "Good")


def correlation_status(corr: float | None) -> Status:
    if not _finite(corr):
        return NA
    assert corr is not None
    if corr >= CORRELATION_GOOD:
        return Status("ok", "Good")
    if corr >= CORRELATION_FAIR:
        return Status("warn", "Fair")
    return Status("bad", "Poor")


def sdr_quality(db: float | None) -> Status:
    """Seed 002's scale, used for pseudo-SDR, SI-SDR and SDR."""
    if not _finite(db):
        return NA
    assert db is not None
    if db > SDR_EXCELLENT_DB:
        return Status("excellent", "Excellent")
    if db > SDR_GOOD_DB:
        return Status("good", "Good")
    if db > SDR_FAIR_DB:
        return Status("fair", "Fair")
    return Status("poor", "Poor")


def leakage_status(ratio: float | None) -> Status:
    if not _finite(ratio):
        return NA
    assert ratio is not None
    if ratio < LEAKAGE_MINIMAL:
        return Status("ok", "Minimal leakage")
    if ratio < LEAKAGE_MODERATE:
        return Status("warn", "Moderate leakage")
    return Status("bad", "High leakage")


def onset_status(f1: float | None) -> Status:
    if not _finite(f1):
        return NA
    assert f1 is not None
    if f1 >= ONSET_EXCELLENT:
        return Status("excellent", "Excellent temporal alignment")
    if f1 >= ONSET_GOOD:
        return Status("good", "Good temporal alignment")
    if f1 >= ONSET_FAIR:
        return Status("fair", "Fair temporal alignment")
    return Status("poor", "Poor temporal alignment")


def phase_status(consistency: float | None) -> Status:
    if not _finite(consistency):
        return NA
    assert consistency is not None
    if consistency >= PHASE_GOOD:
        return Status("ok", "Consistent phase")
    if consistency >= PHASE_FAIR:
        return Status("warn", "Partly consistent phase")
    return Status("bad", "Inconsistent phase")


def musical_noise_status(per_mille: float | None) -> Status:
    if not _finite(per_mille):
        return NA
    assert per_mille is not None
    if per_mille < MUSICAL_NOISE_LOW:
        return Status("ok", "Low musical noise")
    if per_mille < MUSICAL_NOISE_MODERATE:
        return Status("warn", "Moderate musical noise")
    return Status("bad", "High musical noise")


def mixture_status(error_db: float | None) -> Status:
    if error_db is None or math.isnan(error_db):
        return NA
    if error_db <= MIXTURE_EXACT_DB:
        return Status("ok", "Stems sum to the mix")
    if error_db <= MIXTURE_CLOSE_DB:
        return Status("warn", "Stems nearly sum to the mix")
    return Status("bad", "Stems do not sum to the mix")


def score_label(percent: float | None) -> Status:
    if not _finite(percent):
        return NA
    assert percent is not None
    if percent >= SCORE_EXCELLENT:
        return Status("excellent", "Excellent")
    if percent >= SCORE_GOOD:
        return Status("good", "Good")
    if percent >= SCORE_FAIR:
        return Status("fair", "Fair")
    return Status("poor", "Poor")


THRESHOLDS = {
    "energy_ratio_good": list(ENERGY_RATIO_GOOD),
    "correlation": {"good": CORRELATION_GOOD, "fair": CORRELATION_FAIR},
    "sdr_db": {"excellent": SDR_EXCELLENT_DB, "good": SDR_GOOD_DB, "fair": SDR_FAIR_DB},
    "leakage_ratio": {"minimal": LEAKAGE_MINIMAL, "moderate": LEAKAGE_MODERATE},
    "onset_f1": {"excellent": ONSET_EXCELLENT, "good": ONSET_GOOD, "fair": ONSET_FAIR},
    "phase_consistency": {"good": PHASE_GOOD, "fair": PHASE_FAIR},
    "musical_noise_per_mille": {"low": MUSICAL_NOISE_LOW, "moderate": MUSICAL_NOISE_MODERATE},
    "mixture_error_db": {"exact": MIXTURE_EXACT_DB, "close": MIXTURE_CLOSE_DB},
    "score_percent": {"excellent": SCORE_EXCELLENT, "good": SCORE_GOOD, "fair": SCORE_FAIR},
}
