"""Onsets: detection from our STFT, and one-to-one matching within ±50 ms.

Detection follows librosa's defaults (``onset_strength`` + ``onset_detect``) on the analysis
STFT: log-power mel spectrogram (128 bands, dB with an 80 dB floor below its maximum), spectral
flux (positive first difference, mean over bands), the envelope normalised to 0–1, then peak
picking with a 30 ms local maximum, a 100 ms + 100 ms moving-average threshold plus 0.07, and a
30 ms minimum gap. Multichannel signals use the mel power averaged over channels.

Matching follows mir_eval.onset.f_measure: candidate pairs are those within the window (found
with sorted searches exactly as mir_eval does), each reference and each estimate is used at
most once, and the number of matches is a maximum bipartite matching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.ndimage
import scipy.sparse
from scipy.sparse.csgraph import maximum_bipartite_matching

ONSET_WINDOW_SECONDS = 0.05
N_MELS = 128
TOP_DB = 80.0


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-style mel filterbank ``(n_mels, n_fft // 2 + 1)`` (librosa's default)."""
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


def onset_envelope(mel_power: np.ndarray, lag: int = 1, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """Spectral-flux onset strength per STFT frame.

    Args:
        mel_power: ``(n_mels, frames)`` mel power spectrogram.
        lag: difference lag in frames.
        n_fft, hop: the STFT's, to undo the centring delay as librosa does.

    Returns:
        float64 ``(frames,)``.
    """
    frames = mel_power.shape[-1]
    if frames == 0:
        return np.zeros(0)
    db = 10.0 * np.log10(np.maximum(mel_power.astype(np.float64), 1e-10))
    db = np.maximum(db, db.max() - TOP_DB)
    flux = np.maximum(0.0, db[:, lag:] - db[:, :-lag]).mean(axis=0) if frames > lag else np.zeros(0)
    pad = lag + n_fft // (2 * hop)
    env = np.concatenate([np.zeros(pad), flux])[:frames]
    if env.shape[0] < frames:
        env = np.concatenate([env, np.zeros(frames - env.shape[0])])
    return env


def peak_pick(
    x: np.ndarray, pre_max: int, post_max: int, pre_avg: int, post_avg: int, delta: float, wait: int
) -> np.ndarray:
    """Indices of peaks of ``x``: local maxima above a moving average + ``delta``, ``wait`` apart."""
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=int)
    max_len = pre_max + post_max
    max_origin = int(np.ceil(0.5 * (pre_max - post_max)))
    mov_max = scipy.ndimage.maximum_filter1d(x, max_len, mode="constant", origin=max_origin, cval=x.min())
    # Moving mean over x[i - pre_avg : i + post_avg], truncated at the edges.
    cums = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(n)
    lo = np.clip(idx - pre_avg, 0, n)
    hi = np.clip(idx + post_avg, 0, n)
    mov_avg = (cums[hi] - cums[lo]) / np.maximum(hi - lo, 1)
    detections = x * (x == mov_max)
    detections = detections * (detections >= mov_avg + delta)
    peaks: list[int] = []
    last = -math.inf
    for i in np.flatnonzero(detections):
        if i > last + wait:
            peaks.append(int(i))
            last = float(i)
    return np.asarray(peaks, dtype=int)


def detect_onsets(envelope: np.ndarray, sample_rate: int, hop: int) -> np.ndarray:
    """Onset times (seconds) from an onset envelope, with librosa's default peak picking."""
    env = np.asarray(envelope, dtype=np.float64)
    if env.size == 0 or not np.all(np.isfinite(env)):
        return np.zeros(0)
    env = env - env.min()
    top = env.max()
    if top <= 0:
        return np.zeros(0)
    env = env / top
    frames_per_s = sample_rate / hop
    peaks = peak_pick(
        env,
        pre_max=int(np.ceil(0.03 * sample_rate // hop)),
        post_max=int(np.ceil(0.00 * sample_rate // hop + 1)),
        pre_avg=int(np.ceil(0.10 * sample_rate // hop)),
        post_avg=int(np.ceil(0.10 * sample_rate // hop + 1)),
        delta=0.07,
        wait=int(np.ceil(0.03 * sample_rate // hop)),
    )
    return peaks / frames_per_s


def match_events(reference: np.ndarray, estimated: np.ndarray, window: float) -> list[tuple[int, int]]:
    """Maximum one-to-one matching of events within ``window`` (mir_eval.util.match_events).

    Returns:
        ``[(reference index, estimate index), ...]`` sorted by reference index.
    """
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimated, dtype=np.float64)
    if ref.size == 0 or est.size == 0:
        return []
    order = np.argsort(ref, kind="stable")
    ref_sorted = ref[order]
    left = np.searchsorted(ref_sorted, est - window, side="left")
    right = np.searchsorted(ref_sorted, est + window, side="right")
    counts = right - left
    if counts.sum() == 0:
        return []
    est_idx = np.repeat(np.arange(est.size), counts)
    ref_idx = order[np.concatenate([np.arange(a, b) for a, b in zip(left, right, strict=True) if b > a])]
    graph = scipy.sparse.csr_matrix(
        (np.ones(est_idx.size), (ref_idx, est_idx)), shape=(ref.size, est.size)
    )
    match = maximum_bipartite_matching(graph, perm_type="column")  # est index per reference
    return [(int(r), int(e)) for r, e in enumerate(match) if e >= 0]


@dataclass
class OnsetScores:
    """Onset comparison. Times in seconds; ``matched`` counts one-to-one pairs."""

    reference_count: int
    estimate_count: int
    matched: int
    precision: float
    recall: float
    f1: float
    window_seconds: float


def f_measure(
    reference: np.ndarray, estimated: np.ndarray, window: float = ONSET_WINDOW_SECONDS
) -> OnsetScores:
    """Precision, recall and F1 of estimated onsets (mir_eval.onset.f_measure semantics).

    Empty reference or estimate: all three are 0.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    est = np.asarray(estimated, dtype=np.float64).reshape(-1)
    if ref.size == 0 or est.size == 0:
        return OnsetScores(ref.size, est.size, 0, 0.0, 0.0, 0.0, window)
    matched = len(match_events(ref, est, window))
    precision = matched / est.size
    recall = matched / ref.size
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return OnsetScores(ref.size, est.size, matched, precision, recall, f1, window)
