"""Mask layers: every stem's mask at full STFT resolution, edits with undo, local re-synthesis.

The model (SpectraLayers' idea: layers that always sum to the mix):

* each stem ``i`` has a mono mask ``M_i`` ``(bins, frames)`` (float32) and the masks sum to one
  in every cell (the separator's masks, channel-averaged and normalised on construction);
* a stem's audio is the engine's audio except in the cells an edit has touched, where it is the
  mask applied to the mix: ``S'_i = S_i + E · (M_i X − S_i)`` per channel, with ``S_i`` the
  separated stem's STFT, ``X`` the mix's and ``E`` the edited-cells map. Unedited regions keep
  the engine's audio bit for bit (engines that are not mask-based, like ``reference``, keep
  their quality there); edited cells follow the mask exactly (clearing a box silences it even
  for a subtraction-based stem). Since the masks sum to one and the stems' STFTs sum to the
  mix's, the stems keep summing to the mix (error at float rounding, far below −100 dB) after
  any sequence of edits;
* audio is re-rendered in fixed blocks of ``block_frames`` STFT frames: a block's samples depend
  only on the frames that overlap it, so an edit re-renders only the blocks its footprint
  (widened by the window) touches, and a block is always computed the same way — undo restores
  the audio exactly. The separated audio of a block is copied on its first re-render only.

Edits are data (:mod:`engine.maskedit.ops`); :meth:`MaskLayers.apply` returns an
:class:`EditRecord` holding the cells before and after, which :meth:`MaskLayers.undo` /
:meth:`MaskLayers.redo` put back. A brush stroke being painted is a :class:`LiveStroke`: points
arrive as the pointer moves and the masks follow at once; the audio is re-rendered when the
stroke ends (or whenever the caller asks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import scipy.fft as sp_fft

from engine.maskedit.ops import (
    Brush,
    ContrastEdit,
    Edit,
    Footprint,
    MaskGrid,
    Stroke,
    contrast_curve,
    footprint,
    stroke_footprint,
)
from engine.spectral import DEFAULT_STFT, StftConfig

#: STFT frames per re-synthesis block (64 × 512 samples ≈ 0.74 s at 44.1 kHz).
BLOCK_FRAMES = 64
#: Key of the edited-cells map in undo snapshots (not a stem name: it holds a NUL).
EDITED = "\0edited"
#: Edits over more cells than this keep no "after" snapshot: redo recomputes it from "before"
#: (the same function of the same values, so bit for bit the same).
_AFTER_CELLS = 1 << 22


@dataclass
class EditRecord:
    """One undoable step: the cells ``[bin0:bin1, frame0:frame1]`` of every stem (and of the
    edited-cells map) before the edit, and after it unless the edit was large (``None``)."""

    edit: Edit
    frame0: int
    frame1: int
    bin0: int
    bin1: int
    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray] | None

    @property
    def label(self) -> str:
        return self.edit.label

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.before.values()) + sum(a.nbytes for a in (self.after or {}).values())


def normalised_masks(masks: dict[str, np.ndarray], names: Iterable[str]) -> dict[str, np.ndarray]:
    """Channel-average each mask to ``(bins, frames)`` float32 and scale them to sum to one.

    Cells where every mask is 0 are split equally.
    """
    names = list(names)
    mono = []
    for n in names:
        m = np.asarray(masks[n])
        mono.append(m.astype(np.float32).mean(axis=0) if m.ndim == 3 else m.astype(np.float32, copy=True))
    total = np.sum(mono, axis=0, dtype=np.float32)
    ok = total > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, total, 1.0), 0.0).astype(np.float32)
    out = {}
    for n, m in zip(names, mono, strict=True):
        np.clip(m, 0.0, None, out=m)
        out[n] = np.where(ok, m * inv, np.float32(1.0 / len(names))).astype(np.float32)
    return out


class MaskLayers:
    """Editable masks of one separation and the stems they render.

    Args:
        mix: float32 ``(channels, samples)``: the mix the stems came from.
        stems: name -> float32 ``(channels, samples)``; **updated in place** by edits (so a
            player holding these arrays hears the edits at once).
        masks: name -> the separator's mask ``(channels, bins, frames)`` or ``(bins, frames)``,
            one per stem (2 or more stems).
        sample_rate: the mix's rate.
        stft: the STFT the masks live in (its hop must divide ``n_fft``).
        already_normalised: the masks are this class's own (e.g. reopened from a project):
            used as they are, no averaging or rescaling.
    """

    def __init__(
        self,
        mix: np.ndarray,
        stems: dict[str, np.ndarray],
        masks: dict[str, np.ndarray],
        sample_rate: int,
        stft: StftConfig = DEFAULT_STFT,
        block_frames: int = BLOCK_FRAMES,
        already_normalised: bool = False,
    ) -> None:
        names = list(stems)
        if len(names) < 2:
            raise ValueError("mask editing needs at least two stems")
        missing = [n for n in names if n not in masks]
        if missing:
            raise ValueError(f"no mask for stem(s) {missing}")
        if stft.n_fft % stft.hop_length:
            raise ValueError("mask editing needs a hop that divides n_fft")
        self.mix = np.ascontiguousarray(mix, dtype=np.float32)
        self.channels, self.samples_count = self.mix.shape
        for n in names:
            if stems[n].shape != self.mix.shape or stems[n].dtype != np.float32:
                raise ValueError(f"stem '{n}' must be float32 {self.mix.shape}, got {stems[n].dtype} {stems[n].shape}")
        self.names = names
        self.stems = stems
        self.stft = stft
        self.sample_rate = int(sample_rate)
        frames = stft.frames_for(self.samples_count)
        for n in names:
            if np.shape(masks[n])[-2:] != (stft.bins, frames):
                raise ValueError(
                    f"mask of '{n}' is {np.shape(masks[n])}, expected (..., {stft.bins}, {frames}) "
                    f"for {self.samples_count} samples")
        if already_normalised:
            self.masks = {n: np.ascontiguousarray(masks[n], dtype=np.float32) for n in names}
        else:
            self.masks = normalised_masks(masks, names)
        self.grid = MaskGrid(self.sample_rate, frames, stft)
        self.block_frames = int(block_frames)
        self._hop, self._n = stft.hop_length, stft.n_fft
        # the periodic Hann window of engine.spectral
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self._n) / self._n)).astype(np.float32)
        # cells any edit has touched: there a stem is mask × mix; elsewhere the engine's own audio
        self.edited = np.zeros((stft.bins, frames), dtype=np.uint8)
        self._orig_blocks: dict[int, np.ndarray] = {}  # block -> (S, C, samples) originals
        self.listeners: list[Callable[[int, int], None]] = []  # called with (frame0, frame1)

    # ---- geometry ----------------------------------------------------------------------------
    @property
    def frames(self) -> int:
        return self.grid.frames

    @property
    def bins(self) -> int:
        return self.grid.bins

    def sample_span(self, frame0: int, frame1: int) -> tuple[int, int]:
        """Samples whose audio depends on frames ``[frame0, frame1)``."""
        half = self._n // 2
        return max(0, frame0 * self._hop - half), min(self.samples_count, (frame1 - 1) * self._hop + half)

    def _blocks_for_frames(self, frame0: int, frame1: int) -> range:
        s0, s1 = self.sample_span(frame0, frame1)
        size = self.block_frames * self._hop
        if s1 <= s0:
            return range(0)
        return range(s0 // size, (s1 - 1) // size + 1)

    # ---- edits -------------------------------------------------------------------------------
    def _cells(self) -> dict[str, np.ndarray]:
        """Everything an edit changes, by name: the masks and the edited-cells map."""
        return {**self.masks, EDITED: self.edited}

    def _keep_originals(self, frame0: int, frame1: int) -> None:
        """Copy the audio blocks about to change (first write only)."""
        size = self.block_frames * self._hop
        for b in self._blocks_for_frames(frame0, frame1):
            if b not in self._orig_blocks:
                sl = slice(b * size, min((b + 1) * size, self.samples_count))
                self._orig_blocks[b] = np.stack([self.stems[n][:, sl] for n in self.names])

    def _region(self, fp: Footprint) -> dict[str, np.ndarray]:
        return {n: a[fp.bin0 : fp.bin1, fp.frame0 : fp.frame1].copy() for n, a in self._cells().items()}

    def _check_edit(self, edit: Edit) -> None:
        if edit.stem not in self.masks:
            raise ValueError(f"no stem '{edit.stem}' (have {self.names})")
        target = getattr(edit, "target", None)
        if edit.action == "move" and (target not in self.masks or target == edit.stem):
            raise ValueError(f"move needs another stem as target, got {target!r}")
        if edit.action not in ("boost", "cut", "scale", "move", "contrast"):
            raise ValueError(f"unknown mask action {edit.action!r}")

    def _write(self, fp: Footprint, before: dict[str, np.ndarray], edit: Edit,
               sub: tuple[slice, slice] | None = None) -> None:
        """Write the edited cells of ``fp`` (or of its sub-rectangle ``sub``) from ``before``."""
        bs, fs = sub if sub is not None else (slice(0, fp.w.shape[0]), slice(0, fp.w.shape[1]))
        w = fp.w[bs, fs]
        if not np.any(w > 0):
            return
        old = {n: before[n][bs, fs] for n in self.names}
        new = apply_action(edit, old, w, self.names)
        touched = w > 0
        rows = slice(fp.bin0 + bs.start, fp.bin0 + bs.stop)
        cols = slice(fp.frame0 + fs.start, fp.frame0 + fs.stop)
        for n in self.names:
            self.masks[n][rows, cols] = np.where(touched, new[n], old[n])
        self.edited[rows, cols] = np.where(touched, np.uint8(1), before[EDITED][bs, fs])

    def apply(self, edit: Edit, render: bool = True, notify: bool = True,
              progress: Callable[[float], None] | None = None) -> EditRecord | None:
        """Apply ``edit``; returns its undo record (None when its footprint is empty).

        Args:
            render: re-render the stems' audio under the edit now.
            notify: call :attr:`listeners` (off when running outside the GUI thread).
            progress: ``progress(fraction)`` per rendered block (whole-track edits take seconds).
        """
        self._check_edit(edit)
        fp = footprint(edit, self.grid)
        if fp.empty or not np.any(fp.w > 0):
            return None
        self._keep_originals(fp.frame0, fp.frame1)
        before = self._region(fp)
        self._write(fp, before, edit)
        small = fp.w.size <= _AFTER_CELLS
        record = EditRecord(edit, fp.frame0, fp.frame1, fp.bin0, fp.bin1, before,
                            self._region(fp) if small else None)
        self._changed(fp.frame0, fp.frame1, render, notify, progress)
        return record

    def _put(self, record: EditRecord, cells: dict[str, np.ndarray]) -> None:
        for n, a in self._cells().items():
            a[record.bin0 : record.bin1, record.frame0 : record.frame1] = cells[n]

    def undo(self, record: EditRecord, render: bool = True, notify: bool = True) -> None:
        """Put the cells back as they were before ``record`` (exactly)."""
        self._put(record, record.before)
        self._changed(record.frame0, record.frame1, render, notify)

    def redo(self, record: EditRecord, render: bool = True, notify: bool = True) -> None:
        """Apply ``record`` again (exactly as the first time), after an :meth:`undo`."""
        if record.after is not None:
            self._put(record, record.after)
        else:
            self._put(record, record.before)
            fp = footprint(record.edit, self.grid)
            self._write(fp, record.before, record.edit)
        self._changed(record.frame0, record.frame1, render, notify)

    def begin_stroke(self, stem: str, action: str, brush: Brush, target: str | None = None,
                     factor: float = 1.0) -> LiveStroke:
        """Start painting; see :class:`LiveStroke`."""
        stroke = Stroke(stem, action, (), brush, target, factor)
        self._check_edit(stroke)
        return LiveStroke(self, stroke)

    def _changed(self, frame0: int, frame1: int, render: bool, notify: bool = True,
                 progress: Callable[[float], None] | None = None) -> None:
        if render:
            self.render(frame0, frame1, progress)
        if notify:
            for fn in list(self.listeners):
                fn(frame0, frame1)

    # ---- re-synthesis ------------------------------------------------------------------------
    def render(self, frame0: int = 0, frame1: int | None = None,
               progress: Callable[[float], None] | None = None) -> tuple[int, int]:
        """Re-render the stems' audio that depends on frames ``[frame0, frame1)``.

        Returns:
            the sample range ``(start, stop)`` written (block-aligned).
        """
        frame1 = self.frames if frame1 is None else frame1
        blocks = self._blocks_for_frames(max(frame0, 0), min(frame1, self.frames))
        size = self.block_frames * self._hop
        for i, b in enumerate(blocks):
            self._render_block(b)
            if progress is not None and i % 16 == 15:
                progress((i + 1) / len(blocks))
        if len(blocks) == 0:
            return 0, 0
        return blocks[0] * size, min((blocks[-1] + 1) * size, self.samples_count)

    def _render_block(self, b: int) -> None:
        orig = self._orig_blocks.get(b)
        if orig is None:
            return  # nothing near this block was ever edited: the stems are the originals
        hop, n, bf = self._hop, self._n, self.block_frames
        s0 = b * bf * hop
        s1 = min(s0 + bf * hop, self.samples_count)
        reach = math.ceil(n / (2 * hop))
        k0, k1 = max(0, b * bf - reach), min(self.frames, (b + 1) * bf + reach)
        edited = self.edited[:, k0:k1]
        if not edited.any():
            for i, name in enumerate(self.names):
                self.stems[name][:, s0:s1] = orig[i]
            return
        # edited cells: stem = mask × mix there, i.e. add E · (M X − S) to the original stem
        x = self._frames(lambda a, z: self.mix[:, a:z], k0, k1)  # (C, K, bins)
        s_orig = self._frames(self._orig_range, k0, k1)  # (S, C, K, bins)
        m = np.stack([self.masks[name][:, k0:k1] for name in self.names]).transpose(0, 2, 1)  # (S, K, bins)
        e = edited.T.astype(np.float32)  # (K, bins)
        d = e * (m[:, None] * x[None] - s_orig)
        y = sp_fft.irfft(d, n=n, axis=-1)  # (S, C, K, n)
        y *= self._window
        ola = _overlap_add(y, hop)  # (S, C, (K - 1) hop + n)
        env = _overlap_add(np.broadcast_to(self._window**2, (k1 - k0, n)), hop)
        start = s0 - (k0 * hop - n // 2)
        seg = ola[..., start : start + (s1 - s0)] / np.maximum(env[start : start + (s1 - s0)], 1e-11)
        for i, name in enumerate(self.names):
            np.add(orig[i], seg[i], out=self.stems[name][:, s0:s1])

    def _orig_range(self, a: int, z: int) -> np.ndarray:
        """The stems as separated (before any edit), samples ``[a, z)``: ``(S, C, z − a)``."""
        size = self.block_frames * self._hop
        out = np.empty((len(self.names), self.channels, z - a), dtype=np.float32)
        for b in range(a // size, (z - 1) // size + 1):
            lo, hi = max(a, b * size), min(z, (b + 1) * size)
            saved = self._orig_blocks.get(b)
            if saved is not None:
                out[:, :, lo - a : hi - a] = saved[:, :, lo - b * size : hi - b * size]
            else:  # never re-rendered: the arrays still hold the originals
                for i, name in enumerate(self.names):
                    out[i, :, lo - a : hi - a] = self.stems[name][:, lo:hi]
        return out

    def _frames(self, signal: Callable[[int, int], np.ndarray], k0: int, k1: int) -> np.ndarray:
        """rFFT of the windowed frames ``[k0, k1)`` of ``signal(a, z)`` (samples ``[a, z)``),
        reflect-padded at the track's ends like ``engine.spectral.stft``: ``(..., K, bins)``."""
        hop, n, total = self._hop, self._n, self.samples_count
        lo, hi = k0 * hop - n // 2, (k1 - 1) * hop + n // 2
        if lo >= 0 and hi <= total:  # inside the track: frames are strided views, no copy
            seg = signal(lo, hi)
            view = np.lib.stride_tricks.sliding_window_view(seg, n, axis=-1)[..., ::hop, :]
            return sp_fft.rfft(view * self._window, axis=-1)
        idx = np.arange(k0, k1)[:, None] * hop - n // 2 + np.arange(n)[None, :]
        idx = np.abs(idx)
        idx = np.where(idx >= total, 2 * (total - 1) - idx, idx)
        valid = (idx >= 0) & (idx < total)
        idx = np.clip(idx, 0, total - 1)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        frames = signal(lo, hi)[..., idx - lo]  # (..., K, n)
        if not valid.all():
            frames *= valid
        frames *= self._window
        return sp_fft.rfft(frames, axis=-1)

    # ---- checks ------------------------------------------------------------------------------
    def sum_error_db(self) -> float:
        """Energy of (Σ stems − mix) relative to the mix, dB."""
        total = np.zeros(self.mix.shape, dtype=np.float64)
        for n in self.names:
            total += self.stems[n]
        err = float(np.sum((total - self.mix) ** 2))
        ref = float(np.sum(self.mix.astype(np.float64) ** 2)) + 1e-30
        return 10.0 * math.log10(err / ref + 1e-30)


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Overlap-add ``(..., K, n)`` frames at ``hop`` (``n`` a multiple of ``hop``)."""
    k, n = frames.shape[-2], frames.shape[-1]
    r = n // hop
    chunks = frames.reshape(*frames.shape[:-1], r, hop)  # (..., K, r, hop)
    out = np.zeros((*frames.shape[:-2], k + r - 1, hop), dtype=frames.dtype)
    for q in range(r):
        out[..., q : q + k, :] += chunks[..., :, q, :]
    return out.reshape(*frames.shape[:-2], (k + r - 1) * hop)


def apply_action(edit: Edit, old: dict[str, np.ndarray], w: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """New mask values of every stem for cells with weights ``w`` (see :mod:`engine.maskedit.ops`)."""
    j = edit.stem
    mj = old[j]
    if edit.action == "move":
        target = getattr(edit, "target", None)
        assert target is not None
        moved = w * mj
        out = dict(old)
        out[j] = mj - moved
        out[target] = old[target] + moved
        return out
    if edit.action == "boost":
        new_j = mj + w * (1.0 - mj)
    elif edit.action == "cut":
        new_j = mj * (1.0 - w)
    elif edit.action == "scale":
        factor = float(getattr(edit, "factor", 1.0))
        new_j = np.clip(mj * (1.0 + w * (factor - 1.0)), 0.0, 1.0)
    elif isinstance(edit, ContrastEdit):
        new_j = mj + w * (contrast_curve(mj, edit.threshold, edit.contrast) - mj)
    else:
        raise ValueError(f"unknown mask action {edit.action!r}")
    new_j = new_j.astype(np.float32)
    out = {j: new_j}
    others = [n for n in names if n != j]
    rest_new = 1.0 - new_j
    if len(others) == 1:
        out[others[0]] = rest_new
        return out
    rest_old = 1.0 - mj
    ok = rest_old > 1e-6
    scale = np.where(ok, rest_new / np.where(ok, rest_old, 1.0), 0.0)
    even = rest_new / len(others)
    for n in others:
        out[n] = np.where(ok, old[n] * scale, even).astype(np.float32)
    return out


class LiveStroke:
    """A stroke being painted: :meth:`extend` with pointer positions, then :meth:`finish`.

    The masks follow every :meth:`extend` (cells computed from the state before the stroke and
    the stroke's accumulated weights, so painting over the same place twice in one stroke does
    not compound); the audio is re-rendered by :meth:`finish` (or :meth:`render_now`).
    """

    def __init__(self, layers: MaskLayers, stroke: Stroke) -> None:
        self.layers = layers
        self.stroke = stroke
        self.points: list[tuple[float, float]] = []
        self.frame0 = self.frame1 = 0  # frames covered so far
        self._w: np.ndarray = np.zeros((layers.bins, 0), dtype=np.float32)
        self._before: dict[str, np.ndarray] = {n: a[:, :0].copy() for n, a in layers._cells().items()}
        self._bins = (layers.bins, 0)  # lowest bin0, highest bin1 touched
        self.finished = False

    def _grow(self, frame0: int, frame1: int) -> None:
        if self.frame1 > self.frame0:
            frame0, frame1 = min(frame0, self.frame0), max(frame1, self.frame1)
        if (frame0, frame1) == (self.frame0, self.frame1):
            return
        lay = self.layers
        lay._keep_originals(frame0, frame1)
        w = np.zeros((lay.bins, frame1 - frame0), dtype=np.float32)
        before = {}
        for n, a in lay._cells().items():
            # cells outside the old range are untouched by this stroke: take them as they are now
            b = a[:, frame0:frame1].copy()
            if self.frame1 > self.frame0:
                b[:, self.frame0 - frame0 : self.frame1 - frame0] = self._before[n]
            before[n] = b
        if self.frame1 > self.frame0:
            w[:, self.frame0 - frame0 : self.frame1 - frame0] = self._w
        self._w, self._before, self.frame0, self.frame1 = w, before, frame0, frame1

    def extend(self, points: Iterable[tuple[float, float]]) -> tuple[int, int] | None:
        """Add pointer positions ``(seconds, Hz)``; returns the frames whose masks changed."""
        if self.finished:
            raise RuntimeError("the stroke is finished")
        new = [(float(t), float(f)) for t, f in points]
        if not new:
            return None
        segment = ([self.points[-1]] if self.points else []) + new
        self.points.extend(new)
        fp = stroke_footprint(replace(self.stroke, points=tuple(segment)), self.layers.grid)
        if fp.empty or not np.any(fp.w > 0):
            return None
        self._grow(fp.frame0, fp.frame1)
        cols = slice(fp.frame0 - self.frame0, fp.frame1 - self.frame0)
        acc = self._w[fp.bin0 : fp.bin1, cols]
        np.maximum(acc, fp.w, out=acc)
        self._bins = (min(self._bins[0], fp.bin0), max(self._bins[1], fp.bin1))
        whole = Footprint(self.frame0, self.frame1, 0, self.layers.bins, self._w)
        self.layers._write(whole, self._before, self.stroke, (slice(fp.bin0, fp.bin1), cols))
        for fn in list(self.layers.listeners):
            fn(fp.frame0, fp.frame1)
        return fp.frame0, fp.frame1

    def render_now(self) -> tuple[int, int]:
        """Re-render the audio under the stroke so far."""
        if self.frame1 <= self.frame0:
            return 0, 0
        return self.layers.render(self.frame0, self.frame1)

    def finish(self, render: bool = True) -> EditRecord | None:
        """End the stroke: its undo record (None if it touched nothing); renders the audio."""
        self.finished = True
        if self.frame1 <= self.frame0 or not np.any(self._w > 0):
            return None
        b0, b1 = self._bins
        lay = self.layers
        before = {n: a[b0:b1].copy() for n, a in self._before.items()}
        after = {n: a[b0:b1, self.frame0 : self.frame1].copy() for n, a in lay._cells().items()}
        record = EditRecord(replace(self.stroke, points=tuple(self.points)), self.frame0, self.frame1,
                            b0, b1, before, after)
        if render:
            lay.render(self.frame0, self.frame1)
        return record

    def cancel(self) -> None:
        """Abandon the stroke: the masks go back to how they were before it."""
        self.finished = True
        if self.frame1 > self.frame0:
            for n, a in self.layers._cells().items():
                a[:, self.frame0 : self.frame1] = self._before[n]
            self.layers._changed(self.frame0, self.frame1, True)
