"""The alignment's parameters and results (plain data, no signal processing)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class AlignmentParams:
    """Where and how the acapella sits on the mix's timeline.

    Attributes:
        offset_samples: mix frame (at the mix rate, may be fractional) where acapella sample 0
            plays; negative when the acapella has extra lead-in.
        drift_ppm: clock drift: acapella sample ``k`` (counted at the mix rate) plays at mix
            frame ``offset_samples + k * (1 + drift_ppm * 1e-6)``.
        gain_db: gain applied to the acapella to match the vocal in the mix.
        polarity: ``1`` or ``-1`` (applied with the gain).
    """

    offset_samples: float = 0.0
    drift_ppm: float = 0.0
    gain_db: float = 0.0
    polarity: int = 1

    @property
    def linear_gain(self) -> float:
        """Signed linear factor: ``polarity * 10 ** (gain_db / 20)``."""
        return float(self.polarity) * 10.0 ** (self.gain_db / 20.0)

    def nudged(self, offset_samples: float | None = None, drift_ppm: float | None = None,
               gain_db: float | None = None, polarity: int | None = None) -> AlignmentParams:
        """A copy with some fields replaced (the GUI's nudge tool)."""
        return AlignmentParams(
            self.offset_samples if offset_samples is None else float(offset_samples),
            self.drift_ppm if drift_ppm is None else float(drift_ppm),
            self.gain_db if gain_db is None else float(gain_db),
            self.polarity if polarity is None else int(polarity),
        )


@dataclass
class NullTest:
    """Null test of ``residual = mix - aligned acapella``; every depth is in dB re the mix.

    Negative is deeper (``-inf`` is impossible: depths are floored at ``FLOOR_DB``); ``nan``
    where the mix has no energy to compare with (a silent window, an empty band).

    Attributes:
        null_depth_db: residual energy / mix energy over the measured region.
        band_null_depth_db: the same per band of ``engine.spectral.BANDS`` (name -> dB).
        window_start_seconds: ``(windows,)`` start of each window on the mix timeline.
        window_null_depth_db: ``(windows,)`` depth per window.
        window_seconds: window length.
    """

    null_depth_db: float
    band_null_depth_db: dict[str, float]
    window_start_seconds: np.ndarray
    window_null_depth_db: np.ndarray
    window_seconds: float


@dataclass
class LocalFit:
    """How well the global alignment holds along the song, one entry per window.

    Arrays are ``(windows,)``, ``nan`` where the acapella is silent (nothing to measure).

    Attributes:
        centre_seconds: window centre on the mix timeline.
        offset_samples: the offset (mix frames, same convention as the global one) that best
            aligns this window, measured with the global drift applied; equal to the global
            offset where the alignment holds, jumping where the acapella was edited.
        gain_db: least-squares gain of the aligned acapella in this window.
        null_depth_db: null depth in this window with the global parameters.
        window_seconds: window length.
    """

    centre_seconds: np.ndarray
    offset_samples: np.ndarray
    gain_db: np.ndarray
    null_depth_db: np.ndarray
    window_seconds: float = 1.0

    @classmethod
    def empty(cls, window_seconds: float = 1.0) -> LocalFit:
        e = np.zeros(0, dtype=np.float64)
        return cls(e, e.copy(), e.copy(), e.copy(), window_seconds)

    def to_json(self) -> dict[str, Any]:
        """Plain lists (``nan`` -> ``None``)."""
        return {
            "window_seconds": float(self.window_seconds),
            "centre_seconds": _plain_list(self.centre_seconds),
            "offset_samples": _plain_list(self.offset_samples),
            "gain_db": _plain_list(self.gain_db),
            "null_depth_db": _plain_list(self.null_depth_db),
        }


@dataclass
class AlignmentResult:
    """What :func:`engine.align.align_acapella` found.

    Attributes:
        offset_samples, drift_ppm, gain_db, polarity: see :class:`AlignmentParams`.
        offset_seconds: ``offset_samples / mix_sample_rate``.
        confidence: 0..1, from the prominence of the correlation peak and the agreement of
            the local windows; below ``MATCH_CONFIDENCE`` the acapella is declared no match.
        null_depth_db: residual energy relative to the mix over the region the acapella
            covers (dB, negative = deeper). ``0.0`` when there is no match (nothing subtracted).
        acapella_sample_rate: the acapella file's own rate (Hz).
        mix_sample_rate: the mix's rate (Hz), the rate of every sample count here.
        matched: False when the acapella is not from this song; then the parameters are the
            neutral ones (offset 0, drift 0, gain 0 dB, polarity 1) and nothing should change.
        message: one line for the user.
        band_null_depth_db: null depth per band of ``engine.spectral.BANDS``.
        local_fit: per-window offset, gain and null depth (empty when there is no match).
        renderer: the :class:`engine.align.AlignmentRenderer` built while aligning (cached
            conversions for fast nudges), or None; not part of the JSON.
    """

    offset_samples: float
    offset_seconds: float
    drift_ppm: float
    gain_db: float
    polarity: int
    confidence: float
    null_depth_db: float
    acapella_sample_rate: int
    mix_sample_rate: int
    matched: bool
    message: str
    band_null_depth_db: dict[str, float] = field(default_factory=dict)
    local_fit: LocalFit = field(default_factory=LocalFit.empty)
    renderer: Any = field(default=None, repr=False, compare=False)

    @property
    def params(self) -> AlignmentParams:
        return AlignmentParams(self.offset_samples, self.drift_ppm, self.gain_db, self.polarity)

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON object (DESIGN.md's keys plus ``match``, ``message``, the band nulls
        and the mix rate); plain floats/ints/bools, ``nan`` written as ``null``."""
        return {
            "offset_seconds": _plain(self.offset_seconds),
            "offset_samples": _plain(self.offset_samples),
            "drift_ppm": _plain(self.drift_ppm),
            "gain_db": _plain(self.gain_db),
            "polarity": int(self.polarity),
            "confidence": _plain(self.confidence),
            "null_depth_db": _plain(self.null_depth_db),
            "acapella_sample_rate": int(self.acapella_sample_rate),
            "mix_sample_rate": int(self.mix_sample_rate),
            "match": bool(self.matched),
            "message": str(self.message),
            "band_null_depth_db": {k: _plain(v) for k, v in self.band_null_depth_db.items()},
        }


def _plain(x: float) -> float | None:
    x = float(x)
    return None if not math.isfinite(x) else x


def _plain_list(a: np.ndarray) -> list[float | None]:
    return [_plain(v) for v in np.asarray(a, dtype=np.float64).tolist()]
