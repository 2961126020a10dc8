"""``analyze_stems``: every metric of every stem, as one :class:`AnalysisReport`.

Two modes:

* **reference** — estimates against true stems of the same name. Per stem: energy by band,
  spectral similarity, pseudo-SDR by band, silence leakage, onset alignment, spectral
  divergence, dynamic range, seed 002's metrics, BSS Eval (sources v3 and images v4), artifact
  indicators, and an overall score (sections of seed 000, plus what seed 004 says SDR misses).
* **reference-free** — the normal case for a user: no true stems. Stems summed against the mix
  (error in dB, per band), per stem band energies and share of the mix, leakage into the mix's
  silent frames, onsets against the mix's, musical noise against the mix's own, and — for the
  vocal stem when an acapella is given — the vocal against the acapella (aligned here by
  cross-correlation: offset, polarity, gain).

Mismatches are handled, not fatal, and every adjustment is written in the report's notes:
an estimate at another sample rate is resampled to the reference's; a mono estimate of a
stereo reference is duplicated (a stereo estimate of a mono reference is averaged); different
lengths are trimmed to the shorter. Other channel mismatches raise :class:`InputError`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine import __version__
from engine.align import align_acapella as align
from engine.align import render_aligned
from engine.analysis import metrics as mt
from engine.analysis import statuses as st
from engine.analysis.bss_eval import FILTER_TAPS, bss_eval_images_v4, safe_db
from engine.analysis.spectral_pass import SpectralSums, power_image, spectral_pass
from engine.analysis.summary import stem_score
from engine.audio import Audio, resample
from engine.errors import Cancelled, InputError
from engine.spectral import BANDS

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]
Section = dict[str, Any]

STEM_ORDER = ("drums", "bass", "other", "vocals", "instrumental", "accompaniment", "target", "residual")
BSS_WINDOW_SECONDS = 1.0
#: Worker threads: BSS Eval and the stems run side by side (the benchmark's 2 cores).
ANALYSIS_WORKERS = max(1, min(2, os.cpu_count() or 1))


@dataclass
class StemFigures:
    """Reduced data for a stem's figures (never written to JSON; a few MB at most).

    Time axes have ``columns`` points (≤ 1200), frequency axes ``rows`` (160) log-spaced bins.
    ``ref_*`` arrays belong to the comparison signal: the reference, the acapella or the mix.
    """

    comparison_label: str
    columns_seconds: np.ndarray
    rows_hz: np.ndarray
    image_est: np.ndarray
    image_ref: np.ndarray | None
    image_mix: np.ndarray | None
    mask_est: np.ndarray | None
    mask_ref: np.ndarray | None
    mask_source: str
    spectrum_hz: np.ndarray
    spectrum_est_db: np.ndarray
    spectrum_ref_db: np.ndarray | None
    wave_est: np.ndarray  # (2, columns) min / max of the channel mean
    wave_ref: np.ndarray | None
    envelope_est_db: np.ndarray
    envelope_ref_db: np.ndarray | None
    band_est_db: np.ndarray  # (bands, columns)
    band_ref_db: np.ndarray | None
    band_names: list[str]
    phase_columns: np.ndarray | None
    phase_hist: np.ndarray | None
    phase_bands: list[float] | None


@dataclass
class StemReport:
    """One stem's results. ``sections`` is ordered as in the reports; values are JSON-ready."""

    name: str
    sample_rate: int
    channels: int
    duration_seconds: float
    sections: dict[str, Section]
    score: Section | None = None
    notes: list[str] = field(default_factory=list)
    figures: StemFigures | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "sample_rate": self.sample_rate, "channels": self.channels,
            "duration_seconds": self.duration_seconds,
        }
        out.update(self.sections)
        if self.score is not None:
            out["summary"] = self.score
        out["notes"] = list(self.notes)
        return out


@dataclass
class AnalysisReport:
    """The whole analysis: meta data, per-stem results, mixture checks, summary, notes."""

    mode: str
    meta: dict[str, Any]
    stems: dict[str, StemReport]
    mixture: Section | None
    summary: Section
    notes: list[str]
    settings: dict[str, Any]
    timings_seconds: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """Every number, JSON-ready (NaN and ±inf are written as null by the writer)."""
        return {
            "format": "unmix-studio-analysis",
            "format_version": 1,
            "conventions": "dB values are 10·log10 of energy ratios; null means undefined (e.g. a "
                           "silent reference) or infinite (e.g. SIR with a single source, SDR of "
                           "identical signals) — the Markdown and PDF reports show n/a or ∞; "
                           "divergences in nats; times in seconds",
            "mode": self.mode,
            "meta": self.meta,
            "settings": self.settings,
            "stems": {name: s.to_json() for name, s in self.stems.items()},
            "mixture": self.mixture,
            "summary": self.summary,
            "notes": self.notes,
            "timings_seconds": self.timings_seconds,
        }


# ---------------------------------------------------------------------------------------------


