"""Waveform overviews: a min/max peak pyramid per track, so a view of any zoom costs the same.

The pyramid holds, per channel, the minimum and maximum of every block of 16, 256, 4096 and
65536 samples (each level reduced from the one below with ``np.minimum.reduceat``, built once).
:meth:`PeakPyramid.envelope` answers "min and max per screen pixel" for any visible range by
reducing the coarsest level whose block still fits in one pixel, and falls back to the raw
samples when zoomed in closer than 16 samples per pixel. A 1-hour stereo file at 44.1 kHz costs
1/8 of its float32 size in peaks (the finest level dominates).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.errors import Cancelled

#: Block sizes (samples) of the pyramid's levels, finest first. Each is 16x the previous.
BLOCK_SIZES: tuple[int, ...] = (16, 256, 4096, 65536)

# Raw samples are reduced in chunks of this many frames (a multiple of the finest block), so
# the build reports progress and can be cancelled without a full-size temporary.
_CHUNK_FRAMES = 1 << 21

ProgressFn = Callable[[float, str], None]


class PeakPyramid:
    """Min/max peaks of one track at several block sizes.

    Attributes:
        samples: the track's float32 samples ``(channels, frames)`` (referenced, never copied).
        levels: per entry of :data:`BLOCK_SIZES`, ``(mins, maxs)`` float32 arrays of shape
            ``(channels, ceil(frames / block))``; the last block of a level may be partial.
    """

    def __init__(self, samples: np.ndarray, levels: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.samples = samples
        self.levels = levels

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def nbytes(self) -> int:
        """Memory held by the peaks (not counting the referenced samples)."""
        return sum(lo.nbytes + hi.nbytes for lo, hi in self.levels)

    # ---- building ----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        samples: np.ndarray,
        progress: ProgressFn | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> PeakPyramid:
        """Build the pyramid of ``samples`` (float32 ``(channels, frames)``, frames >= 1).

        Args:
            samples: the audio; kept by reference for the raw fallback.
            progress: optional ``progress(fraction, message)`` per chunk.
            cancel: optional ``cancel() -> bool``; True stops with :class:`Cancelled`.

        Returns:
            The pyramid. Cost: about 3 ns per sample on one core (0.06 s for 4 min stereo).
        """
        if samples.ndim != 2 or samples.shape[1] == 0:
            raise ValueError(f"samples must be (channels, frames>0), got {samples.shape}")
        channels, frames = samples.shape
        block = BLOCK_SIZES[0]
        n0 = -(-frames // block)
        mins = np.empty((channels, n0), dtype=np.float32)
        maxs = np.empty((channels, n0), dtype=np.float32)
        starts = np.arange(0, _CHUNK_FRAMES, block)
        for a in range(0, frames, _CHUNK_FRAMES):
            if cancel is not None and cancel():
                raise Cancelled()
            b = min(a + _CHUNK_FRAMES, frames)
            chunk = samples[:, a:b]
            idx = starts[: -(-(b - a) // block)]
            sl = slice(a // block, a // block + idx.size)
            np.minimum.reduceat(chunk, idx, axis=1, out=mins[:, sl])
            np.maximum.reduceat(chunk, idx, axis=1, out=maxs[:, sl])
            if progress is not None:
                progress(b / frames, "Building waveform overview")
        levels = [(mins, maxs)]
        for _ in BLOCK_SIZES[1:]:
            lo, hi = levels[-1]
            step = BLOCK_SIZES[1] // BLOCK_SIZES[0]
            idx = np.arange(0, lo.shape[1], step)
            levels.append((np.minimum.reduceat(lo, idx, axis=1), np.maximum.reduceat(hi, idx, axis=1)))
        return cls(samples, levels)

    # ---- querying ----------------------------------------------------------------------------
    def envelope(self, start: float, stop: float, pixels: int) -> tuple[np.ndarray, np.ndarray]:
        """Minimum and maximum per pixel of the range ``[start, stop)`` (frames of this track).

        Pixel ``i`` covers frames ``[e_i, e_(i+1))`` with ``e_i = start + i * (stop - start) /
        pixels``. At ``s = (stop - start) / pixels`` samples per pixel the answer comes from the
        coarsest level with block ``B <= s`` (raw samples when ``s < 16``), pixel ``i`` taking
        the blocks ``floor(e_i / B) .. floor(e_(i+1) / B) - 1`` — so pixels partition the blocks
        and the envelope is exact to within one block. Zoomed in below one sample per pixel, a
        pixel shows the sample under it (min = max = that sample).

        Returns:
            ``(mins, maxs)``, float32 ``(channels, pixels)`` each; NaN where a pixel lies wholly
            outside the track (before 0 or after its end).
        """
        pixels = max(int(pixels), 1)
        span = float(stop) - float(start)
        if not span > 0:
            raise ValueError(f"empty range [{start}, {stop})")
        spp = span / pixels
        edges = float(start) + np.arange(pixels + 1, dtype=np.float64) * spp
        mins = np.full((self.channels, pixels), np.nan, dtype=np.float32)
        maxs = np.full((self.channels, pixels), np.nan, dtype=np.float32)
        if spp < 1.0:
            # Closer than one sample per pixel: sample-and-hold.
            idx = np.floor(edges[:-1]).astype(np.int64)
            ok = (idx >= 0) & (idx < self.frames)
            vals = self.samples[:, idx[ok]]
            mins[:, ok] = vals
            maxs[:, ok] = vals
            return mins, maxs
        level = -1
        for i, block in enumerate(BLOCK_SIZES):
            if block <= spp:
                level = i
        if level < 0:
            block, lo_arr, hi_arr = 1, self.samples, self.samples
        else:
            block = BLOCK_SIZES[level]
            lo_arr, hi_arr = self.levels[level]
        n = lo_arr.shape[1]
        bounds = np.clip(np.floor(edges / block).astype(np.int64), 0, n)
        first, last = bounds[:-1], bounds[1:]
        ok = last > first
        if not ok.any():
            return mins, maxs
        # ok pixels are consecutive and partition [first[ok][0], last[ok][-1]); reduceat over a
        # view ending at the last pixel's bound reduces each pixel's blocks exactly.
        end = int(last[ok][-1])
        idx = first[ok]
        mins[:, ok] = np.minimum.reduceat(lo_arr[:, :end], idx, axis=1)
        maxs[:, ok] = np.maximum.reduceat(hi_arr[:, :end], idx, axis=1)
        return mins, maxs
