"""Query separation from given segments: exact sum, masks, time support, a known answer; the
separator's not-found path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.audio import Audio
from engine.query.detection import Segment
from engine.query.masking import (
    MaskParams,
    band_filterbank,
    query_stft,
    segment_envelope,
    separate_segments,
)
from engine.separators.base import get_separator
from engine.spectral import istft, stft

RATE = 22050


def _harmonic(seconds: float, f0: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    x = sum((0.5 / k) * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) for k in range(1, 8))
    return (0.2 * x).astype(np.float32)


def _noise(seconds: float, rate: int = RATE, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * rate))
    # high-passed noise: a different spectrum from the low harmonic target
    x = np.diff(np.diff(x, prepend=0), prepend=0)
    return (0.02 * x).astype(np.float32)


def _si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    r, e = ref.reshape(-1).astype(np.float64), est.reshape(-1).astype(np.float64)
    a = (e @ r) / (r @ r)
    return float(10 * np.log10((a * a * (r @ r)) / np.sum((e - a * r) ** 2)))


@pytest.fixture(scope="module")
def scene() -> tuple[Audio, Audio, np.ndarray, list[Segment]]:
    """8 s stereo: a 220 Hz harmonic tone during 2–5 s over noise; query: another 2 s of it."""
    dur = 8.0
    tone = np.zeros(int(dur * RATE), np.float32)
    a, b = int(2 * RATE), int(5 * RATE)
    tone[a:b] = _harmonic(3.0, 220.0)
    target = np.stack([tone, 0.7 * tone])
    noise = np.stack([_noise(dur, seed=1), _noise(dur, seed=2)])
    mix = Audio(target + noise, RATE)
    query = Audio(_harmonic(2.0, 220.0, seed=5)[None], RATE)
    return mix, query, target, [Segment(2.0, 5.0, 0.9)]


def test_target_plus_residual_is_the_mix_and_masks_fit(scene: tuple[Audio, Audio, np.ndarray, list[Segment]]) -> None:
    mix, query, target, segs = scene
    out = separate_segments(mix, query, segs, MaskParams(prior="none", nmf_iterations=30))
    err = np.sum((out.target.samples.astype(np.float64) + out.residual.samples - mix.samples) ** 2)
    assert 10 * np.log10(err / np.sum(mix.samples.astype(np.float64) ** 2) + 1e-30) <= -100
    cfg = query_stft(RATE)
    shape = (2, cfg.bins, cfg.frames_for(mix.frames))
    assert out.masks["target"].shape == shape and out.masks["residual"].shape == shape
    m = out.masks["target"].astype(np.float32)
    assert np.allclose(out.masks["residual"].astype(np.float32), 1 - m, atol=1e-3)
    assert m.min() >= 0 and m.max() <= 1
    frame_t = np.arange(shape[-1]) * cfg.hop_length / RATE
    assert np.all(m[..., (frame_t < 1.9) | (frame_t > 5.1)] == 0)  # mask 0 outside the segments
    # nothing of the target outside the segments (beyond one window of spill)
    spill = int(0.1 * RATE)
    assert np.max(np.abs(out.target.samples[:, : 2 * RATE - spill])) < 1e-6
    assert np.max(np.abs(out.target.samples[:, 5 * RATE + spill :])) < 1e-6
    # the query's sound is what comes out
    assert _si_sdr(target, out.target.samples) > 8.0
    assert out.info["timings_seconds"]["total"] > 0


def test_chunking_does_not_change_the_result(scene: tuple[Audio, Audio, np.ndarray, list[Segment]]) -> None:
    mix, query, _, segs = scene
    p = MaskParams(prior="none", nmf_iterations=20, opt_steps=0)
    whole = separate_segments(mix, query, segs, p, return_masks=False)
    chunked = separate_segments(mix, query, segs, MaskParams(**{**p.to_json(), "chunk_seconds": 1.0}),
                                return_masks=False)
    assert np.max(np.abs(whole.target.samples - chunked.target.samples)) < 1e-4


def test_no_segments_gives_silence_and_the_mix(scene: tuple[Audio, Audio, np.ndarray, list[Segment]]) -> None:
    mix, query, _, _ = scene
    out = separate_segments(mix, query, [], MaskParams(prior="none"))
    assert np.all(out.target.samples == 0) and np.array_equal(out.residual.samples, mix.samples)


def test_envelope_and_filterbank() -> None:
    t = np.arange(0, 4, 0.01)
    env = segment_envelope([Segment(1.0, 2.0)], t, 0.1, 1.2)
    assert env[(t < 1.0) | (t > 2.0)].max() == 0 and env[(t > 1.1) & (t < 1.9)].min() == 1
    assert 0 < env[np.argmin(np.abs(t - 1.05))] < 1
    fb = band_filterbank(44100, 2048)
    assert np.allclose(fb.sum(axis=0), 1.0, atol=1e-5) and 100 < fb.shape[0] < 250


def test_separator_with_user_segments_and_unet_prior(scene: tuple[Audio, Audio, np.ndarray, list[Segment]]) -> None:
    """The edit-then-separate entry point with the default (U-Net) prior: exact sum, masks."""
    mix, query, _, segs = scene
    sep = get_separator("query")
    res = sep.separate_segments(mix, query, segs, {"opt_steps": 5}, device="cpu")  # type: ignore[attr-defined]
    assert set(res.stems) == {"target", "residual"}
    assert res.sum_error_db(mix) <= -100
    assert res.info["separation"]["prior"] == "unet"
    assert abs(sum(res.info["separation"]["stem_weights"].values()) - 1) < 1e-3
    assert res.masks["target"].shape[0] == 2


def test_a_whole_mix_prior_is_reused_not_recomputed(scene: tuple[Audio, Audio, np.ndarray, list[Segment]],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector's whole-mix prior (kept mask) is used as is; one without its mask (a very
    long mix) is recomputed around the segments."""
    import engine.query.masking as masking

    mix, query, _, segs = scene
    whole = masking.unet_source_prior(mix, query)
    assert whole.mask is not None and whole.covered is not None and whole.covered.all()
    light = masking.unet_source_prior(mix, query, keep_mask=False)
    assert light.mask is None and light.frame_energy is not None
    assert np.allclose(light.routed_energy, whole.routed_energy)
    calls: list[int] = []
    real = masking.unet_source_prior

    def counting(*a: object, **k: object) -> masking.SourcePrior:
        calls.append(1)
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(masking, "unet_source_prior", counting)
    sep = get_separator("query")
    res = sep.separate_segments(mix, query, segs, {"opt_steps": 2}, device="cpu", prior=whole)  # type: ignore[attr-defined]
    assert not calls and res.sum_error_db(mix) <= -100
    direct = separate_segments(mix, query, segs, MaskParams(opt_steps=2), prior=whole, return_masks=False)
    assert np.array_equal(direct.target.samples, res.stems["target"].samples)
    sep.separate_segments(mix, query, segs, {"opt_steps": 2}, device="cpu", prior=light)  # type: ignore[attr-defined]
    assert len(calls) == 1


