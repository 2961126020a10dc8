"""Seeded score generation: tempo, key, style, chords, drum groove, bass, chords/pads and a sung melody.

Everything is plain data (dataclasses of notes in beats) so the same score can be written as MIDI,
rendered, inspected by tests, or stored with a training example. One ``numpy`` generator seeded
from the song's seed drives every choice, so a seed always gives the same score.

Stems: ``drums`` (GM channel 10 = index 9), ``bass``, ``other`` (comping instrument plus an
optional pad) and ``vocals`` (the melody with one syllable per note, sung by
:mod:`engine.synth.singer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STEMS = ("drums", "bass", "other", "vocals")
STEPS_PER_BAR = 16  # sixteenth-note grid in 4/4
BEATS_PER_BAR = 4

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)

# GM percussion keys (channel 10).
KICK, RIM, SNARE, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE = 45, 47, 50, 49, 51

#: One-syllable words that espeak-ng pronounces clearly and that carry a long vowel to sing on.
WORDS = (
    "love", "night", "light", "day", "way", "home", "heart", "fire", "run", "dream",
    "rain", "sky", "blue", "gold", "time", "sun", "hold", "stay", "go", "fall",
    "free", "see", "me", "you", "know", "oh", "yeah", "now", "down", "high",
    "low", "shine", "mind", "soul", "road", "moon", "name", "stone", "wave", "sea",
    "bright", "slow", "song", "true", "wild", "cold", "dance", "fly", "rise", "alone",
)
#: Words that fill a chorus hook more often than the rest.
HOOK_WORDS = ("oh", "yeah", "love", "night", "home", "fly", "high", "free")


@dataclass(frozen=True)
class Note:
    """One instrument note. Times in beats (quarter notes) from the song start."""

    start_beats: float
    duration_beats: float
    pitch: int  # MIDI note number (for drums: the GM percussion key)
    velocity: int  # 1..127


@dataclass(frozen=True)
class VocalNote:
    """One sung note. ``syllable`` is the word sung; ``slur`` means it continues the previous
    note's syllable (a melisma: same vowel, new pitch)."""

    start_beats: float
    duration_beats: float
    pitch: int
    velocity: int
    syllable: str
    slur: bool = False


@dataclass
class Track:
    """One MIDI track: an instrument on one channel, belonging to one stem."""

    name: str
    stem: str
    channel: int  # 0..15; 9 is GM percussion
    program: int  # GM program (for channel 9: the drum kit number)
    notes: list[Note] = field(default_factory=list)
    volume: int = 100  # CC7
    pan: int = 64  # CC10, 0 = left, 64 = centre, 127 = right


@dataclass(frozen=True)
class Chord:
    """A chord: root pitch class, its tones as pitch classes, and where it sounds (beats)."""

    start_beats: float
    duration_beats: float
    root_pc: int
    tones_pc: tuple[int, ...]  # root first
    symbol: str


@dataclass(frozen=True)
class Section:
    name: str  # "intro", "verse", "chorus", "outro"
    start_bar: int
    bars: int


@dataclass(frozen=True)
class Style:
    """A genre-ish recipe: tempo range, feel, drum/bass/comp patterns and instrument choices.

    Patterns are 16-step strings (one bar of sixteenths). Drums: ``X`` accent, ``x`` normal,
    ``o`` ghost, ``.`` rest. Bass: ``R`` root, ``O`` octave, ``F`` fifth, ``A`` approach to the
    next chord's root, ``-`` hold, ``.`` rest. Comp: ``C`` chord, ``a`` arpeggio note, ``-`` hold.
    """

    name: str
    tempo_range_bpm: tuple[float, float]
    swing: float  # 0 straight .. 1 full triplet swing
    swing_unit: int  # 2 = eighth-note swing, 1 = sixteenth-note swing
    drums: dict[int, tuple[str, ...]]  # GM key -> alternative bar patterns
    kits: tuple[int, ...]
    bass_patterns: tuple[str, ...]
    bass_programs: tuple[int, ...]
    comp_patterns: tuple[str, ...]
    comp_programs: tuple[int, ...]
    pad_programs: tuple[int, ...]  # empty: no pad
    minor_probability: float
    sevenths: bool
    melody_cells: tuple[tuple[int, ...], ...]  # beat-long rhythm cells in 16ths; negative = rest


