"""The ``unet`` engine: shapes, exact sums, chunking invariance, weights safety, and a real
quality check of the shipped 2-stem model against oracle-free baselines."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.audio import Audio, resample
from engine.errors import InputError
from engine.models import (
    MODELS_DIR,
    SpectrogramUNet,
    UNetConfig,
    load_model,
    save_weights,
    write_model_card,
)
from engine.separators.base import REGISTRY
from engine.separators.unet import (
    InferenceOptions,
    StreamingResampler,
    UNetSeparator,
    separate_with_model,
)
from engine.spectral import StftConfig, stft

TINY = UNetConfig(stems=("a", "b", "c"), widths=(4, 8, 8), time_strides=(2, 2, 1), head_channels=4)


def tiny_model(seed: int = 0, config: UNetConfig = TINY) -> SpectrogramUNet:
    torch.manual_seed(seed)
    model = SpectrogramUNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def error_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    err = float(np.sum((estimate.astype(np.float64) - reference) ** 2))
    return 10 * np.log10(err / (float(np.sum(reference.astype(np.float64) ** 2)) + 1e-30) + 1e-30)


def noise_mix(rate: int, channels: int, frames: int, seed: int = 1) -> Audio:
    rng = np.random.default_rng(seed)
    return Audio((0.1 * rng.standard_normal((channels, frames))).astype(np.float32), rate)


@pytest.mark.parametrize(("rate", "channels", "frames"), [
    (44100, 2, 100_000), (48000, 1, 60_001), (16000, 3, 20_000), (22050, 2, 300), (8000, 2, 5),
])
def test_shapes_masks_and_exact_sum(rate: int, channels: int, frames: int) -> None:
    model = tiny_model()
    mix = noise_mix(rate, channels, frames)
    result = separate_with_model(model, mix, InferenceOptions(chunk_seconds=2.0))
    assert list(result.stems) == ["a", "b", "c"]
    for stem in result.stems.values():
        assert stem.samples.shape == (channels, frames) and stem.sample_rate == rate
        assert stem.samples.dtype == np.float32
    assert result.sum_error_db(mix) < -100.0
    cfg = result.stft
    assert cfg.n_fft == 2 * round(1024 * rate / 22050 / 2)  # the internal window's duration
    total = np.zeros((channels, cfg.bins, cfg.frames_for(frames)), dtype=np.float32)
    for m in result.masks.values():
        assert m.shape == total.shape and m.dtype == np.float16
        assert m.min() >= 0.0 and m.max() <= 1.0
        total += m.astype(np.float32)
    np.testing.assert_allclose(total, 1.0, atol=3e-3)  # float16 masks summing to 1 per bin


@pytest.mark.parametrize("wiener", [False, True])
def test_chunked_equals_one_pass(wiener: bool) -> None:
    model = tiny_model(3)
    mix = noise_mix(44100, 2, 150_000, seed=5)
    one = separate_with_model(model, mix, InferenceOptions(chunk_seconds=1000.0, wiener=wiener))
    assert one.info["chunks"] == 1
    chunked = separate_with_model(model, mix, InferenceOptions(chunk_seconds=1.0, batch_chunks=2, wiener=wiener))
    assert chunked.info["chunks"] >= 3
    for name in one.stems:
        assert error_db(chunked.stems[name].samples, one.stems[name].samples) < -60.0
        np.testing.assert_allclose(chunked.masks[name].astype(np.float32), one.masks[name].astype(np.float32), atol=2e-3)


def test_receptive_radius_bounds_the_real_influence() -> None:
    model = tiny_model(7)
    radius = model.receptive_radius_frames()
    x = torch.rand(1, 2, TINY.bins, 256, requires_grad=True)
    model(x)[0, 0, :, :, 128].sum().backward()
    assert x.grad is not None
    touched = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2))).flatten() - 128
    assert touched.numel() > 0
    assert int(touched.abs().max()) <= radius


def test_default_architecture_radius_is_covered_by_context() -> None:
    model = SpectrogramUNet(UNetConfig(stems=("vocals", "instrumental")))
    r = model.receptive_radius_frames()
    assert 100 < r <= 256  # the engine rounds the context up to a multiple of 64 frames


@pytest.mark.parametrize("stride", [(2, 2), (2, 1), (3, 3)])
def test_upsample_is_a_transposed_convolution_with_kernel_equal_to_stride(stride: tuple[int, int]) -> None:
    """The up-sampling (pixel shuffle when the strides match, an explicit reorder otherwise)
    equals ``conv_transpose2d`` with the 1×1 projection's weights as its kernel."""
    from engine.models.unet import _Upsample

    torch.manual_seed(3)
    up = _Upsample(5, 3, stride)
    x = torch.randn(2, 5, 4, 6)
    sf, st = stride
    w = up.proj.weight[:, :, 0, 0].reshape(3, sf, st, 5).permute(3, 0, 1, 2)  # (cin, cout, sf, st)
    bias = up.proj.bias.reshape(3, sf, st)
    ref = torch.nn.functional.conv_transpose2d(x, w, stride=stride)
    ref = ref + bias.repeat(1, 4, 6)[None]  # the bias depends on the position within the stride
    with torch.no_grad():
        y = up(x)
    assert y.shape == (2, 3, 4 * sf, 6 * st)
    assert torch.allclose(y, ref, atol=1e-5)