class _Progress:
    """Thread-safe progress over weighted parts (the parts run on worker threads).

    Each part reports its own 0..1 fraction; the overall fraction is the weighted sum, never
    decreasing, and the user's callback is called under a lock (from whichever thread reports).
    """

    def __init__(self, progress: ProgressFn | None, cancel: CancelFn | None) -> None:
        self.progress = progress
        self.cancel = cancel
        self._lock = threading.Lock()
        self._weights: dict[str, float] = {}
        self._done: dict[str, float] = {}
        self._last = 0.0

    def plan(self, weights: dict[str, float]) -> None:
        """The parts to come and their weights (normalised)."""
        total = sum(weights.values()) or 1.0
        with self._lock:
            self._weights = {k: v / total for k, v in weights.items()}
            self._done = {}

    def check(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled()

    def part(self, name: str) -> ProgressFn:
        def report(fraction: float, message: str = "") -> None:
            self.check()
            with self._lock:
                self._done[name] = max(self._done.get(name, 0.0), min(max(float(fraction), 0.0), 1.0))
                overall = sum(self._weights.get(k, 0.0) * v for k, v in self._done.items())
                self._last = max(self._last, min(overall, 0.999))
                if self.progress is not None:
                    self.progress(self._last, message)
            self.check()

        return report

    def finish(self, message: str) -> None:
        with self._lock:
            self._last = 1.0
            if self.progress is not None:
                self.progress(1.0, message)


def _run_parallel(jobs: list[tuple[str, Callable[[], Any]]]) -> dict[str, Any]:
    """Run named jobs on ``ANALYSIS_WORKERS`` threads (numpy, scipy and torch release the GIL in
    their heavy loops). Waits for all; re-raises the first failure (a cancel stops the others at
    their next progress report)."""
    results: dict[str, Any] = {}
    if ANALYSIS_WORKERS <= 1 or len(jobs) <= 1:
        for name, fn in jobs:
            results[name] = fn()
        return results
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=ANALYSIS_WORKERS, thread_name_prefix="analysis") as pool:
        futures = {name: pool.submit(fn) for name, fn in jobs}
        for name, fut in futures.items():
            try:
                results[name] = fut.result()
            except BaseException as exc:  # collected, re-raised after every job ended
                errors.append(exc)
    if errors:
        # A real error wins over the cancellations it may have caused elsewhere.
        raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
    return results


def _sort_names(names: list[str]) -> list[str]:
    def key(n: str) -> tuple[int, str]:
        low = n.lower()
        return (STEM_ORDER.index(low) if low in STEM_ORDER else len(STEM_ORDER), low)

    return sorted(names, key=key)


def _is_vocal(name: str) -> bool:
    low = name.lower()
    return low.startswith("vocal") or low in ("voice", "singing", "acapella")


def _describe(audio: Audio, name: str) -> str:
    return str(audio.path) if audio.path is not None else name


def _conform(audio: Audio, rate: int, channels: int, label: str, target: str, notes: list[str]) -> np.ndarray:
    """``audio`` at ``rate`` with ``channels`` (resampling / duplicating / averaging with a note)."""
    x = audio.samples
    if audio.sample_rate != rate:
        notes.append(f"{label}: resampled from {audio.sample_rate} Hz to the {target}'s {rate} Hz.")
        x = resample(x, audio.sample_rate, rate)
    if x.shape[0] != channels:
        if x.shape[0] == 1:
            notes.append(f"{label}: mono, duplicated to the {target}'s {channels} channels.")
            x = np.repeat(x, channels, axis=0)
        elif channels == 1:
            notes.append(f"{label}: {x.shape[0]} channels averaged to match the mono {target}.")
            x = x.mean(axis=0, keepdims=True)
        else:
            raise InputError(
                f"has {x.shape[0]} channels but the {target} has {channels}; cannot compare them",
                audio.path,
            )
    return x.astype(np.float32, copy=False)


def _trim(a: np.ndarray, b: np.ndarray, rate: int, label: str, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    n = min(a.shape[-1], b.shape[-1])
    if a.shape[-1] != b.shape[-1]:
        notes.append(
            f"{label}: lengths differ ({a.shape[-1] / rate:.3f} s vs {b.shape[-1] / rate:.3f} s); "
            f"both trimmed to the shorter, {n / rate:.3f} s."
        )
    return a[..., :n], b[..., :n]


# ---------------------------------------------------------------------------------------------
# Figure data
# ---------------------------------------------------------------------------------------------


def _column_reduce(values: np.ndarray, columns: int, how: str = "mean") -> np.ndarray:
    """Reduce the last axis of ``values`` into ``columns`` equal groups (mean, min or max)."""
    n = values.shape[-1]
    columns = max(1, min(columns, n))
    starts = (np.arange(columns) * n) // columns
    if how == "min":
        return np.minimum.reduceat(values, starts, axis=-1)
    if how == "max":
        return np.maximum.reduceat(values, starts, axis=-1)
    counts = np.diff(np.r_[starts, n])
    return np.add.reduceat(values, starts, axis=-1) / counts


def _db(power: np.ndarray, floor: float = 1e-12) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, floor))


