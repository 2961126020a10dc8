"""Engine helpers the align panel uses: ``AlignmentRenderer.is_fast`` and ``render_residual``."""

from __future__ import annotations

import numpy as np
import pytest

from engine.align import AlignmentParams, AlignmentRenderer, null_test, render_residual
from engine.audio import Audio
from tests.engine.signals import song

RATE = 22_050
OFFSET = 1_234


@pytest.fixture(scope="module")
def pair() -> tuple[Audio, Audio, np.ndarray]:
    vocals, inst = song(RATE, 4.0, seed=5)
    mix = (vocals + 0.1 * inst).astype(np.float32)
    aca = np.ascontiguousarray(vocals[:, OFFSET:] * np.float32(0.5))  # 6.02 dB quieter
    return Audio(mix, RATE), Audio(aca, RATE), (0.1 * inst).astype(np.float32)


def test_residual_of_the_exact_placement_is_the_band(pair) -> None:
    mix, aca, band = pair
    params = AlignmentParams(OFFSET, 0.0, 20 * np.log10(2.0), 1)
    r = AlignmentRenderer(mix, aca, params)
    residual, nt = render_residual(mix, r.drift_corrected(0.0), params)
    assert residual.shape == mix.samples.shape and residual.dtype == np.float32
    # mix - aligned vocal = band, except the first OFFSET frames the acapella does not cover
    np.testing.assert_allclose(residual[:, OFFSET:], band[:, OFFSET:], atol=2e-6)
    np.testing.assert_allclose(residual[:, :OFFSET], mix.samples[:, :OFFSET], atol=0)
    # the null test is the one of the same subtraction
    ref = null_test(mix.samples, mix.samples - residual, RATE)
    assert nt.null_depth_db == pytest.approx(ref.null_depth_db, abs=1e-6)
    assert nt.window_null_depth_db.shape == ref.window_null_depth_db.shape


def test_residual_follows_offset_gain_and_polarity(pair) -> None:
    mix, aca, _ = pair
    r = AlignmentRenderer(mix, aca)
    converted = r.drift_corrected(0.0)
    p = AlignmentParams(OFFSET + 10.5, 0.0, 3.0, -1)
    residual, nt = render_residual(mix, converted, p, region=(OFFSET, mix.frames))
    aligned = r.render(p)
    np.testing.assert_allclose(residual, mix.samples - aligned, atol=1e-6)
    assert nt.window_start_seconds[0] == pytest.approx(OFFSET / RATE)
    good, _ = render_residual(mix, converted, AlignmentParams(OFFSET, 0.0, 20 * np.log10(2.0), 1),
                              region=(OFFSET, mix.frames))
    assert np.sum(residual.astype(np.float64) ** 2) > 10 * np.sum(good.astype(np.float64) ** 2)


def test_is_fast_tells_when_the_null_reuses_the_placement(pair) -> None:
    mix, aca, _ = pair
    r = AlignmentRenderer(mix, aca, fast_range_seconds=0.5)
    p = AlignmentParams(OFFSET, 0.0, 6.0, 1)
    assert not r.is_fast(p)  # nothing cached yet
    r.null(p, bands=False)
    assert r.is_fast(p)
    assert r.is_fast(p.nudged(offset_samples=OFFSET + 0.5 * RATE))
    assert r.is_fast(p.nudged(gain_db=-3.0, polarity=-1))
    assert not r.is_fast(p.nudged(offset_samples=OFFSET + 0.5 * RATE + 1))
    assert not r.is_fast(p.nudged(drift_ppm=50.0))
