"""Seeded, vectorised mixing effects: biquad EQ, compressor, noise-IR reverb, panning, limiter,
and band-limited reading at fractional positions (for acapella drift).

All functions take and return float arrays shaped ``(channels, frames)`` unless stated; none
keeps state between calls, and every random choice comes from a ``numpy`` generator argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal, special

from engine.dynamics import limiter_gain  # noqa: F401  (the bus limiter; shared with export)


@dataclass(frozen=True)
class EqBand:
    """One biquad (RBJ audio-EQ cookbook).

    Attributes:
        kind: ``"highpass"``, ``"lowpass"``, ``"lowshelf"``, ``"highshelf"`` or ``"peak"``.
        freq_hz: corner / centre frequency.
        gain_db: boost (+) or cut (−); ignored by the pass filters.
        q: quality factor (shelves: 0.707 gives the classic slope).
    """

    kind: str
    freq_hz: float
    gain_db: float = 0.0
    q: float = 0.707


def biquad_sos(band: EqBand, sample_rate: int) -> np.ndarray:
    """Second-order section ``(1, 6)`` for ``band`` at ``sample_rate``."""
    f = min(band.freq_hz, 0.45 * sample_rate)
    w0 = 2 * np.pi * f / sample_rate
    cw, sw = np.cos(w0), np.sin(w0)
    alpha = sw / (2 * band.q)
    a_lin = 10 ** (band.gain_db / 40)
    if band.kind == "highpass":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif band.kind == "lowpass":
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif band.kind == "peak":
        b = [1 + alpha * a_lin, -2 * cw, 1 - alpha * a_lin]
        a = [1 + alpha / a_lin, -2 * cw, 1 - alpha / a_lin]
    elif band.kind in ("lowshelf", "highshelf"):
        sq = 2 * np.sqrt(a_lin) * alpha
        s = 1 if band.kind == "lowshelf" else -1
        b = [
            a_lin * ((a_lin + 1) - s * (a_lin - 1) * cw + sq),
            s * 2 * a_lin * ((a_lin - 1) - s * (a_lin + 1) * cw),
            a_lin * ((a_lin + 1) - s * (a_lin - 1) * cw - sq),
        ]
        a = [
            (a_lin + 1) + s * (a_lin - 1) * cw + sq,
            -s * 2 * ((a_lin - 1) + s * (a_lin + 1) * cw),
            (a_lin + 1) + s * (a_lin - 1) * cw - sq,
        ]
    else:
        raise ValueError(f"unknown EQ band kind {band.kind!r}")
    b_arr, a_arr = np.asarray(b) / a[0], np.asarray(a) / a[0]
    return np.concatenate([b_arr, a_arr])[None, :]


def equalize(x: np.ndarray, sample_rate: int, bands: Sequence[EqBand]) -> np.ndarray:
    """Apply the biquads in order along the last axis. ``x``: ``(channels, frames)``."""
    if not bands:
        return x
    sos = np.concatenate([biquad_sos(b, sample_rate) for b in bands], axis=0)
    return signal.sosfilt(sos, x, axis=-1)


def _one_pole(x: np.ndarray, time_constant_seconds: float, sample_rate: int, initial: float) -> np.ndarray:
    """One-pole low-pass along the last axis, starting from ``initial``."""
    a = np.exp(-1.0 / max(time_constant_seconds * sample_rate, 1.0))
    zi = np.full(x.shape[:-1] + (1,), initial * a)
    y, _ = signal.lfilter([1 - a], [1, -a], x, axis=-1, zi=zi)
    return y


def compress(
    x: np.ndarray,
    sample_rate: int,
    threshold_db: float,
    ratio: float,
    detector_ms: float = 10.0,
    smoothing_ms: float = 40.0,
    knee_db: float = 6.0,
) -> np.ndarray:
    """Feed-forward compressor with a soft knee, linked across channels.

    The detector is the channel-mean power smoothed over ``detector_ms``; the gain (dB) from the
    static curve is smoothed over ``smoothing_ms`` (one time constant for attack and release,
    which keeps the whole thing two linear filters and a static curve — vectorised).

    Returns:
        ``x`` times the gain curve, same shape. Makeup gain is left to the mixer.
    """
    power = np.mean(x * x, axis=0)
    level_db = 10 * np.log10(_one_pole(power, detector_ms / 1000, sample_rate, float(power[:64].mean())) + 1e-12)
    over = level_db - threshold_db
    # Soft knee: quadratic blend within ±knee/2 of the threshold.
    gr = np.where(
        over <= -knee_db / 2, 0.0,
        np.where(over >= knee_db / 2, over, (over + knee_db / 2) ** 2 / (2 * knee_db)),
    ) * (1 - 1 / ratio)
    gr = _one_pole(gr, smoothing_ms / 1000, sample_rate, 0.0)
    return x * (10 ** (-gr / 20))[None, :]


def pan(x: np.ndarray, position: float, width: float = 1.0) -> np.ndarray:
    """Place a source in the stereo field.

    Args:
        x: ``(1, frames)`` mono or ``(2, frames)`` stereo.
        position: −1 (left) … 0 (centre) … +1 (right); constant-power law.
        width: stereo sources only: 0 folds to mono, 1 keeps the original width.

    Returns:
        ``(2, frames)``.
    """
    if x.shape[0] == 1:
        theta = (position + 1) * np.pi / 4
        return np.concatenate([x * np.cos(theta), x * np.sin(theta)], axis=0) * np.sqrt(2)
    mid, side = (x[0] + x[1]) / 2, (x[0] - x[1]) / 2 * width
    left, right = mid + side, mid - side
    theta = (position + 1) * np.pi / 4
    return np.stack([left * np.cos(theta), right * np.sin(theta)]) * np.sqrt(2)


@dataclass(frozen=True)
class ReverbSettings:
    """A room: RT60 (seconds), pre-delay (seconds), high-frequency damping (0 none .. 1 dark),
    stereo width (0 mono .. 1 decorrelated)."""

    rt60_seconds: float = 1.2
    predelay_seconds: float = 0.02
    damping: float = 0.5
    width: float = 0.9


def random_reverb(rng: np.random.Generator) -> ReverbSettings:
    return ReverbSettings(
        rt60_seconds=float(rng.uniform(0.5, 2.2)),
        predelay_seconds=float(rng.uniform(0.005, 0.04)),
        damping=float(rng.uniform(0.2, 0.8)),
        width=float(rng.uniform(0.6, 1.0)),
    )


def reverb_ir(settings: ReverbSettings, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A stereo impulse response ``(2, n)``: sparse early reflections and exponentially decaying
    noise whose decay is faster in the highs (``damping``), unit energy per channel."""
    rt = settings.rt60_seconds
    n = int(min(rt * 1.3, 4.0) * sample_rate)
    pre = int(settings.predelay_seconds * sample_rate)
    t = np.arange(n) / sample_rate
    noise = rng.standard_normal((2, n))
    # Three bands decaying at their own rates: lows a little longer, highs shorter.
    bands = [
        (signal.butter(4, 400, "lowpass", fs=sample_rate, output="sos"), 1.15),
        (signal.butter(2, [400, 4000], "bandpass", fs=sample_rate, output="sos"), 1.0),
        (signal.butter(4, 4000, "highpass", fs=sample_rate, output="sos"), 1.0 - 0.7 * settings.damping),
    ]
    tail = np.zeros((2, n))
    for sos, scale in bands:
        decay = np.exp(-6.9078 * t / (rt * scale))  # −60 dB at rt·scale
        tail += signal.sosfilt(sos, noise, axis=-1) * decay
    build = np.clip(t / 0.03, 0.0, 1.0)  # diffuse tail builds up over ~30 ms
    tail *= build
    # Width: blend the two channels toward their mean.
    mean = tail.mean(axis=0, keepdims=True)
    tail = mean + settings.width * (tail - mean)
    early = np.zeros((2, n))
    for _ in range(8):
        tap = int(rng.uniform(0.004, 0.06) * sample_rate)
        if tap < n:
            early[:, tap] += rng.uniform(0.2, 0.6) * rng.choice([-1.0, 1.0], size=2)
    ir = np.zeros((2, n + pre))
    ir[:, pre:] = tail / np.sqrt(np.sum(tail**2, axis=1, keepdims=True)) + 0.3 * early
    ir /= np.sqrt(np.sum(ir**2, axis=1, keepdims=True))
    return ir


