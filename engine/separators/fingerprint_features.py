"""The seeds' spectral fingerprint, vectorised over every window of a song at once.

What a fingerprint is (seeds 001 and 003): the magnitude spectrogram seen through 18 fixed
filters ("slices"); per ~46-ms window each slice goes through a pooling "encoder" and yields 425
metrics — a 400-point frequency profile (one value every 50 Hz from 0 to 20 kHz), 6 band
energies, 6 spectral-shape, 5 harmonic, 4 formant and 4 dynamics measurements.

How it is computed here:

* **Windows.** STFT frames are grouped ``window_frames`` at a time (4 frames of hop 512 = 46 ms
  at 44.1 kHz, 2 at 22.05 kHz); a window's magnitude is the mean of its frames' magnitudes.
* **Profile.** A fixed linear-interpolation matrix ``W`` (bins × points) maps a 400-point curve at
  50-Hz spacing onto the STFT bins; its normalised transpose pools bins into the profile (each
  point a triangular-weighted mean of the bins within ±50 Hz). Points above Nyquist would see no
  bins and are dropped (they are zero for every signal).
* **Slices.** The profile spectrogram (points × windows) is filtered by a fixed (17, 1, 3, 3)
  kernel bank plus a 3×3 max-filtered copy: raw, horizontal and vertical lines, rising and
  falling diagonals, blob, harmonic (sustained), low-pass, high-pass, 7 oriented edges at 22.5°
  steps, Laplacian, pooled.
* **Encoder.** Per window, each rectified slice is max-pooled by 2 over frequency four times:
  400 → 200 → 100 → 50 → 25 points — the seeds' 1025 → 512 → … → 32 chain, started from the
  50-Hz profile. The encoder's input level, the raw spectrum at full STFT resolution (1025 bins at
  2048 points), is compared too (:meth:`EqProblem.evaluate`). As in the seeds, band energies
  come from the finest level, harmonic and formant measurements from the 100-Hz level, spectral
  shape from the 200-Hz level, and the 25-point bottleneck is compared as a whole.
* **Comparison.** :class:`FingerprintLoss` holds the acapella's fingerprint (computed once) and
  compares an EQ'd mix's fingerprint with it. Every slice contributes (weighted); every term is
  divided by a scale measured on the *mix* — one scale for both signals, so their gain relation is
  kept (no separate peak normalisation); the target and the estimate go through exactly the same
  operations (the seeds max-pooled only the target).

Cost. Everything is a function of the EQ'd mix's profile spectrogram ``S``, which is linear and
tridiagonal in the EQ curves ``g`` (:class:`EqProblem`). Two parts of the fingerprint are exact
and cheap: the 1025-bin comparison (a quadratic in ``g`` with a tridiagonal matrix, precomputed)
and the 400-point profiles of the 17 linear slices, whose weighted squared errors add up to one
quadratic form ``⟨E, Q ⋆ E⟩`` with ``E = S − S_acapella`` and ``Q`` the weighted sum of the kernels'
autocorrelations (a single 5×5 filter; exact when slices are full convolutions, which is how they
are defined for this term). The encoder and the 25 metrics of all 18 slices ("details") need every
slice explicitly and cost ~15× more per evaluation; :meth:`FingerprintLoss.details` evaluates them
in blocks of windows. Several operations have hand-written forms (sparse bin→point matrices,
shifted multiply-adds, max filters with winner masks): the obvious ``index_add_``/``conv2d``/
``max_pool2d`` versions were 5–20× slower on a CPU for these shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

#: The seeds' frequency profile: 400 points, one every 50 Hz (0 … 19.95 kHz).
PROFILE_POINTS = 400
PROFILE_SPACING_HZ = 50.0

#: Names of the 18 slices, in order.
SLICE_NAMES: tuple[str, ...] = (
    "raw", "horizontal", "vertical", "diagonal_up", "diagonal_down", "blob", "harmonic",
    "low_pass", "high_pass", "edge_0", "edge_22.5", "edge_45", "edge_67.5", "edge_90",
    "edge_112.5", "edge_135", "laplacian", "pooled",
)
N_SLICES = len(SLICE_NAMES)
N_LINEAR_SLICES = N_SLICES - 1  # all but "pooled"

#: The 6 band energies: the seeds' five analysis bands plus the air band up to 20 kHz.
FINGERPRINT_BANDS_HZ: tuple[tuple[float, float], ...] = (
    (20.0, 60.0), (60.0, 250.0), (250.0, 500.0), (500.0, 2000.0), (2000.0, 8000.0), (8000.0, 20000.0),
)
#: Formant regions (F1–F4) whose energy centre is measured.
FORMANT_REGIONS_HZ: tuple[tuple[float, float], ...] = (
    (250.0, 900.0), (900.0, 2500.0), (2500.0, 3500.0), (3500.0, 5000.0),
)
#: Harmonic measurements: spectral autocorrelation at these lags of the 100-Hz encoder level
#: (harmonic spacings of 100 … 500 Hz).
HARMONIC_LAGS = (1, 2, 3, 4, 5)
ENCODER_LEVELS = 4

#: Metric counts per window and slice (the seeds' 425).
METRIC_COUNTS = {"profile": PROFILE_POINTS, "bands": 6, "shape": 6, "harmonic": 5, "formant": 4, "dynamics": 4}
assert sum(METRIC_COUNTS.values()) == 425

#: Weight of each detail term relative to a slice's profile term.
DETAIL_WEIGHTS = {
    "bottleneck": 0.5, "bands": 0.5, "shape": 0.1, "harmonic": 0.1, "formant": 0.1, "dynamics": 0.1,
}
#: Detail terms that are ratios (centroid, flatness, …): only meaningful where the vocal sounds.
_RATIO_TERMS = ("shape", "harmonic", "formant", "dynamics")


# ------------------------------------------------------------------------------------------
# Profile grid: 400 points ↔ STFT bins
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileGrid:
    """The 50-Hz profile points and their fixed linear interpolation onto STFT bins.

    Attributes:
        sample_rate, n_fft: the STFT the grid maps onto.
        points: profile points used (400, fewer when Nyquist is below 20 kHz).
        low_point: ``(bins,)`` int64, the point at or below each bin's frequency.
        fraction: ``(bins,)`` float32 in [0, 1]: bin = (1 − fraction)·point[low] + fraction·point[low+1].
        point_hz: ``(points,)`` frequency of each point.
    """

    sample_rate: int
    n_fft: int
    points: int
    low_point: np.ndarray
    fraction: np.ndarray
    point_hz: np.ndarray

    @classmethod
    def create(
        cls, sample_rate: int, n_fft: int, points: int = PROFILE_POINTS, spacing_hz: float = PROFILE_SPACING_HZ,
    ) -> ProfileGrid:
        bins_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
        # Points up to the first one above Nyquist; the rest would see no bins. Bins above the
        # last point (above 19.95 kHz) take its value.
        used = int(min(points, math.floor(sample_rate / 2 / spacing_hz) + 2))
        pos = np.clip(bins_hz / spacing_hz, 0.0, used - 1)
        low = np.minimum(np.floor(pos).astype(np.int64), used - 2)
        frac = (pos - low).astype(np.float32)
        return cls(sample_rate, n_fft, used, low, frac, np.arange(used) * spacing_hz)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.low_point).to(device), torch.from_numpy(self.fraction).to(device)

    def expand(self, curve: torch.Tensor) -> torch.Tensor:
        """Interpolate curves ``(..., points, W)`` onto bins → ``(..., bins, W)``."""
        low, frac = self.tensors(curve.device)
        f = frac.view(-1, 1)
        return curve.index_select(-2, low) * (1 - f) + curve.index_select(-2, low + 1) * f

    def bin_matrix(self, kind: str, device: torch.device) -> torch.Tensor:
        """A sparse ``(points + 1, bins)`` matrix that gathers bins onto points.

        ``kind``: ``"t"`` — ``Wᵀ`` (bin k adds ``1 − f`` to its low point and ``f`` to the next);
        ``"ll"`` — ``(1 − f)²`` and ``f²`` (the diagonal of ``WᵀDW``); ``"lu"`` — ``(1 − f)·f`` to
        the low point (the upper diagonal); ``"ul"`` — ``f·(1 − f)`` to the next point (the lower
        diagonal). Row ``points`` collects nothing of use (the top bins' zero weights).
        """
        low, frac = self.tensors(device)
        bins = torch.arange(self.bins, device=device)
        entries = {
            "t": [(low, 1 - frac), (low + 1, frac)],
            "ll": [(low, (1 - frac) ** 2), (low + 1, frac**2)],
            "lu": [(low, (1 - frac) * frac)],
            "ul": [(low + 1, frac * (1 - frac))],
        }[kind]
        rows = torch.cat([r for r, _ in entries])
        cols = torch.cat([bins for _ in entries])
        vals = torch.cat([v for _, v in entries])
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (self.points + 1, self.bins),
                                       check_invariants=False).coalesce()

    def gather(self, matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``matrix @ x`` for every channel: ``(C, bins, T)`` → ``(C, points, T)`` (sparse, fast)."""
        matrix = matrix.to(x.dtype)
        return torch.stack([torch.sparse.mm(matrix, x[c]) for c in range(x.shape[0])])[:, : self.points]

    def pool(self, spectrum: torch.Tensor) -> torch.Tensor:
        """The profile of magnitudes ``(C, bins, W)`` → ``(C, points, W)``.

        Each point is the triangular-weighted mean of the bins within ±50 Hz (the normalised
        transpose of :meth:`expand`).
        """
        low, frac = self.tensors(spectrum.device)
        weight_sum = torch.zeros(self.points + 1, device=spectrum.device, dtype=spectrum.dtype)
        weight_sum.index_add_(0, low, (1 - frac).to(spectrum.dtype)).index_add_(0, low + 1, frac.to(spectrum.dtype))
        pooled = self.gather(self.bin_matrix("t", spectrum.device), spectrum)
        return pooled / weight_sum[: self.points].clamp(min=1e-12).view(-1, 1)


def frame_power(spectrum: torch.Tensor) -> torch.Tensor:
    """``|X|²`` of a complex STFT (or the square of magnitudes)."""
    return spectrum.real.square() + spectrum.imag.square() if spectrum.is_complex() else spectrum.square()


def group_frames(x: torch.Tensor, size: int) -> torch.Tensor:
    """Sum ``(..., frames)`` over consecutive groups of ``size`` → ``(..., ceil(frames / size))``."""
    if size == 1:
        return x
    groups = -(-x.shape[-1] // size)
    return F.pad(x, (0, groups * size - x.shape[-1])).reshape(*x.shape[:-1], groups, size).sum(-1)


# ------------------------------------------------------------------------------------------
# The EQ problem of one chunk: EQ'd mix profile and the 1025-bin comparison, both exact
# ------------------------------------------------------------------------------------------


class EqProblem:
    """Precomputed, exact pieces of "EQ the mix with curves ``g``" for one chunk.

    Time has two resolutions: an EQ curve holds for ``curve_frames`` STFT frames, and a
    fingerprint window spans ``window_frames`` frames (a multiple of ``curve_frames``). With
    ``X_f``, ``A_f`` the mix's and acapella's magnitudes in frame ``f`` and ``m = expand(g)`` the EQ
    at bin resolution:

    * a window's magnitude is the mean over its frames, so the EQ'd mix's window profile
      ``S_w = P·mean_f(X_f·m_f)`` is linear in ``g`` and tridiagonal over points:
      ``Σ_groups (lower·g_{j−1} + diag·g_j + upper·g_{j+1})`` with maps precomputed from ``Σ_f X_f``;
    * the comparison at full STFT resolution, ``Σ_f Σ_k (X_fk·m_k − A_fk)²``, is
      ``gᵀHg − 2bᵀg + c`` with ``H`` tridiagonal, from ``Σ_f X_f²`` and ``Σ_f X_f·A_f``.

    Args:
        grid: the profile grid.
        mix_magnitude, acapella_magnitude: ``(C, bins, frames)``.
        curve_frames, window_frames: as above.

    Attributes:
        mix_profile, acapella_profile: window profiles ``(C, points, windows)``.
        start: the EQ that passes the acapella's share of each profile point per curve (clipped
            to [0, 1]) ``(C, points, curves)``.
    """

    def __init__(
        self, grid: ProfileGrid, mix_magnitude: torch.Tensor, acapella_magnitude: torch.Tensor,
        curve_frames: int = 1, window_frames: int = 1,
    ) -> None:
        if window_frames % curve_frames:
            raise ValueError("window_frames must be a multiple of curve_frames")
        frames = mix_magnitude.shape[-1]
        windows = -(-frames // window_frames)
        pad = windows * window_frames - frames  # silent frames complete the last window
        x = F.pad(mix_magnitude, (0, pad))
        a = F.pad(acapella_magnitude, (0, pad))
        self.grid = grid
        self.groups_per_window = window_frames // curve_frames
        x_sum = group_frames(x, curve_frames)
        device = x.device
        low, frac = grid.tensors(device)
        p = grid.points
        weight_sum = torch.zeros(p + 1, device=device)
        weight_sum.index_add_(0, low, 1 - frac).index_add_(0, low + 1, frac)
        inv = (1.0 / (weight_sum[:p].clamp(min=1e-12) * window_frames)).view(-1, 1)
        m_t, m_ll, m_lu, m_ul = (grid.bin_matrix(k, device) for k in ("t", "ll", "lu", "ul"))
        self.diag = grid.gather(m_ll, x_sum) * inv
        self.upper = grid.gather(m_lu, x_sum) * inv
        self.lower = grid.gather(m_ul, x_sum) * inv
        x2 = group_frames(x.square(), curve_frames)
        self.h_diag = grid.gather(m_ll, x2)
        self.h_off = grid.gather(m_lu, x2)
        self.h_off_below = F.pad(self.h_off, (0, 0, 1, 0))[..., :-1, :]  # H[j, j−1] = H[j−1, j]
        self.b = grid.gather(m_t, group_frames(x * a, curve_frames))
        self.c = a.square().sum()
        #: Σ X² (the mix's energy at bin resolution): the comparison's scale.
        self.mix_energy = x2.sum().clamp(min=1e-20)
        self.mix_profile = grid.pool(group_frames(x_sum, self.groups_per_window)) / window_frames
        self.acapella_profile = grid.pool(group_frames(a, window_frames)) / window_frames
        mix_curve = grid.gather(m_t, x_sum)
        floor = 1e-6 * mix_curve.mean().clamp(min=1e-20)
        self.start = (grid.gather(m_t, group_frames(a, curve_frames)) / (mix_curve + floor)).clamp(0.0, 1.0)

    def evaluate(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(window profiles (C, points, windows), bin error)`` for curves ``g`` ``(C, points, curves)``.

        Both differentiable in ``g`` (one fused operation with a hand-written gradient: this runs
        every optimiser step at the finest time resolution).
        """
        per_curve, error = _EqOperator.apply(g, self)
        return group_frames(per_curve, self.groups_per_window), error

    def profile(self, g: torch.Tensor) -> torch.Tensor:
        """The EQ'd mix's window profiles ``(C, points, windows)``."""
        return self.evaluate(g)[0]

    def bin_error(self, g: torch.Tensor) -> torch.Tensor:
        """``Σ (X·expand(g) − A)² / Σ X²`` over frames, bins and channels (exact, scalar)."""
        return self.evaluate(g)[1]


def _tridiagonal(diag: torch.Tensor, upper: torch.Tensor, lower: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``diag·g + upper·g[j+1] + lower·g[j−1]`` over the points axis (−2)."""
    out = diag * g
    out[..., :-1, :].addcmul_(upper[..., :-1, :], g[..., 1:, :])
    out[..., 1:, :].addcmul_(lower[..., 1:, :], g[..., :-1, :])
    return out


class _EqOperator(torch.autograd.Function):
    """Per-curve profiles ``L·g`` and the bin error ``(gᵀHg − 2bᵀg + c)/E`` with their gradients."""

    @staticmethod
    def forward(ctx: Any, g: torch.Tensor, problem: EqProblem) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        per_curve = _tridiagonal(problem.diag, problem.upper, problem.lower, g)
        # H is symmetric: its lower diagonal is the upper one shifted by a point
        residual = _tridiagonal(problem.h_diag, problem.h_off, problem.h_off_below, g).sub_(problem.b)
        error = ((g * (residual - problem.b)).sum() + problem.c) / problem.mix_energy
        ctx.save_for_backward(residual)
        ctx.problem = problem
        return per_curve, error

    @staticmethod
    def backward(ctx: Any, grad_profile: torch.Tensor, grad_error: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        (residual,) = ctx.saved_tensors
        p = ctx.problem
        # Lᵀ·grad: the transpose swaps the roles of the off-diagonals
        grad = p.diag * grad_profile
        grad[..., :-1, :].addcmul_(p.lower[..., 1:, :], grad_profile[..., 1:, :])
        grad[..., 1:, :].addcmul_(p.upper[..., :-1, :], grad_profile[..., :-1, :])
        grad.add_(residual, alpha=float(2 * grad_error / p.mix_energy))
        return grad, None


# ------------------------------------------------------------------------------------------
# Slices
# ------------------------------------------------------------------------------------------


def slice_kernels() -> torch.Tensor:
    """The 17 linear slice filters, ``(17, 1, 3, 3)`` over (frequency, time).

    Image axes: rows are frequency (up = higher), columns are time (one column per window).
    "Horizontal" patterns are sustained partials (constant frequency over time), "vertical" ones
    transients. Built from 3-tap smoothing ``s``, first ``d`` and second ``dd`` differences, so the
    line and edge detectors steer exactly: an edge at angle θ is ``cos θ·∂t + sin θ·∂f``.
    Slice 17 ("pooled", a 3×3 max-pool of the raw slice) is not linear and not in this bank.
    """
    s = np.array([0.25, 0.5, 0.25])
    d = np.array([-0.5, 0.0, 0.5])
    dd = np.array([1.0, -2.0, 1.0])
    delta = np.array([0.0, 1.0, 0.0])
    box = np.full(3, 1.0 / 3.0)
    d_t, d_f = np.outer(s, d), np.outer(d, s)
    d_tt, d_ff, d_ft = np.outer(s, dd), np.outer(dd, s), np.outer(d, d)

    def line(theta: float) -> np.ndarray:
        # −(second derivative across a line at angle θ from the time axis): a ridge detector
        sn, cs = math.sin(theta), math.cos(theta)
        return -(sn * sn * d_tt - 2 * sn * cs * d_ft + cs * cs * d_ff)

    low_pass = np.outer(s, s)
    identity = np.outer(delta, delta)
    kernels = [
        identity,                                   # raw
        line(0.0),                                  # horizontal lines: sustained partials
        line(math.pi / 2),                          # vertical lines: onsets, consonants
        line(math.pi / 4),                          # rising pitch
        line(3 * math.pi / 4),                      # falling pitch
        low_pass - np.outer(box, box),              # blob: centre-weighted minus box (DoG)
        np.outer(delta, box),                       # harmonic: energy sustained over 3 windows
        low_pass,                                   # low-pass
        identity - low_pass,                        # high-pass
        *[math.cos(k * math.pi / 8) * d_t + math.sin(k * math.pi / 8) * d_f for k in range(7)],
        -(d_tt + d_ff),                             # Laplacian
    ]
    return torch.from_numpy(np.stack(kernels)[:, None].astype(np.float32))


def _linear_slices(x: torch.Tensor, kernels: torch.Tensor, pad: int) -> torch.Tensor:
    """``(C, P, W)`` → ``(C, 17, P + 2·pad − 2, W + 2·pad − 2)``: the 3×3 bank as one matmul.

    The nine shifted copies of the zero-padded image times the ``(17, 9)`` kernel matrix — about
    twice as fast on a CPU as a 1-input-channel ``conv2d`` (same cross-correlation).
    """
    xp = F.pad(x, (pad, pad, pad, pad))
    p, w = xp.shape[-2] - 2, xp.shape[-1] - 2
    shifts = torch.stack([xp[:, i : i + p, j : j + w] for i in range(3) for j in range(3)], 1)
    out = torch.matmul(kernels.view(kernels.shape[0], 9), shifts.reshape(x.shape[0], 9, p * w))
    return out.view(x.shape[0], kernels.shape[0], p, w)


def _max3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``max(a, b, c)`` and the masks of where ``a`` / ``b`` won (first winner on ties)."""
    won_a = (a >= b) & (a >= c)
    won_b = (b >= c) & ~won_a
    return torch.maximum(torch.maximum(a, b), c), won_a, won_b


class _MaxFilter3(torch.autograd.Function):
    """3×3 maximum filter, zero outside, as two separable passes; the gradient goes to the winner.

    ``max_pool2d`` and autograd through ``torch.maximum`` are 3–20× slower on a CPU here.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pad: int) -> torch.Tensor:  # noqa: D102
        xp = F.pad(x, (pad, pad, pad, pad))
        rows, row_a, row_b = _max3(xp[..., :-2, :], xp[..., 1:-1, :], xp[..., 2:, :])
        out, col_a, col_b = _max3(rows[..., :-2], rows[..., 1:-1], rows[..., 2:])
        ctx.save_for_backward(row_a, row_b, col_a, col_b)
        ctx.pad = pad
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        row_a, row_b, col_a, col_b = ctx.saved_tensors
        pad = ctx.pad
        g_rows = grad.new_zeros(*grad.shape[:-1], grad.shape[-1] + 2)
        ga, gb = grad * col_a, grad * col_b
        g_rows[..., :-2] += ga
        g_rows[..., 1:-1] += gb
        g_rows[..., 2:] += grad - ga - gb
        g_x = grad.new_zeros(*g_rows.shape[:-2], g_rows.shape[-2] + 2, g_rows.shape[-1])
        ga, gb = g_rows * row_a, g_rows * row_b
        g_x[..., :-2, :] += ga
        g_x[..., 1:-1, :] += gb
        g_x[..., 2:, :] += g_rows - ga - gb
        return g_x[..., pad : g_x.shape[-2] - pad, pad : g_x.shape[-1] - pad], None


def max_filter3(x: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """3×3 maximum over the last two axes of a non-negative image, zero outside.

    ``pad=1`` keeps the size, ``pad=2`` gives the full ``(+2, +2)`` output.
    """
    out = _MaxFilter3.apply(x, pad)
    assert isinstance(out, torch.Tensor)
    return out


class _PairMax(torch.autograd.Function):
    """Maximum of each pair of points over frequency; the gradient goes to the winner."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        n = x.shape[-2] // 2 * 2
        a, b = x[..., 0:n:2, :], x[..., 1:n:2, :]
        ctx.save_for_backward(a >= b)
        ctx.shape = x.shape
        return torch.maximum(a, b)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (won_a,) = ctx.saved_tensors
        g = grad.new_zeros(ctx.shape)
        n = won_a.shape[-2] * 2
        ga = grad * won_a
        g[..., 0:n:2, :] = ga
        g[..., 1:n:2, :] = grad - ga
        return g


def pool_frequency(x: torch.Tensor) -> torch.Tensor:
    """One encoder level: maximum of each pair of points over frequency ``(..., P, W) → (..., P // 2, W)``."""
    out = _PairMax.apply(x)
    assert isinstance(out, torch.Tensor)
    return out


def compute_slices(profile: torch.Tensor, kernels: torch.Tensor, full: bool = False) -> torch.Tensor:
    """All 18 slices of profile spectrograms ``(C, P, W)`` (non-negative) → ``(C, 18, P, W)``.

    ``full=True`` returns full convolutions ``(C, 18, P + 2, W + 2)`` (the image is zero outside),
    the definition the profile term uses.
    """
    pad = 2 if full else 1
    linear = _linear_slices(profile, kernels, pad)
    pooled = max_filter3(profile, pad)
    return torch.cat([linear, pooled.unsqueeze(1)], dim=1)


def folded_profile_kernel(kernels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Q = Σ_s weights_s · autocorr(K_s)``: ``(1, 1, 5, 5)``.

    For full convolutions, ``Σ_s weights_s·‖K_s ⋆ E‖² = ⟨E, Q ⋆ E⟩`` ("same"-size ``Q ⋆ E``,
    zero padding) — one 5×5 filter instead of 17 slices.
    """
    k = kernels[:, 0].double()  # (17, 3, 3)
    # autocorrelation of each kernel: conv2d of the kernel with itself at all shifts
    auto = F.conv2d(k[:, None], k[:, None], padding=2, groups=1)  # (17, 17, 5, 5): pairwise
    auto = auto[torch.arange(k.shape[0]), torch.arange(k.shape[0])]  # (17, 5, 5) diagonal pairs
    q = (weights.double().view(-1, 1, 1) * auto).sum(0)
    return q.float()[None, None]


def _filter5(x: torch.Tensor, taps: list[list[float]]) -> torch.Tensor:
    """"Same"-size 5×5 cross-correlation of ``(..., P, W)`` with zero padding, as 25 in-place
    multiply-adds of shifted views (5–10× faster than a 1-channel ``conv2d`` on a CPU)."""
    xp = F.pad(x, (2, 2, 2, 2))
    p, w = x.shape[-2], x.shape[-1]
    out = torch.zeros_like(x)
    for i in range(5):
        for j in range(5):
            if taps[i][j] != 0.0:
                out.add_(xp[..., i : i + p, j : j + w], alpha=taps[i][j])
    return out


class _FoldedQuadratic(torch.autograd.Function):
    """``⟨E, Q ⋆ E⟩`` with its gradient ``2·Q ⋆ E`` (Q is symmetric): one filtering per call."""

    @staticmethod
    def forward(ctx: Any, e: torch.Tensor, taps: list[list[float]]) -> torch.Tensor:  # noqa: D102
        qe = _filter5(e, taps)
        ctx.save_for_backward(qe)
        return (e * qe).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        (qe,) = ctx.saved_tensors
        return 2 * grad * qe, None


# ------------------------------------------------------------------------------------------
# The encoder and the per-window metrics of all slices
# ------------------------------------------------------------------------------------------


def _level_hz(point_hz: np.ndarray, level: int) -> np.ndarray:
    """Centre frequency of the points of encoder level ``level`` (max-pool by 2, floor)."""
    width = 2**level
    n = len(point_hz) // width
    return point_hz[: n * width].reshape(n, width).mean(-1)


def _region_matrix(freqs_hz: np.ndarray, regions: tuple[tuple[float, float], ...]) -> np.ndarray:
    """``(regions, points)`` 0/1 membership (an empty region keeps its nearest point)."""
    m = np.zeros((len(regions), len(freqs_hz)), np.float32)
    for i, (lo, hi) in enumerate(regions):
        sel = (freqs_hz >= lo) & (freqs_hz < hi)
        if not sel.any():
            sel[np.argmin(np.abs(freqs_hz - 0.5 * (lo + hi)))] = True
        m[i, sel] = 1.0
    return m


class Fingerprinter:
    """The encoder and the 25 per-window metrics of every slice (all windows at once)."""

    def __init__(self, grid: ProfileGrid, device: torch.device) -> None:
        self.grid = grid
        self.kernels = slice_kernels().to(device)
        hz0 = grid.point_hz
        hz1, hz2 = _level_hz(hz0, 1), _level_hz(hz0, 2)
        top = float(hz0[-1])

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)

        bands = _region_matrix(hz0, FINGERPRINT_BANDS_HZ)
        self.band_matrix = t(bands / bands.sum(1, keepdims=True))  # (6, P0): band means
        f2 = hz2 / top
        # spectral shape from the 200-Hz level: mass, first and second moment, and the shares of
        # energy above 4 kHz and below 500 Hz (smooth ratios; skewness and kurtosis were tried and
        # are too sensitive to quiet windows to optimise)
        self.moment_matrix = t(np.stack([np.ones_like(f2), f2, f2**2, (hz2 >= 4000.0) * 1.0, (hz2 < 500.0) * 1.0]))
        centred = f2 - f2.mean()
        self.slope_vector = t(centred / max(float(np.sum(centred**2)), 1e-12))  # (P2,)
        regions = _region_matrix(hz1, FORMANT_REGIONS_HZ)
        position = np.zeros_like(regions)
        for i, (lo, hi) in enumerate(FORMANT_REGIONS_HZ):
            position[i] = np.clip((hz1 - lo) / (hi - lo), 0.0, 1.0) * regions[i]
        self.formant_mass, self.formant_position = t(regions), t(position)  # (4, P1) each

    def slices(self, profile: torch.Tensor, full: bool = False) -> torch.Tensor:
        return compute_slices(profile, self.kernels, full)

    def energy_details(self, slices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Only the bottleneck and the band energies of :meth:`details` (cheaper)."""
        e0 = slices.abs()
        level = e0
        for _ in range(ENCODER_LEVELS):
            level = pool_frequency(level)
        return {"bottleneck": level, "bands": torch.matmul(self.band_matrix, e0)}

    def details(self, slices: torch.Tensor, floor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder bottleneck and the 25 metrics of every slice, per window.

        Args:
            slices: ``(C, 18, P, W)`` slice responses ("same" size).
            floor: ``(18, 1, 1)`` positive magnitude per slice, measured on the mix: ratio metrics
                divide by (energy + floor), so a near-silent window's ratios stay bounded.

        Returns:
            ``bottleneck (C, 18, P >> 4, W)``, ``bands (C, 18, 6, W)``, ``shape (C, 18, 6, W)``
            (centroid, spread, flatness, slope, share above 4 kHz, share below 500 Hz), ``harmonic (C, 18, 5,
            W)``, ``formant (C, 18, 4, W)``, ``dynamics (C, 18, 4, W)`` (log energy, its change,
            spectral flux, crest).
        """
        eps = floor.unsqueeze(0)  # (1, 18, 1, 1)
        eps_w = eps[..., 0, :]  # (1, 18, 1)
        e0 = slices.abs()
        levels = [e0]
        for _ in range(ENCODER_LEVELS):
            levels.append(pool_frequency(levels[-1]))
        e1, e2 = levels[1], levels[2]

        bands = torch.matmul(self.band_matrix, e0)

        moments = torch.matmul(self.moment_matrix, e2)  # (C, 18, 5, W): Σe, Σe·f, Σe·f², Σe(f>4k), Σe(f<500)
        mass = moments[:, :, 0] + eps_w
        centroid = moments[:, :, 1] / mass
        spread = ((moments[:, :, 2] / mass - centroid * centroid).clamp(min=0.0) + 1e-6).sqrt()
        mean_e2 = e2.mean(-2) + eps_w
        flatness = torch.exp(torch.log(e2 + eps).mean(-2)) / mean_e2
        slope = torch.matmul(self.slope_vector, e2) / mean_e2
        shape = torch.stack([centroid, spread, flatness, slope, moments[:, :, 3] / mass, moments[:, :, 4] / mass], 2)

        x = e1 - e1.mean(-2, keepdim=True)
        energy = x.square().sum(-2) + eps_w.square() * x.shape[-2]
        harmonic = torch.stack([(x[:, :, lag:] * x[:, :, :-lag]).sum(-2) / energy for lag in HARMONIC_LAGS], 2)

        formant = torch.matmul(self.formant_position, e1) / (torch.matmul(self.formant_mass, e1) + eps)

        log_energy = torch.log(e0.mean(-2) + eps_w)  # (C, 18, W)
        change = log_energy - torch.cat([log_energy[..., :1], log_energy[..., :-1]], dim=-1)
        previous = torch.cat([e2[..., :1], e2[..., :-1]], dim=-1)
        flux = F.relu(e2 - previous).mean(-2) / mean_e2
        crest = e2.amax(-2) / mean_e2
        dynamics = torch.stack([log_energy, change, flux, crest], 2)
        return {"bottleneck": levels[-1], "bands": bands, "shape": shape, "harmonic": harmonic,
                "formant": formant, "dynamics": dynamics}


def slice_weights(derived_weight: float) -> torch.Tensor:
    """``(18,)`` normalised to sum 1: the raw slice weighs 1, the 17 others share ``derived_weight``."""
    w = torch.full((N_SLICES,), derived_weight / (N_SLICES - 1))
    w[0] = 1.0
    return w / w.sum()


class FingerprintLoss:
    """Distance between an EQ'd mix's fingerprint and the acapella's, for one chunk of windows.

    ``profile(S)`` is the weighted sum over all 18 slices of each slice's 400-point-profile error
    (mean squared difference over points and windows, divided by the mix's mean square of that
    slice) — exact and cheap (folded). ``details(S)`` adds, for every slice, the encoder
    bottleneck and the 25 metrics (each a mean squared difference divided by the mix's scale of
    that metric; ratio metrics weighted per window by the acapella's energy there).

    Args:
        fingerprinter: shared per song.
        mix_profile, acapella_profile: ``(C, P, W)`` profile spectrograms of the chunk.
        weights: ``(18,)`` slice weights (:func:`slice_weights`).
        with_details: prepare :meth:`details` too (the acapella's encoder and metrics).
    """

    def __init__(
        self, fingerprinter: Fingerprinter, mix_profile: torch.Tensor, acapella_profile: torch.Tensor,
        weights: torch.Tensor, with_details: bool = True,
    ) -> None:
        self.fp = fingerprinter
        channels, points, windows = mix_profile.shape
        self.weights = weights.to(mix_profile.device)
        self.acapella_profile = acapella_profile
        self.count = float(channels * points * windows)
        with torch.no_grad():
            mix_full = fingerprinter.slices(mix_profile, full=True)
            acapella_full = fingerprinter.slices(acapella_profile, full=True)
            power = mix_full.square().mean(dim=(0, 2, 3)).clamp(min=1e-30)  # (18,)
            # linear slices folded into one 5×5 quadratic form; "pooled" compared directly
            q = folded_profile_kernel(fingerprinter.kernels, self.weights[:N_LINEAR_SLICES] / power[:N_LINEAR_SLICES])
            self.q_taps: list[list[float]] = q[0, 0].double().tolist()
            self.pooled_weight = float(self.weights[-1] / power[-1])
            self.acapella_pooled = acapella_full[:, -1]
            # Ratio metrics (centroid, flatness, …) of a near-zero response are noise: a floor at
            # 1 % of the mix's level keeps them, and their gradients, bounded.
            self.floor = (1e-2 * power.sqrt() + 1e-12).view(-1, 1, 1)
            self.target: dict[str, torch.Tensor] = {}
            self.scale: dict[str, torch.Tensor] = {}
            if not with_details:
                return
            # the central part of a full convolution is the "same"-size one
            self.target = fingerprinter.details(acapella_full[..., 1:-1, 1:-1], self.floor)
            # Ratio metrics describe the vocal only where there is one: windows count by the
            # acapella's energy (where it is silent, the profile term alone pulls the EQ down).
            energy = acapella_profile.square().sum(-2, keepdim=True)  # (C, 1, W)
            self.window_weight = (energy / energy.mean().clamp(min=1e-30)).unsqueeze(1)  # (C, 1, 1, W)
            mix_levels = fingerprinter.energy_details(mix_full[..., 1:-1, 1:-1])
            for name, value in self.target.items():
                if name in _RATIO_TERMS:
                    # energy-weighted spread of the acapella's metric, floored
                    w = self.window_weight / self.window_weight.mean(dim=(0, 3), keepdim=True).clamp(min=1e-30)
                    mean = (w * value).mean(dim=(0, 3), keepdim=True)
                    spread = ((w * (value - mean).square()).mean(dim=(0, 3), keepdim=True)).sqrt()
                    self.scale[name] = spread + 1e-2 * mean.abs() + 1e-3
                else:  # bottleneck, bands: the mix's RMS level (one scale for both signals)
                    self.scale[name] = mix_levels[name].square().mean(dim=(0, 2, 3), keepdim=True).sqrt() + 1e-12

    # -- the cheap, exact part ---------------------------------------------------------------

    def profile(self, s: torch.Tensor) -> torch.Tensor:
        """Weighted profile error of all 18 slices (scalar), differentiable in ``s`` ``(C, P, W)``."""
        e = s - self.acapella_profile
        linear = _FoldedQuadratic.apply(e, self.q_taps)
        pooled = max_filter3(s, pad=2)
        out = linear + self.pooled_weight * (pooled - self.acapella_pooled).square().sum()
        return out / self.count

    def profile_per_slice(self, s: torch.Tensor) -> torch.Tensor:
        """``(18,)`` unweighted profile error of each slice, computed slice by slice (diagnostic)."""
        full = self.fp.slices(s, full=True)
        target = self.fp.slices(self.acapella_profile, full=True)
        return (full - target).square().sum(dim=(0, 2, 3)) / self.count

    # -- the expensive part ------------------------------------------------------------------

    def details(self, s: torch.Tensor, block: int = 0) -> torch.Tensor:
        """Weighted encoder + metric error of all 18 slices (scalar), differentiable in ``s``.

        ``block > 0`` evaluates windows in blocks of that many (with the context the slices and
        the dynamics need), which keeps the working set in cache; the result is the same.
        """
        windows = s.shape[-1]
        if block <= 0 or block >= windows:
            return self._detail_block(s, 0, windows) / float(s.shape[0] * windows)
        parts = [self._detail_block(s, a, min(a + block, windows)) for a in range(0, windows, block)]
        return torch.stack(parts).sum() / float(s.shape[0] * windows)

    def details_per_slice(self, s: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each detail term's ``(18,)`` mean error, unweighted (diagnostic)."""
        out = self._detail_terms(s, 0, s.shape[-1])
        n = float(s.shape[0] * s.shape[-1])
        return {name: value / n for name, value in out.items()}

    def _detail_terms(self, s: torch.Tensor, a: int, b: int) -> dict[str, torch.Tensor]:
        # context: the 3×3 slices look one window either side, the dynamics one window back
        lo, hi = max(a - 2, 0), min(b + 1, s.shape[-1])
        feats = self.fp.details(self.fp.slices(s[..., lo:hi]), self.floor)
        out = {}
        for name, value in feats.items():
            target = self.target[name][..., lo:hi]
            err = ((value - target) / self.scale[name]).square()
            if name in _RATIO_TERMS:
                err = err * self.window_weight[..., lo:hi]
            err = err[..., a - lo : b - lo]
            out[name] = err.mean(dim=2).sum(dim=(0, 2))  # (18,): Σ over windows of the per-window mean
        return out

    def _detail_block(self, s: torch.Tensor, a: int, b: int) -> torch.Tensor:
        terms = self._detail_terms(s, a, b)
        total = sum(DETAIL_WEIGHTS[name] * value for name, value in terms.items())
        assert isinstance(total, torch.Tensor)
        return (self.weights * total).sum()
