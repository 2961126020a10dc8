"""The report's figures as matplotlib ``Figure`` objects on the Agg canvas (never pyplot, never
a GUI backend: safe on the engine's worker thread).

Per stem (seed 000's list): spectrum comparison, waveform comparison, mask comparison, energy
envelope, band energy evolution, phase consistency; and one comprehensive comparison of all
stems. Sized for an A4 page; colours chosen to stay distinct in greyscale print (estimate solid
dark, comparison lighter and dashed).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine.analysis.report import AnalysisReport, StemFigures, StemReport

PAGE_SIZE_IN = (8.27, 11.69)  # A4 portrait
EST_COLOR = "#1f4e9c"
REF_COLOR = "#e07b00"
GRADE_COLORS = {
    "excellent": "#1a7f37", "ok": "#1a7f37", "good": "#2e8b57", "fair": "#b35900", "warn": "#b35900",
    "poor": "#c62828", "bad": "#c62828", "na": "#777777",
}
FREQ_TICKS_HZ = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


def new_figure(title: str, size: tuple[float, float] = PAGE_SIZE_IN) -> Figure:
    """An A4 figure on the Agg canvas with a page title."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=14, fontweight="bold", y=0.985)
    return fig


def _time_axis(ax: Any, figs: StemFigures) -> None:
    ax.set_xlabel("Time (s)")
    ax.set_xlim(0.0, float(figs.columns_seconds[-1] + (figs.columns_seconds[0] if figs.columns_seconds.size else 0)))
    ax.grid(True, alpha=0.3)


def _label(figs: StemFigures) -> str:
    return {"reference": "Reference", "acapella": "Acapella", "mix": "Mix"}.get(figs.comparison_label, "Comparison")


def _has_ref(figs: StemFigures) -> bool:
    return figs.comparison_label in ("reference", "acapella", "mix")


def spectrum_figure(stem: StemReport) -> Figure:
    """Long-term average spectra, their difference, and the energy ratio per band."""
    f = stem.figures
    assert f is not None
    fig = new_figure(f"{stem.name.capitalize()} — Spectrum comparison")
    axes = fig.subplots(3, 1, gridspec_kw={"height_ratios": [3, 2, 2], "hspace": 0.45})
    hz = f.spectrum_hz
    sel = hz >= 20
    ax = axes[0]
    if f.spectrum_ref_db is not None and _has_ref(f):
        ax.semilogx(hz[sel], f.spectrum_ref_db[sel], color=REF_COLOR, lw=1.2, ls="--", label=_label(f))
    ax.semilogx(hz[sel], f.spectrum_est_db[sel], color=EST_COLOR, lw=1.0, label="Estimate")
    _shade_bands(ax)
    ax.set_ylabel("Mean power (dB)")
    ax.set_title("Long-term average spectrum")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlim(20, hz[-1])
    ax = axes[1]
    if f.spectrum_ref_db is not None and _has_ref(f):
        diff = f.spectrum_est_db - f.spectrum_ref_db
        ax.semilogx(hz[sel], np.clip(diff[sel], -40, 40), color="#333333", lw=0.8)
        ax.axhline(0.0, color="#999999", lw=0.8)
        ax.set_ylabel("Estimate − comparison (dB)")
        ax.set_title("Spectral difference (clipped to ±40 dB)")
        ax.set_xlim(20, hz[-1])
        _shade_bands(ax)
    else:
        _empty(ax, "No comparison signal")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel("Frequency (Hz)")
    ax = axes[2]
    rows = _band_rows(stem)
    if rows:
        names = [r[0] for r in rows]
        vals = [r[1] for r in rows]
        colors = [GRADE_COLORS.get(r[2], "#777777") for r in rows]
        ax.bar(range(len(vals)), vals, color=colors)
        ax.axhline(0.0, color="#333333", lw=0.8)
        for lim in (10 * math.log10(0.9), 10 * math.log10(1.1)):
            ax.axhline(lim, color="#999999", lw=0.8, ls=":")
        ax.set_xticks(range(len(vals)), names, fontsize=8)
        ax.set_ylabel("Energy ratio (dB)")
        ax.set_title("Band energy ratio, estimate / comparison (dotted: the 0.9–1.1 'good' range)")
        ax.grid(True, axis="y", alpha=0.3)
    else:
        _empty(ax, "No band comparison")
    return fig