_CELLS_BUSY = ((2, 2), (2, 2), (3, 1), (4,), (1, 1, 2), (-2, 2), (2, 1, 1), (4,))
_CELLS_CALM = ((4,), (4,), (2, 2), (8,), (-2, 2), (3, 1), (8,))

STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style(
            "pop", (92, 124), 0.0, 2,
            {KICK: ("x.......x.x.....", "x.......x...x..."), SNARE: ("....X.......X...",),
             CLOSED_HAT: ("x.x.x.x.x.x.x.x.", "x.xox.x.x.xox.x.")},
            (0, 8), ("R---R---R-R-F-A-", "R-.RR-.R-RR-F-O-"), (33, 38, 34),
            ("C-----C---C-----", "C---C---C---C---", "a-a-a-a-a-a-a-a-"), (0, 4, 25),
            (48, 89, 50), 0.35, False, _CELLS_BUSY,
        ),
        Style(
            "rock", (100, 150), 0.0, 2,
            {KICK: ("x.....x.x.......", "x.x...x.x.x....."), SNARE: ("....X.......X...",),
             CLOSED_HAT: ("x.x.x.x.x.x.x.x.",), }, (16, 0),
            ("R-R-R-R-R-R-R-R-", "R-R-R-R-F-F-O-A-"), (34, 33),
            ("C-C-C-C-C-C-C-C-", "C-------C-C-C---"), (29, 30, 27), (16, ), 0.45, False,
            _CELLS_BUSY,
        ),
        Style(
            "funk", (96, 116), 0.15, 1,
            {KICK: ("x..x..x...x..x..", "x.x...x..x.x...."), SNARE: ("....X..o.o..X..o",),
             CLOSED_HAT: ("xoxoxoxoxoxoxoxo", "xxxxxxxxxxxxxxxx")}, (0, 8),
            ("R--O..RR.F.R.O-A", "R-.R..O.R-.FR.A."), (36, 33, 37),
            (".C..C.C..C.C..C.", "C.C..C.C.C..C.C."), (27, 28, 4), (61, 16), 0.5, True,
            _CELLS_BUSY,
        ),
        Style(
            "house", (118, 128), 0.0, 2,
            {KICK: ("x...x...x...x...",), CLAP: ("....x.......x...",),
             OPEN_HAT: ("..x...x...x...x.",), CLOSED_HAT: ("x.x.x.x.x.x.x.x.", "xxxxxxxxxxxxxxxx")},
            (25, 24), ("..R-..R-..R-..R-", "..R-..O-..R-..F-"), (38, 39),
            ("..C...C...C...C.", ".C.C..C..C.C..C."), (0, 2, 81), (89, 90, 50), 0.5, True,
            _CELLS_BUSY,
        ),
        Style(
            "hiphop", (78, 96), 0.35, 1,
            {KICK: ("x......x..x.....", "x.....x...x..x.."), SNARE: ("....X.......X...",),
             CLOSED_HAT: ("x.x.x.x.x.x.x.x.", "xxx.x.xxx.x.x.xx")}, (25, 0),
            ("R-----.R..R---..", "R-----..R-O-----"), (38, 33, 39),
            ("C-------C-------", "C-----C-----C---"), (4, 5, 11), (89, 48), 0.6, True,
            _CELLS_BUSY,
        ),
        Style(
            "ballad", (62, 80), 0.0, 2,
            {KICK: ("x.......x.......", "x.......x..x...."), RIM: ("....x.......x...",),
             CLOSED_HAT: ("x...x...x...x...", "x.x.x.x.x.x.x.x.")}, (0, 40),
            ("R-------F-------", "R-------R---F---"), (32, 33, 35),
            ("a-a-a-a-a-a-a-a-", "C---------------", "C-------C-------"), (0, 24, 1),
            (48, 49, 89), 0.4, False, _CELLS_CALM,
        ),
        Style(
            "jazz", (104, 168), 0.65, 2,
            {RIDE: ("x...x.x.x...x.x.",), PEDAL_HAT: ("....x.......x...",),
             KICK: ("x...............", "........x......."), SNARE: ("......o.......o.", "..........o.....")},
            (32, 40), ("R---N---F---A---", "R---F---O---A---"), (32,),
            ("C-....C-..C-....", "..C-....C-......"), (0, 4, 26), (), 0.35, True,
            _CELLS_BUSY,
        ),
        Style(
            "reggae", (70, 90), 0.2, 1,
            {KICK: ("........x.......",), RIM: ("........x.......",),
             CLOSED_HAT: ("x.x.x.x.x.x.x.x.",)}, (0, 8),
            ("..R-R.F...R-F...", "R-..R-F.O-..F-A."), (33, 34),
            ("....C-......C-..", "..C...C...C...C."), (27, 4, 16), (16,), 0.4, False,
            _CELLS_CALM,
        ),
    )
}

