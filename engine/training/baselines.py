"""Reference separators the U-Net is measured against (evaluation only, not product engines).

* :func:`oracle_irm` — ideal ratio masks from the true stems (power ratio) at a given STFT: the
  ceiling for any mask at that resolution; it cheats (it needs the answer).
* :func:`hpss_separate` — oracle-free, librosa's median-filtering HPSS in two stages
  (FitzGerald's vocal separation): a long window splits sustained harmonic instruments from the
  rest; a short window on that rest splits the voice (harmonic at short scales) from the drums.
  4 stems: drums = stage-2 percussive, vocals = stage-2 harmonic, bass = stage-1 harmonic below
  200 Hz, other = the rest of stage 1's harmonic part.
* :func:`repet_sim_separate` — oracle-free REPET-SIM (Rafii & Pardo) as in librosa's example:
  the repeating accompaniment is the median of each frame's nearest neighbours by cosine
  similarity (``librosa.decompose.nn_filter``), soft masks with margins 2 (accompaniment) and
  10 (vocals). Vocals/instrumental only; O(frames²) memory, so for excerpts up to a few minutes.

All take float32 ``(channels, samples)`` and return ``{stem: (channels, samples)}`` whose stems
sum to the mix (the last stem is the mix minus the others).
"""

from __future__ import annotations

import numpy as np
import torch

from engine.spectral import StftConfig, istft, stft


def _n_fft_for(rate: int, seconds: float) -> int:
    n = int(round(rate * seconds))
    return max(64, 1 << int(round(np.log2(n))))


def _apply(mix: np.ndarray, masks: dict[str, np.ndarray], cfg: StftConfig, order: tuple[str, ...]) -> dict[str, np.ndarray]:
    x = stft(torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32)), cfg)
    out: dict[str, np.ndarray] = {}
    for name in order[:-1]:
        m = torch.from_numpy(np.asarray(masks[name], dtype=np.float32))
        out[name] = istft(m * x, mix.shape[-1], cfg).numpy()
    out[order[-1]] = mix - np.sum([out[n] for n in order[:-1]], axis=0)
    return out


def oracle_irm(mix: np.ndarray, references: dict[str, np.ndarray], n_fft: int) -> dict[str, np.ndarray]:
    """Ideal power-ratio masks from the true stems, applied to the mix at ``n_fft``."""
    cfg = StftConfig(n_fft=n_fft)
    names = tuple(references)
    power = {n: stft(torch.from_numpy(np.ascontiguousarray(references[n], dtype=np.float32)), cfg).abs() ** 2
             for n in names}
    total = sum(power.values())
    masks = {n: (power[n] / (total + 1e-20)).numpy() for n in names}
    return _apply(mix, masks, cfg, names)


def hpss_separate(mix: np.ndarray, rate: int, stems: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Two-stage HPSS (see the module docstring) for ``("vocals", "instrumental")`` or 4 stems."""
    import librosa

    long_cfg = StftConfig(n_fft=_n_fft_for(rate, 0.186))
    short_cfg = StftConfig(n_fft=_n_fft_for(rate, 0.023))
    x = stft(torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32)), long_cfg).numpy()
    mag = np.abs(x).mean(axis=0)
    mh, mp = librosa.decompose.hpss(mag, mask=True, margin=1.0)
    harmonic = istft(torch.from_numpy(mh[None] * x), mix.shape[-1], long_cfg).numpy()
    rest = mix - harmonic
    y = stft(torch.from_numpy(np.ascontiguousarray(rest, dtype=np.float32)), short_cfg).numpy()
    mag2 = np.abs(y).mean(axis=0)
    vh, _ = librosa.decompose.hpss(mag2, mask=True, margin=1.0)
    vocals = istft(torch.from_numpy(vh[None] * y), mix.shape[-1], short_cfg).numpy()
    if tuple(stems) == ("vocals", "instrumental"):
        return {"vocals": vocals, "instrumental": mix - vocals}
    drums = rest - vocals
    freqs = long_cfg.frequencies_hz(rate)
    low = (freqs < 200.0).astype(np.float32)[None, :, None]
    bass = istft(torch.from_numpy(low * mh[None] * x), mix.shape[-1], long_cfg).numpy()
    out = {"drums": drums, "bass": bass, "other": harmonic - bass, "vocals": vocals}
    return {s: out[s] for s in stems}


def repet_sim_separate(mix: np.ndarray, rate: int) -> dict[str, np.ndarray]:
    """REPET-SIM vocals/instrumental (librosa's nn_filter recipe)."""
    import librosa

    cfg = StftConfig(n_fft=_n_fft_for(rate, 0.046))
    x = stft(torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32)), cfg).numpy()
    s_full = np.abs(x).mean(axis=0)
    width = int(librosa.time_to_frames(2, sr=rate, hop_length=cfg.hop_length))
    width = max(1, min(width, (s_full.shape[1] - 1) // 2 - 1))  # librosa needs width < (T − 1) // 2
    s_filter = librosa.decompose.nn_filter(s_full, aggregate=np.median, metric="cosine", width=width)
    s_filter = np.minimum(s_full, s_filter)
    mask_v = librosa.util.softmask(s_full - s_filter, 10 * s_filter, power=2)
    return _apply(mix, {"vocals": mask_v[None]}, cfg, ("vocals", "instrumental"))