def _band_rows(stem: StemReport) -> list[tuple[str, float, str]]:
    sec = stem.sections.get("energy_distribution")
    if sec is None and "acapella_comparison" in stem.sections:
        sec = stem.sections["acapella_comparison"].get("energy_distribution")
    rows: list[tuple[str, float, str]] = []
    if sec is not None:
        for r in sec["bands"]:
            ratio = r["ratio"]
            db = 10 * math.log10(ratio) if isinstance(ratio, float) and ratio > 0 and math.isfinite(ratio) else float("nan")
            rows.append((r["band"].split(" (")[0], max(min(db, 30.0), -30.0) if math.isfinite(db) else 0.0, r["status"]["grade"]))
    elif "band_energies" in stem.sections:
        for r in stem.sections["band_energies"]["bands"]:
            share = r.get("share_of_mix")
            if share is None:
                continue
            db = 10 * math.log10(share) if isinstance(share, float) and share > 0 and math.isfinite(share) else -30.0
            rows.append((r["band"].split(" (")[0], max(db, -30.0), "na"))
    return rows


def _shade_bands(ax: Any) -> None:
    from engine.spectral import BANDS

    for i, (_, lo, hi) in enumerate(BANDS):
        ax.axvspan(lo, hi, color="#000000", alpha=0.04 if i % 2 == 0 else 0.08, lw=0)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def waveform_figure(stem: StemReport) -> Figure:
    """Min/max waveforms of comparison and estimate, and both overlaid."""
    f = stem.figures
    assert f is not None
    fig = new_figure(f"{stem.name.capitalize()} — Waveform comparison")
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"hspace": 0.35})
    t = f.columns_seconds
    peak = float(np.max(np.abs(f.wave_est))) if f.wave_est.size else 1.0
    if f.wave_ref is not None:
        peak = max(peak, float(np.max(np.abs(f.wave_ref))))
    peak = peak or 1.0
    if f.wave_ref is not None and _has_ref(f):
        axes[0].fill_between(t, f.wave_ref[0], f.wave_ref[1], color=REF_COLOR, lw=0)
        axes[0].set_title(_label(f))
    else:
        _empty(axes[0], "No comparison signal")
    axes[1].fill_between(t, f.wave_est[0], f.wave_est[1], color=EST_COLOR, lw=0)
    axes[1].set_title("Estimate")
    if f.wave_ref is not None and _has_ref(f):
        axes[2].fill_between(t, f.wave_ref[0], f.wave_ref[1], color=REF_COLOR, alpha=0.5, lw=0, label=_label(f))
    axes[2].fill_between(t, f.wave_est[0], f.wave_est[1], color=EST_COLOR, alpha=0.5, lw=0, label="Estimate")
    axes[2].legend(loc="upper right", fontsize=8)
    axes[2].set_title("Overlay")
    for ax in axes:
        ax.set_ylim(-1.05 * peak, 1.05 * peak)
        ax.set_ylabel("Amplitude")
        _time_axis(ax, f)
    return fig


def _freq_image(ax: Any, image: np.ndarray, f: StemFigures, cmap: str, vmin: float, vmax: float, title: str) -> Any:
    t_end = float(f.columns_seconds[-1] + f.columns_seconds[0])
    im = ax.imshow(image, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                   extent=(0.0, t_end, 0, image.shape[0]), interpolation="nearest")
    rows = f.rows_hz
    ticks = [hz for hz in FREQ_TICKS_HZ if rows[0] <= hz <= rows[-1]]
    pos = np.interp(np.log(ticks), np.log(rows), np.arange(rows.size) + 0.5) if ticks else []
    ax.set_yticks(pos, [f"{hz / 1000:g}k" if hz >= 1000 else f"{hz:g}" for hz in ticks])
    ax.set_ylabel("Frequency (Hz)")
    ax.set_title(title, fontsize=10)
    return im