# Progressions as 0-based scale degrees, one chord per bar.
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3), (1, 4, 0, 0), (0, 2, 3, 4),
              (3, 0, 4, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 6, 2), (0, 6, 5, 6), (0, 3, 4, 0), (0, 5, 3, 4), (5, 6, 0, 0)),
}
_NOTE_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")

#: Singer registers (MIDI): low/high of the melody and the espeak-ng voices that suit it.
SINGERS: dict[str, tuple[tuple[int, int], tuple[str, ...]]] = {
    "low": ((45, 64), ("en-us", "en-gb", "en-us+m3", "en+m7")),
    "high": ((57, 76), ("en-us+f3", "en-us+f2", "en+f4", "en-gb+f3")),
}


@dataclass
class Score:
    """A whole song as data. Times are in beats; ``seconds(beats)`` converts at ``tempo_bpm``."""

    seed: int
    style: str
    tempo_bpm: float
    key_pc: int
    mode: str  # "major" | "minor"
    bars: int
    sections: list[Section]
    chords: list[Chord]
    tracks: list[Track]
    melody: list[VocalNote]
    singer: str  # "low" | "high"
    voice: str  # espeak-ng voice name

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.tempo_bpm

    def seconds(self, beats: float) -> float:
        return beats * self.seconds_per_beat

    @property
    def key_name(self) -> str:
        return f"{_NOTE_NAMES[self.key_pc]} {self.mode}"

    def tracks_for(self, stem: str) -> list[Track]:
        return [t for t in self.tracks if t.stem == stem]

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary (for ``SynthSong.info`` and demo metadata)."""
        return {
            "seed": self.seed,
            "style": self.style,
            "tempo_bpm": round(self.tempo_bpm, 3),
            "key": self.key_name,
            "bars": self.bars,
            "sections": [f"{s.name}:{s.start_bar}+{s.bars}" for s in self.sections],
            "progression": [c.symbol for c in self.chords[: min(len(self.chords), 8)]],
            "tracks": [
                {"name": t.name, "stem": t.stem, "channel": t.channel, "program": t.program,
                 "notes": len(t.notes)}
                for t in self.tracks
            ],
            "melody_notes": len(self.melody),
            "lyrics": " ".join(n.syllable for n in self.melody if not n.slur),
            "singer": self.singer,
            "voice": self.voice,
        }


def _chord(key_pc: int, scale: tuple[int, ...], degree: int, sevenths: bool) -> tuple[int, tuple[int, ...], str]:
    """Diatonic triad (or seventh chord) on ``degree`` of the scale: (root pc, tones, symbol)."""
    count = 4 if sevenths else 3
    tones_rel = [scale[(degree + 2 * i) % 7] + 12 * ((degree + 2 * i) // 7) for i in range(count)]
    root = (key_pc + tones_rel[0]) % 12
    tones = tuple((key_pc + t) % 12 for t in tones_rel)
    third = (tones_rel[1] - tones_rel[0]) % 12
    fifth = (tones_rel[2] - tones_rel[0]) % 12
    quality = "m" if third == 3 else ""
    if fifth == 6:
        quality = "dim"
    if sevenths:
        seventh = (tones_rel[3] - tones_rel[0]) % 12
        quality += "7" if seventh == 10 and quality != "" else ("maj7" if seventh == 11 else "7")
    return root, tones, _NOTE_NAMES[root] + quality


def _sections(rng: np.random.Generator, bars: int) -> list[Section]:
    """Intro (short songs: none), then verses and choruses of 4 bars, an outro bar if room."""
    intro = 0 if bars <= 6 else (1 if bars <= 12 else 2)
    out = [Section("intro", 0, intro)] if intro else []
    bar = intro
    names = ["verse", "chorus"] if rng.random() < 0.7 else ["chorus", "verse"]
    i = 0
    while bar < bars:
        length = min(4 if bars - bar < 12 else int(rng.choice([4, 8])), bars - bar)
        out.append(Section(names[i % 2], bar, length))
        bar += length
        i += 1
    return out


def _step_to_beats(step: float, style: Style) -> float:
    """Grid step (sixteenths, may be fractional) to beats, with the style's swing on off-steps."""
    beats = step / 4.0
    if style.swing > 0:
        unit = style.swing_unit  # 2: swing the 'and' eighths; 1: swing the odd sixteenths
        if int(step) % (2 * unit) == unit and float(step).is_integer():
            beats += style.swing * unit / 12.0  # full swing pushes the off-step to the triplet
    return beats


