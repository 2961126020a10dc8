"""The ``reference`` engine on synthetic songs with known stems."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss
import torch

from engine.audio import Audio
from engine.dynamics import limiter_gain
from engine.errors import Cancelled, InputError
from engine.separators import REGISTRY, get_separator
from engine.separators.reference import _frames_stft, _overlap_add_istft
from engine.spectral import StftConfig, istft, stft

RATE = 22_050


def _vocal(seconds: float, seed: int = 0) -> np.ndarray:
    """A sung-like line: notes with vibrato and 19 harmonics, phrases with gaps."""
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    notes = 196 * 2 ** (rng.integers(0, 12, size=int(seconds * 2) + 1) / 12)
    f = np.repeat(notes, n // len(notes) + 1)[:n] * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f) / RATE
    x = sum((0.5 / k) * np.sin(k * phase + rng.uniform(0, 6.3)) for k in range(1, 20) if k * notes.max() < RATE / 2)
    env = ss.lfilter([0.01], [1, -0.99], (np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6)) > -0.3).astype(float))
    return (0.3 * x * env).astype(np.float32)


def _instrumental(seconds: float, seed: int = 1) -> np.ndarray:
    """Detuned chord tones and noise bursts (drums)."""
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    x = sum(0.08 * np.sin(2 * np.pi * f * rng.uniform(0.995, 1.005) * t + rng.uniform(0, 6.3))
            for f in (98, 147, 196, 247, 294, 392))
    hits = (np.sin(2 * np.pi * 2 * t) > 0.8) * rng.standard_normal(n) * 0.08
    return (x + hits).astype(np.float32)


def _sdr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - est).astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def song() -> tuple[np.ndarray, np.ndarray]:
    v = _vocal(20.0)
    i = _instrumental(20.0)
    vocals = np.stack([v, 0.8 * v])
    inst = np.stack([i, np.roll(i, 300)])
    return vocals, inst


def test_registered_with_parameters() -> None:
    assert "reference" in REGISTRY
    desc = REGISTRY["reference"].describe()
    assert desc["needs_acapella"] and desc["stems"] == ["vocals", "instrumental"]
    assert {p["name"] for p in desc["parameters"]} >= {"cleanup", "gain_window_seconds"}


def test_exact_acapella_gives_30_db_instrumental(song: tuple[np.ndarray, np.ndarray]) -> None:
    vocals, inst = song
    mix = Audio(vocals + inst, RATE)
    result = get_separator("reference").separate(mix, acapella=vocals)
    assert _sdr(inst, result.stems["instrumental"].samples) >= 30.0
    assert result.sum_error_db(mix) <= -100.0
    assert set(result.masks) == {"vocals", "instrumental"}
    m = result.masks["vocals"]
    assert m.shape == (2, 1025, 20 * RATE // 512 + 1) and float(m.min()) >= 0 and float(m.max()) <= 1


def _bus(x: np.ndarray, seconds: float) -> np.ndarray:
    """A linear time-varying 'mastering': tilt EQ and a pumping gain (−4…0 dB)."""
    b, a = ss.butter(1, 3000 / (RATE / 2), btype="high")
    eq = x + 0.6 * ss.lfilter(b, a, x, axis=-1)
    t = np.arange(x.shape[-1]) / RATE
    gain = 10 ** ((-2 - 2 * np.sin(2 * np.pi * 0.5 * t)) / 20)
    return (eq * gain).astype(np.float32)


def test_processed_mix_beats_naive_inversion(song: tuple[np.ndarray, np.ndarray]) -> None:
    vocals, inst = song
    v_bus, i_bus = _bus(vocals, 20.0), _bus(inst, 20.0)
    mix = Audio(v_bus + i_bus, RATE)
    acapella = vocals * 10 ** (-3 / 20)  # quieter acapella, not processed
    # naive: broadband least-squares gain, then subtraction
    g = float(np.sum(mix.samples * acapella) / np.sum(acapella**2))
    naive = _sdr(i_bus, mix.samples - g * acapella)
    ours = _sdr(i_bus, get_separator("reference").separate(mix, acapella=acapella).stems["instrumental"].samples)
    assert ours >= naive + 6.0, (ours, naive)
    assert ours >= 20.0


def test_cleanup_recovers_vocal_left_by_residual_drift(song: tuple[np.ndarray, np.ndarray]) -> None:
    """An acapella 100 ppm off (drift the align step did not correct): clean-up pulls it back."""
    vocals, inst = song
    mix = Audio(vocals + inst, RATE)
    n = vocals.shape[-1]
    t = np.arange(n) * (1 + 100e-6)
    drifted = np.stack([np.interp(t, np.arange(n), ch) for ch in vocals]).astype(np.float32)
    sep = get_separator("reference")
    plain = sep.separate(mix, acapella=drifted)
    cleaned = sep.separate(mix, acapella=drifted, parameters={"cleanup": 1.0, "cleanup_bias": 0.3})
    assert cleaned.sum_error_db(mix) <= -100.0
    assert _sdr(inst, cleaned.stems["instrumental"].samples) >= _sdr(inst, plain.stems["instrumental"].samples) + 2.0


def test_chunked_matches_one_pass(song: tuple[np.ndarray, np.ndarray]) -> None:
    vocals, inst = song
    mix = Audio(vocals + inst, RATE)
    sep = get_separator("reference")
    static = {"fine_gain": False}
    one = sep.separate(mix, acapella=vocals, parameters=static).stems["instrumental"].samples
    chunked = sep.separate(mix, acapella=vocals, parameters={"chunk_seconds": 5.0, **static})
    # Same model, but the band gains' statistics and choice are made per chunk (5 s here, 60 s
    # by default), so short chunks are a little noisier; both stay above the 30 dB requirement.
    # (The fine gain is one track over the whole song either way; it is checked below.)
    assert _sdr(inst, chunked.stems["instrumental"].samples) >= 30.0
    assert abs(_sdr(inst, chunked.stems["instrumental"].samples) - _sdr(inst, one)) < 6.0
    assert chunked.info["chunks"] >= 4
    assert chunked.sum_error_db(mix) <= -100.0
    with_fine = sep.separate(mix, acapella=vocals, parameters={"chunk_seconds": 5.0})
    assert _sdr(inst, with_fine.stems["instrumental"].samples) >= 30.0
    assert with_fine.sum_error_db(mix) <= -100.0


def _master(vocals: np.ndarray, inst: np.ndarray, drive_db: float) -> tuple[np.ndarray, np.ndarray]:
    """A mastered bus: tilt EQ, drive, and the look-ahead limiter (5 ms attack, 30 ms hold) on
    the sum, its gain applied to each stem so they still sum to the mix."""
    b, a = ss.butter(1, 3000 / (RATE / 2), btype="high")
    drive = 10 ** (drive_db / 20)
    v = (vocals + 0.6 * ss.lfilter(b, a, vocals, axis=-1)) * drive
    i = (inst + 0.6 * ss.lfilter(b, a, inst, axis=-1)) * drive
    gain = limiter_gain(v + i, RATE, ceiling_db=-1.0)
    return (v * gain).astype(np.float32), (i * gain).astype(np.float32)


def test_mastered_mix_follows_the_limiter(song: tuple[np.ndarray, np.ndarray]) -> None:
    """Bus EQ + limiter (up to ~11 dB of fast gain reduction): the fine gain track follows what
    windowed band gains cannot. Measured: ours 31.4 dB, naive 20.4 dB, without the fine gain 23.9 dB."""
    vocals, inst = song
    v_bus, i_bus = _master(vocals, inst, drive_db=10.0)
    mix = Audio(v_bus + i_bus, RATE)
    acapella = vocals * 10 ** (-3 / 20)  # quieter acapella, from before the bus
    g = float(np.sum(mix.samples * acapella) / np.sum(acapella**2))
    naive = _sdr(i_bus, mix.samples - g * acapella)
    sep = get_separator("reference")
    result = sep.separate(mix, acapella=acapella)
    ours = _sdr(i_bus, result.stems["instrumental"].samples)
    without = _sdr(i_bus, sep.separate(mix, acapella=acapella, parameters={"fine_gain": False})
                   .stems["instrumental"].samples)
    assert result.info["fine_gain"]["used"]
    assert ours >= naive + 8.0, (ours, naive)
    assert ours >= without + 4.0, (ours, without)
    assert ours >= 27.0
    assert result.sum_error_db(mix) <= -100.0
    m = result.masks["vocals"]
    assert float(m.min()) >= 0 and float(m.max()) <= 1


@pytest.mark.parametrize("n_fft", [2048, 1024, 256])
def test_fast_transforms_match_the_shared_stft(n_fft: int) -> None:
    """The engine's own STFT/ISTFT (pocketFFT, block overlap-add) agree with engine.spectral."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5 * n_fft + 37)).astype(np.float32)
    cfg = StftConfig(n_fft=n_fft)
    ours = _frames_stft(x, cfg, torch.device("cpu"), workers=1)
    ref = stft(torch.from_numpy(x), cfg)
    assert ours.shape == ref.shape
    assert float((ours - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    back = _overlap_add_istft(ref, x.shape[-1], cfg)
    assert float((back - istft(ref, x.shape[-1], cfg)).abs().max()) <= 1e-5
    assert float(np.abs(back.numpy() - x).max()) <= 1e-5
    # Decimated by 2: the signal below a quarter of the rate, at half the rate.
    t = np.arange(x.shape[-1])
    low = np.sin(2 * np.pi * 0.05 * t).astype(np.float32)[None]
    half = _overlap_add_istft(stft(torch.from_numpy(low), cfg), low.shape[-1], cfg, decimation=2).numpy()
    inner = slice(n_fft // 2, -n_fft // 2)
    assert half.shape[-1] == -(-low.shape[-1] // 2)
    assert float(np.abs(half[0, inner] - low[0, ::2][inner]).max()) <= 1e-4


def test_mono_mix_stereo_acapella_and_any_rate() -> None:
    v, i = _vocal(6.0, seed=3), _instrumental(6.0, seed=4)
    mix = Audio((v + i)[None], RATE)
    res = get_separator("reference").separate(mix, acapella=np.stack([v, v]))
    assert res.stems["vocals"].samples.shape == (1, v.shape[0])
    assert res.sum_error_db(mix) <= -100.0


def test_bad_parameters_and_missing_acapella() -> None:
    sep = get_separator("reference")
    mix = Audio(np.zeros((1, RATE), np.float32), RATE)
    with pytest.raises(InputError, match="needs an acapella"):
        sep.separate(mix)
    with pytest.raises(InputError, match="cleanup"):
        sep.separate(mix, acapella=np.zeros((1, RATE), np.float32), parameters={"cleanup": 5})
    with pytest.raises(InputError, match="no parameter"):
        sep.separate(mix, acapella=np.zeros((1, RATE), np.float32), parameters={"nope": 1})
    with pytest.raises(InputError, match="unknown engine"):
        get_separator("magic")


def test_cancel_stops(song: tuple[np.ndarray, np.ndarray]) -> None:
    vocals, inst = song
    mix = Audio(vocals + inst, RATE)
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        get_separator("reference").separate(mix, acapella=vocals, parameters={"chunk_seconds": 5.0}, cancel=cancel)
