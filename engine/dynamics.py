"""Dynamics shared by the product and the song synthesizer: a look-ahead peak limiter."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def limiter_gain(
    x: np.ndarray,
    sample_rate: int,
    ceiling_db: float = -1.0,
    lookahead_ms: float = 5.0,
    hold_ms: float = 30.0,
) -> np.ndarray:
    """Gain curve ``(frames,)`` of a look-ahead peak limiter: ``x * gain`` never exceeds the ceiling.

    The needed gain per sample is min-filtered over ``lookahead + hold`` ahead and then smoothed
    by a Hann window of ``lookahead``; every smoothed value averages minima that already cover
    the current sample, so the ceiling holds exactly, and the ramps are click-free. Being a pure
    gain (no waveshaping), applying it to each stem keeps the stems summing to the limited mix.
    """
    ceiling = 10 ** (ceiling_db / 20)
    peak = np.max(np.abs(x), axis=0)
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    a = max(int(lookahead_ms * sample_rate / 1000), 1)
    w = a + int(hold_ms * sample_rate / 1000)
    # m[j] = min(need[j : j + w]).
    m = ndimage.minimum_filter1d(need, size=w, origin=-(w // 2), mode="nearest")
    kernel = np.hanning(a + 2)[1:-1]
    kernel /= kernel.sum()
    # g[n] = Σ kernel · m[n − a + 1 … n]: each of those minima covers sample n.
    # Smooth the attenuation 1 − m, so stretches that need none keep a gain of exactly 1.
    padded = np.concatenate([np.full(a - 1, 1.0 - m[0]), 1.0 - m])
    gain = 1.0 - np.convolve(padded, kernel[::-1], mode="valid")
    return np.clip(np.minimum(gain, need), 0.0, 1.0)
