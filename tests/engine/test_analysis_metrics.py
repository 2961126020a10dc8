"""Per-stem metrics on signals with known answers, and their edge cases (never NaN crashes)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.analysis import metrics as mt
from engine.analysis.spectral_pass import analysis_config, spectral_pass, stft_chunks
from engine.spectral import stft

RATE = 22_050


def _noise(seed: int, shape: tuple[int, ...], scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def _orthogonal_pair(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two exactly orthogonal zero-mean signals of equal energy (Gram-Schmidt on noise)."""
    rng = np.random.default_rng(11)
    s = rng.standard_normal(n)
    v = rng.standard_normal(n)
    v -= s * (v @ s) / (s @ s)
    v *= math.sqrt((s @ s) / (v @ v))
    return s[None], v[None]


def _seed(ref: np.ndarray, est: np.ndarray) -> dict:
    sums = spectral_pass(est.astype(np.float32), ref.astype(np.float32), RATE)
    return mt.seed_metrics(ref.astype(np.float64), est.astype(np.float64), sums)


@pytest.mark.parametrize(("a", "b"), [(1.0, 0.1), (0.5, 0.5), (2.0, 0.05)])
def test_si_sdr_and_sdr_of_known_mixtures(a: float, b: float) -> None:
    s, n = _orthogonal_pair(40_000)
    m = _seed(s, a * s + b * n)
    # SI-SDR ignores the gain a: only the ratio of target to orthogonal noise counts.
    assert m["si_sdr_db"] == pytest.approx(20 * math.log10(a / b), abs=1e-6)
    # Plain SDR: error = (a-1)s + b n, orthogonal parts.
    assert m["sdr_db"] == pytest.approx(-10 * math.log10((a - 1) ** 2 + b**2), abs=1e-6)
    assert m["energy_ratio"] == pytest.approx(a * a + b * b, rel=1e-9)
    assert m["cross_correlation"] == pytest.approx(a / math.sqrt(a * a + b * b), abs=1e-9)


def test_identical_signals_are_perfect() -> None:
    s = _noise(1, (2, 30_000))
    m = _seed(s, s)
    assert m["si_sdr_db"] == math.inf and m["sdr_db"] == math.inf
    assert m["spectral_convergence"] == 0.0 and m["energy_ratio"] == 1.0
    assert m["peak_lag_ms"] == 0.0
    sums = spectral_pass(s, s, RATE)
    assert all(r["ratio"] == pytest.approx(1.0) for r in mt.energy_distribution(sums)["bands"])
    sim = mt.spectral_similarity(sums)
    assert sim["overall_correlation"] == pytest.approx(1.0) and sim["cosine_similarity"] == pytest.approx(1.0)
    assert all(r["pseudo_sdr_db"] == math.inf for r in mt.pseudo_sdr(sums)["bands"])
    div = mt.spectral_divergence(sums)
    assert div["kl_divergence"] == pytest.approx(0.0, abs=1e-12) and div["js_divergence"] == pytest.approx(0.0, abs=1e-12)
    assert mt.phase_section(sums)["phase_consistency"] == pytest.approx(1.0)
    assert mt.onset_alignment(sums)["f1"] in (0.0, 1.0)


def test_silent_estimate_has_defined_values() -> None:
    s = _noise(2, (1, 20_000))
    z = np.zeros_like(s)
    m = _seed(s, z)
    assert m["si_sdr_db"] == -math.inf  # nothing recovered
    assert m["sdr_db"] == pytest.approx(0.0, abs=1e-9)
    assert m["energy_ratio"] == 0.0 and m["spectral_convergence"] == pytest.approx(1.0)
    sums = spectral_pass(z, s, RATE)
    assert mt.energy_distribution(sums)["bands"][-1]["ratio"] == 0.0
    assert all(r["pseudo_sdr_db"] == pytest.approx(0.0, abs=1e-9) for r in mt.pseudo_sdr(sums)["bands"])
    assert math.isnan(mt.spectral_similarity(sums)["overall_correlation"])
    assert math.isnan(mt.phase_section(sums)["phase_consistency"])
    dyn = mt.dynamic_range(s, mt.frame_rms(sums, "ref"), z, mt.frame_rms(sums, "est"))
    assert dyn["rows"][1]["estimate"] == 0.0 and math.isnan(dyn["rows"][3]["estimate"])


