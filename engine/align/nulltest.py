"""The null test: ``residual = mix - aligned acapella``, depth in dB overall, per band, per window.

Depth = 10·log10(residual energy / mix energy) over the same samples: 0 dB when nothing
cancels, negative when the acapella nulls the vocal. Band energies come from one real DFT of
the measured region (Parseval: exact energies, no window smearing), using the seeds' bands
(``engine.spectral.BANDS``); window energies are plain sums of squares in the time domain.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from engine.align.result import NullTest
from engine.spectral import BANDS

#: Depths are floored here (a bit-exact null would be -inf).
FLOOR_DB = -200.0
#: A band or window whose mix energy is below this fraction of the region's is "empty" (nan).
_EMPTY_FRACTION = 1e-10


def ratio_db(residual_energy: float, reference_energy: float, empty_below: float = 0.0) -> float:
    """``10·log10(residual / reference)`` floored at ``FLOOR_DB``; nan if the reference is empty."""
    if not reference_energy > empty_below or reference_energy <= 0.0:
        return math.nan
    return max(10.0 * math.log10(max(residual_energy, 0.0) / reference_energy + 1e-300), FLOOR_DB)


def parseval_weights(n_fft: int) -> np.ndarray:
    """Per-bin weights so that ``sum(w * |rfft(x, n_fft)|**2) == sum(x**2)``, ``(n_fft//2+1,)``."""
    w = np.full(n_fft // 2 + 1, 2.0 / n_fft)
    w[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        w[-1] = 1.0 / n_fft
    return w


def band_bin_edges(n_fft: int, sample_rate: int) -> list[tuple[str, int, int]]:
    """``(name, first bin, stop bin)`` of each band of ``BANDS`` for an ``n_fft``-point rfft
    (low edge inclusive, high edge exclusive, as :func:`engine.spectral.band_masks`)."""
    bins = n_fft // 2 + 1
    out = []
    for name, lo, hi in BANDS:
        k0 = min(int(math.ceil(lo * n_fft / sample_rate)), bins)
        k1 = min(int(math.ceil(hi * n_fft / sample_rate)), bins)
        out.append((name, k0, k1))
    return out


def band_energies(power: np.ndarray, n_fft: int, sample_rate: int) -> dict[str, float]:
    """Energy per band from a Parseval-weighted power spectrum ``(bins,)`` (already summed over
    channels and multiplied by :func:`parseval_weights`)."""
    return {name: float(power[k0:k1].sum()) for name, k0, k1 in band_bin_edges(n_fft, sample_rate)}


def window_energies(x: np.ndarray, window_frames: int, y: np.ndarray | None = None) -> np.ndarray:
    """Sum over channels of ``x·x`` (or ``x·y``) per consecutive window (the last one may be
    shorter).

    Args:
        x: float ``(channels, frames)`` or ``(frames,)``.
        window_frames: window length in frames.
        y: optional second signal, same shape.

    Returns:
        float64 ``(ceil(frames / window_frames),)``.
    """
    x2 = np.atleast_2d(x)
    y2 = x2 if y is None else np.atleast_2d(y)
    frames = x2.shape[-1]
    full = frames // window_frames
    head = full * window_frames
    xr = x2[:, :head].reshape(x2.shape[0], full, window_frames)
    yr = y2[:, :head].reshape(y2.shape[0], full, window_frames)
    out = np.einsum("cnw,cnw->n", xr, yr).astype(np.float64)
    if head < frames:
        tail = np.einsum("cn,cn->", x2[:, head:], y2[:, head:], dtype=np.float64)
        out = np.append(out, tail)
    return out


def null_test(
    mix: np.ndarray,
    aligned: np.ndarray,
    sample_rate: int,
    window_seconds: float = 1.0,
    region: tuple[int, int] | None = None,
) -> NullTest:
    """Measure how deep ``mix - aligned`` nulls.

    Args:
        mix: float ``(channels, frames)`` (or ``(frames,)``).
        aligned: the acapella rendered on the mix's timeline, same shape as ``mix`` (e.g. from
            :func:`engine.align.render_aligned`).
        sample_rate: Hz.
        window_seconds: length of the per-window measurements.
        region: ``(start, stop)`` frames to measure (default: everything); windows start at
            ``start``.

    Returns:
        :class:`NullTest` (window start times are on the mix's timeline, in seconds).
    """
    mix2 = np.atleast_2d(np.asarray(mix, dtype=np.float32))
    al2 = np.atleast_2d(np.asarray(aligned, dtype=np.float32))
    if mix2.shape != al2.shape:
        raise ValueError(f"mix {mix2.shape} and aligned {al2.shape} must have the same shape")
    start, stop = (0, mix2.shape[1]) if region is None else (int(region[0]), int(region[1]))
    start, stop = max(start, 0), min(stop, mix2.shape[1])
    if stop <= start:
        raise ValueError("empty null-test region")
    m = mix2[:, start:stop]
    res = m - al2[:, start:stop]
    n_fft = scipy.fft.next_fast_len(stop - start, real=True)
    w = parseval_weights(n_fft)
    mix_power = np.zeros(n_fft // 2 + 1)
    res_power = np.zeros(n_fft // 2 + 1)
    for c in range(m.shape[0]):
        mix_power += np.abs(scipy.fft.rfft(m[c], n_fft)) ** 2
        res_power += np.abs(scipy.fft.rfft(res[c], n_fft)) ** 2
    mix_power *= w
    res_power *= w
    wf = max(1, int(round(window_seconds * sample_rate)))
    mix_windows, res_windows = window_energies(m, wf), window_energies(res, wf)
    return null_test_from_energies(
        float(mix_windows.sum()), float(res_windows.sum()),
        band_energies(mix_power, n_fft, sample_rate), band_energies(res_power, n_fft, sample_rate),
        mix_windows, res_windows, start / sample_rate, window_seconds,
    )


def null_test_from_energies(
    mix_energy: float,
    residual_energy: float,
    mix_band_energy: dict[str, float],
    residual_band_energy: dict[str, float],
    mix_window_energy: np.ndarray,
    residual_window_energy: np.ndarray,
    start_seconds: float,
    window_seconds: float,
) -> NullTest:
    """Assemble a :class:`NullTest` from energies measured elsewhere (same conventions)."""
    empty = _EMPTY_FRACTION * mix_energy
    bands = {
        name: ratio_db(residual_band_energy[name], mix_band_energy[name], empty)
        for name in mix_band_energy
    }
    windows = np.array(
        [ratio_db(r, m, empty) for r, m in zip(residual_window_energy, mix_window_energy, strict=True)],
        dtype=np.float64,
    )
    return NullTest(
        null_depth_db=ratio_db(residual_energy, mix_energy),
        band_null_depth_db=bands,
        window_start_seconds=start_seconds + window_seconds * np.arange(len(windows), dtype=np.float64),
        window_null_depth_db=windows,
        window_seconds=float(window_seconds),
    )
