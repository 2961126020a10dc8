"""The synthesizer's one error: a tool or data file it renders with is missing."""

from __future__ import annotations

import shutil

from engine.errors import InputError


class SynthUnavailable(InputError):
    """fluidsynth, a General MIDI soundfont, espeak-ng, flite or pyworld is not installed.

    A subclass of :class:`engine.errors.InputError` so the CLI and GUI show it as one readable
    line (what is missing and which package provides it) instead of a traceback.
    """


def require_tool(name: str, need: str) -> str:
    """Path of the command-line tool ``name``; :class:`SynthUnavailable` saying ``need`` (what
    needs it and which package provides it) if it is not installed."""
    found = shutil.which(name)
    if not found:
        raise SynthUnavailable(need)
    return found
