"""Mask edit operations as data, and the footprint (weight field) each one covers.

An edit is a small frozen dataclass (JSON-able with :func:`edit_to_dict` / :func:`edit_from_dict`)
that says *what* the user did in the track's own units — seconds and Hz — not in STFT cells, so
the same edit means the same thing at any sample rate. :func:`footprint` turns an edit into a
weight field ``w`` in [0, 1] over a rectangle of STFT cells (bins × frames): the edit acts where
``w > 0`` and nowhere else, with strength ``w``.

Brush shapes are ellipses in (time, frequency) with a raised-cosine feather: full strength up to
``hardness`` of the radius, falling to 0 at the radius. On a log-frequency display the brush's
height is in octaves (it looks the same size at every pitch); on a linear display, in Hz.

Actions (what happens inside the footprint, for the edited stem ``j`` with mask ``M``):

``boost``  ``M ← M + w (1 − M)``                 (brush: toward 1)
``cut``    ``M ← M (1 − w)``                     (eraser: toward 0)
``scale``  ``M ← clip(M (1 + w (factor − 1)))``  (box: scale)
``move``   ``M_target ← M_target + w M``, ``M ← M (1 − w)``  (cut/paste energy between stems)
``contrast`` ``M ← M + w (g(M) − M)``, ``g`` a soft threshold (see :func:`contrast_curve`)

For every action but ``move`` the other stems' masks are then rescaled so all masks still sum
to one (for two stems: the other one is the complement).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.spectral import DEFAULT_STFT, StftConfig

ACTIONS = ("boost", "cut", "scale", "move", "contrast")
#: Lowest frequency of the log axis (as the views); a log brush below it is measured from here.
LOG_F_FLOOR_HZ = 15.0


@dataclass(frozen=True)
class Brush:
    """A brush's shape.

    Attributes:
        radius_seconds: half-width in time.
        radius_hz: half-height on a linear frequency axis.
        radius_octaves: half-height on a log frequency axis.
        log_frequency: which of the two heights applies (the display's axis).
        hardness: fraction of the radius at full strength (1 = hard edge, 0 = all feather).
        strength: peak weight in (0, 1].
        harmonics: 1 = plain brush; N > 1 = harmonic brush (the pointer is the fundamental,
            stamps also at 2f … Nf).
    """

    radius_seconds: float = 0.05
    radius_hz: float = 150.0
    radius_octaves: float = 0.2
    log_frequency: bool = False
    hardness: float = 0.5
    strength: float = 1.0
    harmonics: int = 1


@dataclass(frozen=True)
class Stroke:
    """A brush stroke: ``points`` are ``(seconds, Hz)`` on the track's own clock."""

    stem: str
    action: str
    points: tuple[tuple[float, float], ...]
    brush: Brush = field(default_factory=Brush)
    target: str | None = None
    factor: float = 1.0

    @property
    def label(self) -> str:
        tool = "Harmonic brush" if self.brush.harmonics > 1 else {
            "boost": "Brush", "cut": "Eraser", "move": "Move", "scale": "Scale"}.get(self.action, "Stroke")
        return f"{tool} on {self.stem}" + (f" → {self.target}" if self.target else "")


def _region_label(tool: str, action: str, factor: float, stem: str, target: str | None) -> str:
    """Undo-menu name of a box or lasso edit ("Box Fill on vocals", "Lasso Move on drums → bass")."""
    verb = {"boost": "Fill", "cut": "Clear", "scale": f"Scale ×{factor:g}", "move": "Move"}
    return f"{tool} {verb.get(action, action)} on {stem}" + (f" → {target}" if target else "")


@dataclass(frozen=True)
class BoxEdit:
    """A time × frequency rectangle: fill (``boost``), clear (``cut``), ``scale`` or ``move``.

    ``feather_seconds`` / ``feather_hz`` soften the edges (raised cosine inside the box).
    """

    stem: str
    action: str
    start_seconds: float
    stop_seconds: float
    low_hz: float
    high_hz: float
    strength: float = 1.0
    factor: float = 1.0
    feather_seconds: float = 0.0
    feather_hz: float = 0.0
    target: str | None = None

    @property
    def label(self) -> str:
        return _region_label("Box", self.action, self.factor, self.stem, self.target)


@dataclass(frozen=True)
class LassoEdit:
    """A free-hand time × frequency region (a closed polygon through ``points``, ``(seconds,
    Hz)``): fill (``boost``), clear (``cut``), ``scale`` or ``move``, like :class:`BoxEdit`.

    With ``log_frequency`` the polygon's edges are straight on a log-frequency axis (as drawn
    there) and ``feather_freq`` is in octaves; otherwise in Hz. ``feather_seconds`` /
    ``feather_freq`` soften the edges inside the region (raised cosine over that distance).
    """

    stem: str
    action: str
    points: tuple[tuple[float, float], ...]
    strength: float = 1.0
    factor: float = 1.0
    feather_seconds: float = 0.0
    feather_freq: float = 0.0
    log_frequency: bool = False
    target: str | None = None

    @property
    def label(self) -> str:
        return _region_label("Lasso", self.action, self.factor, self.stem, self.target)


@dataclass(frozen=True)
class ContrastEdit:
    """Threshold/contrast over a time range of one stem's mask (whole track when ``None``)."""

    stem: str
    threshold: float = 0.5
    contrast: float = 1.0
    start_seconds: float | None = None
    stop_seconds: float | None = None
    action: str = "contrast"

    @property
    def label(self) -> str:
        return f"Contrast {self.contrast:g} at {self.threshold:g} on {self.stem}"


Edit = Stroke | BoxEdit | LassoEdit | ContrastEdit


def edit_to_dict(edit: Edit) -> dict[str, Any]:
    """JSON-able form of an edit (``kind`` names the class)."""
    d = asdict(edit)
    d["kind"] = type(edit).__name__
    if isinstance(edit, Stroke | LassoEdit):
        d["points"] = [list(p) for p in edit.points]
    return d


def edit_from_dict(d: dict[str, Any]) -> Edit:
    """Inverse of :func:`edit_to_dict`; raises ValueError on an unknown kind."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind == "Stroke":
        d["points"] = tuple((float(t), float(f)) for t, f in d["points"])
        d["brush"] = Brush(**d["brush"])
        return Stroke(**d)
    if kind == "BoxEdit":
        return BoxEdit(**d)
    if kind == "LassoEdit":
        d["points"] = tuple((float(t), float(f)) for t, f in d["points"])
        return LassoEdit(**d)
    if kind == "ContrastEdit":
        return ContrastEdit(**d)
    raise ValueError(f"unknown mask edit kind {kind!r}")


def contrast_curve(m: np.ndarray, threshold: float, contrast: float) -> np.ndarray:
    """Soft threshold on [0, 1]: fixes 0 and 1, maps ``threshold`` to 0.5, slope ``contrast``.

    ``g(m) = m^c / (m^c + (r (1 − m))^c)`` with ``r = threshold / (1 − threshold)``;
    ``threshold = 0.5, contrast = 1`` is the identity.
    """
    t = float(np.clip(threshold, 1e-3, 1 - 1e-3))
    c = float(max(contrast, 1e-3))
    r = t / (1.0 - t)
    m = np.clip(m, 0.0, 1.0).astype(np.float32)
    a = np.power(m, c, dtype=np.float32)
    b = np.power(r * (1.0 - m), c, dtype=np.float32)
    den = a + b
    out = np.where(den > 0, a / np.where(den > 0, den, 1.0), m)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Footprints
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskGrid:
    """The STFT cell grid a mask lives on: ``bins`` × ``frames`` at ``sample_rate``."""

    sample_rate: int
    frames: int
    stft: StftConfig = DEFAULT_STFT

    @property
    def bins(self) -> int:
        return self.stft.bins

    @property
    def frame_seconds(self) -> float:
        return self.stft.hop_length / self.sample_rate

    @property
    def bin_hz(self) -> float:
        return self.sample_rate / self.stft.n_fft

    def frame_of(self, seconds: float) -> float:
        return seconds / self.frame_seconds

    def bin_of(self, hz: float) -> float:
        return hz / self.bin_hz


@dataclass
class Footprint:
    """Weights ``w`` (float32 ``(bins, frames)`` of the rectangle) at ``[bin0:bin1, frame0:frame1]``."""

    frame0: int
    frame1: int
    bin0: int
    bin1: int
    w: np.ndarray

    @property
    def empty(self) -> bool:
        return self.frame1 <= self.frame0 or self.bin1 <= self.bin0


def _profile(d: np.ndarray, hardness: float) -> np.ndarray:
    """Raised-cosine feather of a normalised distance (1 inside ``hardness``, 0 from 1 on)."""
    h = float(np.clip(hardness, 0.0, 1.0))
    if h >= 1.0:
        return (d < 1.0).astype(np.float32)
    x = np.clip((d - h) / (1.0 - h), 0.0, 1.0)
    out = 0.5 * (1.0 + np.cos(np.pi * x))
    return np.where(d < 1.0, out, 0.0).astype(np.float32)


def _densify(points: np.ndarray, rt: float, rf: float, log_f: bool) -> np.ndarray:
    """Insert points along the path so consecutive stamps are ≤ a quarter radius apart."""
    if len(points) < 2:
        return points
    f = _freq_coord(points[:, 1], log_f)
    steps = np.hypot(np.diff(points[:, 0]) / rt, np.diff(f) / rf)
    out = [points[:1]]
    for i, s in enumerate(steps):
        n = max(1, int(math.ceil(s / 0.25)))
        a = np.linspace(0.0, 1.0, n + 1)[1:, None]
        out.append(points[i] + a * (points[i + 1] - points[i]))
    return np.concatenate(out, axis=0)


def _freq_coord(hz: np.ndarray | float, log_f: bool) -> np.ndarray:
    f = np.asarray(hz, dtype=np.float64)
    return np.log2(np.maximum(f, LOG_F_FLOOR_HZ)) if log_f else f


def stroke_footprint(stroke: Stroke, grid: MaskGrid) -> Footprint:
    """The weights of a stroke: the maximum over its stamps, times the brush's strength."""
    b = stroke.brush
    pts = np.asarray(stroke.points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return Footprint(0, 0, 0, 0, np.zeros((0, 0), np.float32))
    rt = max(float(b.radius_seconds), 0.5 * grid.frame_seconds)
    rf = max(float(b.radius_octaves), 1e-3) if b.log_frequency else max(float(b.radius_hz), 0.5 * grid.bin_hz)
    pts = _densify(pts, rt, rf, b.log_frequency)
    harmonics = np.arange(1, max(int(b.harmonics), 1) + 1, dtype=np.float64)
    nyquist = grid.sample_rate / 2.0
    # every stamp (point × harmonic): centre frame/bin and extent in cells
    t_c = np.repeat(pts[:, 0], len(harmonics))
    f_c = (pts[:, 1:2] * harmonics[None, :]).reshape(-1)
    keep = (f_c <= nyquist + (0 if b.log_frequency else rf)) & (f_c >= 0)
    t_c, f_c = t_c[keep], f_c[keep]
    if len(t_c) == 0:
        return Footprint(0, 0, 0, 0, np.zeros((0, 0), np.float32))
    fs = grid.frame_seconds
    k_lo = np.floor((t_c - rt) / fs).astype(np.int64) + 1
    k_hi = np.ceil((t_c + rt) / fs).astype(np.int64)
    if b.log_frequency:
        lo_hz = 2.0 ** (_freq_coord(f_c, True) - rf)
        hi_hz = 2.0 ** (_freq_coord(f_c, True) + rf)
        lo_hz = np.where(f_c <= LOG_F_FLOOR_HZ, 0.0, lo_hz)
    else:
        lo_hz, hi_hz = f_c - rf, f_c + rf
    b_lo = np.floor(lo_hz / grid.bin_hz).astype(np.int64)
    b_hi = np.ceil(hi_hz / grid.bin_hz).astype(np.int64) + 1
    k_lo, k_hi = np.clip(k_lo, 0, grid.frames), np.clip(k_hi, 0, grid.frames)
    b_lo, b_hi = np.clip(b_lo, 0, grid.bins), np.clip(b_hi, 0, grid.bins)
    frame0, frame1 = int(k_lo.min()), int(k_hi.max())
    bin0, bin1 = int(b_lo.min()), int(b_hi.max())
    if frame1 <= frame0 or bin1 <= bin0:
        return Footprint(0, 0, 0, 0, np.zeros((0, 0), np.float32))
    w = np.zeros((bin1 - bin0, frame1 - frame0), dtype=np.float32)
    bin_hz = grid.bin_hz
    for i in range(len(t_c)):
        ks = np.arange(k_lo[i], k_hi[i])
        bs = np.arange(b_lo[i], b_hi[i])
        if len(ks) == 0 or len(bs) == 0:
            continue
        dt = (ks * fs - t_c[i]) / rt
        df = (_freq_coord(bs * bin_hz, b.log_frequency) - _freq_coord(f_c[i], b.log_frequency)) / rf
        d = np.sqrt(df[:, None] ** 2 + dt[None, :] ** 2)
        stamp = _profile(d, b.hardness)
        view = w[b_lo[i] - bin0 : b_hi[i] - bin0, k_lo[i] - frame0 : k_hi[i] - frame0]
        np.maximum(view, stamp, out=view)
    w *= np.float32(np.clip(b.strength, 0.0, 1.0))
    return Footprint(frame0, frame1, bin0, bin1, w)


def _rise(d: np.ndarray) -> np.ndarray:
    """Raised-cosine rise from 0 at ``d = 0`` to 1 at ``d >= 1`` (a feathered edge)."""
    result: np.ndarray = 0.5 * (1.0 - np.cos(np.pi * np.clip(d, 0.0, 1.0)))
    return result


def _edge_ramp(x: np.ndarray, lo: float, hi: float, feather: float) -> np.ndarray:
    """1 inside [lo, hi], 0 outside, raised-cosine ramps of width ``feather`` inside the edges."""
    inside = (x >= lo) & (x <= hi)
    if feather <= 0:
        return inside.astype(np.float32)
    return np.where(inside, _rise(np.minimum(x - lo, hi - x) / feather), 0.0).astype(np.float32)


def _cells_within(t0: float, t1: float, f0: float, f1: float, grid: MaskGrid) -> tuple[int, int, int, int]:
    """``(frame0, frame1, bin0, bin1)``: the cells whose centres lie in ``[t0, t1] × [f0, f1]``."""
    fs, bh = grid.frame_seconds, grid.bin_hz
    return (int(np.clip(math.ceil(t0 / fs), 0, grid.frames)), int(np.clip(math.floor(t1 / fs) + 1, 0, grid.frames)),
            int(np.clip(math.ceil(f0 / bh), 0, grid.bins)), int(np.clip(math.floor(f1 / bh) + 1, 0, grid.bins)))


def _region_strength(action: str, strength: float) -> float:
    """Weight inside a box or lasso: full for ``scale`` (the factor sets the amount), else the
    strength."""
    return 1.0 if action == "scale" else float(np.clip(strength, 0.0, 1.0))


def box_footprint(box: BoxEdit, grid: MaskGrid) -> Footprint:
    """The weights of a box (strength inside, feathered edges)."""
    t0, t1 = sorted((float(box.start_seconds), float(box.stop_seconds)))
    f0, f1 = sorted((float(box.low_hz), float(box.high_hz)))
    frame0, frame1, bin0, bin1 = _cells_within(t0, t1, f0, f1, grid)
    if frame1 <= frame0 or bin1 <= bin0:
        return Footprint(0, 0, 0, 0, np.zeros((0, 0), np.float32))
    wt = _edge_ramp(np.arange(frame0, frame1) * grid.frame_seconds, t0, t1, float(box.feather_seconds))
    wf = _edge_ramp(np.arange(bin0, bin1) * grid.bin_hz, f0, f1, float(box.feather_hz))
    strength = _region_strength(box.action, box.strength)
    w = (wf[:, None] * wt[None, :] * np.float32(strength)).astype(np.float32)
    return Footprint(frame0, frame1, bin0, bin1, w)


def _inside_polygon(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd rule: which points ``(x, y)`` (broadcast together) lie inside the closed polygon
    ``(px, py)``."""
    inside = np.zeros(np.broadcast(x, y).shape, dtype=bool)
    n = len(px)
    for i in range(n):
        x0, y0, x1, y1 = px[i], py[i], px[(i + 1) % n], py[(i + 1) % n]
        if y0 == y1:
            continue
        crosses = (y0 > y) != (y1 > y)
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < x_at)
    return inside


def _edge_distance(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Distance of each point ``(x, y)`` to the nearest edge of the closed polygon ``(px, py)``."""
    best = np.full(np.broadcast(x, y).shape, np.inf)
    n = len(px)
    for i in range(n):
        x0, y0, x1, y1 = px[i], py[i], px[(i + 1) % n], py[(i + 1) % n]
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        u = np.zeros_like(best) if length2 == 0 else np.clip(((x - x0) * dx + (y - y0) * dy) / length2, 0.0, 1.0)
        np.minimum(best, np.hypot(x - (x0 + u * dx), y - (y0 + u * dy)), out=best)
    return best


def lasso_footprint(edit: LassoEdit, grid: MaskGrid) -> Footprint:
    """The weights of a lasso: strength inside the polygon, edges feathered inward."""
    empty = Footprint(0, 0, 0, 0, np.zeros((0, 0), np.float32))
    pts = np.asarray(edit.points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return empty
    fs, bh = grid.frame_seconds, grid.bin_hz
    t, hz = pts[:, 0], np.maximum(pts[:, 1], 0.0)
    frame0, frame1, bin0, bin1 = _cells_within(float(t.min()), float(t.max()), float(hz.min()), float(hz.max()), grid)
    if frame1 <= frame0 or bin1 <= bin0:
        return empty
    # cells and polygon in (time / feather, frequency coordinate / feather) units
    ft = float(edit.feather_seconds) if edit.feather_seconds > 0 else 1.0
    ff = float(edit.feather_freq) if edit.feather_freq > 0 else 1.0
    px, py = t / ft, _freq_coord(hz, edit.log_frequency) / ff
    cx = (np.arange(frame0, frame1) * fs / ft)[None, :]
    cy = (_freq_coord(np.arange(bin0, bin1) * bh, edit.log_frequency) / ff)[:, None]
    inside = _inside_polygon(cx, cy, px, py)
    if edit.feather_seconds > 0 or edit.feather_freq > 0:
        d = _edge_distance(cx, cy, px, py)
        w = np.where(inside, _rise(d), 0.0)
    else:
        w = inside.astype(np.float64)
    strength = _region_strength(edit.action, edit.strength)
    return Footprint(frame0, frame1, bin0, bin1, (w * strength).astype(np.float32))


def contrast_footprint(edit: ContrastEdit, grid: MaskGrid) -> Footprint:
    """All bins over the edit's time range (the whole track when it has none)."""
    fs = grid.frame_seconds
    frame0 = 0 if edit.start_seconds is None else int(np.clip(math.ceil(edit.start_seconds / fs), 0, grid.frames))
    frame1 = grid.frames if edit.stop_seconds is None else int(
        np.clip(math.floor(edit.stop_seconds / fs) + 1, 0, grid.frames))
    if frame1 <= frame0:
        return Footprint(0, 0, 0, 0, np.zeros((0, 0), np.float32))
    return Footprint(frame0, frame1, 0, grid.bins, np.ones((grid.bins, frame1 - frame0), np.float32))


def footprint(edit: Edit, grid: MaskGrid) -> Footprint:
    """Dispatch on the edit's type."""
    if isinstance(edit, Stroke):
        return stroke_footprint(edit, grid)
    if isinstance(edit, BoxEdit):
        return box_footprint(edit, grid)
    if isinstance(edit, LassoEdit):
        return lasso_footprint(edit, grid)
    return contrast_footprint(edit, grid)