def _drums(rng: np.random.Generator, style: Style, sections: list[Section], bars: int) -> Track:
    track = Track("drums", "drums", 9, int(rng.choice(style.kits)))
    chosen = {key: pats[int(rng.integers(len(pats)))] for key, pats in style.drums.items()}
    alt = {key: pats[int(rng.integers(len(pats)))] for key, pats in style.drums.items()}
    section_starts = {s.start_bar: s for s in sections}
    fill_bars = {s.start_bar + s.bars - 1 for s in sections if s.bars >= 4}
    vel = {"X": 118, "x": 96, "o": 52}
    for bar in range(bars):
        sec = next(s for s in sections if s.start_bar <= bar < s.start_bar + s.bars)
        patterns = alt if sec.name == "chorus" else chosen
        if sec.name == "intro" and bar == 0 and bars > 6:
            patterns = {k: v for k, v in chosen.items() if k in (CLOSED_HAT, RIDE, PEDAL_HAT, KICK)}
        for key, pat in patterns.items():
            for step, ch in enumerate(pat):
                if ch == ".":
                    continue
                if bar in fill_bars and step >= 12 and key not in (RIDE, PEDAL_HAT):
                    continue  # the fill owns the last beat
                v = vel[ch] + int(rng.integers(-8, 9))
                if key in (CLOSED_HAT, RIDE) and step % 4 != 0:
                    v -= 14  # hats lean on the beat
                start = bar * 4 + _step_to_beats(step, style) + float(rng.normal(0, 0.006))
                track.notes.append(Note(max(start, 0.0), 0.2, key, int(np.clip(v, 20, 127))))
        if bar in fill_bars:
            toms = (HIGH_TOM, MID_TOM, LOW_TOM, SNARE)
            kind = int(rng.integers(3))
            for k in range(4):
                key = SNARE if kind == 0 else toms[k]
                start = bar * 4 + 3 + k * 0.25
                track.notes.append(Note(start, 0.2, key, int(80 + 10 * k + rng.integers(-6, 7))))
        if bar in section_starts and bar > 0:
            track.notes.append(Note(bar * 4.0, 1.0, CRASH, int(105 + rng.integers(-6, 7))))
    return track


