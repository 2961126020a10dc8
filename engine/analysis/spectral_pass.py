"""One streaming pass over the STFTs of an estimate (and its reference) collecting every sum the
spectral metrics need, so a 1-hour stem never holds a full-resolution spectrogram in memory.

The STFT is :func:`engine.spectral.stft` (the one convention), taken over chunks of frames with
enough margin that every frame equals the frame of the whole-signal STFT (see
:func:`stft_chunks`). Analysis window: the power of two nearest to 46 ms (2048 samples at 44.1
and 48 kHz, the seeds' window), hop a quarter of it, at the stem's own rate, every channel.

Collected per frequency bin (summed over channels and frames): ``Σ|R|``, ``Σ|E|``, ``Σ|R|²``,
``Σ|E|²``, ``Σ|R||E|``, ``Σ(|E|-|R|)²``, ``Σ|E-R|²``, ``ΣRe(E·R*)``; per frame: energy per
band (and in total) of both, the phase agreement terms; the mel power (for onsets); reduced
log-frequency power images (for figures); the magnitude-weighted histogram of phase
differences; and the musical-noise counts of :mod:`engine.analysis.artifacts`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

from engine.analysis import artifacts
from engine.analysis.onsets import mel_filterbank
from engine.errors import Cancelled
from engine.spectral import BANDS, StftConfig, band_masks, stft

CHUNK_FRAMES = 2048
IMAGE_ROWS = 160
IMAGE_COLUMNS = 1200
PHASE_HIST_BINS = 72
PHASE_HIST_STRIDE = 4
CONTEXT_FRAMES = artifacts.TIME_NEIGHBOUR_FRAMES


def analysis_config(sample_rate: int) -> StftConfig:
    """The analysis STFT at ``sample_rate``: power-of-two window nearest to 46.4 ms, hop n/4."""
    n_fft = int(2 ** round(math.log2(max(sample_rate * 0.0464, 256))))
    return StftConfig(n_fft=n_fft)


def stft_chunks(
    samples: np.ndarray, config: StftConfig, chunk_frames: int = CHUNK_FRAMES, context: int = 0
) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """The STFT of ``samples`` in chunks of frames, each equal to the whole-signal STFT's frames.

    Args:
        samples: ``(channels, n)`` float.
        config: the STFT.
        chunk_frames: frames per chunk (the core).
        context: extra frames delivered on each side of the core (clipped at the ends).

    Yields:
        ``(core_start, core_stop, first, spec)``: ``spec`` is complex64 numpy
        ``(channels, bins, frames)`` holding frames ``first .. first + spec.shape[-1]``, which
        include the core frames ``core_start .. core_stop``.
    """
    n = samples.shape[-1]
    hop = config.hop_length
    total = config.frames_for(n)
    margin = -(-(config.n_fft // 2) // hop) * hop  # ≥ n_fft/2, a multiple of the hop
    for core_start in range(0, total, chunk_frames):
        core_stop = min(total, core_start + chunk_frames)
        first = max(0, core_start - context)
        last = min(total, core_stop + context)  # exclusive
        s0 = max(0, first * hop - margin)
        s1 = min(n, (last - 1) * hop + margin + 1)
        spec = stft(np.ascontiguousarray(samples[:, s0:s1]), config).numpy()
        k0 = (first * hop - s0) // hop
        yield core_start, core_stop, first, spec[..., k0 : k0 + (last - first)]


def _bin_sum(x: np.ndarray) -> np.ndarray:
    """``(C, bins, t)`` float32 → per-bin sums ``(bins,)`` float64 (channels first: contiguous)."""
    return x.sum(axis=0).sum(axis=1).astype(np.float64)


def _band_frames(p_frames: np.ndarray, edges: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per-frame sums ``(bands + 1, t)`` of ``p_frames (bins, t)``: each band (bins
    ``lo..hi``), then all bins. One reduceat over the distinct band edges."""
    lo, hi = edges
    bins, t = p_frames.shape
    bounds = np.unique(np.r_[0, lo, hi])  # all ≤ bins; a zero row makes index ``bins`` valid
    seg = np.add.reduceat(np.vstack([p_frames, np.zeros((1, t), p_frames.dtype)]), bounds, axis=0)
    cums = np.zeros((bounds.size + 1, t))
    np.cumsum(seg, axis=0, dtype=np.float64, out=cums[1:])  # cums[k] = Σ p[0 : bounds[k]]
    out = np.empty((lo.size + 1, t))
    out[:-1] = cums[np.searchsorted(bounds, hi)] - cums[np.searchsorted(bounds, lo)]
    out[-1] = cums[-1]
    return out


