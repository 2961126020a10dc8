"""Artifact indicators (musical noise, phase) and the overall score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.analysis import metrics as mt
from engine.analysis.spectral_pass import analysis_config, spectral_pass
from engine.analysis.summary import stem_score
from engine.spectral import istft, stft

RATE = 22_050


def _music(seconds: float = 3.0) -> np.ndarray:
    """Steady tones with a slow tremolo plus a little noise: no isolated peaks of its own."""
    t = np.arange(int(RATE * seconds)) / RATE
    x = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (220, 330, 440, 660, 880, 1320))
    x = x * (1 + 0.3 * np.sin(2 * np.pi * 0.5 * t)) + 0.001 * np.random.default_rng(0).standard_normal(t.size)
    return np.stack([x, 0.8 * x]).astype(np.float32)


def test_no_musical_noise_in_a_faithful_estimate() -> None:
    ref = _music()
    sums = spectral_pass(ref, ref, RATE)
    sec = mt.musical_noise_section(sums)
    assert sec["isolated_peaks"] == 0 and sec["status"]["grade"] == "ok"


def test_isolated_blips_are_counted_as_musical_noise() -> None:
    ref = _music()
    cfg = analysis_config(RATE)
    spec = stft(torch.from_numpy(ref), cfg)
    rng = np.random.default_rng(1)
    blips = 300
    _, bins, frames = spec.shape
    # Single time-frequency points well above everything around them: classic masking residue.
    fb = rng.integers(20, bins - 20, blips)
    tf = rng.integers(10, frames - 10, blips)
    level = float(spec.abs().max()) * 0.3
    spec[0, fb, tf] += level
    est = istft(spec, ref.shape[-1], cfg).numpy()
    sums = spectral_pass(est, ref, RATE)
    sec = mt.musical_noise_section(sums)
    assert sec["isolated_peaks"] >= 0.5 * blips  # some blips land on tones or on each other
    assert sec["status"]["grade"] in ("warn", "bad")
    assert sec["index_per_mille"] > 0.5


@pytest.mark.parametrize(("rotation", "expected"), [(0.0, 1.0), (np.pi / 2, 0.0), (np.pi, -1.0)])
def test_phase_consistency_of_a_rotated_estimate(rotation: float, expected: float) -> None:
    ref = _music(2.0)
    cfg = analysis_config(RATE)
    spec = stft(torch.from_numpy(ref), cfg) * complex(np.cos(rotation), np.sin(rotation))
    est = istft(spec, ref.shape[-1], cfg).numpy()
    sums = spectral_pass(est, ref, RATE)
    assert mt.phase_section(sums)["phase_consistency"] == pytest.approx(expected, abs=0.02)


def test_score_gives_the_seed_reports_labels() -> None:
    """Seed 000's numbers for its four stems: Good, Poor, Good, Good."""
    seed = {  # total energy ratio, overall correlation, total pseudo-SDR, leakage ratio, onset F1
        "drums": (0.725, 0.9108, 5.74, 0.1267, 0.8889),
        "bass": (0.726, 0.7730, 2.28, 0.2663, 0.5772),
        "other": (0.900, 0.9160, 5.38, 0.0645, 0.6386),
        "vocals": (0.751, 0.9188, 6.66, 0.0663, 0.6698),
    }
    labels = {}
    for name, (ratio, corr, psdr, leak, f1) in seed.items():
        sections = {
            "energy_distribution": {"bands": [{"ratio": ratio}]},
            "spectral_similarity": {"overall_correlation": corr},
            "pseudo_sdr": {"bands": [{"pseudo_sdr_db": psdr}]},
            "silence_leakage": {"leakage_ratio": leak},
            "onset_alignment": {"reference_onsets": 10, "estimate_onsets": 10, "f1": f1},
        }
        labels[name] = stem_score(sections)["label"]["text"]
    assert labels == {"drums": "Good", "bass": "Poor", "other": "Good", "vocals": "Good"}


def test_score_of_a_perfect_stem_is_100() -> None:
    ref = _music(2.0)
    sums = spectral_pass(ref, ref, RATE)
    sections = {"energy_distribution": mt.energy_distribution(sums), "spectral_similarity": mt.spectral_similarity(sums),
                "pseudo_sdr": mt.pseudo_sdr(sums),
                "artifacts": {"musical_noise": mt.musical_noise_section(sums)}}
    score = stem_score(sections)
    assert score["score_percent"] == pytest.approx(100.0) and score["label"]["text"] == "Excellent"
