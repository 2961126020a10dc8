"""The one song synthesizer: seeded scores rendered to exact stems, mixed, with acapellas.

Serves tests, benchmarks and training alike::

    song = synthesize_song(seed=7, duration_seconds=30.0)        # SynthSong
    song.mix, song.stems["vocals"], song.score, song.info
    acapella, truth = make_acapella(song, offset_seconds=1.3479, gain_db=-3.7)

Needs fluidsynth + a General MIDI soundfont (instruments), espeak-ng and pyworld (the singer);
a missing one raises :class:`SynthUnavailable` naming the package to install.
"""

from engine.synth.errors import SynthUnavailable
from engine.synth.score import STEMS, STYLES, Score, generate_score
from engine.synth.song import SynthSong, make_acapella, place_acapella, synthesize_song

__all__ = [
    "STEMS",
    "STYLES",
    "Score",
    "SynthSong",
    "SynthUnavailable",
    "generate_score",
    "make_acapella",
    "place_acapella",
    "synthesize_song",
]
