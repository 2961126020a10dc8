"""The ``fingerprint`` engine: the seeds' fingerprint optimiser, made stable and fast.

Seeds 001 and 003 separate a vocal by learning 400-point EQ curves (one value every 50 Hz) that
make the EQ'd mix's spectral "fingerprint" match the acapella's — 18 filtered slices, a pooling
encoder and 425 metrics per ~46-ms window (:mod:`engine.separators.fingerprint_features`) — then
resynthesise with the mix's phase. Here:

    g ∈ [0, 1]^(channels × 400 × curves)        EQ curves, one per STFT frame by default
    mask = expand(g)                            linear interpolation onto the STFT bins
    vocals = ISTFT(mask · X)                    the EQ'd mix, mix phase kept
    instrumental = mix − vocals                 (the stems sum to the mix exactly)

The EQ is a soft mask (0 ≤ g ≤ 1, projected after every step): the vocal is part of the mix, so
the EQ'd mix never exceeds it. All curves of a chunk are optimised at once with Adam, which
scales each curve point's step by its own gradient history — the seeds' plain per-bin updates
diverged on loud bins. What the seeds' code did and this engine fixes: only slice 0's profile
reached the loss (here every slice contributes, weighted); the target's profile was max-pooled and
the mix's not (here both go through the same operations); inputs were peak-normalised separately,
breaking the mix/acapella gain relation (here every term is divided by one scale, measured on the
mix, for both signals); clips were cut to 4.7 s mono (here full songs, every channel, in chunks).

Time resolution: the fingerprint describes 46-ms windows (4 frames at 44.1 kHz), as in the
seeds, while the EQ curves change every STFT frame (``curve_ms = 0``): a window's fingerprint is
that of the mean of its EQ'd frames. On the synthetic test songs this is ~0.6 dB better than one
curve per window and reaches the ideal-ratio-mask oracle; ``curve_ms = 46`` gives the seeds' one
curve per window.

Schedule (``mode="full"``): start from the acapella's share of each profile point (the ratio of
the two profiles, clipped to [0, 1]); then ``iterations`` Adam steps on the exact, cheap part of
the fingerprint — the 400-point profiles of all 18 slices and the comparison at full STFT
resolution (the encoder's input); the last ``detail_iterations`` of those steps also match every
slice's encoder bottleneck and 25 metrics (the complete fingerprint, ~15× the cost of a profile
step) at a fifth of the step size. Defaults (12 steps, 2 of them complete, lr 0.05) were chosen
by measurement (bench/bench_fingerprint.py): more steps do not raise the SDR on the benchmark
songs, and a 4-minute stereo song takes about 12 s on one core of the (shared) test machine.

``mode="seed"`` reproduces the seeds' setup for comparison: the first 4.7 s, mono, 22.05 kHz,
one curve per 46-ms window (≈100 windows), a flat start, learning rate 0.01 and 100 steps, all on
the complete fingerprint. Its vocal is resampled back to the mix's rate and copied to every
channel; after 4.7 s it is silent.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from engine.audio import Audio, resample
from engine.separators.base import (
    CancelFn,
    Parameter,
    ProgressFn,
    SeparationResult,
    Separator,
    check_cancel,
    register,
)
from engine.separators.fingerprint_features import (
    EqProblem,
    Fingerprinter,
    FingerprintLoss,
    ProfileGrid,
    frame_power,
    slice_weights,
)
from engine.spectral import StftConfig, istft, stft

#: The seeds' setup (mode "seed").
SEED_SAMPLE_RATE = 22_050
SEED_SECONDS = 4.7
SEED_LEARNING_RATE = 0.01
SEED_ITERATIONS = 100
SEED_WINDOW_MS = 46.0  # one EQ curve per fingerprint window: 100 windows in 4.7 s

#: Windows of context on each side of a chunk (the slices and dynamics couple neighbours).
_CONTEXT_WINDOWS = 4
#: Windows per block when evaluating the complete fingerprint (keeps the working set in cache).
_DETAIL_BLOCK = 64
#: Step size of the complete-fingerprint steps after profile steps, relative to learning_rate.
_DETAIL_STEP_SCALE = 0.2


def _match_channels(acapella: np.ndarray, channels: int) -> np.ndarray:
    """The acapella with the mix's channel count (mono spread, otherwise downmixed)."""
    if acapella.shape[0] == channels:
        return acapella
    return np.repeat(acapella.mean(axis=0, keepdims=True), channels, axis=0)


