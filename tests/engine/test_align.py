"""The alignment engine against known truth: offsets, drift, rates, polarity, gain, nulls, CLI.

The signals are synthetic and exact: a seeded "singer" (harmonic notes with vibrato, formants,
consonant bursts and gaps, all analytic in continuous time) and a seeded "band" (chords, bass,
kick, snare, hats). The acapella is the singer evaluated at the times where the truth says its
samples play (offset, drift, other rate), so no resampler of ours is involved in the truth.
``bench/bench_align.py`` reuses these generators.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.align import (
    MATCH_CONFIDENCE,
    AlignmentParams,
    AlignmentRenderer,
    align_acapella,
    align_command,
    null_depth_for,
    null_test,
    render_aligned,
)
from engine.audio import Audio, load_audio, save_audio
from engine.errors import Cancelled, InputError
from engine.spectral import BANDS

REPO = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------------
# synthetic material
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    t0: float
    t1: float
    f0: float
    vib_rate: float
    vib_depth: float
    attack: float
    release: float
    amps: tuple[float, ...]
    phases: tuple[float, ...]
    cons_freqs: tuple[float, ...]
    cons_phases: tuple[float, ...]
    cons_amp: float


@lru_cache(maxsize=32)
def vocal_score(duration_seconds: float, seed: int, start_seconds: float = 0.5) -> tuple[Note, ...]:
    """Phrases of sung notes with gaps, in the song's own key and tuning (seeded)."""
    rng = np.random.default_rng(seed)
    key = float(rng.integers(0, 12)) + float(rng.uniform(-0.3, 0.3))
    scale = 196.0 * 2 ** ((np.array([0, 2, 3, 5, 7, 8, 10, 12, 14]) + key) / 12)
    notes: list[Note] = []
    t = start_seconds
    while t < duration_seconds - 1.0:
        for _ in range(int(rng.integers(3, 8))):
            dur = float(rng.uniform(0.15, 0.7))
            if t + dur > duration_seconds - 0.3:
                break
            f0 = float(rng.choice(scale) * rng.choice([0.5, 1.0, 1.0]) * 2 ** (rng.normal(0, 0.1) / 12))
            h = np.arange(1, max(1, int(7000.0 / f0)) + 1)
            fr = h * f0
            env = (1.0 / h) * (1.0 + 3.0 * np.exp(-0.5 * ((fr - rng.uniform(500, 900)) / 200) ** 2)
                               + 2.0 * np.exp(-0.5 * ((fr - rng.uniform(1200, 2500)) / 300) ** 2))
            notes.append(Note(
                t0=t, t1=t + dur, f0=f0,
                vib_rate=float(rng.uniform(4.5, 6.5)), vib_depth=float(rng.uniform(0.005, 0.02)),
                attack=float(rng.uniform(0.02, 0.06)), release=float(rng.uniform(0.04, 0.1)),
                amps=tuple(env / env.sum()), phases=tuple(rng.uniform(0, 2 * np.pi, len(h))),
                cons_freqs=tuple(rng.uniform(2500.0, 7000.0, 24)),
                cons_phases=tuple(rng.uniform(0, 2 * np.pi, 24)), cons_amp=float(rng.uniform(0.0, 0.08)),
            ))
            t += dur + float(rng.uniform(0.0, 0.08))
        t += float(rng.uniform(0.4, 2.0))
    return tuple(notes)


