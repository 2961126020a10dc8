"""Separation masks reduced for display (the lanes' mask overlay).

A separator's mask is ``(channels, bins, frames)`` at its STFT's resolution — for a 4-minute
stereo song at 44.1 kHz with the default STFT that is 2 x 1025 x 20 700 values. The overlay
shows the whole song as one image, so it is reduced once: channels averaged, frames
block-averaged down to at most ``max_columns``, bins onto the view's frequency rows (linear:
block-averaged; log: interpolated like :func:`engine.spectral.log_frequency_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.spectral import DEFAULT_STFT, StftConfig

#: Most overlay columns for a whole song (an overlay is a hint, not a measurement).
MAX_MASK_COLUMNS = 4096
LOG_F_MIN_HZ = 30.0


@dataclass
class MaskImage:
    """A display mask: ``image`` float32 ``(columns, rows)`` in [0, 1] (column = time).

    ``start_seconds``/``stop_seconds`` is the time span of the columns on the track's own
    clock; ``y_low``/``y_high`` the frequency extent in Hz (or log10 Hz when
    ``log_frequency``).
    """

    image: np.ndarray
    start_seconds: float
    stop_seconds: float
    y_low: float
    y_high: float
    log_frequency: bool


def _block_mean(values: np.ndarray, groups: int, axis: int) -> np.ndarray:
    """Average ``values`` along ``axis`` into ``groups`` nearly equal consecutive groups."""
    n = values.shape[axis]
    groups = max(1, min(groups, n))
    starts = (np.arange(groups) * n) // groups
    counts = np.diff(np.r_[starts, n]).astype(np.float32)
    sums = np.add.reduceat(values, starts, axis=axis)
    shape = [1] * values.ndim
    shape[axis] = groups
    return sums / counts.reshape(shape)


def mask_display_image(
    mask: np.ndarray,
    sample_rate: int,
    stft: StftConfig = DEFAULT_STFT,
    max_columns: int = MAX_MASK_COLUMNS,
    rows: int = 256,
    log_frequency: bool = False,
) -> MaskImage:
    """Reduce a separator's mask to a display image.

    Args:
        mask: ``(channels, bins, frames)`` or ``(bins, frames)`` in [0, 1], ``bins = n_fft//2+1``.
        sample_rate: the track's rate (Hz).
        stft: the STFT the mask lives in (frame ``k`` is centred at ``k * hop`` samples).
        max_columns: most time columns.
        rows: frequency rows (linear: at most ``bins - 1``, block-averaged; log: exactly).
        log_frequency: log-frequency rows from :data:`LOG_F_MIN_HZ` to Nyquist.

    Returns:
        :class:`MaskImage` with values clipped to [0, 1].
    """
    m = _mono(mask)
    bins, frames = m.shape
    hop = stft.hop_length
    timed = _block_mean(m, max_columns, axis=1)  # (bins, columns)
    # column c spans frames [c*frames/columns, (c+1)*frames/columns): frame k covers
    # [(k - 1/2) hop, (k + 1/2) hop) samples
    start_s = -0.5 * hop / sample_rate
    stop_s = (frames - 0.5) * hop / sample_rate
    bin_hz = sample_rate / (2.0 * (bins - 1))
    image = _to_rows(timed, sample_rate, rows, log_frequency)
    if log_frequency:
        y_low, y_high = float(np.log10(LOG_F_MIN_HZ)), float(np.log10(sample_rate / 2.0))
    else:
        y_low, y_high = -0.5 * bin_hz, (bins - 1.5) * bin_hz
    out = np.clip(np.ascontiguousarray(image.T, dtype=np.float32), 0.0, 1.0)
    return MaskImage(out, start_s, stop_s, y_low, y_high, log_frequency)


def _mono(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask, dtype=np.float32)
    if m.ndim == 3:
        m = m.mean(axis=0)
    if m.ndim != 2 or m.shape[0] < 2 or m.shape[1] < 1:
        raise ValueError(f"mask must be (bins, frames) or (channels, bins, frames), got {np.shape(mask)}")
    return m


def _to_rows(timed: np.ndarray, sample_rate: int, rows: int, log_frequency: bool) -> np.ndarray:
    """Map ``(bins, columns)`` onto the display's frequency rows: ``(rows, columns)``."""
    bins = timed.shape[0]
    if log_frequency:
        f_max = sample_rate / 2.0
        row_hz = np.geomspace(LOG_F_MIN_HZ, f_max, max(int(rows), 2))
        pos = row_hz / f_max * (bins - 1)
        lo = np.floor(pos).astype(np.int64).clip(0, bins - 1)
        hi = (lo + 1).clip(0, bins - 1)
        frac = (pos - lo).astype(np.float32)[:, None]
        return timed[lo] * (1.0 - frac) + timed[hi] * frac
    keep = max(1, min(int(rows), bins - 1))
    return _block_mean(timed[: bins - 1], keep, axis=0)  # Nyquist bin dropped, as the view


def update_mask_image(
    image: MaskImage, mask: np.ndarray, frame0: int, frame1: int, sample_rate: int,
) -> tuple[int, int]:
    """Recompute, in place, the columns of ``image`` that show frames ``[frame0, frame1)``.

    ``image`` must have been made by :func:`mask_display_image` from a mask of this shape (same
    ``max_columns``: the column count is read from the image). Painting calls this for every
    pointer move, so it touches only the columns under the stroke.

    Returns:
        the column range ``(c0, c1)`` updated.
    """
    m = _mono(mask)
    frames = m.shape[1]
    columns, rows = image.image.shape
    starts = (np.arange(columns) * frames) // columns
    c0 = int(np.searchsorted(starts, max(frame0, 0), side="right") - 1)
    c1 = int(np.searchsorted(starts, min(frame1, frames) - 1, side="right"))
    c0, c1 = max(c0, 0), max(min(c1, columns), c0 + 1)
    stop = starts[c1] if c1 < columns else frames
    part = m[:, starts[c0] : stop]
    sub_starts = starts[c0:c1] - starts[c0]
    counts = np.diff(np.r_[sub_starts, part.shape[1]]).astype(np.float32)
    timed = np.add.reduceat(part, sub_starts, axis=1) / counts[None, :]
    img = _to_rows(timed, sample_rate, rows, image.log_frequency)
    image.image[c0:c1] = np.clip(img.T, 0.0, 1.0)
    return c0, c1
