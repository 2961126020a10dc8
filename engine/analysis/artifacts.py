"""Artifact indicators for what SDR misses (seed 004): musical noise, phase, leakage.

**Musical-noise index.** Musical noise is the "birdie" residue of aggressive time-frequency
masking: isolated, short-lived, narrow-band peaks. On the analysis STFT of the estimate (power
``P = |E|²``, every channel), a point ``(f, t)`` is an *isolated peak* when all of these hold:

* it is a local maximum of its 3 × 3 neighbourhood (bins f±1, frames t±1);
* it is short-lived: at least ``ISOLATION_DB`` (10 dB) above the same bin
  ``TIME_NEIGHBOUR_FRAMES`` (6) frames before and after (about 70 ms at 44.1 kHz: more than one
  analysis window away, so window overlap cannot hide it);
* it is narrow: at least 10 dB above the bins ``FREQ_NEIGHBOUR_BINS`` (3) below and above
  (outside the Hann main lobe);
* it is audible: above ``FLOOR_DBFS`` (−80 dB re a full-scale sine in one bin);
* the reference lacks it: the reference's power at that point is at least 10 dB lower
  (reference mode only; without a reference every isolated peak counts).

The index is the number of such peaks per 1000 *active* points (points above the floor), in
per mille; the energy share of those peaks is reported too. Sustained tones fail the
short-lived test and transients fail the narrow test, so clean music scores near 0.

**Phase consistency** is the magnitude-weighted mean cosine of the phase error,
``Σ Re(E·R*) / Σ |E||R|`` over the time-frequency points (1 = the estimate's phase agrees with the
reference's wherever both have energy, 0 = unrelated, −1 = inverted), overall, per band and per
frame. Magnitude metrics cannot see phase errors; this can.

**Leakage into silence** is computed by :mod:`engine.analysis.metrics` (the estimate's level in the
reference's silent frames relative to its active frames) and repeated in the artifacts section.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ISOLATION_DB = 10.0
TIME_NEIGHBOUR_FRAMES = 6
FREQ_NEIGHBOUR_BINS = 3
FLOOR_DBFS = -80.0
REFERENCE_LACKS_DB = 10.0


def full_scale_bin_power(n_fft: int) -> float:
    """STFT power in the peak bin of a full-scale sine with the periodic Hann window."""
    return float((n_fft / 4.0) ** 2)


@dataclass
class MusicalNoiseCounts:
    """Running counts over a pass."""

    peaks: int = 0
    peak_energy: float = 0.0
    active_points: int = 0
    total_energy: float = 0.0

    @property
    def per_mille(self) -> float:
        return 1000.0 * self.peaks / self.active_points if self.active_points else 0.0

    @property
    def energy_ratio(self) -> float:
        return self.peak_energy / self.total_energy if self.total_energy > 0 else 0.0


def count_musical_noise(
    power: np.ndarray,
    ref_power: np.ndarray | None,
    core_lo: int,
    core_hi: int,
    full_scale_power: float,
    counts: MusicalNoiseCounts,
) -> None:
    """Add the isolated peaks of the core frames to ``counts``.

    Args:
        power: the estimate's STFT power ``(channels, bins, frames)`` float32, with context
            frames around the core.
        ref_power: the reference's power over the core frames only ``(channels, bins, core)``,
            or None (every isolated peak counts).
        core_lo, core_hi: the core frames inside ``power``'s frame axis; context missing at the
            signal's ends counts as silence.
        full_scale_power: :func:`full_scale_bin_power`.
    """
    k = TIME_NEIGHBOUR_FRAMES
    p = power
    pad_lo = max(0, k - core_lo)
    pad_hi = max(0, (core_hi + k) - p.shape[-1])
    if pad_lo or pad_hi:
        p = np.pad(p, ((0, 0), (0, 0), (pad_lo, pad_hi)))
    lo, hi = core_lo + pad_lo, core_hi + pad_lo
    core = p[..., lo:hi]
    floor = full_scale_power * 10.0 ** (FLOOR_DBFS / 10.0)
    active = core >= floor
    counts.active_points += int(np.count_nonzero(active))
    counts.total_energy += float(core.sum(dtype=np.float64))
    if not active.any():
        return
    ratio = 10.0 ** (ISOLATION_DB / 10.0)
    # Cheap tests first on whole arrays; the local-maximum test only on the few survivors.
    # Short-lived: well above the same bin one window-length before and after.
    cand = active & (core >= ratio * np.maximum(p[..., lo - k : hi - k], p[..., lo + k : hi + k]))
    # Narrow: well above the bins outside the main lobe (missing bins count as silence).
    j = FREQ_NEIGHBOUR_BINS
    cand[:, j:] &= core[:, j:] >= ratio * core[:, :-j]
    cand[:, :-j] &= core[:, :-j] >= ratio * core[:, j:]
    if ref_power is not None:
        cand &= ref_power * 10.0 ** (REFERENCE_LACKS_DB / 10.0) <= core
    ch, fb, tf = np.nonzero(cand)
    if ch.size == 0:
        return
    # Local maximum over bins ±1 and frames ±1 (frames from the padded context).
    value = core[ch, fb, tf]
    is_max = np.ones(ch.size, dtype=bool)
    n_bins = core.shape[1]
    for df in (-1, 0, 1):
        for dt in (-1, 0, 1):
            if df == 0 and dt == 0:
                continue
            f2 = np.clip(fb + df, 0, n_bins - 1)
            is_max &= value >= p[ch, f2, tf + lo + dt]
    counts.peaks += int(is_max.sum())
    counts.peak_energy += float(value[is_max].sum(dtype=np.float64))


def phase_consistency(cross: float, magprod: float) -> float:
    """``Σ Re(E·R*) / Σ|E||R|``; NaN when either signal is silent everywhere the other is not."""
    return float(cross / magprod) if magprod > 0 else float("nan")