def render_vocal(notes: tuple[Note, ...], times_seconds: np.ndarray) -> np.ndarray:
    """The singer at arbitrary increasing times (seconds): exact, float64 ``(len(times),)``."""
    out = np.zeros(times_seconds.shape, dtype=np.float64)
    for n in notes:
        i0, i1 = np.searchsorted(times_seconds, [n.t0, n.t1])
        if i1 <= i0:
            continue
        tt = times_seconds[i0:i1] - n.t0
        d = n.t1 - n.t0
        env = np.ones_like(tt)
        a = tt < n.attack
        env[a] = 0.5 - 0.5 * np.cos(np.pi * tt[a] / n.attack)
        r = tt > d - n.release
        env[r] *= 0.5 - 0.5 * np.cos(np.pi * (d - tt[r]) / n.release)
        phase = 2 * np.pi * n.f0 * tt + (n.f0 * n.vib_depth / n.vib_rate) * np.sin(2 * np.pi * n.vib_rate * tt)
        seg = np.zeros_like(tt)
        for k, (amp, ph) in enumerate(zip(n.amps, n.phases, strict=True)):
            seg += amp * np.sin((k + 1) * phase + ph)
        c = tt < 0.04  # a consonant burst at the onset: random sinusoids, analytic in t
        if n.cons_amp > 0 and c.any():
            tc = tt[c]
            burst = np.sin(2 * np.pi * np.outer(tc, n.cons_freqs) + np.asarray(n.cons_phases)).sum(axis=1)
            seg[c] += n.cons_amp * (0.5 - 0.5 * np.cos(2 * np.pi * tc / 0.04)) * burst / 5.0
        out[i0:i1] += 0.3 * env * seg
    return out


@lru_cache(maxsize=16)
def instrumental(duration_seconds: float, sample_rate: int, seed: int, channels: int = 2) -> np.ndarray:
    """Chords, bass, kick, snare and hats (seeded), float64 ``(channels, frames)``, read-only."""
    rng = np.random.default_rng(seed + 1000)
    n = int(round(duration_seconds * sample_rate))
    t = np.arange(n) / sample_rate
    out = np.zeros((channels, n))
    beat = 60.0 / float(rng.uniform(90, 130))
    roots = 110.0 * 2 ** (rng.integers(0, 12, size=64) / 12)
    bar = 4 * beat
    for b in range(int(duration_seconds / bar) + 1):
        s0, s1 = int(b * bar * sample_rate), min(n, int((b + 1) * bar * sample_rate))
        if s1 <= s0:
            break
        tt = t[s0:s1] - t[s0]
        root = roots[b % 16]
        chord = np.zeros_like(tt)
        for iv in (0, 4, 7, 11):
            f = root * 2 ** (iv / 12) * 2
            for h in range(1, 12):
                if f * h > 6000:
                    break
                chord += np.sin(2 * np.pi * f * h * tt + h) / h
        bass = sum(np.sin(2 * np.pi * root / 2 * h * tt) / h for h in (1, 2, 3))
        pan = rng.uniform(0.3, 0.7)
        gains = [1 - pan, pan] if channels == 2 else [0.5] * channels
        for c in range(channels):
            out[c, s0:s1] += 0.1 * gains[c] * np.exp(-tt * 1.5) * chord + 0.12 * bass * np.exp(-tt * 0.7)
    for k in range(int(duration_seconds / beat)):
        s0 = int(k * beat * sample_rate)
        m = min(n - s0, int(0.25 * sample_rate))
        tt = np.arange(m) / sample_rate
        out[:, s0:s0 + m] += 0.35 * np.sin(2 * np.pi * (50 * tt + 2 * (1 - np.exp(-tt * 30)))) * np.exp(-tt * 12)
        if k % 2 == 1:
            m2 = min(n - s0, int(0.18 * sample_rate))
            out[:, s0:s0 + m2] += 0.12 * rng.standard_normal(m2) * np.exp(-np.arange(m2) / sample_rate * 25)
        for half in (0.0, 0.5):
            s2 = int((k + half) * beat * sample_rate)
            m3 = min(n - s2, int(0.05 * sample_rate))
            if m3 > 0:
                out[:, s2:s2 + m3] += 0.04 * np.diff(rng.standard_normal(m3 + 1)) * np.exp(-np.arange(m3) / sample_rate * 80)
    out.flags.writeable = False
    return out


@dataclass
class Pair:
    """A mix, its acapella and the truth."""

    mix: Audio
    acapella: Audio
    vocal: np.ndarray  # the vocal as it sounds in the mix, float64 (mix channels, frames)
    offset_samples: float
    drift_ppm: float
    gain_db: float
    polarity: int


