"""The ``fingerprint`` engine and its features, on synthetic songs with known stems."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

import engine.separators.fingerprint  # noqa: F401  (registers "fingerprint")
from engine.audio import Audio
from engine.errors import Cancelled, InputError
from engine.separators.base import REGISTRY, get_separator
from engine.separators.fingerprint import SEED_SAMPLE_RATE, SEED_SECONDS, time_grid
from engine.separators.fingerprint_features import (
    METRIC_COUNTS,
    N_SLICES,
    SLICE_NAMES,
    EqProblem,
    Fingerprinter,
    FingerprintLoss,
    ProfileGrid,
    max_filter3,
    slice_kernels,
    slice_weights,
)
from engine.spectral import StftConfig, istft, stft
from tests.engine.signals import sdr_db, song

RATE = 44_100


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # The test machine's cores are shared; OpenMP threads waiting on busy cores make small
    # tensor operations many times slower. One thread keeps this file fast and its timing stable.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def stems() -> tuple[np.ndarray, np.ndarray]:
    return song(RATE, 8.0, seed=2)


def _irm_vocals(vocals: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Ideal ratio mask |V| / (|V| + |I|) from the true stems, at the engine's STFT."""
    x, v = stft(mix), stft(vocals)
    i = x - v
    return istft(v.abs() / (v.abs() + i.abs() + 1e-12) * x, mix.shape[-1]).numpy()


# -- features: exact shortcuts equal the direct computation ---------------------------------


def _random_problem(
    curve_frames: int, window_frames: int, dtype: torch.dtype = torch.float32, rate: int = RATE,
    channels: int = 2, frames: int = 23,
) -> tuple:
    gen = torch.Generator().manual_seed(0)
    grid = ProfileGrid.create(rate, 2048)
    x = torch.rand(channels, 1025, frames, generator=gen, dtype=dtype) + 0.1
    a = x * torch.rand(channels, 1025, frames, generator=gen, dtype=dtype)
    return grid, x, a, EqProblem(grid, x, a, curve_frames, window_frames)


@pytest.mark.parametrize(("curve_frames", "window_frames"), [(1, 1), (1, 4), (2, 4), (4, 4)])
def test_eq_problem_matches_direct_computation(curve_frames: int, window_frames: int) -> None:
    grid, x, a, problem = _random_problem(curve_frames, window_frames)
    g = torch.rand(problem.start.shape, generator=torch.Generator().manual_seed(1))
    m = grid.expand(g).repeat_interleave(curve_frames, dim=-1)[..., : x.shape[-1]]
    y = x * m
    windows = problem.mix_profile.shape[-1]
    pad = windows * window_frames - x.shape[-1]
    y_windows = torch.nn.functional.pad(y, (0, pad)).reshape(2, 1025, windows, window_frames).mean(-1)
    profile, error = problem.evaluate(g)
    torch.testing.assert_close(profile, grid.pool(y_windows), rtol=1e-5, atol=1e-6)
    assert float(error) == pytest.approx(float(((y - a) ** 2).sum() / (x**2).sum()), rel=1e-5)