def test_silent_reference_has_defined_values() -> None:
    e = _noise(3, (1, 20_000))
    z = np.zeros_like(e)
    m = _seed(z, e)
    assert math.isnan(m["si_sdr_db"]) and math.isnan(m["sdr_db"]) and m["energy_ratio"] == math.inf
    sums = spectral_pass(e, z, RATE)
    assert mt.energy_distribution(sums)["bands"][-1]["status"]["grade"] == "warn"  # over-extraction
    leak = mt.silence_leakage(mt.frame_rms(sums, "ref"), mt.frame_rms(sums, "est"))
    assert leak["status"]["grade"] == "na" and leak["silence_frames"] == leak["total_frames"]
    both = _seed(z, z)
    assert math.isnan(both["si_sdr_db"]) and math.isnan(both["sdr_db"])


def test_silence_leakage_measures_the_bleed() -> None:
    n = RATE * 4
    ref = _noise(4, (1, n))
    ref[:, n // 2 :] = 0.0  # the second half is silence in the reference
    bleed = 0.05
    est = ref.copy()
    est[:, n // 2 :] = bleed * _noise(5, (1, n - n // 2), 1.0) * 0.1  # 0.05 × the active RMS
    sums = spectral_pass(est, ref, RATE)
    leak = mt.silence_leakage(mt.frame_rms(sums, "ref"), mt.frame_rms(sums, "est"))
    assert 0.45 < leak["silence_percent"] / 100 < 0.55
    assert leak["leakage_ratio"] == pytest.approx(bleed, rel=0.15)
    assert leak["status"]["grade"] == "ok"
    loud = est.copy()
    loud[:, n // 2 :] *= 10  # 0.5 × the active RMS: high leakage
    sums = spectral_pass(loud, ref, RATE)
    leak = mt.silence_leakage(mt.frame_rms(sums, "ref"), mt.frame_rms(sums, "est"))
    assert leak["status"]["grade"] == "bad"


def test_energy_and_pseudo_sdr_land_in_the_right_band() -> None:
    t = np.arange(RATE * 3) / RATE
    ref = (0.3 * np.sin(2 * np.pi * 1000 * t))[None].astype(np.float32)  # Mid band
    hum = (0.03 * np.sin(2 * np.pi * 100 * t))[None].astype(np.float32)  # Bass band
    sums = spectral_pass(ref + hum, ref, RATE)
    energy = {r["band"].split(" (")[0]: r for r in mt.energy_distribution(sums)["bands"]}
    assert energy["Mid"]["ratio"] == pytest.approx(1.0, rel=1e-3)
    assert energy["Bass"]["ratio"] > 100 and energy["Bass"]["status"]["text"] == "Over-extraction"
    sdr = {r["band"].split(" (")[0]: r for r in mt.pseudo_sdr(sums)["bands"]}
    assert sdr["Mid"]["pseudo_sdr_db"] > 60
    # Total: reference energy / hum energy = 20 dB.
    assert sdr["Total"]["pseudo_sdr_db"] == pytest.approx(20.0, abs=0.05)


def test_dynamic_values_of_a_sine() -> None:
    t = np.arange(RATE * 2) / RATE
    x = (0.5 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
    rms = mt.frame_rms(spectral_pass(x, None, RATE), "est")
    # The Hann-weighted frame RMS of a steady sine is its RMS (edge frames aside).
    assert np.median(rms) == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)
    v = mt.dynamic_values(x, rms)
    assert v["peak_amplitude"] == pytest.approx(0.5, abs=1e-3)
    assert v["rms_amplitude"] == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)
    assert v["crest_factor_db"] == pytest.approx(20 * math.log10(math.sqrt(2)), abs=0.01)
    assert v["dynamic_range_db"] < 1.0  # a steady tone has no dynamics


def test_chunked_stft_equals_the_whole_signal_stft() -> None:
    x = _noise(6, (2, 50_001))
    cfg = analysis_config(44_100)
    full = stft(x, cfg).numpy()
    parts = [spec[..., c0 - first : c1 - first] for c0, c1, first, spec in stft_chunks(x, cfg, chunk_frames=17, context=6)]
    assert np.array_equal(np.concatenate(parts, axis=-1), full)


def test_peak_cross_correlation_finds_a_delay() -> None:
    s = _noise(7, (1, RATE * 2))
    late = np.zeros_like(s)
    d = int(0.010 * RATE)
    late[:, d:] = s[:, :-d]
    m = _seed(s, late)
    assert m["peak_lag_ms"] == pytest.approx(1000 * d / RATE, abs=1e-9)
    assert m["peak_cross_correlation"] > 0.99 > m["cross_correlation"]