def make_pair(
    duration_seconds: float = 12.0,
    seed: int = 1,
    mix_rate: int = 44_100,
    acapella_rate: int | None = None,
    offset_samples: float = 12_345.37,
    drift_ppm: float = 0.0,
    gain_db: float = -3.0,
    polarity: int = 1,
    mix_channels: int = 2,
    acapella_gains: tuple[float, ...] = (1.0,),
    band: bool = True,
    acapella_seconds: float | None = None,
    lead_in_noise: bool = False,
    vocal_seed: int | None = None,
) -> Pair:
    """A synthetic mix and an acapella with known offset/drift/rate/gain/polarity.

    Acapella frame ``j`` (at ``acapella_rate``) is converted frame ``k = j·mix_rate/acapella_rate``
    and plays at mix frame ``offset + k·(1 + drift)``, as the engine's convention says; its
    channels are the vocal divided by the gain, times ``acapella_gains``. By default the
    acapella runs to the end of the mix.
    """
    fa = acapella_rate or mix_rate
    notes = vocal_score(duration_seconds, seed)
    n = int(round(duration_seconds * mix_rate))
    v = render_vocal(notes, np.arange(n) / mix_rate)
    mix = np.repeat(v[None, :], mix_channels, axis=0)
    if band:
        mix = mix + instrumental(duration_seconds, mix_rate, seed, mix_channels)
    step = (mix_rate / fa) * (1.0 + drift_ppm * 1e-6)  # mix frames per acapella frame
    frames = int((n - offset_samples) / step) if acapella_seconds is None else int(acapella_seconds * fa)
    times = (offset_samples + np.arange(frames) * step) / mix_rate
    a = render_vocal(vocal_score(duration_seconds, vocal_seed) if vocal_seed is not None else notes, times)
    a /= polarity * 10 ** (gain_db / 20)
    if lead_in_noise:  # hiss and a count-in of clicks before the song starts
        rng = np.random.default_rng(seed + 7)
        lead = times < 0
        a[lead] += 0.003 * rng.standard_normal(int(lead.sum()))
        for click in range(4):
            i = int(np.searchsorted(times, -2.0 + 0.5 * click))
            a[i:i + 200] += 0.2 * np.exp(-np.arange(len(a[i:i + 200])) / 30.0)
    acap = np.stack([g * a for g in acapella_gains]).astype(np.float32)
    return Pair(Audio(mix.astype(np.float32), mix_rate), Audio(acap, fa),
                np.repeat(v[None, :], mix_channels, axis=0), offset_samples, drift_ppm, gain_db, polarity)


def _db(err: np.ndarray, ref: np.ndarray) -> float:
    return 10 * math.log10(float(np.sum(np.asarray(err, np.float64) ** 2)) / float(np.sum(np.asarray(ref, np.float64) ** 2)))


def _assert_matches(pair: Pair, tol_samples: float, tol_db: float = 0.1, tol_ppm: float = 10.0):
    r = align_acapella(pair.mix, pair.acapella)
    assert r.matched and r.confidence >= 0.9, r.message
    assert abs(r.offset_samples - pair.offset_samples) <= tol_samples, (r.offset_samples, pair.offset_samples)
    assert r.offset_seconds == pytest.approx(r.offset_samples / pair.mix.sample_rate)
    assert abs(r.drift_ppm - pair.drift_ppm) <= tol_ppm, r.drift_ppm
    assert r.polarity == pair.polarity
    assert abs(r.gain_db - pair.gain_db) <= tol_db, r.gain_db
    assert r.acapella_sample_rate == pair.acapella.sample_rate and r.mix_sample_rate == pair.mix.sample_rate
    return r


# ------------------------------------------------------------------------------------------
# offsets, polarity, gain
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0.0, 4410.0, 12_345.37, 20_000.5, -3.3 * 44_100 - 0.61])
def test_integer_and_fractional_offsets_within_a_quarter_sample(offset: float) -> None:
    r = _assert_matches(make_pair(offset_samples=offset), tol_samples=0.25)
    assert r.drift_ppm == 0.0  # a digital copy has no drift: exactly zero, not "0.003 ppm"


