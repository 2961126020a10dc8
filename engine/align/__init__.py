"""Aligning an acapella to its mix: offset, sample rate, clock drift, gain, polarity, null test.

Convention (DESIGN.md's, made precise). Everything is counted in frames of the **mix's**
sample rate. An acapella at another rate is converted to the mix's rate; ``k`` counts frames of
that converted acapella (frame ``k`` is acapella time ``k / mix rate`` seconds). Acapella frame
``k`` plays at mix frame::

    n(k) = offset_samples + k * (1 + drift_ppm * 1e-6)

``offset_samples`` may be fractional and is negative when the acapella has extra lead-in;
``offset_seconds = offset_samples / mix rate``. With no drift this is DESIGN's "acapella sample k
plays at mix sample k + offset_samples". Rendering (:func:`render_aligned`): with no drift the
rate conversion is ``engine.audio.resample`` (polyphase Kaiser); with drift one soxr
very-high-quality resampling goes from the file's rate straight to ``mix rate·(1 + drift)``
(the same mapping, one interpolation instead of two); the fractional offset is an exact FFT
phase ramp; the result is scaled by ``polarity * 10**(gain_db/20)``. The null test measures
``mix - rendered``. ``acapella_sample_rate`` reports the file's own rate.

Channels: one offset, drift, gain and polarity for all channels. An acapella with the mix's
channel count is used channel by channel; a mono acapella is copied to every channel; any other
count is downmixed to mono first. The gain is the least-squares gain over all channels.

Null depths are ``10·log10(residual energy / mix energy)`` over the region of the mix the
acapella covers (the whole song when it covers it), overall, per band of
``engine.spectral.BANDS`` and per 1-second window.

No match: when the acapella is not found in the mix (confidence below ``MATCH_CONFIDENCE``),
``align_acapella`` returns ``matched=False`` with neutral parameters (offset 0, drift 0, gain
0 dB, polarity 1), null depth 0 dB and a message; nothing should be applied.
``align_command`` (``app.py align``) prints that JSON and still exits 0: the command worked and
its answer is "no match" (``"match": false``), which scripts read from the JSON; unreadable or
silent inputs are bad input (exit 2).

Fast nudging: :class:`AlignmentRenderer` caches the conversions and the cross-spectrum so the
GUI's null meter updates in tens of milliseconds after a nudge (see its docstring);
:func:`null_depth_for` is the one-off version.
"""

from engine.align.command import align_command
from engine.align.estimate import ANALYSIS_RATE_HZ, MATCH_CONFIDENCE, MAX_DRIFT_PPM, align_acapella
from engine.align.nulltest import FLOOR_DB, null_test
from engine.align.render import (
    AlignmentRenderer,
    FastNull,
    apply_drift,
    conform_channels,
    null_depth_for,
    render_aligned,
    render_residual,
    shift_onto_timeline,
)
from engine.align.result import AlignmentParams, AlignmentResult, LocalFit, NullTest

__all__ = [
    "ANALYSIS_RATE_HZ",
    "FLOOR_DB",
    "MATCH_CONFIDENCE",
    "MAX_DRIFT_PPM",
    "AlignmentParams",
    "AlignmentRenderer",
    "AlignmentResult",
    "FastNull",
    "LocalFit",
    "NullTest",
    "align_acapella",
    "align_command",
    "apply_drift",
    "conform_channels",
    "null_depth_for",
    "null_test",
    "render_aligned",
    "render_residual",
    "shift_onto_timeline",
]
