"""The peak pyramid answers min/max per pixel exactly (to within one block) at any zoom."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import Cancelled
from engine.waveform import BLOCK_SIZES, PeakPyramid


def _signal(channels: int = 2, frames: int = 300_001, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((channels, frames)) * 0.3).astype(np.float32)


def _reference(x: np.ndarray, start: float, stop: float, pixels: int, block: int):
    """Brute force: per pixel, min/max over the blocks floor(e_i/B)..floor(e_(i+1)/B)-1."""
    edges = start + np.arange(pixels + 1) * ((stop - start) / pixels)
    mins = np.full((x.shape[0], pixels), np.nan, np.float32)
    maxs = np.full((x.shape[0], pixels), np.nan, np.float32)
    for i in range(pixels):
        n_blocks = -(-x.shape[1] // block)
        a = int(np.clip(np.floor(edges[i] / block), 0, n_blocks)) * block
        b = int(np.clip(np.floor(edges[i + 1] / block), 0, n_blocks)) * block
        seg = x[:, a : min(b, x.shape[1])]
        if seg.shape[1]:
            mins[:, i], maxs[:, i] = seg.min(axis=1), seg.max(axis=1)
    return mins, maxs


def test_levels_hold_block_extremes_including_partial_tail() -> None:
    x = _signal(frames=70_000)  # not a multiple of any block size
    pyr = PeakPyramid.build(x)
    assert [lv[0].shape for lv in pyr.levels] == [(2, -(-70_000 // b)) for b in BLOCK_SIZES]
    for block, (lo, hi) in zip(BLOCK_SIZES, pyr.levels, strict=True):
        for j in (0, 1, lo.shape[1] - 1):
            seg = x[:, j * block : (j + 1) * block]
            np.testing.assert_array_equal(lo[:, j], seg.min(axis=1))
            np.testing.assert_array_equal(hi[:, j], seg.max(axis=1))
    # peaks cost ~1/8 of the samples' bytes (2 arrays at 1/16 plus the coarser levels)
    assert pyr.nbytes < x.nbytes * 2 / 16 * 1.07


def test_build_in_chunks_matches_one_shot(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.waveform as wf

    x = _signal(frames=300_003, seed=3)
    whole = PeakPyramid.build(x)
    monkeypatch.setattr(wf, "_CHUNK_FRAMES", BLOCK_SIZES[-1])  # chunks are whole top blocks
    seen: list[float] = []
    chunked = PeakPyramid.build(x, progress=lambda f, m: seen.append(f))
    for (a, b), (c, d) in zip(whole.levels, chunked.levels, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == -(-300_003 // BLOCK_SIZES[-1])


@pytest.mark.parametrize(
    ("start", "stop", "pixels", "block"),
    [
        (0, 300_001, 17, 4096),  # ~17.6k samples/pixel -> level 4096
        (1234.5, 91_234.5, 333, 256),  # ~270 samples/pixel -> level 256
        (5000, 6000, 50, 16),  # 20 samples/pixel -> level 16
        (100, 1100, 200, 1),  # 5 samples/pixel -> raw samples
        (0, 300_001 * 64, 10, 65536),  # zoomed far out: coarsest level
    ],
)
def test_envelope_matches_brute_force(start: float, stop: float, pixels: int, block: int) -> None:
    x = _signal()
    pyr = PeakPyramid.build(x)
    mins, maxs = pyr.envelope(start, stop, pixels)
    ref_min, ref_max = _reference(x, start, stop, pixels, block)
    np.testing.assert_array_equal(mins, ref_min)
    np.testing.assert_array_equal(maxs, ref_max)


def test_envelope_is_exact_for_block_aligned_pixels_and_covers_all_samples() -> None:
    x = _signal(frames=65536 * 4)
    pyr = PeakPyramid.build(x)
    mins, maxs = pyr.envelope(0, x.shape[1], 64)  # 4096 samples per pixel, aligned
    exact = x.reshape(2, 64, 4096)
    np.testing.assert_array_equal(mins, exact.min(axis=2))
    np.testing.assert_array_equal(maxs, exact.max(axis=2))
    assert mins.min() == x.min() and maxs.max() == x.max()


def test_envelope_outside_track_is_nan_and_partial_overlap_is_clipped() -> None:
    x = _signal(frames=10_240)
    pyr = PeakPyramid.build(x)
    mins, maxs = pyr.envelope(-10_240, 20_480, 30)  # 1024 samples per pixel (level 256)
    assert np.isnan(mins[:, :10]).all() and np.isnan(maxs[:, 20:]).all()
    assert not np.isnan(mins[:, 10:20]).any()
    np.testing.assert_array_equal(mins[:, 10], x[:, 0:1024].min(axis=1))
    np.testing.assert_array_equal(maxs[:, 19], x[:, 9216:10240].max(axis=1))


def test_envelope_below_one_sample_per_pixel_holds_samples() -> None:
    x = _signal(channels=1, frames=100)
    pyr = PeakPyramid.build(x)
    mins, maxs = pyr.envelope(10, 15, 20)  # 4 pixels per sample
    np.testing.assert_array_equal(mins, maxs)
    np.testing.assert_array_equal(mins[0], np.repeat(x[0, 10:15], 4))


def test_cancel_stops_the_build() -> None:
    with pytest.raises(Cancelled):
        PeakPyramid.build(_signal(frames=5000), cancel=lambda: True)


def test_display_spectrogram_puts_a_tone_in_the_right_row() -> None:
    from engine.waveform import LOG_F_MIN_HZ, display_spectrogram

    rate = 44_100
    t = np.arange(rate * 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    x = np.stack([tone, -tone])  # anti-phase channels: a channel average would be silence
    img = display_spectrogram(x, rate, 0, x.shape[1], columns=40, rows=256)
    assert img.image_db.shape == (40, 256) and not img.log_frequency
    row_hz = img.y_low + (np.arange(256) + 0.5) * (img.y_high - img.y_low) / 256
    peak_rows = img.image_db.argmax(axis=1)
    assert np.all(np.abs(row_hz[peak_rows] - 1000.0) < 2 * (img.y_high - img.y_low) / 256)
    # a full-scale-normalised sine of amplitude 0.5 peaks near -6 dB (Hann scalloping < 1.5 dB)
    assert -8.0 < img.image_db.max() < -5.0
    log_img = display_spectrogram(x, rate, 0, x.shape[1], columns=40, rows=128, log_frequency=True)
    assert log_img.image_db.shape == (40, 128) and log_img.log_frequency
    log_hz = np.geomspace(LOG_F_MIN_HZ, rate / 2, 128)
    assert np.all(np.abs(np.log2(log_hz[log_img.image_db.argmax(axis=1)] / 1000.0)) < 0.1)
    assert log_img.y_low == pytest.approx(np.log10(LOG_F_MIN_HZ))
    assert log_img.y_high == pytest.approx(np.log10(rate / 2))


def test_display_spectrogram_past_the_end_is_silent_and_cancellable() -> None:
    from engine.waveform import display_spectrogram

    x = _signal(channels=1, frames=44_100)
    img = display_spectrogram(x, 44_100, 44_100 * 2, 44_100 * 3, columns=10, rows=64)
    assert img.image_db.max() <= -119.0  # the 1e-12 power floor
    with pytest.raises(Cancelled):
        display_spectrogram(x, 44_100, 0, 44_100, 10, cancel=lambda: True)


def test_update_after_samples_change_matches_rebuild() -> None:
    rng = np.random.default_rng(3)
    samples = rng.standard_normal((2, 300_000)).astype(np.float32)
    pyramid = PeakPyramid.build(samples)
    samples[:, 140_000:150_000] *= 3.0
    pyramid.update(140_000, 150_000)
    fresh = PeakPyramid.build(samples.copy())
    for (lo, hi), (lo2, hi2) in zip(pyramid.levels, fresh.levels, strict=True):
        assert np.array_equal(lo, lo2) and np.array_equal(hi, hi2)
