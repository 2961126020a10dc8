"""The song synthesizer: scores, MIDI, effects, exact stems, acapella truth.

Tests that render audio need fluidsynth + a GM soundfont, espeak-ng and pyworld; without them
they skip with the reason, except under CI (env ``CI`` set), where a missing tool fails.
"""

from __future__ import annotations

import os
import shutil
import struct

import numpy as np
import pytest

from engine.errors import Cancelled, InputError
from engine.synth import (
    STEMS,
    STYLES,
    SynthUnavailable,
    effects,
    generate_score,
    make_acapella,
    place_acapella,
    synthesize_song,
)
from engine.synth.effects import EqBand
from engine.synth.instruments import find_soundfont
from engine.synth.midi import TICKS_PER_BEAT, _vlq, midi_bytes
from engine.synth.score import SINGERS, VocalNote
from engine.synth.singer import SingerSettings, load_pyworld, recorded_voices_available, sing


def _missing_tools() -> list[str]:
    missing = [t for t in ("fluidsynth", "espeak-ng") if shutil.which(t) is None]
    try:
        find_soundfont()
    except SynthUnavailable:
        missing.append("a General MIDI soundfont (fluid-soundfont-gm)")
    try:
        load_pyworld()
    except SynthUnavailable:
        missing.append("pyworld")
    return missing


@pytest.fixture(scope="module")
def tools() -> None:
    missing = _missing_tools()
    if missing:
        message = "synthesizer tools missing: " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " (required under CI)")
        pytest.skip(message)


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-30))


@pytest.fixture(scope="module")
def song(tools: None):  # type: ignore[no-untyped-def]
    return synthesize_song(seed=11, duration_seconds=5.0)


@pytest.fixture(scope="module")
def bus_run(tools: None):  # type: ignore[no-untyped-def]
    """A bussed song and the progress fractions reported while making it."""
    fractions: list[float] = []
    song = synthesize_song(seed=12, duration_seconds=4.0, bus=True,
                           progress=lambda f, _msg: fractions.append(f))
    return song, fractions


@pytest.fixture(scope="module")
def bus_song(bus_run):  # type: ignore[no-untyped-def]
    return bus_run[0]


# --- score and MIDI (pure Python) -----------------------------------------------------------


def test_score_is_a_function_of_the_seed() -> None:
    a, b, c = generate_score(5, 20.0), generate_score(5, 20.0), generate_score(6, 20.0)
    assert a == b
    assert (a.tempo_bpm, a.key_pc, a.melody) != (c.tempo_bpm, c.key_pc, c.melody)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_fills_every_stem(style: str) -> None:
    score = generate_score(3, 12.0, style=style)
    assert score.style == style
    lo, hi = SINGERS[score.singer][0]
    for stem in ("drums", "bass", "other"):
        assert sum(len(t.notes) for t in score.tracks_for(stem)) > 0, stem
    assert [t.channel for t in score.tracks_for("drums")] == [9]
    assert len(score.melody) >= 4
    assert all(lo <= n.pitch <= hi for n in score.melody)
    assert all(n.duration_beats * score.seconds_per_beat >= 0.12 for n in score.melody)
    # The score covers the requested duration.
    assert score.seconds(score.bars * 4) >= 12.0


def test_bad_style_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown style"):
        generate_score(1, 5.0, style="polka")


def test_vlq_encoding() -> None:
    assert _vlq(0) == b"\x00"
    assert _vlq(0x7F) == b"\x7f"
    assert _vlq(0x80) == b"\x81\x00"
    assert _vlq(0x3FFF) == b"\xff\x7f"
    assert _vlq(0x4000) == b"\x81\x80\x00"


def _parse_note_ons(data: bytes) -> list[tuple[int, int, int]]:
    """(absolute tick, channel, pitch) of every note-on in a format-1 SMF (test-side parser)."""
    assert data[:4] == b"MThd"
    _, ntracks, division = struct.unpack(">HHH", data[8:14])
    assert division == TICKS_PER_BEAT
    pos, found = 14, []
    for _ in range(ntracks):
        assert data[pos : pos + 4] == b"MTrk"
        length = struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        i, end, tick = pos + 8, pos + 8 + length, 0
        while i < end:
            delta = 0
            while True:
                byte = data[i]
                i += 1
                delta = (delta << 7) | (byte & 0x7F)
                if byte < 0x80:
                    break
            tick += delta
            status = data[i]
            if status == 0xFF:
                meta_len = data[i + 2]
                i += 3 + meta_len
            elif status & 0xF0 in (0xC0, 0xD0):
                i += 2
            else:
                if status & 0xF0 == 0x90 and data[i + 2] > 0:
                    found.append((tick, status & 0x0F, data[i + 1]))
                i += 3
        assert i == end
        pos = end
    return found


