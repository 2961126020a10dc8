"""Training data for the AST: synthesized songs kept as separate sources, cut into labelled windows.

A *multitrack song* is rendered from the one song synthesizer's parts
(:func:`engine.synth.generate_score`, fluidsynth through :class:`~engine.synth.instruments.InstrumentRender`,
the WORLD singer) with every instrument track rendered **on its own** (not summed into the four
stems), so each window knows which sources sound in it and which General MIDI program made them.
The "other" instruments are re-drawn per track from :data:`FAMILY_PROGRAMS` so every family gets
data (the styles alone would rarely play brass or a synth lead); half of the songs add a lead line
(the vocal melody an octave up on a melodic instrument). Each source gets its own seeded EQ,
reverb send and level; the mix is their sum. Everything is mono at 16 kHz (the AST's rate).

Songs are cached as ``.npz`` (float16 sources + JSON metadata) under a cache folder (``tmp/``,
git-ignored) and are a pure function of their seed.

Windows (:class:`WindowSampler`) are a pure function of ``(seed, step)``: each batch draws
``identities`` sources (song, track) and two *views* of each, each view a 1-s window where that
source is active, either **solo** or **under a mixture** (other sources of the same song at the
same time, at a random level below the anchor). Labels are multi-label: every source whose level
in the window is within :data:`PRESENT_DB` of the loudest one counts as present.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.synth import effects
from engine.synth.effects import EqBand
from engine.synth.instruments import InstrumentRender, find_soundfont
from engine.synth.score import Note, Score, Track, generate_score
from engine.synth.singer import (
    RECORDED_VOICES,
    SingerSettings,
    doubled,
    random_singer,
    recorded_voices_available,
    sing,
)

SAMPLE_RATE = 16000
#: Class → General MIDI programs rendered for it. The first programs of each "other" family are
#: those the synthesizer's styles use (engine/synth/score.py); the rest widen the family.
FAMILY_PROGRAMS: dict[str, tuple[int, ...]] = {
    "keys": (0, 1, 2, 4, 5, 11, 3, 6, 7),  # pianos, electric pianos, vibraphone, harpsichord, clavinet
    "organ": (16, 17, 18, 19),
    "guitar": (24, 25, 26, 27, 28, 29, 30),
    "strings": (48, 49, 50, 40, 42, 51),
    "brass": (61, 56, 57, 62, 65, 66),  # brass section, trumpet, trombone, synth brass, saxes
    "synth_lead": (81, 80, 82, 87),
    "synth_pad": (89, 90, 88, 91, 94, 95),
}
#: Class order of the model (``AstConfig.classes``).
CLASSES = ("vocals", "drums", "bass", *FAMILY_PROGRAMS)
#: A source counts as present in a window when its RMS is within this of the loudest source's.
PRESENT_DB = -18.0
#: A window's anchor source must be at least this loud (dBFS) to be used.
ACTIVE_FLOOR_DB = -50.0


def family_of_program(program: int) -> str | None:
    """The "other" family of a GM program (by GM's groups of eight), or None (bass/none)."""
    for family, programs in FAMILY_PROGRAMS.items():
        if program in programs:
            return family
    groups = {0: "keys", 1: "keys", 2: "organ", 3: "guitar", 5: "strings", 6: "strings", 7: "brass",
              8: "brass", 10: "synth_lead", 11: "synth_pad"}
    return groups.get(program // 8)


@dataclass
class MultitrackSong:
    """A song as separate mono 16 kHz sources.

    Attributes:
        seed: the song's seed.
        sources: float32 ``(S, samples)``: each source after its own EQ/reverb/level.
        names: track name per source (``drums``, ``bass``, ``comp``, ``pad``, ``lead``, ``vocals``).
        labels: class per source (an entry of :data:`CLASSES`).
        programs: GM program per source (−1 for the vocal; the kit number for drums).
        info: JSON-ready provenance (style, tempo, key, timings).
    """

    seed: int
    sources: np.ndarray
    names: list[str]
    labels: list[str]
    programs: list[int]
    info: dict[str, Any]

    @property
    def mix(self) -> np.ndarray:
        result: np.ndarray = self.sources.sum(axis=0)
        return result

    def save(self, path: Path) -> None:
        meta = {"seed": self.seed, "names": self.names, "labels": self.labels, "programs": self.programs,
                "info": self.info}
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(tmp, sources=self.sources.astype(np.float16), meta=np.array(json.dumps(meta)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> MultitrackSong:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            sources = z["sources"].astype(np.float32)
        return cls(int(meta["seed"]), sources, meta["names"], meta["labels"], meta["programs"], meta["info"])


def _diversify(score: Score, rng: np.random.Generator) -> list[Track]:
    """The score's tracks with the "other" programs re-drawn per family, plus maybe a lead line."""
    families = list(FAMILY_PROGRAMS)
    tracks: list[Track] = []
    for t in score.tracks:
        if t.stem == "other":
            if rng.random() < 0.75:  # a uniform family, so every family gets data
                fam = families[int(rng.integers(len(families)))]
                t = replace(t, program=int(rng.choice(FAMILY_PROGRAMS[fam])))
        tracks.append(t)
    if score.melody and rng.random() < 0.5:
        fam = str(rng.choice(["brass", "synth_lead", "strings", "keys", "organ", "guitar"]))
        program = int(rng.choice(FAMILY_PROGRAMS[fam]))
        shift = 12 if rng.random() < 0.6 else 0
        # Only every other section, so the lead is often heard without the singer and vice versa.
        bars = sorted({int(n.start_beats // 4) for n in score.melody})
        keep = {b for b in bars if (b // 4) % 2 == int(rng.integers(2))}
        notes = [Note(n.start_beats, n.duration_beats, n.pitch + shift, n.velocity)
                 for n in score.melody if int(n.start_beats // 4) in keep]
        if notes:
            tracks.append(Track("lead", "other", 4, program, notes, volume=96, pan=64))
    return tracks


def _label_for(track: Track) -> str:
    if track.stem in ("drums", "bass"):
        return track.stem
    fam = family_of_program(track.program)
    if fam is None:
        raise ValueError(f"GM program {track.program} of track {track.name} has no class")
    return fam


def _active_rms(x: np.ndarray, frame: int = 1024) -> float:
    n = x.shape[-1] // frame
    if n == 0:
        return float(np.sqrt(np.mean(x**2)))
    r = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))
    top = float(r.max())
    if top <= 0:
        return 0.0
    act = r > top * 10 ** (-35 / 20)
    return float(np.sqrt(np.mean(r[act] ** 2)))


def song_voice(score: Score, seed: int, recorded_voice_share: float) -> str:
    """The voice that sings ``score``: its own espeak-ng voice, or with probability
    ``recorded_voice_share`` (drawn from the seed alone) a recorded-speaker voice of the same
    register. Raises :class:`~engine.synth.errors.SynthUnavailable` if one is drawn and flite is
    missing (a cache must not silently depend on what is installed)."""
    if recorded_voice_share <= 0:
        return score.voice
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xF117E])
    if rng.random() >= recorded_voice_share:
        return score.voice
    if not recorded_voices_available():
        from engine.synth.errors import SynthUnavailable

        raise SynthUnavailable("this render asks for recorded-speaker voices: install flite (Debian package 'flite')")
    return str(rng.choice(RECORDED_VOICES[score.singer]))


#: Harmony intervals (semitones) for a produced vocal's second line: thirds, fourth, fifth, sixth
#: above, a fourth or fifth below. Parallel (the same interval throughout, not diatonic): some
#: notes clash with the key; for a timbre model the second voice matters more than its harmony.
HARMONY_INTERVALS = (3, 4, 5, 7, 8, 9, -5, -7)


@dataclass(frozen=True)
class VocalProduction:
    """A record's production of a lead vocal (each stage None when not drawn).

    Attributes:
        double_db: a doubled take (re-sung, detuned, late) at this level relative to the lead.
        harmony: ``(interval semitones, level dB)`` of a harmony line re-sung by the same singer.
        compressor: ``(threshold dB relative to the active RMS, ratio)``.
        saturation: ``(drive dB, blend 0..1)`` soft clipping (tanh).
        echo: ``(delay s, gain dB per repeat, repeats)``: a slapback or echo.
        telephone: ``(high-pass Hz, low-pass Hz, presence peak Hz, peak dB)``: band-limited.
    """

    double_db: float | None = None
    harmony: tuple[int, float] | None = None
    compressor: tuple[float, float] | None = None
    saturation: tuple[float, float] | None = None
    echo: tuple[float, float, int] | None = None
    telephone: tuple[float, float, float, float] | None = None


def random_vocal_production(seed: int) -> VocalProduction:
    """The production drawn from ``seed`` alone (each stage with its own chance)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x70D])
    u = rng.uniform
    return VocalProduction(
        double_db=float(u(-9, -3)) if rng.random() < 0.5 else None,
        harmony=(int(rng.choice(HARMONY_INTERVALS)), float(u(-12, -5))) if rng.random() < 0.35 else None,
        compressor=(float(u(-14, -2)), float(u(2, 8))) if rng.random() < 0.7 else None,
        saturation=(float(u(2, 12)), float(u(0.5, 1.0))) if rng.random() < 0.4 else None,
        echo=(float(u(0.08, 0.35)), float(u(-16, -7)), int(rng.integers(1, 4))) if rng.random() < 0.3 else None,
        telephone=((float(u(250, 600)), float(u(2500, 5000)), float(u(1000, 2000)), float(u(3, 8)))
                   if rng.random() < 0.15 else None),
    )


def produce_vocal(lead: np.ndarray, score: Score, singer: SingerSettings, production: VocalProduction,
                  seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A record's vocal production on the dry lead ``(samples,)`` (see :class:`VocalProduction`):
    the doubled take and harmony are re-sung by ``singer`` (their variation drawn from ``seed``).
    Real vocals in mixes rarely sound like one dry clean take; a model trained only on those
    hears a distorted, doubled rock vocal as a guitar. Returns float32, peak 0.5."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xD0B])
    seconds = lead.size / sample_rate
    y = lead.astype(np.float64)
    cache: dict[tuple[Any, ...], Any] = {}
    if production.double_db is not None:
        take = sing(score.melody, score.seconds_per_beat, seconds, sample_rate, doubled(singer, rng), rng, cache)
        y = y + 10 ** (production.double_db / 20) * take[: y.size]
    if production.harmony is not None:
        step, level_db = production.harmony
        melody = [replace(n, pitch=n.pitch + step) for n in score.melody]
        take = sing(melody, score.seconds_per_beat, seconds, sample_rate, doubled(singer, rng), rng, cache)
        y = y + 10 ** (level_db / 20) * take[: y.size]
    rms = _active_rms(y)
    if rms <= 0:
        return lead.astype(np.float32)
    y = y / rms  # active RMS 1: thresholds and drive are relative to the singing
    if production.compressor is not None:
        y = effects.compress(y[None, :], sample_rate, *production.compressor)[0]
        y = y / max(_active_rms(y), 1e-9)
    if production.saturation is not None:
        drive_db, blend = production.saturation
        drive = 10 ** (drive_db / 20)
        y = y + blend * (np.tanh(drive * y / 3.0) * 3.0 / drive - y)
    if production.echo is not None:
        delay_s, gain_db, repeats = production.echo
        delay, gain = int(delay_s * sample_rate), 10 ** (gain_db / 20)
        echo = np.zeros_like(y)
        for k in range(1, repeats + 1):
            if k * delay < y.size:
                echo[k * delay :] += gain**k * y[: y.size - k * delay]
        y = y + echo
    if production.telephone is not None:
        hp, lp, peak_hz, peak_db = production.telephone
        y = effects.equalize(y[None, :], sample_rate, (EqBand("highpass", hp), EqBand("lowpass", lp),
                                                      EqBand("peak", peak_hz, peak_db, 1.0)))[0]
    return (0.5 * y / max(float(np.max(np.abs(y))), 1e-9)).astype(np.float32)


def render_multitrack(seed: int, duration_seconds: float = 30.0, soundfont: Path | None = None,
                      recorded_voice_share: float = 0.0, vocal_production: float = 0.0) -> MultitrackSong:
    """Render one multitrack song (see the module docstring). Deterministic in ``seed`` (and the
    share of songs sung by a recorded-speaker voice, see :func:`song_voice`, and the share whose
    vocal gets a record's production, :func:`produce_vocal`, drawn from the seed alone)."""
    t0 = time.perf_counter()
    score = generate_score(seed, duration_seconds)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xA57])
    tracks = _diversify(score, rng)
    frames = int(round(duration_seconds * SAMPLE_RATE))
    sf2 = find_soundfont(soundfont)
    voice = song_voice(score, seed, recorded_voice_share)
    with InstrumentRender({t.name: [t] for t in tracks}, score.tempo_bpm, score.bars * 4.0, frames,
                          SAMPLE_RATE, sf2) as job:
        singer = random_singer(rng, voice)
        vocal = sing(score.melody, score.seconds_per_beat, duration_seconds, SAMPLE_RATE, singer, rng, {})
        produced = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x9D0]).random() < vocal_production
        if produced:
            vocal = produce_vocal(vocal, score, singer, random_vocal_production(seed), seed)
        raw = job.result()
    names = [t.name for t in tracks] + ["vocals"]
    labels = [_label_for(t) for t in tracks] + ["vocals"]
    programs = [t.program for t in tracks] + [-1]
    dry = [raw[t.name].mean(axis=0) for t in tracks] + [vocal.astype(np.float32)]
    ir = effects.reverb_ir(effects.random_reverb(rng), SAMPLE_RATE, rng)
    sources = np.zeros((len(dry), frames), dtype=np.float32)
    for i, x in enumerate(dry):
        eq = (EqBand("lowshelf", float(rng.uniform(80, 200)), float(rng.uniform(-4, 4))),
              EqBand("peak", float(rng.uniform(400, 4000)), float(rng.uniform(-5, 5)), float(rng.uniform(0.6, 1.5))),
              EqBand("highshelf", float(rng.uniform(4000, 7000)), float(rng.uniform(-6, 3))))
        y = effects.equalize(x[None, :].astype(np.float64), SAMPLE_RATE, eq)
        if rng.random() < 0.7:
            y = y + 10 ** (float(rng.uniform(-20, -8)) / 20) * effects.reverb_wet(y, ir)[:1]
        rms = _active_rms(y[0])
        if rms > 0:
            y *= 10 ** ((-22.0 + float(rng.uniform(-5, 5))) / 20) / rms
        sources[i] = y[0]
    # vocal_produced: the production was drawn for this song (a few draws hold no stage at all)
    info = {"style": score.style, "tempo_bpm": score.tempo_bpm, "key": score.key_name, "voice": voice,
            "vocal_produced": bool(produced),
            "duration_seconds": duration_seconds, "sample_rate": SAMPLE_RATE, "soundfont": sf2.name,
            "seconds": round(time.perf_counter() - t0, 2)}
    return MultitrackSong(int(seed), sources, names, labels, programs, info)


def _render_to(seed: int, path: Path, duration_seconds: float, recorded_voice_share: float = 0.0,
               vocal_production: float = 0.0) -> str:
    song = render_multitrack(seed, duration_seconds, recorded_voice_share=recorded_voice_share,
                             vocal_production=vocal_production)
    song.save(path)
    produced = ", produced vocal" if song.info.get("vocal_produced") else ""
    return (f"rendered song {seed} ({song.info['style']}, {', '.join(song.labels)}, voice {song.info['voice']}"
            f"{produced}) in {song.info['seconds']:.1f} s")


def build_cache(seeds: Sequence[int], folder: Path, duration_seconds: float = 30.0,
                progress: Callable[[str], None] | None = None, workers: int = 1,
                recorded_voice_share: float = 0.0, vocal_production: float = 0.0) -> list[Path]:
    """Render every seed not yet in ``folder`` (``song_<seed>.npz``), in ``workers`` processes;
    returns all their paths (in seed order). A folder holds one ``recorded_voice_share`` and
    ``vocal_production``: use another folder for other values."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"song_{seed}.npz" for seed in seeds]
    todo = [(seed, p) for seed, p in zip(seeds, paths, strict=True) if not p.is_file()]
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            for message in pool.map(_render_to, [s for s, _ in todo], [p for _, p in todo],
                                    [duration_seconds] * len(todo), [recorded_voice_share] * len(todo),
                                    [vocal_production] * len(todo)):
                if progress is not None:
                    progress(message)
    else:
        for seed, p in todo:
            message = _render_to(seed, p, duration_seconds, recorded_voice_share, vocal_production)
            if progress is not None:
                progress(message)
    return paths


def window_rms_db(sources: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Per source and window start (every ``hop`` samples): RMS in dBFS, ``(S, W)``."""
    s, n = sources.shape
    count = (n - window) // hop + 1
    sq = np.concatenate([np.zeros((s, 1)), np.cumsum(sources.astype(np.float64) ** 2, axis=1)], axis=1)
    starts = np.arange(count) * hop
    energy = (sq[:, starts + window] - sq[:, starts]) / window
    result: np.ndarray = 10 * np.log10(np.maximum(energy, 1e-12))
    return result


@dataclass(frozen=True)
class SamplerConfig:
    """How training windows are drawn.

    Attributes:
        identities: distinct sources per batch (each gives ``views`` windows).
        views: windows per source (2: one contrastive pair).
        solo_probability: a view is the source alone (else under a mixture).
        under_db: range (dB) of the other material's level relative to the anchor source.
        gain_db: random overall gain range (level robustness).
        grid_seconds: window starts are on this grid.
    """

    identities: int = 32
    views: int = 2
    solo_probability: float = 0.35
    under_db: tuple[float, float] = (-18.0, 3.0)
    gain_db: tuple[float, float] = (-20.0, 10.0)
    grid_seconds: float = 0.1


class WindowSampler:
    """Batches of labelled windows from cached songs, a pure function of ``(seed, step)``.

    Args:
        songs: the songs (kept in memory, float32).
        classes: class order.
        window: samples per window.
        config: :class:`SamplerConfig`.
        seed: stream seed.
    """

    def __init__(self, songs: Sequence[MultitrackSong], classes: Sequence[str], window: int,
                 config: SamplerConfig, seed: int) -> None:
        self.songs = list(songs)
        self.classes = tuple(classes)
        self.window = window
        self.config = config
        self.seed = seed
        self.hop = int(round(config.grid_seconds * SAMPLE_RATE))
        self.levels = [window_rms_db(s.sources, window, self.hop) for s in self.songs]
        # Identities: (song, source) with enough active windows; class-balanced sampling.
        ids: list[tuple[int, int]] = []
        for si, (song, lv) in enumerate(zip(self.songs, self.levels, strict=True)):
            for j in range(song.sources.shape[0]):
                if int((lv[j] > ACTIVE_FLOOR_DB).sum()) >= 4:
                    ids.append((si, j))
        self.identities = ids
        by_class: dict[str, list[int]] = {c: [] for c in self.classes}
        for k, (si, j) in enumerate(ids):
            by_class[self.songs[si].labels[j]].append(k)
        self.by_class = {c: v for c, v in by_class.items() if v}

    def class_counts(self) -> dict[str, int]:
        return {c: len(v) for c, v in self.by_class.items()}

    def view(self, rng: np.random.Generator, song_index: int, source: int, solo: bool
             ) -> tuple[np.ndarray, np.ndarray]:
        """One window where ``source`` is active: ``(samples (window,), multi-hot (K,))``."""
        song, lv = self.songs[song_index], self.levels[song_index]
        cfg = self.config
        active = np.flatnonzero(lv[source] > max(ACTIVE_FLOOR_DB, float(lv[source].max()) - 30))
        w = int(rng.choice(active))
        start = w * self.hop
        seg = song.sources[:, start : start + self.window].astype(np.float64)  # (S, window)
        gains = np.zeros(seg.shape[0])
        gains[source] = 1.0
        others = [j for j in range(seg.shape[0]) if j != source and lv[j, w] > ACTIVE_FLOOR_DB]
        if not solo and others:
            chosen = [j for j in others if rng.random() < 0.7] or [int(rng.choice(others))]
            # Scale the others so their sum sits ``under_db`` relative to the anchor.
            rel = float(rng.uniform(*cfg.under_db))
            anchor_rms = 10 ** (lv[source, w] / 20)
            other_sum = seg[chosen].sum(axis=0)
            other_rms = float(np.sqrt(np.mean(other_sum**2))) + 1e-12
            g = anchor_rms * 10 ** (rel / 20) / other_rms
            gains[chosen] = g
        x = (gains[:, None] * seg).sum(axis=0) * 10 ** (float(rng.uniform(*cfg.gain_db)) / 20)
        level = 10 * np.log10(np.maximum((gains**2) * 10 ** (lv[:, w] / 10), 1e-12))
        present = (gains > 0) & (level > level.max() + PRESENT_DB) & (lv[:, w] > ACTIVE_FLOOR_DB)
        present[source] = True
        target = np.zeros(len(self.classes), dtype=np.float32)
        for j in np.flatnonzero(present):
            target[self.classes.index(song.labels[j])] = 1.0
        return x.astype(np.float32), target

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(windows (B, window), targets (B, K), identity (B,), anchor class (B,), solo (B,))``,
        ``B = identities · views``."""
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, int(step)])
        cfg = self.config
        classes = list(self.by_class)
        picks: list[int] = []
        while len(picks) < cfg.identities:
            c = classes[int(rng.integers(len(classes)))]
            k = int(rng.choice(self.by_class[c]))
            if k not in picks or len(picks) >= len(self.identities):
                picks.append(k)
        xs, ts, ids, cls, solos = [], [], [], [], []
        for k in picks:
            si, j = self.identities[k]
            for _ in range(cfg.views):
                solo = bool(rng.random() < cfg.solo_probability)
                x, t = self.view(rng, si, j, solo)
                xs.append(x)
                ts.append(t)
                ids.append(k)
                cls.append(self.classes.index(self.songs[si].labels[j]))
                solos.append(solo)
        return np.stack(xs), np.stack(ts), np.array(ids), np.array(cls), np.array(solos)