@pytest.mark.parametrize("offset_seconds", [60.0, -60.0])
def test_offsets_of_sixty_seconds_either_way(offset_seconds: float) -> None:
    # +60 s: a 15 s acapella that starts a minute into a 75 s mix. -60 s: an acapella with a
    # minute of extra lead-in before a 15 s mix. 16 kHz keeps it quick.
    rate = 16_000
    if offset_seconds > 0:
        pair = make_pair(75.0, seed=3, mix_rate=rate, offset_samples=offset_seconds * rate + 0.5)
    else:
        pair = make_pair(15.0, seed=3, mix_rate=rate, offset_samples=offset_seconds * rate - 0.25,
                         acapella_seconds=75.0)
    _assert_matches(pair, tol_samples=0.25)


@pytest.mark.parametrize(("gain_db", "polarity"), [(-12.0, 1), (-12.0, -1), (0.0, -1), (6.0, 1), (6.0, -1)])
def test_polarity_and_least_squares_gain(gain_db: float, polarity: int) -> None:
    r = _assert_matches(make_pair(gain_db=gain_db, polarity=polarity, seed=2), tol_samples=0.25, tol_db=0.1)
    # the gain is continuous, not snapped to steps
    assert r.gain_db != round(r.gain_db, 1)


# ------------------------------------------------------------------------------------------
# drift, sample rates, codecs, lead-in, channels
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("drift_ppm", [50.0, -50.0, 300.0, -300.0, 1000.0, -1000.0])
def test_clock_drift(drift_ppm: float) -> None:
    _assert_matches(make_pair(20.0, seed=4, drift_ppm=drift_ppm, offset_samples=8_000.3),
                    tol_samples=1.0, tol_ppm=10.0)


def test_residual_drift_after_correction_is_below_one_ppm() -> None:
    pair = make_pair(20.0, seed=5, drift_ppm=1000.0, offset_samples=5_000.0)
    r = _assert_matches(pair, tol_samples=1.0)
    corrected = Audio(r.renderer.drift_corrected(r.drift_ppm), pair.mix.sample_rate)
    again = align_acapella(pair.mix, corrected)
    assert again.matched and abs(again.drift_ppm) <= 1.0
    assert abs(again.offset_samples - r.offset_samples) <= 1.0


@pytest.mark.parametrize(("mix_rate", "acapella_rate"), [(44_100, 48_000), (48_000, 44_100)])
def test_acapella_at_another_sample_rate(mix_rate: int, acapella_rate: int) -> None:
    pair = make_pair(seed=6, mix_rate=mix_rate, acapella_rate=acapella_rate, offset_samples=7_777.77)
    r = _assert_matches(pair, tol_samples=0.25)
    assert r.to_json()["acapella_sample_rate"] == acapella_rate


@pytest.mark.parametrize(("fmt", "subtype", "ext"), [("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3")])
def test_lossy_acapella(tmp_path: Path, fmt: str, subtype: str, ext: str) -> None:
    pair = make_pair(seed=7, offset_samples=3_210.6)
    path = tmp_path / f"acapella.{ext}"
    sf.write(path, pair.acapella.samples[0] * 0.5, pair.acapella.sample_rate, format=fmt, subtype=subtype)
    pair.acapella = load_audio(path)
    pair.gain_db += 20 * math.log10(2.0)  # the file holds the acapella at half level
    _assert_matches(pair, tol_samples=1.0, tol_db=0.3)


def test_noisy_lead_in_negative_offset() -> None:
    pair = make_pair(seed=8, offset_samples=-2.5 * 44_100 + 0.37, lead_in_noise=True)
    _assert_matches(pair, tol_samples=0.25)


def test_mono_mix_with_stereo_acapella() -> None:
    pair = make_pair(seed=9, mix_channels=1, acapella_gains=(1.0, 0.6), offset_samples=999.9)
    pair.gain_db -= 20 * math.log10(0.8)  # the acapella is downmixed: (1 + 0.6) / 2
    r = _assert_matches(pair, tol_samples=0.25)
    assert r.renderer.render().shape == (1, pair.mix.frames)


