"""The report's text content, once, as neutral blocks that Markdown and PDF both render.

Layout follows seed 000: per stem the seven numbered sections (energy distribution, spectral
similarity, error energy / pseudo-SDR, silence leakage, temporal alignment, spectral
divergence, dynamic range), then ours (waveform metrics of seed 002, BSS Eval, artifacts), and
a summary with an overall assessment per stem and the list of figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from engine.analysis.report import FIGURE_KINDS, AnalysisReport, StemReport


@dataclass
class Cell:
    """A table cell or value: its text and, for verdicts, the grade that picks the symbol."""

    text: str
    grade: str | None = None
    prefix: str = ""  # shown before the symbol: "60%" in "60% 👍 Good"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]


@dataclass
class Bullets:
    """``(label, value)`` lines: "- **label**: value" (``plain``: "- label: value";
    ``fields``: "**label**: value" paragraphs, as the seed's stem header)."""

    items: list[tuple[str, Cell]]
    style: str = "bold"


@dataclass
class Paragraph:
    text: str
    strong: bool = False


Part = Table | Bullets | Paragraph


@dataclass
class Block:
    title: str
    parts: list[Part] = field(default_factory=list)
    level: int = 3


# ---------------------------------------------------------------------------------------------
# Number formatting
# ---------------------------------------------------------------------------------------------


def num(x: Any, spec: str = ".4f") -> str:
    """Format a number; ``∞``/``−∞`` for infinities, ``n/a`` for undefined."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    f = float(x)
    if math.isnan(f):
        return "n/a"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    return format(f, spec)


def status_cell(status: dict[str, str] | None) -> Cell:
    if not status:
        return Cell("n/a", "na")
    return Cell(status.get("text", ""), status.get("grade"))


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


def _energy(sec: dict[str, Any], ref_word: str) -> Block:
    rows = [[Cell(r["band"]), Cell(num(r["reference_energy"], ".2e")), Cell(num(r["estimate_energy"], ".2e")),
             Cell(num(r["ratio"], ".3f")), status_cell(r["status"])] for r in sec["bands"]]
    return Block("1. Energy Distribution", [Table(
        ["Frequency Band", f"{ref_word} Energy", "Estimate Energy", "Ratio", "Status"], rows)])


def _similarity(sec: dict[str, Any]) -> Block:
    items = [("Overall Correlation", Cell(f"{num(sec['overall_correlation'])} (1.0 = perfect)")),
             ("Cosine Similarity", Cell(f"{num(sec['cosine_similarity'])} (1.0 = perfect)"))]
    bands = [(b["band"], Cell(num(b["correlation"]), b["status"]["grade"])) for b in sec["bands"]]
    return Block("2. Spectral Similarity", [Bullets(items), Paragraph("Band-wise Correlations", strong=True),
                                            Bullets(bands, "plain")])


def _pseudo_sdr(sec: dict[str, Any]) -> Block:
    rows = [[Cell(r["band"]), Cell(num(r["pseudo_sdr_db"], ".2f")), Cell(num(r["error_ratio"], ".4f")),
             status_cell(r["quality"])] for r in sec["bands"]]
    return Block("3. Error Energy (Pseudo-SDR)", [Table(
        ["Frequency Band", "Pseudo-SDR (dB)", "Error Ratio", "Quality"], rows)])


def _silence(sec: dict[str, Any], title: str = "4. Silence Leakage") -> Block:
    items: list[tuple[str, Cell]] = []
    if "silence_frames" in sec:
        items.append(("Silence Frames", Cell(
            f"{sec['silence_frames']} / {sec['total_frames']} ({num(sec['silence_percent'], '.1f')}%) "
            f"— frames where the {sec.get('silence_defined_by', 'reference')} is silent")))
        items.append(("Leakage Ratio", Cell(f"{num(sec.get('leakage_ratio'))} (lower is better; "
                                           f"{num(sec.get('leakage_db'), '.1f')} dB)")))
        ser = sec.get("silence_energy_ratio")
        pct = num(100 * ser, ".2f") if isinstance(ser, (int, float)) and not math.isnan(ser) else "n/a"
        items.append(("Silence Energy Ratio", Cell(f"{num(ser)} ({pct}% of total output)")))
    items.append(("Status", status_cell(sec.get("status"))))
    return Block(title, [Bullets(items)])


def _onsets(sec: dict[str, Any], ref_word: str, title: str = "5. Temporal Alignment (Onset Detection)") -> Block:
    items = [
        (f"{ref_word} Onsets", Cell(str(sec["reference_onsets"]))),
        ("Estimate Onsets", Cell(str(sec["estimate_onsets"]))),
        ("Matched Onsets", Cell(f"{sec['matched_onsets']} (±{num(sec['window_ms'], '.0f')}ms, one-to-one)")),
        ("Precision", Cell(f"{num(sec['precision'])} (how many estimated onsets are correct)")),
        ("Recall", Cell(f"{num(sec['recall'])} (how many {ref_word.lower()} onsets are found)")),
        ("F1-Score", Cell(num(sec["f1"]))),
        ("Status", status_cell(sec["status"])),
    ]
    parts: list[Part] = [Bullets(items)]
    if sec.get("note"):
        parts.append(Paragraph(sec["note"]))
    return Block(title, parts)


def _divergence(sec: dict[str, Any]) -> Block:
    return Block("6. Spectral Divergence", [Bullets([
        ("KL Divergence", Cell(f"{num(sec['kl_divergence'], '.6f')} (0 = identical)")),
        ("JS Divergence", Cell(f"{num(sec['js_divergence'], '.6f')} (0 = identical)")),
    ])])


_DYN_LABELS = {"dynamic_range_db": ("Dynamic Range (dB)", ".2f"), "peak_amplitude": ("Peak Amplitude", ".4f"),
               "rms_amplitude": ("RMS Amplitude", ".4f"), "crest_factor_db": ("Crest Factor (dB)", ".2f")}


def _dynamics(sec: dict[str, Any], ref_word: str) -> Block:
    rows = []
    for r in sec["rows"]:
        label, spec = _DYN_LABELS[r["metric"]]
        if "reference" in r:
            rows.append([Cell(label), Cell(num(r["reference"], spec)), Cell(num(r["estimate"], spec)),
                         Cell(num(r["difference"], spec))])
        else:
            rows.append([Cell(label), Cell(num(r["estimate"], spec))])
    headers = ["Metric", ref_word, "Estimate", "Difference"] if rows and len(rows[0]) == 4 else ["Metric", "Stem"]
    return Block("7. Dynamic Range", [Table(headers, rows)])


def _seed(sec: dict[str, Any], title: str = "8. Waveform Metrics (seed 002)") -> Block:
    return Block(title, [Bullets([
        ("SI-SDR", Cell(f"{num(sec['si_sdr_db'], '.2f')} dB", None)),
        ("Quality", status_cell(sec["quality"])),
        ("SDR", Cell(f"{num(sec['sdr_db'], '.2f')} dB (plain: reference energy / error energy)")),
        ("Spectral Convergence", Cell(f"{num(sec['spectral_convergence'])} (0 = perfect)")),
        ("Cross-correlation", Cell(f"{num(sec['cross_correlation'])} at lag 0; peak "
                                   f"{num(sec['peak_cross_correlation'])} at {num(sec['peak_lag_ms'], '+.2f')} ms")),
        ("Energy Ratio", Cell(f"{num(sec['energy_ratio'])} (1 = same loudness)")),
    ])])


def _bss(sec: dict[str, Any] | None) -> Block:
    if not sec:
        return Block("9. BSS Eval", [Paragraph("Not computed (see notes).")])
    v4, whole, src = sec["images_v4"], sec["images_whole"], sec["sources"]
    rows = [
        [Cell("images v4 (median of 1 s windows)"), Cell(num(v4["sdr_db"], ".2f")), Cell(num(v4["isr_db"], ".2f")),
         Cell(num(v4["sir_db"], ".2f")), Cell(num(v4["sar_db"], ".2f"))],
        [Cell("images, whole track"), Cell(num(whole["sdr_db"], ".2f")), Cell(num(whole["isr_db"], ".2f")),
         Cell(num(whole["sir_db"], ".2f")), Cell(num(whole["sar_db"], ".2f"))],
        [Cell("sources v3, whole track"), Cell(num(src["sdr_db"], ".2f")), Cell("—"),
         Cell(num(src["sir_db"], ".2f")), Cell(num(src["sar_db"], ".2f"))],
    ]
    parts: list[Part] = [Table(["Version", "SDR (dB)", "ISR (dB)", "SIR (dB)", "SAR (dB)"], rows)]
    parts.append(Paragraph(
        f"Images v4: {v4['valid_windows']} of {v4['windows']} windows scored (silent ones left out). "
        f"Sources: estimate '{src['matched_estimate']}' chosen by the best mean SIR"
        + ("." if src["permutation_agrees_with_names"] else " — not the stem of this name!")))
    return Block("9. BSS Eval", parts)


def _artifacts(sec: dict[str, Any]) -> Block:
    mn = sec["musical_noise"]
    items = [("Musical-noise index", Cell(
        f"{num(mn['index_per_mille'], '.3f')} ‰ ({mn['isolated_peaks']} isolated peaks, "
        f"{num(mn['peaks_per_second'], '.2f')}/s, {num(100 * mn['peak_energy_ratio'], '.3f')}% of the energy)")),
        ("Musical noise", status_cell(mn.get("status")))]
    if "mix_index_per_mille" in mn:
        items.append(("Mix's own index", Cell(f"{num(mn['mix_index_per_mille'], '.3f')} ‰ "
                                              f"(excess {num(mn['excess_over_mix_per_mille'], '+.3f')} ‰)")))
    for key, label in (("phase", "Phase consistency"), ("phase_vs_mix", "Phase agreement with the mix")):
        if key in sec:
            ph = sec[key]
            items.append((label, Cell(f"{num(ph['phase_consistency'])} (1 = same phase)")))
            items.append((f"{label} status", status_cell(ph["status"])))
    if "silence_leakage" in sec:
        lk = sec["silence_leakage"]
        items.append(("Leakage into silence", Cell(f"{num(lk['leakage_ratio'])} ({num(lk['leakage_db'], '.1f')} dB)",
                                                    lk["status"]["grade"])))
    return Block("10. Artifacts (what SDR misses)", [Bullets(items), Paragraph(
        "Musical-noise index: isolated, short-lived, narrow time-frequency peaks in the estimate that "
        "the reference lacks, per 1000 active points. Phase consistency: magnitude-weighted mean "
        "cos(Δφ) between estimate and reference.")])


def _header(stem: StemReport) -> Block:
    items = [("Duration", Cell(f"{stem.duration_seconds:.2f} seconds")),
             ("Sample Rate", Cell(f"{stem.sample_rate} Hz")),
             ("Channels", Cell(str(stem.channels)))]
    if stem.score is not None:
        items.append(("Overall", Cell(stem.score["label"]["text"], stem.score["label"]["grade"],
                                      f"{num(stem.score['score_percent'], '.0f')}%")))
    parts: list[Part] = [Bullets(items, "fields")]
    for note in stem.notes:
        parts.append(Paragraph(f"Note: {note}"))
    return Block(stem.name.capitalize(), parts, level=2)


def reference_stem_blocks(stem: StemReport, ref_word: str = "Reference") -> list[Block]:
    s = stem.sections
    blocks = [_header(stem), _energy(s["energy_distribution"], ref_word), _similarity(s["spectral_similarity"]),
              _pseudo_sdr(s["pseudo_sdr"]), _silence(s["silence_leakage"]),
              _onsets(s["onset_alignment"], ref_word), _divergence(s["spectral_divergence"]),
              _dynamics(s["dynamic_range"], ref_word), _seed(s["seed_metrics"])]
    if "bss_eval" in s or ref_word == "Reference":
        blocks.append(_bss(s.get("bss_eval")))
    blocks.append(_artifacts(s["artifacts"]))
    return blocks


def free_stem_blocks(stem: StemReport) -> list[Block]:
    s = stem.sections
    rows = []
    for r in s["band_energies"]["bands"]:
        row = [Cell(r["band"]), Cell(num(r["estimate_energy"], ".2e")), Cell(num(r["share_of_stem"], ".3f"))]
        if "mix_energy" in r:
            row += [Cell(num(r["mix_energy"], ".2e")), Cell(num(r["share_of_mix"], ".3f"))]
        rows.append(row)
    headers = ["Frequency Band", "Stem Energy", "Share of Stem"] + (
        ["Mix Energy", "Share of Mix"] if rows and len(rows[0]) == 5 else [])
    blocks = [_header(stem), Block("1. Band Energies", [Table(headers, rows)]),
              _silence(s["silence_leakage"], "2. Leakage into the Mix's Silence")]
    oc = s["onset_comparison"]
    if "reference_onsets" in oc:
        blocks.append(_onsets(oc, "Mix", "3. Onsets against the Mix"))
    else:
        blocks.append(Block("3. Onsets", [Bullets([("Stem Onsets", Cell(str(oc["estimate_onsets"]))),
                                                   ("Status", status_cell(oc["status"]))])]))
    dyn = _dynamics(s["dynamic_range"], "Stem")
    dyn.title = "4. Dynamic Range"
    blocks.append(dyn)
    art = _artifacts(s["artifacts"])
    art.title = "5. Artifacts"
    art.parts[-1] = Paragraph("Without a reference every isolated peak counts; the mix's own index is the "
                              "baseline. Phase agreement with the mix: 1 when the stem keeps the mix's phase.")
    blocks.append(art)
    if "acapella_comparison" in s:
        ac = s["acapella_comparison"]
        al = ac["alignment"]
        blocks.append(Block("6. Vocal against the Acapella", [Bullets([
            ("Offset", Cell(f"{num(al['offset_seconds'], '+.4f')} s ({al['offset_samples']} samples)")),
            ("Polarity", Cell(f"{al['polarity']:+d}")),
            ("Gain applied to the acapella", Cell(f"{num(al['gain_db'], '+.2f')} dB")),
            ("Correlation after alignment", Cell(num(al["correlation"]))),
        ])], level=3))
        sub = StemReport(stem.name, stem.sample_rate, stem.channels, stem.duration_seconds,
                         {k: v for k, v in ac.items() if k != "alignment"})
        for b in reference_stem_blocks(sub, "Acapella")[1:]:
            b.title = "6." + b.title.replace(". ", " ", 1) if b.title[0].isdigit() else b.title
            b.level = 4
            blocks.append(b)
    return blocks


def stem_blocks(report: AnalysisReport, stem: StemReport) -> list[Block]:
    return reference_stem_blocks(stem) if report.mode == "reference" else free_stem_blocks(stem)


def mixture_block(report: AnalysisReport) -> Block | None:
    mx = report.mixture
    if not mx:
        return None
    rows = [[Cell(b["band"]), Cell(num(b["error_db"], ".2f"))] for b in mx["bands"]]
    return Block("Mixture Consistency", [
        Bullets([("Stems", Cell(", ".join(mx["stems"]))),
                 ("Error (mix − Σ stems)", Cell(f"{num(mx['error_db'], '.2f')} dB (−∞ = exact)")),
                 ("Status", status_cell(mx["status"]))]),
        Table(["Frequency Band", "Error (dB)"], rows)], level=2)


def summary_blocks(report: AnalysisReport) -> list[Block]:
    blocks = [Block("Summary", [], level=2)]
    if report.mode == "reference":
        items = [(name.capitalize(), Cell(v["label"]["text"], v["label"]["grade"], f"{num(v['score_percent'], '.0f')}%"))
                 for name, v in report.summary["stems"].items()]
        blocks.append(Block("Overall Assessment", [Bullets(items), Paragraph(
            "Score: mean of energy balance, spectral similarity, distortion (pseudo-SDR / 15 dB), "
            "silence leakage, onset F1 and musical noise, each 0–1.")]))
        rows = []
        for name, stem in report.stems.items():
            s = stem.sections
            bss = s.get("bss_eval", {})
            rows.append([Cell(name.capitalize()),
                         Cell(num(s["seed_metrics"]["si_sdr_db"], ".2f")),
                         Cell(num(bss.get("images_v4", {}).get("sdr_db"), ".2f")),
                         Cell(num(bss.get("sources", {}).get("sdr_db"), ".2f")),
                         Cell(num(s["pseudo_sdr"]["bands"][-1]["pseudo_sdr_db"], ".2f")),
                         Cell(num(s["onset_alignment"]["f1"], ".3f")),
                         Cell(num(s["artifacts"]["musical_noise"]["index_per_mille"], ".2f"))])
        blocks.append(Block("Key Numbers", [Table(
            ["Stem", "SI-SDR", "SDR images v4", "SDR sources", "Pseudo-SDR", "Onset F1", "Noise ‰"], rows)]))
    else:
        mb = mixture_block(report)
        if mb is not None:
            mb.level = 3
            blocks.append(mb)
        rows = []
        for name, v in report.summary["stems"].items():
            rows.append([Cell(name.capitalize()), status_cell(v["silence_leakage"]),
                         Cell(num(v["onset_precision_vs_mix"], ".3f")),
                         status_cell(v["musical_noise"]),
                         Cell(num(v.get("si_sdr_vs_acapella_db"), ".2f"))])
        blocks.append(Block("Overall Assessment", [Table(
            ["Stem", "Silence leakage", "Onset precision vs mix", "Musical noise", "SI-SDR vs acapella"], rows)]))
    counts = report.summary["figures"]
    items = [(label, Cell(f"{counts[label]} image{'s' if counts[label] != 1 else ''}"))
             for _, label in (*FIGURE_KINDS, ("", "Comprehensive comparison"))]
    blocks.append(Block("Generated Visualizations", [Bullets(items), Bullets(
        [("Total", Cell(f"{counts['Total']} images (in the PDF report)"))], "fields")]))
    if report.notes:
        blocks.append(Block("Notes", [Bullets([(f"{i + 1}", Cell(n)) for i, n in enumerate(report.notes)])]))
    return blocks


def title_lines(report: AnalysisReport) -> list[tuple[str, str]]:
    m = report.meta
    lines = [("Model", str(m.get("model") or m.get("engine") or "unknown")),
             ("Track", str(m.get("track") or "unknown")),
             ("Analysis Time", str(m.get("created")))]
    if m.get("engine") and m.get("model"):
        lines.insert(0, ("Engine", str(m["engine"])))
    lines.append(("Mode", "against reference stems" if report.mode == "reference" else
                  "reference-free (no true stems)"))
    return lines