def mask_figure(stem: StemReport) -> Figure:
    """The mix spectrogram, the comparison's ideal ratio mask, the estimate's mask, their difference."""
    f = stem.figures
    assert f is not None
    fig = new_figure(f"{stem.name.capitalize()} — Mask comparison")
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"hspace": 0.4})
    if f.image_mix is not None:
        db = 10 * np.log10(np.maximum(f.image_mix, 1e-12))
        top = float(db.max())
        im = _freq_image(axes[0], db, f, "magma", top - 80, top, "Mix spectrogram (dB)")
    else:
        db = 10 * np.log10(np.maximum(f.image_est, 1e-12))
        top = float(db.max())
        im = _freq_image(axes[0], db, f, "magma", top - 80, top, "Estimate spectrogram (dB)")
    fig.colorbar(im, ax=axes[0], pad=0.01)
    if f.mask_ref is not None:
        im = _freq_image(axes[1], f.mask_ref, f, "viridis", 0, 1, f"{_label(f)} ratio mask √(|{_label(f)}|² / |Mix|²)")
        fig.colorbar(im, ax=axes[1], pad=0.01)
    else:
        _empty(axes[1], "No ideal mask (needs a reference or acapella and the mix)")
    if f.mask_est is not None:
        im = _freq_image(axes[2], f.mask_est, f, "viridis", 0, 1, f"Estimate mask — {f.mask_source}")
        fig.colorbar(im, ax=axes[2], pad=0.01)
    else:
        _empty(axes[2], "No estimate mask (needs the mix or the separator's masks)")
    if f.mask_ref is not None and f.mask_est is not None:
        im = _freq_image(axes[3], f.mask_est - f.mask_ref, f, "RdBu_r", -1, 1,
                         "Difference: estimate − ideal (red = too much, blue = missing)")
        fig.colorbar(im, ax=axes[3], pad=0.01)
    else:
        _empty(axes[3], "No difference to show")
    axes[3].set_xlabel("Time (s)")
    return fig


def envelope_figure(stem: StemReport) -> Figure:
    """Frame RMS (dBFS) over time for both, and the difference."""
    f = stem.figures
    assert f is not None
    fig = new_figure(f"{stem.name.capitalize()} — Energy envelope")
    axes = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2], "hspace": 0.3})
    t = f.columns_seconds
    if f.envelope_ref_db is not None and _has_ref(f):
        axes[0].plot(t, f.envelope_ref_db, color=REF_COLOR, lw=1.2, ls="--", label=_label(f))
    axes[0].plot(t, f.envelope_est_db, color=EST_COLOR, lw=1.0, label="Estimate")
    axes[0].set_ylabel("RMS (dBFS)")
    axes[0].set_ylim(max(-100.0, float(np.min(f.envelope_est_db)) - 5), 3)
    axes[0].legend(loc="lower right", fontsize=8)
    axes[0].set_title("Frame RMS")
    _time_axis(axes[0], f)
    if f.envelope_ref_db is not None and _has_ref(f):
        axes[1].plot(t, np.clip(f.envelope_est_db - f.envelope_ref_db, -40, 40), color="#333333", lw=0.8)
        axes[1].axhline(0.0, color="#999999", lw=0.8)
        axes[1].set_ylabel("Estimate − comparison (dB)")
        axes[1].set_title("Level difference (clipped to ±40 dB)")
    else:
        _empty(axes[1], "No comparison signal")
    _time_axis(axes[1], f)
    return fig


def bands_figure(stem: StemReport) -> Figure:
    """Energy of each band over time, estimate against comparison."""
    f = stem.figures
    assert f is not None
    fig = new_figure(f"{stem.name.capitalize()} — Band energy evolution")
    n = len(f.band_names)
    axes = fig.subplots(n, 1, sharex=True, gridspec_kw={"hspace": 0.45})
    from engine.spectral import BANDS

    t = f.columns_seconds
    for i, ax in enumerate(np.atleast_1d(axes)):
        if f.band_ref_db is not None and _has_ref(f):
            ax.plot(t, f.band_ref_db[i], color=REF_COLOR, lw=1.1, ls="--", label=_label(f))
        ax.plot(t, f.band_est_db[i], color=EST_COLOR, lw=0.9, label="Estimate")
        lo, hi = BANDS[i][1], BANDS[i][2]
        ax.set_title(f"{f.band_names[i]} ({lo:g}–{hi:g} Hz)", fontsize=10)
        ax.set_ylabel("dB")
        top = float(np.max(f.band_est_db[i]))
        if f.band_ref_db is not None:
            top = max(top, float(np.max(f.band_ref_db[i])))
        ax.set_ylim(top - 70, top + 5)
        _time_axis(ax, f)
        if i == 0:
            ax.legend(loc="upper right", fontsize=8)
    return fig


