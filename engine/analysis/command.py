"""``python app.py analyze``: folders of stems in, JSON / Markdown / PDF reports out.

Estimates and references are matched by file stem name (``vocals.wav`` ↔ ``vocals.flac``).
Without ``--references`` the analysis is reference-free. A ``separation.json`` beside the
estimates (written by ``separate``) names the engine and model on the report.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from engine.analysis.report import AnalysisReport, analyze_stems
from engine.audio import READ_EXTENSIONS, Audio, load_audio
from engine.errors import InputError


def stem_files(folder: str | Path) -> dict[str, Path]:
    """Audio files of a folder by stem name.

    Raises:
        InputError: missing folder, not a folder, no audio files, or two files for one stem.
    """
    d = Path(folder)
    if not d.exists():
        raise InputError("folder not found", d)
    if not d.is_dir():
        raise InputError("is not a folder (expected a folder of stems)", d)
    found: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in READ_EXTENSIONS:
            continue
        if p.stem in found:
            raise InputError(f"two files for the stem '{p.stem}' ({found[p.stem].name} and {p.name}); keep one", p)
        found[p.stem] = p
    if not found:
        raise InputError(f"no audio files ({', '.join(e.lstrip('.') for e in READ_EXTENSIONS)}) in this folder", d)
    return found


def _separation_meta(folder: Path) -> dict[str, Any]:
    meta_path = folder / "separation.json"
    if not meta_path.is_file():
        return {}
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ("engine", "model", "device"):
        if isinstance(data.get(key), (str, int, float)):
            out[key] = data[key]
    params = data.get("parameters")
    if isinstance(params, dict) and isinstance(params.get("model"), str) and "model" not in out:
        out["model"] = params["model"]
    return out


def _fmt(x: Any, spec: str) -> str:
    if x is None:
        return "n/a"
    f = float(x)
    if math.isnan(f):
        return "n/a"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return format(f, spec)


def text_summary(report: AnalysisReport) -> str:
    """A few lines for the terminal."""
    lines = []
    if report.mode == "reference":
        lines.append(f"{'stem':<14}{'score':>7}  {'label':<10}{'SI-SDR':>8}{'SDR v4':>8}{'SDR src':>8}{'onset F1':>9}")
        for name, s in report.stems.items():
            sec = s.sections
            bss = sec.get("bss_eval", {})
            score = s.score or {}
            lines.append(
                f"{name:<14}{_fmt(score.get('score_percent'), '.0f'):>6}%  {score.get('label', {}).get('text', ''):<10}"
                f"{_fmt(sec['seed_metrics']['si_sdr_db'], '.2f'):>8}"
                f"{_fmt(bss.get('images_v4', {}).get('sdr_db'), '.2f'):>8}"
                f"{_fmt(bss.get('sources', {}).get('sdr_db'), '.2f'):>8}"
                f"{_fmt(sec['onset_alignment']['f1'], '.3f'):>9}"
            )
    else:
        if report.mixture:
            lines.append(f"mix − Σ stems: {_fmt(report.mixture['error_db'], '.2f')} dB "
                         f"({report.mixture['status']['text']})")
        lines.append(f"{'stem':<14}{'leakage':>9}{'onset prec':>11}{'noise ‰':>9}{'SI-SDR vs acapella':>20}")
        for name, row in report.summary["stems"].items():
            lines.append(f"{name:<14}{_fmt(row['leakage_ratio'], '.3f'):>9}"
                         f"{_fmt(row['onset_precision_vs_mix'], '.3f'):>11}"
                         f"{_fmt(row['musical_noise_per_mille'], '.2f'):>9}"
                         f"{_fmt(row.get('si_sdr_vs_acapella_db'), '.2f'):>20}")
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def analyze_command(
    estimates_dir: str | Path,
    references_dir: str | Path | None,
    mix_path: str | Path | None,
    json_out: str | Path | None,
    markdown_out: str | Path | None,
    pdf_out: str | Path | None,
    acapella_path: str | Path | None = None,
) -> int:
    """Run the analysis for the CLI; prints a short summary and returns the exit code (0).

    Raises:
        InputError: a missing/unreadable folder or file (named), no matching stems, or an
            output that cannot be written.
    """
    est_files = stem_files(estimates_dir)
    ref_files = stem_files(references_dir) if references_dir is not None else None
    if ref_files is not None and not set(est_files) & set(ref_files):
        raise InputError(
            f"no estimate has a reference of the same name (estimates: {', '.join(sorted(est_files))}; "
            f"references: {', '.join(sorted(ref_files))})", references_dir)
    estimates: dict[str, Audio] = {n: load_audio(p) for n, p in est_files.items()}
    references = None
    if ref_files is not None:
        # Every reference: the unmatched ones count as interference in BSS Eval.
        references = {n: load_audio(p) for n, p in ref_files.items()}
    mix = load_audio(mix_path) if mix_path is not None else None
    acapella = load_audio(acapella_path) if acapella_path is not None else None
    meta: dict[str, Any] = {"track": Path(mix_path).stem if mix_path else Path(estimates_dir).resolve().name}
    meta.update(_separation_meta(Path(estimates_dir)))
    meta["estimates"] = str(estimates_dir)
    if references_dir is not None:
        meta["references"] = str(references_dir)
    report = analyze_stems(estimates, references, mix=mix, acapella=acapella, meta=meta)
    from engine.analysis.report_json import write_json
    from engine.analysis.report_markdown import write_markdown

    for out, writer in ((json_out, write_json), (markdown_out, write_markdown)):
        if out is not None:
            try:
                writer(report, out)
            except OSError as exc:
                raise InputError(f"cannot write the report ({exc.strerror or exc})", out) from exc
    if pdf_out is not None:
        from engine.analysis.report_pdf import write_pdf

        try:
            write_pdf(report, pdf_out)
        except OSError as exc:
            raise InputError(f"cannot write the report ({exc.strerror or exc})", pdf_out) from exc
    print(text_summary(report), file=sys.stdout)
    return 0