def test_prior_in_pieces_matches_one_pass(scene: tuple[Audio, Audio, np.ndarray, list[Segment]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Long mixes run the U-Net in pieces with context: every frame is covered once, the frame
    energies are the one-pass STFT's exactly, and the masks stay close (each piece's level is
    set by its own audio)."""
    import engine.query.masking as masking

    mix, query, _, _ = scene
    whole = masking.unet_source_prior(mix, query, estimate=True)
    monkeypatch.setattr(masking, "PRIOR_PIECE_SECONDS", 2.5)
    pieces = masking.unet_source_prior(mix, query, estimate=True)
    assert pieces.covered is not None and pieces.covered.all()
    # the routed estimate: the mono mix through the routed mask, rendered piece by piece
    assert whole.estimate is not None and pieces.estimate is not None
    assert whole.estimate.shape == (mix.frames,) and pieces.estimate.shape == (mix.frames,)
    assert whole.mask is not None
    m = torch.from_numpy(whole.mask.astype(np.float32).mean(axis=0))
    spec = stft(torch.from_numpy(mix.mono()), query_stft(RATE))
    expected = istft(spec * m, mix.frames, query_stft(RATE)).numpy()
    assert np.allclose(whole.estimate, expected, atol=1e-4)
    err = float(np.sum((pieces.estimate - whole.estimate) ** 2) / np.sum(whole.estimate**2))
    assert err < 10 ** (-15 / 10)
    assert pieces.mask is not None and whole.mask is not None and pieces.mask.shape == whole.mask.shape
    assert np.allclose(pieces.frame_energy, whole.frame_energy, rtol=1e-4, atol=1e-6)  # type: ignore[arg-type]
    diff = np.abs(pieces.mask.astype(np.float32) - whole.mask.astype(np.float32))
    assert float(diff.mean()) < 0.05


def test_separator_requires_a_query(scene: tuple[Audio, Audio, np.ndarray, list[Segment]]) -> None:
    from engine.errors import InputError

    with pytest.raises(InputError, match="--query"):
        get_separator("query").separate(scene[0], device="cpu")
    torch.manual_seed(0)


def test_closed_form_gradient_matches_autograd() -> None:
    from engine.query.masking import mask_loss_and_grad

    g = torch.Generator().manual_seed(0)
    z = torch.randn((12, 20), generator=g, dtype=torch.float64)
    v = torch.rand((12, 20), generator=g, dtype=torch.float64) + 0.1
    log_ref = torch.log(torch.rand((12, 20), generator=g, dtype=torch.float64) * v + 1e-3)
    p = MaskParams(lambda_tv=0.3, lambda_sat=0.2)
    loss, grad = mask_loss_and_grad(z, v, log_ref, 1e-3, p)
    za = z.clone().requires_grad_(True)
    m = torch.sigmoid(za)
    ref = ((torch.log(m * v + 1e-3) - log_ref).pow(2).mean()
           + p.lambda_tv * ((m[:, 1:] - m[:, :-1]).abs().mean() + (m[1:] - m[:-1]).abs().mean())
           + p.lambda_sat * (m * (1 - m)).mean())
    ref.backward()  # type: ignore[no-untyped-call]
    assert loss == pytest.approx(float(ref.detach()), rel=1e-10)
    assert za.grad is not None and torch.allclose(grad, za.grad, rtol=1e-8, atol=1e-12)