def phase_figure(stem: StemReport) -> Figure:
    """Phase consistency over time, the distribution of phase errors, and per band."""
    f = stem.figures
    assert f is not None
    fig = new_figure(f"{stem.name.capitalize()} — Phase consistency")
    axes = fig.subplots(3, 1, gridspec_kw={"hspace": 0.45})
    if f.phase_columns is None or f.phase_hist is None:
        for ax in axes:
            _empty(ax, "Phase consistency needs a comparison signal (reference, acapella or mix)")
        return fig
    t = f.columns_seconds
    axes[0].plot(t, f.phase_columns, color=EST_COLOR, lw=0.8)
    axes[0].axhline(1.0, color="#999999", lw=0.8, ls=":")
    axes[0].set_ylim(-1.05, 1.05)
    axes[0].set_ylabel("Σ Re(E·R*) / Σ |E||R|")
    axes[0].set_title(f"Phase consistency over time, against the {_label(f).lower()} (1 = same phase)")
    _time_axis(axes[0], f)
    hist = f.phase_hist / max(float(f.phase_hist.sum()), 1e-30)
    edges = np.linspace(-180, 180, hist.size + 1)
    axes[1].bar(edges[:-1], hist, width=edges[1] - edges[0], align="edge", color=EST_COLOR)
    axes[1].set_xlim(-180, 180)
    axes[1].set_xticks(range(-180, 181, 45))
    axes[1].set_xlabel("Phase error Δφ (degrees)")
    axes[1].set_ylabel("Share of |E||R|")
    axes[1].set_title("Distribution of phase errors, weighted by magnitude")
    axes[1].grid(True, alpha=0.3)
    if f.phase_bands is not None:
        vals = [0.0 if (v is None or math.isnan(v)) else v for v in f.phase_bands]
        axes[2].bar(range(len(vals)), vals, color=EST_COLOR)
        axes[2].set_xticks(range(len(vals)), f.band_names, fontsize=8)
        axes[2].set_ylim(min(-0.1, min(vals) - 0.1), 1.05)
        axes[2].axhline(0.9, color="#999999", lw=0.8, ls=":")
        axes[2].set_ylabel("Phase consistency")
        axes[2].set_title("Per band (dotted: 0.9, 'consistent')")
        axes[2].grid(True, axis="y", alpha=0.3)
    return fig


STEM_FIGURES = (
    ("spectrum", spectrum_figure),
    ("waveform", waveform_figure),
    ("mask", mask_figure),
    ("envelope", envelope_figure),
    ("bands", bands_figure),
    ("phase", phase_figure),
)


