"""The ``reference`` engine: the acapella, filtered to sound as it does in the mix, subtracted.

The acapella is the vocal before the mix bus. In the mix it was level-matched, EQ'd, compressed
or limited with everything else. We learn a time-varying filter that maps the aligned acapella
``A`` onto the vocal as it sounds in the mix ``X`` and subtract it:

    V(c, f, t) = G(c, f) · g(c, b(f), t) · A(c, f, t)        vocals = ISTFT(V)
    instrumental = mix − vocals                              (so the stems sum to the mix)

* ``G`` — a static complex EQ per bin: least squares over the whole song,
  ``G = Σ_t X·A* / Σ_t |A|²``, smoothed over a fraction of an octave (an EQ is smooth in frequency;
  the smoothing also averages the instrumental's cross-term away). Being complex it also absorbs a
  small constant delay left by the align step.
* ``g`` — a slowly varying real gain per broad band (compression, limiting, fader rides): least
  squares over short sliding windows, shrunk toward 1 by how much the residual can explain
  (James–Stein style) so an unprocessed acapella keeps an exact unit gain instead of noise.
* optional residual clean-up: the part of the residual ``R = X − V`` that locally follows the
  predicted vocal (a small misalignment or a lossy acapella leaves a vocal with a slightly wrong
  phase or level) moves to the vocals: a shrunk local regression of R on V over 5 bins × 21 frames,
  times the clean-up strength.

Both passes stream over the song in chunks (margins cover the STFT and the gain window), so a
1-hour file costs a few chunks of memory, never a whole-song STFT.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

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
#: Spectra kept between the two passes up to this size (bytes).
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
    return z.real.square() + z.imag.square()


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


def _log_frequency_smoother(bins: int, sample_rate: int, octaves: float, n_fft: int) -> torch.Tensor:
    """Row-normalised ``(bins, bins)`` matrix averaging each bin over ±octaves/2 (at least ±1 bin)."""
    f = np.arange(bins) * sample_rate / n_fft
    lo = f * 2 ** (-octaves / 2)
    hi = f * 2 ** (octaves / 2)
    idx = np.arange(bins)
    lo_bin = np.minimum(np.floor(lo * n_fft / sample_rate), idx - 1)
    hi_bin = np.maximum(np.ceil(hi * n_fft / sample_rate), idx + 1)
    w = ((idx[None, :] >= lo_bin[:, None]) & (idx[None, :] <= hi_bin[:, None])).astype(np.float32)
    w /= w.sum(axis=1, keepdims=True)
    return torch.from_numpy(w)


def _eq_levels(
    cross_blocks: torch.Tensor, power_blocks: torch.Tensor, sample_rate: int, n_fft: int,
    finest_octaves: float,
) -> list[torch.Tensor]:
    """Per-bin complex EQ by least squares, shrunk level by level toward coarser estimates.

    Levels: one gain for all bins, then 1 octave, 1/3 octave, then ``finest_octaves``. At each
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

    Returns:
        the EQ at each level, coarsest (one broadband gain) first: complex128 ``(C, F)`` each.
    """
    k, _, bins = cross_blocks.shape
    device = cross_blocks.device
    num_all = cross_blocks.sum(dim=(0, 2))[:, None]
    den_all = power_blocks.sum(dim=(0, 2))[:, None] + _EPS
    parent = (num_all / den_all).expand(-1, bins)
    levels = [parent]
    for octaves, spread in ((1.0, 0.5), (1.0 / 3.0, 0.25), (finest_octaves, 0.15)):
        w = _log_frequency_smoother(bins, sample_rate, octaves, n_fft).to(device=device, dtype=torch.float64)
        num_k = torch.complex(cross_blocks.real @ w.T, cross_blocks.imag @ w.T)
        den_k = power_blocks @ w.T
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
    full = [unit, *_eq_levels(cross_blocks, power_blocks, sample_rate, n_fft, finest_octaves)]
    if k < 4:
        return full[1]  # too short to cross-validate: the broadband gain
    errors = torch.zeros(len(full), cross_blocks.shape[1], dtype=torch.float64, device=cross_blocks.device)
    for train, test in ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))):
        fitted = [unit, *_eq_levels(cross_blocks[train], power_blocks[train], sample_rate, n_fft, finest_octaves)]
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


@register
class ReferenceSeparator(Separator):
    name = "reference"
    title = "Reference subtraction (mix + acapella)"
    description = (
        "Learns how the acapella sounds inside the mix (a static EQ plus slowly varying band gains "
        "for compression and limiting) and subtracts it. Vocals = filtered acapella; "
        "instrumental = mix − vocals, so the stems always sum to the mix."
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
        rate, channels, frames = mix.sample_rate, mix.channels, mix.frames
        aca = _match_channels(acapella.astype(np.float32, copy=False), channels)
        cfg = StftConfig(n_fft=int(params["n_fft"]))
        hop, bins = cfg.hop_length, cfg.bins
        gain_frames = max(1, int(round(params["gain_window_seconds"] * rate / hop)))
        chunk = max(int(params["chunk_seconds"] * rate) // hop * hop, 8 * cfg.n_fft)
        margin = (gain_frames + 8) * hop + cfg.n_fft
        spans = [(s, min(s + chunk, frames)) for s in range(0, frames, chunk)]
        total_steps = 2 * len(spans)

        # Keep pass 1's spectra for pass 2 when they fit a memory budget (a few minutes of
        # stereo); longer files recompute them chunk by chunk.
        cache: dict[int, tuple[int, torch.Tensor, torch.Tensor]] = {}
        cache_ok = 2 * channels * bins * cfg.frames_for(frames + 2 * margin * len(spans)) * 8 < _STFT_CACHE_BYTES

        def segment(s: int, e: int) -> tuple[int, torch.Tensor, torch.Tensor]:
            if s in cache:
                return cache.pop(s)
            a0, a1 = max(s - margin, 0), min(e + margin, frames)
            x = stft(torch.from_numpy(mix.samples[:, a0:a1]), cfg, device)  # (C, F, T)
            a = stft(torch.from_numpy(np.ascontiguousarray(aca[:, a0:a1])), cfg, device)
            return a0, x, a

        # Pass 1: per-block sums for the static EQ's least squares (core frames only). Blocks
        # of a few seconds give the jackknife variance that decides how much EQ detail to trust.
        song_frames = max(frames // hop, 1)
        block_frames = int(min(max(song_frames // 8, 16), round(4.0 * rate / hop)))
        cross_blocks: list[torch.Tensor] = []
        power_blocks: list[torch.Tensor] = []
        for i, (s, e) in enumerate(spans):
            check_cancel(cancel)
            a0, x, a = segment(s, e)
            if cache_ok:
                cache[s] = (a0, x, a)
            t0, t1 = (s - a0) // hop, (e - a0) // hop
            xa = x[..., t0:t1] * a[..., t0:t1].conj()
            aa = _power(a[..., t0:t1])
            for b0 in range(0, t1 - t0, block_frames):
                cross_blocks.append(xa[..., b0 : b0 + block_frames].sum(-1).to(torch.complex128))
                power_blocks.append(aa[..., b0 : b0 + block_frames].sum(-1).to(torch.float64))
            if progress:
                progress((i + 1) / total_steps, "Learning the acapella's EQ")
        eq = _hierarchical_eq(
            torch.stack(cross_blocks), torch.stack(power_blocks), rate, cfg.n_fft,
            float(params["eq_smoothing_octaves"]),
        ).to(torch.complex64)
        max_gain = float(10 ** (params["max_gain_db"] / 20))
        eq = eq * torch.clamp(max_gain / (eq.abs() + _EPS), max=1.0)

        parity_of_bin = torch.arange(bins, device=device) % 2
        choices: list[int] = []
        band_of_bin = torch.from_numpy(_band_index(bins, rate, cfg.n_fft, int(params["gain_bands"]))).to(device)
        n_bands = int(band_of_bin.max()) + 1
        vocals = np.zeros_like(mix.samples)
        mask_frames = cfg.frames_for(frames)
        mask = np.zeros((channels, bins, mask_frames), dtype=np.float16)
        gain_stats: list[torch.Tensor] = []
        cleanup = float(params["cleanup"])
        kappa = float(params["cleanup_bias"])

        # Pass 2: time-varying band gains, the filtered acapella, optional clean-up, masks.
        for i, (s, e) in enumerate(spans):
            check_cancel(cancel)
            a0, x, a = segment(s, e)
            y = eq[..., None] * a  # EQ'd acapella (C, F, T)
            xy = (x * y.conj()).real
            yy = _power(y)
            # Per band and bin parity sums: (C, 2·bands, T); parity halves serve cross-validation.
            idx = (2 * band_of_bin + parity_of_bin).view(1, -1, 1).expand_as(xy)
            sums = [torch.zeros(channels, 2 * n_bands, xy.shape[-1], device=device).scatter_add_(1, idx, v)
                    for v in (xy, yy, _power(x - y) * yy)]
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
            v = y * torch.gather(g, 1, band_of_bin.view(1, -1, 1).expand(channels, -1, g.shape[-1]))
            if cleanup > 0:
                v = v + cleanup * _local_refinement(x - v, v, kappa)
            seg = istft(v, min(e + margin, frames) - a0, cfg).cpu().numpy()
            vocals[:, s:e] = seg[:, s - a0 : e - a0]
            # Mask (what the GUI shows and edits): the vocal's share of the energy per bin.
            t0 = (s - a0) // hop
            t1 = min((e - a0) // hop + (1 if e == frames else 0), x.shape[-1])
            f0 = s // hop
            vv = _power(v[..., t0:t1])
            share = vv / (vv + _power(x[..., t0:t1] - v[..., t0:t1]) + _EPS)
            n = min(t1 - t0, mask_frames - f0)
            mask[:, :, f0 : f0 + n] = share[..., :n].cpu().numpy().astype(np.float16)
            gain_stats.append(g[..., t0:t1].flatten().cpu())
            if progress:
                progress((len(spans) + i + 1) / total_steps, "Subtracting the matched vocal")
        instrumental = (mix.samples - vocals).astype(np.float32)
        gains_db = 20 * np.log10(np.maximum(torch.cat(gain_stats).numpy(), 1e-6)) if gain_stats else np.zeros(1)
        eq_db = 20 * np.log10(np.maximum(eq.abs().mean(0).cpu().numpy(), 1e-9))
        return SeparationResult(
            stems={
                "vocals": Audio(vocals.astype(np.float32), rate),
                "instrumental": Audio(instrumental, rate),
            },
            masks={"vocals": mask, "instrumental": (1.0 - mask.astype(np.float32)).astype(np.float16)},
            stft=cfg,
            info={
                "eq_db_median": float(np.median(eq_db)),
                "band_gain_db_min": float(np.min(gains_db)),
                "band_gain_db_max": float(np.max(gains_db)),
                "chunks": len(spans),
                "dynamic_gain_choice": {
                    "static": choices.count(0), "broadband": choices.count(1), "per_band": choices.count(2),
                },
            },
        )
