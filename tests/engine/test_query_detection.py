"""Query detection: the gating/hysteresis/segment logic on synthetic sequences with known
activity, the query checks, and event.json's schema."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.audio import Audio
from engine.errors import InputError
from engine.models.ast import AstConfig, AudioSpectrogramTransformer, QueryEmbedder
from engine.query.detection import (
    DetectionParams,
    Segment,
    class_stem,
    clean_segments,
    detect_from_sequences,
    detect_segments,
    gaussian_smooth,
    hysteresis_runs,
    prepare_query,
    query_from_region,
    routed_stem,
    seed_gating,
    windows_to_segments,
)
from engine.query.event import build_event, validate_event, write_event

HOP, WIN = 0.5, 1.0


def _sequences(n: int, active: list[tuple[int, int]], seed: int = 0, on: float = 0.85,
               off: float = 0.15) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per-window class probability and cosine: ``on`` ± noise in the active windows."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(n, bool)
    for i, j in active:
        truth[i:j] = True
    p = np.where(truth, on, off) + rng.normal(0, 0.05, n)
    c = np.where(truth, on - 0.1, off) + rng.normal(0, 0.05, n)
    starts = np.arange(n) * HOP
    return np.clip(p, 0, 1), np.clip(c, -1, 1), starts, (n - 1) * HOP + WIN


def _expected(i: int, j: int, n: int, duration: float) -> tuple[float, float]:
    lead = 0.5 * (WIN - HOP)
    return (0.0 if i == 0 else i * HOP + lead), (duration if j == n else (j - 1) * HOP + lead + HOP)


def test_known_activity_gives_its_segments() -> None:
    n = 120
    active = [(10, 30), (60, 64), (90, 120)]
    p, c, starts, dur = _sequences(n, active)
    # hysteresis 0.1: the lowered gates stay above the off windows' values (0.15 ± noise), so
    # the runs end exactly where the activity does
    params = DetectionParams(smoothing_windows=0.0, padding_ms=0.0, hysteresis=0.1)
    det = detect_from_sequences(p, c, starts, dur, params)
    assert len(det.segments) == 3
    for seg, (i, j) in zip(det.segments, active, strict=True):
        lo, hi = _expected(i, j, n, dur)
        assert seg.start == pytest.approx(lo, abs=1e-9) and seg.end == pytest.approx(hi, abs=1e-9)
        assert 0.6 < seg.score <= 1.0
    assert det.found and det.class_gate_used


def test_default_smoothing_and_padding_stay_near_the_truth() -> None:
    n = 200
    active = [(20, 50), (120, 160)]
    p, c, starts, dur = _sequences(n, active, seed=3)
    det = detect_from_sequences(p, c, starts, dur, DetectionParams(hysteresis=0.1))  # smoothing, padding
    assert len(det.segments) == 2
    for seg, (i, j) in zip(det.segments, active, strict=True):
        lo, hi = _expected(i, j, n, dur)
        assert abs(seg.start - lo) <= 0.55 and abs(seg.end - hi) <= 0.55


def test_absent_target_gives_no_segments_but_the_seed_gating_fires() -> None:
    rng = np.random.default_rng(7)
    n = 400
    p = np.clip(0.2 + 0.1 * rng.standard_normal(n), 0, 1)
    c = np.clip(0.2 + 0.1 * rng.standard_normal(n), -1, 1)  # never near the cosine gate
    starts = np.arange(n) * HOP
    det = detect_from_sequences(p, c, starts, n * HOP + 0.5, DetectionParams())
    assert det.segments == [] and not det.found
    # the seed's min-max + 92nd percentile always finds "something"
    assert seed_gating(p, c, starts, n * HOP + 0.5, min_duration_ms=0.0)


def test_both_gates_are_applied() -> None:
    n = 60
    p = np.full(n, 0.9)
    c = np.full(n, 0.1)  # right class, wrong sound: the seed's ignored cosine gate
    starts = np.arange(n) * HOP
    params = DetectionParams(smoothing_windows=0.0)
    assert detect_from_sequences(p, c, starts, 30.5, params).segments == []
    assert detect_from_sequences(c, p, starts, 30.5, params).segments == []
    assert detect_from_sequences(p, p, starts, 30.5, params).segments
    off = DetectionParams(smoothing_windows=0.0, use_cosine_gate=False)
    assert detect_from_sequences(p, c, starts, 30.5, off).segments


def test_class_outside_the_routed_stem_is_not_gated_on() -> None:
    """A confident class the U-Net's routing contradicts (an organ the AST calls drums) leaves
    the class gate out; with the rule switched off the wrong class hides every window."""
    n = 40
    p = np.full(n, 0.05)  # the windows do not look like the (wrong) class at all
    c = np.where(np.arange(n) >= 20, 0.8, 0.1)
    starts = np.arange(n) * HOP
    params = DetectionParams(smoothing_windows=0.0)
    det = detect_from_sequences(p, c, starts, 20.5, params, query_class_probability=0.9, class_matches_stem=False)
    assert not det.class_gate_used and len(det.segments) == 1
    det = detect_from_sequences(p, c, starts, 20.5, params, query_class_probability=0.9, class_matches_stem=True)
    assert det.class_gate_used and det.segments == []
    strict = DetectionParams(smoothing_windows=0.0, class_must_match_stem=False)
    det = detect_from_sequences(p, c, starts, 20.5, strict, query_class_probability=0.9, class_matches_stem=False)
    assert det.class_gate_used and det.segments == []


def test_class_can_follow_the_routed_stem() -> None:
    """``class_follows_stem``: a query the AST calls strings (0.63) but also vocals (0.61), routed
    to vocals by the U-Net, is gated on its vocal probability (with a note); below the query
    confidence, or with the option off, the class gate stays out."""
    from engine.query.detection import MixAnalysis, QueryInfo, class_in_stem, gate_analysis
    from engine.query.masking import SourcePrior

    n = 40
    probs = np.zeros((n, 4))  # classes: vocals, drums, bass, strings
    probs[:, 3] = 0.05  # strings nowhere
    probs[10:30, 0] = 0.9  # vocals in windows 10-29
    emb = np.tile(np.array([1.0, 0.0]), (n, 1))  # every window as similar as can be
    prior = SourcePrior(None, {"vocals": 1.0}, {"vocals": 0.8, "drums": 0.1, "bass": 0.05, "other": 0.05}, 0.0)
    heard = MixAnalysis(np.arange(n) * HOP, probs, emb, prior, None, {})

    def info(p_vocals: float) -> QueryInfo:
        p = {"vocals": p_vocals, "drums": 0.01, "bass": 0.02, "strings": 0.63}
        return QueryInfo("strings", 3, 0.63, p, np.array([1.0, 0.0]), 2.0)

    assert class_in_stem(info(0.61), "vocals") == ("vocals", 0, 0.61)
    assert class_in_stem(info(0.61), "other") == ("strings", 3, 0.63)
    base = DetectionParams(smoothing_windows=0.0, padding_ms=0.0, use_stem_gate=False, hysteresis=0.1)
    follow = dataclasses.replace(base, class_follows_stem=True)
    det = gate_analysis(info(0.61), heard, 20.5, follow)
    assert det.class_gate_used and det.query is not None and det.query.class_name == "vocals"
    assert any("taken as vocals" in note for note in det.query.notes)
    assert len(det.segments) == 1 and det.segments[0].start == pytest.approx(10 * HOP + 0.25)
    for params, p_vocals in ((base, 0.61), (follow, 0.3)):  # off, or vocals below the confidence
        det = gate_analysis(info(p_vocals), heard, 20.5, params)
        assert not det.class_gate_used and det.query is not None and det.query.class_name == "strings"
        assert len(det.segments) == 1 and det.segments[0].start == 0.0  # similarity alone: everywhere


def test_class_gate_accepts_the_querys_related_classes_of_its_stem() -> None:
    """A query the AST hears as "synth pad 0.73, keys 0.38": in the mix its pad reads as keys,
    so the class gate accepts keys too (p ≥ ``related_class_probability``) and says so, but not a
    guitar the query barely resembles (0.1) nor vocals (another stem); with the top class only,
    the pad is not found."""
    from engine.query.detection import (
        MixAnalysis,
        QueryInfo,
        class_sequence,
        gate_analysis,
        gate_classes,
    )
    from engine.query.masking import SourcePrior

    classes = ["vocals", "keys", "synth_pad", "guitar"]
    n = 48
    probs = np.zeros((n, 4))
    probs[:, 2] = 0.05  # synth pad nowhere, as the AST hears it in the mix
    probs[10:30, 1] = 0.9  # the pad, heard as keys
    probs[34:44, 3] = 0.9  # a guitar
    probs[:, 0] = 0.9  # vocals everywhere (another stem)
    emb = np.tile(np.array([1.0, 0.0]), (n, 1))
    prior = SourcePrior(None, {"other": 1.0}, {"vocals": 0.0, "drums": 0.0, "bass": 0.0, "other": 1.0}, 0.0)
    heard = MixAnalysis(np.arange(n) * HOP, probs, emb, prior, None, {})
    p_query = {"vocals": 0.35, "keys": 0.38, "synth_pad": 0.73, "guitar": 0.1}

    assert gate_classes(p_query, "synth_pad", 0.3) == ["synth_pad", "keys"]
    assert gate_classes(p_query, "synth_pad", 0.05) == ["synth_pad", "keys", "guitar"]  # never vocals
    assert gate_classes(p_query, "synth_pad", 1.0) == ["synth_pad"]
    np.testing.assert_array_equal(class_sequence(probs, classes, ["synth_pad", "keys"]), np.maximum(probs[:, 2], probs[:, 1]))

    def info() -> QueryInfo:
        return QueryInfo("synth_pad", 2, 0.73, dict(p_query), np.array([1.0, 0.0]), 2.0)

    base = DetectionParams(smoothing_windows=0.0, padding_ms=0.0, use_stem_gate=False, hysteresis=0.1)
    det = gate_analysis(info(), heard, (n - 1) * HOP + WIN, base)
    assert det.class_gate_used and len(det.segments) == 1
    assert det.segments[0].start == pytest.approx(10 * HOP + 0.25) and det.segments[0].end == pytest.approx(29 * HOP + 0.75)
    assert det.query is not None and any("keys (p = 0.38)" in note for note in det.query.notes)
    det = gate_analysis(info(), heard, (n - 1) * HOP + WIN, dataclasses.replace(base, related_class_probability=1.0))
    assert det.class_gate_used and not det.segments
    assert det.query is not None and not any("accepts" in note for note in det.query.notes)


def test_unsure_vocal_query_is_found_by_the_stem_level_alone() -> None:
    """With ``stem_alone_for=("vocals",)``, the AST unsure of a query the U-Net hears as vocals:
    the stem gate stands in for the similarity gate (a real voice the AST does not recognise);
    not for other stems, not when the class is sure, not by default."""
    n = 40
    p = np.full(n, 0.05)
    c = np.full(n, 0.1)  # the AST finds no window like the query
    level = np.where((np.arange(n) >= 10) & (np.arange(n) < 30), -3.0, -30.0)
    starts = np.arange(n) * HOP
    params = DetectionParams(smoothing_windows=0.0, padding_ms=0.0, stem_alone_for=("vocals",))
    det = detect_from_sequences(p, c, starts, 20.5, params, 0.2, level, True, "vocals")
    assert det.stem_gate_alone and not det.class_gate_used
    assert len(det.segments) == 1
    seg = det.segments[0]
    assert seg.start == pytest.approx(10 * HOP + 0.25) and seg.end == pytest.approx(29 * HOP + 0.75)
    assert seg.score == pytest.approx(10 ** -0.3, abs=1e-6)  # the stem's share of the power
    for routed, prob, prm in (("drums", 0.2, params), ("other", 0.2, params), ("vocals", 0.9, params),
                              ("vocals", 0.2, DetectionParams(smoothing_windows=0.0))):
        det = detect_from_sequences(p, c, starts, 20.5, prm, prob, level, True, routed)
        assert not det.stem_gate_alone and det.segments == []


@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_a_mix_shorter_than_the_smoothing_kernel_keeps_its_window_count(n: int) -> None:
    """A 2-s mix has 3 windows, fewer than the smoothing kernel's 7 taps: the smoothed values
    keep one per window (np.convolve's "same" returns the longer input's length) and the
    detection runs."""
    x = np.linspace(0.0, 1.0, n)
    y = gaussian_smooth(x, 1.0)
    assert y.shape == (n,)
    assert np.all(np.diff(y) >= -1e-12) and y.min() >= 0.0 and y.max() <= 1.0  # a weighted mean
    p = np.full(n, 0.9)
    starts = np.arange(n) * HOP
    det = detect_from_sequences(p, p, starts, (n - 1) * HOP + WIN, DetectionParams(), 0.9,
                                np.zeros(n))
    assert len(det.segments) == 1 and det.score.shape == (n,)


def test_class_stems_and_routing() -> None:
    assert [class_stem(k) for k in ("vocals", "drums", "bass", "keys", "brass", "synth_pad")] == [
        "vocals", "drums", "bass", "other", "other", "other"]
    assert routed_stem({"drums": 0.1, "bass": 0.2, "other": 0.6, "vocals": 0.1}) == "other"


def test_uncertain_query_class_gates_on_similarity_only() -> None:
    n = 40
    p = np.full(n, 0.1)
    c = np.where(np.arange(n) >= 20, 0.8, 0.1)
    det = detect_from_sequences(p, c, np.arange(n) * HOP, 20.5, DetectionParams(smoothing_windows=0.0),
                                query_class_probability=DetectionParams().class_threshold / 2)
    assert not det.class_gate_used
    assert len(det.segments) == 1 and det.segments[0].start == pytest.approx(20 * HOP + 0.25 - 0.05)
    assert det.segments[0].score == pytest.approx(0.8)


def test_hysteresis_extends_strong_runs_and_drops_weak_only_runs() -> None:
    strong = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0], bool)
    weak = np.array([0, 1, 1, 1, 1, 0, 0, 1, 1, 0], bool)
    assert hysteresis_runs(strong, weak).tolist() == [False, True, True, True, True, False, False, False, False, False]
    # in the full algorithm: a dip just below the gate inside a segment does not split it
    n = 30
    c = np.full(n, 0.8)
    c[:5] = c[25:] = 0.1
    params = DetectionParams(smoothing_windows=0.0, merge_gap_ms=0.0)
    c[15] = params.cosine_threshold - 0.05  # below the cosine gate, above it − hysteresis
    p = np.where(c > 0.2, 0.8, 0.1)
    assert len(detect_from_sequences(p, c, np.arange(n) * HOP, 15.5, params).segments) == 1
    no_hyst = DetectionParams(smoothing_windows=0.0, merge_gap_ms=0.0, hysteresis=0.0)
    assert len(detect_from_sequences(p, c, np.arange(n) * HOP, 15.5, no_hyst).segments) == 2


def test_percentile_gate_never_creates_detections() -> None:
    n = 50
    p = np.full(n, 0.3)
    det = detect_from_sequences(p, p, np.arange(n) * HOP, 25.5, DetectionParams(percentile=92.0))
    assert det.segments == []
    # two runs: the percentile (among gated windows) keeps the stronger one only
    q = np.full(n, 0.1)
    q[5:15], q[30:45] = 0.6, 0.9
    det = detect_from_sequences(q, q, np.arange(n) * HOP, 25.5,
                                DetectionParams(percentile=92.0, smoothing_windows=0.0))
    assert len(det.segments) == 1 and det.segments[0].start > 14.0


def test_clean_segments_merge_minimum_and_padding() -> None:
    raw = [Segment(1.0, 2.0, 0.8), Segment(2.1, 3.0, 0.6), Segment(5.0, 5.3, 0.9), Segment(9.8, 10.0, 0.7)]
    out = clean_segments(raw, 10.0, min_duration_s=0.5, merge_gap_s=0.2, padding_s=0.05)
    assert [(s.start, s.end) for s in out] == [pytest.approx((0.95, 3.05))]
    assert out[0].score == pytest.approx((0.8 * 1.0 + 0.6 * 0.9) / 1.9)
    padded = clean_segments([Segment(0.02, 1.0), Segment(9.0, 9.99)], 10.0, 0.5, 0.2, 0.05)
    assert padded[0].start == 0.0 and padded[-1].end == 10.0
    # padding that makes neighbours overlap merges them
    touching = clean_segments([Segment(1.0, 2.0), Segment(2.25, 3.0)], 10.0, 0.5, 0.2, 0.2)
    assert len(touching) == 1


def test_windows_to_segments_edges() -> None:
    active = np.array([1, 1, 0, 0, 1], bool)
    segs = windows_to_segments(active, np.ones(5), np.arange(5) * HOP, WIN, HOP, 3.0)
    assert [(s.start, s.end) for s in segs] == [(0.0, 1.25), (2.25, 3.0)]


# ----------------------------------------------------------------------------------------------
# Queries
# ----------------------------------------------------------------------------------------------


def _tone(seconds: float, rate: int = 22050, hz: float = 440.0, channels: int = 2) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return Audio(np.tile(x.astype(np.float32), (channels, 1)), rate, Path("/music/query.wav"))


def test_long_query_is_trimmed_to_its_loudest_three_seconds_with_a_note() -> None:
    rate = 16000
    x = np.concatenate([np.full(2 * rate, 1e-3), 0.5 * np.sin(np.arange(3 * rate) * 0.1), np.full(rate, 1e-3)])
    q, notes = prepare_query(Audio(x.astype(np.float32), rate))
    assert q.frames == 3 * rate
    assert len(notes) == 1 and "trimmed" in notes[0] and "6.00 s" in notes[0]
    assert np.sqrt(np.mean(q.samples**2)) > 0.3  # the loud part was kept
    q2, notes2 = prepare_query(_tone(2.0))
    assert notes2 == [] and q2.frames == _tone(2.0).frames


def test_short_or_silent_query_is_a_clear_error_naming_the_file() -> None:
    with pytest.raises(InputError, match="0.50 s long.*1–3 s") as e:
        prepare_query(_tone(0.5))
    assert e.value.path == Path("/music/query.wav")
    silent = Audio(np.zeros((1, 32000), np.float32), 16000, Path("/music/silence.wav"))
    with pytest.raises(InputError, match="silent") as e2:
        prepare_query(silent)
    assert "silence.wav" in str(e2.value)


def test_query_region() -> None:
    mix = _tone(10.0)
    q = query_from_region(mix, (2.0, 4.5))
    assert q.frames == int(2.5 * mix.sample_rate)
    with pytest.raises(InputError, match="outside"):
        query_from_region(mix, (9.0, 12.0))
    with pytest.raises(InputError, match="empty"):
        query_from_region(mix, (3.0, 3.0))


def test_detect_segments_runs_any_rate_and_channels_with_a_model() -> None:
    """Plumbing with a tiny random-weight AST (quality needs the trained weights: see the CLI
    tests and bench/bench_query.py): timeline in seconds, one window per hop, trimming note."""
    torch.manual_seed(0)
    cfg = AstConfig(dim=32, depth=1, heads=2, embed_dim=16)
    embedder = QueryEmbedder(AudioSpectrogramTransformer(cfg), torch.device("cpu"))
    mix = _tone(7.3, rate=44100)
    det = detect_segments(mix, _tone(4.0, rate=22050, channels=1), DetectionParams(), embedder=embedder)
    assert det.duration_seconds == pytest.approx(7.3, abs=1e-4)
    assert det.window_starts.size == 14 and det.window_starts[1] == pytest.approx(0.5)
    assert det.query is not None and any("trimmed" in n for n in det.query.notes)
    assert det.query.class_name in cfg.classes and det.query.embedding.shape == (16,)
    assert np.allclose(np.linalg.norm(det.query.embedding), 1.0, atol=1e-5)
    for s in det.segments:
        assert 0 <= s.start < s.end <= 7.3


def test_the_query_can_be_heard_as_its_routed_stems() -> None:
    """With ``listen="stem"`` the analysis keeps the query's own routed U-Net stems (mono, at the
    mix's rate, as long as the query); ``query_listen`` picks what the AST describes; a near-silent
    routed query falls back to the clip with a note; ``listen="mix"`` keeps none."""
    from engine.query.detection import (
        analyse_for_query,
        describe_heard_query,
        describe_query,
        to_analysis_rate,
    )

    torch.manual_seed(0)
    cfg = AstConfig(dim=32, depth=1, heads=2, embed_dim=16)
    embedder = QueryEmbedder(AudioSpectrogramTransformer(cfg), torch.device("cpu"))
    mix = Audio(_tone(6.0, rate=44100).samples + _tone(6.0, rate=44100, hz=97.0).samples, 44100)
    q, _ = prepare_query(_tone(2.0, rate=22050, hz=97.0, channels=1))
    heard = analyse_for_query(embedder, mix, q, DetectionParams())
    assert heard.query_heard is not None and heard.prior is not None
    assert heard.query_heard.sample_rate == 44100 and heard.query_heard.channels == 1
    assert heard.query_heard.frames == 2 * 44100
    expected = describe_query(embedder, to_analysis_rate(heard.query_heard, 16000), q.duration_seconds, [])
    as_stem = describe_heard_query(embedder, q, heard, DetectionParams(query_listen="stem"), [])
    as_clip = describe_heard_query(embedder, q, heard, DetectionParams(query_listen="clip"), [])
    assert np.array_equal(as_stem.embedding, expected.embedding)
    assert np.array_equal(as_clip.embedding,
                          describe_query(embedder, to_analysis_rate(q, 16000), q.duration_seconds, []).embedding)
    assert not np.array_equal(as_stem.embedding, as_clip.embedding)
    heard.query_heard = Audio(np.zeros_like(heard.query_heard.samples), 44100)
    fallback = describe_heard_query(embedder, q, heard, DetectionParams(query_listen="stem"), [])
    assert np.array_equal(fallback.embedding, as_clip.embedding)
    assert any("near silent" in n for n in fallback.notes)
    assert analyse_for_query(embedder, mix, q, DetectionParams(listen="mix", use_stem_gate=False)).query_heard is None
    with pytest.raises(InputError, match="query_listen"):
        analyse_for_query(embedder, mix, q, DetectionParams(query_listen="mix"))
    from engine.query.detection import resolve_query_listen

    assert DetectionParams().query_listen == "stem"  # by default the query is heard as the mix is
    assert resolve_query_listen(DetectionParams(), query_from_mix=False).query_listen == "stem"
    auto = DetectionParams(query_listen="auto")
    assert resolve_query_listen(auto, query_from_mix=True).query_listen == "stem"
    assert resolve_query_listen(auto, query_from_mix=False).query_listen == "clip"
    assert resolve_query_listen(DetectionParams(query_listen="clip"), True).query_listen == "clip"
    region = detect_segments(mix, q, auto, embedder=embedder, query_from_mix=True)
    assert region.query is not None and np.array_equal(region.query.embedding, as_stem.embedding)
    assert any("region of the mix" in n for n in region.query.notes)
    clip = detect_segments(mix, q, auto, embedder=embedder)
    assert clip.query is not None and np.array_equal(clip.query.embedding, as_clip.embedding)
    default = detect_segments(mix, q, DetectionParams(), embedder=embedder)  # a clip, heard as its stems
    assert default.query is not None and np.array_equal(default.query.embedding, as_stem.embedding)


# ----------------------------------------------------------------------------------------------
# event.json
# ----------------------------------------------------------------------------------------------


def test_event_json_schema_round_trip(tmp_path: Path) -> None:
    n = 40
    p, c, starts, dur = _sequences(n, [(5, 15)])
    det = detect_from_sequences(p, c, starts, dur, DetectionParams())
    ev = build_event(det, {"cosine_threshold": 0.45}, {"path": "/m.wav", "sample_rate": 44100, "channels": 2,
                                                       "duration_seconds": dur}, {"path": "/q.wav"})
    validate_event(ev)
    path = write_event(tmp_path / "event.json", ev)
    back = json.loads(path.read_text())
    validate_event(back)
    assert back["found"] is True and back["segments"][0]["start"] == pytest.approx(det.segments[0].start, abs=1e-4)
    assert len(back["windows"]["score"]) == n
    assert back["message"].startswith("found 1 segment")
    none = detect_from_sequences(np.zeros(n), np.zeros(n), starts, dur, DetectionParams())
    ev2 = build_event(none, {}, back["mix"], {"region": [1.0, 3.0]})
    validate_event(ev2)
    assert ev2["found"] is False and ev2["segments"] == [] and ev2["message"].startswith("not found")
    bad = dict(ev, segments=[{"start": 3.0, "end": 2.0, "score": 0.5}])
    with pytest.raises(ValueError):
        validate_event(bad)
    with pytest.raises(ValueError):
        validate_event({k: v for k, v in ev.items() if k != "windows"})


# ----------------------------------------------------------------------------------------------
# The stem gate
# ----------------------------------------------------------------------------------------------


def test_stem_gate_removes_windows_whose_stem_is_quiet() -> None:
    """Class and cosine pass everywhere (a sound the AST confuses with the query), but the
    routed stem holds power only in windows 20–40: only those are found."""
    n = 100
    p, c, starts, dur = _sequences(n, [(0, n)])
    level = np.full(n, -30.0)
    level[20:40] = -6.0
    params = DetectionParams(smoothing_windows=0.0, padding_ms=0.0)
    det = detect_from_sequences(p, c, starts, dur, params, stem_level_db=level)
    assert [(s.start, s.end) for s in det.segments] == [_expected(20, 40, n, dur)]
    assert det.stem_level_db is not None and det.stem_level_db.shape == (n,)
    off = detect_from_sequences(p, c, starts, dur, DetectionParams(smoothing_windows=0.0, padding_ms=0.0,
                                                                   use_stem_gate=False), stem_level_db=level)
    assert len(off.segments) == 1 and off.segments[0].duration == pytest.approx(dur)
    absent = detect_from_sequences(p, c, starts, dur, params, stem_level_db=np.full(n, -25.0))
    assert not absent.found


def test_stem_gate_hysteresis_extends_runs_but_never_starts_them() -> None:
    n = 60
    p, c, starts, dur = _sequences(n, [(0, n)])
    level = np.full(n, -30.0)
    level[10:20] = -16.0  # within the hysteresis band (−14 − 3 dB) around a passing run
    level[20:25] = -8.0
    level[40:50] = -16.0  # same band, no passing window: not a segment
    params = DetectionParams(smoothing_windows=0.0, padding_ms=0.0)
    det = detect_from_sequences(p, c, starts, dur, params, stem_level_db=level)
    assert [(s.start, s.end) for s in det.segments] == [_expected(10, 25, n, dur)]


def test_window_level_db_measures_the_routed_share_per_window() -> None:
    from engine.query.masking import SourcePrior

    rate, hop = 1000, 100  # frames every 0.1 s
    frames = 50
    energy = np.ones(frames)
    routed = np.full(frames, 0.01)  # −20 dB
    routed[10:20] = 0.5  # −3 dB in 1.0–2.0 s
    covered = np.ones(frames, bool)
    covered[40:] = False
    prior = SourcePrior(None, {"vocals": 1.0}, {"vocals": 1.0}, 0.0, energy, routed, covered)
    lv = prior.window_level_db(np.array([0.0, 1.0, 0.5, 4.0]), 1.0, rate, hop)
    assert lv[0] == pytest.approx(-20.0, abs=1e-6)
    assert lv[1] == pytest.approx(10 * np.log10(0.5), abs=1e-6)
    assert lv[2] == pytest.approx(10 * np.log10((5 * 0.01 + 5 * 0.5) / 10), abs=1e-6)
    assert lv[3] == -100.0  # frames the U-Net has not seen
    silent = SourcePrior(None, {}, {}, 0.0, np.zeros(frames), np.zeros(frames), covered)
    assert np.all(silent.window_level_db(np.array([0.0]), 1.0, rate, hop) == -100.0)