def reverb_wet(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """The reverb return of ``x`` (``(channels, frames)``; summed to mono first) through the
    stereo ``ir``, cut to ``x``'s length: ``(2, frames)``."""
    mono = x.mean(axis=0)
    return np.stack([signal.oaconvolve(mono, ir[c])[: x.shape[-1]] for c in range(2)])


_PHASES = 2048  # fractional-delay table resolution (linear interpolation between phases)
_SINC_TABLES: dict[int, np.ndarray] = {}


def _sinc_table(half_taps: int) -> np.ndarray:
    """Kaiser-windowed sinc taps for ``_PHASES + 1`` fractional positions: ``(phases + 1, 2·half)``.

    Row ``i`` holds the taps for reading at fraction ``i / _PHASES`` past a sample; taps run over
    the neighbours ``-half+1 … half``.
    """
    if half_taps not in _SINC_TABLES:
        k = np.arange(-half_taps + 1, half_taps + 1)
        frac = np.arange(_PHASES + 1)[:, None] / _PHASES
        d = k[None, :] - frac  # distance of each tap from the wanted position
        window = special.i0(8.0 * np.sqrt(np.clip(1 - (d / half_taps) ** 2, 0, 1))) / special.i0(8.0)
        _SINC_TABLES[half_taps] = (np.sinc(d) * window).astype(np.float32)
    return _SINC_TABLES[half_taps]


def read_at(x: np.ndarray, positions: np.ndarray, half_taps: int = 32, chunk: int = 1 << 15) -> np.ndarray:
    """Band-limited values of ``x`` at fractional sample ``positions`` (Kaiser-windowed sinc).

    The taps come from a table of 2048 fractional phases, linearly interpolated (error ≈ −130 dB).

    Args:
        x: ``(channels, frames)``.
        positions: ``(n,)`` sample positions; outside ``[0, frames)`` reads zeros.
        half_taps: taps on each side (32: ≈ −80 dB aliasing, flat to ~0.9 Nyquist).

    Returns:
        float32 ``(channels, n)``.
    """
    channels, frames = x.shape
    pad = half_taps + 1
    padded = np.concatenate(
        [np.zeros((channels, pad)), x, np.zeros((channels, pad))], axis=1
    ).astype(np.float32)
    table = _sinc_table(half_taps)
    k = np.arange(-half_taps + 1, half_taps + 1)
    out = np.zeros((channels, len(positions)), dtype=np.float32)
    for start in range(0, len(positions), chunk):
        p = np.asarray(positions[start : start + chunk], dtype=np.float64)
        base = np.floor(p).astype(np.int64)
        phase = (p - base) * _PHASES
        i = np.minimum(phase.astype(np.int64), _PHASES - 1)
        w = (phase - i).astype(np.float32)[:, None]
        weights = table[i] * (1 - w) + table[i + 1] * w
        idx = np.clip(base[:, None] + k[None, :] + pad, 0, padded.shape[1] - 1)
        inside = (p > -half_taps) & (p < frames + half_taps - 1)
        for c in range(channels):
            vals = np.einsum("nk,nk->n", padded[c][idx], weights)
            out[c, start : start + chunk] = np.where(inside, vals, 0.0)
    return out
