"""Seeded synthetic songs with known stems, in plain numpy (fast enough for unit tests).

A sung-like line (notes with vibrato, a vowel-like formant envelope over ~30 harmonics, phrases
separated by gaps) over an accompaniment of detuned chord tones, a bass line and noise-burst
drums. Every call with the same arguments returns the same samples.
"""

from __future__ import annotations

import numpy as np
import scipy.signal as ss


def sung_line(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """A vocal-like line ``(samples,)`` float32: two notes per second, vibrato, formants, gaps."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    notes = 196.0 * 2 ** (rng.integers(0, 12, size=int(seconds * 2) + 1) / 12)
    f0 = np.repeat(notes, n // len(notes) + 1)[:n]
    f0 = ss.lfilter([0.02], [1, -0.98], f0 - f0[0]) + f0[0]  # portamento between notes
    f0 = f0 * (1 + 0.012 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    # a vowel-like spectral envelope: formants near 700, 1200 and 2600 Hz over a −6 dB/oct tilt
    out = np.zeros(n)
    for k in range(1, 40):
        fk = k * f0
        env = (1.0 / k) * (1 + 2.0 * np.exp(-((fk - 700) / 200) ** 2) + 1.5 * np.exp(-((fk - 1200) / 250) ** 2)
                           + 0.8 * np.exp(-((fk - 2600) / 350) ** 2))
        env = np.where(fk < 0.45 * rate, env, 0.0)
        out += env * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    gate = (np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 2 * np.pi)) > -0.3).astype(float)
    env = ss.lfilter([0.01], [1, -0.99], gate)
    env[env < 1e-4] = 0.0  # digital silence between phrases (no denormal-range tails)
    return (0.25 * out * env).astype(np.float32)


def accompaniment(rate: int, seconds: float, seed: int = 1) -> np.ndarray:
    """Detuned chord tones, a plucked bass line and noise-burst drums ``(samples,)`` float32."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    chord = sum(
        0.05 * (np.sin(2 * np.pi * f * rng.uniform(0.995, 1.005) * t + rng.uniform(0, 6.3))
                + 0.4 * np.sin(4 * np.pi * f * t + rng.uniform(0, 6.3)))
        for f in (98.0, 147.0, 196.0, 247.0, 294.0, 392.0)
    )
    beat = 0.5  # seconds
    bass_notes = 55.0 * 2 ** (rng.integers(0, 7, size=int(seconds / beat) + 1) / 12)
    bass_f = np.repeat(bass_notes, int(rate * beat))[:n]
    bass_env = np.exp(-(t % beat) * 6)
    bass = 0.12 * bass_env * np.sin(2 * np.pi * np.cumsum(bass_f) / rate)
    kick_env = np.exp(-(t % beat) * 40)
    kick = 0.25 * kick_env * np.sin(2 * np.pi * 60 * (t % beat) * (1 + 2 * kick_env))
    hat_t = (t + beat / 2) % (beat / 2)
    hats = 0.05 * np.exp(-hat_t * 60) * ss.lfilter([1, -1], [1], rng.standard_normal(n))
    snare_t = (t + beat) % (2 * beat)
    snare = 0.08 * np.exp(-snare_t * 25) * rng.standard_normal(n)
    return (chord + bass + kick + hats + snare).astype(np.float32)


def song(rate: int, seconds: float, seed: int = 0, stereo: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(vocals, instrumental)`` stems, each float32 ``(channels, samples)``; mix = their sum."""
    v = sung_line(rate, seconds, seed)
    i = accompaniment(rate, seconds, seed + 1000)
    if not stereo:
        return v[None], i[None]
    vocals = np.stack([v, 0.8 * v])
    inst = np.stack([i, np.roll(i, int(0.007 * rate))])
    return vocals, inst


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Plain signal-to-distortion ratio ``10·log10(|s|² / |s − ŝ|²)`` over all channels (dB)."""
    ref = reference.astype(np.float64)
    err = ref - estimate.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(float(np.sum(err**2)), 1e-30)))
