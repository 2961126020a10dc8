"""The one STFT/ISTFT convention, the report's frequency bands, and display spectrograms.

Convention (used by every engine, metric and view):
    periodic Hann window of ``n_fft`` samples, hop ``n_fft // 4``, ``center=True`` with reflect
    padding, one-sided spectrum of ``n_fft // 2 + 1`` bins, no normalisation. The ISTFT divides
    by the summed squared window, so ``istft(stft(x)) == x`` to float precision.
Defaults: ``n_fft = 2048`` (46 ms at 44.1 kHz, the seeds' window), hop 512.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: The seeds' analysis bands: (name, low Hz, high Hz).
BANDS: tuple[tuple[str, float, float], ...] = (
    ("Sub-bass", 20.0, 60.0),
    ("Bass", 60.0, 250.0),
    ("Low-mid", 250.0, 500.0),
    ("Mid", 500.0, 2000.0),
    ("High", 2000.0, 8000.0),
)


@dataclass(frozen=True)
class StftConfig:
    """STFT parameters. ``hop`` defaults to a quarter of ``n_fft``."""

    n_fft: int = 2048
    hop: int | None = None

    @property
    def hop_length(self) -> int:
        return self.hop if self.hop is not None else self.n_fft // 4

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def frequencies_hz(self, sample_rate: int) -> np.ndarray:
        """Centre frequency of each bin, ``(bins,)``."""
        return np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)

    def frames_for(self, samples: int) -> int:
        """Number of STFT frames for a signal of ``samples`` samples."""
        return samples // self.hop_length + 1


DEFAULT_STFT = StftConfig()

_WINDOWS: dict[tuple[int, str, torch.dtype], torch.Tensor] = {}


def _window(n_fft: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    key = (n_fft, str(device), dtype)
    if key not in _WINDOWS:
        _WINDOWS[key] = torch.hann_window(n_fft, periodic=True, device=device, dtype=dtype)
    return _WINDOWS[key]


def _as_tensor(x: np.ndarray | torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    if device is not None:
        t = t.to(device)
    return t


def stft(
    x: np.ndarray | torch.Tensor,
    config: StftConfig = DEFAULT_STFT,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Complex STFT.

    Args:
        x: real signal ``(..., samples)`` (numpy or torch, float32/float64).
        config: window and hop.
        device: where to compute (defaults to the tensor's device / CPU).

    Returns:
        complex tensor ``(..., bins, frames)``.
    """
    t = _as_tensor(x, device)
    if not t.is_floating_point():
        t = t.float()
    lead = t.shape[:-1]
    flat = t.reshape(-1, t.shape[-1])
    spec = torch.stft(
        flat, n_fft=config.n_fft, hop_length=config.hop_length,
        window=_window(config.n_fft, flat.device, flat.dtype), center=True,
        pad_mode="reflect" if flat.shape[-1] > config.n_fft // 2 else "constant",
        return_complex=True,
    )
    return spec.reshape(*lead, spec.shape[-2], spec.shape[-1])


def istft(
    spec: torch.Tensor,
    length: int,
    config: StftConfig = DEFAULT_STFT,
) -> torch.Tensor:
    """Inverse of :func:`stft`.

    Args:
        spec: complex tensor ``(..., bins, frames)``.
        length: number of output samples.
        config: the same config that made ``spec``.

    Returns:
        real tensor ``(..., length)``.
    """
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, spec.shape[-2], spec.shape[-1])
    real_dtype = torch.float64 if flat.dtype == torch.complex128 else torch.float32
    out = torch.istft(
        flat, n_fft=config.n_fft, hop_length=config.hop_length,
        window=_window(config.n_fft, flat.device, real_dtype), center=True, length=length,
    )
    return out.reshape(*lead, length)


def band_masks(frequencies_hz: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean bin selector per band of :data:`BANDS` (low inclusive, high exclusive)."""
    return {name: (frequencies_hz >= lo) & (frequencies_hz < hi) for name, lo, hi in BANDS}


# --------------------------------------------------------------------------------------------
# Display spectrograms: computed for the visible range only, one STFT frame per screen column,
# so any zoom of any length costs the same (a 1-hour file never gets a full-resolution STFT).
# --------------------------------------------------------------------------------------------


def spectrogram_columns(
    samples: np.ndarray,
    start: float,
    stop: float,
    columns: int,
    n_fft: int = 2048,
) -> np.ndarray:
    """Power spectrogram (dB) of ``samples[start:stop]`` sampled at ``columns`` frame centres.

    Args:
        samples: float32 ``(channels, frames)``; channels are averaged.
        start, stop: visible range in sample frames (may extend past the signal: zeros).
        columns: number of output columns (frame centres evenly spaced over the range).
        n_fft: window length.

    Returns:
        float32 ``(columns, n_fft // 2 + 1)`` in dB (power re full scale), column-major time.
    """
    columns = max(int(columns), 1)
    total = samples.shape[-1]
    step = (stop - start) / columns
    centres = (start + (np.arange(columns) + 0.5) * step).astype(np.int64)
    half = n_fft // 2
    offsets = np.arange(-half, half, dtype=np.int64)
    idx = centres[:, None] + offsets[None, :]  # (columns, n_fft)
    valid = (idx >= 0) & (idx < total)
    idx_clipped = np.clip(idx, 0, max(total - 1, 0))
    # Gather the frames first, then average channels: never a whole-signal temporary.
    chans = samples.reshape(-1, total)
    frames = np.zeros(idx.shape, dtype=np.float32)
    for ch in chans:
        frames += np.where(valid, ch[idx_clipped], 0.0).astype(np.float32)
    frames /= len(chans)
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    spec = np.fft.rfft(frames * window, axis=1)
    power = (spec.real**2 + spec.imag**2) * (4.0 / (window.sum() ** 2))
    return (10.0 * np.log10(np.maximum(power, 1e-12))).astype(np.float32)


def log_frequency_rows(
    spectrogram_db: np.ndarray,
    sample_rate: int,
    rows: int = 256,
    f_min_hz: float = 30.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a ``(columns, bins)`` spectrogram onto a log-frequency axis.

    Returns:
        ``(image (columns, rows), row_frequencies_hz (rows,))``.
    """
    bins = spectrogram_db.shape[1]
    f_max = sample_rate / 2.0
    row_hz = np.geomspace(f_min_hz, f_max, rows)
    bin_pos = row_hz / f_max * (bins - 1)
    lo = np.floor(bin_pos).astype(np.int64).clip(0, bins - 1)
    hi = (lo + 1).clip(0, bins - 1)
    frac = (bin_pos - lo).astype(np.float32)
    image = spectrogram_db[:, lo] * (1.0 - frac) + spectrogram_db[:, hi] * frac
    return image.astype(np.float32), row_hz