def test_a_one_hot_mask_returns_the_input() -> None:
    """A model whose first stem always wins gives that stem = mix (all-ones mask)."""
    model = tiny_model(1)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[:2] = 40.0  # stem "a" for both channels: softmax ≈ 1
    mix = noise_mix(44100, 2, 44100)
    result = separate_with_model(model, mix, InferenceOptions())
    assert error_db(result.stems["a"].samples, mix.samples) < -80.0
    assert np.abs(result.stems["b"].samples).max() < 1e-6


def test_streaming_resampler_equals_whole_signal() -> None:
    x = np.random.default_rng(2).standard_normal((2, 30_001)).astype(np.float32)
    for rate_in, rate_out in ((44100, 22050), (48000, 22050), (16000, 22050), (22050, 22050)):
        full = resample(x, rate_in, rate_out)
        stream = StreamingResampler(x, rate_in, rate_out)
        assert stream.length == full.shape[-1]
        for a, b in ((0, 50), (999, 4321), (stream.length - 77, stream.length)):
            np.testing.assert_allclose(stream.get(a, b), full[:, a:b], atol=1e-6)


def test_mono_file_gets_mono_stems_and_masks() -> None:
    model = tiny_model(4)
    mix = noise_mix(22050, 1, 30_000)
    result = separate_with_model(model, mix, InferenceOptions(wiener=True))
    assert all(s.channels == 1 for s in result.stems.values())
    assert all(m.shape[0] == 1 for m in result.masks.values())
    assert result.sum_error_db(mix) < -100.0


def test_wiener_single_channel_is_power_ratio_masking() -> None:
    """With one channel the Wiener step is the power-ratio mask of the masked mix."""
    from engine.separators.unet import wiener_filter

    rng = np.random.default_rng(0)
    x = torch.complex(torch.randn(1, 9, 20), torch.randn(1, 9, 20))
    m = torch.from_numpy(rng.dirichlet([1, 1, 1], size=(1, 9, 20)).astype(np.float32)).permute(3, 0, 1, 2)
    y = wiener_filter(x, m, window_frames=3)
    power = (m * x.abs()) ** 2
    expected = power / power.sum(0, keepdim=True) * x
    torch.testing.assert_close(y, expected.to(y.dtype), atol=1e-4, rtol=1e-3)


# ------------------------------------------------------------------------------------------
# Weights: safetensors + card, SHA-256 verified, never unpickled
# ------------------------------------------------------------------------------------------


def _ship(model: SpectrogramUNet, folder: Path, name: str = "m", dtype: torch.dtype = torch.float32) -> Path:
    path = folder / f"{name}.safetensors"
    sha = save_weights(model, path, dtype)
    write_model_card(folder, name, {"sha256": sha, "architecture": model.config.to_json(), "weights": path.name})
    return path


def test_weights_round_trip(tmp_path: Path) -> None:
    model = tiny_model(5)
    _ship(model, tmp_path)
    loaded, card = load_model("m", tmp_path)
    assert card["architecture"]["stems"] == ["a", "b", "c"]
    x = torch.rand(2, 2, TINY.bins, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert (tmp_path / "m.md").read_text().startswith("# Model card")


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    path = _ship(tiny_model(5), tmp_path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256") as info:
        load_model("m", tmp_path)
    assert str(path) in str(info.value) and "refusing" in str(info.value)


def test_missing_card_and_pickles_are_refused(tmp_path: Path) -> None:
    path = _ship(tiny_model(5), tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(InputError, match="model card"):
        load_model(path)
    # A pickle posing as weights, even with a matching hash in its card, is never unpickled.
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"x": 1}))
    from engine.models.weights import sha256_of

    (tmp_path / "evil.json").write_text(json.dumps({"sha256": sha256_of(evil), "architecture": TINY.to_json(),
                                                    "weights": evil.name}))
    with pytest.raises(InputError, match="safetensors"):
        load_model(evil)


@pytest.mark.parametrize(("stems", "names"), [(2, ("vocals", "instrumental")), (4, ("drums", "bass", "other", "vocals"))])
def test_shipped_models_load_verified(stems: int, names: tuple[str, ...]) -> None:
    path = MODELS_DIR / f"unet{stems}.safetensors"
    if not path.is_file():
        pytest.fail(f"shipped weights missing: {path}")
    model, card = load_model(f"unet{stems}")
    assert model.stems == names
    assert path.stat().st_size <= 16 * 1024 * 1024
    assert card["validation"]["rows"].keys() == set(names)


# ------------------------------------------------------------------------------------------
# The engine behind the registry
# ------------------------------------------------------------------------------------------