def _waveform(samples: np.ndarray, columns: int) -> np.ndarray:
    mono = samples.mean(axis=0)
    return np.stack([_column_reduce(mono, columns, "min"), _column_reduce(mono, columns, "max")])


def _resize_mask(mask: np.ndarray, rows_hz: np.ndarray, columns_s: np.ndarray, rate: int, duration: float) -> np.ndarray:
    """A separator's mask ``(bins, frames)`` or ``(channels, bins, frames)`` on the figure grid."""
    m = np.asarray(mask, dtype=np.float32)
    if m.ndim == 3:
        m = m.mean(axis=0)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"mask must be (bins, frames) or (channels, bins, frames), got {mask.shape}")
    bins, frames = m.shape
    bi = np.clip(np.round(rows_hz / (rate / 2.0) * (bins - 1)).astype(int), 0, bins - 1)
    ti = np.clip(np.round(columns_s / max(duration, 1e-9) * (frames - 1)).astype(int), 0, frames - 1)
    return np.clip(m[np.ix_(bi, ti)], 0.0, 1.0)


def _figures(
    sums: SpectralSums,
    est: np.ndarray,
    ref: np.ndarray | None,
    est_rms: np.ndarray,
    ref_rms: np.ndarray | None,
    comparison_label: str,
) -> StemFigures:
    """Figure data of a pass; the masks are attached later by :func:`_attach_masks`."""
    assert sums.image_est is not None and sums.image_columns_seconds is not None and sums.image_rows_hz is not None
    cols = sums.image_est.shape[1]
    n_points = max(sums.frames * sums.channels, 1)
    phase_cols = None
    phase_bands = None
    if sums.frame_cross is not None and sums.frame_magprod is not None:
        cross = _column_reduce(sums.frame_cross, cols)
        mag = _column_reduce(sums.frame_magprod, cols)
        phase_cols = np.where(mag > 0, cross / np.maximum(mag, 1e-30), np.nan)
        phase_bands = [
            float(sums.bin_sums["cross"][sums.band_of_bin == i].sum() / s) if (s := sums.bin_sums["RE"][sums.band_of_bin == i].sum()) > 0 else float("nan")
            for i in range(len(sums.band_names))
        ]
    assert sums.frame_band_est is not None
    return StemFigures(
        comparison_label=comparison_label,
        columns_seconds=sums.image_columns_seconds,
        rows_hz=sums.image_rows_hz,
        image_est=sums.image_est,
        image_ref=sums.image_ref,
        image_mix=None,
        mask_est=None,
        mask_ref=None,
        mask_source="none",
        spectrum_hz=sums.freqs_hz,
        spectrum_est_db=_db(sums.bin_sums["E2"] / n_points),
        spectrum_ref_db=_db(sums.bin_sums["R2"] / n_points) if "R2" in sums.bin_sums else None,
        wave_est=_waveform(est, cols),
        wave_ref=_waveform(ref, cols) if ref is not None else None,
        envelope_est_db=_db(_column_reduce(est_rms**2, cols)),
        envelope_ref_db=_db(_column_reduce(ref_rms**2, cols)) if ref_rms is not None else None,
        band_est_db=_db(_column_reduce(sums.frame_band_est[:-1] / sums.channels, cols)),
        band_ref_db=_db(_column_reduce(sums.frame_band_ref[:-1] / sums.channels, cols)) if sums.frame_band_ref is not None else None,
        band_names=list(sums.band_names),
        phase_columns=phase_cols,
        phase_hist=sums.phase_hist,
        phase_bands=phase_bands,
    )


def _attach_masks(figs: StemFigures, mix_image: np.ndarray | None, mask: np.ndarray | None,
                  sample_rate: int, duration: float) -> None:
    """Mask figure data: ideal ratio mask of the comparison and the estimate's effective mask
    against the mix image, or the separator's own mask when given."""
    figs.image_mix = mix_image
    if mix_image is not None and mix_image.shape == figs.image_est.shape:
        mix_safe = np.maximum(mix_image, 1e-20)
        if figs.image_ref is not None and figs.comparison_label in ("reference", "acapella"):
            figs.mask_ref = np.clip(np.sqrt(figs.image_ref / mix_safe), 0.0, 1.0)
        figs.mask_est = np.clip(np.sqrt(figs.image_est / mix_safe), 0.0, 1.0)
        figs.mask_source = "effective (|stem| / |mix|)"
    if mask is not None:
        figs.mask_est = _resize_mask(mask, figs.rows_hz, figs.columns_seconds, sample_rate, duration)
        figs.mask_source = "the separator's mask"


# ---------------------------------------------------------------------------------------------
# Reference mode
# ---------------------------------------------------------------------------------------------


