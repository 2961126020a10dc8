"""The query engine's two pictures (matplotlib on the Agg canvas, never pyplot: safe on the
engine's worker thread), as seed 002 drew them:

* **timeline**: the mix's waveform with the found segments shaded and scored, and the per-window
  class probability, embedding similarity and score against their gates;
* **comparison**: log-frequency spectrograms of the mix, the target, the residual (and the
  reference target when one is given).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine.audio import Audio
from engine.query.detection import Detection
from engine.spectral import log_frequency_rows, spectrogram_columns

SEGMENT_COLOR = "#e07b00"
COLUMNS = 1200


def _envelope(audio: Audio, columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(times, low, high)``: min/max of the channel mean per column."""
    x = audio.mono()
    columns = max(1, min(columns, x.size))
    edges = np.linspace(0, x.size, columns + 1).astype(np.int64)
    lo = np.minimum.reduceat(x, edges[:-1])
    hi = np.maximum.reduceat(x, edges[:-1])
    times = (edges[:-1] + edges[1:]) * 0.5 / audio.sample_rate
    return times, lo, hi


def timeline_figure(mix: Audio, detection: Detection, title: str = "") -> Figure:
    fig = Figure(figsize=(12, 6.5))
    FigureCanvasAgg(fig)
    q = detection.query
    head = title or "Query detection"
    if q is not None:
        head += f" — query class: {q.class_name} (p = {q.class_probability:.2f})"
    fig.suptitle(head, fontsize=12, fontweight="bold")
    ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.2], "hspace": 0.15})
    t, lo, hi = _envelope(mix, COLUMNS)
    ax1.fill_between(t, lo, hi, color="#1f4e9c", linewidth=0)
    for s in detection.segments:
        ax1.axvspan(s.start, s.end, color=SEGMENT_COLOR, alpha=0.3, linewidth=0)
        ax1.text(0.5 * (s.start + s.end), 0.92, f"{s.score:.2f}", ha="center", va="top", fontsize=7,
                 transform=ax1.get_xaxis_transform())
    ax1.set_ylabel("Mix")
    state = (f"{len(detection.segments)} segment(s)" if detection.found else "NOT FOUND")
    ax1.set_title(state, fontsize=10, loc="left")
    centres = detection.window_starts + 0.5 * detection.params.window_seconds
    ax2.plot(centres, detection.class_probability, color="#1a7f37", label="class probability")
    ax2.plot(centres, detection.cosine, color="#7b1fa2", label="embedding similarity")
    ax2.plot(centres, detection.score, color="black", linewidth=1.5, label="score")
    if detection.class_gate_used:
        ax2.axhline(detection.params.class_threshold, color="#1a7f37", linestyle="--", linewidth=0.8)
    if detection.params.use_cosine_gate or not detection.class_gate_used:
        ax2.axhline(detection.params.cosine_threshold, color="#7b1fa2", linestyle="--", linewidth=0.8)
    for s in detection.segments:
        ax2.axvspan(s.start, s.end, color=SEGMENT_COLOR, alpha=0.15, linewidth=0)
    if detection.stem_level_db is not None:
        ax3 = ax2.twinx()
        ax3.plot(centres, detection.stem_level_db, color="#d9480f", linewidth=1.0, label="stem level (dB)")
        if detection.params.use_stem_gate:
            ax3.axhline(detection.params.stem_threshold_db, color="#d9480f", linestyle="--", linewidth=0.8)
        ax3.set_ylim(-40.5, 0.5)
        ax3.set_ylabel("Stem level (dB)", color="#d9480f")
        ax3.legend(loc="upper left", fontsize=8)
    ax2.set_ylim(-0.05, 1.05)
    ax2.set_xlim(0, max(detection.duration_seconds, 1e-3))
    ax2.set_xlabel("Time (s)")
    ax2.set_ylabel("Per window")
    ax2.legend(loc="upper right", fontsize=8, ncol=3)
    ax2.grid(True, alpha=0.3)
    return fig


def comparison_figure(mix: Audio, target: Audio, residual: Audio, reference: Audio | None = None,
                      detection: Detection | None = None, title: str = "") -> Figure:
    rows = [("Mix", mix), ("Target", target), ("Residual", residual)]
    if reference is not None:
        rows.append(("Reference target", reference))
    fig = Figure(figsize=(12, 2.6 * len(rows)))
    FigureCanvasAgg(fig)
    fig.suptitle(title or "Query separation", fontsize=12, fontweight="bold")
    axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    dur = mix.duration_seconds
    vmax = None
    for ax, (name, audio) in zip(axes, rows, strict=True):
        cols = int(min(COLUMNS, max(16, audio.frames // 256)))
        db = spectrogram_columns(audio.samples, 0, audio.frames, cols)
        img, hz = log_frequency_rows(db, audio.sample_rate, rows=200)
        if vmax is None:
            vmax = float(np.percentile(img, 99.5))
        ax.imshow(img.T, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
                  extent=(0, dur, 0, img.shape[1]))
        ticks = [f for f in (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000) if hz[0] <= f <= hz[-1]]
        ax.set_yticks(np.interp(np.log(ticks), np.log(hz), np.arange(hz.size)))
        ax.set_yticklabels([f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks], fontsize=7)
        ax.set_ylabel(f"{name}\nHz")
        if detection is not None:
            for s in detection.segments:
                ax.axvline(s.start, color="white", linewidth=0.6, alpha=0.7)
                ax.axvline(s.end, color="white", linewidth=0.6, alpha=0.7, linestyle="--")
    axes[-1].set_xlabel("Time (s)")
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    p = Path(path)
    fig.savefig(str(p), dpi=dpi, bbox_inches="tight")
    return p