def test_midi_round_trip_keeps_note_times_and_channels() -> None:
    score = generate_score(8, 8.0)
    tracks = score.tracks
    data = midi_bytes(tracks, score.tempo_bpm, score.bars * 4.0)
    parsed = sorted(_parse_note_ons(data))
    expected = sorted(
        (int(round(n.start_beats * TICKS_PER_BEAT)), t.channel, n.pitch)
        for t in tracks for n in t.notes if n.start_beats < score.bars * 4.0
    )
    assert parsed == expected


# --- effects (pure numpy) -------------------------------------------------------------------


@pytest.mark.parametrize("gain_db", [-6.0, 4.5])
def test_peak_eq_has_its_gain_at_its_centre(gain_db: float) -> None:
    sr, f0 = 44100, 1000.0
    sos = effects.biquad_sos(EqBand("peak", f0, gain_db, 1.0), sr)
    from scipy.signal import sosfreqz

    _, h = sosfreqz(sos, worN=[f0], fs=sr)
    assert 20 * np.log10(abs(h[0])) == pytest.approx(gain_db, abs=1e-6)
    _, h_far = sosfreqz(sos, worN=[20.0], fs=sr)
    assert abs(20 * np.log10(abs(h_far[0]))) < 0.1


def test_limiter_respects_its_ceiling() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 44100)) * np.linspace(0.1, 3.0, 44100)
    gain = effects.limiter_gain(x, 44100, ceiling_db=-1.0)
    assert gain.shape == (44100,)
    assert np.max(np.abs(x * gain)) <= 10 ** (-1 / 20) + 1e-9
    assert gain[:1000].min() == pytest.approx(1.0)  # quiet start untouched
    assert np.max(np.abs(np.diff(gain))) < 0.01  # smooth ramps, no clicks


def test_read_at_is_exact_on_integers_and_band_limited_between() -> None:
    sr = 44100
    t = np.arange(sr) / sr
    x = np.sin(2 * np.pi * 440 * t)[None, :]
    assert np.allclose(effects.read_at(x, np.arange(100.0, 200.0)), x[:, 100:200], atol=1e-6)
    pos = np.arange(1000, 40000) + 0.37
    expected = np.sin(2 * np.pi * 440 * pos / sr)
    err = effects.read_at(x, pos)[0] - expected
    assert _db(err) - _db(expected) < -70


def test_missing_soundfont_is_a_readable_input_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="soundfont not found") as info:
        find_soundfont(tmp_path / "none.sf2")
    assert isinstance(info.value, SynthUnavailable)
    assert "none.sf2" in str(info.value)


# --- rendering (needs fluidsynth, espeak-ng, pyworld) ---------------------------------------


def test_song_shapes_rates_and_levels(song) -> None:  # type: ignore[no-untyped-def]
    frames = 5 * 44100
    assert song.mix.sample_rate == 44100 and song.mix.samples.shape == (2, frames)
    assert song.mix.samples.dtype == np.float32
    assert set(song.stems) == set(STEMS)
    for stem in STEMS:
        audio = song.stems[stem]
        assert audio.samples.shape == (2, frames) and audio.sample_rate == 44100
        assert _db(audio.samples) > -50, f"{stem} is silent"
    peak = float(np.max(np.abs(song.mix.samples)))
    assert peak <= 10 ** (-1 / 20) + 1e-6
    assert song.info["levels"]["vocal_to_instrumental_db"] == pytest.approx(
        song.info["recipe"]["stems"]["vocals"]["level_db"], abs=1.0)
    assert song.info["stems_sum_to_mix"] is True


def test_stems_sum_to_the_mix(song) -> None:  # type: ignore[no-untyped-def]
    total = np.sum([song.stems[s].samples.astype(np.float64) for s in STEMS], axis=0)
    assert _db(song.mix.samples - total) - _db(song.mix.samples) < -100
    assert song.pre_bus_stems is song.stems


def test_same_seed_gives_identical_audio(song) -> None:  # type: ignore[no-untyped-def]
    again = synthesize_song(seed=11, duration_seconds=5.0)
    assert np.array_equal(again.mix.samples, song.mix.samples)
    for stem in STEMS:
        assert np.array_equal(again.stems[stem].samples, song.stems[stem].samples), stem


