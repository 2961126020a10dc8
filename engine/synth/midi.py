"""A minimal Standard MIDI File (format 1) writer for the synthesizer's tracks.

Only what fluidsynth needs to render a score: one tempo map track, then per track a program
change, volume/pan/effect-send controllers, and note on/off pairs. Times are in beats; the file
uses 960 ticks per quarter note (≈0.5 ms at 120 BPM, finer than fluidsynth's 64-sample blocks).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

from engine.synth.score import Track

TICKS_PER_BEAT = 960


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity (7 bits per byte, high bit = more bytes follow)."""
    if value < 0:
        raise ValueError(f"negative delta time {value}")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def _track_chunk(events: Iterable[tuple[int, int, bytes]], end_tick: int) -> bytes:
    """Events are ``(tick, order, message)``; ``order`` breaks ties (note-offs before note-ons)."""
    payload = bytearray()
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        payload += _vlq(tick - now) + message
        now = tick
    payload += _vlq(max(end_tick - now, 0)) + b"\xff\x2f\x00"  # end of track
    return _chunk(b"MTrk", bytes(payload))


def _ticks(beats: float) -> int:
    return max(int(round(beats * TICKS_PER_BEAT)), 0)


def midi_bytes(tracks: Sequence[Track], tempo_bpm: float, end_beats: float) -> bytes:
    """The Standard MIDI File for ``tracks`` as bytes.

    Args:
        tracks: instrument tracks (each on its own MIDI channel; channel 9 is GM percussion).
        tempo_bpm: constant tempo, quarter notes per minute.
        end_beats: where every track ends (the renderer stops there), in beats.
    """
    end_tick = _ticks(end_beats)
    us_per_beat = int(round(60_000_000 / tempo_bpm))
    tempo_track = [
        (0, 0, b"\xff\x51\x03" + us_per_beat.to_bytes(3, "big")),
        (0, 1, b"\xff\x58\x04\x04\x02\x18\x08"),  # 4/4, 24 clocks per click, 8 32nds per beat
    ]
    chunks = [_track_chunk(tempo_track, end_tick)]
    for track in tracks:
        ch = track.channel
        if not 0 <= ch <= 15:
            raise ValueError(f"MIDI channel {ch} out of range 0..15")
        setup: list[tuple[int, int, bytes]] = []
        if ch == 9:
            setup.append((0, 0, bytes([0xB0 | ch, 0, 0])))  # drum kit: bank select via program
        setup += [
            (0, 1, bytes([0xC0 | ch, track.program & 0x7F])),
            (0, 2, bytes([0xB0 | ch, 7, track.volume & 0x7F])),
            (0, 3, bytes([0xB0 | ch, 10, track.pan & 0x7F])),
            (0, 4, bytes([0xB0 | ch, 91, 0])),  # reverb send off: our own seeded reverb instead
            (0, 5, bytes([0xB0 | ch, 93, 0])),  # chorus send off
        ]
        events = list(setup)
        for note in track.notes:
            on = _ticks(note.start_beats)
            off = max(_ticks(note.start_beats + note.duration_beats), on + 1)
            if on >= end_tick:
                continue
            off = min(off, end_tick)
            # order 10 = note off, 20 = note on: a repeated pitch is released before it restarts.
            events.append((off, 10, bytes([0x80 | ch, note.pitch & 0x7F, 0])))
            events.append((on, 20, bytes([0x90 | ch, note.pitch & 0x7F, max(1, note.velocity & 0x7F)])))
        chunks.append(_track_chunk(events, end_tick))
    header = _chunk(b"MThd", struct.pack(">HHH", 1, len(chunks), TICKS_PER_BEAT))
    return header + b"".join(chunks)


def write_midi(path: str | Path, tracks: Sequence[Track], tempo_bpm: float, end_beats: float) -> Path:
    """Write :func:`midi_bytes` to ``path`` and return it."""
    p = Path(path)
    p.write_bytes(midi_bytes(tracks, tempo_bpm, end_beats))
    return p
