"""Validation during training: the real inference path on held-out songs, scored by plain SDR.

``plain SDR`` = ``10·log10(Σ s² / Σ (s − ŝ)²)`` over the whole song and both channels — no
distortion filter, no permutation (it is *not* BSS Eval; the benchmark ``bench/bench_unet.py``
reports BSS Eval as well). Cheap enough to run every few minutes of training.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from engine.audio import Audio
from engine.models.unet import SpectrogramUNet
from engine.spectral import StftConfig, istft, stft
from engine.training.bank import Track


def plain_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """``10·log10(‖s‖² / ‖s − ŝ‖²)`` in dB (NaN when the reference is silent)."""
    ref = reference.astype(np.float64)
    err = ref - estimate.astype(np.float64)
    num = float(np.sum(ref * ref))
    if num < 1e-12:
        return float("nan")
    return 10.0 * math.log10(num / max(float(np.sum(err * err)), 1e-20))


def track_references(track: Track, stems: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(mix (C, N), references (S, C, N))`` of a track's natural mix (no augmentation)."""
    refs = np.stack([track.stem(s) for s in stems])
    return refs.sum(0), refs


def validate(
    model: SpectrogramUNet,
    tracks: list[Track],
    sample_rate: int,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Separate each track's natural mix with the product's inference path; plain SDR per stem.

    Returns:
        ``{"sdr": {stem: mean dB over tracks}, "sdr_median": {...}, "per_track": {name: {stem: dB}}}``.
    """
    from engine.separators.unet import InferenceOptions, separate_with_model

    dev = torch.device(device)
    was_training = model.training
    fused = model.fused_for_inference().to(dev)
    stems = model.config.stems
    per_track: dict[str, dict[str, float]] = {}
    try:
        for track in tracks:
            mix, refs = track_references(track, stems)
            result = separate_with_model(fused, Audio(mix, sample_rate),
                                         InferenceOptions(device=dev, return_masks=False, chunk_seconds=60.0))
            per_track[track.name] = {s: plain_sdr_db(refs[j], result.stems[s].samples) for j, s in enumerate(stems)}
    finally:
        model.train(was_training)
    return summarise(per_track, stems)


def summarise(per_track: dict[str, dict[str, float]], stems: tuple[str, ...]) -> dict[str, Any]:
    def agg(fn: Any) -> dict[str, float]:
        out = {}
        for s in stems:
            vals = [v[s] for v in per_track.values() if np.isfinite(v[s])]
            out[s] = round(float(fn(vals)), 3) if vals else float("nan")
        return out

    return {"sdr": agg(np.mean), "sdr_median": agg(np.median), "per_track": per_track}


def oracle_irm(tracks: list[Track], stems: tuple[str, ...], n_fft: int) -> dict[str, Any]:
    """Ideal ratio masks (power ratio, ``|S_j|² / Σ_k |S_k|²``) at an STFT of ``n_fft``: the best a
    mask-based separator at that resolution can do (an upper reference, not a baseline)."""
    cfg = StftConfig(n_fft=n_fft)
    per_track: dict[str, dict[str, float]] = {}
    for track in tracks:
        mix, refs = track_references(track, stems)
        spec = stft(torch.from_numpy(refs), cfg)  # (S, C, F, T)
        power = spec.abs() ** 2
        masks = power / (power.sum(0, keepdim=True) + 1e-20)
        x = stft(torch.from_numpy(mix), cfg)
        est = istft(masks * x.unsqueeze(0), mix.shape[-1], cfg).numpy()
        per_track[track.name] = {s: plain_sdr_db(refs[j], est[j]) for j, s in enumerate(stems)}
    return summarise(per_track, stems)
