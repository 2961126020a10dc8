"""Training pipeline: the stem-bank codec, dynamic mixing, checkpoints, and a resumable run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import InputError
from engine.models import SpectrogramUNet, UNetConfig
from engine.training.bank import (
    StemBank,
    decode_stems_int16,
    encode_stems,
    load_manifest,
    read_track,
    write_track,
)
from engine.training.checkpoint import read_checkpoint, restore, save_checkpoint
from engine.training.evaluate import plain_sdr_db
from engine.training.mixer import (
    DynamicMixer,
    MixerConfig,
    TrackDataset,
    _resample_spectrum,
    limiter_gain,
)
from engine.training.train import DEFAULT_CONFIG, learning_rate, read_log, train

RATE = 22050
TINY_MODEL = {"widths": [4, 8, 8], "time_strides": [2, 2, 1], "head_channels": 4}
QUIET = MixerConfig(segment_samples=7936, batch_size=3, p_same_song=1.0, gain_db=0.0, p_silent_stem=0.0,
                    p_speed=0.0, p_eq=0.0, p_swap=0.0, p_polarity=0.0, p_limiter=0.0)


def tone_stems(seed: int, seconds: float) -> dict[str, np.ndarray]:
    """Four distinguishable stereo stems: noise bursts, a low sine, a chord, a vibrato tone."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    def st(x: np.ndarray, pan: float) -> np.ndarray:
        return np.stack([x * (1 - pan), x * (1 + pan)]).astype(np.float32) * 0.2
    drums = rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.9)
    bass = np.sin(2 * np.pi * (55 + 10 * seed) * t)
    other = sum(np.sin(2 * np.pi * f * t) for f in (330.0, 415.0, 495.0)) / 3
    vocals = np.sin(2 * np.pi * (440 + 20 * seed) * t + 3 * np.sin(2 * np.pi * 5 * t))
    return {"drums": st(drums, 0.2), "bass": st(bass, 0.0), "other": st(other, -0.3), "vocals": st(vocals, 0.05)}


@pytest.fixture(scope="module")
def tiny_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bank = tmp_path_factory.mktemp("bank")
    for i in range(3):
        write_track(bank, f"t{i}", tone_stems(i, 1.5), "train", RATE)
    write_track(bank, "v0", tone_stems(9, 1.0), "val", RATE)
    return bank


def test_codec_is_lossless_at_16_bits() -> None:
    rng = np.random.default_rng(0)
    for channels in (1, 2):
        x = (0.3 * rng.standard_normal((4, channels, 5000))).astype(np.float32)
        x[0, :, 1000:2000] = 0.0  # silence and full scale both survive
        x[1, 0, 10] = -x[1].__abs__().max() * 1.0
        arrays = encode_stems(x)
        q, scale = decode_stems_int16(arrays)
        expected = np.clip(np.round(x / scale * 32767), -32768, 32767).astype(np.int16)
        np.testing.assert_array_equal(q, expected)
        assert np.abs(q / 32767 * scale - x).max() <= scale / 32767
    arrays = encode_stems(x, quantize_bits=12)
    q, scale = decode_stems_int16(arrays)
    assert np.abs(q / 32767 * scale - x).max() <= 9 * scale / 32767  # 4 bits dropped: ≤ half a 16-step + rounding


def test_bank_tracks_and_manifest(tiny_bank: Path, tmp_path: Path) -> None:
    manifest = load_manifest(tiny_bank)
    assert {t["split"] for t in manifest["tracks"]} == {"train", "val"}
    bank = StemBank.load(tiny_bank)
    track = bank.split("train")[0]
    stems = tone_stems(0, 1.5)
    assert np.abs(track.stem("bass") - stems["bass"]).max() < 2e-4
    inst = track.stem("instrumental")
    np.testing.assert_allclose(inst, track.stem("drums") + track.stem("bass") + track.stem("other"), atol=1e-6)
    assert bank.seconds("train") == pytest.approx(4.5)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a track")
    with pytest.raises(InputError, match="not a stem-bank track"):
        read_track(bad)
    with pytest.raises(InputError, match="stems must be"):
        write_track(tmp_path, "x", {"vocals": stems["vocals"]}, "train", RATE)


