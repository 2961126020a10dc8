"""A sung line from a TTS voice: espeak-ng (formant voices) or flite (voices built from recordings
of real speakers) speaks each syllable, WORLD re-sings it on the melody.

Per syllable (cached per word within a call): the TTS speaks the word (espeak-ng at 22.05 kHz,
flite at 16 kHz); WORLD
(``pyworld``: DIO + StoneMask F0, CheapTrick spectral envelope, D4C aperiodicity, 5 ms frames)
analyses it. Per note the envelope frames are time-warped to the note length — onset consonant
and vowel transitions at natural speed, the steady middle of the vowel stretched — and the F0 is
replaced by the melody contour (raised-cosine glides between legato notes, a scoop into detached
notes, delayed vibrato, slow pitch drift). The envelope can be formant-shifted, breathiness
raises the aperiodicity, and above the speech's band (11 or 8 kHz) the envelope is extended with a falling
tilt and mostly-aperiodic "air" so the voice is not band-limited at the output rate. Each phrase
is synthesised once with WORLD at the output rate.

Everything is deterministic: espeak-ng, flite and WORLD have no hidden randomness, and every random
choice here comes from the generator passed in.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import soundfile as sf

from engine.errors import Cancelled
from engine.synth.errors import SynthUnavailable, require_tool
from engine.synth.score import VocalNote

FRAME_PERIOD_MS = 5.0
_FRAME_SECONDS = FRAME_PERIOD_MS / 1000.0
_SILENT_POWER = 1e-14  # envelope power of frames where nobody sings (≈ −140 dB)


def load_pyworld() -> Any:
    """Import ``pyworld``; raise :class:`SynthUnavailable` with an install hint if it is missing.

    pyworld 0.3.x imports ``pkg_resources``, which warns on recent setuptools; the warning is
    about pyworld's packaging, not our use, so it is silenced here.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pyworld
    except ImportError as exc:
        raise SynthUnavailable(
            "the singer needs pyworld (pip install 'setuptools<81' pyworld)"
        ) from exc
    return pyworld


def espeak_binary() -> str:
    """Path of espeak-ng (or espeak); :class:`SynthUnavailable` if neither is installed."""
    for name in ("espeak-ng", "espeak"):
        found = shutil.which(name)
        if found:
            return found
    raise SynthUnavailable("the singer needs espeak-ng (Debian package 'espeak-ng')")


def espeak_version() -> str:
    """``espeak-ng --version``'s text (for provenance)."""
    try:
        text = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return text.strip().split("  Data at")[0] if text.strip() else "unknown"


@dataclass(frozen=True)
class SingerSettings:
    """How the line is sung. Pitch units are cents; times seconds.

    Attributes:
        voice: espeak-ng voice (e.g. ``"en-us+f3"``) or ``"flite:<name>"`` (e.g. ``"flite:slt"``).
        speak_rate_wpm: espeak-ng speaking rate (slower gives longer vowels to stretch).
        formant_shift: spectral-envelope frequency scale (>1 raises formants: smaller head).
        breathiness: 0..1, how much of the voiced spectrum becomes aperiodic (breath).
        vibrato_rate_hz, vibrato_depth_cents: vibrato on notes longer than ~0.3 s.
        vibrato_delay_seconds: vibrato fades in after this much of each note.
        glide_seconds: length of the pitch glide between legato notes.
        scoop_cents: how far below the target a detached note starts.
        drift_cents: standard deviation of the slow pitch wander.
        brightness_db_per_octave: envelope boost per octave from 3 to 8.5 kHz (then flat);
            espeak-ng's formant voices fall off steeply there, sung voices carry more presence.
        detune_cents: constant offset (used for doubled takes).
        delay_seconds: constant timing offset of the whole line (used for doubled takes).
    """

    voice: str = "en-us"
    speak_rate_wpm: int = 120
    formant_shift: float = 1.0
    breathiness: float = 0.15
    vibrato_rate_hz: float = 5.5
    vibrato_depth_cents: float = 35.0
    vibrato_delay_seconds: float = 0.22
    glide_seconds: float = 0.07
    scoop_cents: float = 70.0
    drift_cents: float = 6.0
    brightness_db_per_octave: float = 6.0
    detune_cents: float = 0.0
    delay_seconds: float = 0.0


