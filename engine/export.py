"""Export stems: WAV 16/24-bit/32-bit float or FLAC 16/24-bit at the source's rate, a naming
template, a peak report, an opt-in limiter instead of silent clipping, and never an overwrite
unless asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio import WRITE_SUBTYPES, Audio, save_audio
from engine.dynamics import limiter_gain
from engine.errors import InputError

TEMPLATE_FIELDS = ("title", "stem", "engine", "index")


@dataclass
class ExportOptions:
    """How stems are written.

    ``template`` may use ``{title}``, ``{stem}``, ``{engine}`` and ``{index}`` (1-based).
    ``limiter``: bring peaks above ``ceiling_db`` down with a 10 ms look-ahead limiter instead of
    letting fixed-point formats clip.
    """

    file_format: str = "wav"
    bit_depth: str = "24"
    template: str = "{title} - {stem}"
    limiter: bool = False
    ceiling_db: float = -0.3
    overwrite: bool = False

    def validate(self) -> None:
        fmt = self.file_format.lower()
        if fmt not in WRITE_SUBTYPES:
            raise InputError(f"export format '{self.file_format}' is not supported; use wav or flac")
        if self.bit_depth not in WRITE_SUBTYPES[fmt]:
            raise InputError(
                f"{fmt.upper()} cannot be written at '{self.bit_depth}'; choose one of {sorted(WRITE_SUBTYPES[fmt])}"
            )
        try:
            self.template.format(title="t", stem="s", engine="e", index=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(
                f"naming template '{self.template}' is invalid ({exc}); fields: "
                + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            ) from exc
        if "{stem}" not in self.template:
            raise InputError("naming template must contain {stem}, or every stem would get the same name")


@dataclass
class StemExport:
    stem: str
    path: Path
    peak_db: float
    clipped_samples: int
    limiter_reduction_db: float = 0.0


@dataclass
class ExportReport:
    files: list[StemExport] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return [
            f"{f.path.name}: {f.clipped_samples} samples clipped (peak {f.peak_db:+.2f} dBFS); "
            "use the limiter or 32-bit float to avoid clipping"
            for f in self.files if f.clipped_samples
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            f.stem: {
                "path": str(f.path), "peak_dbfs": round(f.peak_db, 3), "clipped_samples": f.clipped_samples,
                "limiter_reduction_db": round(f.limiter_reduction_db, 3),
            }
            for f in self.files
        }


def _safe_name(text: str) -> str:
    text = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", text).strip(" .")
    return text or "untitled"


def peak_db(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return 20.0 * np.log10(max(peak, 1e-12))


def limit(samples: np.ndarray, sample_rate: int, ceiling_db: float = -0.3) -> tuple[np.ndarray, float]:
    """Look-ahead peak limiter (channels linked; :func:`engine.dynamics.limiter_gain`, 10 ms).

    Returns:
        ``(limited float32 (channels, frames), largest gain reduction in dB)``; audio that never
        reaches the ceiling comes back unchanged.
    """
    level = np.max(np.abs(samples), axis=0)
    if level.size == 0 or float(level.max()) <= 10 ** (ceiling_db / 20):
        return samples.astype(np.float32, copy=False), 0.0
    gain = limiter_gain(samples, sample_rate, ceiling_db, lookahead_ms=10.0, hold_ms=10.0)
    out = (samples * gain[None, :]).astype(np.float32)
    return out, float(-20 * np.log10(max(float(gain.min()), 1e-12)))


def plan_paths(stems: list[str], out_dir: Path, title: str, engine: str, options: ExportOptions) -> dict[str, Path]:
    """Where each stem will be written (for the GUI to show and to check for overwrites)."""
    options.validate()
    ext = options.file_format.lower()
    paths = {}
    for i, stem in enumerate(stems, start=1):
        name = options.template.format(title=title, stem=stem, engine=engine, index=i)
        paths[stem] = Path(out_dir) / f"{_safe_name(name)}.{ext}"
    if len(set(paths.values())) != len(paths):
        raise InputError(f"naming template '{options.template}' gives two stems the same file name")
    return paths


def export_stems(
    stems: dict[str, Audio], out_dir: str | Path, title: str, options: ExportOptions, engine: str = ""
) -> ExportReport:
    """Write every stem; refuses to overwrite existing files unless ``options.overwrite``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("the output location exists and is not a folder", out)
    paths = plan_paths(list(stems), out, title, engine, options)
    existing = [p for p in paths.values() if p.exists()]
    if existing and not options.overwrite:
        names = ", ".join(p.name for p in existing)
        raise InputError(f"would overwrite {names} (use --overwrite, or choose another folder)", out)
    out.mkdir(parents=True, exist_ok=True)
    report = ExportReport()
    fixed_point = options.bit_depth != "float"
    for stem, audio in stems.items():
        samples, reduction = audio.samples, 0.0
        if options.limiter:
            samples, reduction = limit(samples, audio.sample_rate, options.ceiling_db)
        clipped = int(np.count_nonzero(np.abs(samples) > 1.0)) if fixed_point else 0
        save_audio(paths[stem], Audio(samples, audio.sample_rate), bit_depth=options.bit_depth,
                   file_format=options.file_format.lower())
        report.files.append(StemExport(stem, paths[stem], peak_db(samples), clipped, reduction))
    return report