def test_two_stem_tracks_from_a_mix_and_acapella(tmp_path: Path) -> None:
    stems = tone_stems(1, 1.0)
    mix = sum(stems.values())
    write_track(tmp_path, "pair", {"vocals": stems["vocals"], "instrumental": mix - stems["vocals"]}, "train", RATE)
    bank = StemBank.load(tmp_path)
    mixer = DynamicMixer(bank, ("vocals", "instrumental"), QUIET, seed=1)
    mix_b, stems_b = mixer.batch(0)
    assert stems_b.shape == (3, 2, 2, QUIET.segment_samples)
    torch.testing.assert_close(mix_b, stems_b.sum(1))
    with pytest.raises(ValueError, match="no 'train' tracks"):
        DynamicMixer(bank, ("drums", "bass", "other", "vocals"), QUIET)


def test_mixer_is_reproducible_and_sums(tiny_bank: Path) -> None:
    bank = StemBank.load(tiny_bank)
    cfg = MixerConfig(segment_samples=7936, batch_size=4, p_limiter=0.5, p_speed=0.8, p_eq=0.8)
    mixer = DynamicMixer(bank, ("drums", "bass", "other", "vocals"), cfg, seed=3)
    a_mix, a_stems = mixer.batch(5)
    b_mix, b_stems = mixer.batch(5)
    assert torch.equal(a_mix, b_mix) and torch.equal(a_stems, b_stems)
    assert not torch.equal(a_mix, mixer.batch(6)[0])
    torch.testing.assert_close(a_mix, a_stems.sum(1))
    assert a_stems.shape == (4, 4, 2, 7936) and torch.isfinite(a_stems).all()
    # The DataLoader path yields the same batches whatever the worker count.
    loader = torch.utils.data.DataLoader(TrackDataset(mixer, start_batch=5), batch_size=4, num_workers=2)
    first = next(iter(loader))
    torch.testing.assert_close(first[1], a_stems)


def test_quiet_mixer_reproduces_a_song_segment(tiny_bank: Path) -> None:
    """With every augmentation off, an example is a plain segment of one song's stems."""
    bank = StemBank.load(tiny_bank)
    mixer = DynamicMixer(bank, ("drums", "bass", "other", "vocals"), QUIET, seed=0)
    stems = mixer.example_at(0).numpy()
    songs = [np.stack([t.stem(s) for s in ("drums", "bass", "other", "vocals")]) for t in mixer.tracks]
    n = stems.shape[-1]
    found = False
    at = min(int(np.argmax(np.abs(stems[3, 0]))), n - 64)  # a loud spot of the vibrato tone
    probe = stems[3, 0, at : at + 64]
    for song in songs:
        padded = np.concatenate([np.zeros_like(song[..., :n]), song, np.zeros_like(song[..., :n])], axis=-1)
        windows = np.lib.stride_tricks.sliding_window_view(padded[3, 0], 64)
        for w in np.flatnonzero(np.abs(windows - probe).max(axis=1) < 1e-6):
            start = w - at
            if 0 <= start and start + n <= padded.shape[-1] and np.allclose(
                    padded[..., start : start + n], stems, atol=1e-6):
                found = True
    assert found


def test_speed_change_scales_frequency() -> None:
    rate, f = 22050, 441.0
    x = torch.sin(2 * torch.pi * f * torch.arange(22050) / rate)[None]
    y = _resample_spectrum(torch.fft.rfft(x), 22050, 21000)  # played 5 % faster
    peak_hz = float(torch.fft.rfft(y[0]).abs().argmax()) * rate / 21000
    assert peak_hz == pytest.approx(f * 22050 / 21000, abs=1.1)