def time_grid(window_ms: float, curve_ms: float, sample_rate: int, hop: int) -> tuple[int, int]:
    """``(curve_frames, window_frames)``: STFT frames per EQ curve and per fingerprint window.

    Each is the nearest whole number of hops (at least 1; ``curve_ms = 0`` means every frame);
    a window holds a whole number of curves.
    """
    curve = 1 if curve_ms <= 0 else max(1, int(round(curve_ms * 1e-3 * sample_rate / hop)))
    window = max(1, int(round(window_ms * 1e-3 * sample_rate / hop)))
    window = max(curve, int(round(window / curve)) * curve)
    return curve, window


class _Optimiser:
    """Learns the EQ curves of one song, chunk by chunk (pass 1), then renders them (pass 2)."""

    def __init__(
        self, rate: int, cfg: StftConfig, device: torch.device, params: dict[str, Any],
        progress: ProgressFn | None, cancel: CancelFn | None,
    ) -> None:
        self.rate, self.cfg, self.device = rate, cfg, device
        self.grid = ProfileGrid.create(rate, cfg.n_fft)
        self.fingerprinter = Fingerprinter(self.grid, device)
        self.curve_frames, self.window_frames = time_grid(
            float(params["window_ms"]), float(params["curve_ms"]), rate, cfg.hop_length)
        self.iterations = int(params["iterations"])
        self.detail_iterations = min(int(params["detail_iterations"]), self.iterations)
        self.learning_rate = float(params["learning_rate"])
        self.init = str(params["init"])
        self.bin_weight = float(params["bin_weight"])
        self.weights = slice_weights(float(params["slice_weight"]))
        self.chunk_seconds = float(params["chunk_seconds"])
        self.progress, self.cancel = progress, cancel
        #: Losses are means over chunks (profile + bin part; "detail" = encoder + metrics part,
        #: before the first and the last complete-fingerprint step); seconds are sums.
        self.stats: dict[str, Any] = {
            "loss_start": 0.0, "loss_end": 0.0, "detail_start": 0.0, "detail_end": 0.0,
            "seconds_setup": 0.0, "seconds_profile_steps": 0.0, "seconds_detail_steps": 0.0,
        }

    # -- layout ---------------------------------------------------------------------------

    def _segment(self, frame_lo: int, frame_hi: int, total_samples: int) -> tuple[int, int]:
        """Sample range whose STFT has frames ``[frame_lo, frame_hi)`` exactly as the whole signal's.

        Returns ``(a0, a1)`` with ``a0`` a multiple of the hop, so segment frame ``t`` is global
        frame ``a0 // hop + t``.
        """
        hop, half = self.cfg.hop_length, self.cfg.n_fft // 2
        a0 = max(0, (frame_lo - math.ceil(half / hop)) * hop)
        a1 = min(total_samples, (frame_hi - 1) * hop + half + 1)
        return a0, a1

    def _chunks(self, total_windows: int) -> list[tuple[int, int]]:
        """Window ranges of about ``chunk_seconds``; a short remainder joins the last chunk."""
        per_chunk = max(8, int(self.chunk_seconds * self.rate / (self.cfg.hop_length * self.window_frames)))
        count = max(1, round(total_windows / per_chunk))
        edges = np.linspace(0, total_windows, count + 1).round().astype(int)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]

    # -- pass 1: learn -----------------------------------------------------------------------

    def learn(self, mix: np.ndarray, acapella: np.ndarray) -> np.ndarray:
        """EQ curves: float32 ``(channels, points, curves)`` in [0, 1], one per ``curve_frames``."""
        channels, samples = mix.shape
        frames = self.cfg.frames_for(samples)
        total_windows = -(-frames // self.window_frames)
        per_window = self.window_frames // self.curve_frames
        curves = np.zeros((channels, self.grid.points, total_windows * per_window), np.float32)
        chunks = self._chunks(total_windows)
        for index, (w0, w1) in enumerate(chunks):
            check_cancel(self.cancel)
            c0, c1 = max(w0 - _CONTEXT_WINDOWS, 0), min(w1 + _CONTEXT_WINDOWS, total_windows)
            f0, f1 = c0 * self.window_frames, min(c1 * self.window_frames, frames)
            a0, a1 = self._segment(f0, f1, samples)
            t0 = f0 - a0 // self.cfg.hop_length
            x = stft(torch.from_numpy(np.ascontiguousarray(mix[:, a0:a1])), self.cfg, self.device)[..., t0 : t0 + f1 - f0]
            a = stft(torch.from_numpy(np.ascontiguousarray(acapella[:, a0:a1])), self.cfg, self.device)[..., t0 : t0 + f1 - f0]
            # |X| as sqrt(re² + im²): several times faster than complex abs() on a CPU
            g = self._learn_chunk(frame_power(x).sqrt_().contiguous(), frame_power(a).sqrt_().contiguous(),
                                  index, len(chunks))
            lo, hi = (w0 - c0) * per_window, (w1 - c0) * per_window
            curves[..., w0 * per_window : w1 * per_window] = g[..., lo:hi].cpu().numpy()
        return curves

    def _learn_chunk(self, mix_mag: torch.Tensor, acapella_mag: torch.Tensor, index: int, count: int) -> torch.Tensor:
        """Adam on all curves of one chunk. ``*_mag``: ``(C, bins, frames)``; returns ``(C, P, curves)``."""
        t_setup = time.perf_counter()
        problem = EqProblem(self.grid, mix_mag, acapella_mag, self.curve_frames, self.window_frames)
        loss_fn = FingerprintLoss(self.fingerprinter, problem.mix_profile, problem.acapella_profile,
                                  self.weights, with_details=self.detail_iterations > 0)
        # ratio: the acapella's share of each profile point (silent points start closed)
        start = torch.ones_like(problem.start) if self.init == "flat" else problem.start
        g = start.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([g], lr=self.learning_rate, fused=True)
        first_detail = self.iterations - self.detail_iterations

        def objective(with_details: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
            s, bin_error = problem.evaluate(g)
            loss = loss_fn.profile(s) + self.bin_weight * bin_error
            detail = loss_fn.details(s, block=_DETAIL_BLOCK) if with_details else None
            return (loss + detail if detail is not None else loss), detail

        with torch.no_grad():
            self.stats["loss_start"] += float(objective(False)[0]) / count
        self.stats["seconds_setup"] += time.perf_counter() - t_setup
        report_every = max(1, self.iterations // 10)
        for step in range(self.iterations):
            check_cancel(self.cancel)
            if step == first_detail and step > 0:
                # The detail terms' gradient is new to Adam's running averages; a full step would
                # jump (every point moves by about the step size) — a fifth of it refines instead.
                for group in optimiser.param_groups:
                    group["lr"] *= _DETAIL_STEP_SCALE
            t_step = time.perf_counter()
            loss, detail = objective(step >= first_detail)
            if detail is not None:  # the complete fingerprint's distance at its first and last step
                if step == first_detail:
                    self.stats["detail_start"] += float(detail.detach()) / count
                if step == self.iterations - 1:
                    self.stats["detail_end"] += float(detail.detach()) / count
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                g.clamp_(0.0, 1.0)  # projected: the EQ'd mix never exceeds the mix
            self.stats["seconds_detail_steps" if detail is not None else "seconds_profile_steps"] += time.perf_counter() - t_step
            if self.progress and (step + 1) % report_every == 0:
                self.progress(0.9 * (index + (step + 1) / self.iterations) / count,
                              f"Matching fingerprints (chunk {index + 1}/{count})")
        with torch.no_grad():
            self.stats["loss_end"] += float(objective(False)[0]) / count
        if self.progress and self.iterations == 0:
            self.progress(0.9 * (index + 1) / count, f"Matching fingerprints (chunk {index + 1}/{count})")
        return g.detach()

    # -- pass 2: render ----------------------------------------------------------------------

    def render(self, mix: np.ndarray, curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vocals ``ISTFT(expand(g)·X)`` and the mask ``(C, bins, frames)`` (float16)."""
        channels, samples = mix.shape
        hop = self.cfg.hop_length
        frames = self.cfg.frames_for(samples)
        vocals = np.zeros_like(mix, dtype=np.float32)
        mask = np.zeros((channels, self.cfg.bins, frames), np.float16)
        spans = self._chunks(-(-frames // self.window_frames))
        reach = math.ceil(self.cfg.n_fft / 2 / hop)  # frames that touch a sample on either side
        for index, (w0, w1) in enumerate(spans):
            check_cancel(self.cancel)
            f0, f1 = w0 * self.window_frames, min(w1 * self.window_frames, frames)
            a0, a1 = self._segment(max(f0 - reach, 0), min(f1 + reach, frames), samples)
            x = stft(torch.from_numpy(np.ascontiguousarray(mix[:, a0:a1])), self.cfg, self.device)
            global_frame = np.minimum(a0 // hop + np.arange(x.shape[-1]), frames - 1)
            g = torch.from_numpy(curves[..., global_frame // self.curve_frames]).to(self.device)
            m = self.grid.expand(g)  # (C, bins, segment frames)
            v = istft(m * x, a1 - a0, self.cfg).cpu().numpy()
            s0, s1 = f0 * hop, (f1 * hop if f1 < frames else samples)
            vocals[:, s0:s1] = v[:, s0 - a0 : s1 - a0]
            t0 = f0 - a0 // hop
            mask[..., f0:f1] = m[..., t0 : t0 + f1 - f0].half().cpu().numpy()
            if self.progress:
                self.progress(0.9 + 0.1 * (index + 1) / len(spans), "Rendering the EQ'd mix")
        return vocals, mask


@register
class FingerprintSeparator(Separator):
    name = "fingerprint"
    title = "Fingerprint optimiser (mix + acapella)"
    description = (
        "The seeds' fingerprint optimiser: per 46-ms window, a 400-point EQ curve is learned by "
        "gradient descent so that the EQ'd mix's fingerprint (18 filtered slices through a pooling "
        "encoder, 425 metrics each) matches the acapella's. Vocals = the EQ'd mix with the mix's "
        "phase; instrumental = mix − vocals, so the stems always sum to the mix."
    )
    needs_acapella = True
    stem_names = ("vocals", "instrumental")
    parameters = (
        Parameter("mode", "full", "full: the whole song, every channel, at its own rate. seed: the "
                  "seeds' setup for comparison — first 4.7 s, mono, 22.05 kHz, flat start, learning "
                  "rate 0.01, 100 steps on the complete fingerprint (ignores the settings below).",
                  kind="choice", choices=("full", "seed")),
        Parameter("iterations", 12, "Adam steps, all windows at once (the seeds used 100).",
                  kind="int", minimum=0, maximum=10_000),
        Parameter("detail_iterations", 2, "How many of the last steps also match every slice's "
                  "encoder bottleneck and 25 metrics (the complete fingerprint; each such step "
                  "costs about 30 ordinary ones).", kind="int", minimum=0, maximum=10_000),
        Parameter("learning_rate", 0.05, "Adam step size for the EQ curves (0–1 scale; the seeds "
                  "used 0.01 from a flat start).", minimum=1e-5, maximum=1.0),
        Parameter("init", "ratio", "Starting EQ: ratio = the acapella's share of each profile point "
                  "(clipped to 0–1); flat = the whole mix (as in the seeds).",
                  kind="choice", choices=("ratio", "flat")),
        Parameter("window_ms", 46.0, "Fingerprint window: the metrics describe this much audio at a "
                  "time (the seeds' ~46 ms; rounded to whole STFT hops).", minimum=1.0, maximum=1000.0, unit="ms"),
        Parameter("curve_ms", 0.0, "Time between EQ curves; 0 = one per STFT frame (11.6 ms at "
                  "44.1 kHz). The seeds used one per window.", minimum=0.0, maximum=1000.0, unit="ms"),
        Parameter("slice_weight", 0.5, "Weight of the 17 filtered slices together, relative to the "
                  "raw slice.", minimum=0.0, maximum=100.0),
        Parameter("bin_weight", 1.0, "Weight of the comparison at full STFT resolution (the "
                  "encoder's 1025-bin input), relative to the raw slice's profile.",
                  minimum=0.0, maximum=100.0),
        Parameter("n_fft", 2048, "STFT window (samples): 2048 gives 1025 bins, 46 ms at 44.1 kHz.",
                  kind="int", minimum=256, maximum=16384),
        Parameter("chunk_seconds", 30.0, "Songs are optimised in chunks of this length (memory).",
                  minimum=2.0, maximum=600.0, unit="s"),
    )

    def _separate(
        self, mix: Audio, acapella: np.ndarray | None, query: Audio | None,
        region: tuple[float, float] | None, device: torch.device, params: dict[str, Any],
        progress: ProgressFn | None, cancel: CancelFn | None,
    ) -> SeparationResult:
        assert acapella is not None
        if params["mode"] == "seed":
            return self._separate_seed(mix, acapella, device, params, progress, cancel)
        aca = _match_channels(acapella.astype(np.float32, copy=False), mix.channels)
        cfg = StftConfig(n_fft=int(params["n_fft"]))
        opt = _Optimiser(mix.sample_rate, cfg, device, params, progress, cancel)
        t0 = time.perf_counter()
        curves = opt.learn(mix.samples, aca)
        t1 = time.perf_counter()
        vocals, mask = opt.render(mix.samples, curves)
        t2 = time.perf_counter()
        return self._result(mix, vocals, mask, cfg, opt, {"learn_seconds": t1 - t0, "render_seconds": t2 - t1})

    def _separate_seed(
        self, mix: Audio, acapella: np.ndarray, device: torch.device, params: dict[str, Any],
        progress: ProgressFn | None, cancel: CancelFn | None,
    ) -> SeparationResult:
        """The seeds' setup: first 4.7 s, mono, 22.05 kHz, flat start, lr 0.01, 100 full steps."""
        rate = SEED_SAMPLE_RATE
        keep = min(mix.frames, int(round(SEED_SECONDS * mix.sample_rate)))
        mono_mix = resample(mix.samples[:, :keep].mean(axis=0, keepdims=True), mix.sample_rate, rate)
        mono_aca = resample(acapella[:, :keep].mean(axis=0, keepdims=True).astype(np.float32), mix.sample_rate, rate)
        seed_params = dict(params, iterations=SEED_ITERATIONS, detail_iterations=SEED_ITERATIONS,
                           learning_rate=SEED_LEARNING_RATE, init="flat", chunk_seconds=SEED_SECONDS + 1.0,
                           window_ms=SEED_WINDOW_MS, curve_ms=SEED_WINDOW_MS)
        cfg = StftConfig(n_fft=int(params["n_fft"]))
        opt = _Optimiser(rate, cfg, device, seed_params, progress, cancel)
        t0 = time.perf_counter()
        curves = opt.learn(mono_mix, mono_aca)
        t1 = time.perf_counter()
        vocal_mono, _ = opt.render(mono_mix, curves)
        vocal = resample(vocal_mono, rate, mix.sample_rate)[:, :keep]
        vocals = np.zeros_like(mix.samples)
        vocals[:, : vocal.shape[-1]] = vocal
        # The mask as applied, drawn on the mix's own STFT grid: the curve of the window each frame
        # falls in, at each bin's frequency; nothing is kept above 11.025 kHz or after 4.7 s.
        mix_cfg = StftConfig(n_fft=int(params["n_fft"]))
        mix_grid = ProfileGrid.create(mix.sample_rate, mix_cfg.n_fft)
        padded = np.zeros((1, mix_grid.points, curves.shape[-1]), np.float32)
        n = min(mix_grid.points, curves.shape[1]) - 1  # the seed grid's last point sits above Nyquist
        padded[:, :n] = curves[:, :n]
        frames = mix_cfg.frames_for(mix.frames)
        seconds = np.arange(frames) * mix_cfg.hop_length / mix.sample_rate
        window = (seconds * rate / (cfg.hop_length * opt.curve_frames)).astype(np.int64)
        inside = seconds < keep / mix.sample_rate
        g = torch.from_numpy(padded[..., np.minimum(window, curves.shape[-1] - 1)] * inside)
        m = mix_grid.expand(g).numpy().astype(np.float16)
        mask = np.repeat(m, mix.channels, axis=0)
        t2 = time.perf_counter()
        return self._result(mix, vocals, mask, mix_cfg, opt, {"learn_seconds": t1 - t0, "render_seconds": t2 - t1,
                                                               "seconds_processed": keep / mix.sample_rate})

    @staticmethod
    def _result(
        mix: Audio, vocals: np.ndarray, mask: np.ndarray, cfg: StftConfig, opt: _Optimiser, timing: dict[str, float],
    ) -> SeparationResult:
        instrumental = (mix.samples - vocals).astype(np.float32)
        info = dict(opt.stats, **timing, frames_per_curve=opt.curve_frames, frames_per_window=opt.window_frames,
                    profile_points=opt.grid.points,
                    iterations=opt.iterations, detail_iterations=opt.detail_iterations,
                    learning_rate=opt.learning_rate, internal_sample_rate=opt.rate)
        return SeparationResult(
            stems={"vocals": Audio(vocals.astype(np.float32), mix.sample_rate),
                   "instrumental": Audio(instrumental, mix.sample_rate)},
            masks={"vocals": mask, "instrumental": (1.0 - mask.astype(np.float32)).astype(np.float16)},
            stft=cfg, info=info,
        )