def test_registered_engine_separates_with_parameters() -> None:
    assert REGISTRY["unet"] is UNetSeparator
    sep = UNetSeparator()
    mix = noise_mix(44100, 2, 44100 * 2)
    result = sep.separate(mix, parameters={"stems": "4", "chunk_seconds": "5", "masks": "false"})
    assert list(result.stems) == ["drums", "bass", "other", "vocals"]
    assert result.masks == {} and result.engine == "unet" and result.device == "cpu"
    assert result.sum_error_db(mix) < -100.0
    with pytest.raises(InputError, match="stems"):
        sep.separate(mix, parameters={"stems": "3"})
    with pytest.raises(InputError, match="CUDA"):
        sep.separate(mix, device="cpu", parameters={"precision": "float16"})


def test_masks_only_equals_the_masks_of_a_full_separation() -> None:
    sep = UNetSeparator()
    mix = noise_mix(32000, 2, 32000 * 3)
    full = sep.separate(mix, parameters={"stems": "4"})
    only = sep.masks_only(mix, 4, device="cpu")
    assert only.stems == {} and list(only.masks) == list(full.masks) and only.stft == full.stft
    for name in full.masks:
        assert np.array_equal(only.masks[name], full.masks[name])


def test_shipped_2_stem_model_beats_oracle_free_baselines() -> None:
    """On a held-out synthetic song (seed outside every training range), the shipped 2-stem
    model's vocals beat two-stage HPSS and REPET-SIM by plain SDR."""
    synth = pytest.importorskip("engine.synth")
    from engine.training.baselines import hpss_separate, repet_sim_separate
    from engine.training.evaluate import plain_sdr_db

    try:
        song = synth.synthesize_song(2_000_017, 8.0, sample_rate=22050)
    except synth.SynthUnavailable as exc:  # fluidsynth/espeak-ng/pyworld missing on this machine
        pytest.skip(str(exc))
    mix = song.mix.samples
    vocals = song.stems["vocals"].samples
    unet = UNetSeparator().separate(song.mix, parameters={"stems": "2"})
    sdr_unet = plain_sdr_db(vocals, unet.stems["vocals"].samples)
    sdr_hpss = plain_sdr_db(vocals, hpss_separate(mix, 22050, ("vocals", "instrumental"))["vocals"])
    sdr_repet = plain_sdr_db(vocals, repet_sim_separate(mix, 22050)["vocals"])
    assert sdr_unet > max(sdr_hpss, sdr_repet) + 1.0, (sdr_unet, sdr_hpss, sdr_repet)


def test_internal_and_file_stft_grids_coincide_at_44k() -> None:
    """At 44.1 kHz the file STFT (2048/512) and the internal one (1024/256 at 22.05 kHz) share
    bin frequencies and frame times, so masks map without interpolation."""
    cfg = UNetConfig(stems=("x",))
    f_int = StftConfig(cfg.n_fft, cfg.hop).frequencies_hz(cfg.sample_rate)
    f_file = StftConfig(2048).frequencies_hz(44100)
    np.testing.assert_allclose(f_file[: len(f_int)], f_int)
    assert 512 / 44100 == cfg.hop / cfg.sample_rate
    x = torch.zeros(2, 4410)
    assert stft(x, StftConfig(2048)).shape[-1] == 4410 // 512 + 1


def test_progress_reaches_the_end_and_cancel_stops() -> None:
    from engine.errors import Cancelled

    model = tiny_model(2)
    mix = noise_mix(44100, 2, 120_000)
    seen: list[float] = []
    separate_with_model(model, mix, InferenceOptions(chunk_seconds=1.0), progress=lambda f, _m: seen.append(f))
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    with pytest.raises(Cancelled):
        separate_with_model(model, mix, InferenceOptions(chunk_seconds=1.0), cancel=lambda: True)


def test_stereo_wiener_matches_a_direct_solve() -> None:
    """The closed-form stereo Wiener step equals v_j R_j (Σ v R + εI)⁻¹ X computed naively."""
    from engine.separators.unet import wiener_filter

    rng = np.random.default_rng(3)
    c, f, t, w = 2, 5, 12, 2
    x = torch.complex(torch.randn(c, f, t), torch.randn(c, f, t))
    m = torch.from_numpy(rng.dirichlet([1, 1, 1], size=(c, f, t)).astype(np.float32)).permute(3, 0, 1, 2)
    got = wiener_filter(x, m, w).numpy()
    y = (m * x.unsqueeze(0)).numpy().astype(np.complex128)
    v = (np.abs(y) ** 2).mean(axis=1)
    expected = np.zeros_like(y)
    for fi in range(f):
        for ti in range(t):
            lo, hi = max(0, ti - w), min(t, ti + w + 1)
            vr = []
            for j in range(3):
                yy = y[j, :, fi, lo:hi]
                r = (yy @ yy.conj().T) / (v[j, fi, lo:hi].sum() + 1e-10)
                vr.append(v[j, fi, ti] * r)
            cxx = sum(vr)
            cxx = cxx + (np.trace(cxx).real / 2 * 1e-6 + 1e-10) * np.eye(2)
            z = np.linalg.solve(cxx, x.numpy()[:, fi, ti])
            for j in range(3):
                expected[j, :, fi, ti] = vr[j] @ z
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())