def _finite(x: Any, default: float = 0.0) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def comprehensive_figure(report: AnalysisReport) -> Figure:
    """All stems side by side: scores, the SDR family, band energy ratios and correlations."""
    fig = new_figure("Comprehensive comparison")
    names = list(report.stems)
    labels = [n.capitalize() for n in names]
    axes = fig.subplots(3, 2, gridspec_kw={"hspace": 0.55, "wspace": 0.35})
    x = np.arange(len(names))
    if report.mode == "reference":
        scores = [_finite(report.summary["stems"][n]["score_percent"]) for n in names]
        colors = [GRADE_COLORS.get(report.summary["stems"][n]["label"]["grade"], "#777777") for n in names]
        ax = axes[0, 0]
        ax.bar(x, scores, color=colors)
        for xi, v in zip(x, scores, strict=True):
            ax.text(xi, v + 2, f"{v:.0f}%", ha="center", fontsize=8)
        ax.set_ylim(0, 110)
        ax.set_xticks(x, labels)
        ax.set_title("Overall score (%)")
        ax.grid(True, axis="y", alpha=0.3)
        ax = axes[0, 1]
        series = [
            ("SI-SDR", [report.stems[n].sections["seed_metrics"]["si_sdr_db"] for n in names]),
            ("BSS SDR images v4", [report.stems[n].sections.get("bss_eval", {}).get("images_v4", {}).get("sdr_db") for n in names]),
            ("BSS SDR sources", [report.stems[n].sections.get("bss_eval", {}).get("sources", {}).get("sdr_db") for n in names]),
            ("Pseudo-SDR", [report.stems[n].sections["pseudo_sdr"]["bands"][-1]["pseudo_sdr_db"] for n in names]),
        ]
        w = 0.8 / len(series)
        shades = ["#1f4e9c", "#5b8bd6", "#e07b00", "#999999"]
        for k, (lab, vals) in enumerate(series):
            ax.bar(x - 0.4 + (k + 0.5) * w, [max(min(_finite(v), 60.0), -30.0) for v in vals], w, label=lab, color=shades[k])
        ax.axhline(0, color="#333333", lw=0.8)
        ax.set_xticks(x, labels)
        ax.set_ylabel("dB")
        ax.set_title("Distortion metrics (dB)")
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
        ax.grid(True, axis="y", alpha=0.3)
        ratio = np.array([[_finite(r["ratio"], float("nan")) for r in report.stems[n].sections["energy_distribution"]["bands"]]
                          for n in names])
        ratio_db = 10 * np.log10(np.clip(np.nan_to_num(ratio, nan=1.0), 1e-3, 1e3))
        bands = [r["band"].split(" (")[0] for r in report.stems[names[0]].sections["energy_distribution"]["bands"]]
        _heatmap(fig, axes[1, 0], ratio_db, labels, bands, "RdBu_r", -10, 10, "Band energy ratio (dB)", "{:+.1f}")
        corr = np.array([[_finite(b["correlation"], float("nan")) for b in report.stems[n].sections["spectral_similarity"]["bands"]]
                         for n in names])
        _heatmap(fig, axes[1, 1], corr, labels, bands[:-1], "viridis", 0, 1, "Band correlation", "{:.2f}")
        ax = axes[2, 0]
        f1 = [_finite(report.stems[n].sections["onset_alignment"]["f1"]) for n in names]
        leak = [_finite(report.stems[n].sections["silence_leakage"].get("leakage_ratio")) for n in names]
        ax.bar(x - 0.2, f1, 0.4, label="Onset F1", color=EST_COLOR)
        ax.bar(x + 0.2, leak, 0.4, label="Leakage ratio", color=REF_COLOR)
        ax.set_xticks(x, labels)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
        ax.set_title("Onset F1 (higher is better), leakage (lower is better)")
        ax.grid(True, axis="y", alpha=0.3)
        ax = axes[2, 1]
        noise = [_finite(report.stems[n].sections["artifacts"]["musical_noise"]["index_per_mille"]) for n in names]
        phase = [_finite(report.stems[n].sections["artifacts"]["phase"]["phase_consistency"]) for n in names]
        colors = [GRADE_COLORS.get(report.stems[n].sections["artifacts"]["musical_noise"]["status"]["grade"], "#777777")
                  for n in names]
        ax.bar(x, noise, 0.6, color=colors)
        for xi, v, ph in zip(x, noise, phase, strict=True):
            ax.text(xi, v, f"phase {ph:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, labels)
        ax.set_ylim(0, max(max(noise) * 1.25, 0.6))
        ax.axhline(0.5, color="#999999", ls=":", lw=0.8)
        ax.set_ylabel("Musical-noise index (‰)")
        ax.set_title("Artifacts: musical noise (bars), phase consistency (labels)")
        ax.grid(True, axis="y", alpha=0.3)
    else:
        _comprehensive_free(fig, axes, report, names, labels, x)
    return fig


def _heatmap(fig: Figure, ax: Any, data: np.ndarray, rows: list[str], cols: list[str], cmap: str,
             vmin: float, vmax: float, title: str, fmt: str) -> None:
    im = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=30)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            v = data[i, j]
            if math.isfinite(v):
                r, g, b, _ = im.cmap(im.norm(v))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # text colour by the cell's luminance
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6.5,
                        color="white" if dark else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, pad=0.02)