def _bass(rng: np.random.Generator, style: Style, chords: list[Chord], key_pc: int, scale: tuple[int, ...]) -> Track:
    track = Track("bass", "bass", 1, int(rng.choice(style.bass_programs)), pan=64)
    pattern = style.bass_patterns[int(rng.integers(len(style.bass_patterns)))]
    base = 28 + ((chords[0].root_pc - 4) % 12)  # lowest root in E1..D#2
    for i, chord in enumerate(chords):
        nxt = chords[(i + 1) % len(chords)]
        root = 28 + ((chord.root_pc - 4) % 12)
        if root > base + 7:
            root -= 12  # keep the line within a compact range
        if root < 28:
            root += 12
        nxt_root = 28 + ((nxt.root_pc - 4) % 12)
        step = 0
        while step < STEPS_PER_BAR:
            ch = pattern[step]
            if ch in "-.":
                step += 1
                continue
            length = 1
            while step + length < STEPS_PER_BAR and pattern[step + length] == "-":
                length += 1
            if ch == "R":
                pitch = root
            elif ch == "O":
                pitch = root + 12
            elif ch == "F":
                pitch = root + 7
            elif ch == "A":
                pitch = nxt_root + (1 if rng.random() < 0.5 else -1)
            else:  # "N": a scale neighbour above the root
                pitch = root + (scale[1] - scale[0] if rng.random() < 0.5 else scale[2] - scale[0])
            start = chord.start_beats + _step_to_beats(step, style) + float(rng.normal(0, 0.004))
            dur = length / 4.0 * 0.9
            vel = int(np.clip(92 + (12 if step % 4 == 0 else 0) + rng.integers(-8, 9), 30, 127))
            track.notes.append(Note(max(start, 0.0), dur, int(pitch), vel))
            step += length
    return track


def _voicing(chord: Chord, low: int, high: int) -> list[int]:
    """Close voicing of the chord's tones within [low, high], root at the bottom if it fits."""
    out: list[int] = []
    base = low + ((chord.root_pc - low) % 12)
    for pc in chord.tones_pc:
        p = base + ((pc - chord.root_pc) % 12)
        while p > high:
            p -= 12
        out.append(p)
    return sorted(set(out))