def random_singer(rng: np.random.Generator, voice: str) -> SingerSettings:
    """Seeded singer settings around natural values for ``voice``."""
    return SingerSettings(
        voice=voice,
        speak_rate_wpm=int(rng.integers(105, 140)),
        formant_shift=float(rng.uniform(0.93, 1.08)),
        breathiness=float(rng.uniform(0.05, 0.4)),
        vibrato_rate_hz=float(rng.uniform(4.8, 6.3)),
        vibrato_depth_cents=float(rng.uniform(18, 50)),
        vibrato_delay_seconds=float(rng.uniform(0.15, 0.35)),
        glide_seconds=float(rng.uniform(0.04, 0.11)),
        scoop_cents=float(rng.uniform(30, 110)),
        drift_cents=float(rng.uniform(3, 10)),
        brightness_db_per_octave=float(rng.uniform(3, 7)),
    )


def doubled(settings: SingerSettings, rng: np.random.Generator) -> SingerSettings:
    """A second take of the same singer: slightly detuned, late, with its own vibrato."""
    return replace(
        settings,
        detune_cents=float(rng.choice([-1, 1]) * rng.uniform(5, 12)),
        delay_seconds=float(rng.uniform(0.012, 0.028)),
        vibrato_rate_hz=settings.vibrato_rate_hz * float(rng.uniform(0.93, 1.07)),
        vibrato_depth_cents=settings.vibrato_depth_cents * float(rng.uniform(0.6, 0.9)),
    )


@dataclass
class _Syllable:
    """WORLD analysis of one spoken word, trimmed to where it sounds."""

    log_sp: np.ndarray  # (frames, bins_out) log power envelope, already on the output grid
    ap: np.ndarray  # (frames, bins_out) aperiodicity 0..1
    onset: int  # frames of unvoiced onset before the voiced nucleus
    nucleus: int  # frames of the voiced nucleus
    coda: int  # frames after the nucleus (final consonant)
    level: float  # mean log power of the nucleus (for level normalisation)


#: Voices built from recordings of real speakers (Flite's CMU ARCTIC / diphone voices), used as
#: ``"flite:<name>"``. Their WORLD envelopes carry a real vocal tract's detail, which espeak-ng's
#: formant voices lack; a model trained on both hears real singers better.
RECORDED_VOICES: dict[str, tuple[str, ...]] = {
    "low": ("flite:rms", "flite:awb", "flite:kal16"),
    "high": ("flite:slt",),
}


def flite_binary() -> str:
    """Path of flite; :class:`SynthUnavailable` if it is not installed."""
    return require_tool("flite", "recorded-speaker voices need flite (Debian package 'flite')")


def recorded_voices_available() -> bool:
    """Whether the ``flite:`` voices can be spoken on this machine."""
    return shutil.which("flite") is not None


_FLITE_VOICES: tuple[str, ...] | None = None


def flite_voices() -> tuple[str, ...]:
    """The voices this flite has built in (``flite -lv``; flite itself falls back to its default
    voice on an unknown name without a word, so names are checked here)."""
    global _FLITE_VOICES
    if _FLITE_VOICES is None:
        text = subprocess.run([flite_binary(), "-lv"], capture_output=True, text=True, timeout=20).stdout
        _FLITE_VOICES = tuple(text.split(":", 1)[-1].split())
    return _FLITE_VOICES


def _speech_command(voice: str, rate_wpm: int, word: str, wav_path: str | None) -> list[str]:
    """The command that speaks ``word``: espeak-ng to stdout, or flite to ``wav_path``."""
    if voice.startswith("flite:"):
        if wav_path is None:
            raise ValueError("flite writes to a file")
        name = voice.split(":", 1)[1]
        if name not in flite_voices():
            raise SynthUnavailable(f"flite has no voice {name!r} (voice {voice!r}); it has: {', '.join(flite_voices())}")
        # flite speaks at about 170 words per minute; slower speech stretches its durations.
        stretch = 170.0 / max(rate_wpm, 40)
        return [flite_binary(), "-voice", name, "--setf",
                f"duration_stretch={stretch:.3f}", "-t", word, "-o", wav_path]
    return [espeak_binary(), "-v", voice, "-s", str(rate_wpm), "--stdout", word]