def test_stereo_acapella_on_stereo_mix_is_matched_channel_by_channel() -> None:
    pair = make_pair(seed=9, acapella_gains=(1.0, 0.5), offset_samples=2_500.0)
    r = align_acapella(pair.mix, pair.acapella)
    # least squares over both channels: g = (1 + 0.5) / (1 + 0.25) times the truth
    assert r.gain_db == pytest.approx(pair.gain_db + 20 * math.log10(1.5 / 1.25), abs=0.1)


def test_acapella_longer_than_the_mix() -> None:
    # the mix is cut 4 s before the acapella ends
    pair = make_pair(16.0, seed=10, offset_samples=30_000.25)
    mix = Audio(pair.mix.samples[:, : 12 * 44_100].copy(), 44_100)
    r = align_acapella(mix, pair.acapella)
    assert r.matched and abs(r.offset_samples - pair.offset_samples) <= 0.25
    assert r.renderer.region == (30_000, 12 * 44_100)


# ------------------------------------------------------------------------------------------
# nulls
# ------------------------------------------------------------------------------------------


def test_exact_vocal_stem_nulls_below_minus_80_db() -> None:
    pair = make_pair(seed=11, band=False, offset_samples=4_321.123, gain_db=-3.7, polarity=-1)
    r = _assert_matches(pair, tol_samples=0.01, tol_db=0.001)
    assert r.null_depth_db <= -80.0
    for name, depth in r.band_null_depth_db.items():
        assert math.isnan(depth) or depth <= -80.0 or name == "Sub-bass", (name, depth)
    aligned = render_aligned(pair.acapella, r.params, pair.mix.sample_rate, pair.mix.frames, pair.mix.channels)
    assert _db(aligned - pair.vocal, pair.vocal) <= -80.0


def test_vocal_under_a_band_is_recovered_far_below_the_mix_noise() -> None:
    pair = make_pair(seed=12, offset_samples=11_111.11)
    r = align_acapella(pair.mix, pair.acapella)
    aligned = render_aligned(pair.acapella, r.params, pair.mix.sample_rate, pair.mix.frames, pair.mix.channels)
    assert _db(aligned - pair.vocal, pair.vocal) <= -40.0
    # what is left is the band: the null equals band energy over mix energy in the region
    r0, r1 = r.renderer.region
    band = pair.mix.samples[:, r0:r1] - pair.vocal[:, r0:r1]
    assert r.null_depth_db == pytest.approx(_db(band, pair.mix.samples[:, r0:r1]), abs=0.05)