def test_different_seeds_differ(song) -> None:  # type: ignore[no-untyped-def]
    other = synthesize_song(seed=13, duration_seconds=5.0)
    assert other.score.melody != song.score.melody
    diff = other.mix.samples - song.mix.samples
    assert _db(diff) > _db(song.mix.samples) - 3  # not a small perturbation: unrelated songs


def test_bus_keeps_stems_exact_and_limits_the_mix(bus_song) -> None:  # type: ignore[no-untyped-def]
    ceiling_db = bus_song.info["recipe"]["bus"]["ceiling_db"]
    total = np.sum([bus_song.stems[s].samples.astype(np.float64) for s in STEMS], axis=0)
    assert _db(bus_song.mix.samples - total) - _db(bus_song.mix.samples) < -100
    assert np.max(np.abs(bus_song.mix.samples)) <= 10 ** (ceiling_db / 20) + 1e-5
    assert bus_song.info["bus_result"]["limiter_gain_reduction_db_max"] > 0.5
    pre = bus_song.pre_bus_stems["vocals"].samples
    post = bus_song.stems["vocals"].samples
    assert pre.shape == post.shape and not np.array_equal(pre, post)


def test_progress_is_reported_and_cancel_stops_early(bus_run) -> None:  # type: ignore[no-untyped-def]
    fractions = bus_run[1]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    seen: list[float] = []
    with pytest.raises(Cancelled):
        synthesize_song(seed=1, duration_seconds=3.0, progress=lambda f, _m: seen.append(f),
                        cancel=lambda: len(seen) >= 1)
    assert seen == [0.0]  # stopped at the next check, before any rendering


@pytest.mark.parametrize("offset_seconds", [1.3479, -0.8123])
def test_acapella_truth_places_it_back_exactly(song, offset_seconds: float) -> None:  # type: ignore[no-untyped-def]
    acapella, truth = make_acapella(song, offset_seconds=offset_seconds, gain_db=-3.7)
    sr = song.mix.sample_rate
    assert truth["offset_samples"] == round(offset_seconds * sr)
    assert truth["offset_seconds"] == pytest.approx(offset_seconds, abs=0.5 / sr)
    assert truth["gain_db"] == pytest.approx(3.7) and truth["polarity"] == 1
    vocal = song.stems["vocals"].samples
    # Acapella sample k is mix sample k + offset.
    k = 60000  # inside the song for both signs of the offset
    assert acapella.samples[0, k] == pytest.approx(vocal[0, k + truth["offset_samples"]] * 10 ** (-3.7 / 20), rel=1e-5)
    placed = place_acapella(acapella, truth, song.mix.frames)
    covered = slice(max(truth["offset_samples"], 0), song.mix.frames)
    err = placed[:, covered] - vocal[:, covered]
    assert _db(err) - _db(vocal[:, covered]) < -100


def test_acapella_with_drift_and_another_rate(song) -> None:  # type: ignore[no-untyped-def]
    acapella, truth = make_acapella(song, offset_seconds=0.4321, gain_db=-2.5, drift_ppm=80.0, sample_rate=48000)
    assert acapella.sample_rate == 48000 and truth["acapella_sample_rate"] == 48000
    assert truth["drift_ppm"] == 80.0
    expected_len = (song.mix.frames - 1 - truth["offset_samples"]) / (1 + 80e-6) + 1
    assert abs(acapella.frames - expected_len * 48000 / 44100) < 3
    vocal = song.stems["vocals"].samples
    region = slice(truth["offset_samples"] + 2000, song.mix.frames - 2000)
    # Compare below 18 kHz: the 44.1 → 48 → 44.1 kHz round trip of the polyphase resampler
    # rolls off in its transition band near 22 kHz by design.
    from scipy.signal import butter, sosfiltfilt

    lowpass = butter(8, 18000, fs=44100, output="sos")

    def error_db(placed: np.ndarray) -> float:
        err = sosfiltfilt(lowpass, placed - vocal, axis=-1)[:, region]
        return _db(err) - _db(vocal[:, region])

    placed = place_acapella(acapella, truth, song.mix.frames)
    assert error_db(placed) < -50
    # Ignoring the drift leaves a far worse match: the truth's drift is real.
    naive = dict(truth, drift_ppm=0.0)
    assert error_db(place_acapella(acapella, naive, song.mix.frames)) > error_db(placed) + 20


