"""The ``reference`` engine: the acapella, filtered to sound as it does in the mix, subtracted.

The acapella is the vocal before the mix bus. In the mix it was level-matched, EQ'd, compressed
or limited with everything else. We learn a time-varying filter that maps the aligned acapella
``A`` onto the vocal as it sounds in the mix ``X`` and subtract it:

    V(c, f, t) = G(c, f) · g(c, b(f), t) · A(c, f, t)        y = ISTFT(V)
    vocals(t) = h(t) · y(t)                                  (h: the fine broadband gain)
    instrumental = mix − vocals                              (so the stems sum to the mix)

* ``G`` — a static complex EQ per bin: least squares over the whole song,
  ``G = Σ_t X·A* / Σ_t |A|²``, smoothed over a fraction of an octave (an EQ is smooth in frequency;
  the smoothing also averages the instrumental's cross-term away). Being complex it also absorbs a
  small constant delay left by the align step.
* ``g`` — a slowly varying real gain per broad band (compression, fader rides): least
  squares over short sliding windows, shrunk toward 1 by how much the residual can explain
  (James–Stein style) so an unprocessed acapella keeps an exact unit gain instead of noise.
* ``h`` — a fast broadband gain track (a bus limiter: a few ms attack, tens of ms hold), which
  windowed band gains cannot follow: generalised least squares of the mix on ``y`` per ~1.5 ms
  step, both whitened by the residual's spectrum, regularised by a random-walk prior whose
  stiffness is chosen by cross-validation between two halves of the spectrum (see
  :func:`_fine_gain`). Applied in the time domain, before the subtraction. Where the data shows
  no fast gain (an acapella that is exactly the vocal) ``h = 1``.
* optional residual clean-up: the part of the residual ``R = X − V`` that locally follows the
  predicted vocal (a small misalignment or a lossy acapella leaves a vocal with a slightly wrong
  phase or level) moves to the vocals: a shrunk local regression of R on V over 5 bins × 21 frames,
  times the clean-up strength.

Three passes stream over the song in chunks (margins cover the STFT and the gain window): EQ
statistics; band gains, ``y`` and the fine gain's statistics; ``h`` applied and the masks. The
spectra are kept between passes when they fit a memory budget (a few minutes of stereo), so a
1-hour file costs a few chunks of memory, never a whole-song STFT. Per-cell work runs on blocks
of frames a few MB large (cache-sized; fresh large temporaries cost page faults that dominated
the run time), with torch on one thread and the FFTs (pocketFFT) on the caller's thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft
import torch
from scipy.linalg import solveh_banded

from engine.audio import Audio
from engine.separators.base import (
    CancelFn,
    Parameter,
    ProgressFn,
    SeparationResult,
    Separator,
    check_cancel,
    register,
)
from engine.spectral import StftConfig, istft, stft

_EPS = 1e-12
#: Hann frames at 75 % overlap are far from independent: count one observation per this many.
_FRAMES_PER_OBSERVATION = 4.0
#: Spectra kept between the passes up to this size (bytes).
_STFT_CACHE_BYTES = 1 << 30
#: Prior spread of the time-varying broadband gain around 1, and of each band around it.
_GAIN_PRIOR = 0.5
_BAND_GAIN_PRIOR = 0.25


def _match_channels(acapella: np.ndarray, channels: int) -> np.ndarray:
    """The acapella with the mix's channel count (mono spread, otherwise downmixed)."""
    if acapella.shape[0] == channels:
        return acapella
    mono = acapella.mean(axis=0, keepdims=True)
    return np.repeat(mono, channels, axis=0)


def _power(z: torch.Tensor) -> torch.Tensor:
    """|z|² without the square root that ``abs()`` computes."""
    return (z * z.conj()).real


def _channel_sum(z: torch.Tensor) -> torch.Tensor:
    """Sum over the first axis (channels) by adding slices: a reduction over a short leading
    axis of a complex tensor is much slower in torch."""
    out = z[0].clone()
    for c in range(1, z.shape[0]):
        out += z[c]
    return out