def _speak(words: list[str], voice: str, rate_wpm: int) -> dict[str, tuple[np.ndarray, int]]:
    """Speak each word (a few processes at a time). Returns word -> (audio, rate).

    ``voice`` is an espeak-ng voice, or ``"flite:<name>"`` for a recorded-speaker voice.
    """
    import tempfile

    out: dict[str, tuple[np.ndarray, int]] = {}
    batch = 8
    with tempfile.TemporaryDirectory(prefix="unmix_speak_") as folder:
        for i in range(0, len(words), batch):
            procs = []
            for j, w in enumerate(words[i : i + batch]):
                wav = f"{folder}/{i + j}.wav" if voice.startswith("flite:") else None
                cmd = _speech_command(voice, rate_wpm, w, wav)
                procs.append((w, wav, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
            for w, wav, proc in procs:
                data, err = proc.communicate(timeout=30)
                if wav is not None and proc.returncode == 0:
                    with open(wav, "rb") as fh:
                        data = fh.read()
                if proc.returncode != 0 or len(data) < 100:
                    raise SynthUnavailable(
                        f"could not speak {w!r} with voice {voice!r}: "
                        f"{err.decode(errors='replace').strip() or 'no audio'}"
                    )
                audio, rate = sf.read(io.BytesIO(data), dtype="float64")
                out[w] = (audio if audio.ndim == 1 else audio.mean(axis=1), int(rate))
    return out


def _frequency_map(rate_in: int, fft_in: int, rate_out: int, fft_out: int, formant_shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where each output envelope bin reads the analysis envelope.

    Returns ``(i0, i1, w, beyond)``: output bin k takes ``(1-w) * in[i0] + w * in[i1]``;
    ``beyond`` is how many octaves past the analysis band's top the bin lies (0 inside it).
    """
    f_out = np.arange(fft_out // 2 + 1) * rate_out / fft_out
    f_src = f_out / formant_shift  # formant shift: the envelope at f comes from f / shift
    top_hz = 0.95 * rate_in / 2  # the speech's band edge (keep away from its anti-alias slope)
    pos = np.minimum(f_src, top_hz) * fft_in / rate_in
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, fft_in // 2)
    w = pos - i0
    beyond = np.log2(np.maximum(f_src, top_hz) / top_hz)
    return i0, i1, w, beyond


def _analyse(
    pw: Any, audio: np.ndarray, rate: int, fmap: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    breathiness: float, brightness_db_per_octave: float, formant_shift: float, rate_out: int,
    fft_out: int,
) -> _Syllable:
    """WORLD analysis of a spoken word and conversion to the output envelope grid."""
    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, t = pw.dio(x, rate, frame_period=FRAME_PERIOD_MS, f0_floor=60.0, f0_ceil=600.0)
    f0 = pw.stonemask(x, f0, t, rate)
    fft_in = pw.get_cheaptrick_fft_size(rate)
    sp = pw.cheaptrick(x, f0, t, rate, fft_size=fft_in)
    ap = pw.d4c(x, f0, t, rate, fft_size=fft_in)
    power = sp.sum(axis=1)
    audible = np.flatnonzero(power > power.max() * 1e-3)
    voiced = np.flatnonzero(f0 > 0)
    if voiced.size < 3:
        # Whispered or unvoiced word: treat the loudest region as the nucleus.
        voiced = audible if audible.size >= 3 else np.arange(len(f0))
    first, last = int(audible[0]) if audible.size else 0, int(audible[-1]) if audible.size else len(f0) - 1
    v0, v1 = int(voiced[0]), int(voiced[-1]) + 1
    first, last = min(first, v0), max(last + 1, v1)
    i0, i1, w, beyond = fmap
    log_sp_in = np.log(np.maximum(sp[first:last], 1e-20))
    log_sp = log_sp_in[:, i0] * (1 - w) + log_sp_in[:, i1] * w
    # Above espeak's band: the edge level falling 24 dB per octave. Above 3 kHz: the brightness
    # boost. (Envelopes are power, so dB → natural log is × ln(10) / 10.)
    f_out = np.arange(fft_out // 2 + 1) * rate_out / fft_out
    octaves_above_3k = np.log2(np.clip(f_out / formant_shift, 3000.0, 8500.0) / 3000.0)
    log_sp += (np.log(10.0) / 10.0) * (brightness_db_per_octave * octaves_above_3k - 24.0 * beyond)[None, :]
    ap_in = ap[first:last]
    ap_out = ap_in[:, i0] * (1 - w) + ap_in[:, i1] * w
    air = np.clip(beyond * 4.0, 0.0, 1.0)  # fade to mostly aperiodic past the band edge
    ap_out = ap_out * (1 - air) + 0.9 * air
    # Breathiness: more aperiodic energy, more so in the upper spectrum.
    tilt = np.clip((f_out - 400.0) / 4000.0, 0.0, 1.0) ** 0.5
    ap_out = ap_out + breathiness * (1 - ap_out) * (0.25 + 0.75 * tilt)[None, :]
    nucleus_power = log_sp[v0 - first : v1 - first]
    level = float(np.log(np.exp(nucleus_power).sum(axis=1).mean() + 1e-30))
    return _Syllable(log_sp, np.clip(ap_out, 0.001, 0.999), v0 - first, v1 - v0, last - v1, level)


def _warp_nucleus(nucleus: int, target: int) -> np.ndarray:
    """Source frame positions (fractional) for a nucleus of ``nucleus`` frames sung over
    ``target`` frames: transitions at the ends keep natural speed, the middle stretches."""
    if target <= 0:
        return np.zeros(0)
    if target <= nucleus or nucleus < 6:
        return np.linspace(0, nucleus - 1, target)
    head = min(int(nucleus * 0.35), 16)  # ≤ 80 ms of onset transition
    tail = min(int(nucleus * 0.3), 16)
    head = min(head, target // 3)
    tail = min(tail, target // 3)
    middle = target - head - tail
    return np.concatenate([
        np.arange(head, dtype=float),
        np.linspace(head, nucleus - tail - 1, middle),
        np.arange(nucleus - tail, nucleus, dtype=float),
    ])


def _gather(arr: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Rows of ``arr`` at fractional positions ``pos`` (linear interpolation)."""
    p0 = np.clip(np.floor(pos).astype(np.int64), 0, len(arr) - 1)
    p1 = np.minimum(p0 + 1, len(arr) - 1)
    w = (pos - p0)[:, None]
    result: np.ndarray = arr[p0] * (1 - w) + arr[p1] * w
    return result


def _events(melody: list[VocalNote]) -> list[list[VocalNote]]:
    """Group notes into syllables: a note and the slurred notes that continue it."""
    events: list[list[VocalNote]] = []
    for note in melody:
        if note.slur and events:
            events[-1].append(note)
        else:
            events.append([note])
    return events


def _phrases(events: list[list[VocalNote]], spb: float, gap_seconds: float = 0.3) -> list[list[list[VocalNote]]]:
    """Group syllables into phrases separated by rests longer than ``gap_seconds``."""
    phrases: list[list[list[VocalNote]]] = []
    last_end = -1e9
    for ev in events:
        start = ev[0].start_beats * spb
        if not phrases or start - last_end > gap_seconds:
            phrases.append([])
        phrases[-1].append(ev)
        last_end = (ev[-1].start_beats + ev[-1].duration_beats) * spb
    return phrases


def _smooth_noise(rng: np.random.Generator, n: int, frames_per_knot: int) -> np.ndarray:
    """Slowly varying unit-variance noise: random knots, linearly interpolated."""
    knots = rng.standard_normal(n // frames_per_knot + 2)
    return np.interp(np.arange(n) / frames_per_knot, np.arange(len(knots)), knots)


def sing(
    melody: list[VocalNote],
    seconds_per_beat: float,
    total_seconds: float,
    sample_rate: int,
    settings: SingerSettings,
    rng: np.random.Generator,
    analysis_cache: dict[tuple[Any, ...], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Sing ``melody`` and return the dry mono vocal.

    Args:
        melody: notes with syllables (times in beats).
        seconds_per_beat: 60 / tempo.
        total_seconds: length of the returned signal.
        sample_rate: output rate (Hz).
        settings: the singer.
        rng: source of the pitch drift and per-note variation.
        analysis_cache: pass the same dict to several calls with the same voice (a doubled take)
            to speak and analyse each word once.
        cancel: checked before each phrase; True stops with :class:`Cancelled`.

    Returns:
        float32 ``(round(total_seconds * sample_rate),)``, peak-normalised to 0.5 (the mixer sets
        the final level).
    """
    pw = load_pyworld()
    total = int(round(total_seconds * sample_rate))
    out = np.zeros(total, dtype=np.float64)
    if not melody:
        return out.astype(np.float32)
    fft_out = int(pw.get_cheaptrick_fft_size(sample_rate))
    shared = analysis_cache if analysis_cache is not None else {}
    key = (settings.voice, settings.speak_rate_wpm, settings.formant_shift, settings.breathiness,
           settings.brightness_db_per_octave, sample_rate)
    words = sorted({n.syllable for n in melody})
    missing = [w for w in words if (w, *key) not in shared]
    for w, (audio, rate) in _speak(missing, settings.voice, settings.speak_rate_wpm).items():
        fmap = _frequency_map(rate, int(pw.get_cheaptrick_fft_size(rate)), sample_rate, fft_out,
                              settings.formant_shift)
        shared[(w, *key)] = _analyse(pw, audio, rate, fmap, settings.breathiness,
                                     settings.brightness_db_per_octave, settings.formant_shift,
                                     sample_rate, fft_out)
    cache: dict[str, _Syllable] = {w: shared[(w, *key)] for w in words}
    reference_level = float(np.median([s.level for s in cache.values()]))
    bins = fft_out // 2 + 1
    spb = seconds_per_beat
    def seconds(beats: float) -> float:
        return beats * spb + settings.delay_seconds

    for phrase in _phrases(_events(melody), spb):
        if cancel is not None and cancel():
            raise Cancelled()
        # The phrase is synthesised over [t_start, t_end]: 200 ms before its first note (room
        # for an onset consonant) to 250 ms after its last (the release).
        t_start = seconds(phrase[0][0].start_beats) - 0.2
        t_end = seconds(phrase[-1][-1].start_beats + phrase[-1][-1].duration_beats) + 0.25
        n = int(np.ceil((t_end - t_start) / _FRAME_SECONDS)) + 1

        def frame(t: float, t_start: float = t_start) -> int:
            return int(round((t - t_start) / _FRAME_SECONDS))

        log_sp = np.full((n, bins), np.log(_SILENT_POWER))
        ap = np.full((n, bins), 0.999)
        voiced = np.zeros(n, dtype=bool)
        pitch = np.full(n, np.nan)  # target pitch (MIDI semitones) before glide smoothing
        scoop = np.zeros(n)  # semitones below the target at detached onsets
        prev_end_frame = 0
        prev_event_end_t = -1e9
        for ev in phrase:
            syl = cache[ev[0].syllable]
            ev_start_t = seconds(ev[0].start_beats)
            ev_end_t = seconds(ev[-1].start_beats + ev[-1].duration_beats)
            a, b = frame(ev_start_t), frame(ev_end_t)
            length = max(b - a, 4)
            onset = min(syl.onset, 24)  # at most 120 ms of consonant
            coda = min(syl.coda, 20, int(0.3 * length))
            vowel = length - coda
            # Onset consonant before the note so the vowel lands on the beat.
            on_from = max(a - onset, prev_end_frame, 0)
            src_on = np.arange(syl.onset - (a - on_from), syl.onset, dtype=float)
            src_vowel = syl.onset + _warp_nucleus(syl.nucleus, vowel)
            src_coda = syl.onset + syl.nucleus + np.arange(coda, dtype=float)
            src = np.concatenate([src_on, src_vowel, src_coda])
            dst = np.arange(on_from, on_from + len(src))
            keep = dst < n
            src, dst = src[keep], dst[keep]
            # Every syllable at the same vowel level, then velocity: amplitude ∝ (v/100)^1.5.
            gain = (reference_level - syl.level) + 3.0 * np.log(ev[0].velocity / 100.0)
            env = _gather(syl.log_sp, src) + gain
            # Release: a 30 ms fade at the end of the syllable, a 10 ms attack on a bare vowel.
            fade = np.ones(len(dst))
            r = min(6, len(dst))
            fade[-r:] = np.linspace(1.0, 0.05, r)
            if syl.onset == 0:
                fade[: min(2, len(dst))] *= np.array([0.3, 0.7])[: min(2, len(dst))]
            log_sp[dst] = env + 2 * np.log(fade)[:, None]
            ap[dst] = _gather(syl.ap, src)
            vmask = (src >= syl.onset) & (src < syl.onset + syl.nucleus)
            voiced[dst[vmask]] = True
            for note in ev:
                na = frame(seconds(note.start_beats))
                nb = frame(seconds(note.start_beats + note.duration_beats))
                pitch[max(na, 0) : min(nb + coda, n)] = note.pitch
            if ev_start_t - prev_event_end_t > 0.15:
                # Detached note: start flat and rise to pitch within ~60 ms.
                scoop[a:] -= settings.scoop_cents / 100.0 * np.exp(-np.arange(n - a) / 6.0)
                scoop[on_from:a] -= settings.scoop_cents / 100.0
            prev_end_frame = int(dst[-1]) + 1 if len(dst) else prev_end_frame
            prev_event_end_t = ev_end_t
        # Pitch: hold across gaps, glide (raised-cosine smoothing starting at each change).
        idx = np.where(np.isnan(pitch), 0, np.arange(n))
        np.maximum.accumulate(idx, out=idx)
        first_valid = int(np.flatnonzero(~np.isnan(pitch))[0])
        pitch = pitch[idx]
        pitch[:first_valid] = pitch[first_valid]
        g = max(int(round(settings.glide_seconds / _FRAME_SECONDS)), 1)
        kernel = np.hanning(g + 2)[1:-1]
        kernel /= kernel.sum()
        padded = np.concatenate([np.full(g, pitch[0]), pitch])
        pitch = np.convolve(padded, kernel, mode="full")[g : g + n]
        # Vibrato: fades in after each note has been held a while.
        held = np.zeros(n)  # seconds since the current note began
        for ev in phrase:
            for note in ev:
                na = frame(seconds(note.start_beats))
                nb = min(frame(seconds(note.start_beats + note.duration_beats)), n)
                if nb > na:
                    held[na:nb] = np.arange(nb - na) * _FRAME_SECONDS
        depth = np.clip((held - settings.vibrato_delay_seconds) / 0.25, 0.0, 1.0)
        vibrato_hz = settings.vibrato_rate_hz * (1 + 0.04 * _smooth_noise(rng, n, 80))
        phase = 2 * np.pi * np.cumsum(vibrato_hz) * _FRAME_SECONDS + rng.uniform(0, 2 * np.pi)
        vibrato = depth * settings.vibrato_depth_cents / 100.0 * np.sin(phase)
        drift = settings.drift_cents / 100.0 * _smooth_noise(rng, n, 40)
        semis = pitch + scoop + vibrato + drift + settings.detune_cents / 100.0
        f0 = np.where(voiced, 440.0 * 2.0 ** ((semis - 69.0) / 12.0), 0.0)
        # Slight amplitude following the vibrato, as real voices do (±1 dB).
        log_sp += (np.log(10.0) / 10.0 * 1.0 * depth * np.sin(phase))[:, None]
        y = pw.synthesize(
            np.ascontiguousarray(f0), np.ascontiguousarray(np.exp(log_sp)),
            np.ascontiguousarray(ap), sample_rate, FRAME_PERIOD_MS,
        )
        start = int(round(t_start * sample_rate))
        lo, hi = max(start, 0), min(start + len(y), total)
        if hi > lo:
            out[lo:hi] += y[lo - start : hi - start]
    peak = float(np.max(np.abs(out)))
    if peak > 0:
        out *= 0.5 / peak
    return out.astype(np.float32)