def _bss_sections(
    names: list[str],
    pairs: dict[str, tuple[np.ndarray, np.ndarray, int]],
    interferers: dict[str, np.ndarray],
    progress: ProgressFn,
    cancel: CancelFn | None,
) -> tuple[dict[str, Section], Section, list[str]]:
    """BSS Eval for the matched stems that share rate and channels (the common case: all).

    Returns:
        ``(per-stem sections, method description, notes)``.
    """
    notes: list[str] = []
    if not names:
        return {}, {"available": False, "reason": "no matched stems"}, notes
    shapes = {(pairs[n][2], pairs[n][0].shape[0]) for n in names}
    rate, chans = max(shapes, key=lambda rc: sum(1 for n in names if (pairs[n][2], pairs[n][0].shape[0]) == rc))
    group = [n for n in names if (pairs[n][2], pairs[n][0].shape[0]) == (rate, chans)]
    for n in names:
        if n not in group:
            notes.append(f"{n}: left out of BSS Eval (its rate or channels differ from the other stems').")
    extra = {k: v for k, v in interferers.items() if v.shape[0] == chans}
    length = min([pairs[n][0].shape[-1] for n in group] + [v.shape[-1] for v in extra.values()])
    if any(pairs[n][0].shape[-1] != length for n in group) or any(v.shape[-1] != length for v in extra.values()):
        notes.append(f"BSS Eval: stems trimmed to the shortest common length, {length / rate:.3f} s.")
    # Views, not copies: a 4-minute stereo stem is 85 MB of float32 each.
    ref = [pairs[n][1][:, :length] for n in group]
    est = [pairs[n][0][:, :length] for n in group]
    inter = [v[:, :length] for v in extra.values()]
    window = int(round(BSS_WINDOW_SECONDS * rate))
    v4, src = bss_eval_images_v4(ref, est, window, window, FILTER_TAPS, inter, progress, cancel, sources_scores=True)
    assert src is not None
    out: dict[str, Section] = {}
    valid = ~np.isnan(v4.sdr)
    for j, n in enumerate(group):
        perm = int(src.permutation[j])
        out[n] = {
            "images_v4": {
                "version": "BSS Eval images, museval v4: 512-tap time-invariant filters over the whole "
                           "track, ratios in 1 s windows, median over windows where reference and "
                           "estimate are not silent",
                "sdr_db": float(v4.median("sdr")[j]), "isr_db": float(v4.median("isr")[j]),
                "sir_db": float(v4.median("sir")[j]), "sar_db": float(v4.median("sar")[j]),
                "windows": int(v4.sdr.shape[1]), "valid_windows": int(valid[j].sum()),
                "window_seconds": v4.window / rate,
                "framewise": {"sdr_db": v4.sdr[j].tolist(), "isr_db": v4.isr[j].tolist(),
                              "sir_db": v4.sir[j].tolist(), "sar_db": v4.sar[j].tolist()},
            },
            "images_whole": {
                "version": "BSS Eval images over the whole track (same filters, one window)",
                "sdr_db": float(v4.global_scores[j, 0]), "isr_db": float(v4.global_scores[j, 1]),
                "sir_db": float(v4.global_scores[j, 2]), "sar_db": float(v4.global_scores[j, 3]),
            },
            "sources": {
                "version": "BSS Eval v3 sources (bss_eval_sources): 512-tap time-invariant filter per "
                           "channel over the whole track, channels pooled, estimate order chosen by "
                           "the best mean SIR",
                "sdr_db": float(src.sdr[j]), "sir_db": float(src.sir[j]), "sar_db": float(src.sar[j]),
                "matched_estimate": group[perm],
                "permutation_agrees_with_names": perm == j,
            },
        }
        if perm != j:
            notes.append(f"BSS Eval (sources): the estimate named '{group[perm]}' matches the true "
                         f"'{n}' best (by SIR) — stems may be swapped.")
    method = {
        "available": True, "stems": group, "interferers": list(extra), "sample_rate": rate,
        "filter_taps": FILTER_TAPS, "window_seconds": BSS_WINDOW_SECONDS,
    }
    progress(1.0, "BSS Eval done")
    return out, method, notes