def test_acapella_rejects_offsets_past_the_end(song) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="leaves no acapella"):
        make_acapella(song, offset_seconds=9.0, gain_db=0.0)


@pytest.mark.parametrize("voice", ["en-us", "flite:slt", "flite:rms"])
def test_sung_pitch_follows_the_melody(tools: None, voice: str) -> None:
    """espeak-ng's formant voices and flite's recorded-speaker voices sing on the melody alike."""
    if voice.startswith("flite:") and not recorded_voices_available():
        if os.environ.get("CI"):
            pytest.fail("flite missing (required under CI)")
        pytest.skip("flite missing")
    pw = load_pyworld()
    pitches = (57, 60, 64, 62, 67)
    melody = [VocalNote(0.5 + i, 0.9, p, 100, w) for i, (p, w) in enumerate(zip(pitches, ("day", "night", "love", "home", "oh"), strict=True))]
    settings = SingerSettings(voice=voice, vibrato_depth_cents=0.0, drift_cents=0.0, scoop_cents=0.0)
    y = sing(melody, 0.5, 3.5, 44100, settings, np.random.default_rng(0)).astype(np.float64)
    f0, t = pw.harvest(y, 44100, frame_period=5.0, f0_floor=80.0, f0_ceil=800.0)
    for note in melody:
        a, b = note.start_beats * 0.5 + 0.1, (note.start_beats + note.duration_beats) * 0.5 - 0.05
        sel = (t >= a) & (t < b) & (f0 > 0)
        assert sel.sum() > 30, note
        cents = 1200 * np.log2(f0[sel] / (440 * 2 ** ((note.pitch - 69) / 12)))
        assert abs(float(np.median(cents))) < 20, (note, float(np.median(cents)))


def test_unknown_flite_voice_is_a_clear_error(tools: None) -> None:
    if not recorded_voices_available():
        pytest.skip("flite missing")
    melody = [VocalNote(0.5, 0.9, 60, 100, "day")]
    with pytest.raises(SynthUnavailable, match="flite:nobody"):
        sing(melody, 0.5, 2.0, 44100, SingerSettings(voice="flite:nobody"), np.random.default_rng(0))


def test_other_sample_rate_and_bad_arguments(tools: None) -> None:
    s = synthesize_song(seed=2, duration_seconds=2.0, sample_rate=22050, style="house")
    assert s.mix.sample_rate == 22050 and s.mix.samples.shape == (2, 44100)
    assert s.info["score"]["style"] == "house"
    with pytest.raises(InputError):
        synthesize_song(seed=2, duration_seconds=0.1)
    with pytest.raises(InputError):
        synthesize_song(seed=2, duration_seconds=2.0, style="polka")


# --- the bundled demo session ---------------------------------------------------------------


def test_demo_files_match_their_truth() -> None:
    """The shipped demo: the acapella really sits at the recorded offset and gain in the mix."""
    import json
    from pathlib import Path

    from engine.audio import load_audio

    demo = Path(__file__).resolve().parents[2] / "resources" / "demo"
    meta = json.loads((demo / "demo.json").read_text())
    mix = load_audio(demo / meta["files"]["mix"])
    acapella = load_audio(demo / meta["files"]["acapella"])
    truth = meta["truth"]
    assert mix.sample_rate == 44100 and mix.channels == 2 and 20 <= mix.duration_seconds <= 40
    assert acapella.sample_rate == truth["acapella_sample_rate"]
    assert sum(p.stat().st_size for p in demo.iterdir() if p.is_file()) <= 5 * 1024 * 1024
    assert truth["offset_samples"] == round(truth["offset_seconds"] * mix.sample_rate)
    assert np.max(np.abs(mix.samples)) < 1.0
    # Cross-correlation of the mono signals peaks at the recorded offset.
    m, a = mix.mono().astype(np.float64), acapella.mono().astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(m) + len(a))))
    xcorr = np.fft.irfft(np.fft.rfft(m, n) * np.conj(np.fft.rfft(a, n)), n)
    lag = int(np.argmax(xcorr))
    lag = lag - n if lag > n // 2 else lag
    assert lag == truth["offset_samples"]
    # The least-squares gain of the placed acapella against the mix is the recorded gain.
    off = truth["offset_samples"]
    seg = min(len(a), len(m) - off)
    g = float(np.dot(m[off : off + seg], a[:seg]) / np.dot(a[:seg], a[:seg]))
    assert 20 * np.log10(g) == pytest.approx(truth["gain_db"], abs=0.5)