def test_grid_interpolation_and_pooling() -> None:
    grid = ProfileGrid.create(RATE, 2048)
    assert grid.points == 400  # 0 … 19.95 kHz every 50 Hz
    assert ProfileGrid.create(22_050, 2048).points == 222  # up to the first point past Nyquist
    flat = torch.ones(1, grid.points, 3)
    torch.testing.assert_close(grid.expand(flat), torch.ones(1, 1025, 3))
    # a curve that is linear in frequency is reproduced exactly at every bin below 19.95 kHz
    ramp = torch.from_numpy(grid.point_hz.astype(np.float32)).view(1, -1, 1)
    bins_hz = np.fft.rfftfreq(2048, 1 / RATE)
    below = bins_hz <= grid.point_hz[-1]
    np.testing.assert_allclose(grid.expand(ramp)[0, below, 0].numpy(), bins_hz[below], rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(grid.pool(torch.full((1, 1025, 2), 3.0)), torch.full((1, grid.points, 2), 3.0))


def test_gradients_of_the_fused_operators() -> None:
    # 8 kHz: 82 profile points, so the numerical gradient stays quick
    _, _, _, problem = _random_problem(1, 3, dtype=torch.float64, rate=8000, channels=1, frames=6)
    g = torch.rand(problem.start.shape, dtype=torch.float64, requires_grad=True)
    w = torch.rand(problem.mix_profile.shape, dtype=torch.float64)

    def f(t: torch.Tensor) -> torch.Tensor:
        s, error = problem.evaluate(t)
        return (s * w).sum() * 1e-2 + error

    assert torch.autograd.gradcheck(f, (g,), eps=1e-6, atol=1e-5)
    image = torch.rand(2, 6, 7, dtype=torch.float64, requires_grad=True)
    for pad in (1, 2):
        assert torch.autograd.gradcheck(lambda t, p=pad: max_filter3(t, p), (image,))


def test_folded_profile_term_equals_all_slices_one_by_one() -> None:
    grid, _, _, problem = _random_problem(1, 4)
    fp = Fingerprinter(grid, torch.device("cpu"))
    weights = slice_weights(0.5)
    loss = FingerprintLoss(fp, problem.mix_profile, problem.acapella_profile, weights)
    s = problem.profile(torch.rand(problem.start.shape))
    per_slice = loss.profile_per_slice(s)
    power = fp.slices(problem.mix_profile, full=True).square().mean(dim=(0, 2, 3))
    assert float(loss.profile(s)) == pytest.approx(float((weights * per_slice / power).sum()), rel=1e-5)
    # every slice contributes: the error of each one is positive for a wrong EQ
    assert bool((per_slice > 0).all())
    # block-wise evaluation of the encoder and metrics gives the same value
    assert float(loss.details(s, block=3)) == pytest.approx(float(loss.details(s)), rel=1e-5)


def test_fingerprint_shape_and_zero_distance_at_the_target() -> None:
    assert N_SLICES == 18 == len(SLICE_NAMES) and sum(METRIC_COUNTS.values()) == 425
    grid, _, _, problem = _random_problem(1, 1)
    fp = Fingerprinter(grid, torch.device("cpu"))
    loss = FingerprintLoss(fp, problem.mix_profile, problem.acapella_profile, slice_weights(0.5))
    details = fp.details(fp.slices(problem.acapella_profile), loss.floor)
    windows = problem.acapella_profile.shape[-1]
    counts = {name: value.shape[2] for name, value in details.items() if name != "bottleneck"}
    assert counts == {k: v for k, v in METRIC_COUNTS.items() if k != "profile"}
    assert details["bottleneck"].shape == (2, 18, 25, windows)  # 400 → 200 → 100 → 50 → 25
    assert float(loss.profile(problem.acapella_profile)) == pytest.approx(0.0, abs=1e-9)
    assert float(loss.details(problem.acapella_profile)) == pytest.approx(0.0, abs=1e-9)


def test_slices_respond_to_their_patterns() -> None:
    kernels = slice_kernels()
    assert kernels.shape == (17, 1, 3, 3)
    assert torch.equal(kernels[0, 0], torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]]))
    # all but raw, harmonic and low-pass ignore a constant image
    sums = kernels.sum(dim=(1, 2, 3))
    for i, name in enumerate(SLICE_NAMES[:17]):
        if name not in ("raw", "harmonic", "low_pass"):
            assert abs(float(sums[i])) < 1e-6, name
    fp = Fingerprinter(ProfileGrid.create(RATE, 2048), torch.device("cpu"))
    sustained = torch.zeros(1, 40, 40)
    sustained[:, 20, :] = 1.0  # one partial held over time: a horizontal line
    onset = torch.zeros(1, 40, 40)
    onset[:, :, 20] = 1.0  # a click: a vertical line
    h, v = SLICE_NAMES.index("horizontal"), SLICE_NAMES.index("vertical")
    r_sustained = fp.slices(sustained)[0, :, 5:-5, 5:-5].abs().amax(dim=(1, 2))
    r_onset = fp.slices(onset)[0, :, 5:-5, 5:-5].abs().amax(dim=(1, 2))
    assert r_sustained[h] > 3 * r_sustained[v] and r_onset[v] > 3 * r_onset[h]
    e0, e90 = SLICE_NAMES.index("edge_0"), SLICE_NAMES.index("edge_90")
    step_in_time = (torch.arange(40) >= 20).float().expand(1, 40, 40)  # everything turns on
    assert fp.slices(step_in_time)[0, e0, 5:-5, 5:-5].abs().max() > 0.4
    assert fp.slices(step_in_time)[0, e90, 5:-5, 5:-5].abs().max() < 1e-6