def _reference_stem(
    name: str,
    est: np.ndarray,
    ref: np.ndarray,
    rate: int,
    progress: ProgressFn,
    cancel: CancelFn | None,
    comparison: str = "reference",
) -> tuple[dict[str, Section], StemFigures, dict[str, float]]:
    """Every per-stem section (BSS Eval aside) of ``est`` against ``ref``, its figure data, and
    the seconds spent per section."""
    sums = spectral_pass(est, ref, rate, cancel, lambda f: progress(0.9 * f, f"{name}: spectra"))
    t1 = time.perf_counter()
    ref_rms = mt.frame_rms(sums, "ref")
    est_rms = mt.frame_rms(sums, "est")
    sections: dict[str, Section] = {}
    sections["energy_distribution"] = mt.energy_distribution(sums)
    sections["spectral_similarity"] = mt.spectral_similarity(sums)
    sections["pseudo_sdr"] = mt.pseudo_sdr(sums)
    t2 = time.perf_counter()
    sections["silence_leakage"] = mt.silence_leakage(ref_rms, est_rms, comparison)
    t3 = time.perf_counter()
    sections["onset_alignment"] = mt.onset_alignment(sums)
    t4 = time.perf_counter()
    sections["spectral_divergence"] = mt.spectral_divergence(sums)
    sections["dynamic_range"] = mt.dynamic_range(ref, ref_rms, est, est_rms)
    t5 = time.perf_counter()
    sections["seed_metrics"] = mt.seed_metrics(ref, est, sums)
    t6 = time.perf_counter()
    leak = sections["silence_leakage"]
    sections["artifacts"] = {
        "musical_noise": mt.musical_noise_section(sums),
        "phase": mt.phase_section(sums),
        "silence_leakage": {k: leak[k] for k in ("leakage_ratio", "leakage_db", "status")},
    }
    figs = _figures(sums, est, ref, est_rms, ref_rms, comparison)
    t7 = time.perf_counter()
    progress(1.0, f"{name}: done")
    timings = {**sums.seconds, "metrics.bands_similarity_pseudo_sdr": t2 - t1,
               "metrics.silence_dynamics": (t3 - t2) + (t5 - t4), "metrics.onsets": t4 - t3,
               "metrics.seed_002": t6 - t5, "figures.data": t7 - t6}
    return sections, figs, timings


