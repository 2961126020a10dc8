"""Per-stem instrument rendering with the fluidsynth CLI and a General MIDI soundfont.

Each stem's tracks are written to their own MIDI file and rendered by their own fluidsynth
process (the stems run in parallel), so a stem contains exactly its instruments. Rendering is
deterministic: fluidsynth's reverb and chorus are off (our seeded effects replace them), it runs
single-threaded, and it writes 32-bit float WAV so there is no dither noise.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.synth.errors import SynthUnavailable, require_tool
from engine.synth.midi import write_midi
from engine.synth.score import Track

#: Where Debian, Fedora, Arch and Homebrew put General MIDI soundfonts, best first.
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM2-2.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/MuseScore_General.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
    "/usr/local/share/soundfonts/default.sf2",
)

#: Environment variable that overrides the soundfont search.
SOUNDFONT_ENV = "UNMIX_SOUNDFONT"

#: Licences of the soundfonts we know, for provenance in metadata.
SOUNDFONT_LICENCES = {
    "FluidR3_GM.sf2": "MIT (Frank Wen; Debian package fluid-soundfont-gm)",
    "TimGM6mb.sf2": "GPL-2 (Tim Brechbill; Debian package timgm6mb-soundfont)",
    "MuseScore_General.sf2": "MIT (S. Christian Collins; Debian package musescore-general-soundfont)",
}

# fluidsynth's master gain. Float output cannot clip, and the mixer sets levels afterwards.
_FLUID_GAIN = 0.5


def find_soundfont(explicit: str | Path | None = None) -> Path:
    """The General MIDI soundfont to render with.

    Order: ``explicit``, then ``$UNMIX_SOUNDFONT``, then :data:`SOUNDFONT_PATHS`.

    Raises:
        SynthUnavailable: none found (names the paths tried and the Debian package).
    """
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise SynthUnavailable("soundfont not found", p)
        return p
    env = os.environ.get(SOUNDFONT_ENV)
    if env:
        p = Path(env)
        if not p.is_file():
            raise SynthUnavailable(f"soundfont named by ${SOUNDFONT_ENV} not found", p)
        return p
    for candidate in SOUNDFONT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate).resolve()
    raise SynthUnavailable(
        "no General MIDI soundfont found (tried "
        + ", ".join(SOUNDFONT_PATHS)
        + f"); install the Debian package 'fluid-soundfont-gm' or set ${SOUNDFONT_ENV}"
    )


def fluidsynth_binary() -> str:
    """Path of the fluidsynth CLI; :class:`SynthUnavailable` if it is not installed."""
    return require_tool("fluidsynth", "rendering instruments needs fluidsynth (Debian package 'fluidsynth')")


def fluidsynth_version() -> str:
    """``fluidsynth --version``'s first line (for provenance)."""
    try:
        text = subprocess.run(
            [fluidsynth_binary(), "--version"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return text.strip().splitlines()[0] if text.strip() else "unknown"


def _command(binary: str, soundfont: Path, midi: Path, wav: Path, sample_rate: int) -> list[str]:
    return [
        binary, "-n", "-i", "-q",
        "-R", "0", "-C", "0",  # no built-in reverb/chorus: our effects are seeded
        "-o", "synth.cpu-cores=1",
        "-g", str(_FLUID_GAIN),
        "-r", str(sample_rate),
        "-O", "float", "-T", "wav",  # float output: no dither, no clipping
        "-F", str(wav),
        str(soundfont), str(midi),
    ]


class InstrumentRender:
    """fluidsynth processes rendering stems in the background (one process per stem).

    Use as a context manager: start it, do other work (the singer), then :meth:`result`. Leaving
    the block kills processes that are still running and removes the temporary files.

    Args:
        stem_tracks: stem name -> its tracks (empty: a silent stem).
        tempo_bpm: the score's tempo.
        end_beats: where the MIDI files end (beats).
        frames: length of every returned stem (cut or zero-padded).
        sample_rate: output rate, 8000..96000 Hz (fluidsynth's range).
        soundfont: a General MIDI .sf2.
    """

    def __init__(
        self,
        stem_tracks: dict[str, Sequence[Track]],
        tempo_bpm: float,
        end_beats: float,
        frames: int,
        sample_rate: int,
        soundfont: Path,
    ) -> None:
        if not 8000 <= sample_rate <= 96000:
            raise ValueError(f"fluidsynth renders at 8000..96000 Hz, not {sample_rate}")
        self.frames, self.sample_rate = frames, sample_rate
        binary = fluidsynth_binary()
        self._tmp = tempfile.TemporaryDirectory(prefix="unmix-synth-")
        self._silent = [s for s, t in stem_tracks.items() if not any(tr.notes for tr in t)]
        self._procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        try:
            for stem, tracks in stem_tracks.items():
                if stem in self._silent:
                    continue
                midi = write_midi(Path(self._tmp.name) / f"{stem}.mid", tracks, tempo_bpm, end_beats)
                wav = Path(self._tmp.name) / f"{stem}.wav"
                cmd = _command(binary, soundfont, midi, wav, sample_rate)
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                self._procs.append((stem, wav, proc))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> InstrumentRender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill unfinished renders and delete the temporary files."""
        for _, _, proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._tmp.cleanup()

    def result(self) -> dict[str, np.ndarray]:
        """Wait for the renders. Returns stem name -> float32 ``(2, frames)``."""
        out = {s: np.zeros((2, self.frames), dtype=np.float32) for s in self._silent}
        for stem, wav, proc in self._procs:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0 or not wav.is_file():
                raise SynthUnavailable(
                    f"fluidsynth failed on the {stem} stem (exit {proc.returncode}): "
                    f"{err.decode(errors='replace').strip()[-300:]}"
                )
            data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
            if rate != self.sample_rate:
                raise SynthUnavailable(f"fluidsynth wrote {rate} Hz instead of {self.sample_rate} Hz")
            audio = np.zeros((2, self.frames), dtype=np.float32)
            n = min(self.frames, data.shape[0])
            audio[:, :n] = data[:n, :2].T if data.shape[1] >= 2 else np.repeat(data[:n, :1].T, 2, 0)
            out[stem] = audio
        return out


def render_stems(
    stem_tracks: dict[str, Sequence[Track]],
    tempo_bpm: float,
    end_beats: float,
    frames: int,
    sample_rate: int,
    soundfont: Path,
) -> dict[str, np.ndarray]:
    """Render each stem's tracks with fluidsynth (in parallel) and wait: stem -> ``(2, frames)``.

    See :class:`InstrumentRender` for the arguments.
    """
    with InstrumentRender(stem_tracks, tempo_bpm, end_beats, frames, sample_rate, soundfont) as job:
        return job.result()
