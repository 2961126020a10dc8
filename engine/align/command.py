"""``app.py align``: load, align, print one JSON object."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.align.estimate import align_acapella
from engine.audio import load_audio
from engine.errors import InputError
from engine.files import atomic_write_text


def align_command(mix_path: str, acapella_path: str, json_out: str | None) -> int:
    """Align ``acapella_path`` to ``mix_path`` and print the result as one JSON object.

    The JSON (DESIGN.md's keys plus ``match``, ``message``, ``mix_sample_rate`` and
    ``band_null_depth_db``) goes to stdout, and to ``json_out`` when given (written atomically).
    A "no match" is a result, not an error: the JSON says ``"match": false`` with neutral
    parameters and a message, a one-line note goes to stderr, and the exit code is 0.

    Returns:
        0 (matched or not).

    Raises:
        InputError: a file is missing, unreadable, corrupt, empty or silent, or ``json_out``
            cannot be written (the CLI turns it into exit code 2).
    """
    mix = load_audio(mix_path)
    acapella = load_audio(acapella_path)
    result = align_acapella(mix, acapella)
    payload = result.to_json()
    text = json.dumps(payload, indent=2, allow_nan=False)
    if json_out:
        _write_atomic(Path(json_out), text + "\n")
    print(text)
    if not result.matched:
        print(f"{acapella_path}: {result.message}", file=sys.stderr)
    return 0


def _write_atomic(path: Path, text: str) -> None:
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise InputError(f"cannot write the JSON ({exc.strerror or exc})", path) from exc