def _add_timings(total: dict[str, float], part: dict[str, float]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v


def analyze_stems(
    estimates: dict[str, Audio],
    references: dict[str, Audio] | None,
    mix: Audio | None = None,
    acapella: Audio | None = None,
    masks: dict[str, np.ndarray] | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    meta: dict[str, Any] | None = None,
) -> AnalysisReport:
    """Analyse estimated stems, against references of the same name or reference-free.

    Args:
        estimates: stem name → estimated audio.
        references: stem name → true audio; ``None`` for reference-free mode.
        mix: the mixture (reference-free checks; the mask figures in both modes).
        acapella: the vocal alone (reference-free: compared with the vocal stem).
        masks: stem name → the separator's mask ``(bins, frames)`` or
            ``(channels, bins, frames)``, drawn in the mask figure.
        progress: ``progress(fraction, message)``.
        cancel: returns True to stop (raises :class:`Cancelled`).
        meta: free-form details for the title page (``track``, ``engine``, ``model``, …).

    Returns:
        The :class:`AnalysisReport`.

    Raises:
        InputError: no stems, no estimate matching a reference, or incompatible channels.
        Cancelled: when ``cancel()`` became true.
    """
    if not estimates:
        raise InputError("no estimated stems to analyse")
    prog = _Progress(progress, cancel)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []
    meta_out: dict[str, Any] = {
        "track": None, "engine": None, "model": None,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "software": f"Unmix Studio {__version__}",
    }
    meta_out.update(meta or {})
    settings: dict[str, Any] = {
        "bands_hz": [[n, lo, hi] for n, lo, hi in BANDS],
        "stft": "periodic Hann, window = power of two nearest 46 ms (2048 at 44.1/48 kHz), hop = window/4",
        "silence": f"reference frame RMS ≥ {mt.SILENCE_BELOW_ACTIVE_DB:g} dB below its 95th percentile",
        "onset_window_ms": 50.0,
        "bss_eval_filter_taps": FILTER_TAPS,
        "bss_eval_window_seconds": BSS_WINDOW_SECONDS,
        "divergence_units": "nats",
        "thresholds": st.THRESHOLDS,
    }
    masks = masks or {}
    if references is not None:
        report = _reference_mode(estimates, references, mix, masks, prog, timings, notes, meta_out, settings)
    else:
        report = _reference_free_mode(estimates, mix, acapella, masks, prog, timings, notes, meta_out, settings)
    timings["total"] = time.perf_counter() - started
    report.timings_seconds = {k: round(v, 4) for k, v in timings.items()}
    prog.finish("Analysis done")
    return report


def _reference_mode(
    estimates: dict[str, Audio],
    references: dict[str, Audio],
    mix: Audio | None,
    masks: dict[str, np.ndarray],
    prog: _Progress,
    timings: dict[str, float],
    notes: list[str],
    meta: dict[str, Any],
    settings: dict[str, Any],
) -> AnalysisReport:
    names = _sort_names([n for n in estimates if n in references])
    if not names:
        raise InputError(
            "no estimated stem has a reference of the same name (estimates: "
            f"{', '.join(sorted(estimates)) or 'none'}; references: {', '.join(sorted(references)) or 'none'})"
        )
    for n in sorted(set(estimates) - set(references)):
        notes.append(f"{n}: no reference of that name; not analysed.")
    for n in sorted(set(references) - set(estimates)):
        notes.append(f"{n}: reference without an estimate; counted as interference in BSS Eval only.")
    pairs: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for n in names:
        ref_a = references[n]
        est = _conform(estimates[n], ref_a.sample_rate, ref_a.channels, f"{n} (estimate)", "reference", notes)
        est, ref = _trim(est, ref_a.samples, ref_a.sample_rate, n, notes)
        pairs[n] = (est, ref, ref_a.sample_rate)
    interferers: dict[str, np.ndarray] = {}
    for n in sorted(set(references) - set(estimates)):
        r = references[n]
        rate0 = pairs[names[0]][2]
        if r.sample_rate == rate0:
            interferers[n] = r.samples
    def mix_image_job() -> dict[tuple[int, int, int], np.ndarray]:
        """Mix images for the mask figures: the given mix, or the sum of the references."""
        t = time.perf_counter()
        images: dict[tuple[int, int, int], np.ndarray] = {}
        for n in names:
            _, ref, rate = pairs[n]
            key = (rate, ref.shape[0], ref.shape[-1])
            if key in images:
                continue
            mix_x = None
            if mix is not None:
                try:
                    mix_x = _conform(mix, rate, ref.shape[0], "mix", f"{n} reference", [])[:, : ref.shape[-1]]
                except InputError:
                    mix_x = None
                if mix_x is not None and mix_x.shape[-1] != ref.shape[-1]:
                    mix_x = None
            if mix_x is None:
                same = [pairs[m][1] for m in names if pairs[m][2] == rate and pairs[m][1].shape == ref.shape]
                mix_x = np.asarray(np.sum(same, axis=0, dtype=np.float32))
                for v in interferers.values():
                    if v.shape[0] == ref.shape[0] and v.shape[-1] >= ref.shape[-1]:
                        mix_x = mix_x + v[:, : ref.shape[-1]]
            images[key] = power_image(mix_x, rate, prog.cancel)
        prog.part("mix")(1.0, "Mix spectrogram")
        timings["figures.mix_image"] = time.perf_counter() - t
        return images

    def bss_job() -> tuple[dict[str, Section], Section, list[str], float]:
        t = time.perf_counter()
        out = _bss_sections(names, pairs, interferers, prog.part("bss"), prog.cancel)
        return (*out, time.perf_counter() - t)

    prog.plan({"bss": 0.35, "mix": 0.05, **{f"stem:{n}": 0.6 / len(names) for n in names}})
    jobs: list[tuple[str, Callable[[], Any]]] = [("bss", bss_job), ("mix", mix_image_job)]
    for n in names:
        est, ref, rate = pairs[n]
        jobs.append((f"stem:{n}", functools.partial(
            _reference_stem, n, est, ref, rate, prog.part(f"stem:{n}"), prog.cancel)))
    results = _run_parallel(jobs)
    bss, bss_method, bss_notes, bss_seconds = results["bss"]
    notes.extend(bss_notes)
    timings["bss_eval"] = bss_seconds
    settings["bss_eval"] = bss_method
    mix_images = results["mix"]
    stems: dict[str, StemReport] = {}
    for n in names:
        est, ref, rate = pairs[n]
        sections, figs, stem_timings = results[f"stem:{n}"]
        _add_timings(timings, stem_timings)
        if n in bss:
            # BSS Eval sits between the waveform metrics and the artifacts, as in the reports.
            artifacts_sec = sections.pop("artifacts")
            sections["bss_eval"] = bss[n]
            sections["artifacts"] = artifacts_sec
        _attach_masks(figs, mix_images.get((rate, ref.shape[0], ref.shape[-1])), masks.get(n), rate,
                      ref.shape[-1] / rate)
        report = StemReport(n, rate, ref.shape[0], ref.shape[-1] / rate, sections, figures=figs)
        report.score = stem_score(sections)
        report.notes = [x for x in notes if x.startswith(f"{n}:") or x.startswith(f"{n} (")]
        stems[n] = report
    summary = {
        "kind": "reference",
        "stems": {n: {"score_percent": s.score["score_percent"] if s.score else None,
                      "label": s.score["label"] if s.score else st.NA.to_json(),
                      "components": s.score["components"] if s.score else {}} for n, s in stems.items()},
        "figures": _figure_counts(stems),
    }
    return AnalysisReport("reference", meta, stems, None, summary, notes, settings, timings)


FIGURE_KINDS = (
    ("spectrum", "Spectrum comparison"),
    ("waveform", "Waveform comparison"),
    ("mask", "Mask comparison"),
    ("envelope", "Energy envelope"),
    ("bands", "Band energy evolution"),
    ("phase", "Phase consistency"),
)


def _figure_counts(stems: dict[str, StemReport]) -> dict[str, int]:
    counts = {label: len(stems) for _, label in FIGURE_KINDS}
    counts["Comprehensive comparison"] = 1
    counts["Total"] = len(stems) * len(FIGURE_KINDS) + 1
    return counts


# ---------------------------------------------------------------------------------------------
# Reference-free mode
# ---------------------------------------------------------------------------------------------


def align_acapella(stem: np.ndarray, acapella: np.ndarray, rate: int) -> tuple[np.ndarray, Section]:
    """Line the acapella up with the vocal stem with the alignment engine (:mod:`engine.align`):
    sub-sample offset, drift, gain and polarity, then place it on the stem's timeline.

    Args:
        stem: ``(channels, n)``; acapella: ``(channels, m)`` at the same rate.

    Returns:
        ``(aligned acapella (channels, n), details)``; details give ``offset_samples`` and
        ``offset_seconds`` (acapella sample k plays at stem sample k + offset), ``drift_ppm``,
        ``polarity``, ``gain_db``, ``confidence``, ``matched``, ``correlation`` (of the aligned
        acapella with the stem).
    """
    found = align(Audio(np.ascontiguousarray(stem, dtype=np.float32), rate),
                  Audio(np.ascontiguousarray(acapella, dtype=np.float32), rate))
    aligned = render_aligned(Audio(np.ascontiguousarray(acapella, dtype=np.float32), rate), found.params,
                             rate, stem.shape[-1], stem.shape[0])
    aa = float(np.sum(aligned.astype(np.float64) ** 2))
    ss = float(np.sum(stem.astype(np.float64) ** 2))
    sa = float(np.sum(aligned.astype(np.float64) * stem))
    details = {
        "offset_samples": float(found.offset_samples), "offset_seconds": float(found.offset_seconds),
        "drift_ppm": float(found.drift_ppm), "polarity": int(found.polarity), "gain_db": float(found.gain_db),
        "confidence": float(found.confidence), "matched": bool(found.matched),
        "correlation": sa / math.sqrt(aa * ss) if aa > 0 and ss > 0 else float("nan"),
        "method": "engine.align: GCC-PHAT offset with sub-sample refinement, drift fit, gain and polarity",
    }
    return aligned.astype(np.float32), details


def _reference_free_mode(
    estimates: dict[str, Audio],
    mix: Audio | None,
    acapella: Audio | None,
    masks: dict[str, np.ndarray],
    prog: _Progress,
    timings: dict[str, float],
    notes: list[str],
    meta: dict[str, Any],
    settings: dict[str, Any],
) -> AnalysisReport:
    names = _sort_names(list(estimates))
    first = estimates[names[0]]
    rate = mix.sample_rate if mix is not None else first.sample_rate
    chans = mix.channels if mix is not None else first.channels
    target = "mix" if mix is not None else f"first stem ({names[0]})"
    stems_x: dict[str, np.ndarray] = {}
    for n in names:
        stems_x[n] = _conform(estimates[n], rate, chans, n, target, notes)
    lengths = [x.shape[-1] for x in stems_x.values()]
    mix_x = _conform(mix, rate, chans, "mix", "mix", notes) if mix is not None else None
    n_common = min(lengths + ([mix_x.shape[-1]] if mix_x is not None else []))
    if len(set(lengths + ([mix_x.shape[-1]] if mix_x is not None else []))) > 1:
        notes.append(f"Stems{' and mix' if mix_x is not None else ''} have different lengths; all trimmed "
                     f"to the shortest, {n_common / rate:.3f} s.")
    stems_x = {n: x[:, :n_common] for n, x in stems_x.items()}
    if mix_x is not None:
        mix_x = mix_x[:, :n_common]
    mixture: Section | None = None
    mix_sums: SpectralSums | None = None
    mix_rms: np.ndarray | None = None
    weights = {f"stem:{n}": 1.0 for n in names}
    if mix_x is not None:
        weights["mixture"] = 1.0
    prog.plan(weights)
    if mix_x is not None:
        t = time.perf_counter()
        total = np.sum(list(stems_x.values()), axis=0, dtype=np.float32)
        residual = mix_x - total
        report_mixture = prog.part("mixture")
        # The residual against the mix: band errors, and the mix's own onsets and isolated peaks.
        res_sums = spectral_pass(residual, mix_x, rate, prog.cancel, lambda f: report_mixture(f, "Mixture check"),
                                 noise_needs_reference=False, count_reference_noise=True)
        mix_sums = res_sums
        res_b = mt._band_totals(res_sums, res_sums.bin_sums["E2"])
        mix_b = mt._band_totals(res_sums, res_sums.bin_sums["R2"])
        err_db = float(safe_db(mt._dot(residual, residual), mt._dot(mix_x, mix_x)))
        mixture = {
            "error_db": err_db,
            "status": st.mixture_status(err_db).to_json(),
            "definition": "10·log10(||mix − Σ stems||² / ||mix||²); −∞ when the stems sum exactly",
            "bands": [{"band": lab, "error_db": float(safe_db(r, m))}
                      for lab, r, m in zip(mt.band_labels(res_sums), res_b, mix_b, strict=True)],
            "stems": names,
        }
        mix_rms = mt.frame_rms(res_sums, "ref")
        timings["mixture"] = time.perf_counter() - t
    acap_x: np.ndarray | None = None
    vocal = next((n for n in names if _is_vocal(n)), None)
    if acapella is not None and vocal is None:
        notes.append("An acapella was given but no stem is named like a vocal (vocals, voice); not compared.")
    if acapella is not None and vocal is not None:
        acap_x = _conform(acapella, rate, chans, "acapella", target, notes)
    mix_onsets = mt.onsets_from(mix_sums, "ref") if mix_sums is not None else None
    mix_image = mix_sums.image_ref if mix_sums is not None else None

    def stem_job(n: str) -> tuple[dict[str, Section], StemFigures, dict[str, float], list[str]]:
        report_part = prog.part(f"stem:{n}")
        job_notes: list[str] = []
        job_timings: dict[str, float] = {}
        x = stems_x[n]
        t = time.perf_counter()
        sums = spectral_pass(x, mix_x, rate, prog.cancel, lambda f: report_part(0.8 * f, f"{n}: spectra"),
                             noise_needs_reference=False)
        job_timings["spectral_pass"] = time.perf_counter() - t
        est_rms = mt.frame_rms(sums, "est")
        sections: dict[str, Section] = {"band_energies": mt.band_energies_single(sums)}
        if mix_rms is not None:
            sections["silence_leakage"] = mt.silence_leakage(mix_rms, est_rms, "mix")
        else:
            sections["silence_leakage"] = {"status": st.Status("na", "Needs the mix").to_json()}
        est_on = mt.onsets_from(sums, "est")
        if mix_onsets is not None:
            on = mt.onset_section(mix_onsets, est_on)
            on["compared_with"] = "mix"
            on["note"] = ("precision = share of the stem's onsets that are also onsets of the mix; "
                          "recall is naturally low (the mix has every stem's onsets)")
            sections["onset_comparison"] = on
        else:
            sections["onset_comparison"] = {"estimate_onsets": int(est_on.size),
                                            "estimate_onset_times_s": [float(v) for v in est_on],
                                            "status": st.Status("na", "Needs the mix").to_json()}
        sections["dynamic_range"] = mt.dynamic_single(x, est_rms)
        sections["artifacts"] = {
            "musical_noise": mt.musical_noise_section(
                sums, "none", mix_sums.reference_musical_noise if mix_sums is not None else None),
        }
        if mix_x is not None:
            sections["artifacts"]["phase_vs_mix"] = mt.phase_section(sums)
        figs = _figures(sums, x, mix_x, est_rms, mix_rms, "mix" if mix_x is not None else "none")
        if n == vocal and acap_x is not None:
            t = time.perf_counter()
            aligned, details = align_acapella(x, acap_x, rate)
            job_notes.append(f"{n}: acapella aligned by cross-correlation (offset {details['offset_seconds']:+.4f} s, "
                             f"gain {details['gain_db']:+.2f} dB, polarity {details['polarity']:+d}).")
            acap_sections, figs, acap_timings = _reference_stem(
                n, x, aligned, rate, lambda f, m: report_part(0.8 + 0.2 * f, m), prog.cancel, comparison="acapella")
            _add_timings(job_timings, acap_timings)
            sections["acapella_comparison"] = {"alignment": details, **acap_sections}
            job_timings["acapella_comparison"] = time.perf_counter() - t
        _attach_masks(figs, mix_image, masks.get(n), rate, x.shape[-1] / rate)
        report_part(1.0, f"{n}: done")
        return sections, figs, job_timings, job_notes

    results = _run_parallel([(f"stem:{n}", functools.partial(stem_job, n)) for n in names])
    stems: dict[str, StemReport] = {}
    for n in names:
        sections, figs, job_timings, job_notes = results[f"stem:{n}"]
        notes.extend(job_notes)
        _add_timings(timings, job_timings)
        x = stems_x[n]
        report = StemReport(n, rate, x.shape[0], x.shape[-1] / rate, sections, figures=figs)
        report.notes = [v for v in notes if v.startswith(f"{n}:") or v.startswith(f"{n} (")]
        stems[n] = report
    summary_stems: dict[str, Any] = {}
    for n, s in stems.items():
        sec = s.sections
        row: dict[str, Any] = {
            "silence_leakage": sec["silence_leakage"].get("status"),
            "leakage_ratio": sec["silence_leakage"].get("leakage_ratio"),
            "onset_precision_vs_mix": sec.get("onset_comparison", {}).get("precision"),
            "musical_noise_per_mille": sec["artifacts"]["musical_noise"]["index_per_mille"],
            "musical_noise": sec["artifacts"]["musical_noise"]["status"],
        }
        if "acapella_comparison" in sec:
            sm = sec["acapella_comparison"]["seed_metrics"]
            row["si_sdr_vs_acapella_db"] = sm["si_sdr_db"]
            row["quality_vs_acapella"] = sm["quality"]
        summary_stems[n] = row
    summary = {"kind": "reference-free", "mixture": mixture, "stems": summary_stems,
               "figures": _figure_counts(stems)}
    return AnalysisReport("reference-free", meta, stems, mixture, summary, notes, settings, timings)
