"""The one STFT convention: perfect reconstruction, shapes, bands, display spectrograms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.spectral import (
    BANDS,
    DEFAULT_STFT,
    StftConfig,
    band_masks,
    istft,
    log_frequency_rows,
    spectrogram_columns,
    stft,
)


def _err_db(x: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum((x - y) ** 2) / np.sum(x**2)))


@pytest.mark.parametrize("shape", [(1, 4410), (2, 44_100), (3, 2, 10_000), (1, 1000)])
@pytest.mark.parametrize("n_fft", [512, 2048, 4096])
def test_round_trip_below_minus_100_db(shape: tuple[int, ...], n_fft: int) -> None:
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    cfg = StftConfig(n_fft=n_fft)
    spec = stft(x, cfg)
    assert spec.shape == (*shape[:-1], n_fft // 2 + 1, cfg.frames_for(shape[-1]))
    y = istft(spec, shape[-1], cfg).numpy()
    assert y.shape == x.shape
    assert _err_db(x, y) <= -100


def test_round_trip_float64_is_exact() -> None:
    x = np.random.default_rng(2).standard_normal((2, 30_000))
    y = istft(stft(x), x.shape[-1]).numpy()
    assert _err_db(x, y) <= -250


def test_all_ones_mask_returns_the_input() -> None:
    x = torch.randn(2, 22_050)
    spec = stft(x)
    y = istft(spec * torch.ones_like(spec.real), x.shape[-1])
    assert _err_db(x.numpy(), y.numpy()) <= -100


def test_sine_lands_in_its_bin() -> None:
    rate = 44_100
    f = DEFAULT_STFT.frequencies_hz(rate)[93]
    t = np.arange(rate) / rate
    spec = stft(np.sin(2 * np.pi * f * t).astype(np.float32))
    assert int(spec.abs().mean(dim=-1).argmax()) == 93


def test_bands_are_the_seeds() -> None:
    assert [(n, lo, hi) for n, lo, hi in BANDS] == [
        ("Sub-bass", 20, 60), ("Bass", 60, 250), ("Low-mid", 250, 500), ("Mid", 500, 2000), ("High", 2000, 8000),
    ]
    masks = band_masks(DEFAULT_STFT.frequencies_hz(44_100))
    assert not any(np.any(masks[a] & masks[b]) for a in masks for b in masks if a != b)


def test_display_spectrogram_peaks_at_the_tone() -> None:
    rate = 8_000
    t = np.arange(rate * 4) / rate
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None]
    img = spectrogram_columns(x, 0, x.shape[1], columns=50, n_fft=1024)
    assert img.shape == (50, 513)
    peak_bin = np.argmax(img, axis=1)
    assert np.all(np.abs(peak_bin * rate / 1024 - 1000) <= rate / 1024)
    # A sine of amplitude 0.5 has power 0.25 re full scale: about -6 dB at the peak.
    assert abs(float(img[:, peak_bin[0]].mean()) - 20 * np.log10(0.5)) < 1.5


def test_display_spectrogram_outside_signal_is_floor() -> None:
    x = np.ones((1, 1000), dtype=np.float32)
    img = spectrogram_columns(x, 10_000, 20_000, columns=8, n_fft=256)
    assert np.all(img <= -119)


def test_log_rows_monotonic() -> None:
    img = np.tile(np.arange(1025, dtype=np.float32), (3, 1))
    out, hz = log_frequency_rows(img, 44_100, rows=64)
    assert out.shape == (3, 64)
    assert np.all(np.diff(hz) > 0) and np.all(np.diff(out[0]) > 0)