def _smooth_time(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Centred moving sum over the last axis (frames), same length."""
    if frames <= 1:
        return x
    pad_l, pad_r = frames // 2, frames - 1 - frames // 2
    # float64 running sum: a float32 difference of large cumulative sums loses small values.
    c = torch.nn.functional.pad(x.double(), (pad_l + 1, pad_r)).cumsum(dim=-1)
    out = c[..., frames:] - c[..., :-frames]
    if bool((x >= 0).all()):
        out = out.clamp(min=0.0)
    return out.to(x.dtype)


def _log_frequency_ranges(bins: int, sample_rate: int, octaves: float, n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive bin range ``[lo, hi]`` of ±octaves/2 around each bin (at least ±1 bin)."""
    f = np.arange(bins) * sample_rate / n_fft
    idx = np.arange(bins)
    lo = np.minimum(np.floor(f * 2 ** (-octaves / 2) * n_fft / sample_rate), idx - 1)
    hi = np.maximum(np.ceil(f * 2 ** (octaves / 2) * n_fft / sample_rate), idx + 1)
    lo, hi = np.clip(lo, 0, bins - 1).astype(np.int64), np.clip(hi, 0, bins - 1).astype(np.int64)
    return torch.from_numpy(lo), torch.from_numpy(hi)


def _box_average(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over bins ``lo[f] … hi[f]`` (last axis), by a float64 running sum: O(bins)."""
    c = torch.nn.functional.pad(x.cumsum(dim=-1), (1, 0))
    return (c[..., hi + 1] - c[..., lo]) / (hi - lo + 1).to(x.dtype)


def _smoothed_levels(
    cross_blocks: torch.Tensor, power_blocks: torch.Tensor, sample_rate: int, n_fft: int,
    finest_octaves: float,
) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """Per level (1, 1/3 and ``finest_octaves`` octave): the block sums smoothed over frequency.

    Smoothing is linear, so it is done once per block; any subset of blocks (the whole song, a
    cross-validation fold) is then a sum over blocks. Returns ``(cross, power, prior spread)``.
    """
    bins = cross_blocks.shape[-1]
    out = []
    for octaves, spread in ((1.0, 0.5), (1.0 / 3.0, 0.25), (finest_octaves, 0.15)):
        lo, hi = _log_frequency_ranges(bins, sample_rate, octaves, n_fft)
        lo, hi = lo.to(cross_blocks.device), hi.to(cross_blocks.device)
        num = torch.complex(_box_average(cross_blocks.real, lo, hi), _box_average(cross_blocks.imag, lo, hi))
        out.append((num, _box_average(power_blocks, lo, hi), spread))
    return out


def _eq_levels(
    cross_blocks: torch.Tensor, power_blocks: torch.Tensor,
    smoothed: list[tuple[torch.Tensor, torch.Tensor, float]],
) -> list[torch.Tensor]:
    """Per-bin complex EQ by least squares, shrunk level by level toward coarser estimates.

    Levels: one gain for all bins, then 1 octave, 1/3 octave, then the finest smoothing. At each
    level the least-squares estimate ``Ĝ = ΣX·A* / Σ|A|²`` is shrunk toward the coarser level P as
    a Wiener (Bayes) estimate: ``G = P + (Ĝ − P)·τ²|P|² / (τ²|P|² + var)``, τ the prior spread of
    the EQ at that resolution. ``var`` is the block-jackknife variance of Ĝ over time blocks of a
    few seconds: accompaniment that is tonal and in tune with the voice correlates with it over
    many frames, which a frame-count variance would miss. Bins where the acapella is weak under
    the instrumental therefore follow the smoother EQ instead of the instrumental's noise, and an
    acapella that is exactly the vocal keeps a flat EQ.

    Args:
        cross_blocks: ``Σ_t X·A*`` per time block, channel and bin, complex ``(K, C, F)``.
        power_blocks: ``Σ_t |A|²`` per block ``(K, C, F)``.
        smoothed: the same blocks smoothed over frequency per level (:func:`_smoothed_levels`).

    Returns:
        the EQ at each level, coarsest (one broadband gain) first: complex128 ``(C, F)`` each.
    """
    k, _, bins = cross_blocks.shape
    num_all = cross_blocks.sum(dim=(0, 2))[:, None]
    den_all = power_blocks.sum(dim=(0, 2))[:, None] + _EPS
    parent = (num_all / den_all).expand(-1, bins)
    levels = [parent]
    for num_k, den_k, spread in smoothed:
        num, den = num_k.sum(0), den_k.sum(0) + _EPS
        g = num / den
        if k >= 3:
            g_minus = (num[None] - num_k) / (den[None] - den_k + _EPS)
            var = (k - 1) / k * (g_minus - g_minus.mean(0, keepdim=True)).abs().pow(2).sum(0)
        else:  # too short to tell signal from accompaniment: trust the coarser level
            var = torch.full_like(den, float("inf"))
        # Empirical Bayes: the EQ detail this level really has is the power-weighted spread of
        # its estimates around the coarser level minus what their noise explains (≤ the cap).
        weight = den / den.sum(-1, keepdim=True)
        var = torch.nan_to_num(var, nan=float("inf"), posinf=float("inf"))
        finite = torch.isfinite(var)
        spread_seen = (weight * (g - parent).abs() ** 2).sum(-1, keepdim=True)
        noise_seen = (weight * torch.where(finite, var, torch.zeros_like(var))).sum(-1, keepdim=True)
        tau2 = torch.clamp(spread_seen - noise_seen, min=0.0)
        tau2 = torch.minimum(tau2 / (parent.abs() ** 2).mean(-1, keepdim=True).clamp(min=_EPS), torch.tensor(spread**2))
        prior = tau2 * (parent.abs() ** 2) + _EPS
        parent = parent + (g - parent) * torch.where(finite, prior / (prior + var), torch.zeros_like(var))
        levels.append(parent)
    return levels


def _hierarchical_eq(
    cross_blocks: torch.Tensor, power_blocks: torch.Tensor, sample_rate: int, n_fft: int,
    finest_octaves: float,
) -> torch.Tensor:
    """The EQ of :func:`_eq_levels` at the resolution the data supports, per channel.

    Two-fold cross-validation over alternate time blocks: each level is fitted on one half and
    its least-squares residual ``Σ|X − G·A|²`` measured on the other; "no EQ" (G = 1, the
    aligner's gain as it is) competes too. The candidate with the least held-out residual is kept.
    So a weak vocal under loud accompaniment, or an acapella that is exactly the vocal, keeps a
    flat EQ, and a real EQ is followed as far as the data shows it.
    """
    k = cross_blocks.shape[0]
    # Candidate 0 is "no EQ at all": the aligner's gain is trusted as it is.
    unit = torch.ones(cross_blocks.shape[1:], dtype=torch.complex128, device=cross_blocks.device)
    smoothed = _smoothed_levels(cross_blocks, power_blocks, sample_rate, n_fft, finest_octaves)
    full = [unit, *_eq_levels(cross_blocks, power_blocks, smoothed)]
    if k < 4:
        return full[1]  # too short to cross-validate: the broadband gain
    errors = torch.zeros(len(full), cross_blocks.shape[1], dtype=torch.float64, device=cross_blocks.device)
    for train, test in ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))):
        fitted = [unit, *_eq_levels(cross_blocks[train], power_blocks[train],
                                    [(n[train], d[train], s) for n, d, s in smoothed])]
        cross_t, power_t = cross_blocks[test].sum(0), power_blocks[test].sum(0)
        for i, g in enumerate(fitted):
            # Σ|X − G·A|² without the constant Σ|X|²
            errors[i] += (-2.0 * (g.conj() * cross_t).real + g.abs() ** 2 * power_t).sum(-1)
    best = errors.argmin(dim=0)  # (C,)
    stacked = torch.stack(full)  # (levels, C, F)
    return stacked[best, torch.arange(stacked.shape[1])]


def _shrunk_gain(
    xy: torch.Tensor, yy: torch.Tensor, ry: torch.Tensor, prior_mean: torch.Tensor, max_spread: float,
) -> torch.Tensor:
    """Least-squares real gains ``xy/yy`` over time, shrunk toward ``prior_mean`` (empirical Bayes).

    Each window's estimate has the sandwich variance ``var = c·Σ|R|²|Y|² / (Σ|Y|²)²`` (R the
    residual of the static fit, Y the EQ'd acapella; ``c`` counts overlapping frames as one
    observation), i.e. the accompaniment only counts where the voice has energy. How much the
    gain really moves, ``τ²``, is learned per band from the data: the vocal-weighted spread of the
    estimates minus what their noise explains (capped at ``max_spread``). An acapella whose level
    never changes in the mix keeps a constant gain; a compressed or limited mix gets the movement
    its evidence supports.

    Shapes: ``(C, bands, T)``; ``prior_mean`` broadcasts.
    """
    # Windows where the voice is (nearly) silent carry no information about its gain.
    floor = 1e-4 * yy.mean(-1, keepdim=True) + _EPS
    informative = yy > floor
    yy_safe = torch.where(informative, yy, torch.ones_like(yy))
    g = torch.where(informative, xy / yy_safe, prior_mean.expand_as(xy))
    var = torch.where(informative, _FRAMES_PER_OBSERVATION * ry / yy_safe**2, torch.full_like(yy, float("inf")))
    weight = yy / (yy.sum(-1, keepdim=True) + _EPS)
    spread = (weight * (g - prior_mean) ** 2).sum(-1, keepdim=True)
    noise = (weight * torch.where(informative, var, torch.zeros_like(var))).sum(-1, keepdim=True)
    tau2 = torch.clamp(spread - noise, min=0.0)
    tau2 = torch.minimum(tau2, (max_spread**2) * (prior_mean.abs() ** 2).mean(-1, keepdim=True))
    return prior_mean + (g - prior_mean) * (tau2 / (tau2 + var + _EPS))


def _local_refinement(residual: torch.Tensor, vocal: torch.Tensor, kappa: float) -> torch.Tensor:
    """The part of the residual that is the predicted vocal, slightly off (clean-up).

    A local complex regression of the residual R on the predicted vocal V over a small
    neighbourhood (5 bins × 21 frames): ``β = S(R·V*) / (S(|V|²) + κ·S(|R|²))``, returned as
    ``β·V``. It captures what a small misalignment or a lossy acapella leaves behind (a local
    phase/level error of the vocal) but not accompaniment that merely sits under the voice,
    which does not follow V's phase. ``κ`` shrinks it where the residual is large.

    Shapes: complex ``(C, F, T)``.
    """
    def box(t: torch.Tensor) -> torch.Tensor:
        flat = t.reshape(-1, 1, t.shape[-2], t.shape[-1])
        return torch.nn.functional.avg_pool2d(flat, (5, 21), stride=1, padding=(2, 10),
                                              count_include_pad=False).reshape(t.shape)

    rv = residual * vocal.conj()
    num = torch.complex(box(rv.real), box(rv.imag))
    den = box(_power(vocal)) + kappa * box(_power(residual)) + _EPS
    return (num / den) * vocal


def _dynamic_gains(
    xy_b: torch.Tensor, yy_b: torch.Tensor, ry_b: torch.Tensor, gain_frames: int, max_gain: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-varying gains from per-band, per-frame sums ``(C, bands, T)``.

    A broadband gain first (bus compression and limiting act on everything), shrunk toward 1;
    then each band's deviation from it, shrunk toward it (see :func:`_shrunk_gain`).

    Returns:
        ``(band gains (C, bands, T), broadband gain (C, 1, T))``, clamped to ``[0, max_gain]``.
    """
    xy_w, yy_w, ry_w = (_smooth_time(t, gain_frames) for t in (xy_b, yy_b, ry_b))
    ones = torch.ones(1, device=xy_b.device)
    broad = _shrunk_gain(xy_w.sum(1, keepdim=True), yy_w.sum(1, keepdim=True),
                         ry_w.sum(1, keepdim=True), ones, _GAIN_PRIOR)
    band = _shrunk_gain(xy_w, yy_w, ry_w, broad, _BAND_GAIN_PRIOR)
    return band.clamp(0.0, max_gain), broad.clamp(0.0, max_gain)


def _band_index(bins: int, sample_rate: int, n_fft: int, bands: int) -> np.ndarray:
    """Bin → broad band index: log-spaced edges from 100 Hz to Nyquist (below 100 Hz: band 0)."""
    f = np.arange(bins) * sample_rate / n_fft
    edges = np.geomspace(100.0, sample_rate / 2, bands + 1)[1:-1]
    return np.searchsorted(edges, f).astype(np.int64)


def _band_matrix(band_of_bin: np.ndarray, n_bands: int) -> torch.Tensor:
    """``(2·bands, bins)`` indicator: row ``2b + p`` sums band b's bins of parity p (even/odd)."""
    bins = band_of_bin.shape[0]
    m = np.zeros((2 * n_bands, bins), dtype=np.float32)
    m[2 * band_of_bin + np.arange(bins) % 2, np.arange(bins)] = 1.0
    return torch.from_numpy(m)


def _whitening_bands(bins: int, sample_rate: int, n_fft: int) -> torch.Tensor:
    """``(bins, bands)`` interpolation weights onto third-octave band centres (rows sum to 1).

    Linear interpolation in log-frequency between neighbouring centres, so a per-band value
    expanded to the bins is smooth in frequency (a short impulse response when it is used as a
    filter) and each bin's power is shared between its two nearest bands.
    """
    f = np.arange(bins) * sample_rate / n_fft
    f_lo = max(60.0, 3.0 * sample_rate / n_fft)
    n = max(int(round(3 * np.log2(sample_rate / 2 / f_lo))) + 1, 2)
    centres = np.log2(np.geomspace(f_lo, sample_rate / 2, n))
    pos = np.interp(np.log2(np.maximum(f, 1e-3)), centres, np.arange(n))  # fractional band index
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo).astype(np.float32)
    w = np.zeros((bins, n), dtype=np.float32)
    np.add.at(w, (np.arange(bins), lo), 1.0 - frac)
    np.add.at(w, (np.arange(bins), hi), frac)
    return torch.from_numpy(w)


def _fine_step(hop: int, sample_rate: int) -> int:
    """Samples per step of the fine gain track: the largest divisor of the hop ≤ 1.5 ms."""
    target = max(int(sample_rate * 0.0015), 1)
    return max(d for d in range(1, hop + 1) if hop % d == 0 and d <= target)


def _random_walk_smooth(num: np.ndarray, den: np.ndarray, lam: float, ridge: float) -> np.ndarray:
    """``argmin_g Σ(den·g² − 2·num·g) + λ·Σ(g_k − g_{k−1})² + ridge·Σ(g − 1)²`` (tridiagonal)."""
    k = num.shape[0]
    ab = np.empty((2, k))
    ab[0, 0] = 0.0
    ab[0, 1:] = -lam
    deg = np.full(k, 2.0)
    deg[0] = deg[-1] = 1.0
    ab[1] = den + ridge + lam * deg
    return np.asarray(solveh_banded(ab, num + ridge, check_finite=False))


def _fine_gain(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray | None, float]:
    """A broadband gain track at the fine step from per-step sums of two bin sets.

    ``num[s] = Σ m·y`` and ``den[s] = Σ y²`` over the steps, for the two halves ``s`` of the
    spectrum (alternate half-octaves), where m and y are the mix and the predicted vocal, both
    whitened by the residual's spectrum: ``num/den`` is the generalised least-squares gain of each
    step, unbiased (the accompaniment is uncorrelated with the vocal) but noisy. A Gaussian
    random-walk prior regularises it (the penalised least squares of :func:`_random_walk_smooth`,
    one banded solve). Its stiffness λ is chosen by two-fold cross-validation across the two
    halves of the spectrum: a gain fitted on one half must predict the other (a bus gain acts on
    all frequencies alike; the accompaniment under the two halves is different sound). Splitting
    in time instead would let tonal accompaniment that stays in tune with the voice for many
    steps pass for a gain change. "No fine gain" (g = 1) competes, so a vocal whose level never
    moves faster than the band gains keeps them as they are.

    Args:
        num, den: ``(2, steps)``.

    Returns:
        ``(g per step or None when g = 1 wins, the chosen time constant in steps)``.
    """
    total_num, total_den = num.sum(0), den.sum(0)
    active = total_den > 1e-6 * max(float(total_den.max()), _EPS)
    if num.shape[1] < 8 or not active.any():
        return None, 0.0
    scale = float(total_den[active].mean())
    ridge = 1e-6 * scale
    held_out: dict[int | None, float] = {None: float(np.sum(total_den - 2.0 * total_num))}
    for octave in range(12):  # time constants of 1, 2, 4 … 2048 steps
        lam = scale * 4.0**octave
        err = 0.0
        for train, test in ((0, 1), (1, 0)):
            g = _random_walk_smooth(num[train], den[train], lam / 2, ridge)
            err += float(np.sum(den[test] * g**2 - 2.0 * num[test] * g))
        held_out[octave] = err
    best = min(held_out, key=lambda key: held_out[key])
    if best is None:
        return None, 0.0
    return _random_walk_smooth(total_num, total_den, scale * 4.0**best, ridge), float(2.0**best)


def _frame_slices(frames: int, size: int) -> list[slice]:
    """Consecutive frame ranges of at most ``size``: per-cell work is done block by block, so
    temporaries stay a few MB (cache-sized, and reused by the allocator instead of faulted in)."""
    return [slice(t, min(t + size, frames)) for t in range(0, frames, size)]


def _frames_stft(
    x: np.ndarray | tuple[np.ndarray, ...], cfg: StftConfig, device: torch.device, workers: int = 1,
    scratch: list[np.ndarray] | None = None,
) -> torch.Tensor:
    """:func:`engine.spectral.stft` of float32 ``(B, samples)`` (or of rows stacked from a tuple
    of such arrays); on CPU framed by strides and transformed by pocketFFT (same result to
    float32 rounding, about twice as fast). ``scratch`` (a one-element list) keeps the padded
    input buffer between calls: fresh large buffers cost page faults."""
    parts = x if isinstance(x, tuple) else (x,)
    if device.type != "cpu":
        return stft(torch.from_numpy(np.concatenate(parts)), cfg, device)
    n_fft, hop = cfg.n_fft, cfg.hop_length
    pad = n_fft // 2
    rows, n = sum(p.shape[0] for p in parts), parts[0].shape[-1]
    width = n + 2 * pad
    if scratch and scratch[0].shape[0] == rows and scratch[0].shape[1] >= width:
        padded = scratch[0][:, :width]
    else:
        padded = np.empty((rows, width), dtype=np.float32)
        if scratch is not None:
            scratch[:] = [padded]
    r = 0
    for p in parts:
        c = p.shape[0]
        padded[r : r + c, pad : pad + n] = p
        if n > pad:  # reflect, as torch.stft's center padding
            padded[r : r + c, :pad] = p[:, 1 : pad + 1][:, ::-1]
            padded[r : r + c, pad + n :] = p[:, n - pad - 1 : n - 1][:, ::-1]
        else:
            padded[r : r + c, :pad] = 0.0
            padded[r : r + c, pad + n :] = 0.0
        r += c
    frames_n = 1 + (width - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        padded, (rows, frames_n, n_fft), (padded.strides[0], hop * padded.strides[1], padded.strides[1]),
        writeable=False)
    window = _window_np(n_fft)
    spec = np.empty((rows, frames_n, cfg.bins), dtype=np.complex64)
    for sl in _frame_slices(frames_n, _BLOCK_FRAMES):  # cache-sized temporaries
        spec[:, sl] = scipy.fft.rfft(frames[:, sl] * window, axis=-1, workers=workers)
    return torch.from_numpy(spec).transpose(1, 2)  # (B, F, T)


_WINDOWS: dict[int, np.ndarray] = {}


def _window_np(n_fft: int) -> np.ndarray:
    """Periodic Hann window, float32 (as :func:`engine.spectral.stft` uses)."""
    if n_fft not in _WINDOWS:
        _WINDOWS[n_fft] = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    return _WINDOWS[n_fft]


def _overlap_add_istft(
    spec: torch.Tensor, length: int, cfg: StftConfig, decimation: int = 1, workers: int = 1,
) -> torch.Tensor:
    """:func:`engine.spectral.istft` for ``n_fft`` a multiple of the hop, without its overhead.

    The inverse FFT of every frame, windowed, is cut into ``n_fft/hop`` hop-sized pieces and
    those are added at their offsets (one slice-add per piece, not a scatter), then divided by
    the summed squared window and trimmed as ``center=True`` padding left it: the same result as
    ``torch.istft`` to float32 rounding, in a fraction of its time on CPU (pocketFFT there).

    With ``decimation`` d > 1 only the bins below ``rate/(2d)`` are inverted, with an FFT d times
    shorter: the signal low-passed there, at ``1/d`` of the rate (``ceil(length/d)`` samples).

    Args:
        spec: complex ``(B, F, T)``.

    Returns:
        real ``(B, ceil(length / decimation))``.
    """
    n_fft, hop = cfg.n_fft // decimation, cfg.hop_length // decimation
    if cfg.n_fft % (4 * decimation) or cfg.hop_length % decimation or n_fft % hop:
        if decimation == 1:
            return istft(spec, length, cfg)
        raise ValueError(f"n_fft {cfg.n_fft} cannot be decimated by {decimation}")
    length = -(-length // decimation)
    q = n_fft // hop
    batch, _, frames_n = spec.shape
    window = torch.hann_window(n_fft, periodic=True, device=spec.device, dtype=torch.float32)
    kept = spec[:, : n_fft // 2 + 1].transpose(1, 2)  # (B, T, bins kept)
    out = torch.zeros(batch, frames_n + q - 1, hop, device=spec.device)
    env = torch.zeros(frames_n + q - 1, hop, device=spec.device)
    w2 = window.square().view(q, hop)
    scaled_window = window / decimation
    for sl in _frame_slices(frames_n, _BLOCK_FRAMES):  # cache-sized temporaries
        if spec.device.type == "cpu":
            frames = torch.from_numpy(scipy.fft.irfft(kept[:, sl].numpy(), n=n_fft, axis=-1, workers=workers))
        else:
            frames = torch.fft.irfft(kept[:, sl], n=n_fft, dim=-1)  # (B, t, n_fft)
        pieces = (frames * scaled_window).view(batch, -1, q, hop)
        t0, t1 = sl.start, sl.stop
        for j in range(q):
            out[:, t0 + j : t1 + j] += pieces[:, :, j]
    for j in range(q):
        env[j : j + frames_n] += w2[j]
    # (B, T + q − 1, hop) → samples: row k holds samples k·hop … k·hop + hop − 1.
    start = n_fft // 2
    signal = out.view(batch, -1)[:, start : start + length]
    norm = env.view(-1)[start : start + length]
    result = signal / torch.where(norm > 1e-11, norm, torch.ones_like(norm))
    if result.shape[-1] < length:
        result = torch.nn.functional.pad(result, (0, length - result.shape[-1]))
    return result


#: Frames per block of per-cell work.
_BLOCK_FRAMES = 256


@register
class ReferenceSeparator(Separator):
    name = "reference"
    title = "Reference subtraction (mix + acapella)"
    description = (
        "Learns how the acapella sounds inside the mix (a static EQ, slowly varying band gains "
        "for compression, and a fast broadband gain for bus limiting) and subtracts it. "
        "Vocals = filtered acapella; instrumental = mix − vocals, so the stems always sum to the mix."
    )
    needs_acapella = True
    stem_names = ("vocals", "instrumental")
    parameters = (
        Parameter("eq_smoothing_octaves", 1 / 6, "Frequency smoothing of the learned EQ (octaves). "
                  "Smaller follows sharper EQ curves but averages less instrumental away.",
                  minimum=0.01, maximum=2.0, unit="oct"),
        Parameter("gain_window_seconds", 0.25, "Window over which the band gains may change "
                  "(shorter follows faster compression/limiting).", minimum=0.02, maximum=10.0, unit="s"),
        Parameter("gain_bands", 6, "Number of broad bands with their own time-varying gain.",
                  kind="int", minimum=1, maximum=24),
        Parameter("fine_gain", True, "Follow a fast broadband gain (a bus limiter's) at ~1 ms "
                  "resolution, as smooth as cross-validation says the data supports.", kind="bool"),
        Parameter("max_gain_db", 24.0, "Largest gain the filter may apply to the acapella.",
                  minimum=0.0, maximum=60.0, unit="dB"),
        Parameter("cleanup", 0.0, "Residual clean-up strength: moves what is left of the vocal "
                  "after subtraction (small misalignment, lossy acapella) into the vocal stem.",
                  minimum=0.0, maximum=1.0),
        Parameter("cleanup_bias", 1.0, "κ of the clean-up's local regression; larger is more "
                  "conservative.", minimum=0.01, maximum=100.0),
        Parameter("n_fft", 2048, "STFT window (samples).", kind="int", minimum=256, maximum=16384),
        Parameter("chunk_seconds", 60.0, "Processing chunk length (memory vs. overhead).",
                  minimum=5.0, maximum=600.0, unit="s"),
    )

    def _separate(
        self, mix: Audio, acapella: np.ndarray | None, query: Audio | None,
        region: tuple[float, float] | None, device: torch.device, params: dict[str, Any],
        progress: ProgressFn | None, cancel: CancelFn | None,
    ) -> SeparationResult:
        assert acapella is not None
        # The per-cell work runs in cache-sized blocks of many small ops: torch's intra-op
        # threads cost more than they give there (and stall badly when the cores are shared),
        # so torch runs on one thread and the FFTs (pocketFFT, coarse batches) use the rest.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._run(mix, acapella, device, params, progress, cancel, threads)
        finally:
            torch.set_num_threads(threads)

    def _run(
        self, mix: Audio, acapella: np.ndarray, device: torch.device, params: dict[str, Any],
        progress: ProgressFn | None, cancel: CancelFn | None, workers: int,
    ) -> SeparationResult:
        rate, channels, frames = mix.sample_rate, mix.channels, mix.frames
        aca = _match_channels(acapella.astype(np.float32, copy=False), channels)
        cfg = StftConfig(n_fft=int(params["n_fft"]))
        hop, bins = cfg.hop_length, cfg.bins
        gain_frames = max(1, int(round(params["gain_window_seconds"] * rate / hop)))
        chunk = max(int(params["chunk_seconds"] * rate) // hop * hop, 8 * cfg.n_fft)
        margin = (gain_frames + 8) * hop + cfg.n_fft
        spans = [(s, min(s + chunk, frames)) for s in range(0, frames, chunk)]
        total_steps = 3 * len(spans)
        max_gain = float(10 ** (params["max_gain_db"] / 20))
        cleanup, kappa = float(params["cleanup"]), float(params["cleanup_bias"])

        # Spectra are kept between passes when they fit a memory budget (a few minutes of
        # stereo); longer files recompute them chunk by chunk.
        cache: dict[int, tuple[int, torch.Tensor, torch.Tensor]] = {}
        scratch: list[np.ndarray] = []
        cache_ok = 2 * channels * bins * cfg.frames_for(frames + 2 * margin * len(spans)) * 8 < _STFT_CACHE_BYTES

        def spectra(s: int, e: int) -> tuple[int, torch.Tensor, torch.Tensor]:
            """Mix and acapella STFTs of a chunk with its margins, in one batched STFT."""
            a0, a1 = max(s - margin, 0), min(e + margin, frames)
            spec = _frames_stft((mix.samples[:, a0:a1], aca[:, a0:a1]), cfg, device, workers, scratch)  # (2C, F, T)
            return a0, spec[:channels], spec[channels:]

        # Pass 1: per-block sums for the static EQ's least squares (core frames only). Blocks
        # of a few seconds give the jackknife variance that decides how much EQ detail to trust.
        song_frames = max(frames // hop, 1)
        block_frames = int(min(max(song_frames // 8, 16), round(4.0 * rate / hop)))
        cross_blocks: list[torch.Tensor] = []
        power_blocks: list[torch.Tensor] = []
        for i, (s, e) in enumerate(spans):
            check_cancel(cancel)
            a0, x, a = spectra(s, e)
            if cache_ok:
                cache[s] = (a0, x, a)
            t0, t1 = (s - a0) // hop, (e - a0) // hop
            for b0 in range(t0, t1, block_frames):
                b1 = min(b0 + block_frames, t1)
                xb, ab = x[..., b0:b1], a[..., b0:b1]
                cross_blocks.append(torch.linalg.vecdot(ab, xb).to(torch.complex128))  # Σ_t X·A*
                power_blocks.append(_power(ab).sum(-1).to(torch.float64))
            if progress:
                progress((i + 1) / total_steps, "Learning the acapella's EQ")
        eq = _hierarchical_eq(
            torch.stack(cross_blocks), torch.stack(power_blocks), rate, cfg.n_fft,
            float(params["eq_smoothing_octaves"]),
        ).to(torch.complex64)
        eq = eq * torch.clamp(max_gain / (eq.abs() + _EPS), max=1.0)
        eq_t = eq[..., None]  # (C, F, 1)

        band_np = _band_index(bins, rate, cfg.n_fft, int(params["gain_bands"]))
        n_bands = int(band_np.max()) + 1
        band_of_bin = torch.from_numpy(band_np).to(device)
        band_rows = _band_matrix(band_np, n_bands).to(device)  # (2·bands, F)
        white = _whitening_bands(bins, rate, cfg.n_fft).to(device)  # (F, W)
        white_rows = (white / white.sum(0, keepdim=True).clamp(min=_EPS)).T.contiguous()  # (W, F)
        fine_on = bool(params["fine_gain"])
        step = _fine_step(hop, rate)
        n_steps = -(-frames // step)
        fine_num = np.zeros((2, n_steps))
        fine_den = np.zeros((2, n_steps))
        # The two halves of the spectrum for the fine gain's cross-validation: alternate
        # half-octaves (wide enough that little leaks between them through the window).
        freqs = np.arange(bins) * rate / cfg.n_fft
        half_octave = np.floor(2 * np.log2(np.maximum(freqs, 1.0) / 100.0)).astype(np.int64)
        # The fine gain's statistics at 1/decim of the rate (about 11 kHz of bandwidth kept).
        decim = max(1, rate // 22_050)
        while decim > 1 and (cfg.n_fft % (4 * decim) or step % decim):
            decim //= 2
        kept_bins = cfg.n_fft // (2 * decim) + 1
        split_a = torch.from_numpy((half_octave % 2 == 0).astype(np.float32)).to(device)[:kept_bins, None]
        white_kept = white[:kept_bins].contiguous()
        vocals = np.zeros_like(mix.samples)
        choices: list[int] = []
        band_gains: dict[int, torch.Tensor] = {}
        weighted_buffer: torch.Tensor | None = None

        def vocal_spectrum(x: torch.Tensor, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            """V = EQ · band gain · A (+ clean-up), complex ``(C, F, T)``, computed in A's place."""
            v = a
            for sl in _frame_slices(a.shape[-1], _BLOCK_FRAMES):
                v[..., sl] *= eq_t * torch.index_select(g[..., sl], 1, band_of_bin)
            if cleanup > 0:
                v += cleanup * _local_refinement(x - v, v, kappa)
            return v

        # Pass 2: time-varying band gains, the filtered acapella, optional clean-up, and the
        # whitened mix and vocal whose products give the fine gain's least squares.
        for i, (s, e) in enumerate(spans):
            check_cancel(cancel)
            a0, x, a = cache.pop(s) if s in cache else spectra(s, e)
            frames_c = x.shape[-1]
            # Per band and bin parity sums (C, 2·bands, T): Σ Re(X·Y*), Σ|Y|², Σ|X − Y|²·|Y|²
            # (Y = EQ'd acapella); parity halves serve cross-validation. Residual power per
            # third-octave band (C, W, T) for the whitening.
            sums = [torch.empty(channels, 2 * n_bands, frames_c, device=device) for _ in range(3)]
            resid = torch.empty(white_rows.shape[0], frames_c, device=device)
            for sl in _frame_slices(frames_c, _BLOCK_FRAMES):
                xb, yb = x[..., sl], eq_t * a[..., sl]
                xy = xb.real * yb.real + xb.imag * yb.imag
                yy = _power(yb)
                rr = _power(xb) - 2.0 * xy + yy
                torch.matmul(band_rows, xy, out=sums[0][..., sl])
                torch.matmul(band_rows, yy, out=sums[1][..., sl])
                torch.matmul(band_rows, rr * yy, out=sums[2][..., sl])
                if fine_on:  # the channels' sum (mid) carries the fine gain's statistics
                    torch.matmul(white_rows, _power(_channel_sum(xb - yb)), out=resid[..., sl])
            halves = [(t[:, 0::2], t[:, 1::2]) for t in sums]  # even bins, odd bins
            both = [h[0] + h[1] for h in halves]
            band_g, broad_g = _dynamic_gains(both[0], both[1], both[2], gain_frames, max_gain)
            # Keep the time-varying gains only where they predict the other half of the bins
            # better than the static fit (per channel, per chunk): an unprocessed acapella stays
            # static instead of picking up the accompaniment's noise.
            held_out = torch.zeros(3, channels, dtype=torch.float64, device=device)
            for train, test in ((0, 1), (1, 0)):
                g_fit = _dynamic_gains(halves[0][train], halves[1][train], halves[2][train],
                                       gain_frames, max_gain)
                xy_t, yy_t = halves[0][test], halves[1][test]
                broad_fit = g_fit[1]
                for c_i, cand in enumerate((torch.ones_like(g_fit[0]), broad_fit.expand_as(g_fit[0]), g_fit[0])):
                    held_out[c_i] += (-2.0 * cand * xy_t + cand * cand * yy_t).sum(dim=(1, 2)).double()
            choice = held_out.argmin(dim=0)  # (C,) 0 static, 1 broadband, 2 per band
            g = torch.stack([
                torch.ones_like(band_g[c]) if int(choice[c]) == 0
                else broad_g[c].expand_as(band_g[c]) if int(choice[c]) == 1 else band_g[c]
                for c in range(channels)
            ])
            choices.extend(int(c) for c in choice)
            yy_w = _smooth_time(both[1], gain_frames)
            g = torch.where(yy_w > _EPS, g, torch.ones_like(g))
            band_gains[s] = g
            v = vocal_spectrum(x, a, g)
            length = min(e + margin, frames) - a0
            c0, c1 = s - a0, e - a0  # the chunk's core, in samples from a0
            seg = _overlap_add_istft(v, length, cfg, 1, workers)[:, c0:c1].cpu().numpy()
            if fine_on:
                # Whitening weights 1/σ per cell from the residual's third-octave power (3 frames),
                # interpolated over the bins; mix and vocal (channels summed) weighted alike, so
                # Σ m_w·v_w is the GLS cross term of the fine gain. Below rate/(2·decim) only,
                # at 1/decim of the rate: the statistics need the voice's band, not every sample.
                power = _smooth_time(resid, 3) / white_rows.sum(-1, keepdim=True)
                w_band = torch.rsqrt(power + 1e-4 * power.mean() + _EPS)  # (W, T)
                if weighted_buffer is None or weighted_buffer.shape[-1] < frames_c:
                    weighted_buffer = torch.empty((4, kept_bins, frames_c), dtype=x.dtype, device=device)
                weighted = weighted_buffer[..., :frames_c]  # reused: fresh memory costs page faults
                for sl in _frame_slices(frames_c, _BLOCK_FRAMES):
                    w_cell = torch.matmul(white_kept, w_band[:, sl])  # (F', t)
                    xm, vm = _channel_sum(x[:, :kept_bins, sl]), _channel_sum(v[:, :kept_bins, sl])
                    w_a = w_cell * split_a
                    w_b = w_cell - w_a
                    weighted[0, :, sl] = w_a * xm
                    weighted[1, :, sl] = w_a * vm
                    weighted[2, :, sl] = w_b * xm
                    weighted[3, :, sl] = w_b * vm
                core = _overlap_add_istft(weighted, length, cfg, decim, workers)[:, c0 // decim : c1 // decim]
                n = core.shape[-1]
                pad = -n % (step // decim)
                k0 = s // step
                for half in (0, 1):
                    m_w, v_w = core[2 * half], core[2 * half + 1]
                    for row, t in ((fine_num, m_w * v_w), (fine_den, v_w.square())):
                        per_step = torch.nn.functional.pad(t, (0, pad)).view(-1, step // decim).sum(-1)
                        row[half, k0 : k0 + per_step.shape[0]] = per_step.double().cpu().numpy()[: n_steps - k0]
            vocals[:, s:e] = seg
            if cache_ok:
                cache[s] = (a0, x, v)
            if progress:
                progress((len(spans) + i + 1) / total_steps, "Matching the acapella's level")

        # The fine gain track, applied to the vocal in the time domain (then mask and stems).
        fine_g, fine_tc = (None, 0.0)
        if fine_on:
            fine_g, fine_tc = _fine_gain(fine_num, fine_den)
        centres = np.arange(n_steps) * step + (step - 1) / 2
        if fine_g is not None:
            fine_g = np.clip(fine_g, 0.0, max_gain)

        mask_frames = cfg.frames_for(frames)
        mask = np.zeros((channels, bins, mask_frames), dtype=np.float16)
        mask_t = torch.from_numpy(mask)
        gain_stats: list[torch.Tensor] = []
        for i, (s, e) in enumerate(spans):
            check_cancel(cancel)
            if s in cache:
                a0, x, v = cache.pop(s)
            else:
                a0, x, a = spectra(s, e)
                v = vocal_spectrum(x, a, band_gains[s])
            t0 = (s - a0) // hop
            t1 = min((e - a0) // hop + (1 if e == frames else 0), x.shape[-1])
            f0 = s // hop
            n = min(t1 - t0, mask_frames - f0)
            frame_gain = None
            if fine_g is not None:
                vocals[:, s:e] *= np.interp(np.arange(s, e), centres, fine_g).astype(np.float32)
                frame_gain = torch.from_numpy(
                    np.interp((f0 + np.arange(n)) * hop, centres, fine_g).astype(np.float32)).to(device)
            # Mask (what the GUI shows and edits): the vocal's share of the energy per bin.
            for sl in _frame_slices(n, _BLOCK_FRAMES):
                vb = v[..., t0 + sl.start : t0 + sl.stop]
                if frame_gain is not None:
                    vb = vb * frame_gain[sl]
                vv = _power(vb)
                share = vv / (vv + _power(x[..., t0 + sl.start : t0 + sl.stop] - vb) + _EPS)
                mask_t[:, :, f0 + sl.start : f0 + sl.stop] = share.to(torch.float16).cpu()
            gain_stats.append(band_gains[s][..., t0:t1].flatten().cpu())
            if progress:
                progress((2 * len(spans) + i + 1) / total_steps, "Subtracting the matched vocal")
        instrumental = mix.samples - vocals
        gains_db = 20 * np.log10(np.maximum(torch.cat(gain_stats).numpy(), 1e-6)) if gain_stats else np.zeros(1)
        eq_db = 20 * np.log10(np.maximum(eq.abs().mean(0).cpu().numpy(), 1e-9))
        fine_info: dict[str, Any] = {"used": fine_g is not None}
        if fine_g is not None:
            den_all = fine_den.sum(0)
            active = den_all > 1e-3 * den_all.max()
            fine_db = 20 * np.log10(np.maximum(fine_g[active], 1e-6))
            fine_info.update({
                "time_constant_ms": round(fine_tc * step / rate * 1000, 2),
                "gain_db_min": float(fine_db.min()), "gain_db_max": float(fine_db.max()),
            })
        return SeparationResult(
            stems={
                "vocals": Audio(vocals.astype(np.float32, copy=False), rate),
                "instrumental": Audio(instrumental, rate),
            },
            masks={"vocals": mask, "instrumental": (1.0 - mask_t).numpy()},
            stft=cfg,
            info={
                "eq_db_median": float(np.median(eq_db)),
                "band_gain_db_min": float(np.min(gains_db)),
                "band_gain_db_max": float(np.max(gains_db)),
                "chunks": len(spans),
                "dynamic_gain_choice": {
                    "static": choices.count(0), "broadband": choices.count(1), "per_band": choices.count(2),
                },
                "fine_gain": fine_info,
            },
        )
