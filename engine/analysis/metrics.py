"""The per-stem metrics of the analysis report, each a JSON-ready ``dict``.

Conventions (every definition the report uses):

* Everything runs at the stem's own sample rate and on all of its channels; energies are
  summed over channels.
* **Energy** of a band: ``Σ |X(f, t)|²`` of the analysis STFT (see
  :func:`engine.analysis.spectral_pass.analysis_config`) over the band's bins, all frames and
  channels, bands from :data:`engine.spectral.BANDS`; *Total* is every bin. With the seeds'
  window on a mono signal this reproduces the seed report's scale.
* **Spectral similarity**: Pearson correlation and cosine similarity of the magnitude
  spectrograms ``|R|`` and ``|E|`` (all channels, frames and bins; per band: the band's bins).
* **Pseudo-SDR** of a band: ``10·log10(Σ|R|² / Σ|E − R|²)`` over the band (complex STFT
  difference, i.e. the error signal's energy in that band); *error ratio* is
  ``Σ|E − R|² / Σ|R|²``.
* **Silence**: frame RMS — the Hann-weighted RMS of each analysis frame, all channels (from
  the STFT by Parseval). A frame is
  silent when the reference's RMS is ``SILENCE_BELOW_ACTIVE_DB`` (40 dB) below its *active level*
  (95th percentile of its frame RMS), or exactly zero. *Leakage ratio* = the estimate's RMS over
  silent frames / its RMS over the other frames; *silence energy ratio* = the estimate's energy in
  silent frames / its total energy.
* **Spectral divergence**: KL(P‖Q) and JS(P, Q) in nats, P and Q the long-term power spectra of
  reference and estimate normalised to sum 1 (``1e-10`` added per bin before normalising).
* **Dynamic range**: ``20·log10(P95 / P5)`` of the frame RMS (dB), digital silence counting as
  −100 dBFS; *peak* = max |x|; *RMS* over all samples and channels; *crest factor* =
  ``20·log10(peak / RMS)``.
* **Seed 002's metrics** (time domain, channels concatenated): SI-SDR
  ``10·log10(||αs||² / ||αs − ŝ||²)`` with ``α = <ŝ, s>/||s||²`` (no mean removal); SDR
  ``10·log10(||s||² / ||s − ŝ||²)``; spectral convergence ``|| |R| − |E| ||_F / || |R| ||_F``
  (0 = perfect); cross-correlation ``<s, ŝ> / (||s|| ||ŝ||)`` at lag 0 and its peak within
  ±50 ms; energy ratio ``||ŝ||² / ||s||²``.

Edge cases have defined values, never exceptions: identical signals give ``+inf`` dB;
an all-zero estimate gives SI-SDR ``−inf`` (nothing recovered), SDR 0 dB, energy ratio 0;
an all-zero reference makes reference-normalised numbers undefined (NaN, written as null).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.analysis import statuses as st
from engine.analysis.artifacts import MusicalNoiseCounts, phase_consistency
from engine.analysis.bss_eval import safe_db
from engine.analysis.onsets import detect_onsets, f_measure, onset_envelope
from engine.analysis.spectral_pass import SpectralSums

SILENCE_BELOW_ACTIVE_DB = 40.0
DYNAMIC_FLOOR = 1e-5  # −100 dBFS
XCORR_MAX_LAG_SECONDS = 0.05
KL_EPSILON = 1e-10

Section = dict[str, Any]


def band_labels(sums: SpectralSums) -> list[str]:
    """Band names with their ranges, as in the seed report, then ``Total``."""
    from engine.spectral import BANDS

    return [f"{n} ({lo:g}-{hi:g} Hz)" for n, lo, hi in BANDS] + ["Total"]


def _band_totals(sums: SpectralSums, per_bin: np.ndarray) -> np.ndarray:
    """``(bands + 1,)``: the per-bin sums aggregated per band, then over every bin."""
    nb = len(sums.band_names)
    out = np.zeros(nb + 1)
    for i in range(nb):
        out[i] = per_bin[sums.band_of_bin == i].sum()
    out[nb] = per_bin.sum()
    return out


def _band_counts(sums: SpectralSums) -> np.ndarray:
    nb = len(sums.band_names)
    n_points = sums.channels * sums.frames
    out = np.array([(sums.band_of_bin == i).sum() for i in range(nb)] + [sums.band_of_bin.size], dtype=np.float64)
    return out * n_points


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return float("nan") if num == 0 else float("inf")


def energy_distribution(sums: SpectralSums) -> Section:
    """Section 1: band energies of reference and estimate, ratio and status."""
    ref = _band_totals(sums, sums.bin_sums["R2"])
    est = _band_totals(sums, sums.bin_sums["E2"])
    rows = []
    for label, r, e in zip(band_labels(sums), ref, est, strict=True):
        ratio = _ratio(float(e), float(r))
        rows.append({"band": label, "reference_energy": float(r), "estimate_energy": float(e),
                     "ratio": ratio, "status": st.energy_status(ratio).to_json()})
    return {"bands": rows}


def _pearson(n: float, sx: float, sy: float, sxx: float, syy: float, sxy: float) -> float:
    if n <= 1:
        return float("nan")
    vx = n * sxx - sx * sx
    vy = n * syy - sy * sy
    if vx <= 0 or vy <= 0:
        return float("nan")
    return float(np.clip((n * sxy - sx * sy) / math.sqrt(vx * vy), -1.0, 1.0))


def spectral_similarity(sums: SpectralSums) -> Section:
    """Section 2: correlation and cosine similarity of magnitude spectrograms, per band."""
    b = sums.bin_sums
    agg = {k: _band_totals(sums, b[k]) for k in ("R", "E", "R2", "E2", "RE")}
    counts = _band_counts(sums)
    corr = [_pearson(counts[i], agg["R"][i], agg["E"][i], agg["R2"][i], agg["E2"][i], agg["RE"][i])
            for i in range(counts.size)]
    total_r2, total_e2, total_re = agg["R2"][-1], agg["E2"][-1], agg["RE"][-1]
    cosine = float(total_re / math.sqrt(total_r2 * total_e2)) if total_r2 > 0 and total_e2 > 0 else float("nan")
    bands = [{"band": lab, "correlation": c, "status": st.correlation_status(c).to_json()}
             for lab, c in zip(band_labels(sums)[:-1], corr[:-1], strict=True)]
    return {"overall_correlation": corr[-1], "cosine_similarity": cosine,
            "status": st.correlation_status(corr[-1]).to_json(), "bands": bands}


def pseudo_sdr(sums: SpectralSums) -> Section:
    """Section 3: pseudo-SDR per band and in total, error ratio, quality."""
    ref = _band_totals(sums, sums.bin_sums["R2"])
    err = _band_totals(sums, sums.bin_sums["err2"])
    rows = []
    for label, r, e in zip(band_labels(sums), ref, err, strict=True):
        sdr = float(safe_db(r, e))
        ratio = _ratio(float(e), float(r))
        rows.append({"band": label, "pseudo_sdr_db": sdr, "error_ratio": ratio,
                     "quality": st.sdr_quality(sdr).to_json()})
    return {"bands": rows}


def spectral_divergence(sums: SpectralSums) -> Section:
    """Section 6: KL and JS divergence (nats) of the normalised long-term power spectra."""
    p = sums.bin_sums["R2"] + KL_EPSILON
    q = sums.bin_sums["E2"] + KL_EPSILON
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)
    kl = float(np.sum(p * np.log(p / q)))
    js = float(0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m)))
    return {"kl_divergence": max(kl, 0.0), "js_divergence": max(js, 0.0), "units": "nats"}


def phase_section(sums: SpectralSums) -> Section:
    """Phase consistency overall and per band (see :mod:`engine.analysis.artifacts`)."""
    cross = _band_totals(sums, sums.bin_sums["cross"])
    mag = _band_totals(sums, sums.bin_sums["RE"])
    overall = phase_consistency(cross[-1], mag[-1])
    bands = [{"band": lab, "phase_consistency": phase_consistency(c, m)}
             for lab, c, m in zip(band_labels(sums)[:-1], cross[:-1], mag[:-1], strict=True)]
    return {"phase_consistency": overall, "status": st.phase_status(overall).to_json(), "bands": bands}


def musical_noise_section(sums: SpectralSums, relative_to: str = "reference",
                          mix_counts: MusicalNoiseCounts | None = None) -> Section:
    """The musical-noise index (per mille of active points) and the energy share of the peaks.

    Args:
        relative_to: ``"reference"`` (peaks the reference lacks) or ``"none"`` (every isolated
            peak; then ``mix_counts``, the mix's own peaks, give the comparison and the status).
    """
    counts = sums.musical_noise
    assert counts is not None
    out: Section = {
        "isolated_peaks": counts.peaks,
        "active_points": counts.active_points,
        "index_per_mille": counts.per_mille,
        "peak_energy_ratio": counts.energy_ratio,
        "peaks_per_second": counts.peaks / max(sums.frames * sums.config.hop_length / sums.sample_rate, 1e-9),
        "relative_to": relative_to,
    }
    if relative_to == "reference":
        out["status"] = st.musical_noise_status(counts.per_mille).to_json()
    elif mix_counts is not None:
        # Without a reference, compare with the mix's own isolated peaks.
        mix_index = mix_counts.per_mille
        out["mix_index_per_mille"] = mix_index
        out["excess_over_mix_per_mille"] = counts.per_mille - mix_index
        out["status"] = st.musical_noise_status(max(counts.per_mille - mix_index, 0.0)).to_json()
    else:
        out["status"] = st.NA.to_json()
    return out


# ---------------------------------------------------------------------------------------------
# Time-domain metrics
# ---------------------------------------------------------------------------------------------


def frame_rms(sums: SpectralSums, which: str = "est") -> np.ndarray:
    """Frame RMS of a pass's estimate (``"est"``) or reference (``"ref"``): ``(frames,)``.

    The RMS of each analysis frame weighted by its Hann window, over all channels, obtained
    from the STFT by Parseval (no second pass over the samples).
    """
    rms = sums.frame_rms_est if which == "est" else sums.frame_rms_ref
    assert rms is not None
    return rms


def silence_mask(ref_rms: np.ndarray) -> tuple[np.ndarray, float]:
    """Silent frames of a reference: ``SILENCE_BELOW_ACTIVE_DB`` below its active level, or 0.

    Returns:
        ``(mask (frames,), threshold RMS)``.
    """
    active_level = float(np.percentile(ref_rms, 95)) if ref_rms.size else 0.0
    threshold = active_level * 10.0 ** (-SILENCE_BELOW_ACTIVE_DB / 20.0)
    return (ref_rms <= threshold), threshold


def silence_leakage(ref_rms: np.ndarray, est_rms: np.ndarray, reference_name: str = "reference") -> Section:
    """Section 4: the estimate's energy where the reference is silent."""
    silent, threshold = silence_mask(ref_rms)
    n = int(silent.size)
    k = int(silent.sum())
    est_e = est_rms**2
    total = float(est_e.sum())
    out: Section = {
        "silence_frames": k,
        "total_frames": n,
        "silence_percent": 100.0 * k / n if n else 0.0,
        "silence_threshold_dbfs": float(safe_db(threshold**2, 1.0)),
        "silence_defined_by": reference_name,
    }
    if k == 0 or k == n:
        out.update(leakage_ratio=float("nan"), leakage_db=float("nan"),
                   silence_energy_ratio=float(est_e[silent].sum() / total) if total > 0 and k else float("nan"),
                   estimate_level_in_silence_dbfs=float(safe_db(est_e[silent].mean(), 1.0)) if k else float("nan"))
        out["status"] = (st.Status("na", f"No silence in the {reference_name}") if k == 0
                         else st.Status("na", f"The {reference_name} is silent throughout")).to_json()
        return out
    rms_silent = math.sqrt(float(est_e[silent].mean()))
    rms_active = math.sqrt(float(est_e[~silent].mean()))
    ratio = _ratio(rms_silent, rms_active)
    out.update(
        leakage_ratio=ratio,
        leakage_db=float(safe_db(ratio**2, 1.0)) if np.isfinite(ratio) else float("nan"),
        silence_energy_ratio=float(est_e[silent].sum() / total) if total > 0 else 0.0,
        estimate_level_in_silence_dbfs=float(safe_db(rms_silent**2, 1.0)),
        status=st.leakage_status(ratio).to_json(),
    )
    return out


def dynamic_values(samples: np.ndarray, rms: np.ndarray) -> dict[str, float]:
    """Dynamic range (dB), peak, RMS and crest factor (dB) of ``samples (channels, n)``."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    total = 0.0
    for c in range(samples.shape[0]):
        x = samples[c].astype(np.float64)
        total += float(np.dot(x, x))
    rms_all = math.sqrt(total / samples.size) if samples.size else 0.0
    lo = max(float(np.percentile(rms, 5)), DYNAMIC_FLOOR) if rms.size else DYNAMIC_FLOOR
    hi = max(float(np.percentile(rms, 95)), DYNAMIC_FLOOR) if rms.size else DYNAMIC_FLOOR
    return {
        "dynamic_range_db": float(20.0 * math.log10(hi / lo)),
        "peak_amplitude": peak,
        "rms_amplitude": rms_all,
        "crest_factor_db": float(safe_db(peak**2, rms_all**2)) if rms_all > 0 else float("nan"),
    }


def dynamic_range(ref_samples: np.ndarray, ref_rms: np.ndarray, est_samples: np.ndarray, est_rms: np.ndarray) -> Section:
    """Section 7: each quantity for reference and estimate, with the difference."""
    r = dynamic_values(ref_samples, ref_rms)
    e = dynamic_values(est_samples, est_rms)
    return {"rows": [{"metric": k, "reference": r[k], "estimate": e[k], "difference": e[k] - r[k]} for k in r]}


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``Σ a·b`` over all channels in float64."""
    total = 0.0
    for c in range(a.shape[0]):
        total += float(np.dot(a[c].astype(np.float64), b[c].astype(np.float64)))
    return total


def _energies(reference: np.ndarray, estimate: np.ndarray) -> tuple[float, float, float]:
    """``(Σs², Σŝ², Σs·ŝ)`` in float64, one conversion of each channel."""
    ss = ee = se = 0.0
    for c in range(reference.shape[0]):
        r = reference[c].astype(np.float64)
        e = estimate[c].astype(np.float64)
        ss += float(np.dot(r, r))
        ee += float(np.dot(e, e))
        se += float(np.dot(r, e))
    return ss, ee, se


def seed_metrics(reference: np.ndarray, estimate: np.ndarray, sums: SpectralSums) -> Section:
    """Section 8: seed 002's SI-SDR, SDR, spectral convergence, cross-correlation, energy ratio."""
    ss, ee, se = _energies(reference, estimate)
    err = max(ss + ee - 2 * se, 0.0)
    # Direct error energy when the estimate is close (the expansion loses precision there).
    if err < 1e-6 * max(ss, 1e-300):
        d = 0.0
        for c in range(reference.shape[0]):
            diff = reference[c].astype(np.float64) - estimate[c].astype(np.float64)
            d += float(np.dot(diff, diff))
        err = d
    if ss > 0 and ee > 0:
        alpha = se / ss
        target = alpha * alpha * ss
        noise = max(ee - 2 * alpha * se + target, 0.0)
        if noise < 1e-6 * max(target, 1e-300):
            noise = 0.0
            for c in range(reference.shape[0]):
                diff = estimate[c].astype(np.float64) - alpha * reference[c].astype(np.float64)
                noise += float(np.dot(diff, diff))
        si_sdr = float(safe_db(target, noise))
    elif ss > 0:
        si_sdr = float("-inf")  # nothing recovered
    else:
        si_sdr = float("nan")  # no reference to measure against
    sdr = float(safe_db(ss, err)) if ss > 0 else float("nan")
    r2 = float(sums.bin_sums["R2"].sum())
    convergence = math.sqrt(float(sums.bin_sums["dmag2"].sum()) / r2) if r2 > 0 else float("nan")
    corr0 = se / math.sqrt(ss * ee) if ss > 0 and ee > 0 else float("nan")
    peak, lag_s = _peak_cross_correlation(reference, estimate, sums.sample_rate, ss, ee, se)
    energy_ratio = _ratio(ee, ss)
    return {
        "si_sdr_db": si_sdr,
        "sdr_db": sdr,
        "spectral_convergence": convergence,
        "cross_correlation": corr0,
        "peak_cross_correlation": peak,
        "peak_lag_ms": lag_s * 1000.0 if np.isfinite(lag_s) else float("nan"),
        "energy_ratio": energy_ratio,
        "quality": st.sdr_quality(si_sdr).to_json(),
    }


XCORR_SEARCH_BLOCKS = 96


def _peak_cross_correlation(
    reference: np.ndarray, estimate: np.ndarray, rate: int, ss: float, ee: float, se: float
) -> tuple[float, float]:
    """Largest normalised cross-correlation within ±50 ms and its lag (s; >0 = estimate late).

    The lag is searched on the reference's loudest blocks (``XCORR_SEARCH_BLOCKS`` of about
    0.27 s at 44.1 kHz: a bounded cost for any length); the reported value is then exact, over
    the whole signal, at the best of that lag and its two neighbours.
    """
    if ss <= 0 or ee <= 0:
        return float("nan"), float("nan")
    lags = max(1, int(round(XCORR_MAX_LAG_SECONDS * rate)))
    values = summed_cross_correlation(reference, estimate, lags, XCORR_SEARCH_BLOCKS)
    coarse = int(np.argmax(values)) - lags
    best_val, best_lag = -np.inf, coarse
    for lag in range(max(-lags, coarse - 1), min(lags, coarse + 1) + 1):
        v = (se if lag == 0 else _lagged_dot(reference, estimate, lag)) / math.sqrt(ss * ee)
        if v > best_val:
            best_val, best_lag = v, lag
    return float(best_val), best_lag / rate


def _lagged_dot(x: np.ndarray, y: np.ndarray, lag: int) -> float:
    """``Σ_c Σ_m x[c, m] · y[c, m + lag]`` in float64."""
    n = x.shape[-1]
    total = 0.0
    for c in range(x.shape[0]):
        if lag >= 0:
            a, b = x[c, : n - lag], y[c, lag:]
        else:
            a, b = x[c, -lag:], y[c, : n + lag]
        total += float(np.dot(a.astype(np.float64), b.astype(np.float64)))
    return total


def summed_cross_correlation(x: np.ndarray, y: np.ndarray, max_lag: int, max_blocks: int | None = None) -> np.ndarray:
    """``Σ_c Σ_m x[c, m] · y[c, m + τ]`` for ``τ = -max_lag .. max_lag`` (block FFT).

    Blocks are transformed in float32 (the result feeds a peak search) and their cross-spectra
    summed in float64.

    Args:
        x, y: ``(channels, n)``.
        max_lag: largest lag in samples.
        max_blocks: use only this many blocks, those where ``x`` is loudest (None: all, exact).

    Returns:
        float64 ``(2·max_lag + 1,)``, index ``max_lag + τ``.
    """
    import torch

    channels, n = x.shape
    n_fft = 1 << int(math.ceil(math.log2(max(4 * max_lag, 4096))))
    block = n_fft - 2 * max_lag
    n_blocks = max(-(-n // block), 1)
    chosen = np.arange(n_blocks)
    if max_blocks is not None and n_blocks > max_blocks:
        padded = np.zeros(n_blocks * block)
        for c in range(channels):
            padded[:n] += x[c].astype(np.float64) ** 2
        energy = padded.reshape(n_blocks, block).sum(axis=1)
        chosen = np.sort(np.argsort(energy)[-max_blocks:])
    acc = np.zeros(n_fft // 2 + 1, dtype=np.complex128)
    per_chunk = 32
    for i0 in range(0, chosen.size, per_chunk):
        ids = chosen[i0 : i0 + per_chunk]
        xb = np.zeros((channels, ids.size, n_fft), dtype=np.float32)
        yb = np.zeros((channels, ids.size, n_fft), dtype=np.float32)
        for k, b in enumerate(ids):
            # x: the block; y: the block with max_lag more on each side (its lag -max_lag at 0).
            x0, x1 = b * block, min(n, (b + 1) * block)
            xb[:, k, : x1 - x0] = x[:, x0:x1]
            y0, y1 = max(0, b * block - max_lag), min(n, (b + 1) * block + max_lag)
            off = y0 - (b * block - max_lag)
            yb[:, k, off : off + y1 - y0] = y[:, y0:y1]
        fx = torch.fft.rfft(torch.from_numpy(xb), dim=-1)
        fy = torch.fft.rfft(torch.from_numpy(yb), dim=-1)
        acc += (fx.conj() * fy).sum(dim=(0, 1)).numpy().astype(np.complex128)
    corr = np.fft.irfft(acc, n=n_fft)
    # x's block at offset 0 of its FFT, y's starting max_lag earlier: lag τ lands at τ + max_lag.
    return corr[: 2 * max_lag + 1].copy()


def onset_alignment(sums: SpectralSums) -> Section:
    """Section 5: onsets of reference and estimate (from the pass's mel spectrograms), matched
    one-to-one within ±50 ms."""
    return onset_section(onsets_from(sums, "ref"), onsets_from(sums, "est"))


def onset_section(ref_onsets: np.ndarray, est_onsets: np.ndarray) -> Section:
    scores = f_measure(ref_onsets, est_onsets)
    status = st.onset_status(scores.f1) if len(ref_onsets) or len(est_onsets) else st.Status("na", "No onsets")
    return {
        "reference_onsets": scores.reference_count,
        "estimate_onsets": scores.estimate_count,
        "matched_onsets": scores.matched,
        "window_ms": scores.window_seconds * 1000.0,
        "precision": scores.precision,
        "recall": scores.recall,
        "f1": scores.f1,
        "status": status.to_json(),
        "reference_onset_times_s": [float(t) for t in ref_onsets],
        "estimate_onset_times_s": [float(t) for t in est_onsets],
    }


def onsets_from(sums: SpectralSums, which: str = "est") -> np.ndarray:
    """Onset times (s) of the estimate (``"est"``) or the reference (``"ref"``) of a pass."""
    mel = sums.mel_est if which == "est" else sums.mel_ref
    assert mel is not None
    cfg = sums.config
    return detect_onsets(onset_envelope(mel, n_fft=cfg.n_fft, hop=cfg.hop_length), sums.sample_rate, cfg.hop_length)


def band_energies_single(sums: SpectralSums) -> Section:
    """Reference-free band energies of an estimate; when the pass's reference is the mix, also
    the mix's band energies and the stem's share of them."""
    est = _band_totals(sums, sums.bin_sums["E2"])
    mix = _band_totals(sums, sums.bin_sums["R2"]) if sums.has_reference else None
    rows = []
    for i, (label, e) in enumerate(zip(band_labels(sums), est, strict=True)):
        row: dict[str, Any] = {"band": label, "estimate_energy": float(e),
                               "share_of_stem": _ratio(float(e), float(est[-1]))}
        if mix is not None:
            row["mix_energy"] = float(mix[i])
            row["share_of_mix"] = _ratio(float(e), float(mix[i]))
        rows.append(row)
    return {"bands": rows}


def dynamic_single(samples: np.ndarray, rms: np.ndarray) -> Section:
    v = dynamic_values(samples, rms)
    return {"rows": [{"metric": k, "estimate": v[k]} for k in v]}