def _comprehensive_free(fig: Figure, axes: Any, report: AnalysisReport, names: list[str], labels: list[str], x: np.ndarray) -> None:
    stems = report.stems
    bands = [r["band"].split(" (")[0] for r in stems[names[0]].sections["band_energies"]["bands"]]
    share = np.array([[_finite(r.get("share_of_mix"), float("nan")) for r in stems[n].sections["band_energies"]["bands"]]
                      for n in names])
    if np.all(np.isnan(share)):
        share = np.array([[_finite(r["share_of_stem"], float("nan")) for r in stems[n].sections["band_energies"]["bands"]]
                          for n in names])
        title = "Share of the stem's energy per band"
    else:
        title = "Share of the mix's energy per band"
    _heatmap(fig, axes[0, 0], share, labels, bands, "viridis", 0, 1, title, "{:.2f}")
    ax = axes[0, 1]
    mx = report.mixture
    if mx:
        vals = [max(_finite(b["error_db"], -120.0), -120.0) for b in mx["bands"]]
        ax.bar(range(len(vals)), vals, color=EST_COLOR)
        ax.set_xticks(range(len(vals)), [b["band"].split(" (")[0] for b in mx["bands"]], fontsize=7, rotation=30)
        ax.axhline(-30, color="#999999", ls=":", lw=0.8)
        ax.set_ylabel("dB")
        ax.set_title(f"Mix − Σ stems per band (total {_finite(mx['error_db'], -120.0):.1f} dB)")
        ax.grid(True, axis="y", alpha=0.3)
    else:
        _empty(ax, "No mix given: mixture consistency not checked")
    ax = axes[1, 0]
    leak = [_finite(stems[n].sections["silence_leakage"].get("leakage_ratio")) for n in names]
    prec = [_finite(stems[n].sections["onset_comparison"].get("precision")) for n in names]
    ax.bar(x - 0.2, prec, 0.4, label="Onset precision vs mix", color=EST_COLOR)
    ax.bar(x + 0.2, leak, 0.4, label="Leakage into mix silence", color=REF_COLOR)
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("Onsets and leakage")
    ax.grid(True, axis="y", alpha=0.3)
    ax = axes[1, 1]
    noise = [_finite(stems[n].sections["artifacts"]["musical_noise"]["index_per_mille"]) for n in names]
    ax.bar(x, noise, color="#7b3294")
    mix_idx = next((stems[n].sections["artifacts"]["musical_noise"].get("mix_index_per_mille") for n in names), None)
    if mix_idx is not None:
        ax.axhline(_finite(mix_idx), color="#333333", ls="--", lw=0.8, label="the mix's own")
        ax.legend(fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_title("Isolated peaks (‰ of active points)")
    ax.grid(True, axis="y", alpha=0.3)
    ax = axes[2, 0]
    dr = [_finite(stems[n].sections["dynamic_range"]["rows"][0]["estimate"]) for n in names]
    crest = [_finite(stems[n].sections["dynamic_range"]["rows"][3]["estimate"]) for n in names]
    ax.bar(x - 0.2, dr, 0.4, label="Dynamic range (dB)", color=EST_COLOR)
    ax.bar(x + 0.2, crest, 0.4, label="Crest factor (dB)", color=REF_COLOR)
    ax.set_xticks(x, labels)
    ax.legend(fontsize=7)
    ax.set_title("Dynamics")
    ax.grid(True, axis="y", alpha=0.3)
    ax = axes[2, 1]
    vocal = next((n for n in names if "acapella_comparison" in stems[n].sections), None)
    if vocal is not None:
        sm = stems[vocal].sections["acapella_comparison"]["seed_metrics"]
        keys = [("SI-SDR (dB)", sm["si_sdr_db"]), ("SDR (dB)", sm["sdr_db"])]
        ax.bar(range(len(keys)), [max(min(_finite(v), 60), -30) for _, v in keys], color=EST_COLOR)
        ax.set_xticks(range(len(keys)), [k for k, _ in keys])
        ax.axhline(0, color="#333333", lw=0.8)
        ax.set_title(f"{vocal.capitalize()} against the acapella")
        ax.grid(True, axis="y", alpha=0.3)
    else:
        _empty(ax, "No acapella comparison")
