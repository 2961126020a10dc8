"""Separating the query's sound from given segments: reference → initial mask → optimisation.

Inputs are the mix, the query clip and a (possibly user-edited) list of segments; detection is
:mod:`engine.query.detection`. Everything runs at the mix's own rate on the
STFT of :func:`query_stft` (``engine.spectral``'s convention with a 46-ms window: exactly
:data:`engine.spectral.DEFAULT_STFT` at 44.1 kHz, the U-Net's file-rate grid at any rate); the mask is estimated on a compact log-frequency band
axis (linear below ~700 Hz at 44.1 kHz, 24 bands per octave above: ~150 bands, the analogue of
the seed's mel axis) and mapped back to the STFT bins for the output.

0. **Source prior** (``prior="unet"``, the default): the shipped 4-stem U-Net separates the mix
   into drums, bass, other and vocals; the *query* is separated by the same network, and the
   share of its energy in each stem says which stem(s) hold the query's sound
   (``w_s ∝ share_s^stem_weight_power``). The prior mask is ``Σ_s w_s M_s``. Without it
   (``prior="none"``: sounds outside those stems, or no weights) the mask comes from the query
   alone (steps 1–2). Measured (bench/bench_query.py): the query-only factorisation cannot
   generalise from 2 s of example to a whole song (≈ +0.6 dB SI-SDR on synthesized songs with
   oracle segments), the routed U-Net prior does better (see bench/results/query.json).
1. **Reference ("stitched" from the query).** The query's band spectrogram is factorised
   (KL-NMF) into ``query_components`` spectral atoms. The mix frames *outside* the segments give
   ``background_components`` atoms of what is not the target. In the segments the mix is
   explained as ``W_q H_q + W_b H_b + W_f H_f`` (query atoms fixed, background atoms fixed, a few
   free atoms for sounds seen only inside the segments; KL-NMF, activations updated), so each
   frame's target estimate ``R = W_q H_q + W_f H_f`` is stitched together from the query's own
   spectra — the seed's stitched reference, aligned to what actually plays instead of pasted in
   order — plus the free atoms: what the segments hold and the background does not is the
   target's material the 2-s query did not show (other notes, other syllables). Counted as
   rest instead, they pushed sung notes the query did not hold out of the target.
2. **Initial mask**: the Wiener ratio ``N = R^α / (R^α + B^α)`` of target and the rest, mapped
   to the STFT bins; with a prior ``M0 = prior^(1 − γ) · N^γ``, ``γ = gamma_profile`` (the seed's
   "query frequency profile influence").
3. **Optimisation** (the seed's DGMO step, made well-posed): on the band axis, mask logits
   refined by Adam (``opt_steps`` steps, ``lr``) on ``mean (log(M·|X| + ε) − log(R + ε))²`` with
   the reference ``R`` = the initial mask's target estimate, plus ``lambda_tv``·total variation
   and ``lambda_sat``·``M(1 − M)``; after each step the mask is blurred (``blur``) and clamped to
   ``[mask_floor, 1]``. The bin-level mask is ``M0`` times the optimised band mask's ratio to
   its start (so the prior's harmonic detail survives the coarse band axis).
4. **Time support**: outside the segments the mask is 0; each segment fades in/out over its
   padding; the envelope is raised to ``time_mask_sharpening``.
5. **Output**: ``target = ISTFT(M · X)`` per channel (complex STFT, mix phase),
   ``residual = mix − target`` in the time domain, so target + residual = mix exactly. Masks
   ``{"target": M, "residual": 1 − M}`` ``(channels, bins, frames)`` float16.

Long files are processed in chunks of ``chunk_seconds`` (memory bounded by the chunk plus the
outputs); the factorisation's dictionaries are learned once for the whole song.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engine.audio import Audio, resample
from engine.errors import Cancelled
from engine.query.detection import Segment
from engine.spectral import DEFAULT_STFT, StftConfig, istft, stft

if TYPE_CHECKING:
    from engine.separators.unet import UNetSeparator

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]
_EPS = 1e-8


@dataclass(frozen=True)
class MaskParams:
    """Mask estimation settings: seed 002's balanced defaults except ``gamma_profile`` 0.1
    (seed 0.25; chosen by bench/calibrate_mask.py on held-out synthesized songs with true
    segments) and ``mask_floor`` 0 (seed 0.08); bench/bench_query.py measures the seed's two
    values beside them with true segments (``oracle_seed_mask_values``).

    Attributes:
        prior: ``"unet"`` (route the 4-stem U-Net's masks by the query) or ``"none"``.
        stem_weight_power: sharpness of the routing weights.
        gamma_profile: weight of the query-only mask against the prior (geometric).
        opt_steps, lr, lambda_tv, lambda_sat: the optimisation (seed values).
        mask_floor: lowest mask value inside the segments.
        blur: strength (0–1) of the 3×3 blur applied after each optimisation step.
        time_mask_sharpening: exponent of the segment envelope (seed 1.2).
        padding_ms: fade length at segment edges.
        query_components, background_components, free_components: NMF atoms.
        nmf_iterations: multiplicative-update iterations.
        wiener_power: α of the initial Wiener ratio.
        bands_per_octave: resolution of the band axis above the linear region.
        chunk_seconds: audio per processing chunk.
    """

    prior: str = "unet"
    stem_weight_power: float = 4.0
    gamma_profile: float = 0.1
    opt_steps: int = 18
    lr: float = 0.28
    lambda_tv: float = 0.008
    lambda_sat: float = 0.001
    mask_floor: float = 0.0
    blur: float = 0.1
    time_mask_sharpening: float = 1.2
    padding_ms: float = 50.0
    query_components: int = 16
    background_components: int = 24
    free_components: int = 4
    nmf_iterations: int = 60
    wiener_power: float = 2.0
    bands_per_octave: int = 24
    chunk_seconds: float = 60.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Band axis
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def band_filterbank(sample_rate: int, n_fft: int, bands_per_octave: int = 24) -> np.ndarray:
    """Triangular filters on a linear-then-logarithmic frequency axis, a partition of unity.

    Centres start at 0 Hz spaced one STFT bin apart until the log spacing
    (``2^(1/bands_per_octave)``) is wider, then go up geometrically to Nyquist. Every bin's
    weights over the bands sum to 1, so ``F.T @ band_values`` interpolates band values back to
    bins.

    Returns:
        float32 ``(bands, bins)``.
    """
    bins = n_fft // 2 + 1
    nyq = sample_rate / 2.0
    bin_hz = sample_rate / n_fft
    ratio = 2.0 ** (1.0 / bands_per_octave) - 1.0
    centres = [0.0]
    while centres[-1] < nyq:
        centres.append(centres[-1] + max(bin_hz, centres[-1] * ratio))
    centres[-1] = nyq
    if len(centres) >= 3 and centres[-1] - centres[-2] < 0.5 * (centres[-2] - centres[-3]):
        del centres[-2]
    c = np.asarray(centres)
    f = np.arange(bins) * bin_hz
    fb = np.zeros((c.size, bins), dtype=np.float64)
    for k in range(c.size):
        if k > 0:
            left = (f >= c[k - 1]) & (f <= c[k])
            fb[k, left] = (f[left] - c[k - 1]) / (c[k] - c[k - 1])
        if k < c.size - 1:
            right = (f >= c[k]) & (f < c[k + 1])
            fb[k, right] = (c[k + 1] - f[right]) / (c[k + 1] - c[k])
    fb[-1, f >= c[-1]] = 1.0
    fb /= fb.sum(axis=0, keepdims=True)
    keep = fb.sum(axis=1) > 0
    return fb[keep].astype(np.float32)


# ----------------------------------------------------------------------------------------------
# NMF (KL divergence, multiplicative updates)
# ----------------------------------------------------------------------------------------------


def _seeded(shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) + 0.1).to(device)


def nmf_kl(v: torch.Tensor, components: int, iterations: int, seed: int = 0,
           w_fixed: torch.Tensor | None = None, h_init: torch.Tensor | None = None,
           learn_from: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """KL-NMF ``v ≈ W H`` by multiplicative updates.

    Args:
        v: nonnegative ``(F, T)``.
        components: number of atoms learned (added after ``w_fixed``'s).
        iterations: updates.
        w_fixed: ``(F, K0)`` atoms kept fixed (columns ``0..K0``); the learned atoms follow.
        learn_from: unused placeholder for symmetry (atoms from ``w_fixed.shape[1]`` are learned).

    Returns:
        ``(W (F, K0 + components), H (K0 + components, T))``; atoms have unit L1 norm.
    """
    del learn_from
    f, t = v.shape
    dev = v.device
    scale = float(v.mean()) + _EPS
    k0 = 0 if w_fixed is None else int(w_fixed.shape[1])
    w_free = _seeded((f, components), seed, dev)
    w_free = w_free / w_free.sum(0, keepdim=True)
    w = torch.cat([w_fixed, w_free], dim=1) if w_fixed is not None else w_free
    k = w.shape[1]
    h = h_init if h_init is not None else _seeded((k, t), seed + 1, dev) * scale * f / max(k, 1)
    ones = torch.ones_like(v)
    for _ in range(iterations):
        wh = w @ h + _EPS
        h = h * (w.T @ (v / wh)) / (w.T @ ones + _EPS)
        if components > 0:
            wh = w @ h + _EPS
            wl = w[:, k0:]
            hl = h[k0:]
            wl = wl * ((v / wh) @ hl.T) / (ones @ hl.T + _EPS)
            norm = wl.sum(0, keepdim=True) + _EPS
            wl = wl / norm
            h = torch.cat([h[:k0], hl * norm.T], dim=0)
            w = torch.cat([w[:, :k0], wl], dim=1)
    return w, h


# ----------------------------------------------------------------------------------------------
# Time support
# ----------------------------------------------------------------------------------------------


def segment_envelope(segments: list[Segment], frame_times: np.ndarray, fade_seconds: float,
                     sharpening: float) -> np.ndarray:
    """Per-frame weight in [0, 1]: 1 inside the segments, raised-cosine fades of
    ``fade_seconds`` just inside each edge, 0 outside; raised to ``sharpening``."""
    env = np.zeros(frame_times.shape, dtype=np.float64)
    for s in segments:
        fade = min(fade_seconds, 0.5 * s.duration)
        inside = (frame_times >= s.start) & (frame_times <= s.end)
        w = np.ones(int(inside.sum()))
        if fade > 0:
            tt = frame_times[inside]
            rise = np.clip((tt - s.start) / fade, 0.0, 1.0)
            fall = np.clip((s.end - tt) / fade, 0.0, 1.0)
            w = np.minimum(0.5 - 0.5 * np.cos(np.pi * rise), 0.5 - 0.5 * np.cos(np.pi * fall))
        env[inside] = np.maximum(env[inside], w)
    out: np.ndarray = env ** max(sharpening, 1e-6)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Mask optimisation
# ----------------------------------------------------------------------------------------------


def _blur(m: torch.Tensor, strength: float) -> torch.Tensor:
    """3×3 separable ``[1/4, 1/2, 1/4]`` blur of ``(F, T)`` (edges replicated), mixed with the
    identity by ``strength``. Written as shifted sums: conv2d with 3-tap kernels is far slower
    on the CPU."""
    if strength <= 0:
        return m
    x = torch.cat([m[:1], m, m[-1:]], dim=0)
    x = 0.25 * x[:-2] + 0.5 * x[1:-1] + 0.25 * x[2:]
    x = torch.cat([x[:, :1], x, x[:, -1:]], dim=1)
    x = 0.25 * x[:, :-2] + 0.5 * x[:, 1:-1] + 0.25 * x[:, 2:]
    return (1 - strength) * m + strength * x


def mask_loss_and_grad(z: torch.Tensor, mix_bands: torch.Tensor, log_ref: torch.Tensor, eps: float,
                       params: MaskParams) -> tuple[float, torch.Tensor]:
    """The optimisation's loss and its gradient with respect to the logits ``z``, in closed form
    (autograd costs about as much again on the CPU; ``tests`` check it against autograd).

    ``L = mean (log(mV + ε) − log R)² + λ_TV (mean |Δ_t m| + mean |Δ_f m|) + λ_sat mean m(1 − m)``,
    ``m = σ(z)``.
    """
    f, t = z.shape
    n = float(f * t)
    m = torch.sigmoid(z)
    mv = m * mix_bands + eps
    r = torch.log(mv) - log_ref
    dt = m[:, 1:] - m[:, :-1]
    df = m[1:] - m[:-1]
    loss = (r.pow(2).sum() / n + params.lambda_tv * (dt.abs().mean() + df.abs().mean())
            + params.lambda_sat * (m * (1 - m)).mean())
    g = 2.0 * r * mix_bands / mv / n  # dL/dm of the fit term
    g += params.lambda_sat * (1 - 2 * m) / n
    if params.lambda_tv > 0:
        st = torch.sign(dt) * (params.lambda_tv / max(f * (t - 1), 1))
        sf = torch.sign(df) * (params.lambda_tv / max((f - 1) * t, 1))
        g[:, 1:] += st
        g[:, :-1] -= st
        g[1:] += sf
        g[:-1] -= sf
    return float(loss), g * m * (1 - m)


def optimise_mask(mask0: torch.Tensor, mix_bands: torch.Tensor, reference: torch.Tensor,
                  params: MaskParams) -> tuple[torch.Tensor, list[float]]:
    """Refine a band-domain mask (the seed's DGMO step): Adam on the mask logits.

    Args:
        mask0: ``(F, T)`` initial mask in [0, 1].
        mix_bands: ``(F, T)`` mix magnitude on the band axis.
        reference: ``(F, T)`` target magnitude estimate (the stitched reference).

    Returns:
        ``(mask (F, T) in [mask_floor, 1], losses per step)``.
    """
    floor = float(params.mask_floor)
    with torch.no_grad():
        m0 = mask0.clamp(max(floor, 1e-3), 1 - 1e-3)
        z = torch.log(m0 / (1 - m0))
        eps = 1e-6 * (float(mix_bands.mean()) + _EPS)
        log_ref = torch.log(reference + eps)
        beta1, beta2, adam_eps = 0.9, 0.999, 1e-8
        m1 = torch.zeros_like(z)
        m2 = torch.zeros_like(z)
        losses: list[float] = []
        for step in range(1, params.opt_steps + 1):
            loss, grad = mask_loss_and_grad(z, mix_bands, log_ref, eps, params)
            losses.append(loss)
            m1.mul_(beta1).add_(grad, alpha=1 - beta1)
            m2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            z -= (params.lr / (1 - beta1**step)) * m1 / ((m2 / (1 - beta2**step)).sqrt() + adam_eps)
            m = _blur(torch.sigmoid(z), params.blur).clamp(max(floor, 1e-4), 1 - 1e-4)
            z = torch.log(m / (1 - m))
        out = torch.sigmoid(z).clamp(floor, 1.0)
    return out, losses


# ----------------------------------------------------------------------------------------------
# The whole step
# ----------------------------------------------------------------------------------------------


def _check(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


@dataclass
class MaskOutput:
    """What :func:`separate_segments` returns (the separator wraps it in a SeparationResult)."""

    target: Audio
    residual: Audio
    masks: dict[str, np.ndarray]
    stft: StftConfig
    info: dict[str, Any]


def query_stft(sample_rate: int) -> StftConfig:
    """The STFT the query engine works in: a 46-ms window (n_fft 2048 at 44.1 kHz, i.e.
    :data:`engine.spectral.DEFAULT_STFT`), hop n_fft/4 — the U-Net's file-rate grid."""
    if sample_rate == 44100:
        return DEFAULT_STFT
    return StftConfig(n_fft=max(16, 2 * int(round(1024 * sample_rate / 22050 / 2))))


@dataclass
class SourcePrior:
    """The routed U-Net prior.

    Attributes:
        mask: ``(channels, bins, frames)`` float16 at :func:`query_stft` (0 where not computed),
            or None when it was not kept (very long mixes: the separation recomputes it around
            the segments).
        weights: the routing weight per stem; shares: the query's energy share per stem.
        seconds: time taken.
        frame_energy: ``(frames,)`` mono mix power per STFT frame (0 where not computed).
        routed_energy: ``(frames,)`` power of the routed mask applied to the mono mix.
        covered: ``(frames,)`` bool, frames the U-Net has seen.
        bands: ``(bands, frames)`` float32 mono mix magnitude on :func:`band_filterbank`'s axis
            (``bands_per_octave`` as asked), computed from the same STFT; the separation's
            factorisation reuses it when the whole mix is covered.
        estimate: ``(frames,)`` float32 mono audio at the mix's rate: the routed mask applied to
            the mono mix (what the U-Net hears of the query's stem(s)); None unless asked for.
        query_estimate: ``(samples,)`` float32 mono at the mix's rate: the query's own routed
            stems, weighted alike (the query heard as the mix is); None unless ``estimate``.
    """

    mask: np.ndarray | None
    weights: dict[str, float]
    shares: dict[str, float]
    seconds: float
    frame_energy: np.ndarray | None = None
    routed_energy: np.ndarray | None = None
    covered: np.ndarray | None = None
    bands: np.ndarray | None = None
    estimate: np.ndarray | None = None
    query_estimate: np.ndarray | None = None

    def window_level_db(self, window_starts: np.ndarray, window_seconds: float, sample_rate: int,
                        hop_length: int) -> np.ndarray:
        """Per analysis window: the routed stem's share of the mix's power in dB (≤ 0): how much
        of what plays there the U-Net puts in the query's stem(s). Windows the U-Net has not
        seen, or silent ones, get −100 dB.

        Args:
            window_starts: ``(N,)`` seconds; each window spans ``window_seconds``.
        """
        if self.frame_energy is None or self.routed_energy is None or self.covered is None:
            raise ValueError("this prior carries no frame energies (made without windows)")
        frames = self.frame_energy.size
        centres = np.arange(frames) * hop_length / sample_rate
        cs_mix = np.concatenate([[0.0], np.cumsum(self.frame_energy, dtype=np.float64)])
        cs_rt = np.concatenate([[0.0], np.cumsum(self.routed_energy, dtype=np.float64)])
        cs_cov = np.concatenate([[0], np.cumsum(self.covered.astype(np.int64))])
        a = np.searchsorted(centres, np.asarray(window_starts, dtype=np.float64), side="left")
        b = np.searchsorted(centres, np.asarray(window_starts, dtype=np.float64) + window_seconds, side="left")
        mix_e = cs_mix[b] - cs_mix[a]
        rt_e = cs_rt[b] - cs_rt[a]
        seen = (cs_cov[b] - cs_cov[a]) >= np.maximum(1, (b - a) // 2)
        floor = 1e-10 * max(float(self.frame_energy.max(initial=0.0)), 1e-30)
        out = np.full(a.shape, -100.0)
        ok = seen & (mix_e > floor)
        out[ok] = 10.0 * np.log10(np.maximum(rt_e[ok] / mix_e[ok], 1e-10))
        return out


#: The U-Net prior runs over long stretches in pieces of this many seconds, each with
#: ``PRIOR_CONTEXT_SECONDS`` of audio either side (memory stays bounded on hour-long mixes).
PRIOR_PIECE_SECONDS = 300.0
PRIOR_CONTEXT_SECONDS = 2.0


def prior_spans(segments: list[Segment], duration: float, margin_s: float = 2.0) -> list[tuple[float, float]]:
    """Stretches of the mix the prior must cover: the segments widened by ``margin_s`` (the
    U-Net's context), merged when they touch."""
    spans: list[tuple[float, float]] = []
    for seg in sorted(segments, key=lambda x: x.start):
        a, b = max(0.0, seg.start - margin_s), min(duration, seg.end + margin_s)
        if spans and a <= spans[-1][1] + margin_s:
            spans[-1] = (spans[-1][0], max(spans[-1][1], b))
        else:
            spans.append((a, b))
    return spans


def query_stem_split(query: Audio, rate: int, device: torch.device | str = "cpu",
                     unet: UNetSeparator | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The 4-stem U-Net on the query (at ``rate``, the mix's): each stem's share of the query's
    energy (they sum to 1) and each stem's mono estimate ``(samples,)`` float32."""
    from engine.separators.unet import UNetSeparator

    unet = unet or UNetSeparator()
    q = query if query.sample_rate == rate else Audio(resample(query.samples, query.sample_rate, rate), rate)
    rq = unet.separate(q, device=str(device), parameters={"stems": "4", "masks": False})
    energy = {k: float(np.sum(np.square(v.samples, dtype=np.float64))) for k, v in rq.stems.items()}
    total = sum(energy.values()) or 1.0
    mono = {k: v.samples.mean(axis=0, dtype=np.float32) for k, v in rq.stems.items()}
    return {k: v / total for k, v in energy.items()}, mono


def query_stem_shares(query: Audio, rate: int, device: torch.device | str = "cpu",
                      unet: UNetSeparator | None = None) -> dict[str, float]:
    """Where the 4-stem U-Net puts the query's energy: each stem's share (they sum to 1), with
    the query at ``rate`` (the mix's)."""
    return query_stem_split(query, rate, device, unet)[0]


def routing_weights(shares: dict[str, float], power: float) -> dict[str, float]:
    """Routing weight per stem: the shares raised to ``power``, normalised to sum to 1."""
    raw = {k: v ** power for k, v in shares.items()}
    norm = sum(raw.values()) or 1.0
    return {k: v / norm for k, v in raw.items()}


def unet_source_prior(mix: Audio, query: Audio, power: float = 4.0, device: torch.device | str = "cpu",
                      segments: list[Segment] | None = None, models_dir: str | None = None,
                      progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                      keep_mask: bool = True, bands_per_octave: int | None = 24,
                      estimate: bool = False) -> SourcePrior:
    """Separate mix and query with the shipped 4-stem U-Net; weight its masks by where the
    query's energy goes (see the module docstring). Also measures, per STFT frame, the mono
    mix's power and the routed mask's share of it (:meth:`SourcePrior.window_level_db`: the
    detector's stem gate).

    Args:
        segments: when given, the mix is separated only around them (2 s of context each
            side); elsewhere the prior is 0. The U-Net sets each span's level by the span's own
            RMS, so masks differ slightly from a whole-song pass (mean |Δ| ≈ 0.004 measured on
            a synthesized song), at a fraction of the cost when the sound plays in parts.
        keep_mask: False keeps only the frame energies (``mask`` None): for very long mixes,
            whose whole-song mask would not fit in memory comfortably.
        bands_per_octave: also keep the mono mix's band magnitudes on this axis (None: not).
        estimate: also render the routed stem estimate (mono; the detector listens to it).

    Raises:
        InputError: the U-Net's weights are missing or tampered with.
    """
    from engine.separators.unet import UNetSeparator, exact_stft_frames

    t = time.perf_counter()
    unet = UNetSeparator(models_dir)
    shares, query_stems = query_stem_split(query, mix.sample_rate, device, unet)
    weights = routing_weights(shares, power)
    query_estimate = None
    if estimate:  # the query heard as the mix will be: its routed stems
        query_estimate = np.zeros_like(next(iter(query_stems.values())))
        for k, w in weights.items():
            query_estimate += np.float32(w) * query_stems[k]
    del query_stems
    cfg = query_stft(mix.sample_rate)
    hop = cfg.hop_length
    frames = cfg.frames_for(mix.frames)
    mask = np.zeros((mix.channels, cfg.bins, frames), dtype=np.float16) if keep_mask else None
    frame_energy = np.zeros(frames, dtype=np.float64)
    routed_energy = np.zeros(frames, dtype=np.float64)
    covered = np.zeros(frames, dtype=bool)
    est = np.zeros(mix.frames, dtype=np.float32) if estimate else None
    fb: torch.Tensor | None = None
    bands: np.ndarray | None = None
    if bands_per_octave is not None:
        fb = torch.from_numpy(band_filterbank(mix.sample_rate, cfg.n_fft, bands_per_octave)).to(device)
        bands = np.zeros((fb.shape[0], frames), dtype=np.float32)
    spans = ([(0.0, mix.duration_seconds)] if segments is None
             else prior_spans(segments, mix.duration_seconds))
    if sum(b - a for a, b in spans) > 0.6 * mix.duration_seconds:
        spans = [(0.0, mix.duration_seconds)]  # one pass is cheaper than many long pieces
    covered_s = sum(b - a for a, b in spans) or 1.0
    done = 0.0
    dev = torch.device(device)
    x = mix.samples

    def mono(a0: int, b0: int) -> np.ndarray:
        return x[:, a0:b0].mean(axis=0, dtype=np.float32)[None]

    piece_frames = max(1, int(PRIOR_PIECE_SECONDS * mix.sample_rate) // hop)
    context = int(math.ceil(PRIOR_CONTEXT_SECONDS * mix.sample_rate / hop))
    for a_s, b_s in spans:
        first = int(a_s * mix.sample_rate) // hop  # on the frame grid
        b_span = min(mix.frames, int(math.ceil(b_s * mix.sample_rate)))
        # frames [first, stop) are the span's; it is processed in pieces of ≤ piece_frames with
        # `context` frames of audio each side (bounded memory for long mixes)
        stop = min(frames, cfg.frames_for(b_span - first * hop) + first)
        for k0 in range(first, stop, piece_frames):
            k1 = min(stop, k0 + piece_frames)
            a = max(first, k0 - context) * hop
            b = b_span if k1 == stop else min(b_span, (k1 + context) * hop + cfg.n_fft)
            base = done + (k0 - first) * hop / mix.sample_rate
            span = (k1 - k0) * hop / mix.sample_rate

            def scaled(fraction: float, message: str, base: float = base, span: float = span) -> None:
                if progress is not None:
                    progress(0.5 * min(1.0, (base + fraction * span) / covered_s), f"U-Net prior: {message}")

            _check(cancel)
            piece = Audio(np.ascontiguousarray(x[:, a:b]), mix.sample_rate)
            rm = unet.masks_only(piece, 4, device=str(device), progress=scaled, cancel=cancel)
            if rm.stft != cfg:
                raise RuntimeError(f"U-Net grid {rm.stft} differs from the query engine's {cfg}")
            f0 = a // hop
            # the piece's last frame is centred on its end: valid only at the mix's own end
            valid = rm.masks[next(iter(rm.masks))].shape[-1] - (0 if b == mix.frames else 1)
            k1 = min(k1, f0 + valid)
            if k1 <= k0:
                continue
            j0, j1 = k0 - f0, k1 - f0
            # with an estimate, the routed mask over the whole piece (its context included)
            h0, h1 = (0, valid) if est is not None else (j0, j1)
            acc = np.zeros((mix.channels, cfg.bins, h1 - h0), dtype=np.float32)
            for k, w in weights.items():
                if w > 1e-4:
                    acc += np.float32(w) * rm.masks[k][..., h0:h1].astype(np.float32)
            del rm
            np.clip(acc, 0.0, 1.0, out=acc)
            if est is not None:
                spec = exact_stft_frames(mono, mix.frames, cfg, f0, f0 + valid, dev)[0]  # (bins, valid)
                m_all = torch.from_numpy(acc.mean(axis=0)).to(dev)
                length = mix.frames - a if f0 + valid == frames else (valid - 1) * hop
                y = istft(spec * m_all, length, cfg).cpu().numpy()  # y[0] is sample a
                s1 = min(mix.frames if k1 == frames else k1 * hop, a + y.shape[-1])
                est[k0 * hop : s1] = y[k0 * hop - a : s1 - a]
                acc = acc[..., j0:j1]
                power_spec = spec[:, j0:j1].abs().square()
            else:
                power_spec = exact_stft_frames(mono, mix.frames, cfg, k0, k1, dev)[0].abs().square()
            if mask is not None:
                mask[:, :, k0:k1] = acc
            m_mono = torch.from_numpy(np.ascontiguousarray(acc.mean(axis=0))).to(dev)
            frame_energy[k0:k1] = power_spec.sum(0).double().cpu().numpy()
            routed_energy[k0:k1] = (m_mono.square() * power_spec).sum(0).double().cpu().numpy()
            if fb is not None and bands is not None:
                bands[:, k0:k1] = (fb @ power_spec.sqrt()).cpu().numpy()
            covered[k0:k1] = True
        done += b_s - a_s
    return SourcePrior(mask, weights, shares, time.perf_counter() - t, frame_energy, routed_energy, covered,
                       bands, est, query_estimate)


def _mono_bands(x: np.ndarray, cfg: StftConfig, fb: torch.Tensor, chunk_frames: int,
                device: torch.device, cancel: CancelFn | None) -> torch.Tensor:
    """Band magnitude ``(bands, frames)`` of the channel mean, computed in chunks."""
    from engine.separators.unet import exact_stft_frames

    total = x.shape[-1]
    frames = cfg.frames_for(total)
    mono = x.mean(axis=0, dtype=np.float32)[None]

    def get(a: int, b: int) -> np.ndarray:
        return mono[:, a:b]

    out = torch.empty((fb.shape[0], frames), device=device)
    for f0 in range(0, frames, chunk_frames):
        _check(cancel)
        f1 = min(frames, f0 + chunk_frames)
        spec = exact_stft_frames(get, total, cfg, f0, f1, device)[0]
        out[:, f0:f1] = fb @ spec.abs()
    return out


def _query_mask(v_mix: torch.Tensor, v_q: torch.Tensor, support: np.ndarray, params: MaskParams,
                dev: torch.device, info: dict[str, Any]) -> torch.Tensor:
    """Query-only band mask ``(bands, frames in support)`` from the factorisation (steps 1–2)."""
    w_q, _ = nmf_kl(v_q, params.query_components, params.nmf_iterations * 2, seed=1)
    outside = np.flatnonzero(~support)
    w_fixed = w_q
    k_b = 0
    if params.background_components > 0 and outside.size >= 4 * params.background_components:
        pick = outside[np.linspace(0, outside.size - 1, min(outside.size, 4000)).astype(np.int64)]
        w_b, _ = nmf_kl(v_mix[:, torch.from_numpy(pick).to(dev)], params.background_components,
                        params.nmf_iterations, seed=2)
        w_fixed = torch.cat([w_q, w_b], dim=1)
        k_b = params.background_components
    info["background_atoms"] = k_b
    v_in = v_mix[:, torch.from_numpy(np.flatnonzero(support)).to(dev)]
    w, h = nmf_kl(v_in, params.free_components, params.nmf_iterations, seed=3, w_fixed=w_fixed)
    kq = w_q.shape[1]
    kf = w.shape[1] - params.free_components  # the free atoms follow the fixed ones
    ref = w[:, :kq] @ h[:kq] + w[:, kf:] @ h[kf:]  # query atoms + what only the segments hold
    rest = w[:, kq:kf] @ h[kq:kf]  # the background's atoms
    a = params.wiener_power
    return ref.pow(a) / (ref.pow(a) + rest.pow(a) + _EPS)


def separate_segments(
    mix: Audio,
    query: Audio,
    segments: list[Segment],
    params: MaskParams | None = None,
    device: torch.device | str = "cpu",
    return_masks: bool = True,
    prior: SourcePrior | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> MaskOutput:
    """Pull the query's sound out of ``segments`` of ``mix`` (see the module docstring).

    Args:
        mix: float32 ``(channels, frames)`` at any rate.
        query: the query clip (any rate/channels; resampled to the mix's rate, mono).
        segments: where the target plays (seconds); may be empty (then target is silence).
        params: mask settings.
        return_masks: also return the masks (float16, one stem's size each).
        prior: a precomputed :class:`SourcePrior`; None with ``params.prior == "unet"``
            computes it (only when there are segments).

    Returns:
        :class:`MaskOutput` with ``target + residual == mix`` exactly (float32 subtraction).
    """
    from engine.separators.unet import exact_stft_frames

    params = params or MaskParams()
    if params.prior not in ("unet", "none"):
        raise ValueError(f"unknown prior {params.prior!r}")
    dev = torch.device(device)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    rate, channels, n = mix.sample_rate, mix.channels, mix.frames
    cfg = query_stft(rate)
    hop = cfg.hop_length
    frames = cfg.frames_for(n)
    frame_times = np.arange(frames) * hop / rate
    env = segment_envelope(segments, frame_times, params.padding_ms / 1000.0, params.time_mask_sharpening)
    support = env > 0
    masks: dict[str, np.ndarray] = {}
    if return_masks:
        masks["target"] = np.zeros((channels, cfg.bins, frames), dtype=np.float16)
    info: dict[str, Any] = {"frames_in_segments": int(support.sum()), "frames": frames, "prior": "none"}
    target = np.zeros_like(mix.samples)
    if support.any():
        if params.prior == "unet" and (prior is None or prior.mask is None):
            prior = unet_source_prior(mix, query, params.stem_weight_power, dev, segments=segments,
                                          progress=progress, cancel=cancel)
        if params.prior == "none":
            prior = None
        if prior is not None:
            assert prior.mask is not None
            if prior.mask.shape != (channels, cfg.bins, frames):
                raise ValueError(f"prior mask {prior.mask.shape} does not fit the mix's STFT "
                                 f"{(channels, cfg.bins, frames)}")
            info["prior"] = "unet"
            info["stem_weights"] = {k: round(v, 4) for k, v in prior.weights.items()}
            info["query_stem_shares"] = {k: round(v, 4) for k, v in prior.shares.items()}
            timings["prior"] = prior.seconds
        base = 0.5 if prior is not None else 0.0

        def step(fraction: float, message: str) -> None:
            if progress is not None:
                progress(base + (1 - base) * fraction, message)

        fb_np = band_filterbank(rate, cfg.n_fft, params.bands_per_octave)
        fb = torch.from_numpy(fb_np).to(dev)
        fbt = fb.T.contiguous()
        chunk_frames = max(64, int(params.chunk_seconds * rate / hop))
        idx = np.flatnonzero(support)
        # 1–2. the query-only mask on the band axis (frames in the segments)
        t = time.perf_counter()
        use_query = prior is None or params.gamma_profile > 0
        qmask: torch.Tensor | None = None
        if use_query:
            if (prior is not None and prior.bands is not None and prior.covered is not None
                    and prior.covered.all() and prior.bands.shape == (fb.shape[0], frames)):
                v_mix = torch.from_numpy(prior.bands).to(dev)  # computed with the prior's STFT
            else:
                v_mix = _mono_bands(mix.samples, cfg, fb, chunk_frames, dev, cancel)  # (Fb, T)
            q = resample(query.mono(), query.sample_rate, rate)
            v_q = fb @ stft(torch.from_numpy(q).to(dev), cfg).abs()  # (Fb, Tq)
            step(0.1, "Learning the query's spectra")
            qmask = _query_mask(v_mix, v_q, support, params, dev, info)
        timings["query_model"] = time.perf_counter() - t
        _check(cancel)
        step(0.3, "Optimising the mask")
        x = mix.samples

        def get(a0: int, b0: int) -> np.ndarray:
            return x[:, a0:b0]

        half = cfg.n_fft // 2
        gamma = float(params.gamma_profile) if prior is not None else 1.0
        losses: list[float] = []
        t_opt = t_apply = 0.0
        # 3–5 per chunk of output samples: initial bin mask, band optimisation, apply, ISTFT
        for s0 in range(0, n, chunk_frames * hop):
            _check(cancel)
            s1 = min(n, s0 + chunk_frames * hop)
            fa = max(0, (s0 - half) // hop)
            fz = min(frames, (s1 + half) // hop + 2)
            if not support[fa:fz].any():
                continue
            t = time.perf_counter()
            spec = exact_stft_frames(get, n, cfg, fa, fz, dev)  # (C, bins, k)
            e = torch.from_numpy(env[fa:fz]).to(dev)  # (k,), 0 outside the segments
            if prior is not None:
                assert prior.mask is not None
                m0 = torch.from_numpy(prior.mask[:, :, fa:fz]).to(dev).float()  # (C, bins, k)
            else:
                m0 = torch.ones((1, cfg.bins, fz - fa), device=dev)
            if qmask is not None:
                sup = np.flatnonzero(support[fa:fz])
                cols = torch.from_numpy(np.searchsorted(idx, sup + fa)).to(dev)
                qb = torch.zeros((fb.shape[0], fz - fa), device=dev)
                qb[:, torch.from_numpy(sup).to(dev)] = qmask[:, cols]
                qbins = (fbt @ qb).clamp(0.0, 1.0)[None]  # (1, bins, k)
                m0 = qbins.pow(gamma) * m0.pow(1 - gamma) if prior is not None else qbins
            # band-axis optimisation of the mono mask, applied as a ratio to the bin mask
            mag = spec.abs()
            mono_mag = mag.mean(0)  # (bins, k)
            mono_m0 = (m0 * mag).mean(0) / (mono_mag + _EPS)
            vb = fb @ mono_mag
            mb0 = ((fb @ (mono_m0 * mono_mag)) / (vb + _EPS)).clamp(0.0, 1.0)
            mb, l_c = optimise_mask(mb0, vb, mb0 * vb, params)
            losses = l_c if not losses else [u + v for u, v in zip(losses, l_c, strict=True)]
            ratio = fbt @ (mb / mb0.clamp_min(max(params.mask_floor, 1e-3)))  # (bins, k)
            t_opt += time.perf_counter() - t
            t = time.perf_counter()
            m = (m0 * ratio[None]).clamp(params.mask_floor, 1.0) * e
            if m.shape[0] != channels:
                m = m.expand(channels, -1, -1)
            off = fa * hop
            length = n - off if fz == frames else (fz - fa - 1) * hop
            y = istft(spec * m, length, cfg).cpu().numpy()  # (C, length); y[:, 0] is sample fa·hop
            hi = min(s1, off + length)
            target[:, s0:hi] = y[:, s0 - off : hi - off]
            if return_masks:
                k0, k1 = s0 // hop, (s1 // hop if s1 < n else frames)
                masks["target"][:, :, k0:k1] = m[..., k0 - fa : k1 - fa].to(torch.float16).cpu().numpy()
            t_apply += time.perf_counter() - t
            step(0.3 + 0.7 * s1 / max(n, 1), "Separating")
        timings["optimise"], timings["apply"] = t_opt, t_apply
        info["loss_first_last"] = [round(losses[0], 6), round(losses[-1], 6)] if losses else []
    residual = (mix.samples - target).astype(np.float32)
    if return_masks:
        masks["residual"] = (1.0 - masks["target"].astype(np.float32)).astype(np.float16)
    timings["total"] = time.perf_counter() - t_start
    info["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return MaskOutput(Audio(target, rate), Audio(residual, rate), masks, cfg, info)
