"""Finding offset, drift, gain and polarity of an acapella against its mix.

Stages (vectorised; see ``bench/bench_align.py`` for the time on a 4-minute stereo song):

1. **Downmix and decimate.** Mono mix and mono acapella go straight from their own rates to
   the 4 kHz analysis rate (soxr), where the vocal's fundamentals and first formants live.
   Analysis frame ``j`` is time ``j / 4000`` s of either signal.
2. **Global GCC-PHAT.** One FFT cross-correlation of the whole decimated signals with the phase
   transform (whitening) in 150 Hz–1.8 kHz, over every lag where they overlap by at least half
   of the shorter one (±60 s and far more). Clock drift smears the peak into a plateau (1000 ppm
   over 4 minutes is 240 ms wide), so the rectified correlation is box-averaged over 1, 2, 4 …
   lags and each width's maximum is scored against that width's robust noise level
   (median/MAD); the best score is the detection statistic ``z``.
3. **Drift and coarse line.** If the peak is smeared, a drift scan (200 ppm grid over
   ±1600 ppm) keeps the hypothesis under which the loudest 1 s windows correlate most sharply.
   Then 1 s windows of the drift-corrected acapella are correlated with the mix around the
   re-detected lag, one lag per window, and a weighted RANSAC line (lag = offset + drift·time)
   gives offset and drift. The fraction of windows on the line is the agreement.
4. **Fine line at full rate.** The acapella, converted and drift-corrected (soxr), is cut into
   8192-frame windows; each window's lag against the mix is refined to a small fraction of a
   frame by Newton's method on its PHAT-weighted cross-spectrum, and a robust weighted line
   through them gives the residual offset and drift. A drift that is not significant, or would
   move the last frame by less than 1/1000 frame, is set to exactly zero.
5. **Global least squares.** With that drift, Newton's method on the exact frequency-domain
   cross-correlation of all channels (:meth:`AlignmentRenderer.refine_offset`) gives the
   offset of the deepest null, and the least-squares gain (its sign is the polarity).
6. **Null test and local fit** on the rendered result (the render reuses the spectra of stage 5:
   one inverse FFT per channel).

The confidence is the product of three logistic factors: ``z`` (a wrong song scores 6–15, a
match 20 to several hundred), the fraction of 1 s windows on the coarse line (wrong: under
~20 %, but noisy for short clips; match: 25–100 %) and the fraction of full-rate windows on the
fine line (wrong: 0–10 %; match: 60–100 %).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft

from engine.align.nulltest import null_test_from_energies, window_energies
from engine.align.render import AlignmentRenderer, apply_drift, soxr_resample
from engine.align.result import AlignmentParams, AlignmentResult, LocalFit, NullTest
from engine.audio import Audio
from engine.errors import Cancelled, InputError
from engine.spectral import BANDS

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

#: Rate of the coarse stages (Hz).
ANALYSIS_RATE_HZ = 4000.0
#: Band of the phase transform at the analysis rate (Hz): above the bass and kick.
_PHAT_LOW_HZ = 150.0
_PHAT_HIGH_HZ = 1800.0
#: Band of the full-rate refinement (Hz).
_FINE_LOW_HZ = 150.0
_FINE_HIGH_HZ = 8000.0
#: Coarse local windows (analysis frames) and fine windows (mix frames).
_COARSE_WINDOW = 4096
_FINE_WINDOW = 8192
_MAX_FINE_WINDOWS = 256
#: Largest drift searched (ppm), beyond the ±1000 ppm the tool promises.
MAX_DRIFT_PPM = 1600.0
#: Drift scan: grid step (ppm) and windows scored; detection width from which it runs.
_SCAN_STEP_PPM = 200.0
_SCAN_WINDOWS = 48
_SCAN_MIN_WIDTH = 8
#: Drifts below this (unitless) are taken as none (0.05 ppm: 0.5 frame over 4 minutes).
_DRIFT_FLOOR = 0.05e-6
#: Confidence at or above which the acapella is declared to match.
MATCH_CONFIDENCE = 0.5
#: Detection statistic and agreement at which each half of the confidence crosses 0.5.
_Z_MID, _Z_SCALE = 12.0, 1.5
_AGREE_MID, _AGREE_SCALE = 0.12, 0.03
#: Fraction of full-rate windows on the fine line at which that factor crosses 0.5.
_FINE_AGREE_MID, _FINE_AGREE_SCALE = 0.3, 0.06
#: Agreement at which the zero-drift line is trusted without a drift scan.
_AGREE_GOOD = 0.3
#: Below this detection statistic the search stops early: no match.
_Z_HOPELESS = 5.0
#: Local-fit windows (seconds) and their search range (seconds either way).
LOCAL_WINDOW_SECONDS = 1.0
_LOCAL_SEARCH_SECONDS = 2.0


def _check(progress: ProgressFn | None, cancel: CancelFn | None, fraction: float, message: str) -> None:
    if cancel is not None and cancel():
        raise Cancelled()
    if progress is not None:
        progress(fraction, message)


# ------------------------------------------------------------------------------------------
# small numeric helpers
# ------------------------------------------------------------------------------------------


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred box average of ``width`` samples (edges use what exists)."""
    if width <= 1:
        return x
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    n = len(x)
    lo = np.clip(np.arange(n) - width // 2, 0, n)
    hi = np.clip(lo + width, 0, n)
    return (c[hi] - c[lo]) / np.maximum(hi - lo, 1)


def _parabolic(y_left: np.ndarray, y_mid: np.ndarray, y_right: np.ndarray) -> np.ndarray:
    """Vertex offset (−0.5..0.5) of the parabola through three equally spaced points."""
    den = y_left - 2.0 * y_mid + y_right
    safe = np.where(np.abs(den) > 1e-30, den, 1.0)
    return np.clip(np.where(np.abs(den) > 1e-30, 0.5 * (y_left - y_right) / safe, 0.0), -0.5, 0.5)


def _gather(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Rows ``x[s : s + length]`` for each start (zeros outside ``x``), float32 ``(K, length)``."""
    starts = np.asarray(starts, dtype=np.int64)
    lo = int(min(starts.min(initial=0), 0))
    hi = int(max(starts.max(initial=0) + length, len(x)))
    if lo < 0 or hi > len(x):  # pad only when a window reaches outside
        padded = np.zeros(hi - lo, dtype=np.float32)
        padded[-lo:-lo + len(x)] = x
        x, starts = padded, starts - lo
    view = np.lib.stride_tricks.sliding_window_view(x, length)
    return np.asarray(view[starts], dtype=np.float32)


def _phat(spec: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Phase transform: unit magnitude inside ``band``, zero outside (rows independent)."""
    mag = np.abs(spec)
    floor = 1e-6 * np.maximum(mag.max(axis=-1, keepdims=True), 1e-30)
    return np.where(band, spec / np.maximum(mag, floor), 0.0).astype(np.complex64)


def _band(bins: int, n_fft: int, rate: float, low_hz: float, high_hz: float) -> np.ndarray:
    f = np.arange(bins) * rate / n_fft
    return (f >= low_hz) & (f <= min(high_hz, 0.45 * rate))


# ------------------------------------------------------------------------------------------
# stage 2: global detection
# ------------------------------------------------------------------------------------------


@dataclass
class _Detection:
    lag: float  # analysis frames (mix index - acapella index) at the detected peak
    width: int  # width (analysis frames) at which it was detected
    z: float  # detection statistic


def _detect(md: np.ndarray, ad: np.ndarray, rate: float) -> _Detection:
    """Whole-song GCC-PHAT and the multi-width peak detector (see the module docstring)."""
    n = scipy.fft.next_fast_len(len(md) + len(ad), real=True)
    spec = scipy.fft.rfft(md, n) * np.conj(scipy.fft.rfft(ad, n))
    band = _band(spec.shape[0], n, rate, _PHAT_LOW_HZ, _PHAT_HIGH_HZ)
    c = scipy.fft.irfft(_phat(spec, band), n)
    del spec
    # lags -(len(ad)-1) .. len(md)-1, keeping those where the two overlap by half the shorter
    lags = np.arange(-(len(ad) - 1), len(md))
    values = np.concatenate([c[n - (len(ad) - 1):], c[:len(md)]]) if len(ad) > 1 else c[:len(md)]
    overlap = np.minimum(len(md), lags + len(ad)) - np.maximum(0, lags)
    keep = overlap >= max(1, min(len(md), len(ad)) // 2)
    lags, e = lags[keep], np.abs(values[keep])
    max_width = 2 ** math.ceil(math.log2(MAX_DRIFT_PPM * 1e-6 * len(ad) + 2))
    max_width = max(1, min(max_width, len(e) // 16))
    best = _Detection(lag=0.0, width=1, z=-math.inf)
    sub = max(1, len(e) // 200_000)  # noise statistics from a subsample: same answer, less time
    cum = np.concatenate([np.zeros(max_width + 1), np.cumsum(e, dtype=np.float64)])
    cum = np.concatenate([cum, np.full(max_width, cum[-1])])
    width = 1
    while width <= max_width:
        lo = max_width + 1 - width // 2  # s[i] = mean of e[i - w//2 : i - w//2 + w]
        s = e if width == 1 else (cum[lo + width:lo + width + len(e)] - cum[lo:lo + len(e)]) / width
        ref = s[::sub]
        med = float(np.median(ref))
        mad = float(np.median(np.abs(ref - med))) * 1.4826
        i = int(np.argmax(s))
        z = (float(s[i]) - med) / max(mad, 1e-12)
        if z > best.z:
            if width == 1 and 0 < i < len(e) - 1:
                lag = lags[i] + float(_parabolic(e[i - 1], e[i], e[i + 1]))
            else:
                lag = float(lags[i]) - (0.5 if width % 2 == 0 else 0.0)
            best = _Detection(lag=lag, width=width, z=z)
        width *= 2
    return best


# ------------------------------------------------------------------------------------------
# local windows and robust lines
# ------------------------------------------------------------------------------------------


def _window_correlations(
    mix: np.ndarray,
    acap: np.ndarray,
    acap_starts: np.ndarray,
    window: int,
    centre_lag: int | np.ndarray,
    radius: int,
    rate: float,
    band_hz: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, int]:
    """GCC-PHAT of Hann-tapered acapella windows against mix segments around ``centre_lag``
    (one for all windows, or one per window).

    Returns:
        ``(c, spec, n)``: correlation ``(K, 2·radius+1)`` for lags ``centre - radius ..
        centre + radius`` (normalised: 1 for identical windows), the PHAT cross-spectra
        ``(K, bins)`` (their circular correlation index ``i`` is lag ``centre - radius + i``),
        and the FFT size.
    """
    a = _gather(acap, acap_starts, window) * np.hanning(window + 2)[1:-1].astype(np.float32)
    m = _gather(mix, acap_starts + centre_lag - radius, window + 2 * radius)
    n = scipy.fft.next_fast_len(window + 2 * radius, real=True)
    spec = scipy.fft.rfft(m, n, axis=1) * np.conj(scipy.fft.rfft(a, n, axis=1))
    band = _band(spec.shape[1], n, rate, *band_hz)
    spec = _phat(spec, band)
    c = scipy.fft.irfft(spec, n, axis=1)[:, : 2 * radius + 1] * (n / (2.0 * max(int(band.sum()), 1)))
    return c, spec, n


def _peaks(c: np.ndarray, sign: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: sub-sample index of the largest ``sign·c`` (``|c|`` when ``sign`` is 0; not at
    the edges), its signed value, and its prominence over the row's robust noise level."""
    e = np.abs(c)
    pick = e if sign == 0.0 else sign * c
    i = np.clip(np.argmax(pick[:, 1:-1], axis=1) + 1, 1, c.shape[1] - 2)
    rows = np.arange(c.shape[0])
    pos = i + _parabolic(e[rows, i - 1], e[rows, i], e[rows, i + 1])
    ref = e[:, :: max(1, e.shape[1] // 1024)]  # noise level from ~1000 lags per row
    med = np.median(ref, axis=1)
    mad = np.median(np.abs(ref - med[:, None]), axis=1) * 1.4826
    z = (e[rows, i] - med) / np.maximum(mad, 1e-12)
    return pos, c[rows, i], z


def _majority_sign(c: np.ndarray) -> float:
    """The polarity most windows agree on: sign of the energy-weighted sum of each window's
    strongest peak (a drift-smeared global peak can have either sign; single windows cannot)."""
    pos, val, z = _peaks(c)
    good = z > 3.0
    weight = np.sum(val[good] * np.abs(val[good])) if good.any() else float(np.sum(val * np.abs(val)))
    return 1.0 if weight >= 0 else -1.0


def _active_windows(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Starts of windows whose energy is within 40 dB of the loud ones (90th percentile)."""
    if len(x) < window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, len(x) - window + 1, hop, dtype=np.int64)
    if hop == window:
        frames = x[: len(starts) * window].reshape(len(starts), window)
        ew = np.einsum("kw,kw->k", frames, frames).astype(np.float64)
    else:
        cs = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
        ew = cs[starts + window] - cs[starts]
    loud = float(np.percentile(ew, 90))
    return starts[ew > 1e-4 * loud] if loud > 0 else starts[:0]


@dataclass
class _Line:
    offset: float
    slope: float
    inliers: np.ndarray  # bool mask over the points
    slope_std: float


def _weighted_fit(t: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    tm = np.average(t, weights=w)
    ym = np.average(y, weights=w)
    slope = float(np.sum(w * (t - tm) * (y - ym)) / max(float(np.sum(w * (t - tm) ** 2)), 1e-300))
    return float(ym - slope * tm), slope


def _robust_line(t: np.ndarray, y: np.ndarray, w: np.ndarray, tol: float, max_slope: float) -> _Line | None:
    """Weighted RANSAC line ``y = offset + slope·t``, then weighted least squares on the inliers.

    Deterministic (seeded). The flat line through every point is always a candidate.
    """
    k = len(t)
    if k == 0:
        return None
    if k == 1:
        return _Line(float(y[0]), 0.0, np.ones(1, bool), math.inf)
    rng = np.random.default_rng(0)
    p = w / w.sum()
    trials = min(600, k * (k - 1))
    i = rng.choice(k, size=trials, p=p)
    j = rng.choice(k, size=trials, p=p)
    ok = np.abs(t[i] - t[j]) > 1e-9
    i, j = i[ok], j[ok]
    slopes = (y[j] - y[i]) / (t[j] - t[i])
    keep = np.abs(slopes) <= max_slope
    slopes = np.concatenate([slopes[keep], np.zeros(k)])
    offsets = np.concatenate([y[i[keep]] - slopes[: int(keep.sum())] * t[i[keep]], y])
    resid = np.abs(y[None, :] - offsets[:, None] - slopes[:, None] * t[None, :])
    best = int(np.argmax(((resid < tol) * w[None, :]).sum(axis=1)))
    inl = resid[best] < tol
    off, slope = float(offsets[best]), float(slopes[best])
    for _ in range(3):
        if inl.sum() >= 2 and np.ptp(t[inl]) > 0:
            off, slope = _weighted_fit(t[inl], y[inl], w[inl])
        else:
            off = float(np.average(y[inl] - slope * t[inl], weights=w[inl]))
        r = np.abs(y - off - slope * t)
        inl = r < tol
        if not inl.any():
            inl = r <= r.min()
    slope_std = math.inf
    if inl.sum() > 2 and np.ptp(t[inl]) > 0:
        r = (y - off - slope * t)[inl]
        ww = w[inl] / w[inl].sum()
        rs = math.sqrt(float(np.sum(ww * r**2)))
        var_t = float(np.sum(ww * (t[inl] - np.sum(ww * t[inl])) ** 2))
        n_eff = float(w[inl].sum() ** 2 / np.sum(w[inl] ** 2))
        slope_std = rs / math.sqrt(max(var_t, 1e-30) * max(n_eff - 2.0, 1.0))
    return _Line(off, slope, inl, slope_std)


# ------------------------------------------------------------------------------------------
# stage 3: drift scan and coarse line
# ------------------------------------------------------------------------------------------


@dataclass
class _Coarse:
    offset: float  # analysis frames
    drift: float  # unitless
    agree: float  # fraction of the acapella's active windows on the line
    z: float  # detection statistic (after drift correction when that sharpened it)


def _drift_scan(md: np.ndarray, ad: np.ndarray, fd: float, det: _Detection) -> float:
    """The drift hypothesis (unitless) under which the loudest 1 s windows correlate most
    sharply with the mix.

    Within a 1 s window a drift error of 100 ppm moves the lag by 0.4 analysis frames, so a
    200 ppm grid misses by at most that; a parabola through the best score and its neighbours
    refines it (the coarse line does the rest).
    """
    win = min(_COARSE_WINDOW, len(ad))
    starts = _active_windows(ad, win, win)
    if len(starts) == 0:
        return 0.0
    cs = np.concatenate([[0.0], np.cumsum(ad.astype(np.float64) ** 2)])
    energy = cs[starts + win] - cs[starts]
    starts = np.sort(starts[np.argsort(energy)[::-1][:_SCAN_WINDOWS]])
    radius = int(MAX_DRIFT_PPM * 1e-6 * len(ad)) + 64
    centre = int(round(det.lag))
    steps = int(MAX_DRIFT_PPM // _SCAN_STEP_PPM)
    grid = np.arange(-steps, steps + 1) * _SCAN_STEP_PPM
    scores = np.empty(len(grid))
    for gi, d_ppm in enumerate(grid):
        b = apply_drift(ad, float(d_ppm), quality="HQ")
        st = np.round(starts * (1.0 + d_ppm * 1e-6)).astype(np.int64)
        c, _, _ = _window_correlations(md, b, st, win, centre, radius, fd, (_PHAT_LOW_HZ, _PHAT_HIGH_HZ))
        scores[gi] = float(np.mean(np.max(np.abs(c), axis=1)))
    i = int(np.argmax(scores))
    d = float(grid[i])
    if 0 < i < len(grid) - 1:
        d += float(_parabolic(scores[i - 1], scores[i], scores[i + 1])) * _SCAN_STEP_PPM
    return d * 1e-6


def _line_for(md: np.ndarray, b: np.ndarray, fd: float, det: _Detection, drift: float) -> _Coarse | None:
    """1 s windows of ``b`` (the acapella corrected by ``drift``) correlated with the mix around
    the detected lag, and a robust line through their lags."""
    win = min(_COARSE_WINDOW, len(b))
    starts = _active_windows(b, win, max(1, win // 2))
    if len(starts) == 0:
        return None
    # the line runs through the detected peak, within its width (a sharp peak: a drift too
    # small to smear it); after a drift scan it may still drift by the scan's residual
    # (~100 ppm). A narrow search keeps the windows off the pitch-period sidelobes.
    radius = int(det.width + (0.0 if drift == 0.0 else 150e-6 * len(b))) + 6
    centre = int(round(det.lag))
    c, _, _ = _window_correlations(md, b, starts, win, centre, radius, fd, (_PHAT_LOW_HZ, _PHAT_HIGH_HZ))
    sign = _majority_sign(c)
    pos, val, zloc = _peaks(c, sign)
    good = (zloc > 3.0) & (val * sign > 0)
    if not good.any():
        return None
    line = _robust_line(starts[good] + win / 2.0, centre - radius + pos[good], np.abs(val[good]) ** 2,
                        tol=1.0, max_slope=200e-6)
    if line is None:
        return None
    slope = line.slope if line.slope_std < 50e-6 else 0.0  # too short to see a drift: none
    return _Coarse(offset=line.offset, drift=(1.0 + drift) * (1.0 + slope) - 1.0,
                   agree=float(line.inliers.sum()) / len(starts), z=det.z)


def _coarse_line(md: np.ndarray, ad: np.ndarray, fd: float, det: _Detection) -> _Coarse | None:
    """Stage 3 (see the module docstring): the zero-drift line when the peak is sharp and the
    windows agree; otherwise the drift scan, re-detection and the line on the corrected
    acapella (whichever of the two agrees better)."""
    first = _line_for(md, ad, fd, det, 0.0) if det.width < _SCAN_MIN_WIDTH else None
    if first is not None and first.agree >= _AGREE_GOOD:
        return first
    drift = _drift_scan(md, ad, fd, det)
    second = None
    if drift != 0.0:
        b = apply_drift(ad, drift * 1e6, quality="HQ")
        det2 = _detect(md, b, fd)
        if det2.z > det.z:  # the correction sharpened the peak
            second = _line_for(md, b, fd, det2, drift)
    if second is None and first is None:
        second = _line_for(md, ad, fd, det, 0.0)
    candidates = [c for c in (first, second) if c is not None]
    return max(candidates, key=lambda c: c.agree) if candidates else None


# ------------------------------------------------------------------------------------------
# stage 4: fine line at the full rate
# ------------------------------------------------------------------------------------------


def _newton_lags(spec: np.ndarray, n: int, used: np.ndarray, start: np.ndarray,
                 iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the lag ``s`` (circular-correlation index units) maximising the band-limited
    correlation ``Re sum_k X_k e^{i 2 pi k s / n}``, by Newton's method from the integer
    ``start`` (steps of at most half a frame, so it stays on the peak it started on).

    Args:
        spec: PHAT cross-spectra ``(K, bins)``; n: their FFT size; used: indices of the band's
        bins (the others are zero); start: ``(K,)`` integer starting lags.

    Returns ``(lags, correlation values there)``."""
    k = used.astype(np.float64)
    s0 = np.round(start).astype(np.int64)
    # the integer part exactly (index arithmetic modulo n), so the iterations only turn small
    # angles and float32 phases are plenty
    base = 2.0 * np.pi * (np.outer(s0, used) % n) / n
    x = spec[:, used] * np.exp(1j * base).astype(np.complex64)
    delta = np.zeros(len(s0))
    scale = 2.0 * np.pi / n
    sign = np.ones(len(s0))
    value = np.zeros(len(s0))
    kf = k.astype(np.float32)
    kk = np.stack([np.ones_like(kf), kf, kf * kf], axis=1)  # (bins, 3): float32 BLAS products
    for it in range(iterations):
        ph = np.exp(1j * (scale * np.outer(delta, k)).astype(np.float32)) * x
        re = ph.real @ kk  # (K, 3): sums of Re, k Re, k^2 Re
        im = ph.imag @ kk
        value = re[:, 0].astype(np.float64)
        if it == 0:
            sign = np.where(value >= 0, 1.0, -1.0)
        d1 = -im[:, 1] * scale * sign
        d2 = -re[:, 2] * scale**2 * sign
        step = np.where(d2 < 0, -d1 / np.where(d2 < 0, d2, -1.0), 0.25 * np.sign(d1))
        delta += np.clip(step, -0.5, 0.5)
    return s0 + delta, value * 2.0 / n


def _fine_line(m: np.ndarray, b: np.ndarray, rate: int, offset: float, ratio: float) -> tuple[_Line | None, float]:
    """Lags (mix frames, relative to ``offset``) of full-rate windows of ``b`` against ``m``
    and a robust line through them over ``b``'s frames.

    Args:
        m: mono mix at the full rate.
        b: mono acapella at the mix rate, drift-corrected: frame ``j`` expected at mix
            ``offset + j``.
        ratio: mix frames per analysis frame (sets the search radius: the coarse offset is
            good to a fraction of an analysis frame).

    Returns:
        ``(line or None, fraction of the active windows on it)``.
    """
    # 8192 frames, shorter for short clips so there are at least ~6 windows
    win = int(min(_FINE_WINDOW, max(1024, 2 ** math.floor(math.log2(max(len(b) // 6, 1))))))
    win = min(win, len(b))
    starts = _active_windows(b, win, win)
    if len(starts) < 2:
        return None, 0.0
    if len(starts) > _MAX_FINE_WINDOWS:
        starts = starts[np.linspace(0, len(starts) - 1, _MAX_FINE_WINDOWS).round().astype(np.int64)]
    io = int(round(offset))
    radius = int(2 * ratio) + 8
    c, spec, n = _window_correlations(m, b, starts, win, io, radius, float(rate), (_FINE_LOW_HZ, _FINE_HIGH_HZ))
    sign = _majority_sign(c)
    pos, val, z = _peaks(c, sign)
    used = np.flatnonzero(_band(spec.shape[1], n, float(rate), _FINE_LOW_HZ, _FINE_HIGH_HZ))
    lags, value = _newton_lags(spec, n, used, np.round(pos))
    lags = lags - radius + (io - offset)
    good = (z > 4.0) & (np.abs(lags) < radius - 1) & (val * sign > 0)
    if good.sum() < 2:
        return None, 0.0
    line = _robust_line(starts[good] + win / 2.0, lags[good], value[good] ** 2, tol=0.75, max_slope=20e-6)
    if line is None or line.inliers.sum() < 3:  # two windows can agree by chance
        return line, 0.0
    return line, float(line.inliers.sum()) / len(starts)


# ------------------------------------------------------------------------------------------
# the public entry point
# ------------------------------------------------------------------------------------------


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))


def _confidence(z: float, agree: float) -> float:
    """0..1 before the fine stage: the detection statistic and the coarse agreement must both
    be convincing (the fine stage's agreement multiplies in later)."""
    return _sigmoid((z - _Z_MID) / _Z_SCALE) * _sigmoid((agree - _AGREE_MID) / _AGREE_SCALE)


def _no_match(mix: Audio, acapella: Audio, confidence: float, why: str) -> AlignmentResult:
    return AlignmentResult(
        offset_samples=0.0, offset_seconds=0.0, drift_ppm=0.0, gain_db=0.0, polarity=1,
        confidence=confidence, null_depth_db=0.0, acapella_sample_rate=acapella.sample_rate,
        mix_sample_rate=mix.sample_rate, matched=False,
        message=f"no match: {why}; nothing was changed",
        band_null_depth_db={name: 0.0 for name, _, _ in BANDS},
        local_fit=LocalFit.empty(LOCAL_WINDOW_SECONDS),
    )


def _validate(audio: Audio, what: str) -> None:
    if audio.frames < int(0.5 * audio.sample_rate):
        raise InputError(f"the {what} is too short to align ({audio.duration_seconds:.2f} s; at least 0.5 s)", audio.path)
    if not max(float(audio.samples.max()), -float(audio.samples.min())) > 1e-6:
        raise InputError(f"the {what} is silent (nothing to align)", audio.path)


def align_acapella(
    mix: Audio,
    acapella: Audio,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> AlignmentResult:
    """Find where the acapella sits in the mix (offset, drift, gain, polarity) and null-test it.

    Args:
        mix: the full mix, any rate and channel count.
        acapella: the acapella, any rate and channel count (brought to the mix's rate and
            channels: same count kept, mono copied, anything else downmixed).
        progress: optional ``progress(fraction, message)``.
        cancel: optional ``cancel() -> bool``, checked between stages (raises ``Cancelled``).

    Returns:
        :class:`AlignmentResult`; ``matched`` is False (and the parameters neutral) when the
        acapella is not from this song. ``result.renderer`` holds an
        :class:`AlignmentRenderer` ready for nudges (None without a match).

    Raises:
        InputError: an input is silent or shorter than 0.5 s.
        Cancelled: ``cancel()`` returned True.
    """
    _validate(mix, "mix")
    _validate(acapella, "acapella")
    rate = mix.sample_rate
    fd = ANALYSIS_RATE_HZ
    ratio = rate / fd  # mix frames per analysis frame
    _check(progress, cancel, 0.0, "Decimating")
    m = mix.mono()
    a = acapella.mono()
    md = soxr_resample(m, float(rate), fd, "HQ")
    ad = soxr_resample(a, float(acapella.sample_rate), fd, "HQ")

    _check(progress, cancel, 0.15, "Searching the offset over the whole song")
    det = _detect(md, ad, fd)

    _check(progress, cancel, 0.3, "Measuring local offsets and drift")
    coarse = _coarse_line(md, ad, fd, det) if det.z > _Z_HOPELESS else None
    confidence = _confidence(coarse.z if coarse else det.z, coarse.agree if coarse else 0.0)
    if coarse is None or confidence < MATCH_CONFIDENCE:
        return _no_match(mix, acapella, confidence, "the acapella was not found in this mix "
                         "(no clear, consistent correlation peak)")
    offset, drift = coarse.offset * ratio, coarse.drift

    _check(progress, cancel, 0.45, "Refining at full rate")
    if acapella.sample_rate != rate or drift != 0.0:
        b = soxr_resample(a, float(acapella.sample_rate), rate * (1.0 + drift), "VHQ")
    else:
        b = a
    line, fine_agree = _fine_line(m, b, rate, offset, ratio)
    confidence *= _sigmoid((fine_agree - _FINE_AGREE_MID) / _FINE_AGREE_SCALE)
    if confidence < MATCH_CONFIDENCE:
        return _no_match(mix, acapella, confidence, "the acapella was not found in this mix "
                         "(the full-rate windows do not line up)")
    if line is not None:
        offset += line.offset
        eps = line.slope if line.slope_std < 20e-6 else 0.0
        new_drift = (1.0 + drift) * (1.0 + eps) - 1.0
        slope_std = line.slope_std
    else:
        new_drift, slope_std = drift, math.inf
    # exactly zero when the fine line (if precise enough to judge) finds it insignificant (a
    # digital copy has none; real clocks differ by ppm), or when it would not move the last
    # frame by 1/1000 of a frame
    judged = slope_std < 5e-6
    if (judged and abs(new_drift) < max(3.0 * slope_std, _DRIFT_FLOOR)) or abs(new_drift) * len(b) < 1e-3:
        new_drift = 0.0
    drift_ppm = new_drift * 1e6

    _check(progress, cancel, 0.6, "Least-squares offset and gain")
    renderer = AlignmentRenderer(mix, acapella)
    spectra = renderer.prepare(AlignmentParams(offset, drift_ppm))
    offset = renderer.refine_offset(offset, drift_ppm)
    best = renderer.null(AlignmentParams(offset, drift_ppm), bands=True)
    if not math.isfinite(best.best_gain_db) or renderer.region[1] <= renderer.region[0]:
        return _no_match(mix, acapella, confidence, "the acapella does not overlap the mix")
    polarity = best.best_polarity
    params = AlignmentParams(offset, drift_ppm, best.best_gain_db, polarity)
    renderer.params = params

    _check(progress, cancel, 0.8, "Null test")
    aligned = renderer.render_region(params, spectra)
    del spectra
    nt = _null_test(mix, aligned, renderer, params)
    _check(progress, cancel, 0.9, "Local fit")
    local = _local_fit(mix, aligned, renderer, params, md, ad, nt.window_null_depth_db)
    message = (f"aligned: offset {offset / rate:+.4f} s, drift {drift_ppm:+.1f} ppm, "
               f"gain {params.gain_db:+.2f} dB{', polarity inverted' if polarity < 0 else ''}, "
               f"null {nt.null_depth_db:.1f} dB")
    _check(progress, cancel, 1.0, "Aligned")
    return AlignmentResult(
        offset_samples=float(offset), offset_seconds=float(offset) / rate, drift_ppm=float(drift_ppm),
        gain_db=float(params.gain_db), polarity=polarity, confidence=confidence,
        null_depth_db=float(nt.null_depth_db), acapella_sample_rate=int(acapella.sample_rate),
        mix_sample_rate=int(rate), matched=True, message=message,
        band_null_depth_db=nt.band_null_depth_db, local_fit=local, renderer=renderer,
    )


def _null_test(mix: Audio, aligned: np.ndarray, renderer: AlignmentRenderer, params: AlignmentParams) -> NullTest:
    """Null test over the covered region: overall and per window in the time domain, per band
    from the renderer's cross-spectrum (the same numbers its fast meter shows)."""
    rate = mix.sample_rate
    r0, r1 = renderer.region
    seg_m = mix.samples[:, r0:r1]
    res = seg_m - aligned
    wf = max(1, int(round(LOCAL_WINDOW_SECONDS * rate)))
    mix_windows = window_energies(seg_m, wf)
    res_windows = window_energies(res, wf)
    fast = renderer.null(params, bands=True)
    mix_bands = renderer.mix_band_energy
    res_bands = {name: mix_bands[name] * 10 ** (db / 10) if math.isfinite(db) else 0.0
                 for name, db in fast.band_null_depth_db.items()}
    return null_test_from_energies(
        float(mix_windows.sum()), float(res_windows.sum()), mix_bands, res_bands,
        mix_windows, res_windows, r0 / rate, LOCAL_WINDOW_SECONDS,
    )


def _local_fit(
    mix: Audio,
    aligned: np.ndarray,
    renderer: AlignmentRenderer,
    params: AlignmentParams,
    md: np.ndarray,
    ad: np.ndarray,
    window_null_db: np.ndarray,
) -> LocalFit:
    """Per 1 s window of the covered region: offset, least-squares gain, and the null depth
    already measured.

    The offset is measured at the analysis rate: the acapella (``ad``, drift-corrected there)
    window that the global parameters put in each mix window is GCC-PHAT-correlated with the
    mix, searched ±2 s; each window's correlation is summed with half of its neighbours' so one
    note's pitch-period sidelobes do not win, a peak near the global lag is preferred unless a
    far one is clearly stronger (an edit), and Newton's method refines it: good to about half a
    mix frame where the vocal is clear.
    """
    rate = mix.sample_rate
    r0, r1 = renderer.region
    wf = max(1, int(round(LOCAL_WINDOW_SECONDS * rate)))
    n_win = len(window_null_db)
    centres = (r0 + wf * (np.arange(n_win) + 0.5)) / rate
    g = params.linear_gain
    seg_m = mix.samples[:, r0:r1]
    num = window_energies(seg_m, wf, aligned) / g
    den = window_energies(aligned, wf) / (g * g)
    silent = den <= 1e-6 * max(float(den.max()), 1e-30)
    gain_db = np.full(n_win, np.nan)
    gain_db[~silent] = 20.0 * np.log10(np.maximum(np.abs(num[~silent] / den[~silent]), 1e-30))

    fd = ANALYSIS_RATE_HZ
    ratio = rate / fd
    bd = apply_drift(ad, params.drift_ppm, quality="HQ") * np.float32(params.polarity)  # peaks > 0
    o_d = params.offset_samples / ratio  # analysis frame where bd frame 0 plays
    wd = max(16, int(round(LOCAL_WINDOW_SECONDS * fd)))
    radius = int(round(_LOCAL_SEARCH_SECONDS * fd))
    # bd frames of each mix window's start: (mix analysis frame - o_d), split into integer + frac
    pos_d = (r0 + wf * np.arange(n_win)) / ratio - o_d
    starts = np.floor(pos_d).astype(np.int64)
    centre = int(math.floor(o_d))
    band = (_PHAT_LOW_HZ, _PHAT_HIGH_HZ)
    c, _, _ = _window_correlations(md, bd, starts, wd, centre, radius, fd, band)
    if n_win > 2:  # plus half the neighbours': the shared lag adds up, note sidelobes do not
        c = c.copy()
        c[1:-1] += 0.5 * (c[:-2] + c[2:])
    pos, val, z = _peaks(c, 1.0)
    expected = radius + (o_d - centre)  # index of the global model's lag
    near = np.arange(int(expected) - 3, int(expected) + 5)
    near = near[(near > 0) & (near < c.shape[1] - 1)]
    i_near = near[np.argmax(c[:, near], axis=1)]
    v_near = c[np.arange(n_win), i_near]
    coarse = np.where(v_near >= 0.7 * val, i_near, np.round(pos)).astype(np.int64) - radius
    fine_r = 8  # refine each window on its own, ±8 frames around its peak
    _, spec, n = _window_correlations(md, bd, starts, wd, centre + coarse, fine_r, fd, band)
    used = np.flatnonzero(_band(spec.shape[1], n, fd, *band))
    lag, _ = _newton_lags(spec, n, used, np.full(n_win, fine_r))
    # bd frame j plays at mix analysis frame centre + j + lag; the model says o_d + j
    lag_full = (centre + coarse + lag - fine_r - o_d) * ratio
    offset = np.where(silent | (z < 4.0) | (val <= 0), np.nan, params.offset_samples + lag_full)
    return LocalFit(centres, offset, gain_db, np.asarray(window_null_db, dtype=np.float64),
                    LOCAL_WINDOW_SECONDS)