def _windowed_energy(total: np.ndarray, p_frames: np.ndarray, n_fft: int) -> np.ndarray:
    """``Σ_n (w[n]·x[n])²`` per frame from the one-sided STFT power (Parseval): the DC and
    Nyquist bins appear once in the one-sided spectrum, every other bin stands for two."""
    return (2.0 * total - p_frames[0].astype(np.float64) - p_frames[-1].astype(np.float64)) / n_fft


def _log_rows(freqs: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Averaging matrix ``(rows, bins)`` onto geometric bands from 30 Hz to Nyquist."""
    f_max = max(float(freqs[-1]), 60.0)
    edges = np.geomspace(30.0, f_max, rows + 1)
    w = np.zeros((rows, freqs.size), dtype=np.float32)
    for r in range(rows):
        sel = np.flatnonzero((freqs >= edges[r]) & (freqs < edges[r + 1]))
        if sel.size == 0:
            sel = np.array([int(np.argmin(np.abs(freqs - math.sqrt(edges[r] * edges[r + 1]))))])
        w[r, sel] = 1.0 / sel.size
    return w, np.sqrt(edges[:-1] * edges[1:])


@dataclass
class SpectralSums:
    """Everything one pass collects. ``R`` = reference, ``E`` = estimate; shapes in comments."""

    sample_rate: int
    config: StftConfig
    channels: int
    frames: int
    has_reference: bool
    band_names: list[str]
    band_of_bin: np.ndarray  # (bins,) index into band_names, -1 outside the bands
    freqs_hz: np.ndarray  # (bins,)
    bin_sums: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (bins,) float64
    frame_band_ref: np.ndarray | None = None  # (bands + 1, frames): bands then total
    frame_band_est: np.ndarray | None = None
    frame_band_err: np.ndarray | None = None
    frame_cross: np.ndarray | None = None  # (frames,) Σ Re(E R*)
    frame_magprod: np.ndarray | None = None  # (frames,) Σ |E||R|
    mel_ref: np.ndarray | None = None  # (n_mels, frames)
    mel_est: np.ndarray | None = None
    image_ref: np.ndarray | None = None  # (rows, columns) mean power
    image_est: np.ndarray | None = None
    image_rows_hz: np.ndarray | None = None
    image_columns_seconds: np.ndarray | None = None
    phase_hist: np.ndarray | None = None  # (PHASE_HIST_BINS,) weight per Δφ bin, -π..π
    musical_noise: artifacts.MusicalNoiseCounts | None = None
    reference_musical_noise: artifacts.MusicalNoiseCounts | None = None
    frame_rms_est: np.ndarray | None = None  # (frames,) Hann-weighted RMS over all channels
    frame_rms_ref: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def spectral_pass(
    estimate: np.ndarray,
    reference: np.ndarray | None,
    sample_rate: int,
    cancel: Callable[[], bool] | None = None,
    progress: Callable[[float], None] | None = None,
    noise_needs_reference: bool = True,
    count_reference_noise: bool = False,
) -> SpectralSums:
    """Collect the spectral sums of ``estimate`` (and ``reference``), both ``(channels, n)``.

    Args:
        noise_needs_reference: a musical-noise peak must be missing from the reference (False:
            every isolated peak of the estimate counts, e.g. when the "reference" is the mix).
        count_reference_noise: also count the reference's own isolated peaks
            (``SpectralSums.reference_musical_noise``).
    """
    config = analysis_config(sample_rate)
    channels, n = estimate.shape
    if reference is not None and reference.shape != estimate.shape:
        raise ValueError(f"reference {reference.shape} and estimate {estimate.shape} differ")
    freqs = config.frequencies_hz(sample_rate)
    bins = freqs.size
    masks = band_masks(freqs)
    names = [b[0] for b in BANDS]
    band_of_bin = np.full(bins, -1)
    for i, name in enumerate(names):
        band_of_bin[masks[name]] = i
    # Bands are adjacent bin ranges: per-frame band sums by reduceat over their edges.
    edges = (np.searchsorted(freqs, [b[1] for b in BANDS], side="left"),
             np.searchsorted(freqs, [b[2] for b in BANDS], side="left"))
    frames = config.frames_for(n)
    has_ref = reference is not None
    out = SpectralSums(sample_rate, config, channels, frames, has_ref, names, band_of_bin, freqs)
    keys = ["E", "E2"] + (["R", "R2", "RE", "dmag2", "err2", "cross"] if has_ref else [])
    sums = {k: np.zeros(bins) for k in keys}
    nb = len(names) + 1
    # Local arrays (the reference's stay unused and are dropped when there is no reference).
    fb_est = np.zeros((nb, frames))
    ms_est = np.zeros(frames)  # Σ (w·x)² per frame, all channels (Parseval on the one-sided STFT)
    ms_ref = np.zeros(frames)
    fb_ref = np.zeros((nb, frames))
    fb_err = np.zeros((nb, frames))
    frame_cross = np.zeros(frames)
    frame_magprod = np.zeros(frames)
    phase_hist = np.zeros(PHASE_HIST_BINS)
    mel_fb = scipy.sparse.csr_matrix(mel_filterbank(sample_rate, config.n_fft))
    mel_est = np.zeros((mel_fb.shape[0], frames), dtype=np.float32)
    mel_ref = np.zeros((mel_fb.shape[0], frames), dtype=np.float32) if has_ref else mel_est
    rows_w_dense, rows_hz = _log_rows(freqs, IMAGE_ROWS)
    rows_w = scipy.sparse.csr_matrix(rows_w_dense)
    columns = max(1, min(IMAGE_COLUMNS, frames))
    col_of_frame = (np.arange(frames) * columns) // frames
    col_count = np.bincount(col_of_frame, minlength=columns).astype(np.float64)
    image_est = np.zeros((IMAGE_ROWS, columns))
    image_ref = np.zeros((IMAGE_ROWS, columns))
    out.image_rows_hz = rows_hz
    hop = config.hop_length
    out.image_columns_seconds = (np.arange(columns) + 0.5) * frames / columns * hop / sample_rate
    noise = artifacts.MusicalNoiseCounts()
    ref_noise = artifacts.MusicalNoiseCounts() if count_reference_noise and has_ref else None
    timing = {"spectral.stft": 0.0, "spectral.sums": 0.0, "spectral.phase": 0.0,
              "spectral.mel_images": 0.0, "artifacts.musical_noise": 0.0}
    est_chunks = stft_chunks(estimate, config, context=CONTEXT_FRAMES)
    ref_chunks = stft_chunks(reference, config, context=CONTEXT_FRAMES) if reference is not None else None
    full_scale = artifacts.full_scale_bin_power(config.n_fft)
    while True:
        if cancel is not None and cancel():
            raise Cancelled()
        t0 = time.perf_counter()
        try:
            c0, c1, first, e_ctx = next(est_chunks)
        except StopIteration:
            break
        r_ctx = next(ref_chunks)[3] if ref_chunks is not None else None
        t1 = time.perf_counter()
        core = slice(c0 - first, c1 - first)
        e = e_ctx[..., core]
        pe_ctx = e_ctx.real**2 + e_ctx.imag**2  # (C, bins, t + context) float32
        pe = pe_ctx[..., core]
        me = np.sqrt(pe)
        # Sums over channels first (contiguous), then over frames; float64 across chunks.
        sums["E"] += _bin_sum(me)
        pe_frames = pe.sum(axis=0)  # (bins, t)
        sums["E2"] += pe_frames.sum(axis=1).astype(np.float64)
        fb_est[:, c0:c1] = _band_frames(pe_frames, edges)
        ms_est[c0:c1] = _windowed_energy(fb_est[-1, c0:c1], pe_frames, config.n_fft)
        if r_ctx is not None:
            r = r_ctx[..., core]
            pr = r.real**2 + r.imag**2
            mr = np.sqrt(pr)
            d = e - r
            pd = d.real**2 + d.imag**2
            # Re(E·R*) from the three powers: no fourth product over the whole chunk.
            cross = 0.5 * (pe + pr - pd)
            magprod = me * mr
            sums["R"] += _bin_sum(mr)
            pr_frames = pr.sum(axis=0)
            sums["R2"] += pr_frames.sum(axis=1).astype(np.float64)
            sums["RE"] += _bin_sum(magprod)
            dm = me - mr
            dm *= dm
            sums["dmag2"] += _bin_sum(dm)
            pd_frames = pd.sum(axis=0)
            sums["err2"] += pd_frames.sum(axis=1).astype(np.float64)
            cross_frames = cross.sum(axis=0)
            sums["cross"] += cross_frames.sum(axis=1).astype(np.float64)
            fb_ref[:, c0:c1] = _band_frames(pr_frames, edges)
            ms_ref[c0:c1] = _windowed_energy(fb_ref[-1, c0:c1], pr_frames, config.n_fft)
            fb_err[:, c0:c1] = _band_frames(pd_frames, edges)
            t2 = time.perf_counter()
            timing["spectral.sums"] += t2 - t1
            frame_cross[c0:c1] = cross_frames.sum(axis=0)
            mag_frames = magprod.sum(axis=0)
            frame_magprod[c0:c1] = mag_frames.sum(axis=0)
            # The histogram is only drawn: every PHASE_HIST_STRIDE-th frame is plenty.
            sub = slice(None, None, PHASE_HIST_STRIDE)
            dphi = np.angle(e[..., sub] * np.conj(r[..., sub])).ravel()
            idx = np.minimum(((dphi + np.pi) * (PHASE_HIST_BINS / (2 * np.pi))).astype(np.int64),
                             PHASE_HIST_BINS - 1)
            phase_hist += np.bincount(idx, weights=magprod[..., sub].ravel(), minlength=PHASE_HIST_BINS)
            t3 = time.perf_counter()
            timing["spectral.phase"] += t3 - t2
        else:
            pr = pr_frames = None
            t3 = time.perf_counter()
            timing["spectral.sums"] += t3 - t1
        # Mel power (mean over channels) for onsets, and reduced images for figures.
        mel_est[:, c0:c1] = mel_fb @ (pe_frames / channels)
        cols = col_of_frame[c0:c1]
        starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
        # Sum frames into columns first, then onto the log-frequency rows (far fewer products).
        image_est[:, cols[starts]] += rows_w @ (np.add.reduceat(pe_frames, starts, axis=1) / channels)
        if pr_frames is not None:
            mel_ref[:, c0:c1] = mel_fb @ (pr_frames / channels)
            image_ref[:, cols[starts]] += rows_w @ (np.add.reduceat(pr_frames, starts, axis=1) / channels)
        t4 = time.perf_counter()
        artifacts.count_musical_noise(pe_ctx, pr if (r_ctx is not None and noise_needs_reference) else None,
                                      c0 - first, c1 - first, full_scale, noise)
        if ref_noise is not None and r_ctx is not None:
            artifacts.count_musical_noise(r_ctx.real**2 + r_ctx.imag**2, None, c0 - first, c1 - first,
                                          full_scale, ref_noise)
        t5 = time.perf_counter()
        timing["spectral.stft"] += t1 - t0
        timing["spectral.mel_images"] += t4 - t3
        timing["artifacts.musical_noise"] += t5 - t4
        if progress is not None:
            progress(c1 / frames)
    out.frame_band_est = fb_est
    window_power = float((np.hanning(config.n_fft + 1)[:-1] ** 2).sum())  # Σ w² of the periodic Hann
    out.frame_rms_est = np.sqrt(np.maximum(ms_est, 0.0) / (window_power * channels))
    out.mel_est = mel_est
    out.image_est = image_est / col_count[None, :]
    if has_ref:
        out.frame_band_ref, out.frame_band_err = fb_ref, fb_err
        out.frame_cross, out.frame_magprod, out.phase_hist = frame_cross, frame_magprod, phase_hist
        out.mel_ref = mel_ref
        out.frame_rms_ref = np.sqrt(np.maximum(ms_ref, 0.0) / (window_power * channels))
        out.image_ref = image_ref / col_count[None, :]
    out.bin_sums = sums
    out.musical_noise = noise
    out.reference_musical_noise = ref_noise
    out.seconds = timing
    return out


def power_image(samples: np.ndarray, sample_rate: int, cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """The reduced power image of :func:`spectral_pass` alone (``(IMAGE_ROWS, columns)``), for a
    signal only drawn (the mix behind the mask figures)."""
    config = analysis_config(sample_rate)
    channels, n = samples.shape
    freqs = config.frequencies_hz(sample_rate)
    frames = config.frames_for(n)
    rows_w, _ = _log_rows(freqs, IMAGE_ROWS)
    columns = max(1, min(IMAGE_COLUMNS, frames))
    col_of_frame = (np.arange(frames) * columns) // frames
    col_count = np.bincount(col_of_frame, minlength=columns).astype(np.float64)
    image = np.zeros((IMAGE_ROWS, columns))
    for c0, c1, _, spec in stft_chunks(samples, config):
        if cancel is not None and cancel():
            raise Cancelled()
        p = (spec.real**2 + spec.imag**2).sum(axis=0) / channels
        cols = col_of_frame[c0:c1]
        starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
        image[:, cols[starts]] += rows_w @ np.add.reduceat(p, starts, axis=1)
    return image / col_count[None, :]