def _comp(rng: np.random.Generator, style: Style, chords: list[Chord], sections: list[Section]) -> list[Track]:
    comp = Track("comp", "other", 2, int(rng.choice(style.comp_programs)), pan=int(rng.integers(40, 90)))
    pattern = style.comp_patterns[int(rng.integers(len(style.comp_patterns)))]
    low = int(rng.integers(52, 58))
    for chord in chords:
        voicing = _voicing(chord, low, low + 14)
        arp_index = 0
        step = 0
        while step < STEPS_PER_BAR:
            ch = pattern[step]
            if ch in "-.":
                step += 1
                continue
            length = 1
            while step + length < STEPS_PER_BAR and pattern[step + length] == "-":
                length += 1
            start = chord.start_beats + _step_to_beats(step, style) + float(rng.normal(0, 0.004))
            dur = length / 4.0 * 0.92
            vel = int(np.clip(74 + (10 if step % 8 == 0 else 0) + rng.integers(-8, 9), 25, 127))
            if ch == "C":
                for k, p in enumerate(voicing):
                    comp.notes.append(Note(max(start + 0.004 * k, 0.0), dur, p, vel))
            else:  # arpeggio: walk the voicing up and down
                order = voicing + voicing[-2:0:-1]
                comp.notes.append(Note(max(start, 0.0), dur * 1.6, order[arp_index % len(order)], vel))
                arp_index += 1
            step += length
    tracks = [comp]
    if style.pad_programs and rng.random() < 0.75:
        pad = Track("pad", "other", 3, int(rng.choice(style.pad_programs)), volume=82,
                    pan=int(rng.integers(30, 100)))
        chorus_only = rng.random() < 0.4
        for chord in chords:
            bar = int(chord.start_beats // 4)
            sec = next(s for s in sections if s.start_bar <= bar < s.start_bar + s.bars)
            if chorus_only and sec.name != "chorus":
                continue
            for p in _voicing(chord, 60, 74):
                pad.notes.append(Note(chord.start_beats, chord.duration_beats * 0.98, p, 64))
        if pad.notes:
            tracks.append(pad)
    return tracks


def _melody(
    rng: np.random.Generator, style: Style, chords: list[Chord], sections: list[Section],
    key_pc: int, scale: tuple[int, ...], singer_range: tuple[int, int], tempo_bpm: float,
) -> list[VocalNote]:
    """A sung line: phrases of about two bars with rests between, chord tones on strong beats."""
    lo, hi = singer_range
    # Scale pitches available to the singer, and the per-chord chord tones among them.
    pool = [p for p in range(lo, hi + 1) if (p - key_pc) % 12 in scale]
    min_syllable_beats = 0.16 / (60.0 / tempo_bpm)  # no syllable shorter than 160 ms
    notes: list[VocalNote] = []
    centre_verse = lo + (hi - lo) * 0.4
    phrase_rhythms: list[list[tuple[float, float]]] = []
    contours: list[tuple[int, float]] = []  # (shape, span in semitones) per phrase
    # A song repeats its words: a small vocabulary per song (and fewer words to speak).
    verse_words = [str(w) for w in rng.choice(WORDS, size=8, replace=False)]
    hook_words = [str(w) for w in rng.choice(HOOK_WORDS, size=4, replace=False)]
    prev = int(pool[len(pool) // 2])
    for sec in sections:
        if sec.name == "intro":
            continue
        centre = centre_verse + (3.5 if sec.name == "chorus" else 0.0)
        phrase_bars = 2
        for phrase_start in range(sec.start_bar, sec.start_bar + sec.bars, phrase_bars):
            bars_here = min(phrase_bars, sec.start_bar + sec.bars - phrase_start)
            sung_beats = bars_here * 4 - int(rng.integers(1, 3))  # leave a breath at the end
            if sung_beats < 2:
                continue
            # Rhythm and contour: reuse the phrase before last (song-like repetition) half of
            # the time; otherwise a new rhythm and a new contour (arch, rise, fall or wave).
            if len(phrase_rhythms) >= 2 and rng.random() < 0.5:
                rhythm = [r for r in phrase_rhythms[-2] if r[0] < sung_beats]
                contour = contours[-2]
            else:
                contour = (int(rng.integers(4)), float(rng.uniform(5, 10)))
                rhythm = []
                beat = float(rng.choice([0.0, 0.0, 0.5]))
                while beat < sung_beats:
                    cell = style.melody_cells[int(rng.integers(len(style.melody_cells)))]
                    pos = beat
                    for d in cell:
                        if d > 0 and pos < sung_beats:
                            rhythm.append((pos, d / 4.0))
                        pos += abs(d) / 4.0
                    beat = pos
                # Merge syllables too short to sing into their predecessor.
                merged: list[tuple[float, float]] = []
                for start, dur in rhythm:
                    if merged and dur < min_syllable_beats:
                        s0, d0 = merged[-1]
                        merged[-1] = (s0, d0 + dur)
                    else:
                        merged.append((start, dur))
                rhythm = merged
                if rhythm:  # the last note of the phrase is held into the breath
                    s_last, _ = rhythm[-1]
                    rhythm[-1] = (s_last, max(sung_beats - s_last, 1.0))
            phrase_rhythms.append(rhythm)
            contours.append(contour)
            words = hook_words if sec.name == "chorus" else verse_words
            for i, (start_in_phrase, dur) in enumerate(rhythm):
                start = phrase_start * 4 + start_in_phrase
                chord = chords[min(int(start // 4), len(chords) - 1)]
                strong = (start_in_phrase % 2.0) == 0.0
                last = i == len(rhythm) - 1
                if strong or last:
                    cands = [p for p in pool if p % 12 in chord.tones_pc]
                else:
                    cands = pool
                # Follow the phrase's contour, prefer steps to leaps, avoid long repetitions.
                u = start_in_phrase / max(sung_beats, 1.0)
                shape, span = contour
                curve = (np.sin(np.pi * u) * 2 - 1, 2 * u - 1, 1 - 2 * u, np.sin(2 * np.pi * u))[shape]
                target = centre + span / 2 * curve
                c = np.array(cands, dtype=float)
                cost = 0.7 * np.abs(c - target) + 0.25 * np.abs(c - prev)
                cost += 3.0 * (np.abs(c - prev) > 7)  # leaps beyond a fifth are rare
                cost += 1.2 * (c == prev)
                cost += rng.random(len(cands)) * 2.0
                pitch = int(cands[int(np.argmin(cost))])
                slur = i > 0 and not last and rng.random() < 0.12
                syllable = notes[-1].syllable if slur and notes else str(rng.choice(words))
                vel = int(np.clip(90 + (8 if strong else 0) + rng.integers(-10, 11), 40, 127))
                dur_sung = max(dur - 0.06, min_syllable_beats * 0.8)
                notes.append(VocalNote(start, dur_sung, pitch, vel, syllable, slur))
                prev = pitch
    return notes


def generate_score(seed: int, duration_seconds: float, style: str | None = None) -> Score:
    """A seeded song long enough to fill ``duration_seconds`` (plus one bar of tail).

    Args:
        seed: any integer; the same seed always gives the same score.
        duration_seconds: the length the song will be cut to (> 0).
        style: a key of :data:`STYLES`, or None for a seeded choice.

    Returns:
        The :class:`Score`.
    """
    if duration_seconds <= 0:
        raise ValueError("duration_seconds must be positive")
    if style is not None and style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {sorted(STYLES)}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5C0E])
    style_name = style if style is not None else str(rng.choice(sorted(STYLES)))
    st = STYLES[style_name]
    tempo = float(np.round(rng.uniform(*st.tempo_range_bpm), 1))
    key_pc = int(rng.integers(12))
    mode = "minor" if rng.random() < st.minor_probability else "major"
    scale = MINOR if mode == "minor" else MAJOR
    bar_seconds = 4 * 60.0 / tempo
    bars = int(np.ceil(duration_seconds / bar_seconds)) + 1
    sections = _sections(rng, bars)
    progs = _PROGRESSIONS[mode]
    verse_prog = progs[int(rng.integers(len(progs)))]
    chorus_prog = progs[int(rng.integers(len(progs)))]
    chords: list[Chord] = []
    for sec in sections:
        prog = chorus_prog if sec.name == "chorus" else verse_prog
        for b in range(sec.bars):
            root, tones, symbol = _chord(key_pc, scale, prog[b % 4], st.sevenths)
            chords.append(Chord((sec.start_bar + b) * 4.0, 4.0, root, tones, symbol))
    singer = "high" if rng.random() < 0.5 else "low"
    singer_range, voices = SINGERS[singer]
    voice = str(rng.choice(voices))
    tracks = [_drums(rng, st, sections, bars), _bass(rng, st, chords, key_pc, scale)]
    tracks += _comp(rng, st, chords, sections)
    melody = _melody(rng, st, chords, sections, key_pc, scale, singer_range, tempo)
    return Score(seed, style_name, tempo, key_pc, mode, bars, sections, chords, tracks, melody,
                 singer, voice)
