"""The synthesizer's one error: a tool or data file it renders with is missing."""

from __future__ import annotations

from engine.errors import InputError


class SynthUnavailable(InputError):
    """fluidsynth, a General MIDI soundfont, espeak-ng or pyworld is not installed.

    A subclass of :class:`engine.errors.InputError` so the CLI and GUI show it as one readable
    line (what is missing and which package provides it) instead of a traceback.
    """