def test_time_grid() -> None:
    assert time_grid(46.0, 0.0, 44_100, 512) == (1, 4)  # curves every frame, 46-ms windows
    assert time_grid(46.0, 46.0, 22_050, 512) == (2, 2)  # the seeds: one curve per window
    curve, window = time_grid(46.0, 23.0, 44_100, 512)
    assert window % curve == 0


# -- the engine --------------------------------------------------------------------------------


def test_registered_with_seed_defaults() -> None:
    desc = REGISTRY["fingerprint"].describe()
    assert desc["needs_acapella"] and desc["stems"] == ["vocals", "instrumental"]
    params = {p["name"]: p for p in desc["parameters"]}
    assert params["mode"]["choices"] == ("full", "seed") and params["mode"]["default"] == "full"
    assert {"iterations", "detail_iterations", "learning_rate", "window_ms", "slice_weight"} <= set(params)
    assert all(p["description"] for p in params.values())


def test_vocals_within_1_db_of_the_ideal_ratio_mask(stems: tuple[np.ndarray, np.ndarray]) -> None:
    vocals, inst = stems
    mix = Audio(vocals + inst, RATE)
    result = get_separator("fingerprint").separate(mix, acapella=vocals)
    ours = sdr_db(vocals, result.stems["vocals"].samples)
    oracle = sdr_db(vocals, _irm_vocals(vocals, mix.samples))
    assert ours >= oracle - 1.0, (ours, oracle)
    # the optimiser improves on its starting point and lowers its loss
    start = get_separator("fingerprint").separate(mix, acapella=vocals, parameters={"iterations": 0})
    assert ours > sdr_db(vocals, start.stems["vocals"].samples) + 0.1
    assert result.info["loss_end"] < result.info["loss_start"]
    assert result.info["detail_end"] < result.info["detail_start"]


def test_stems_sum_to_mix_and_masks_are_the_ones_applied(stems: tuple[np.ndarray, np.ndarray]) -> None:
    vocals, inst = stems
    mix = Audio(vocals + inst, RATE)
    result = get_separator("fingerprint").separate(mix, acapella=vocals, parameters={"iterations": 3})
    assert result.sum_error_db(mix) <= -100.0
    mask = result.masks["vocals"]
    frames = StftConfig().frames_for(mix.frames)
    assert mask.shape == (2, 1025, frames) and mask.dtype == np.float16
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
    np.testing.assert_allclose(result.masks["instrumental"].astype(np.float32), 1 - mask.astype(np.float32), atol=1e-3)
    # vocals = ISTFT(mask · X) (up to the mask's float16 rounding)
    again = istft(torch.from_numpy(mask.astype(np.float32)) * stft(mix.samples), mix.frames).numpy()
    assert sdr_db(result.stems["vocals"].samples, again) > 50.0


def test_chunked_matches_one_pass(stems: tuple[np.ndarray, np.ndarray]) -> None:
    vocals, inst = stems
    mix = Audio(vocals + inst, RATE)
    sep = get_separator("fingerprint")
    whole = sep.separate(mix, acapella=vocals, parameters={"detail_iterations": 0})
    chunked = sep.separate(mix, acapella=vocals, parameters={"detail_iterations": 0, "chunk_seconds": 2.0})
    assert chunked.sum_error_db(mix) <= -100.0
    a = sdr_db(vocals, whole.stems["vocals"].samples)
    b = sdr_db(vocals, chunked.stems["vocals"].samples)
    assert abs(a - b) < 0.2, (a, b)