def test_null_test_known_values() -> None:
    rate, frames = 8_000, 8_000 * 4
    t = np.arange(frames) / rate
    # one tone per band, each an integer number of cycles in the 4 s (no leakage between bands)
    freqs = [40.0, 100.0, 400.0, 1000.0, 3000.0]
    amps = [0.1, 0.2, 0.3, 0.4, 0.5]
    tones = [a * np.sin(2 * np.pi * f * t) for f, a in zip(freqs, amps, strict=True)]
    mix = np.sum(tones, axis=0)[None, :].astype(np.float32)
    residual = np.zeros(frames)
    residual[frames // 2:] = 0.5 * tones[3][frames // 2:]  # half the Mid tone, second half only
    aligned = (mix - residual).astype(np.float32)
    nt = null_test(mix, aligned, rate, window_seconds=1.0)
    mix_energy = sum(a * a / 2 for a in amps) * frames
    assert nt.null_depth_db == pytest.approx(10 * math.log10(0.25 * 0.16 / 2 * frames / 2 / mix_energy), abs=0.02)
    # the Mid band: a quarter of the energy over half the time (plus a little leakage at the step)
    assert nt.band_null_depth_db["Mid"] == pytest.approx(10 * math.log10(0.25 / 2), abs=0.1)
    for name in ("Sub-bass", "Bass", "Low-mid"):
        assert nt.band_null_depth_db[name] < -40.0
    assert list(nt.band_null_depth_db) == [b[0] for b in BANDS]
    np.testing.assert_allclose(nt.window_start_seconds, [0.0, 1.0, 2.0, 3.0])
    assert all(d < -100.0 for d in nt.window_null_depth_db[:2])
    window_db = 10 * math.log10(0.25 * 0.16 / 2 / sum(a * a / 2 for a in amps))
    np.testing.assert_allclose(nt.window_null_depth_db[2:], window_db, atol=0.05)


# ------------------------------------------------------------------------------------------
# no match, local fit
# ------------------------------------------------------------------------------------------


def test_wrong_song_is_no_match_and_changes_nothing() -> None:
    pair = make_pair(seed=13, vocal_seed=99)
    r = align_acapella(pair.mix, pair.acapella)
    assert not r.matched and r.confidence < MATCH_CONFIDENCE
    assert "no match" in r.message
    assert (r.offset_samples, r.drift_ppm, r.gain_db, r.polarity) == (0.0, 0.0, 0.0, 1)
    assert r.renderer is None and len(r.local_fit.centre_seconds) == 0
    js = r.to_json()
    assert js["match"] is False and js["null_depth_db"] == 0.0


def test_noise_is_no_match() -> None:
    pair = make_pair(seed=14)
    noise = Audio(np.random.default_rng(0).standard_normal((1, 10 * 44_100)).astype(np.float32) * 0.1, 44_100)
    assert not align_acapella(pair.mix, noise).matched


def test_local_fit_shows_where_the_acapella_was_edited() -> None:
    # the acapella lost 1.5 s at 14 s: after the edit it plays 1.5 s early against the mix
    rate, cut_s, edit = 44_100, 14.0, int(1.5 * 44_100)
    pair = make_pair(26.0, seed=15, offset_samples=2_000.0)
    notes = vocal_score(26.0, 15)
    k = np.arange(int((26.0 - 1.5) * rate) - 2_000)
    mix_frame = 2_000.0 + k + np.where(k >= int(cut_s * rate), edit, 0)
    acap = render_vocal(notes, mix_frame / rate) / 10 ** (-3 / 20)
    r = align_acapella(pair.mix, Audio(acap[None, :].astype(np.float32), rate))
    assert r.matched and abs(r.offset_samples - 2_000.0) <= 0.5  # the longer part wins
    lf = r.local_fit
    assert len(lf.centre_seconds) == len(lf.offset_samples) == len(lf.gain_db) == len(lf.null_depth_db)
    before = (lf.centre_seconds < cut_s - 1.0) & np.isfinite(lf.offset_samples)
    after = (lf.centre_seconds > cut_s + 1.0) & np.isfinite(lf.offset_samples)
    assert before.sum() >= 6 and after.sum() >= 6
    assert np.median(np.abs(lf.offset_samples[before] - 2_000.0)) <= 1.0
    assert np.median(np.abs(lf.offset_samples[after] - (2_000.0 + edit))) <= 1.0
    assert np.nanmedian(lf.null_depth_db[before]) < np.nanmedian(lf.null_depth_db[after]) - 1.0
    good_gain = lf.gain_db[before & np.isfinite(lf.gain_db)]
    assert np.median(np.abs(good_gain - (-3.0))) <= 0.5


# ------------------------------------------------------------------------------------------
# rendering and the fast null meter
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aligned_pair() -> tuple[Pair, object]:
    pair = make_pair(seed=16, offset_samples=6_543.21, drift_ppm=120.0)
    return pair, align_acapella(pair.mix, pair.acapella)


@pytest.mark.parametrize("nudge", [0.0, 0.37, -2.5, 137.0, -26_000.0, 70_000.0])
def test_fast_null_meter_equals_the_rendered_null(aligned_pair, nudge: float) -> None:
    pair, r = aligned_pair
    renderer: AlignmentRenderer = r.renderer
    for gain_db, polarity in ((r.gain_db, r.polarity), (r.gain_db + 1.5, r.polarity), (r.gain_db, -r.polarity)):
        p = r.params.nudged(offset_samples=r.offset_samples + nudge, gain_db=gain_db, polarity=polarity)
        fast = renderer.null(p)
        nt = null_test(pair.mix.samples, renderer.render(p), pair.mix.sample_rate, region=renderer.region)
        assert fast.null_depth_db == pytest.approx(nt.null_depth_db, abs=0.02)
        for name in fast.band_null_depth_db:
            assert fast.band_null_depth_db[name] == pytest.approx(nt.band_null_depth_db[name], abs=0.05)
    assert renderer.null(r.params).null_depth_db == pytest.approx(r.null_depth_db, abs=0.01)


def test_renderer_follows_a_drift_change(aligned_pair) -> None:
    pair, r = aligned_pair
    renderer: AlignmentRenderer = r.renderer
    for drift in (r.drift_ppm + 3.0, r.drift_ppm):
        p = r.params.nudged(drift_ppm=drift)
        nt = null_test(pair.mix.samples, renderer.render(p), pair.mix.sample_rate, region=renderer.region)
        assert renderer.null(p).null_depth_db == pytest.approx(nt.null_depth_db, abs=0.02)
    # 3 ppm over 12 s moves the end by ~1.6 frames: a shallower null than the fitted drift
    assert renderer.null(r.params.nudged(drift_ppm=r.drift_ppm + 3.0)).null_depth_db > r.null_depth_db


def test_render_paths_agree(aligned_pair) -> None:
    pair, r = aligned_pair
    renderer = r.renderer
    full = renderer.render(r.params)
    once = render_aligned(pair.acapella, r.params, pair.mix.sample_rate, pair.mix.frames, pair.mix.channels)
    assert np.array_equal(full, once)
    for start, stop in ((0, 8_000), (100_000, 144_100), (pair.mix.frames - 3_000, pair.mix.frames)):
        seg = renderer.render_segment(start, stop, r.params)
        assert seg.shape == (pair.mix.channels, stop - start)
        assert np.max(np.abs(seg - full[:, start:stop])) <= 1e-5 * np.max(np.abs(full))
    seg = renderer.render_segment(100_000, 144_100, r.params)
    assert _db(seg - full[:, 100_000:144_100], full[:, 100_000:144_100]) <= -90.0
    assert null_depth_for(pair.mix, pair.acapella, r.params) == pytest.approx(r.null_depth_db, abs=0.01)


def test_integer_offset_render_is_a_plain_copy() -> None:
    a = Audio(np.random.default_rng(1).standard_normal((1, 1_000)).astype(np.float32), 8_000)
    out = render_aligned(a, AlignmentParams(offset_samples=-10.0, gain_db=-6.0206, polarity=-1), 8_000, 2_000, 2)
    np.testing.assert_allclose(out[:, :990], np.repeat(-0.5 * a.samples[:, 10:], 2, axis=0), rtol=1e-4)
    assert not out[:, 990:].any()


# ------------------------------------------------------------------------------------------
# real recordings (shared fixtures): shift the true vocal stem ourselves
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("song", ["ikala_10161_chorus", "mir1k_amy_3_01", "musdb18_music_delta_80s_rock"])
@pytest.mark.parametrize("shift", [1_234, -777])
def test_real_stems(shared_fixtures: Path, song: str, shift: int) -> None:
    folder = shared_fixtures / "real_stems" / song
    mix, vocals = load_audio(folder / "mixture.flac"), load_audio(folder / "vocals.flac")
    if shift > 0:  # acapella starts `shift` frames into the song
        acap = vocals.samples[:, shift:]
    else:  # acapella has `-shift` frames of extra lead-in
        acap = np.concatenate([np.zeros((vocals.channels, -shift), np.float32), vocals.samples], axis=1)
    r = align_acapella(mix, Audio(acap, vocals.sample_rate))
    assert r.matched and abs(r.offset_samples - shift) <= 0.25 and r.polarity == 1
    assert abs(r.gain_db) <= (0.1 if song != "mir1k_amy_3_01" else 3.0)  # mir1k's vocal is 27 dB down
    if song != "mir1k_amy_3_01":
        aligned = render_aligned(Audio(acap, vocals.sample_rate), r.params, mix.sample_rate, mix.frames, mix.channels)
        assert _db(aligned - vocals.samples, vocals.samples) <= -40.0


def test_real_stems_wrong_song(shared_fixtures: Path) -> None:
    stems = shared_fixtures / "real_stems"
    ikala, musdb = stems / "ikala_10161_chorus", stems / "musdb18_music_delta_80s_rock"
    assert not align_acapella(load_audio(musdb / "mixture.flac"), load_audio(ikala / "vocals.flac")).matched
    assert not align_acapella(load_audio(ikala / "mixture.flac"), load_audio(musdb / "vocals.flac")).matched


def test_ikala_null_is_the_accompaniment(shared_fixtures: Path) -> None:
    folder = shared_fixtures / "real_stems" / "ikala_10161_chorus"  # mixture = exact sum of the stems
    mix, vocals, acc = (load_audio(folder / f"{n}.flac") for n in ("mixture", "vocals", "accompaniment"))
    r = align_acapella(mix, vocals)
    assert abs(r.offset_samples) <= 0.25
    assert r.null_depth_db == pytest.approx(_db(acc.samples, mix.samples), abs=0.1)


# ------------------------------------------------------------------------------------------
# the command, bad input, progress and cancel
# ------------------------------------------------------------------------------------------


def _files(tmp_path: Path, pair: Pair) -> tuple[Path, Path]:
    return (save_audio(tmp_path / "mix.wav", pair.mix, "float"),
            save_audio(tmp_path / "acapella.flac", pair.acapella, "24"))


def test_align_command_prints_and_writes_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pair = make_pair(8.0, seed=17, mix_rate=22_050, offset_samples=-1_000.0)
    mix_path, aca_path = _files(tmp_path, pair)
    out = tmp_path / "align.json"
    assert align_command(str(mix_path), str(aca_path), str(out)) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    for key in ("offset_seconds", "offset_samples", "drift_ppm", "gain_db", "polarity", "confidence",
                "null_depth_db", "acapella_sample_rate", "match", "message"):
        assert key in printed
    assert printed["match"] is True and abs(printed["offset_samples"] + 1_000.0) <= 0.25
    assert printed["offset_seconds"] == pytest.approx(printed["offset_samples"] / 22_050)


def test_align_command_no_match_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pair = make_pair(8.0, seed=18, mix_rate=22_050, vocal_seed=98)
    mix_path, aca_path = _files(tmp_path, pair)
    assert align_command(str(mix_path), str(aca_path), None) == 0
    captured = capsys.readouterr()
    js = json.loads(captured.out)
    assert js["match"] is False and "no match" in js["message"] and "no match" in captured.err


def test_app_align_end_to_end(tmp_path: Path) -> None:
    pair = make_pair(6.0, seed=19, mix_rate=16_000, offset_samples=800.0)
    mix_path, aca_path = _files(tmp_path, pair)
    run = subprocess.run([sys.executable, str(REPO / "app.py"), "align", "--mix", str(mix_path),
                          "--acapella", str(aca_path)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    assert abs(json.loads(run.stdout)["offset_samples"] - 800.0) <= 0.25


def test_silent_or_tiny_inputs_are_input_errors(tmp_path: Path) -> None:
    pair = make_pair(4.0, seed=20, mix_rate=16_000)
    silent = save_audio(tmp_path / "silent.wav", Audio(np.zeros((1, 16_000), np.float32), 16_000))
    with pytest.raises(InputError, match="silent") as info:
        align_command(str(_files(tmp_path, pair)[0]), str(silent), None)
    assert str(silent) in str(info.value)
    with pytest.raises(InputError, match="too short"):
        align_acapella(pair.mix, Audio(pair.acapella.samples[:, :1_000], 16_000))


def test_progress_and_cancel() -> None:
    pair = make_pair(6.0, seed=21, mix_rate=16_000)
    seen: list[float] = []
    align_acapella(pair.mix, pair.acapella, progress=lambda f, msg: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Cancelled):
        align_acapella(pair.mix, pair.acapella, cancel=lambda: len(seen) > 0)
