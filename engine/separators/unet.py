"""The ``unet`` engine: blind separation (mix only) with the trained spectrogram U-Net.

Pipeline, for any length, rate and channel count::

    mix (file rate r_f) ──resample──▶ internal rate r_i ──STFT──▶ |X_i| ──U-Net──▶ masks M_i
    masks M_i ──interpolate onto the file-rate STFT grid──▶ M_f        (no resampling *out*)
    stem_j = ISTFT(M_f,j · STFT_f(mix))   for all stems but the last;  last = mix − Σ others

The masks, not the audio, go back to the file's rate: the internal STFT (n_fft 1024, hop 256 at
22.05 kHz) and the file-rate STFT (n_fft scaled by r_f/r_i, hop n_fft/4) have the same
window duration, so for 44.1 kHz the grids coincide bin for bin and frame for frame, and for
other rates the mask is linearly interpolated in time and frequency. The stems therefore keep
the whole band of the file (above the internal Nyquist the masks of the top third-octave are
used) and they sum to the mix exactly.

Chunking (memory stays bounded for a 1-hour file, and there are no seams): the model runs on
chunks of ``chunk_seconds`` of internal frames with a context of at least the network's receptive
radius on each side; only each chunk's core is kept, so the masks are identical to one pass over
the whole song (the network has no time-wise normalisation). Chunks run in batches. The
resampler, both STFTs and the ISTFT stream too: every block is computed from a slice of the
audio with margins wide enough that its kept samples equal the whole-song computation. Only the
outputs (stems and, if asked, masks) grow with the file.

Optional multichannel Wiener post-filter (one EM step, as in Open-Unmix/norbert): source power
spectra ``v_j`` from the masked mix, spatial covariances ``R_j`` estimated over a sliding window
of ``wiener_window_seconds``, then ``Y_j = v_j R_j (Σ_k v_k R_k)⁻¹ X``. The window slides, so the
result does not depend on the chunking either. With it on, the masks returned are each stem's
share of the power per channel.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.audio import Audio, resample
from engine.errors import InputError
from engine.models import DEFAULT_MODELS, SpectrogramUNet, level_gain, load_model
from engine.separators.base import (
    CancelFn,
    Parameter,
    ProgressFn,
    SeparationResult,
    Separator,
    check_cancel,
    register,
    resolve_device,
)
from engine.spectral import StftConfig, istft, stft

_EPS = 1e-10
#: Masks above the internal Nyquist frequency take the mean mask of this top fraction of it.
_HF_FROM_FRACTION = 0.8


# ----------------------------------------------------------------------------------------------
# Streaming building blocks: each returns exactly what the whole-signal computation would.
# ----------------------------------------------------------------------------------------------


class StreamingResampler:
    """Slices of ``engine.audio.resample(x, rate_in, rate_out)`` without resampling all of ``x``.

    ``resample_poly`` output sample ``j`` sits at input position ``j·down/up`` and uses a finite
    Kaiser filter; resampling a slice that starts on a multiple of ``down`` (zeros outside the
    signal, as the whole-signal filter sees) with a margin wider than the filter gives the same
    samples in its interior.
    """

    def __init__(self, x: np.ndarray, rate_in: int, rate_out: int, rows: tuple[int, ...] | None = None) -> None:
        self.x = x
        # Which rows of ``x`` make the output channels (e.g. (0, 0) for a dual-mono pair),
        # picked per slice so no full-length copy is made.
        self.rows = list(rows) if rows is not None else list(range(x.shape[0]))
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        g = math.gcd(self.rate_in, self.rate_out)
        self.up, self.down = self.rate_out // g, self.rate_in // g
        n = x.shape[-1]
        self.length = -(-n * self.up // self.down)
        # Filter half-length in input samples (resample_poly: 10·max(up, down) taps at the
        # up-sampled rate), plus slack.
        self.margin_in = 10 * max(self.up, self.down) // self.up + 4

    def get(self, start: int, stop: int) -> np.ndarray:
        """Output samples ``[start, stop)`` (clipped to the signal), float32 ``(channels, n)``."""
        start, stop = max(start, 0), min(stop, self.length)
        if stop <= start:
            return np.zeros((len(self.rows), 0), dtype=np.float32)
        if self.up == self.down:
            return np.ascontiguousarray(self.x[self.rows, start:stop], dtype=np.float32)
        lo = math.floor(start * self.down / self.up) - self.margin_in
        lo = (lo // self.down) * self.down  # a multiple of `down`: same polyphase alignment
        hi = math.ceil(stop * self.down / self.up) + self.margin_in
        n = self.x.shape[-1]
        piece = np.zeros((len(self.rows), hi - lo), dtype=np.float32)
        a, b = max(lo, 0), min(hi, n)
        if b > a:
            piece[:, a - lo : b - lo] = self.x[self.rows, a:b]
        y = resample(piece, self.rate_in, self.rate_out)
        offset = lo // self.down * self.up  # output index of y[0]
        return y[:, start - offset : stop - offset]


def exact_stft_frames(
    get_samples: Callable[[int, int], np.ndarray],
    total_samples: int,
    config: StftConfig,
    first: int,
    stop: int,
    device: torch.device,
) -> torch.Tensor:
    """STFT frames ``[first, stop)`` of a signal equal to ``engine.spectral.stft`` of all of it.

    Computes the STFT of a slice that reaches at least one window beyond the wanted frames (or
    the signal's own edge, where the reflect padding is then the same).

    Returns:
        complex ``(channels, bins, stop − first)``.
    """
    hop, n_fft = config.hop_length, config.n_fft
    reach = -(-n_fft // hop)  # whole hops covering one window
    a = max(0, (first - reach) * hop)
    b = min(total_samples, (stop - 1) * hop + n_fft + 1)
    seg = torch.from_numpy(get_samples(a, b)).to(device)
    spec = stft(seg, config)
    j0 = first - a // hop
    return spec[..., j0 : j0 + (stop - first)]


def _channel_groups(channels: int) -> list[tuple[int, int]]:
    """Pairs of file channels fed to the stereo model: stereo as is, anything else dual-mono."""
    if channels == 2:
        return [(0, 1)]
    return [(c, c) for c in range(channels)]


def _block_rms(x: np.ndarray, block: int = 1 << 20) -> float:
    """RMS over all samples, float64 accumulation, without a full-size temporary."""
    total = 0.0
    for s in range(0, x.shape[-1], block):
        seg = x[:, s : s + block].astype(np.float64)
        total += float(np.sum(seg * seg))
    return math.sqrt(total / max(x.size, 1))


@dataclass
class InferenceOptions:
    """How to run the network (not what it computes: results do not depend on these, except
    ``wiener``/``wiener_window_seconds`` and float16/bfloat16 rounding on GPU)."""

    chunk_seconds: float = 60.0
    batch_chunks: int = 1
    device: torch.device = torch.device("cpu")
    precision: str = "auto"  # auto | float32 | float16 | bfloat16
    wiener: bool = False
    wiener_window_seconds: float = 3.0
    return_masks: bool = True
    #: False: masks only, no stems (skips the file-rate STFT of the mix and the ISTFTs; e.g. the
    #: query engine's prior). Needs ``return_masks`` and no Wiener filter.
    return_stems: bool = True
    #: Context frames each side of a chunk; None → the network's receptive radius (exact).
    context_frames: int | None = None


def _autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    if precision == "float32" or device.type != "cuda":
        if precision in ("float16", "bfloat16") and device.type != "cuda":
            raise InputError(f"precision '{precision}' needs a CUDA device; use float32 on the CPU")
        return None
    if precision == "float16":
        return torch.float16
    if precision == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class _MaskProducer:
    """Runs the network over the song in chunks; yields exact internal-frame masks in order."""

    def __init__(self, model: SpectrogramUNet, audio: np.ndarray, rows: tuple[int, int], rate: int,
                 gain: float, opts: InferenceOptions) -> None:
        cfg = model.config
        self.model, self.opts = model, opts
        self.cfg = StftConfig(n_fft=cfg.n_fft, hop=cfg.hop)
        self.resampler = StreamingResampler(audio, rate, cfg.sample_rate, rows)
        self.gain = gain
        self.total_frames = self.cfg.frames_for(self.resampler.length)
        mult = cfg.time_multiple
        radius = model.receptive_radius_frames() if opts.context_frames is None else opts.context_frames
        self.context = -(-radius // mult) * mult
        core = int(round(opts.chunk_seconds * cfg.sample_rate / cfg.hop))
        # Never longer than the song itself (rounded up to the network's time multiple).
        core = min(core, self.total_frames)
        self.core = max(mult, -(-core // mult) * mult)
        self.chunks = -(-self.total_frames // self.core)
        self.autocast = _autocast_dtype(opts.device, opts.precision)
        self.seconds = {"resample_stft": 0.0, "model": 0.0}

    def _get_samples(self, a: int, b: int) -> np.ndarray:
        return self.resampler.get(a, b) * np.float32(self.gain)

    def batches(self) -> Any:
        """Yield ``(first_frame, masks (S, 2, F, n))`` for consecutive frame ranges."""
        k_core, ctx, total = self.core, self.context, self.total_frames
        for k0 in range(0, self.chunks, self.opts.batch_chunks):
            k1 = min(self.chunks, k0 + self.opts.batch_chunks)
            t = time.perf_counter()
            lo, hi = k0 * k_core - ctx, k1 * k_core + ctx
            v0, v1 = max(lo, 0), min(hi, total)
            spec = exact_stft_frames(self._get_samples, self.resampler.length, self.cfg, v0, v1,
                                     self.opts.device)
            mag = torch.zeros((2, self.cfg.bins, hi - lo), device=self.opts.device)
            mag[..., v0 - lo : v1 - lo] = spec.abs()
            width = k_core + 2 * ctx
            inputs = torch.stack([mag[..., (k - k0) * k_core : (k - k0) * k_core + width] for k in range(k0, k1)])
            if self.opts.device.type == "cpu":
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            self.seconds["resample_stft"] += time.perf_counter() - t
            t = time.perf_counter()
            with torch.inference_mode(), torch.autocast(self.opts.device.type, dtype=self.autocast or torch.float32,
                                                        enabled=self.autocast is not None):
                masks = self.model(inputs).float()  # (B, S, 2, F, width)
            cores = masks[..., ctx : ctx + k_core]  # (B, S, 2, F, core)
            # (B, S, 2, F, core) -> (S, 2, F, B·core)
            flat = cores.permute(1, 2, 3, 0, 4).reshape(*cores.shape[1:4], -1)
            first = k0 * k_core
            n = min(flat.shape[-1], total - first)
            self.seconds["model"] += time.perf_counter() - t
            yield first, flat[..., :n]


def _rows_reader(x: np.ndarray, rows: list[int]) -> Callable[[int, int], np.ndarray]:
    def get(a: int, b: int) -> np.ndarray:
        return np.ascontiguousarray(x[rows, a:b], dtype=np.float32)

    return get


def _interp_index(positions: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear-interpolation indices/weights of fractional ``positions`` into ``size`` samples."""
    i0 = np.floor(positions).astype(np.int64)
    w = (positions - i0).astype(np.float32)
    i0 = np.clip(i0, 0, size - 1)
    i1 = np.clip(i0 + 1, 0, size - 1)
    w = np.where(i1 == i0, 0.0, w).astype(np.float32)
    return i0, i1, w


def _box_sum(z: torch.Tensor, radius: int) -> torch.Tensor:
    """Centred moving sum over ``±radius`` along the last axis (truncated at the edges),
    accumulated in float64 so long blocks keep small values."""
    zc = torch.nn.functional.pad(z.double().cumsum(-1), (1, 0))
    n = z.shape[-1]
    idx = torch.arange(n, device=z.device)
    hi = torch.clamp(idx + radius + 1, max=n)
    lo = torch.clamp(idx - radius, min=0)
    return zc[..., hi] - zc[..., lo]


def wiener_filter(x: torch.Tensor, masks: torch.Tensor, window_frames: int) -> torch.Tensor:
    """One EM step of the multichannel Wiener filter with sliding-window spatial covariances.

    ``y_j = m_j·X``; ``v_j = mean_c |y_j|²``; ``R_j = Σ_w y_j y_jᴴ / Σ_w v_j`` over ``±window_frames``;
    ``Y_j = v_j R_j (Σ_k v_k R_k + εI)⁻¹ X``. Stereo is solved in closed form on the Hermitian
    entries (no C×C tensors); other channel counts use a batched solve.

    Args:
        x: complex mix STFT ``(C, F, T)``.
        masks: ``(S, C, F, T)`` initial soft masks.
        window_frames: the covariances average over ``±window_frames`` frames.

    Returns:
        complex ``(S, C, F, T)`` source estimates.
    """
    y = masks * x.unsqueeze(0)  # (S, C, F, T)
    s, c, f, t = y.shape
    power = y.real**2 + y.imag**2
    v = power.mean(dim=1)  # (S, F, T) power spectral densities
    den = _box_sum(v, window_frames) + _EPS
    if c <= 2:
        r00 = (_box_sum(power[:, 0], window_frames) / den).float()
        if c == 1:
            c00 = (v * r00).sum(0)
            c00 = c00 + c00.clamp(min=0) * 1e-6 + _EPS
            return (v * r00 / c00).unsqueeze(1) * x.unsqueeze(0)
        r11 = (_box_sum(power[:, 1], window_frames) / den).float()
        cross = y[:, 0] * y[:, 1].conj()
        r01 = torch.complex((_box_sum(cross.real, window_frames) / den).float(),
                            (_box_sum(cross.imag, window_frames) / den).float())
        c00, c11, c01 = (v * r00).sum(0), (v * r11).sum(0), (v * r01).sum(0)
        load = (c00 + c11).clamp(min=0) * 0.5e-6 + _EPS
        c00, c11 = c00 + load, c11 + load
        det = c00 * c11 - (c01.real**2 + c01.imag**2)
        x0, x1 = x[0], x[1]
        z0 = (c11 * x0 - c01 * x1) / det
        z1 = (c00 * x1 - c01.conj() * x0) / det
        out0 = v * (r00 * z0 + r01 * z1)
        out1 = v * (r01.conj() * z0 + r11 * z1)
        return torch.stack([out0, out1], dim=1)
    yt = y.permute(0, 2, 3, 1)  # (S, F, T, C)
    outer = yt.unsqueeze(-1) * yt.conj().unsqueeze(-2)  # (S, F, T, C, C)
    num = outer.movedim(2, -1)  # (S, F, C, C, T)
    r_num = torch.complex(_box_sum(num.real, window_frames), _box_sum(num.imag, window_frames)).movedim(-1, 2)
    r = (r_num / den[..., None, None]).to(torch.complex64)
    vr = v[..., None, None] * r  # (S, F, T, C, C)
    cxx = vr.sum(0)
    load = cxx.diagonal(dim1=-2, dim2=-1).real.mean(-1).clamp(min=0) * 1e-6 + _EPS
    cxx = cxx + load[..., None, None] * torch.eye(c, device=x.device, dtype=cxx.dtype)
    z = torch.linalg.solve(cxx, x.permute(1, 2, 0).unsqueeze(-1))  # (F, T, C, 1)
    return (vr @ z.unsqueeze(0)).squeeze(-1).permute(0, 3, 1, 2)


def separate_with_model(
    model: SpectrogramUNet,
    mix: Audio,
    opts: InferenceOptions,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> SeparationResult:
    """Separate ``mix`` with ``model`` (see the module docstring for the pipeline).

    Args:
        model: a :class:`SpectrogramUNet` in eval mode (fused or not) on ``opts.device``.
        mix: float32 ``(channels, frames)`` at any supported rate.
        opts: chunking, batching, device, precision, Wiener post-filter, masks.

    Returns:
        :class:`SeparationResult` with stems named by the model, at the mix's rate and
        channels, summing to the mix; masks ``(channels, bins, frames)`` float16 at the
        file-rate STFT (``result.stft``) when ``opts.return_masks``.
    """
    cfg = model.config
    stems = cfg.stems
    n_stems = len(stems)
    if not opts.return_stems and (opts.wiener or not opts.return_masks):
        raise ValueError("masks-only inference needs return_masks and no Wiener filter")
    rate, channels, frames = mix.sample_rate, mix.channels, mix.frames
    dev = opts.device
    # File-rate STFT with the internal window's duration (even n_fft, hop n_fft/4).
    n_fft_f = max(16, 2 * int(round(cfg.n_fft * rate / cfg.sample_rate / 2)))
    fcfg = StftConfig(n_fft=n_fft_f)
    hop_f, bins_f = fcfg.hop_length, fcfg.bins
    frames_f = fcfg.frames_for(frames)
    bins_i = cfg.bins
    gain = level_gain(_block_rms(mix.samples), cfg.reference_rms_db)

    # Mask interpolation maps (file grid → internal grid).
    time_ratio = hop_f * cfg.sample_rate / (rate * cfg.hop)  # internal frames per file frame
    freq_pos = np.arange(bins_f) * (rate / n_fft_f) / (cfg.sample_rate / cfg.n_fft)
    above = freq_pos > bins_i - 1
    f0, f1, fw = _interp_index(np.minimum(freq_pos, bins_i - 1), bins_i)
    f0[above] = bins_i  # the extra "HF" row (mean of the top of the internal band)
    f1[above], fw[above] = bins_i, 0.0
    n_low = int((~above).sum())  # file bins inside the internal band
    hf_from = int(math.floor(_HF_FROM_FRACTION * (bins_i - 1)))
    f0_t, f1_t = torch.from_numpy(f0).to(dev), torch.from_numpy(f1).to(dev)
    fw_t = torch.from_numpy(fw).to(dev)[:, None]
    identity_grid = abs(time_ratio - 1.0) < 1e-12 and np.allclose(freq_pos[~above], np.arange(n_low))

    wiener_frames = int(round(opts.wiener_window_seconds * rate / hop_f)) if opts.wiener else 0
    out = np.zeros((n_stems if opts.return_stems else 0, channels, frames), dtype=np.float32)
    masks_out = ({s: np.zeros((channels, bins_f, frames_f), dtype=np.float16) for s in stems}
                 if opts.return_masks else {})
    groups = _channel_groups(channels)
    timings = {"resample_stft": 0.0, "model": 0.0, "file_stft_masks_istft": 0.0}

    # Masks for all channels are needed together only by the Wiener filter; otherwise each
    # group is streamed on its own. With Wiener on, the groups' producers advance in lockstep.
    producers = [_MaskProducer(model, mix.samples, grp, rate, gain, opts) for grp in groups]
    run_sets = [list(range(len(groups)))] if opts.wiener else [[g] for g in range(len(groups))]
    x_source = mix.samples
    for run_index, members in enumerate(run_sets):
        iters = [producers[g].batches() for g in members]
        total_i = producers[members[0]].total_frames
        buf: torch.Tensor | None = None  # (S, C_members, bins_i + 1, n) internal masks
        buf_t0 = 0
        out_pos = 0
        member_channels = sorted({c for g in members for c in groups[g]})
        contiguous = member_channels == list(range(member_channels[0], member_channels[-1] + 1))
        rows: slice | list[int] = (slice(member_channels[0], member_channels[-1] + 1) if contiguous
                                   else member_channels)
        while out_pos < frames:
            check_cancel(cancel)
            parts = [next(it) for it in iters]
            first = parts[0][0]
            new = []
            for (_, m), g in zip(parts, members, strict=True):
                a, b = groups[g]
                new.append(m if a != b else m.mean(dim=1, keepdim=True))  # (S, c, F, n)
            block = torch.cat(new, dim=1) if len(new) > 1 else new[0]
            if buf is None:
                buf, buf_t0 = block, first
            else:
                buf = torch.cat([buf, block], dim=-1)
            avail = first + block.shape[-1]  # internal frames [buf_t0, avail) are final
            # How far the file-side output can go: its frames (± Wiener context) must map to
            # internal frames below `avail` (interpolation reads frame i0 + 1).
            if avail >= total_i:
                out_end = frames
            else:
                last_frame_f = math.floor((avail - 2) / time_ratio) - wiener_frames - 1
                out_end = max(out_pos, min(frames, last_frame_f * hop_f - fcfg.n_fft // 2))
            if out_end > out_pos:
                t = time.perf_counter()
                tau0 = max(0, (out_pos - fcfg.n_fft // 2) // hop_f - 1)
                tau1 = min(frames_f, (out_end + fcfg.n_fft // 2) // hop_f + 2)
                w0, w1 = max(0, tau0 - wiener_frames), min(frames_f, tau1 + wiener_frames)
                xf = (exact_stft_frames(_rows_reader(x_source, member_channels), frames, fcfg, w0, w1, dev)
                      if opts.return_stems else None)
                pos = np.arange(w0, w1) * time_ratio
                t0i, t1i, tw = _interp_index(pos, total_i)
                if identity_grid:
                    # Same bins and frames: slice, and fill the bins above the internal band.
                    m_t = buf[..., w0 - buf_t0 : w1 - buf_t0]  # (S, c, bins_i, n)
                    m_f = torch.empty((*m_t.shape[:2], bins_f, m_t.shape[-1]), device=dev)
                    m_f[:, :, :n_low] = m_t[:, :, :n_low]
                    m_f[:, :, n_low:] = m_t[:, :, hf_from:].mean(dim=2, keepdim=True)
                else:
                    ta = torch.from_numpy(t0i - buf_t0).to(dev)
                    tb = torch.from_numpy(t1i - buf_t0).to(dev)
                    twt = torch.from_numpy(tw).to(dev)
                    m_t = buf[..., ta] * (1 - twt) + buf[..., tb] * twt  # (S, c, bins_i, n)
                    m_t = torch.cat([m_t, m_t[:, :, hf_from:].mean(dim=2, keepdim=True)], dim=2)
                    m_f = m_t[:, :, f0_t] * (1 - fw_t) + m_t[:, :, f1_t] * fw_t  # (S, c, bins_f, n)
                if xf is None:
                    y, share = None, m_f
                elif opts.wiener:
                    y = wiener_filter(xf, m_f, wiener_frames)
                    power = y.abs() ** 2
                    share = power / (power.sum(0, keepdim=True) + _EPS)
                else:
                    y = m_f[: n_stems - 1] * xf.unsqueeze(0)  # the last stem is the rest
                    share = m_f
                k0, k1 = tau0 - w0, tau1 - w0
                if opts.return_masks:
                    sh = share[..., k0:k1].to(torch.float16).cpu().numpy()
                    for j, name in enumerate(stems):
                        masks_out[name][rows, :, tau0:tau1] = sh[j]
                if y is not None:
                    seg_start = tau0 * hop_f
                    length = out_end - seg_start
                    wave = istft(y[: n_stems - 1, ..., k0:k1], length, fcfg).cpu().numpy()
                    lo, hi = out_pos - seg_start, out_end - seg_start
                    out[: n_stems - 1, rows, out_pos:out_end] = wave[..., lo:hi]
                timings["file_stft_masks_istft"] += time.perf_counter() - t
                out_pos = out_end
                # Drop internal masks no later block needs.
                next_tau = max(0, (out_pos - fcfg.n_fft // 2) // hop_f - 1 - wiener_frames)
                keep_from = max(buf_t0, int(math.floor(next_tau * time_ratio)) - 1)
                buf = buf[..., keep_from - buf_t0 :]
                buf_t0 = keep_from
            if progress is not None:
                done = (run_index + out_pos / max(frames, 1)) / max(len(run_sets), 1)
                progress(min(done, 1.0), f"Separating ({stems[0]}…{stems[-1]})")
        for it in iters:
            it.close()
    for p in producers:
        for k, v in p.seconds.items():
            timings[k] += v
    # The last stem takes the rest: stems sum to the mix exactly.
    if opts.return_stems:
        out[n_stems - 1] = mix.samples - out[: n_stems - 1].sum(axis=0)
    return SeparationResult(
        stems={name: Audio(out[j], rate) for j, name in enumerate(stems)} if opts.return_stems else {},
        masks=masks_out,
        stft=fcfg,
        info={
            "model_rate_hz": cfg.sample_rate,
            "internal_stft": {"n_fft": cfg.n_fft, "hop": cfg.hop},
            "level_gain_db": 20 * math.log10(gain),
            "chunks": producers[0].chunks,
            "chunk_frames": producers[0].core,
            "context_frames": producers[0].context,
            "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
        },
    )


@register
class UNetSeparator(Separator):
    name = "unet"
    title = "U-Net (mix only)"
    description = (
        "A trained spectrogram U-Net predicts a soft mask per stem from the mix alone: 2 stems "
        "(vocals, instrumental) or 4 (drums, bass, other, vocals). Runs on the CPU or a CUDA GPU; "
        "optional multichannel Wiener post-filter. The stems sum to the mix."
    )
    stem_names = ("vocals", "instrumental", "drums", "bass", "other")
    parameters = (
        Parameter("stems", "2", "Number of stems: 2 (vocals, instrumental) or 4 (drums, bass, other, vocals).",
                  kind="choice", choices=("2", "4")),
        Parameter("wiener", False, "Multichannel Wiener post-filter (cleaner stems, a bit slower).", kind="bool"),
        Parameter("wiener_window_seconds", 3.0, "Window over which the Wiener filter learns each stem's "
                  "stereo image.", minimum=0.1, maximum=60.0, unit="s"),
        Parameter("chunk_seconds", 60.0, "Audio per network chunk (memory vs. overhead; the result "
                  "does not depend on it).", minimum=2.0, maximum=600.0, unit="s"),
        Parameter("batch_chunks", 0, "Chunks per network batch (0: 1 on the CPU, 8 on a GPU).",
                  kind="int", minimum=0, maximum=64),
        Parameter("precision", "auto", "Network arithmetic: auto (bfloat16/float16 on a GPU, float32 "
                  "on the CPU) or forced.", kind="choice", choices=("auto", "float32", "float16", "bfloat16")),
        Parameter("masks", True, "Return the masks for viewing and editing (memory about the size of "
                  "the stems again).", kind="bool"),
    )

    _cache: dict[tuple[str, str], SpectrogramUNet] = {}

    def __init__(self, models_dir: str | Path | None = None) -> None:
        self.models_dir = models_dir

    def model(self, stems: int, device: torch.device) -> SpectrogramUNet:
        """The shipped (or ``models_dir``) model for 2 or 4 stems, verified, fused, cached."""
        name = DEFAULT_MODELS[stems]
        key = (str(Path(self.models_dir or "") / name), str(device))
        if key not in self._cache:
            model, _ = load_model(name, self.models_dir, device)
            fused = model.fused_for_inference()
            if device.type == "cpu":
                fused = fused.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self._cache[key] = fused
        return self._cache[key]

    def _separate(
        self, mix: Audio, acapella: np.ndarray | None, query: Audio | None,
        region: tuple[float, float] | None, device: torch.device, params: dict[str, Any],
        progress: ProgressFn | None, cancel: CancelFn | None,
    ) -> SeparationResult:
        model = self.model(int(params["stems"]), device)
        batch = int(params["batch_chunks"]) or (8 if device.type == "cuda" else 1)
        opts = InferenceOptions(
            chunk_seconds=float(params["chunk_seconds"]), batch_chunks=batch, device=device,
            precision=str(params["precision"]), wiener=bool(params["wiener"]),
            wiener_window_seconds=float(params["wiener_window_seconds"]),
            return_masks=bool(params["masks"]),
        )
        return separate_with_model(model, mix, opts, progress, cancel)

    def masks_only(self, mix: Audio, stems: int = 4, device: str = "auto",
                   progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> SeparationResult:
        """The masks of the default separation without the stems' audio (no file-rate STFT of
        the mix, no ISTFT): ``result.stems`` is empty, ``result.masks`` as :meth:`separate`'s."""
        dev = resolve_device(device)
        values = self.resolve_parameters({"stems": str(stems)})
        opts = InferenceOptions(
            chunk_seconds=float(values["chunk_seconds"]),
            batch_chunks=int(values["batch_chunks"]) or (8 if dev.type == "cuda" else 1), device=dev,
            precision=str(values["precision"]), return_masks=True, return_stems=False,
        )
        return separate_with_model(self.model(stems, dev), mix, opts, progress, cancel)