def test_gain_relation_kept_scale_invariant(stems: tuple[np.ndarray, np.ndarray]) -> None:
    """Scaling mix and acapella together changes nothing; the acapella's level is not normalised away."""
    vocals, inst = stems
    n = RATE * 3
    v, i = vocals[:, :n], inst[:, :n]
    sep = get_separator("fingerprint")
    params = {"iterations": 4, "detail_iterations": 1}
    base = sep.separate(Audio(v + i, RATE), acapella=v, parameters=params)
    scaled = sep.separate(Audio(100 * (v + i), RATE), acapella=100 * v, parameters=params)
    # (not bit-identical: Adam's first, sign-like steps amplify rounding where gradients are ~0,
    # at points that carry almost no energy)
    assert sdr_db(100 * base.stems["vocals"].samples, scaled.stems["vocals"].samples) > 40.0
    # an acapella 12 dB too quiet asks for a quieter vocal: the EQ passes less of the mix
    quiet = sep.separate(Audio(v + i, RATE), acapella=v / 4, parameters=params)
    assert np.sum(quiet.stems["vocals"].samples ** 2) < 0.25 * np.sum(base.stems["vocals"].samples ** 2)


def test_seed_mode_reproduces_the_seeds_setup(stems: tuple[np.ndarray, np.ndarray]) -> None:
    vocals, inst = stems
    mix = Audio(vocals + inst, RATE)
    result = get_separator("fingerprint").separate(mix, acapella=vocals, parameters={"mode": "seed"})
    info = result.info
    assert info["internal_sample_rate"] == SEED_SAMPLE_RATE and info["iterations"] == 100
    assert info["learning_rate"] == 0.01 and info["detail_iterations"] == 100
    assert info["frames_per_curve"] == info["frames_per_window"] == 2  # ~100 windows in 4.7 s
    assert result.sum_error_db(mix) <= -100.0
    keep = int(SEED_SECONDS * RATE)
    out = result.stems["vocals"].samples
    assert out.shape == mix.samples.shape and not out[:, keep:].any()
    # mono: both channels carry the same vocal
    np.testing.assert_array_equal(out[0], out[1])
    assert info["loss_end"] < 0.5 * info["loss_start"]
    # it separates something: better than calling the (mono) mix the vocal
    mono_vocal = vocals[:, :keep].mean(0)
    assert sdr_db(mono_vocal, out[0, :keep]) > sdr_db(mono_vocal, mix.samples[:, :keep].mean(0)) + 3.0
    mask = result.masks["vocals"]
    assert mask.shape == (2, 1025, StftConfig().frames_for(mix.frames))
    above = np.fft.rfftfreq(2048, 1 / RATE) > SEED_SAMPLE_RATE / 2 + 50
    assert not mask[:, above].any() and not mask[..., int(5.0 * RATE / 512):].any()


def test_cancel_mid_run_raises_cancelled(stems: tuple[np.ndarray, np.ndarray]) -> None:
    vocals, inst = stems
    mix = Audio(vocals + inst, RATE)
    calls: list[int] = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 5  # a few optimiser steps in

    progress: list[float] = []
    with pytest.raises(Cancelled):
        get_separator("fingerprint").separate(mix, acapella=vocals, cancel=cancel,
                                              progress=lambda f, m: progress.append(f))
    assert len(calls) == 6


def test_progress_reaches_one_and_odd_inputs() -> None:
    v, i = song(RATE, 1.0, seed=5, stereo=False)
    mix = Audio(v + i, RATE)
    fractions: list[float] = []
    # mono mix, stereo acapella (downmixed)
    res = get_separator("fingerprint").separate(mix, acapella=np.concatenate([v, v]),
                                                progress=lambda f, m: fractions.append(f))
    assert res.stems["vocals"].samples.shape == (1, v.shape[-1])
    assert fractions and fractions[-1] == pytest.approx(1.0) and fractions == sorted(fractions)
    # digital silence gives silence, not NaN
    silent = Audio(np.zeros((2, RATE // 2), np.float32), RATE)
    out = get_separator("fingerprint").separate(silent, acapella=np.zeros((2, RATE // 2), np.float32))
    assert not out.stems["vocals"].samples.any() and math.isfinite(float(out.masks["vocals"].astype(np.float32).sum()))


def test_bad_parameters() -> None:
    sep = get_separator("fingerprint")
    mix = Audio(np.zeros((1, RATE), np.float32), RATE)
    with pytest.raises(InputError, match="needs an acapella"):
        sep.separate(mix)
    with pytest.raises(InputError, match="mode"):
        sep.separate(mix, acapella=np.zeros((1, RATE), np.float32), parameters={"mode": "fast"})
    with pytest.raises(InputError, match="learning_rate"):
        sep.separate(mix, acapella=np.zeros((1, RATE), np.float32), parameters={"learning_rate": 5})
