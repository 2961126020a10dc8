"""Placing the acapella on the mix's timeline, and the fast null meter for the nudge tool.

Rendering follows the convention of :mod:`engine.align`. The acapella is mapped to the mix's
channel count and brought to the mix's rate: with no drift by ``engine.audio.resample``
(polyphase Kaiser) when the rates differ; with drift by one call of soxr's very-high-quality
arbitrary-ratio resampler from the file's own rate to ``mix rate · (1 + drift)``, so that frame
``n'`` of the result is acapella time ``n' / (mix rate · (1 + drift))`` (measured here at better
than -120 dB against the exact continuous-time signal, and exactly aligned). Then it is shifted
by the fractional offset with an exact FFT phase ramp (band-limited interpolation, 4096 zeros of
guard on each side), scaled by the signed gain and cropped to the mix.

:class:`AlignmentRenderer` caches the converted acapella (per drift value) and, for one integer
placement, the channel-summed cross-spectrum ``X(f) = sum_c M_c(f) conj(B_c(f))`` of the mix and
the acapella over the region the acapella covers, plus their band energies. A nudge of the
offset is a pure shift of the acapella, so the residual energy
``E_mix - 2 g R(s) + g^2 E_acapella`` with ``R(s) = Re sum_f X(f) e^{i 2 pi f s / N}`` needs one
pass over ``X`` in float64 (a matrix-vector product) for the overall and per-band null, with no
audio rendered (acapella energy that a big nudge moves out of the region is taken off
``E_acapella``, as the null test of the rendered audio would). ``render_segment`` renders only the frames a view or the playback needs
(Kaiser-windowed sinc, 256 taps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
import soxr

from engine.align.nulltest import band_bin_edges, null_test, ratio_db
from engine.align.result import AlignmentParams, NullTest
from engine.audio import Audio, resample

#: Zeros on each side of a phase-ramp shift so its periodic ringing does not wrap around.
_GUARD_FRAMES = 4096
#: Windowed-sinc half length and Kaiser beta of :meth:`AlignmentRenderer.render_segment`.
_SINC_HALF = 128
_SINC_BETA = 12.0
#: Bins per row of the cross-spectrum matrix (the phase ramp is an outer product per row).
_ROW_BINS = 2048
#: Row blocks are widened to complex128 this many rows at a time.
_BLOCK_ROWS = 256
#: Largest cross-spectrum kept in complex128 (bytes); beyond it complex64, widened per call
#: (a slower meter for files over ~25 minutes, and half the memory).
_EXACT_STORAGE_BYTES = 512 << 20
#: Resolution (frames) of the acapella's cumulative energy used when a nudge moves it out.
_BLOCK_ENERGY_FRAMES = 64


def conform_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """Map ``(c, frames)`` to ``(channels, frames)``: same count kept, mono copied to every
    channel, anything else downmixed to mono first. float32."""
    samples = np.atleast_2d(samples)
    if samples.shape[0] == channels:
        return samples.astype(np.float32, copy=False)
    mono = samples[:1] if samples.shape[0] == 1 else samples.mean(axis=0, keepdims=True, dtype=np.float32)
    return np.repeat(mono.astype(np.float32, copy=False), channels, axis=0)


def soxr_resample(samples: np.ndarray, rate_in: float, rate_out: float, quality: str = "VHQ") -> np.ndarray:
    """soxr one-shot resampling of ``(channels, frames)`` or ``(frames,)``; output frame ``j``
    is input time ``j / rate_out`` (soxr trims its filter delay). float32, same layout."""
    if samples.ndim == 1:
        return np.asarray(soxr.resample(samples.astype(np.float32, copy=False), rate_in, rate_out,
                                        quality=quality), dtype=np.float32)
    out = soxr.resample(np.ascontiguousarray(samples.T, dtype=np.float32), rate_in, rate_out, quality=quality)
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, samples.shape[0]).T)


def apply_drift(samples: np.ndarray, drift_ppm: float, quality: str = "VHQ") -> np.ndarray:
    """Time-scale by ``1 + drift_ppm·1e-6``: output frame ``n`` is input time ``n / (1 + d)``.

    Args:
        samples: float ``(channels, frames)`` or ``(frames,)``.
        drift_ppm: clock drift in parts per million.
        quality: soxr quality ("VHQ" for rendering; "HQ" is enough for analysis).

    Returns:
        float32, same layout, ``~frames·(1 + d)`` frames.
    """
    if drift_ppm == 0.0:
        return samples.astype(np.float32, copy=False)
    return soxr_resample(samples, 1.0, 1.0 + drift_ppm * 1e-6, quality)


def convert_acapella(samples: np.ndarray, rate_in: int, rate_out: int, drift_ppm: float, channels: int) -> np.ndarray:
    """The acapella at the mix's rate and channel count, drift-corrected (see module docstring).

    Args:
        samples: float ``(acapella channels, frames)`` at ``rate_in``.
        rate_in, rate_out: acapella and mix rates (Hz).
        drift_ppm: clock drift.
        channels: the mix's channel count.

    Returns:
        float32 ``(channels, frames')``: frame ``n'`` plays ``n'`` frames (mix rate) after
        acapella frame 0 when placed at offset 0.
    """
    samples = np.atleast_2d(samples)
    if samples.shape[0] != channels:  # map first when it shrinks the work, copy after converting
        samples = conform_channels(samples, 1)
    if drift_ppm == 0.0:
        out = resample(samples, rate_in, rate_out)
    else:
        out = soxr_resample(samples, float(rate_in), rate_out * (1.0 + drift_ppm * 1e-6))
    return conform_channels(out, channels)


def phase_ramp(bins: int, n_fft: int, shift: float) -> np.ndarray:
    """``exp(-i 2 pi k shift / n_fft)`` for ``k < bins`` (complex64), as an outer product of a
    per-row and a per-column factor (one complex exponential per row and column, not per bin)."""
    rows = -(-bins // _ROW_BINS)
    theta = -2.0 * np.pi * shift / n_fft
    col = np.exp(1j * theta * np.arange(_ROW_BINS)).astype(np.complex64)
    row = np.exp(1j * theta * _ROW_BINS * np.arange(rows)).astype(np.complex64)
    return np.outer(row, col).reshape(-1)[:bins]


def shift_onto_timeline(b: np.ndarray, offset_samples: float, frames: int, scale: float = 1.0) -> np.ndarray:
    """Place ``b`` so its frame 0 plays at mix frame ``offset_samples`` (fractional allowed).

    Args:
        b: float ``(channels, frames_b)``, already at the mix rate and drift-corrected.
        offset_samples: where ``b[:, 0]`` lands on the timeline.
        frames: length of the timeline.
        scale: signed gain applied on the way.

    Returns:
        float32 ``(channels, frames)``, zero where ``b`` does not reach.
    """
    b = np.atleast_2d(b)
    channels, nb = b.shape
    out = np.zeros((channels, frames), dtype=np.float32)
    io = math.floor(offset_samples)
    frac = offset_samples - io
    # the part of b that can reach the timeline, plus a guard for the interpolation's tails
    j0 = max(0, -io - _GUARD_FRAMES)
    j1 = min(nb, frames - io + _GUARD_FRAMES)
    if j1 <= j0:
        return out
    seg = b[:, j0:j1]
    if frac == 0.0:
        lead = io + j0  # timeline frame of seg[:, 0]
        shifted = seg * np.float32(scale)
    else:
        n = scipy.fft.next_fast_len(seg.shape[1] + 2 * _GUARD_FRAMES, real=True)
        ramp = phase_ramp(n // 2 + 1, n, frac) * np.complex64(scale)
        shifted = np.empty((channels, n), dtype=np.float32)
        buf = np.zeros(n, dtype=np.float32)
        for c in range(channels):
            if c > 0 and np.array_equal(seg[c], seg[0]):  # a mono acapella copied: one FFT
                shifted[c] = shifted[0]
                continue
            buf[_GUARD_FRAMES:_GUARD_FRAMES + seg.shape[1]] = seg[c]
            shifted[c] = scipy.fft.irfft(scipy.fft.rfft(buf) * ramp, n)
        lead = io + j0 - _GUARD_FRAMES
    t0, t1 = max(lead, 0), min(lead + shifted.shape[1], frames)
    if t1 > t0:
        out[:, t0:t1] = shifted[:, t0 - lead:t1 - lead]
    return out


def render_aligned(
    acapella: Audio,
    params: AlignmentParams,
    mix_rate: int,
    mix_frames: int,
    mix_channels: int,
) -> np.ndarray:
    """The acapella placed on the mix's timeline: rate-converted, channel-mapped,
    drift-corrected, shifted, gain and polarity applied.

    Args:
        acapella: the acapella at its own rate.
        params: offset/drift/gain/polarity (anything with those attributes).
        mix_rate, mix_frames, mix_channels: the timeline.

    Returns:
        float32 ``(mix_channels, mix_frames)``.

    For repeated renders after nudges use :class:`AlignmentRenderer`, which caches the
    conversions (this function converts every time: ~0.5 s for 4 minutes of stereo).
    """
    b = convert_acapella(acapella.samples, acapella.sample_rate, mix_rate, float(params.drift_ppm), mix_channels)
    gain = float(params.polarity) * 10.0 ** (float(params.gain_db) / 20.0)
    return shift_onto_timeline(b, float(params.offset_samples), mix_frames, gain)


def _sinc_kernel(frac: float) -> np.ndarray:
    """Taps ``h_i``, ``i = -L+1 .. L``: Kaiser-windowed sinc at distance ``i - frac`` (see
    :meth:`AlignmentRenderer.render_segment`)."""
    i = np.arange(-_SINC_HALF + 1, _SINC_HALF + 1, dtype=np.float64)
    x = i - frac
    win = np.i0(_SINC_BETA * np.sqrt(np.clip(1.0 - (x / _SINC_HALF) ** 2, 0.0, 1.0))) / np.i0(_SINC_BETA)
    return np.sinc(x) * win


@dataclass
class FastNull:
    """The null meter's reading for one set of parameters (depths in dB re the mix)."""

    null_depth_db: float
    band_null_depth_db: dict[str, float]
    best_gain_db: float
    best_polarity: int


@dataclass
class _Reference:
    """Cross-spectrum of the mix and the acapella placed at one integer offset."""

    serial: int  # identifies this placement (cache key)
    drift_ppm: float
    offset: int  # integer placement of b[:, 0] on the timeline
    n_fft: int
    region: tuple[int, int]  # mix frames covered (buffer frame _guard <-> region[0])
    guard: int
    rows: np.ndarray  # complex128 (complex64 if huge) (rows, _ROW_BINS): sum_c M_c conj(B_c), DC/Nyquist halved
    bins: int
    band_edges: list[tuple[str, int, int]]
    mix_energy: float
    acapella_energy: float
    mix_band_energy: dict[str, float]
    acapella_band_energy: dict[str, float]
    acapella_cumulative: np.ndarray  # float64: energy of the placed acapella before each block

    def acapella_energy_inside(self, shift: int) -> float:
        """Energy of the placed acapella still inside the region after an integer shift."""
        length = self.region[1] - self.region[0]
        a0, a1 = max(0, -shift), min(length, length - shift)
        if a1 <= a0:
            return 0.0
        cum = self.acapella_cumulative
        return float(np.interp(a1, _BLOCK_ENERGY_FRAMES * np.arange(len(cum)), cum)
                     - np.interp(a0, _BLOCK_ENERGY_FRAMES * np.arange(len(cum)), cum))

    @property
    def empty(self) -> bool:
        return self.region[1] <= self.region[0]


def _power_sums(spec: np.ndarray, n_fft: int, edges: list[tuple[str, int, int]]) -> tuple[float, dict[str, float]]:
    """Parseval energy of one rfft spectrum, total and per band (float64 sums)."""
    p = spec.real * spec.real + spec.imag * spec.imag  # float32
    w = 2.0 / n_fft
    total = float(p.sum(dtype=np.float64)) * w - float(p[0]) / n_fft
    if n_fft % 2 == 0:
        total -= float(p[-1]) / n_fft
    bands = {name: float(p[k0:k1].sum(dtype=np.float64)) * w for name, k0, k1 in edges}  # no DC: >= 20 Hz
    return total, bands


class AlignmentRenderer:
    """Renders the aligned acapella and measures the null quickly while the user nudges.

    Caches, in order of cost: the acapella converted to the mix's rate and channels and
    drift-corrected (per drift value, ~0.3 s to redo for 4 minutes of stereo); the
    cross-spectrum with the mix for one integer placement (per drift and placement, ~0.6 s).
    A nudge of the offset within ``fast_range_seconds`` of the placement reuses both, so
    :meth:`null` costs one float64 pass over the cross-spectrum (tens of ms for a 4-minute
    song); a bigger move or a new drift rebuilds the placement on the next call. Gain and
    polarity changes are free. Memory: the converted acapella (float32) and the cross-spectrum
    (complex128, 8 bytes per frame of the covered region; complex64 beyond ~25 minutes).

    The null is measured over the region of the mix the acapella covers at the placement, as
    :func:`engine.align.align_acapella` reports it. :meth:`null` remembers the parameters it was
    given (``self.params``), which :meth:`render`/:meth:`render_segment` use by default. Not
    thread-safe: one owner (e.g. the engine thread) at a time.
    """

    def __init__(
        self,
        mix: Audio,
        acapella: Audio,
        params: AlignmentParams | None = None,
        fast_range_seconds: float = 1.0,
    ) -> None:
        """
        Args:
            mix: the mix.
            acapella: the acapella at its own rate.
            params: the starting parameters.
            fast_range_seconds: how far the offset may move from the placement before the
                cross-spectrum is rebuilt.
        """
        self.mix = mix
        self.acapella = acapella
        self.params = params if params is not None else AlignmentParams()
        self.fast_range_frames = int(round(fast_range_seconds * mix.sample_rate))
        self._converted: tuple[float, np.ndarray] | None = None
        self._ref: _Reference | None = None
        self._corr: tuple[int, float, float, dict[str, float]] | None = None  # (serial, shift, total, bands)
        self._serial = 0
        self._identical: bool | None = None

    # ---- cached stages ---------------------------------------------------------------------
    def drift_corrected(self, drift_ppm: float) -> np.ndarray:
        """The acapella at the mix's rate and channels, drift-corrected, float32 ``(C, frames)``."""
        if self._converted is None or self._converted[0] != drift_ppm:
            self._converted = (drift_ppm, convert_acapella(
                self.acapella.samples, self.acapella.sample_rate, self.mix.sample_rate,
                drift_ppm, self.mix.channels))
        return self._converted[1]

    def _reference(self, offset_samples: float, drift_ppm: float,
                   keep_spectra: bool = False) -> tuple[_Reference, list[np.ndarray]]:
        ref = self._ref
        if (not keep_spectra and ref is not None and ref.drift_ppm == drift_ppm
                and abs(offset_samples - ref.offset) <= self.fast_range_frames):
            return ref, []
        b = self.drift_corrected(drift_ppm)
        io = int(round(offset_samples))
        mix = self.mix.samples
        r0, r1 = max(io, 0), min(io + b.shape[1], mix.shape[1])
        guard = self.fast_range_frames + _GUARD_FRAMES
        length = max(r1 - r0, 0)
        n = scipy.fft.next_fast_len(length + 2 * guard, real=True)
        bins = n // 2 + 1
        n_rows = -(-bins // _ROW_BINS)
        exact = n_rows * _ROW_BINS * 16 <= _EXACT_STORAGE_BYTES
        rows = np.zeros(n_rows * _ROW_BINS, dtype=np.complex128 if exact else np.complex64)
        edges = band_bin_edges(n, self.mix.sample_rate)
        mix_energy = aca_energy = 0.0
        mix_bands = {name: 0.0 for name, _, _ in edges}
        aca_bands = dict(mix_bands)
        spectra: list[np.ndarray] = []
        blocks = -(-length // _BLOCK_ENERGY_FRAMES)
        block_energy = np.zeros(blocks)
        if length > 0:
            buf = np.zeros(n, dtype=np.float32)
            same = self.identical_channels
            spec_b: np.ndarray | None = None
            e_b, eb_b = 0.0, dict(aca_bands)
            for c in range(mix.shape[0]):
                buf[guard:guard + length] = mix[c, r0:r1]
                spec_m = scipy.fft.rfft(buf)
                e, eb = _power_sums(spec_m, n, edges)
                mix_energy += e
                for k in eb:
                    mix_bands[k] += eb[k]
                if spec_b is None or not same:  # a mono acapella copied to every channel: one FFT
                    buf[guard:guard + length] = b[c, r0 - io:r1 - io]
                    spec_b = scipy.fft.rfft(buf)
                    e_b, eb_b = _power_sums(spec_b, n, edges)
                    if keep_spectra:
                        spectra.append(spec_b)
                    seg = np.zeros(blocks * _BLOCK_ENERGY_FRAMES, dtype=np.float32)
                    seg[:length] = b[c, r0 - io:r1 - io]
                    seg_blocks = seg.reshape(blocks, _BLOCK_ENERGY_FRAMES)
                    channel_blocks = np.einsum("bw,bw->b", seg_blocks, seg_blocks).astype(np.float64)
                block_energy += channel_blocks
                aca_energy += e_b
                for k in eb_b:
                    aca_bands[k] += eb_b[k]
                spec_m *= np.conj(spec_b)  # M_c conj(B_c)
                rows[:bins] += spec_m
                del spec_m
            rows[0] *= 0.5  # Parseval: DC and Nyquist count once, the other bins twice
            if n % 2 == 0:
                rows[bins - 1] *= 0.5
        self._serial += 1
        self._ref = _Reference(
            serial=self._serial, drift_ppm=drift_ppm, offset=io, n_fft=n, region=(r0, r1), guard=guard,
            rows=rows.reshape(n_rows, _ROW_BINS), bins=bins, band_edges=edges,
            mix_energy=mix_energy, acapella_energy=aca_energy,
            mix_band_energy=mix_bands, acapella_band_energy=aca_bands,
            acapella_cumulative=np.concatenate([[0.0], np.cumsum(block_energy)]),
        )
        return self._ref, spectra

    @property
    def identical_channels(self) -> bool:
        """True when every channel of the converted acapella is the same signal (a mono
        acapella copied to the mix's channels, or a dual-mono file): one FFT serves them all."""
        if self._identical is None:
            x = self.acapella.samples
            self._identical = (x.shape[0] != self.mix.channels or x.shape[0] == 1
                               or all(np.array_equal(x[0], x[c]) for c in range(1, x.shape[0])))
        return self._identical

    def prepare(self, params: AlignmentParams) -> list[np.ndarray]:
        """Build the placement for ``params`` now (the slow part, ~0.6 s for 4 minutes of
        stereo) and return the acapella's spectra for :meth:`render_region` (one per channel,
        or just one when :attr:`identical_channels`)."""
        self.params = params
        return self._reference(params.offset_samples, params.drift_ppm, keep_spectra=True)[1]

    @property
    def mix_band_energy(self) -> dict[str, float]:
        """Energy of the mix per band of ``BANDS`` over :attr:`region`."""
        p = self.params
        return dict(self._reference(p.offset_samples, p.drift_ppm)[0].mix_band_energy)

    @property
    def region(self) -> tuple[int, int]:
        """``(start, stop)`` frames of the mix the acapella covers: the region every null is
        measured over (fixed by the current placement, so it stays put while nudging)."""
        p = self.params
        return self._reference(p.offset_samples, p.drift_ppm)[0].region

    # ---- the cross-correlation at a fractional shift ------------------------------------------
    @staticmethod
    def _row_terms(ref: _Reference, shift: float, order: int, exact: bool = True) -> np.ndarray:
        """``sum_j X[r, j] j^p e^{i theta j}`` per row ``r`` and ``p = 0..order``, complex128
        ``(rows, order + 1)`` (``theta = 2 pi shift / N``).

        ``exact`` sums in float64: needed where the null subtracts nearly equal energies (a
        -80 dB null needs ~1e-9 relative accuracy); the Newton steps only need float32."""
        theta = 2.0 * np.pi * shift / ref.n_fft
        j = np.arange(_ROW_BINS, dtype=np.float64)
        w = np.exp(1j * theta * j)
        cols = np.stack([w * (j / _ROW_BINS) ** p for p in range(order + 1)], axis=1)
        if ref.rows.dtype == np.complex128:
            out = ref.rows @ cols
        elif not exact:
            out = (ref.rows @ cols.astype(np.complex64)).astype(np.complex128)
        else:
            out = np.empty((ref.rows.shape[0], order + 1), dtype=np.complex128)
            for r0 in range(0, ref.rows.shape[0], _BLOCK_ROWS):
                out[r0:r0 + _BLOCK_ROWS] = ref.rows[r0:r0 + _BLOCK_ROWS].astype(np.complex128) @ cols
        return out * (float(_ROW_BINS) ** np.arange(order + 1))

    def _correlation(self, ref: _Reference, shift: float, bands: bool) -> tuple[float, dict[str, float]]:
        """``sum_c <mix_c, acapella_c shifted by shift>`` (time-domain inner product), total and
        per band (cached for the last shift: a gain change costs nothing)."""
        cached = self._corr
        if cached is not None and cached[0] == ref.serial and cached[1] == shift and (cached[3] or not bands):
            return cached[2], cached[3]
        total, band_corr = self._compute_correlation(ref, shift, bands)
        self._corr = (ref.serial, shift, total, band_corr)
        return total, band_corr

    def _compute_correlation(self, ref: _Reference, shift: float, bands: bool) -> tuple[float, dict[str, float]]:
        scale = 2.0 / ref.n_fft
        theta = 2.0 * np.pi * shift / ref.n_fft
        p0 = self._row_terms(ref, shift, 0)[:, 0]
        per_row = np.exp(1j * theta * _ROW_BINS * np.arange(ref.rows.shape[0])) * p0
        total = float(per_row.sum().real) * scale
        band_corr: dict[str, float] = {}
        if bands:
            flat = ref.rows.reshape(-1)
            for name, k0, k1 in ref.band_edges:
                band_corr[name] = float(self._range_sum(flat, per_row, k0, k1, theta).real) * scale
        return total, band_corr

    @staticmethod
    def _range_sum(flat: np.ndarray, per_row: np.ndarray, k0: int, k1: int, theta: float) -> complex:
        """``sum_{k0 <= k < k1} X[k] e^{i theta k}`` using whole rows where possible."""
        if k1 <= k0:
            return 0j
        r0, r1 = -(-k0 // _ROW_BINS), k1 // _ROW_BINS  # whole rows r0 .. r1-1
        if r1 <= r0:
            k = np.arange(k0, k1)
            return complex(np.sum(flat[k0:k1] * np.exp(1j * theta * k)))
        total = complex(per_row[r0:r1].sum())
        for a, z in ((k0, r0 * _ROW_BINS), (r1 * _ROW_BINS, k1)):
            if z > a:
                k = np.arange(a, z)
                total += complex(np.sum(flat[a:z] * np.exp(1j * theta * k)))
        return total

    # ---- public -----------------------------------------------------------------------------
    def null(self, params: AlignmentParams | None = None, bands: bool = True) -> FastNull:
        """The null depth (overall and per band) for ``params`` without rendering audio.

        Also returns the least-squares gain and polarity at that offset, so the meter can show
        "best gain" next to the user's. Sets ``self.params``.
        """
        p = params if params is not None else self.params
        self.params = p
        ref, _ = self._reference(p.offset_samples, p.drift_ppm)
        if ref.empty or ref.mix_energy <= 0.0 or ref.acapella_energy <= 0.0:
            return FastNull(0.0, {name: 0.0 for name, _, _ in ref.band_edges}, 0.0, 1)
        shift = p.offset_samples - ref.offset
        corr, band_corr = self._correlation(ref, shift, bands)
        g = p.linear_gain
        # a big nudge moves part of the acapella out of the measured region: that part no
        # longer counts (as in the null test of the rendered audio)
        inside = ref.acapella_energy_inside(int(round(shift))) if shift != 0 else ref.acapella_energy
        residual = ref.mix_energy - 2.0 * g * corr + g * g * inside
        aca_bands = ref.acapella_band_energy
        if bands and int(round(shift)) != 0:
            out = self._moved_out_band_energy(ref, int(round(shift)))
            aca_bands = {name: aca_bands[name] - out[name] for name in aca_bands}
        band_db = {
            name: ratio_db(
                ref.mix_band_energy[name] - 2.0 * g * band_corr[name] + g * g * aca_bands[name],
                ref.mix_band_energy[name], 1e-10 * ref.mix_energy)
            for name in band_corr
        }
        best = corr / inside if inside > 0 else 0.0
        return FastNull(
            null_depth_db=ratio_db(residual, ref.mix_energy),
            band_null_depth_db=band_db,
            best_gain_db=20.0 * math.log10(abs(best)) if best != 0 else -math.inf,
            best_polarity=1 if best >= 0 else -1,
        )

    def _moved_out_band_energy(self, ref: _Reference, shift: int) -> dict[str, float]:
        """Band energies of the part of the placed acapella a shift moves out of the region."""
        length = ref.region[1] - ref.region[0]
        k = min(abs(shift), length)
        b = self.drift_corrected(ref.drift_ppm)
        j0 = ref.region[0] - ref.offset + (length - k if shift > 0 else 0)
        part = b[:, j0:j0 + k]
        n = scipy.fft.next_fast_len(max(k, 1), real=True)
        edges = band_bin_edges(n, self.mix.sample_rate)
        total = {name: 0.0 for name, _, _ in edges}
        for c in range(part.shape[0]):
            _, bands = _power_sums(scipy.fft.rfft(part[c], n), n, edges)
            for name in total:
                total[name] += bands[name]
        return total

    def refine_offset(self, offset_samples: float, drift_ppm: float, polarity: int = 0,
                      iterations: int = 6) -> float:
        """Least-squares offset near ``offset_samples`` (within about half a sample).

        Newton's method on the cross-correlation ``R(s)`` of all channels, evaluated exactly in
        the frequency domain: the offset of the deepest null, to ~1e-6 frame on clean material.

        Args:
            offset_samples: starting point (mix frames).
            drift_ppm: the drift to render with.
            polarity: sign of the peak to climb; 0 = the sign found at the start.

        Returns:
            the offset (mix frames); :meth:`null` there gives the least-squares gain.
        """
        ref, _ = self._reference(offset_samples, drift_ppm)
        if ref.empty or ref.acapella_energy <= 0.0:
            return offset_samples
        s = offset_samples - ref.offset
        r = np.arange(ref.rows.shape[0], dtype=np.float64) * _ROW_BINS
        scale = 2.0 * np.pi / ref.n_fft
        sign = float(polarity)
        lo, hi = s - 1.0, s + 1.0
        for _ in range(iterations):
            terms = self._row_terms(ref, s, 2, exact=False)
            base = np.exp(1j * scale * s * r)
            c0 = complex(np.sum(base * terms[:, 0]))
            c1 = complex(np.sum(base * (r * terms[:, 0] + terms[:, 1])))
            c2 = complex(np.sum(base * (r * r * terms[:, 0] + 2.0 * r * terms[:, 1] + terms[:, 2])))
            if sign == 0.0:
                sign = 1.0 if c0.real >= 0 else -1.0
            d1 = sign * (1j * scale * c1).real
            d2 = sign * (-(scale**2) * c2).real
            # Newton inside the peak's concave lobe; otherwise climb towards it
            step = -d1 / d2 if d2 < 0 else 0.25 * math.copysign(1.0, d1)
            s_new = min(max(s + max(min(step, 0.5), -0.5), lo), hi)
            done = abs(s_new - s) < 1e-6
            s = s_new
            if done:
                break
        return ref.offset + s

    def is_fast(self, params: AlignmentParams) -> bool:
        """True when :meth:`null` for ``params`` reuses the cached placement (one pass over the
        cross-spectrum, tens of ms), False when it would rebuild it (~0.6 s for 4 minutes):
        the GUI measures fast nudges on its own thread and sends slow ones to the engine."""
        ref = self._ref
        return (ref is not None and ref.drift_ppm == params.drift_ppm
                and abs(params.offset_samples - ref.offset) <= self.fast_range_frames)

    def render(self, params: AlignmentParams | None = None) -> np.ndarray:
        """The aligned acapella on the whole timeline, float32 ``(mix channels, mix frames)``."""
        p = params if params is not None else self.params
        b = self.drift_corrected(p.drift_ppm)
        return shift_onto_timeline(b, p.offset_samples, self.mix.frames, p.linear_gain)

    def render_region(self, params: AlignmentParams, spectra: list[np.ndarray]) -> np.ndarray:
        """The aligned acapella over :attr:`region` from the spectra :meth:`prepare` returned
        (one inverse FFT per channel; ``params`` may be nudged within the fast range).

        Returns:
            float32 ``(mix channels, region length)``.
        """
        ref = self._ref
        assert ref is not None and len(spectra) in (1, self.mix.channels)
        r0, r1 = ref.region
        ramp = phase_ramp(ref.bins, ref.n_fft, params.offset_samples - ref.offset)
        ramp *= np.complex64(params.linear_gain)
        out = np.empty((self.mix.channels, r1 - r0), dtype=np.float32)
        for c, spec in enumerate(spectra):
            out[c] = scipy.fft.irfft(spec * ramp, ref.n_fft)[ref.guard:ref.guard + r1 - r0]
        if len(spectra) == 1:  # the same acapella in every channel
            out[1:] = out[0]
        return out

    def render_segment(self, start: int, stop: int, params: AlignmentParams | None = None) -> np.ndarray:
        """The aligned acapella on mix frames ``[start, stop)`` only (for playback and views).

        Kaiser-windowed sinc (256 taps, beta 12) for the fractional part; agrees with
        :meth:`render` to better than -120 dB (measured on the tests' material).

        Returns:
            float32 ``(mix channels, stop - start)``.
        """
        p = params if params is not None else self.params
        b = self.drift_corrected(p.drift_ppm)
        channels, nb = b.shape
        length = max(int(stop) - int(start), 0)
        io = math.floor(p.offset_samples)
        frac = p.offset_samples - io
        half = _SINC_HALF if frac != 0.0 else 0
        # b frames needed: (start - io - half) .. (stop - io + half - 1)
        a = int(start) - io - half
        z = int(stop) - io + max(half - 1, 0)
        seg = np.zeros((channels, z - a), dtype=np.float64)
        s0, s1 = max(a, 0), min(z, nb)
        if s1 > s0:
            seg[:, s0 - a:s1 - a] = b[:, s0:s1]
        if half == 0:
            return (seg[:, :length] * p.linear_gain).astype(np.float32)
        h = _sinc_kernel(frac) * p.linear_gain
        out = np.empty((channels, length), dtype=np.float32)
        for c in range(channels):
            out[c] = np.convolve(seg[c], h, mode="valid")[:length]
        return out


def render_residual(
    mix: Audio,
    converted: np.ndarray,
    params: AlignmentParams,
    region: tuple[int, int] | None = None,
    window_seconds: float = 1.0,
) -> tuple[np.ndarray, NullTest]:
    """What is left of the mix after subtracting the aligned acapella, and its null test.

    Args:
        mix: the mix.
        converted: the acapella at the mix's rate and channels, drift-corrected, float32
            ``(mix channels, frames)`` (:meth:`AlignmentRenderer.drift_corrected`); only read,
            so a job may use the renderer's cached array while the GUI thread keeps nudging.
        params: offset/gain/polarity to place it with (its drift must be the one ``converted``
            was corrected for).
        region: ``(start, stop)`` mix frames to measure the null over (None = the whole mix).
        window_seconds: window of the per-window null depths (the local-fit curve).

    Returns:
        ``(residual, null)``: float32 ``(mix channels, mix frames)`` = ``mix - aligned``, and
        the :class:`NullTest` of that subtraction.
    """
    aligned = shift_onto_timeline(converted, float(params.offset_samples), mix.frames, params.linear_gain)
    nt = null_test(mix.samples, aligned, mix.sample_rate, window_seconds=window_seconds, region=region)
    np.subtract(mix.samples, aligned, out=aligned)
    return aligned, nt


def null_depth_for(mix: Audio, acapella: Audio, params: AlignmentParams) -> float:
    """One-off null depth (dB) of ``params``; for repeated use keep an :class:`AlignmentRenderer`."""
    return AlignmentRenderer(mix, acapella, params).null(params, bands=False).null_depth_db
