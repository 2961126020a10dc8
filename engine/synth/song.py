"""One song with true stems: score → instruments (fluidsynth) + a sung line (espeak-ng + WORLD)
→ seeded per-stem mixing → optional bus → mix; plus acapellas with a known offset/gain/drift.

True stems. Each stem is its source after *its own* processing (EQ, compression, panning, level,
and its own reverb return), and ``mix = Σ stems`` to float32 rounding (< −130 dB). With
``bus=True`` the mix also goes through a bus EQ and a look-ahead limiter; both are linear in the
stems (one EQ, one gain curve computed from the sum and applied to every stem), so
``SynthSong.stems`` are still exact — they are the stems *as heard in the mix* — while
``SynthSong.pre_bus_stems`` keep the stems before the bus. Acapellas are cut from the pre-bus
vocal stem, as a producer would bounce them, so with the bus on the vocal in the mix differs from
the acapella by the bus EQ and limiter gain (which the reference engine must learn).

Random streams are separate per concern (score, singer, mix), all derived from the song's seed,
so the same seed always gives bit-identical audio on the same machine and packages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio import Audio, resample
from engine.errors import Cancelled, InputError
from engine.synth import effects
from engine.synth.effects import EqBand, ReverbSettings
from engine.synth.instruments import (
    SOUNDFONT_LICENCES,
    InstrumentRender,
    find_soundfont,
    fluidsynth_version,
)
from engine.synth.score import STEMS, Score, generate_score
from engine.synth.singer import (
    SingerSettings,
    doubled,
    espeak_version,
    load_pyworld,
    random_singer,
    sing,
)

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

_BASE_LEVEL_DB = -20.0  # where each stem's active RMS is set before the relative offsets
_MIX_RMS_DB = -16.0  # target RMS of the mix without the bus
_MIX_PEAK_DB = -1.0  # the un-bussed mix never peaks above this
_BUS_INPUT_RMS_DB = -18.0  # RMS going into the bus drive


@dataclass(frozen=True)
class StemMix:
    """How one stem is processed in the mix (all seeded; stored in ``SynthSong.info``).

    Attributes:
        eq: biquads in order.
        compressor_threshold_db: relative to the stem's own active RMS (None: no compressor).
        compressor_ratio: ratio above the threshold.
        pan: −1 left … +1 right.
        width: stereo width of stereo sources (0 mono … 1 as rendered).
        reverb_send_db: level of the reverb return relative to the dry stem (None: dry).
        level_db: active-RMS level relative to the drums (vocals: relative to the instruments).
    """

    eq: tuple[EqBand, ...]
    compressor_threshold_db: float | None
    compressor_ratio: float
    pan: float
    width: float
    reverb_send_db: float | None
    level_db: float


@dataclass(frozen=True)
class BusMix:
    """Bus processing: EQ, drive into a look-ahead limiter with a ceiling."""

    eq: tuple[EqBand, ...]
    drive_db: float
    ceiling_db: float


@dataclass(frozen=True)
class MixRecipe:
    stems: dict[str, StemMix]
    room: ReverbSettings
    plate: ReverbSettings
    double_vocal: bool
    double_level_db: float
    double_pan: float
    bus: BusMix | None


@dataclass
class SynthSong:
    """A synthesized song.

    Attributes:
        mix: stereo ``Audio``, ``(2, frames)``; equals ``Σ stems`` to float32 rounding.
        stems: ``drums``, ``bass``, ``other``, ``vocals``: each ``(2, frames)`` as heard in the mix.
        pre_bus_stems: the same stems before the bus (identical objects when ``bus=False``).
        score: the notes that were rendered.
        info: JSON-ready provenance: seed, style, tempo, key, mix recipe, singer, levels,
            tool versions, soundfont and licence, timings.
    """

    mix: Audio
    stems: dict[str, Audio]
    pre_bus_stems: dict[str, Audio]
    score: Score
    info: dict[str, Any] = field(default_factory=dict)


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def random_recipe(rng: np.random.Generator, bus: bool) -> MixRecipe:
    """A seeded mix: per-stem EQ/compression/pan/reverb/levels, reverbs, doubling, bus."""
    u = _uniform
    stems = {
        "drums": StemMix(
            (EqBand("lowshelf", 80, u(rng, -2, 3)), EqBand("peak", 400, u(rng, -4, 0), 1.0),
             EqBand("highshelf", 8000, u(rng, -4, 1))),
            u(rng, 2, 8), u(rng, 2, 4), 0.0, u(rng, 0.7, 1.0), u(rng, -20, -11), 0.0,
        ),
        "bass": StemMix(
            (EqBand("highpass", 30), EqBand("lowshelf", 100, u(rng, -2, 3)),
             EqBand("peak", 800, u(rng, 0, 3), 1.0)),
            u(rng, 0, 4), u(rng, 3, 6), 0.0, u(rng, 0.0, 0.5), None, u(rng, -2, 1.5),
        ),
        "other": StemMix(
            (EqBand("highpass", u(rng, 80, 160)), EqBand("peak", 2500, u(rng, -3, 3), 0.9),
             EqBand("highshelf", 10000, u(rng, -3, 2))),
            u(rng, 2, 8) if rng.random() < 0.5 else None, u(rng, 1.5, 3),
            u(rng, -0.3, 0.3), u(rng, 0.7, 1.0), u(rng, -15, -7), u(rng, -3, 0.5),
        ),
        "vocals": StemMix(
            (EqBand("highpass", u(rng, 90, 140)), EqBand("peak", 300, u(rng, -3, 0), 1.0),
             EqBand("peak", 3000, u(rng, 0, 4), 0.8), EqBand("highshelf", 10000, u(rng, 0, 4))),
            u(rng, -2, 3), u(rng, 3, 6), u(rng, -0.1, 0.1), 1.0, u(rng, -16, -9),
            u(rng, -3.5, -0.5),  # vocal active RMS relative to the instruments in the same frames
        ),
    }
    room = effects.random_reverb(rng)
    plate = ReverbSettings(u(rng, 1.0, 2.5), u(rng, 0.02, 0.06), u(rng, 0.1, 0.5), u(rng, 0.8, 1.0))
    bus_mix = None
    if bus:
        bus_mix = BusMix(
            (EqBand("lowshelf", 100, u(rng, -2, 2)), EqBand("peak", 2500, u(rng, -1.5, 1.5), 0.7),
             EqBand("highshelf", 9000, u(rng, -1, 3))),
            u(rng, 4, 9), u(rng, -1.0, -0.3),
        )
    return MixRecipe(stems, room, plate, bool(rng.random() < 0.35), u(rng, -9, -6),
                     u(rng, 0.2, 0.45), bus_mix)


def _sum(arrays: list[np.ndarray]) -> np.ndarray:
    """Element-wise float64 sum of equally shaped arrays."""
    out = np.zeros(arrays[0].shape, dtype=np.float64)
    for a in arrays:
        out += a
    return out


def _frame_rms(x: np.ndarray, frame: int = 2048) -> np.ndarray:
    """RMS of ``(channels, frames)`` per non-overlapping frame (channels pooled): ``(n,)``."""
    n = x.shape[-1] // frame
    if n == 0:
        return np.sqrt(np.mean(x**2, axis=(0, 1), keepdims=False))[None]
    blocks = x[:, : n * frame].reshape(x.shape[0], n, frame)
    result: np.ndarray = np.sqrt(np.mean(blocks**2, axis=(0, 2)))
    return result


def _active(frame_rms: np.ndarray, floor_db: float = -35.0) -> np.ndarray:
    """Frames within ``floor_db`` of the loudest frame."""
    top = float(frame_rms.max())
    if top <= 0:
        return np.zeros_like(frame_rms, dtype=bool)
    result: np.ndarray = frame_rms > top * 10 ** (floor_db / 20)
    return result


def _db(value: float) -> float:
    return float(20 * np.log10(max(value, 1e-12)))


def _active_rms(x: np.ndarray) -> float:
    fr = _frame_rms(x)
    act = _active(fr)
    return float(np.sqrt(np.mean(fr[act] ** 2))) if act.any() else 0.0


def _process(x: np.ndarray, sample_rate: int, m: StemMix, ir: np.ndarray | None) -> np.ndarray:
    """One stem through its chain: EQ → compressor → pan/width → (+ reverb return)."""
    y = effects.equalize(x.astype(np.float64), sample_rate, m.eq)
    if m.compressor_threshold_db is not None:
        thr = _db(_active_rms(y)) + m.compressor_threshold_db
        y = effects.compress(y, sample_rate, thr, m.compressor_ratio)
    y = effects.pan(y, m.pan, m.width)
    if ir is not None and m.reverb_send_db is not None:
        y = y + 10 ** (m.reverb_send_db / 20) * effects.reverb_wet(y, ir)
    return y


def _check(progress: ProgressFn | None, cancel: CancelFn | None, fraction: float, message: str) -> None:
    if cancel is not None and cancel():
        raise Cancelled()
    if progress is not None:
        progress(fraction, message)


def synthesize_song(
    seed: int,
    duration_seconds: float,
    sample_rate: int = 44100,
    style: str | None = None,
    bus: bool = False,
    soundfont: str | Path | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> SynthSong:
    """Synthesize a song with exact stems.

    Args:
        seed: every choice (score, singer, mix) derives from it.
        duration_seconds: length of the result (0.5 … 3600 s).
        sample_rate: 8000 … 96000 Hz (fluidsynth's range).
        style: one of :data:`engine.synth.score.STYLES` or None (seeded choice).
        bus: apply bus EQ + look-ahead limiter to the mix (stems follow; see module doc).
        soundfont: a General MIDI .sf2 (default: :func:`find_soundfont`).
        progress: ``progress(fraction, message)``.
        cancel: returns True to stop with :class:`Cancelled`.

    Returns:
        :class:`SynthSong` with ``(2, round(duration_seconds * sample_rate))`` float32 audio.

    Raises:
        InputError: bad arguments. SynthUnavailable (an InputError): fluidsynth, the soundfont,
        espeak-ng or pyworld missing.
    """
    if not 0.5 <= duration_seconds <= 3600:
        raise InputError(f"song duration must be 0.5–3600 s, not {duration_seconds}")
    if not 8000 <= sample_rate <= 96000:
        raise InputError(f"sample rate must be 8000–96000 Hz, not {sample_rate}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sf2 = find_soundfont(soundfont)
    pw = load_pyworld()
    _check(progress, cancel, 0.0, "Writing the score")
    try:
        score = generate_score(seed, duration_seconds, style)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    frames = int(round(duration_seconds * sample_rate))
    rng_sing = np.random.default_rng([int(seed) & 0xFFFFFFFF, 1])
    rng_mix = np.random.default_rng([int(seed) & 0xFFFFFFFF, 2])
    recipe = random_recipe(rng_mix, bus)
    timings["score"] = time.perf_counter() - t0

    # fluidsynth renders the instruments in background processes while the singer works.
    _check(progress, cancel, 0.05, "Rendering instruments and singing")
    t = time.perf_counter()
    with InstrumentRender(
        {s: score.tracks_for(s) for s in ("drums", "bass", "other")},
        score.tempo_bpm, score.bars * 4.0, frames, sample_rate, sf2,
    ) as instruments:
        singer = random_singer(rng_sing, score.voice)
        spb = score.seconds_per_beat
        analyses: dict[tuple[Any, ...], Any] = {}
        lead = sing(score.melody, spb, duration_seconds, sample_rate, singer, rng_sing, analyses,
                    cancel)
        vocal_dry = effects.pan(lead[None, :].astype(np.float64), recipe.stems["vocals"].pan)
        double_settings: SingerSettings | None = None
        if recipe.double_vocal:
            _check(progress, cancel, 0.4, "Singing the double")
            double_settings = doubled(singer, rng_sing)
            second = sing(score.melody, spb, duration_seconds, sample_rate, double_settings,
                          rng_sing, analyses, cancel)
            vocal_dry += 10 ** (recipe.double_level_db / 20) * effects.pan(
                second[None, :].astype(np.float64), recipe.double_pan
            )
        timings["vocals"] = time.perf_counter() - t
        _check(progress, cancel, 0.7, "Rendering instruments")
        raw = instruments.result()
    timings["instruments_after_vocals"] = time.perf_counter() - t - timings["vocals"]

    _check(progress, cancel, 0.75, "Mixing")
    t = time.perf_counter()
    room_ir = effects.reverb_ir(recipe.room, sample_rate, rng_mix)
    plate_ir = effects.reverb_ir(recipe.plate, sample_rate, rng_mix)
    vocal_mix = recipe.stems["vocals"]
    processed: dict[str, np.ndarray] = {}
    # Stems are kept as float32 between stages (a 4-minute stereo stem is 85 MB, not 170).
    for stem in ("drums", "bass", "other"):
        _check(progress, cancel, 0.75 + 0.05 * len(processed), f"Mixing: {stem}")
        processed[stem] = _process(raw.pop(stem), sample_rate, recipe.stems[stem], room_ir).astype(np.float32)
    # The vocal is already placed (lead + double), so its chain skips the pan stage.
    processed["vocals"] = _process(vocal_dry, sample_rate, StemMix(
        vocal_mix.eq, vocal_mix.compressor_threshold_db, vocal_mix.compressor_ratio, 0.0, 1.0,
        vocal_mix.reverb_send_db, vocal_mix.level_db), plate_ir).astype(np.float32)
    del vocal_dry
    # Levels: instruments relative to each other by active RMS, then the vocal relative to the
    # instruments in the frames where it sings.
    for stem in ("drums", "bass", "other"):
        rms = _active_rms(processed[stem])
        if rms > 0:
            processed[stem] *= 10 ** ((_BASE_LEVEL_DB + recipe.stems[stem].level_db) / 20) / rms
    instrumental = processed["drums"] + processed["bass"] + processed["other"]
    vocal_frames = _active(_frame_rms(processed["vocals"]))
    if vocal_frames.any():
        v_rms = float(np.sqrt(np.mean(_frame_rms(processed["vocals"])[vocal_frames] ** 2)))
        i_rms = float(np.sqrt(np.mean(_frame_rms(instrumental)[vocal_frames] ** 2)))
        if v_rms > 0 and i_rms > 0:
            processed["vocals"] *= 10 ** (vocal_mix.level_db / 20) * i_rms / v_rms
    # Fades shared by every stem (linear, so the sum is unaffected).
    envelope = np.ones(frames, dtype=np.float32)
    fade_in = min(int(0.005 * sample_rate), frames // 4)
    fade_out = min(int(min(2.0, 0.1 * duration_seconds) * sample_rate), frames // 2)
    envelope[:fade_in] = np.linspace(0, 1, fade_in, endpoint=False)
    if fade_out > 0:
        envelope[frames - fade_out :] *= np.cos(np.linspace(0, np.pi / 2, fade_out)) ** 2
    for stem in STEMS:
        processed[stem] = processed[stem] * envelope[None, :]
    total = _sum([processed[s] for s in STEMS])
    mix_rms, mix_peak = _db(_active_rms(total)), _db(float(np.max(np.abs(total))))
    del total
    if recipe.bus is None:
        scale_db = min(_MIX_RMS_DB - mix_rms, _MIX_PEAK_DB - mix_peak)
    else:
        scale_db = _BUS_INPUT_RMS_DB - mix_rms
    for stem in STEMS:
        processed[stem] *= np.float32(10 ** (scale_db / 20))
    pre_bus = {s: Audio(processed.pop(s), sample_rate) for s in STEMS}
    bus_info: dict[str, Any] | None = None
    if recipe.bus is not None:
        drive = 10 ** (recipe.bus.drive_db / 20)
        eqd = {s: (effects.equalize(pre_bus[s].samples, sample_rate, recipe.bus.eq) * drive).astype(np.float32)
               for s in STEMS}
        summed = _sum([eqd[s] for s in STEMS])
        gain = effects.limiter_gain(summed, sample_rate, recipe.bus.ceiling_db).astype(np.float32)
        del summed
        post = {s: Audio(eqd.pop(s) * gain[None, :], sample_rate) for s in STEMS}
        bus_info = {
            "limiter_gain_reduction_db_max": -_db(float(gain.min())),
            "limiter_gain_reduction_db_mean": float(-20 * np.log10(gain).mean()),
        }
    else:
        post = pre_bus
    # The mix is the float64 sum of the float32 stems, rounded once.
    mix_samples = _sum([post[s].samples for s in STEMS])
    mix = Audio(mix_samples.astype(np.float32), sample_rate)
    timings["mixing"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    instrumental_post = _sum([post[s].samples for s in ("drums", "bass", "other")])
    vf = _active(_frame_rms(post["vocals"].samples))
    ratio_db = None
    if vf.any():
        ratio_db = _db(float(np.sqrt(np.mean(_frame_rms(post["vocals"].samples)[vf] ** 2)))) - _db(
            float(np.sqrt(np.mean(_frame_rms(instrumental_post)[vf] ** 2))))
    info: dict[str, Any] = {
        "seed": int(seed),
        "duration_seconds": frames / sample_rate,
        "sample_rate": sample_rate,
        "bus": bool(bus),
        "score": score.describe(),
        "singer": asdict(singer),
        "double": asdict(double_settings) if double_settings else None,
        "recipe": asdict(recipe),
        "levels": {
            "mix_peak_dbfs": _db(float(np.max(np.abs(mix.samples)))),
            "mix_rms_dbfs": _db(float(np.sqrt(np.mean(mix.samples.astype(np.float64) ** 2)))),
            "stem_rms_dbfs": {s: _db(float(np.sqrt(np.mean(post[s].samples.astype(np.float64) ** 2)))) for s in STEMS},
            "vocal_to_instrumental_db": ratio_db,
        },
        "bus_result": bus_info,
        "renderers": {
            "instruments": fluidsynth_version(),
            "soundfont": sf2.name,
            "soundfont_licence": SOUNDFONT_LICENCES.get(sf2.name, "unknown: check the soundfont's own licence"),
            "singer": f"espeak-ng voice {score.voice} re-sung with WORLD (pyworld {getattr(pw, '__version__', '?')})",
            "speech": espeak_version(),
        },
        "stems_sum_to_mix": True,
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    _check(progress, cancel, 1.0, "Song ready")
    return SynthSong(mix, post, pre_bus, score, info)


def make_acapella(
    song: SynthSong,
    offset_seconds: float,
    gain_db: float,
    drift_ppm: float = 0.0,
    sample_rate: int | None = None,
) -> tuple[Audio, dict[str, Any]]:
    """Cut an acapella from the song's pre-bus vocal stem with a known misalignment.

    Convention (DESIGN.md's ``align`` contract): acapella sample ``k`` (after resampling to the
    mix rate) plays at mix sample ``offset_samples + k · (1 + drift_ppm·1e-6)``. Positive offset:
    the acapella starts into the song; negative: it has ``|offset|`` of extra lead-in silence.

    Args:
        song: from :func:`synthesize_song`.
        offset_seconds: wanted offset; rounded to whole mix samples (``truth["offset_samples"]``).
        gain_db: gain applied to the vocal to make the acapella (e.g. −2.5 makes it quieter).
        drift_ppm: clock drift; non-zero values read the vocal at fractional positions with a
            band-limited (Kaiser-windowed sinc) interpolator.
        sample_rate: the acapella's rate (default: the mix's); resampled with
            :func:`engine.audio.resample`.

    Returns:
        ``(acapella, truth)``: stereo ``Audio``, and the answer ``align`` should give:
        ``offset_seconds``, ``offset_samples``, ``drift_ppm``, ``gain_db`` (the gain that maps
        the acapella back onto the vocal, i.e. ``-gain_db`` argument), ``polarity`` (1),
        ``acapella_sample_rate``, plus ``acapella_gain_db`` (the argument), ``mix_sample_rate``
        and ``vocal_in_mix`` (whether the mix's vocal went through the bus).
    """
    vocal = song.pre_bus_stems["vocals"]
    sr = vocal.sample_rate
    if sample_rate is not None and not 8000 <= sample_rate <= 192000:
        raise InputError(f"acapella sample rate must be 8000–192000 Hz, not {sample_rate}")
    if abs(drift_ppm) > 10_000:
        raise InputError(f"drift of {drift_ppm} ppm is implausible (limit ±10000)")
    offset_samples = int(round(offset_seconds * sr))
    ratio = 1.0 + drift_ppm * 1e-6
    n_vocal = vocal.frames
    length = int(np.floor((n_vocal - 1 - offset_samples) / ratio)) + 1
    if length <= 0:
        raise InputError(f"offset {offset_seconds} s leaves no acapella (song is {vocal.duration_seconds:.2f} s)")
    if drift_ppm == 0.0:
        acap = np.zeros((vocal.channels, length), dtype=np.float64)
        src_from = max(offset_samples, 0)
        dst_from = src_from - offset_samples
        acap[:, dst_from:] = vocal.samples[:, src_from : src_from + length - dst_from]
    else:
        positions = offset_samples + np.arange(length) * ratio
        acap = effects.read_at(vocal.samples, positions).astype(np.float64)
    acap *= 10 ** (gain_db / 20)
    rate = sr if sample_rate is None else int(sample_rate)
    out = resample(acap.astype(np.float32), sr, rate) if rate != sr else acap.astype(np.float32)
    truth: dict[str, Any] = {
        "offset_seconds": offset_samples / sr,
        "offset_samples": offset_samples,
        "drift_ppm": float(drift_ppm),
        "gain_db": -float(gain_db),
        "polarity": 1,
        "acapella_sample_rate": rate,
        "acapella_gain_db": float(gain_db),
        "mix_sample_rate": sr,
        "vocal_in_mix": "through the bus (EQ + limiter)" if song.info.get("bus") else "as in the acapella",
    }
    return Audio(out, rate), truth


def place_acapella(acapella: Audio, truth: dict[str, Any], frames: int) -> np.ndarray:
    """Put an acapella back on the mix's time axis with ``truth`` (the inverse of
    :func:`make_acapella`): float32 ``(channels, frames)`` at ``truth["mix_sample_rate"]``."""
    sr = int(truth["mix_sample_rate"])
    x = resample(acapella.samples, acapella.sample_rate, sr) if acapella.sample_rate != sr else acapella.samples
    x = x.astype(np.float64) * 10 ** (float(truth["gain_db"]) / 20) * int(truth["polarity"])
    offset = int(truth["offset_samples"])
    ratio = 1.0 + float(truth["drift_ppm"]) * 1e-6
    if ratio == 1.0:
        out = np.zeros((x.shape[0], frames), dtype=np.float32)
        lo, hi = max(offset, 0), min(offset + x.shape[1], frames)
        if hi > lo:
            out[:, lo:hi] = x[:, lo - offset : hi - offset]
        return out
    positions = (np.arange(frames) - offset) / ratio
    return effects.read_at(x, positions)
