"""Stem export: formats round trip, naming, peaks, limiter, no silent overwrite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.audio import Audio, load_audio
from engine.errors import InputError
from engine.export import ExportOptions, export_stems, limit

RATE = 44_100


def _stems(peak: float = 0.5) -> dict[str, Audio]:
    rng = np.random.default_rng(0)
    v = rng.uniform(-peak, peak, (2, RATE // 2)).astype(np.float32)
    i = rng.uniform(-peak, peak, (2, RATE // 2)).astype(np.float32)
    return {"vocals": Audio(v, RATE), "instrumental": Audio(i, RATE)}


@pytest.mark.parametrize(("fmt", "depth", "tol"), [
    ("wav", "16", 2**-15), ("wav", "24", 2**-23), ("wav", "float", 0.0), ("flac", "16", 2**-15), ("flac", "24", 2**-23),
])
def test_round_trip_per_format(tmp_path: Path, fmt: str, depth: str, tol: float) -> None:
    stems = _stems()
    report = export_stems(stems, tmp_path, "My Song", ExportOptions(file_format=fmt, bit_depth=depth))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"My Song - instrumental.{fmt}", f"My Song - vocals.{fmt}"])
    for f in report.files:
        back = load_audio(f.path)
        assert back.sample_rate == RATE
        assert np.max(np.abs(back.samples - stems[f.stem].samples)) <= tol
        assert f.clipped_samples == 0
        assert f.peak_db == pytest.approx(20 * np.log10(np.max(np.abs(stems[f.stem].samples))), abs=1e-6)


def test_never_overwrites_without_permission(tmp_path: Path) -> None:
    export_stems(_stems(), tmp_path, "x", ExportOptions(template="{stem}"))
    before = (tmp_path / "vocals.wav").read_bytes()
    with pytest.raises(InputError, match="would overwrite"):
        export_stems(_stems(0.1), tmp_path, "x", ExportOptions(template="{stem}"))
    assert (tmp_path / "vocals.wav").read_bytes() == before
    export_stems(_stems(0.1), tmp_path, "x", ExportOptions(template="{stem}", overwrite=True))
    assert (tmp_path / "vocals.wav").read_bytes() != before


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot be written"):
        export_stems(_stems(), tmp_path, "x", ExportOptions(file_format="flac", bit_depth="float"))
    with pytest.raises(InputError, match="must contain"):
        export_stems(_stems(), tmp_path, "x", ExportOptions(template="{title}"))
    with pytest.raises(InputError, match="invalid"):
        export_stems(_stems(), tmp_path, "x", ExportOptions(template="{stem} {bpm}"))


def test_clipping_is_reported_not_silent(tmp_path: Path) -> None:
    stems = _stems(1.5)
    report = export_stems(stems, tmp_path, "x", ExportOptions(bit_depth="16"))
    assert all(f.clipped_samples > 0 for f in report.files)
    assert len(report.warnings) == 2 and "clipped" in report.warnings[0]
    floats = export_stems(stems, tmp_path / "f", "x", ExportOptions(bit_depth="float"))
    assert all(f.clipped_samples == 0 for f in floats.files)


def test_limiter_keeps_peaks_under_ceiling_and_quiet_parts_untouched(tmp_path: Path) -> None:
    t = np.arange(RATE) / RATE
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None]
    x[0, RATE // 2 : RATE // 2 + 100] *= 6.0  # a 1.8 peak
    y, reduction = limit(x, RATE, ceiling_db=-1.0)
    assert np.max(np.abs(y)) <= 10 ** (-1 / 20) + 1e-6
    assert reduction > 6.0
    assert np.array_equal(y[0, : RATE // 4], x[0, : RATE // 4])  # far from the peak: bit-identical
    report = export_stems({"s": Audio(x, RATE)}, tmp_path, "x", ExportOptions(limiter=True, ceiling_db=-1.0, template="{stem}"))
    assert report.files[0].clipped_samples == 0 and report.files[0].peak_db <= -1.0 + 1e-3
