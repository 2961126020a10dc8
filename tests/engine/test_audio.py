"""Audio I/O: round trips for every format, rate and channel count; every bad-input kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.audio import Audio, load_audio, resample, save_audio
from engine.errors import InputError

RATES = [8_000, 22_050, 44_100, 48_000, 96_000, 192_000]
CHANNELS = [1, 2, 6, 8]


def _signal(channels: int, rate: int, seconds: float = 0.25, seed: int = 0) -> np.ndarray:
    """Distinct decaying tones per channel, float32 (channels, frames), peak < 1."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    freqs = rng.uniform(100, min(3000, rate / 4), channels)
    x = 0.4 * np.sin(2 * np.pi * freqs[:, None] * t[None, :]) * np.exp(-2 * t)[None, :]
    return x.astype(np.float32)


def _db(err: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(err.astype(np.float64) ** 2) / np.sum(ref.astype(np.float64) ** 2) + 1e-300))


LOSSLESS = [("wav", "16", -75), ("wav", "24", -120), ("wav", "float", -300), ("flac", "16", -75), ("flac", "24", -120)]


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize(("fmt", "depth", "max_err_db"), LOSSLESS)
def test_lossless_round_trip(tmp_path: Path, rate: int, channels: int, fmt: str, depth: str, max_err_db: float) -> None:
    x = _signal(channels, rate)
    path = save_audio(tmp_path / f"x.{fmt}", Audio(x, rate), bit_depth=depth)
    a = load_audio(path)
    assert a.sample_rate == rate
    assert a.samples.shape == x.shape
    assert a.samples.dtype == np.float32
    assert _db(a.samples - x, x) <= max_err_db


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", [1, 2, 8])
def test_aiff_loads(tmp_path: Path, rate: int, channels: int) -> None:
    x = _signal(channels, rate)
    sf.write(tmp_path / "x.aiff", x.T, rate, format="AIFF", subtype="PCM_24")
    a = load_audio(tmp_path / "x.aiff")
    assert (a.sample_rate, a.samples.shape) == (rate, x.shape)
    assert _db(a.samples - x, x) < -120


@pytest.mark.parametrize(("rate", "channels"), [(8_000, 1), (22_050, 2), (44_100, 2), (48_000, 4), (96_000, 8), (192_000, 2)])
# 6-channel Vorbis is 5.1 with a band-limited LFE channel, so a tone there does not survive: use 4.
def test_vorbis_loads(tmp_path: Path, rate: int, channels: int) -> None:
    x = _signal(channels, rate, seconds=0.5)
    sf.write(tmp_path / "x.ogg", x.T, rate, format="OGG", subtype="VORBIS")
    a = load_audio(tmp_path / "x.ogg")
    assert (a.sample_rate, a.channels) == (rate, channels)
    assert abs(a.frames - x.shape[1]) <= rate // 100
    n = min(a.frames, x.shape[1])
    # Vorbis may reorder surround channels: each decoded channel must match one source channel.
    for ch in a.samples[:, :n]:
        assert min(_db(ch - ref, ref) for ref in x[:, :n]) < -20


@pytest.mark.parametrize(("rate", "channels"), [(8_000, 1), (22_050, 1), (44_100, 2), (48_000, 2)])
def test_mp3_loads(tmp_path: Path, rate: int, channels: int) -> None:
    x = _signal(channels, rate, seconds=0.5)
    sf.write(tmp_path / "x.mp3", x.T, rate, format="MP3", subtype="MPEG_LAYER_III")
    a = load_audio(tmp_path / "x.mp3")
    assert (a.sample_rate, a.channels) == (rate, channels)
    n = min(a.frames, x.shape[1])
    assert _db(a.samples[:, :n] - x[:, :n], x[:, :n]) < -15


def test_flac_cannot_be_float(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="x.flac"):
        save_audio(tmp_path / "x.flac", Audio(_signal(1, 8000), 8000), bit_depth="float")


def test_save_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "x.wav"
    save_audio(target, Audio(_signal(2, 8000), 8000))
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]


# ---- bad input: one error type, the file named, the problem said ------------------------------


def _expect(path: Path, words: str) -> None:
    with pytest.raises(InputError) as info:
        load_audio(path)
    msg = str(info.value)
    assert str(path) in msg
    assert words in msg.lower(), msg


def test_missing_file(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.wav", "not found")


def test_folder(tmp_path: Path) -> None:
    _expect(tmp_path, "folder")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    _expect(p, "empty")


def test_text_with_audio_extension(tmp_path: Path) -> None:
    p = tmp_path / "notes.mp3"
    p.write_text("this is not audio at all, just some text\n" * 20)
    _expect(p, "not an audio file")


def test_corrupt_header(tmp_path: Path) -> None:
    p = tmp_path / "bad.flac"
    save_audio(p, Audio(_signal(2, 44_100), 44_100))
    data = bytearray(p.read_bytes())
    data[:4] = b"XXXX"
    p.write_bytes(bytes(data))
    _expect(p, "not an audio file")


def test_truncated_wav(tmp_path: Path) -> None:
    p = tmp_path / "cut.wav"
    save_audio(p, Audio(_signal(2, 44_100, seconds=1.0), 44_100), bit_depth="16")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _expect(p, "truncated")


def test_zero_samples(tmp_path: Path) -> None:
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros((0, 2), dtype=np.float32), 44_100)
    _expect(p, "no audio")


def test_nan_samples(tmp_path: Path) -> None:
    p = tmp_path / "nan.wav"
    x = _signal(2, 8000)
    x[1, 100] = np.nan
    sf.write(p, x.T, 8000, subtype="FLOAT")
    _expect(p, "nan")


def test_inf_samples(tmp_path: Path) -> None:
    p = tmp_path / "inf.wav"
    x = _signal(1, 8000)
    x[0, 5] = np.inf
    sf.write(p, x.T, 8000, subtype="FLOAT")
    _expect(p, "infinity")


def test_unsupported_rate(tmp_path: Path) -> None:
    p = tmp_path / "low.wav"
    sf.write(p, np.zeros((100, 1), dtype=np.float32) + 0.1, 4000)
    _expect(p, "sample rate")


def test_unreadable_file(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root can read any file; permission errors cannot be provoked")
    p = tmp_path / "locked.wav"
    save_audio(p, Audio(_signal(1, 8000), 8000))
    p.chmod(0)
    _expect(p, "permission")


def test_resample_keeps_a_tone() -> None:
    rate_in, rate_out = 48_000, 44_100
    t = np.arange(rate_in) / rate_in
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    y = resample(x[None], rate_in, rate_out)[0]
    assert y.shape[0] == rate_out
    t2 = np.arange(rate_out) / rate_out
    ref = np.sin(2 * np.pi * 1000 * t2)
    mid = slice(2000, -2000)
    assert _db(y[mid] - ref[mid], ref[mid]) < -80
