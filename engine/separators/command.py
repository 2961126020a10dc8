"""``python app.py separate``: load, align (unless told not to), separate, export, report JSON."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.audio import load_audio
from engine.errors import InputError
from engine.export import ExportOptions, export_stems
from engine.separators.base import get_separator


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``["cleanup=0.5", "n_fft=4096"]`` → ``{"cleanup": "0.5", ...}`` (validated by the engine)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--param '{item}' must look like NAME=VALUE")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _progress_printer(quiet: bool) -> Any:
    last = [-1.0]

    def report(fraction: float, message: str) -> None:
        if quiet or fraction - last[0] < 0.1 and fraction < 1.0:
            return
        last[0] = fraction
        print(f"{fraction * 100:5.1f}%  {message}", file=sys.stderr, flush=True)

    return report


def separate_command(
    mix_path: str,
    engine: str,
    out_dir: str,
    acapella_path: str | None = None,
    no_align: bool = False,
    file_format: str = "wav",
    bit_depth: str = "24",
    template: str = "{stem}",
    limiter: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    params: list[str] | None = None,
    quiet: bool = False,
    query_path: str | None = None,
    query_region: str | None = None,
    references_dir: str | None = None,
    gt_path: str | None = None,
) -> int:
    """Run one separation from files; writes stems and ``separation.json`` into ``out_dir``.

    Query engine: ``query_path`` (a 1–3 s clip) or ``query_region`` (``"START:END"`` seconds of
    the mix); also writes ``event.json`` and the timeline/comparison PNGs, and when nothing is
    found writes no stems (exit 0, "not found"). ``references_dir`` (true stems named like the
    engine's) or ``gt_path`` (the first stem's truth, e.g. the query target) add seed 002's metrics.
    """
    separator = get_separator(engine)
    parameters = separator.resolve_parameters(parse_params(params))
    options = ExportOptions(file_format=file_format, bit_depth=bit_depth, template=template,
                            limiter=limiter, overwrite=overwrite)
    options.validate()
    out = Path(out_dir)
    json_path = out / "separation.json"
    if json_path.exists() and not overwrite:
        raise InputError("would overwrite separation.json (use --overwrite, or choose another folder)", out)
    if separator.needs_acapella and acapella_path is None:
        raise InputError(f"the '{engine}' engine needs --acapella")
    from engine.query.command import parse_region

    region = parse_region(query_region)
    if separator.needs_query:
        if query_path is None and region is None:
            raise InputError(f"the '{engine}' engine needs --query Q (a 1–3 s clip) or --query-region START:END")
        if query_path is not None and region is not None:
            raise InputError("give either --query or --query-region, not both")
        if (out / "event.json").exists() and not overwrite:
            raise InputError("would overwrite event.json (use --overwrite, or choose another folder)", out)
    elif query_path is not None or region is not None:
        raise InputError(f"--query and --query-region are for the query engine, not '{engine}'")
    progress = _progress_printer(quiet)
    t_start = time.perf_counter()
    mix = load_audio(mix_path)
    acapella_aligned = None
    alignment: dict[str, Any] | None = None
    timings: dict[str, float] = {"load_mix_seconds": time.perf_counter() - t_start}
    if acapella_path is not None:
        from engine.align import AlignmentParams, align_acapella, render_aligned

        t0 = time.perf_counter()
        acapella = load_audio(acapella_path)
        timings["load_acapella_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if no_align:
            # Taken as already aligned: sample 0 on sample 0 (resampled to the mix's rate if needed).
            neutral = AlignmentParams(0.0, 0.0, 0.0, 1)
            acapella_aligned = render_aligned(acapella, neutral, mix.sample_rate, mix.frames, mix.channels)
            alignment = {"skipped": True}
        else:
            result = align_acapella(mix, acapella, progress=progress)
            if not result.matched:
                raise InputError(f"the acapella does not match this mix: {result.message}", acapella_path)
            acapella_aligned = render_aligned(acapella, result.params, mix.sample_rate, mix.frames, mix.channels)
            alignment = result.to_json()
        timings["align_seconds"] = time.perf_counter() - t0
    query_audio = None
    if query_path is not None:
        t0 = time.perf_counter()
        query_audio = load_audio(query_path)
        timings["load_query_seconds"] = time.perf_counter() - t0
    result_sep = separator.separate(
        mix, acapella=acapella_aligned, query=query_audio, region=region, device=device,
        parameters=parameters, progress=progress,
    )
    timings["separate_seconds"] = result_sep.seconds
    detection = result_sep.info.pop("detection", None)
    found = bool(result_sep.info.get("found", True))
    references = {}
    if references_dir is not None or gt_path is not None:
        from engine.query.command import load_references

        references = load_references(mix, references_dir, gt_path, tuple(result_sep.stems))
    t0 = time.perf_counter()
    title = Path(mix_path).stem
    to_write = result_sep.stems if found else {}
    out.mkdir(parents=True, exist_ok=True)
    report = export_stems(to_write, out, title, options, engine=engine)
    timings["export_seconds"] = time.perf_counter() - t0
    metrics = None
    if detection is not None:
        from engine.query.command import finish_query

        event = finish_query(out, mix_path, mix, query_path, region, detection, result_sep.info,
                             result_sep.parameters, result_sep.stems if found else None, references,
                             timings, quiet)
        metrics = event["metrics"]
    elif references:
        from engine.query.command import stem_metrics

        metrics = stem_metrics(result_sep.stems, references)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    summary = {
        "engine": engine,
        "stems": list(to_write),
        "found": found,
        "files": report.to_json(),
        "seconds": round(result_sep.seconds, 4),
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "device": result_sep.device,
        "parameters": result_sep.parameters,
        "mix": {"path": str(Path(mix_path).resolve()), "sample_rate": mix.sample_rate,
                "channels": mix.channels, "frames": mix.frames},
        "acapella": str(Path(acapella_path).resolve()) if acapella_path else None,
        "alignment": alignment,
        "sum_error_db": round(result_sep.sum_error_db(mix), 2),
        "info": result_sep.info,
        "metrics": metrics,
        "query": (str(Path(query_path).resolve()) if query_path else
                  ({"region": list(region)} if region else None)),
        "format": {"file_format": options.file_format, "bit_depth": options.bit_depth,
                   "template": options.template, "limiter": options.limiter},
    }
    tmp = json_path.with_name(".separation.json.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(json_path)
    if not quiet:
        names = ", ".join([*(f.path.name for f in report.files), *(["event.json"] if detection is not None else [])])
        print(f"wrote {names + ' and ' if names else ''}separation.json to {out} "
              f"({result_sep.seconds:.2f} s, {result_sep.device})")
    return 0