def test_limiter_respects_its_ceiling() -> None:
    rng = np.random.default_rng(1)
    mix = torch.from_numpy((rng.standard_normal((2, 44100)) * 0.8).astype(np.float32))
    g = limiter_gain(mix, 44100, 0.5)
    assert float(g.max()) <= 1.0 and float(g.min()) > 0.0
    assert float((mix * g).abs().max()) <= 0.5 * 1.05  # smoothing ripple only


def test_plain_sdr_known_answer() -> None:
    rng = np.random.default_rng(2)
    s = rng.standard_normal((2, 10000))
    noise = rng.standard_normal((2, 10000))
    noise *= np.sqrt(np.sum(s**2) / np.sum(noise**2)) * 0.1  # error energy −20 dB
    assert plain_sdr_db(s, s + noise) == pytest.approx(20.0, abs=1e-9)
    assert np.isnan(plain_sdr_db(np.zeros(5), np.ones(5)))


def test_learning_rate_schedule() -> None:
    cfg = dict(DEFAULT_CONFIG, lr=1e-3, warmup_steps=10, total_steps=110, min_lr_fraction=0.1)
    assert learning_rate(0, cfg) == pytest.approx(1e-4)
    assert learning_rate(9, cfg) == pytest.approx(1e-3)
    assert learning_rate(60, cfg) == pytest.approx(0.55e-3)
    assert learning_rate(110, cfg) == pytest.approx(1e-4) == learning_rate(500, cfg)


def test_checkpoint_round_trip_and_tamper(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SpectrogramUNet(UNetConfig(stems=("vocals", "instrumental")))  # the real size
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(1, 2, 513, 64)).sum().backward()
    opt.step()
    side = save_checkpoint(tmp_path / "c.safetensors", model, opt, {"step": 1})
    assert side["bytes"] <= 16 * 1024 * 1024
    tensors, meta = read_checkpoint(tmp_path / "c.safetensors")
    model2 = SpectrogramUNet(UNetConfig(stems=("vocals", "instrumental")))
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    restore(model2, opt2, tensors, meta)
    for (n, p), p2 in zip(model.named_parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, p2), n
    first = next(iter(model.parameters()))
    st, st2 = opt.state[first], opt2.state[next(iter(model2.parameters()))]
    tol = 0.0 if meta["moments_dtype"] == "float32" else 1e-2
    torch.testing.assert_close(st2["exp_avg"], st["exp_avg"], rtol=tol, atol=1e-12)
    data = bytearray((tmp_path / "c.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "c.safetensors").write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256"):
        read_checkpoint(tmp_path / "c.safetensors")


def test_training_runs_and_resumes(tiny_bank: Path, tmp_path: Path) -> None:
    cfg = dict(DEFAULT_CONFIG, bank=str(tiny_bank), model=TINY_MODEL, stems=["vocals", "instrumental"],
               mixer={"segment_samples": 7936, "batch_size": 2}, log_every_steps=2, warmup_steps=2, threads=1)
    first = train(cfg, tmp_path / "a", minutes=5, max_steps=4, quiet=True)
    assert first["step"] == 4
    assert (tmp_path / "a" / "curve.png").stat().st_size > 1000
    log_a = read_log(tmp_path / "a" / "train_log.jsonl")
    assert [r["type"] for r in log_a].count("val") == 2  # at step 0 and at the end
    assert np.isfinite(log_a[-1]["sdr"]["vocals"])
    second = train(cfg, tmp_path / "b", minutes=5, resume=tmp_path / "a" / "checkpoint.safetensors",
                   max_steps=6, quiet=True)
    assert second["step"] == 6 and second["examples"] == 12
    log_b = read_log(tmp_path / "b" / "train_log.jsonl")
    assert log_b[: len(log_a)] == log_a  # the history travels with the checkpoint
    assert [r["step"] for r in log_b if r["type"] == "train"] == [2, 4, 6]
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["sha256"] == second["sha256"]
