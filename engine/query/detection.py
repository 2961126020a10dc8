"""Query-by-example detection: where in the mix does the query's sound play?

Pipeline (seed 002, with its flaws fixed)::

    query (1–3 s) ─▶ 16 kHz mono ─▶ AST windows ─▶ mean class probabilities p_q (K,), embedding e_q (E,)
                                              top class k = argmax p_q
    query ─▶ 4-stem U-Net ─▶ its energy share per stem ─▶ routing weights w_s (engine.query.masking)
    mix (any rate, channels, length) ─▶ 4-stem U-Net masks M_s, routed: M = Σ w_s M_s
          L(t) = share of window t's power in M·mix (dB)          ── the stem gate's value
          the routed estimate M·mix (mono) ─▶ 16 kHz ─▶ AST windows (1.0 s, hop 0.5 s)
          p(t) = P(class k present in window t)   (sigmoid, absolute: no min-max normalisation;
                 the highest over k and the query's related classes of k's stem, see
                 ``related_class_probability``)
          c(t) = cos(e_q, e(t))
    smoothing (Gaussian, σ in windows) ─▶ class gate p ≥ class_threshold AND cosine gate
          c ≥ cosine_threshold AND stem gate L ≥ stem_threshold_db
    hysteresis: a run of windows passing the gates lowered by ``hysteresis`` (and
          ``stem_hysteresis_db``) is kept if it holds at least one window passing the full gates
    optional relative gate: full-gate windows must also reach the ``percentile`` of the scores of
          the windows that pass the gates (never of all windows, so it cannot create detections)
    windows → time: window t decides for its centre hop ``[start + (W − hop)/2, start + (W + hop)/2)``
    merge gaps < merge_gap_ms, drop segments < min_duration_ms, pad by padding_ms, clip to the mix

Why the seed fired on absent targets: it min-max normalised the class probability over the clip
and took its 92nd percentile, so the top ~8 % of windows always passed; its cosine gate flag was
never applied. Here every gate is absolute and all are applied, so a mix without the query's
sound yields no segments ("not found").

Why the U-Net: the AST (trained here, small) hears a quiet bass line or a pad under a full mix
poorly, and its class and embedding drift with whatever else plays. The U-Net says how much of
each window belongs to the query's stem, and listening to the routed estimate instead of the
mix (``listen="stem"``) takes most of the other instruments away before the AST compares it
with the query. The same whole-mix U-Net pass is the separation's prior
(:attr:`Detection.prior`), so it is computed once.

A window's **score** is ``class_weight·p + (1 − class_weight)·c`` (both in [0, 1] for the gated
windows); a segment's score is the mean score of its windows.

Everything here but :func:`detect_segments` (which runs the AST) is plain numpy on sequences,
so the gating logic can be tested on synthetic probability/embedding sequences.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.audio import Audio, resample
from engine.errors import InputError

if TYPE_CHECKING:
    from engine.models.ast import QueryEmbedder
    from engine.query.masking import SourcePrior

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

#: Query length limits (seconds): the seed's 1–3 s.
QUERY_MIN_SECONDS = 1.0
QUERY_MAX_SECONDS = 3.0
#: A query whose RMS is below this (dBFS) is taken as silent.
QUERY_SILENCE_DB = -60.0
#: Hop between the query's own analysis windows (s): a 1-s query still gets several views.
QUERY_HOP_SECONDS = 0.25
#: Mixes up to this long (s) keep the stem gate's whole-mix U-Net mask for the separation
#: (float16, ~80 MB for 4 minutes of stereo); longer ones recompute it around the segments.
KEEP_PRIOR_SECONDS = 20 * 60.0


@dataclass(frozen=True)
class DetectionParams:
    """Detection settings. Defaults: seed 002's balanced preset with the gates made absolute and
    calibrated for the shipped models by ``bench/calibrate_query.py`` on held-out synthesized
    songs (not the benchmark's): the highest segment F1 with no absent sound found, the class and
    cosine gates both applied and at most 30 % of same-stem other-instrument cases firing —
    the AST listens to the routed stem estimate, stem gate −14 dB, cosine 0.6 (seed 0.45), class
    0.2 (the seed had no absolute class gate), percentile off (seed 92). With the
    AST fine-tuned on produced vocals the calibration keeps these (F1 0.92 calibration / 0.94
    validation, no absent case firing). It ties hearing the query as given and as its routed
    stems (0.919 / 0.919 calibration, 0.935 / 0.938 validation); the query is heard as its
    routed stems (``query_listen="stem"``), as the mix is. Hysteresis 0.4 and stem hysteresis
    6 dB (were 0.1 and 3 dB; the calibration's second stage, :data:`bench.calibrate_query.HYSTERESIS_GRID`):
    F1 0.919 → 0.947 on calibration, 0.938 → 0.959 on validation, no more absent or swapped
    cases firing (a lowered gate only extends a run that holds a full-gate window).

    Attributes:
        window_seconds: AST window (fixed by the model: 1.0 s).
        hop_seconds: hop between windows (s).
        class_threshold: class gate, absolute sigmoid probability of the query's class.
        cosine_threshold: cosine gate, similarity of window and query embeddings.
        use_class_gate, use_cosine_gate: switch either gate off.
        query_class_confidence: the class gate applies only when the query's own probability of
            its top class reaches this (below it the class is a guess: a sound outside the
            model's classes, or a recording unlike its training material) — then the cosine
            gate alone decides with the stem gate.
        class_must_match_stem: the class gate applies only when the query's class belongs to the
            stem the 4-stem U-Net routes the query to (its largest share; :func:`class_stem`).
            When the two models disagree about what the query is, the class is not trusted
            (the routing decides what is heard and the stem gate, the cosine what is kept).
        class_follows_stem: when the query's top class is not in the routed stem, take its most
            probable class that is (if that reaches ``query_class_confidence``): the U-Net's
            routing breaks the AST's near-tie (a real voice heard as strings 0.63, vocals 0.61).
        related_class_probability: the class gate also accepts the query's other probable classes
            of its class's stem: each one the query itself reaches this probability for (1 = the
            top class only). The AST confuses neighbouring timbres once other sounds play over
            them (a synth pad heard as keys in the mix's "other" stem); a query it hears as
            "synth pad 0.73, keys 0.38" is then looked for where either class is heard.
        stem_alone_for: stems whose routed estimate may stand in for the similarity gate when
            the AST cannot judge the query (its class below ``query_class_confidence``, e.g. a
            real voice unlike the synthesized singing it was trained on): a query the U-Net routes
            to one of these is found by the stem gate alone. Off by default: on the synthesized
            calibration songs (``bench/calibrate_query.py``) the vocal stem gate alone fires in
            0 of 36 absent cases (3–6 % for drums and bass), but on real instrumental recordings
            the CPU-trained U-Net hears enough "vocals" to fire (``bench/bench_query.py``, real
            absent cases). With ``("vocals",)`` the real MUSDB vocals are found, at that risk.
        hysteresis: how far both gates are lowered to extend a run around its full-gate windows.
        percentile: optional relative gate among the gated windows (0 = off).
        class_weight: weight of the class probability in the score (the rest: cosine).
        smoothing_windows: Gaussian σ (windows) applied to p, c and the stem level before
            gating (0 = off).
        min_duration_ms, merge_gap_ms, padding_ms: segment clean-up.
        listen: what the AST hears: ``"stem"`` the U-Net's estimate of the query's stem(s) (the
            mix with the routed prior mask applied: other instruments mostly gone) or ``"mix"``.
        query_listen: what the AST hears of the query with ``listen="stem"``: ``"clip"`` the
            query as given, ``"stem"`` the query's own routed U-Net stems (heard as the mix is:
            a region of a full mix then describes its routed instrument, not the whole mix), or
            ``"auto"``: "stem" for a region of the mix (``query_from_mix``), else "clip".
            Default "stem": the query then passes through the same U-Net as the mix, with the
            same leakage and colouring, before the AST compares them. Measured
            (``bench/bench_query.py``, AST fine-tuned on produced vocals): on 2-s mix regions
            "stem" takes segment F1 from 0.51 to 0.81; on isolated clips from 0.87 to 0.94
            ("other" queries, heard as given, no longer match their own sound in the "other"
            estimate), with the same real absent cases firing (1 of 9).
        use_stem_gate: apply the stem gate: the shipped 4-stem U-Net routed by the query (as the
            mask's prior) must put at least ``stem_threshold_db`` of a window's power in the
            query's stem(s); lowered by ``stem_hysteresis_db`` to extend a run.
        stem_weight_power: sharpness of the routing (as :class:`engine.query.MaskParams`').
    """

    window_seconds: float = 1.0
    hop_seconds: float = 0.5
    class_threshold: float = 0.2
    cosine_threshold: float = 0.6
    use_class_gate: bool = True
    use_cosine_gate: bool = True
    query_class_confidence: float = 0.5
    class_must_match_stem: bool = True
    class_follows_stem: bool = False
    related_class_probability: float = 0.3
    stem_alone_for: tuple[str, ...] = ()
    hysteresis: float = 0.4
    percentile: float = 0.0
    class_weight: float = 0.5
    smoothing_windows: float = 1.0
    min_duration_ms: float = 500.0
    merge_gap_ms: float = 200.0
    padding_ms: float = 50.0
    listen: str = "stem"
    query_listen: str = "stem"
    use_stem_gate: bool = True
    stem_threshold_db: float = -14.0
    stem_hysteresis_db: float = 6.0
    stem_weight_power: float = 4.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Segment:
    """One stretch of the mix where the query's sound plays.

    Attributes:
        start, end: seconds on the mix's timeline (``start < end``).
        score: mean window score in [0, 1] (1.0 for a segment a user added by hand).
    """

    start: float
    end: float
    score: float = 1.0

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict[str, float]:
        return {"start": round(self.start, 4), "end": round(self.end, 4), "score": round(self.score, 4)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Segment:
        return cls(float(d["start"]), float(d["end"]), float(d.get("score", 1.0)))


@dataclass
class QueryInfo:
    """What the AST makes of the query.

    Attributes:
        class_name, class_index: its top class; class_probability: that class's mean probability.
        probabilities: mean probability per class name.
        embedding: mean window embedding, unit norm ``(E,)``.
        seconds: length used (after trimming); notes: what was done to it (trimmed, …).
    """

    class_name: str
    class_index: int
    class_probability: float
    probabilities: dict[str, float]
    embedding: np.ndarray
    seconds: float
    notes: list[str] = field(default_factory=list)


@dataclass
class Detection:
    """Result of :func:`detect_segments` (or of :func:`detect_from_sequences`).

    Attributes:
        segments: the found segments, in time order (empty: not found).
        window_starts: ``(N,)`` start time of each AST window (s).
        class_probability: ``(N,)`` p(t) of the query's class, or the highest of its gate classes
            (:func:`gate_classes`), after smoothing.
        cosine: ``(N,)`` c(t) (after smoothing).
        score: ``(N,)`` window scores.
        active: ``(N,)`` bool, windows kept (after hysteresis, before time clean-up).
        duration_seconds: length of the mix.
        query: what the AST made of the query (None when fed sequences directly).
        params: the settings used; class_gate_used: False when the query's own class was too
            uncertain to gate on (see :func:`detect_from_sequences`); stem_gate_alone: True when
            the stem gate stood in for the similarity gate (``params.stem_alone_for``).
        seconds: timings.
        stem_level_db: ``(N,)`` the routed stem's share of each window's power (dB, after
            smoothing), None without the stem gate.
        prior: the U-Net prior computed for the stem gate (whole mix), reused by the separation.
    """

    segments: list[Segment]
    window_starts: np.ndarray
    class_probability: np.ndarray
    cosine: np.ndarray
    score: np.ndarray
    active: np.ndarray
    duration_seconds: float
    params: DetectionParams
    query: QueryInfo | None = None
    class_gate_used: bool = True
    stem_gate_alone: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    stem_level_db: np.ndarray | None = None
    prior: SourcePrior | None = None

    @property
    def found(self) -> bool:
        return bool(self.segments)


# ----------------------------------------------------------------------------------------------
# Query preparation
# ----------------------------------------------------------------------------------------------


def class_stem(class_name: str) -> str:
    """The 4-stem U-Net's stem a class belongs to: vocals, drums and bass are their own, every
    other instrument family is ``"other"``."""
    return class_name if class_name in ("vocals", "drums", "bass") else "other"


def class_in_stem(info: QueryInfo, stem: str) -> tuple[str, int, float] | None:
    """The query's most probable class among those of ``stem`` (:func:`class_stem`):
    ``(name, index, probability)``, or None when no class belongs to it."""
    return _best_class_in_stem(info.probabilities, stem)


def _best_class_in_stem(probabilities: dict[str, float], stem: str) -> tuple[str, int, float] | None:
    best = None
    for i, (name, p) in enumerate(probabilities.items()):
        if class_stem(name) == stem and (best is None or p > best[2]):
            best = (name, i, float(p))
    return best


def gate_classes(probabilities: dict[str, float], class_name: str, related_probability: float) -> list[str]:
    """The classes the class gate accepts for a query whose class is ``class_name``: that class,
    then every other class of the same stem (:func:`class_stem`) the query reaches
    ``related_probability`` for (``probabilities``: the query's mean probability per class), most
    probable first."""
    stem = class_stem(class_name)
    related = sorted((n for n, p in probabilities.items()
                      if n != class_name and class_stem(n) == stem and p >= related_probability),
                     key=lambda n: -probabilities[n])
    return [class_name, *related]


def choose_gate_classes(probabilities: dict[str, float], class_name: str, class_probability: float,
                        routed: str | None, params: DetectionParams) -> tuple[str, float, list[str], bool]:
    """The class the class gate checks for a query (``probabilities``: its mean probability per
    class, ``class_name``/``class_probability``: its top class), given the stem the U-Net routes
    it to (``routed``, None without a prior): ``(class, its query probability, the classes the
    gate accepts, whether the class belongs to the routed stem)``. With
    ``params.class_follows_stem`` a top class outside the routed stem is replaced by the query's
    best class inside it, if that reaches ``params.query_class_confidence``; the gate also
    accepts the related classes (:func:`gate_classes`)."""
    matches = routed is None or class_stem(class_name) == routed
    if not matches and params.class_follows_stem and routed is not None:
        alt = _best_class_in_stem(probabilities, routed)
        if alt is not None and alt[2] >= params.query_class_confidence:
            class_name, class_probability, matches = alt[0], alt[2], True
    return (class_name, class_probability,
            gate_classes(probabilities, class_name, params.related_class_probability), matches)


def class_sequence(probs: np.ndarray, classes: Sequence[str], gate: Sequence[str]) -> np.ndarray:
    """``(N,)`` per window the highest probability among the ``gate`` classes (``probs``:
    ``(N, K)`` in the order of ``classes``)."""
    idx = [list(classes).index(n) for n in gate]
    out: np.ndarray = np.asarray(probs)[:, idx].max(axis=1)
    return out


def routed_stem(shares: dict[str, float]) -> str:
    """The stem holding the largest share of the query's energy."""
    return max(shares, key=lambda k: shares[k])


def _rms_db(x: np.ndarray) -> float:
    return 10.0 * math.log10(float(np.mean(np.square(x, dtype=np.float64))) + 1e-30)


def prepare_query(query: Audio, rate: int = 16000, path: str | Path | None = None) -> tuple[Audio, list[str]]:
    """Check a query clip and trim it to at most 3 s (its loudest 3 s).

    Args:
        query: the clip, any rate and channels.
        rate: unused for the checks; kept for symmetry with the analysis rate.
        path: the file it came from (named in errors).

    Returns:
        ``(query, notes)``: the (possibly trimmed) clip at its own rate and channels, and
        human-readable notes about what was done.

    Raises:
        InputError: shorter than 1 s, or silent.
    """
    del rate
    where = path if path is not None else query.path
    seconds = query.duration_seconds
    if seconds < QUERY_MIN_SECONDS - 1e-6:
        raise InputError(f"the query is {seconds:.2f} s long; a query must be "
                         f"{QUERY_MIN_SECONDS:g}–{QUERY_MAX_SECONDS:g} s of the sound to find", where)
    notes: list[str] = []
    x = query.samples
    if seconds > QUERY_MAX_SECONDS + 1e-6:
        sr = query.sample_rate
        keep = int(round(QUERY_MAX_SECONDS * sr))
        step = max(1, int(round(0.05 * sr)))
        energy = np.square(x.astype(np.float64)).sum(axis=0)
        csum = np.concatenate([[0.0], np.cumsum(energy)])
        starts = np.arange(0, x.shape[1] - keep + 1, step)
        best = int(starts[np.argmax(csum[starts + keep] - csum[starts])])
        x = x[:, best : best + keep]
        notes.append(f"query trimmed from {seconds:.2f} s to {QUERY_MAX_SECONDS:g} s "
                     f"(kept {best / sr:.2f}–{(best + keep) / sr:.2f} s, its loudest part)")
    if not np.all(np.isfinite(x)) or _rms_db(x) < QUERY_SILENCE_DB:
        raise InputError(f"the query is silent (RMS below {QUERY_SILENCE_DB:g} dBFS); "
                         "select or drop a clip where the sound plays", where)
    return Audio(np.ascontiguousarray(x), query.sample_rate, query.path), notes


def query_from_region(mix: Audio, region: tuple[float, float]) -> Audio:
    """The mix between ``region = (start, end)`` seconds, as a query clip.

    Raises:
        InputError: a region outside the mix or with ``end <= start``.
    """
    start, end = float(region[0]), float(region[1])
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise InputError(f"query region {start:g}:{end:g} s is empty; give START:END with END > START")
    if start < 0 or end > mix.duration_seconds + 1e-6:
        raise InputError(f"query region {start:g}:{end:g} s lies outside the mix "
                         f"(0–{mix.duration_seconds:.2f} s)", mix.path)
    a, b = int(round(start * mix.sample_rate)), int(round(end * mix.sample_rate))
    return Audio(np.ascontiguousarray(mix.samples[:, a:b]), mix.sample_rate, mix.path)


def to_analysis_rate(audio: Audio, rate: int) -> np.ndarray:
    """Mono float32 ``(frames,)`` at ``rate`` (the AST's 16 kHz)."""
    return resample(audio.mono(), audio.sample_rate, rate)


def describe_query(embedder: QueryEmbedder, query16k: np.ndarray, seconds: float,
                   notes: list[str]) -> QueryInfo:
    """Classify and embed the query: mean over its 1-s windows (hop 0.25 s)."""
    _, probs, embs = embedder.embed_signal(query16k, hop_seconds=QUERY_HOP_SECONDS)
    win = embedder.config.window_samples
    # The zero-padded tail window only when the query is shorter than one window.
    n_full = max(1, int((query16k.shape[0] - win) // int(QUERY_HOP_SECONDS * embedder.config.sample_rate)) + 1)
    probs, embs = probs[:n_full], embs[:n_full]
    p = probs.mean(axis=0)
    e = embs.mean(axis=0)
    e = e / max(float(np.linalg.norm(e)), 1e-12)
    k = int(np.argmax(p))
    classes = tuple(embedder.classes)
    return QueryInfo(classes[k], k, float(p[k]), {c: float(v) for c, v in zip(classes, p, strict=True)},
                     e.astype(np.float32), seconds, list(notes))


# ----------------------------------------------------------------------------------------------
# The gating algorithm on sequences (no model needed)
# ----------------------------------------------------------------------------------------------


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along the only axis (σ in samples; edges renormalised)."""
    if sigma <= 0 or x.size < 2:
        return x.astype(np.float64)
    radius = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    # "full" then the centred slice: "same" would return the kernel's length for short inputs
    num = np.convolve(x.astype(np.float64), k, mode="full")[radius : radius + x.size]
    den = np.convolve(np.ones(x.size), k, mode="full")[radius : radius + x.size]
    out: np.ndarray = num / den
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(i, j), …]``: maximal runs ``mask[i:j]`` of True."""
    if mask.size == 0:
        return []
    m = np.concatenate([[False], mask.astype(bool), [False]])
    d = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(d[::2].tolist(), d[1::2].tolist(), strict=True))


def hysteresis_runs(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Windows in a run of ``weak`` (∪ ``strong``) windows that holds at least one ``strong``."""
    weak = weak | strong
    out = np.zeros_like(weak, dtype=bool)
    for i, j in _runs(weak):
        if strong[i:j].any():
            out[i:j] = True
    return out


def clean_segments(raw: list[Segment], duration: float, min_duration_s: float,
                   merge_gap_s: float, padding_s: float) -> list[Segment]:
    """Merge gaps shorter than ``merge_gap_s``, drop segments shorter than ``min_duration_s``,
    pad by ``padding_s`` each side, clip to ``[0, duration]`` and merge what now overlaps.
    Scores of merged segments are duration-weighted means."""
    segs = sorted((s for s in raw if s.end > s.start), key=lambda s: s.start)
    merged: list[Segment] = []
    for s in segs:
        if merged and s.start - merged[-1].end < merge_gap_s:
            m = merged[-1]
            w1, w2 = m.duration, s.duration
            score = (m.score * w1 + s.score * w2) / max(w1 + w2, 1e-12)
            merged[-1] = Segment(m.start, max(m.end, s.end), score)
        else:
            merged.append(Segment(s.start, s.end, s.score))
    kept = [s for s in merged if s.duration >= min_duration_s - 1e-9]
    padded = [Segment(max(0.0, s.start - padding_s), min(duration, s.end + padding_s), s.score) for s in kept]
    out: list[Segment] = []
    for s in padded:
        if out and s.start <= out[-1].end:
            m = out[-1]
            w1, w2 = m.duration, s.duration
            out[-1] = Segment(m.start, max(m.end, s.end), (m.score * w1 + s.score * w2) / max(w1 + w2, 1e-12))
        else:
            out.append(s)
    return [s for s in out if s.end > s.start]


def windows_to_segments(active: np.ndarray, score: np.ndarray, starts: np.ndarray,
                        window_s: float, hop_s: float, duration: float) -> list[Segment]:
    """Runs of active windows → time segments: each window stands for its centre hop
    (the first window reaches back to 0, the last to the end of the mix)."""
    segs: list[Segment] = []
    lead = 0.5 * (window_s - hop_s)
    n = active.size
    for i, j in _runs(active):
        start = 0.0 if i == 0 else float(starts[i]) + lead
        end = duration if j == n else float(starts[j - 1]) + lead + hop_s
        end = min(end, duration)
        if end > start:
            segs.append(Segment(start, end, float(np.mean(score[i:j]))))
    return segs


def detect_from_sequences(
    class_probability: np.ndarray,
    cosine: np.ndarray,
    window_starts: np.ndarray,
    duration_seconds: float,
    params: DetectionParams,
    query_class_probability: float = 1.0,
    stem_level_db: np.ndarray | None = None,
    class_matches_stem: bool = True,
    routed: str | None = None,
) -> Detection:
    """The gating, hysteresis and segment clean-up on per-window sequences.

    Args:
        class_probability: ``(N,)`` sigmoid probability of the query's class per window (or the
            highest of the classes the class gate accepts, :func:`gate_classes`).
        cosine: ``(N,)`` cosine similarity of each window's embedding to the query's.
        window_starts: ``(N,)`` seconds.
        duration_seconds: length of the mix.
        params: thresholds and clean-up.
        query_class_probability: the query's own probability of its top class; below
            ``params.query_class_confidence`` the class is too uncertain to gate on (a sound
            outside the model's classes), and only the cosine gate applies.
        stem_level_db: ``(N,)`` routed stem level per window (dB) for the stem gate; None (or
            ``params.use_stem_gate`` False) skips that gate.
        class_matches_stem: whether the query's class belongs to the stem the U-Net routes it
            to; False (with ``params.class_must_match_stem``) leaves the class gate out.
        routed: the stem the U-Net routes the query to (``params.stem_alone_for``).

    Returns:
        :class:`Detection` (segments empty when nothing passes the gates).
    """
    p = gaussian_smooth(np.asarray(class_probability, dtype=np.float64), params.smoothing_windows)
    c = gaussian_smooth(np.asarray(cosine, dtype=np.float64), params.smoothing_windows)
    level = (None if stem_level_db is None
             else gaussian_smooth(np.asarray(stem_level_db, dtype=np.float64), params.smoothing_windows))
    use_class = (params.use_class_gate and query_class_probability >= params.query_class_confidence
                 and (class_matches_stem or not params.class_must_match_stem))
    stem_alone = (level is not None and params.use_stem_gate and routed in params.stem_alone_for
                  and query_class_probability < params.query_class_confidence)
    # never gate on nothing; with the stem standing in, the AST's similarity is not trusted either
    use_cos = not stem_alone and (params.use_cosine_gate or not use_class)
    w = params.class_weight if use_class else 0.0  # an unusable class does not score either
    if stem_alone:
        assert level is not None
        score = np.clip(10.0 ** (level / 10.0), 0.0, 1.0)  # the stem's share of the window's power
    else:
        score = np.clip(w * p + (1.0 - w) * c, 0.0, 1.0)
    h = params.hysteresis
    full = np.ones(p.shape, dtype=bool)
    low = np.ones(p.shape, dtype=bool)
    if use_class:
        full &= p >= params.class_threshold
        low &= p >= params.class_threshold - h
    if use_cos:
        full &= c >= params.cosine_threshold
        low &= c >= params.cosine_threshold - h
    if level is not None and params.use_stem_gate:
        full &= level >= params.stem_threshold_db
        low &= level >= params.stem_threshold_db - params.stem_hysteresis_db
    if params.percentile > 0 and full.any():
        full &= score >= np.percentile(score[full], params.percentile)
    active = hysteresis_runs(full, low)
    raw = windows_to_segments(active, score, np.asarray(window_starts, dtype=np.float64),
                              params.window_seconds, params.hop_seconds, duration_seconds)
    segments = clean_segments(raw, duration_seconds, params.min_duration_ms / 1000.0,
                              params.merge_gap_ms / 1000.0, params.padding_ms / 1000.0)
    return Detection(segments, np.asarray(window_starts, dtype=np.float64), p.astype(np.float32),
                     c.astype(np.float32), score.astype(np.float32), active, float(duration_seconds),
                     params, class_gate_used=use_class, stem_gate_alone=stem_alone,
                     stem_level_db=None if level is None else level.astype(np.float32))


def seed_gating(
    class_probability: np.ndarray,
    cosine: np.ndarray,
    window_starts: np.ndarray,
    duration_seconds: float,
    percentile: float = 92.0,
    min_duration_ms: float = 500.0,
    merge_gap_ms: float = 200.0,
    padding_ms: float = 50.0,
    window_s: float = 1.0,
    hop_s: float = 0.5,
) -> list[Segment]:
    """Seed 002's gating as it shipped, for comparison only (benchmarks): the class probability
    min-max normalised over the clip, thresholded at its ``percentile``; the cosine gate
    computed but never applied (the seed's bug). Fires on the top windows even when the target
    is absent."""
    p = np.asarray(class_probability, dtype=np.float64)
    norm = (p - p.min()) / max(float(p.max() - p.min()), 1e-12)
    active = norm >= np.percentile(norm, percentile)
    raw = windows_to_segments(active, norm, np.asarray(window_starts, dtype=np.float64), window_s, hop_s,
                              duration_seconds)
    del cosine  # never applied in the seed
    return clean_segments(raw, duration_seconds, min_duration_ms / 1000.0, merge_gap_ms / 1000.0,
                          padding_ms / 1000.0)


# ----------------------------------------------------------------------------------------------
# With the model
# ----------------------------------------------------------------------------------------------


def analyse_mix(embedder: QueryEmbedder, mix: Audio, hop_seconds: float,
                cancel: CancelFn | None = None, progress: ProgressFn | None = None,
                block_seconds: float = 120.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AST windows over the whole mix, streamed in blocks of ``block_seconds`` (bounded memory).

    Returns:
        ``(starts (N,), probs (N, K), embeddings (N, E))``.
    """
    from engine.separators.unet import StreamingResampler

    rate = embedder.config.sample_rate
    win = embedder.config.window_samples
    hop = max(1, int(round(hop_seconds * rate)))
    mono = mix.mono()[None, :]
    rs = StreamingResampler(mono, mix.sample_rate, rate)
    total = rs.length
    starts_all = embedder.window_starts(total, hop_seconds)
    offsets = np.round(starts_all * rate).astype(np.int64)
    per_block = max(1, int(block_seconds * rate) // hop)
    probs_l, embs_l = [], []
    for b0 in range(0, offsets.size, per_block):
        if cancel is not None and cancel():
            from engine.errors import Cancelled

            raise Cancelled()
        offs = offsets[b0 : b0 + per_block]
        a, z = int(offs[0]), int(offs[-1]) + win
        piece = rs.get(a, z)[0]
        if piece.shape[0] < z - a:
            piece = np.concatenate([piece, np.zeros(z - a - piece.shape[0], np.float32)])
        idx = (offs - a)[:, None] + np.arange(win)[None, :]
        p, e = embedder.embed_windows(piece[idx])
        probs_l.append(p)
        embs_l.append(e)
        if progress is not None:
            progress(min(1.0, (b0 + offs.size) / offsets.size), "Listening for the query")
    return starts_all, np.concatenate(probs_l), np.concatenate(embs_l)


@dataclass
class MixAnalysis:
    """What the detector measures on the mix for one query (:func:`analyse_for_query`).

    Attributes:
        starts, probs, embeddings: the AST's windows (``(N,)`` s, ``(N, K)``, ``(N, E)``) over
            what it listened to (``params.listen``).
        prior: the whole-mix U-Net prior (None without the stem gate and with ``listen="mix"``).
        level: ``(N,)`` the stem gate's value per window (dB), None without a prior.
        seconds: timings.
        query_heard: the query's own routed U-Net stems (mono, the mix's rate) when the AST
            listens to the stem estimate; None otherwise.
    """

    starts: np.ndarray
    probs: np.ndarray
    embeddings: np.ndarray
    prior: SourcePrior | None
    level: np.ndarray | None
    seconds: dict[str, float]
    query_heard: Audio | None = None


def analyse_for_query(
    embedder: QueryEmbedder,
    mix: Audio,
    query: Audio,
    params: DetectionParams,
    device: str = "cpu",
    models_dir: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> MixAnalysis:
    """The whole-mix U-Net pass routed by ``query`` (when the stem gate or ``listen="stem"``
    needs it), then the AST over the routed stem estimate or the mix; the sequences the gates
    read (:func:`detect_from_sequences`).

    Args:
        query: the prepared query clip (:func:`prepare_query`).

    Raises:
        InputError: ``params.listen`` is neither ``"stem"`` nor ``"mix"``; missing weights.
    """
    if params.listen not in ("stem", "mix"):
        raise InputError(f"listen must be 'stem' or 'mix', not {params.listen!r}")
    if params.query_listen not in ("auto", "clip", "stem"):
        raise InputError(f"query_listen must be 'auto', 'clip' or 'stem', not {params.query_listen!r}")
    need_prior = params.use_stem_gate or params.listen == "stem"
    share = 0.7 if need_prior else 0.0
    seconds: dict[str, float] = {}
    prior = None
    if need_prior:
        from engine.query.masking import unet_source_prior

        def stems(fraction: float, message: str) -> None:
            if progress is not None:
                progress(share * min(1.0, 2 * fraction), message)

        t = time.perf_counter()
        prior = unet_source_prior(mix, query, params.stem_weight_power, device, models_dir=models_dir,
                                  progress=stems, cancel=cancel,
                                  keep_mask=mix.duration_seconds <= KEEP_PRIOR_SECONDS,
                                  estimate=params.listen == "stem")
        seconds["unet_prior"] = time.perf_counter() - t

    def listening(fraction: float, message: str) -> None:
        if progress is not None:
            progress(share + (1 - share) * fraction, message)

    t = time.perf_counter()
    heard = mix
    query_heard = None
    if prior is not None and prior.estimate is not None:
        heard = Audio(prior.estimate[None], mix.sample_rate)
        prior.estimate = None  # only the AST needs it
        if prior.query_estimate is not None:
            query_heard = Audio(prior.query_estimate[None], mix.sample_rate)
            prior.query_estimate = None
    starts, probs, embs = analyse_mix(embedder, heard, params.hop_seconds, cancel, listening)
    del heard
    seconds["embed_mix"] = time.perf_counter() - t
    level: np.ndarray | None = None
    if prior is not None:
        from engine.query.masking import query_stft

        level = prior.window_level_db(starts, params.window_seconds, mix.sample_rate,
                                      query_stft(mix.sample_rate).hop_length)
    return MixAnalysis(starts, probs, embs, prior, level, seconds, query_heard)


def detect_segments(
    mix: Audio,
    query: Audio,
    params: DetectionParams | None = None,
    embedder: QueryEmbedder | None = None,
    device: str = "cpu",
    query_path: str | Path | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    models_dir: str | None = None,
    query_from_mix: bool = False,
) -> Detection:
    """Find where ``query`` plays in ``mix``.

    Args:
        mix: the mix, any rate/channels/length (the AST listens at 16 kHz mono; the stem gate's
            U-Net at its own rate).
        query: the query clip (1–3 s; longer is trimmed to its loudest 3 s with a note).
        params: detection settings (defaults: :class:`DetectionParams`).
        embedder: a loaded AST (default: the shipped weights on ``device``).
        query_path: named in errors about the query.
        models_dir: where the U-Net's weights are (default: the shipped ones).
        query_from_mix: the query is a region of this mix (``query_listen="auto"`` then has the
            AST hear its routed stems).

    Returns:
        :class:`Detection`; times are seconds on the mix's timeline. With the stem gate it
        carries the whole-mix U-Net prior (``prior``), which the separation reuses.

    Raises:
        InputError: bad query (too short, silent), missing or tampered weights.
    """
    params = params or DetectionParams()
    t0 = time.perf_counter()
    if embedder is None:
        from engine.models.ast import load_query_embedder

        embedder = load_query_embedder(device)
    if abs(params.window_seconds - embedder.config.window_seconds) > 1e-9:
        raise InputError(f"window_seconds must be {embedder.config.window_seconds:g} (the model's window)")
    t_load = time.perf_counter() - t0
    q, notes = prepare_query(query, path=query_path)
    if params.query_listen == "auto" and query_from_mix and params.listen == "stem":
        notes = [*notes, "the query is a region of the mix: the AST heard its routed U-Net stems "
                         "(query_listen auto)"]
    params = resolve_query_listen(params, query_from_mix)
    heard = analyse_for_query(embedder, mix, q, params, device, models_dir, progress, cancel)
    t = time.perf_counter()
    info = describe_heard_query(embedder, q, heard, params, notes)
    seconds = {"load_model": t_load, "embed_query": time.perf_counter() - t}
    seconds.update(heard.seconds)
    det = gate_analysis(info, heard, mix.duration_seconds, params)
    seconds["detect"] = time.perf_counter() - t0
    det.seconds = seconds
    return det


def resolve_query_listen(params: DetectionParams, query_from_mix: bool) -> DetectionParams:
    """``params`` with ``query_listen="auto"`` made concrete: "stem" for a region of the mix,
    "clip" for a clip from elsewhere (a file, a stem's lane)."""
    if params.query_listen != "auto":
        return params
    return dataclasses.replace(params, query_listen="stem" if query_from_mix else "clip")


def describe_heard_query(embedder: QueryEmbedder, query: Audio, heard: MixAnalysis, params: DetectionParams,
                         notes: list[str]) -> QueryInfo:
    """:func:`describe_query` of the query as given, or (``params.query_listen == "stem"`` with a
    routed estimate, :attr:`MixAnalysis.query_heard`) of its own routed U-Net stems, unless those
    are near silent (the routing put the query's energy elsewhere: then the clip, with a note)."""
    rate = embedder.config.sample_rate
    routed = heard.query_heard
    if params.query_listen == "stem" and routed is not None:
        if _rms_db(routed.samples) > _rms_db(query.samples) - 30.0:
            return describe_query(embedder, to_analysis_rate(routed, rate), query.duration_seconds, notes)
        notes = [*notes, "the query's routed stems are near silent: the AST heard the query as given"]
    return describe_query(embedder, to_analysis_rate(query, rate), query.duration_seconds, notes)


def gate_analysis(info: QueryInfo, heard: MixAnalysis, duration_seconds: float,
                  params: DetectionParams) -> Detection:
    """The gates (:func:`detect_from_sequences`) on an analysis for the query ``info``, with
    the class checked against the U-Net's routing; notes why a class gate was left out."""
    prior = heard.prior
    routed = routed_stem(prior.shares) if prior is not None else None
    name, p_query, gate, matches = choose_gate_classes(info.probabilities, info.class_name,
                                                       info.class_probability, routed, params)
    if name != info.class_name:
        info = dataclasses.replace(info, class_name=name, class_index=list(info.probabilities).index(name),
                                   class_probability=p_query,
                                   notes=[*info.notes, f"the query's top class ({info.class_name}, p = "
                                          f"{info.class_probability:.2f}) is not in the stem the U-Net hears it "
                                          f"in: its class is taken as {name} (p = {p_query:.2f})"])
    det = detect_from_sequences(class_sequence(heard.probs, list(info.probabilities), gate),
                                heard.embeddings @ info.embedding,
                                heard.starts, duration_seconds, params, info.class_probability, heard.level,
                                matches, routed)
    info = dataclasses.replace(info, notes=list(info.notes))  # the caller's QueryInfo keeps its notes
    if det.class_gate_used and len(gate) > 1:
        info.notes.append("the class gate accepts " + ", ".join(f"{n} (p = {info.probabilities[n]:.2f})" for n in gate)
                          + f": the query's classes of the {class_stem(info.class_name)} stem with p ≥ "
                          f"{params.related_class_probability:g}")
    if det.stem_gate_alone:
        info.notes.append(f"the query's class is uncertain ({info.class_name}, p = "
                          f"{info.class_probability:.2f} < {params.query_class_confidence:g}) and the U-Net "
                          f"hears it as {routed}: found by the {routed} stem's level alone")
    elif not det.class_gate_used and params.use_class_gate:
        if info.class_probability < params.query_class_confidence:
            info.notes.append(f"the query's class is uncertain ({info.class_name}, p = "
                              f"{info.class_probability:.2f} < {params.query_class_confidence:g}): gated on "
                              "embedding similarity only")
        else:
            info.notes.append(f"the query's class ({info.class_name}) is not in the stem the U-Net hears "
                              f"it in ({routed}): gated on embedding similarity only")
    det.query = info
    det.prior = prior
    return det
