"""The mask overlay's display reduction: known masks give known images."""

from __future__ import annotations

import numpy as np
import pytest

from engine.mask_display import mask_display_image
from engine.spectral import StftConfig


def test_all_ones_mask_stays_ones_and_spans_the_track() -> None:
    cfg = StftConfig(n_fft=512)
    mask = np.ones((2, 257, 1000), dtype=np.float32)
    img = mask_display_image(mask, 8000, cfg, max_columns=100, rows=64)
    assert img.image.shape == (100, 64)
    assert np.allclose(img.image, 1.0)
    assert img.start_seconds == pytest.approx(-0.5 * 128 / 8000)
    assert img.stop_seconds == pytest.approx(999.5 * 128 / 8000)
    assert img.y_high == pytest.approx(255.5 * 8000 / 512)


def test_block_average_of_time_and_frequency_halves() -> None:
    cfg = StftConfig(n_fft=16)
    mask = np.zeros((9, 8), dtype=np.float32)
    mask[:4, :4] = 1.0  # low bins, first half of the frames
    img = mask_display_image(mask, 1000, cfg, max_columns=2, rows=2)
    # columns = time halves, rows = low/high bin halves (bins 0..7; Nyquist dropped)
    assert np.allclose(img.image, [[1.0, 0.0], [0.0, 0.0]])


def test_log_rows_follow_frequency_and_values_are_clipped() -> None:
    cfg = StftConfig(n_fft=1024)
    mask = np.zeros((513, 10), dtype=np.float32)
    mask[256:] = 2.0  # above half Nyquist; out-of-range values clip to 1
    img = mask_display_image(mask, 44100, cfg, rows=100, log_frequency=True)
    row_hz = np.geomspace(30.0, 22050.0, 100)
    assert np.allclose(img.image[:, row_hz > 11100.0], 1.0)
    assert np.allclose(img.image[:, row_hz < 11000.0], 0.0)
    assert img.log_frequency and img.y_low == pytest.approx(np.log10(30.0))


def test_rejects_a_mask_with_the_wrong_shape() -> None:
    with pytest.raises(ValueError):
        mask_display_image(np.ones(5), 44100)
