"""analyze_stems end to end: both modes, the three report formats, the CLI function, mismatches,
progress and cancel, real recordings, and the Qt-free rule."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.analysis import analyze_stems, write_json, write_markdown, write_pdf
from engine.analysis.command import analyze_command, stem_files
from engine.audio import Audio, load_audio
from engine.errors import Cancelled, InputError

RATE = 22_050
SECTION_TITLES = [
    "1. Energy Distribution", "2. Spectral Similarity", "3. Error Energy (Pseudo-SDR)", "4. Silence Leakage",
    "5. Temporal Alignment (Onset Detection)", "6. Spectral Divergence", "7. Dynamic Range",
    "8. Waveform Metrics (seed 002)", "9. BSS Eval", "10. Artifacts (what SDR misses)",
]
FIGURE_TITLES = ["Spectrum comparison", "Waveform comparison", "Mask comparison", "Energy envelope",
                 "Band energy evolution", "Phase consistency"]


def _song(seconds: float = 3.0, rate: int = RATE) -> dict[str, np.ndarray]:
    """Three stereo stems with known structure: clicks, a bass line, a voice with pauses."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(42)
    drums = np.zeros(n)
    for beat in np.arange(0.1, seconds, 0.25):
        i = int(beat * rate)
        m = min(800, n - i)
        drums[i : i + m] += rng.standard_normal(m) * np.exp(-np.arange(m) / 150)
    bass = 0.3 * np.sin(2 * np.pi * (55 + 27.5 * (t // 0.5 % 2)) * t)
    voice = sum(0.08 / k * np.sin(2 * np.pi * k * 220 * t + 0.3 * np.sin(2 * np.pi * 5 * t)) for k in range(1, 8))
    voice = voice * ((t % 1.0) < 0.6)  # sings 0.6 s of every second
    out = {}
    for name, x in (("drums", 0.3 * drums), ("bass", bass), ("vocals", voice)):
        out[name] = np.stack([x, 0.9 * x]).astype(np.float32)
    return out


def _estimates(refs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = list(refs)
    rng = np.random.default_rng(7)
    return {n: (0.9 * refs[n] + 0.1 * refs[names[(i + 1) % len(names)]]
                + 0.002 * rng.standard_normal(refs[n].shape)).astype(np.float32) for i, n in enumerate(names)}


def _audio(d: dict[str, np.ndarray], rate: int = RATE) -> dict[str, Audio]:
    return {k: Audio(v, rate) for k, v in d.items()}


@pytest.fixture(scope="module")
def reference_report() -> object:
    refs = _song()
    mix = Audio(np.sum(list(refs.values()), axis=0), RATE)
    return analyze_stems(_audio(_estimates(refs)), _audio(refs), mix=mix,
                         meta={"track": "Synthetic test song", "engine": "unit-test", "model": "none"})


def _strict_json(path: Path) -> dict:
    def bad(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=bad)


def test_reference_json_has_every_section(reference_report: object, tmp_path: Path) -> None:
    path = write_json(reference_report, tmp_path / "report.json")  # type: ignore[arg-type]
    data = _strict_json(path)
    assert data["mode"] == "reference" and set(data["stems"]) == {"drums", "bass", "vocals"}
    for stem in data["stems"].values():
        for key in ("energy_distribution", "spectral_similarity", "pseudo_sdr", "silence_leakage",
                    "onset_alignment", "spectral_divergence", "dynamic_range", "seed_metrics", "bss_eval",
                    "artifacts", "summary"):
            assert key in stem, key
        assert len(stem["energy_distribution"]["bands"]) == 6  # five bands and the total
        bss = stem["bss_eval"]
        assert "v4" in bss["images_v4"]["version"] and "sources" in bss["sources"]["version"]
        assert bss["images_v4"]["sdr_db"] > 0 and bss["sources"]["sdr_db"] > 0
        assert bss["images_v4"]["valid_windows"] >= 2 and len(bss["images_v4"]["framewise"]["sdr_db"]) == 3
        assert bss["sources"]["permutation_agrees_with_names"] is True
        assert 0 <= stem["summary"]["score_percent"] <= 100
    # The voice pauses: its silence is found and the bleed of the other stems measured.
    voc = data["stems"]["vocals"]["silence_leakage"]
    assert 30 < voc["silence_percent"] < 50 and voc["leakage_ratio"] is not None
    assert data["summary"]["figures"]["Total"] == 3 * 6 + 1


def test_markdown_follows_the_seed_layout(reference_report: object, tmp_path: Path) -> None:
    text = write_markdown(reference_report, tmp_path / "report.md").read_text(encoding="utf-8")  # type: ignore[arg-type]
    assert text.startswith("# Audio Separation Analysis Report")
    assert "**Track**: Synthetic test song" in text
    for stem in ("## Drums", "## Bass", "## Vocals", "## Summary", "### Overall Assessment",
                 "### Generated Visualizations"):
        assert stem in text
    for title in SECTION_TITLES:
        assert text.count(f"### {title}") == 3, title
    assert "| Frequency Band | Reference Energy | Estimate Energy | Ratio | Status |" in text
    assert any(sym in text for sym in ("✅", "⚠️", "❌", "👍"))


def _pdftotext_pages(pdf: Path) -> list[str]:
    out = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    return out.split("\f")[:-1] if out.endswith("\f") else out.split("\f")


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) not installed")
def test_pdf_pages_titles_and_figures(reference_report: object, tmp_path: Path) -> None:
    fractions: list[float] = []
    pdf = write_pdf(reference_report, tmp_path / "report.pdf", progress=lambda f, m: fractions.append(f))  # type: ignore[arg-type]
    assert fractions and fractions[-1] == pytest.approx(1.0)
    info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    texts = _pdftotext_pages(pdf)
    assert len(texts) == pages
    assert "Audio Separation Analysis Report" in texts[0] and "Synthetic test song" in texts[0]
    assert "Summary" in texts[1] and "Overall Assessment" in texts[1]
    table_pages = [i for i, t in enumerate(texts) if "— tables" in t]
    summary_pages = [i for i, t in enumerate(texts) if t.lstrip().startswith("Summary")]
    # Title, summary, per stem its table pages and six figures, one comprehensive figure.
    assert pages == 1 + len(summary_pages) + len(table_pages) + 3 * 6 + 1
    everything = "\n".join(texts)
    for title in SECTION_TITLES:
        assert everything.count(title) == 3, title
    for title in FIGURE_TITLES:
        for stem in ("Drums", "Bass", "Vocals"):
            assert sum(f"{stem} — {title}" in t for t in texts) == 1, (stem, title)
    assert "Comprehensive comparison" in texts[-1]
    if shutil.which("pdfimages"):
        images = subprocess.run(["pdfimages", "-list", str(pdf)], check=True, capture_output=True, text=True).stdout
        rows = [line for line in images.splitlines()[2:] if line.strip()]
        assert len(rows) >= 3 * 4  # spectrogram and mask images of every stem


def test_reference_free_mode_with_mix_and_acapella(tmp_path: Path) -> None:
    refs = _song()
    mix = np.sum(list(refs.values()), axis=0)
    shift = int(0.1 * RATE)
    # The acapella has 0.1 s of extra lead-in and is 6 dB quieter.
    acapella = 0.5 * np.concatenate([np.zeros((2, shift), np.float32), refs["vocals"]], axis=1)
    report = analyze_stems(_audio(refs), None, mix=Audio(mix, RATE), acapella=Audio(acapella, RATE))
    assert report.mode == "reference-free"
    assert report.mixture is not None and report.mixture["error_db"] < -100  # the stems sum to the mix
    assert report.mixture["status"]["grade"] == "ok"
    vocals = report.stems["vocals"].sections
    align = vocals["acapella_comparison"]["alignment"]
    assert align["offset_samples"] == pytest.approx(-shift, abs=0.05) and align["polarity"] == 1
    assert align["gain_db"] == pytest.approx(20 * math.log10(2), abs=0.01)
    assert vocals["acapella_comparison"]["seed_metrics"]["si_sdr_db"] > 30
    assert vocals["onset_comparison"]["compared_with"] == "mix"
    assert "acapella_comparison" not in report.stems["drums"].sections
    data = _strict_json(write_json(report, tmp_path / "free.json"))
    assert data["summary"]["kind"] == "reference-free"
    text = write_markdown(report, tmp_path / "free.md").read_text(encoding="utf-8")
    for title in ("## Mixture Consistency", "### 1. Band Energies", "### 6. Vocal against the Acapella",
                  "#### 6.8 Waveform Metrics (seed 002)"):
        assert title in text


def test_reference_free_without_mix_still_reports() -> None:
    report = analyze_stems(_audio(_song(2.0)), None)
    assert report.mixture is None
    assert report.stems["bass"].sections["silence_leakage"]["status"]["grade"] == "na"


def test_mismatches_are_harmonised_with_notes() -> None:
    refs = _song(2.0)
    est = _estimates(refs)
    est_audio = {
        "drums": Audio(est["drums"][:1], RATE),  # mono estimate of a stereo reference
        "bass": Audio(np.concatenate([est["bass"], est["bass"][:, :1000]], axis=1), RATE),  # longer
        "vocals": Audio(np.repeat(est["vocals"], 2, axis=1), RATE * 2),  # another sample rate
    }
    report = analyze_stems(est_audio, _audio(refs))
    text = " ".join(report.notes)
    assert "duplicated" in text and "trimmed" in text and "resampled" in text
    assert report.stems["vocals"].sample_rate == RATE
    three = {"drums": Audio(np.repeat(est["drums"][:1], 3, axis=0), RATE)}
    with pytest.raises(InputError, match="3 channels"):
        analyze_stems(three, _audio(refs))
    with pytest.raises(InputError, match="no estimated stem has a reference"):
        analyze_stems({"guitar": Audio(est["drums"], RATE)}, _audio(refs))


def test_progress_is_monotonic_and_cancel_stops() -> None:
    refs = _song(1.5)
    seen: list[float] = []
    analyze_stems(_audio(_estimates(refs)), _audio(refs), progress=lambda f, m: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        analyze_stems(_audio(_estimates(refs)), _audio(refs), cancel=cancel)


def _write_dir(folder: Path, stems: dict[str, np.ndarray], ext: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, x in stems.items():
        sf.write(str(folder / f"{name}.{ext}"), x.T, RATE)


def test_command_writes_reports_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refs = _song(2.0)
    _write_dir(tmp_path / "ref", refs, "flac")
    _write_dir(tmp_path / "est", _estimates(refs), "wav")
    (tmp_path / "est" / "separation.json").write_text(json.dumps({"engine": "unet", "model": "unet-4stem"}))
    code = analyze_command(tmp_path / "est", tmp_path / "ref", None, tmp_path / "out" / "r.json",
                           tmp_path / "out" / "r.md", None)
    assert code == 0
    out = capsys.readouterr().out
    assert "drums" in out and "vocals" in out and "score" in out
    data = _strict_json(tmp_path / "out" / "r.json")
    assert data["meta"]["engine"] == "unet" and data["meta"]["model"] == "unet-4stem"
    assert (tmp_path / "out" / "r.md").read_text(encoding="utf-8").count("### 9. BSS Eval") == 3
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic writes leave no temp files


def test_command_names_the_bad_input(tmp_path: Path) -> None:
    refs = _song(1.0)
    _write_dir(tmp_path / "ref", refs, "flac")
    _write_dir(tmp_path / "est", refs, "wav")
    with pytest.raises(InputError, match="folder not found"):
        analyze_command(tmp_path / "missing", tmp_path / "ref", None, None, None, None)
    sf.write(str(tmp_path / "est" / "bass.flac"), refs["bass"].T, RATE)
    with pytest.raises(InputError, match="two files for the stem 'bass'"):
        stem_files(tmp_path / "est")
    (tmp_path / "est" / "bass.flac").unlink()
    (tmp_path / "ref" / "drums.flac").write_bytes(b"not audio at all")
    with pytest.raises(InputError) as err:
        analyze_command(tmp_path / "est", tmp_path / "ref", None, None, None, None)
    assert "drums.flac" in str(err.value)
    (tmp_path / "other").mkdir()
    _write_dir(tmp_path / "other", {"piano": refs["bass"]}, "wav")
    with pytest.raises(InputError, match="no estimate has a reference"):
        analyze_command(tmp_path / "est", tmp_path / "other", None, None, None, None)


def test_real_stems_sum_and_quiet_vocal(shared_fixtures: Path) -> None:
    ikala = shared_fixtures / "real_stems" / "ikala_10161_chorus"
    stems = {n: load_audio(ikala / f"{n}.flac") for n in ("accompaniment", "vocals")}
    report = analyze_stems(stems, None, mix=load_audio(ikala / "mixture.flac"))
    assert report.mixture is not None and report.mixture["error_db"] < -60  # mixture = exact sum
    exact = analyze_stems(stems, stems)
    assert exact.stems["vocals"].sections["seed_metrics"]["si_sdr_db"] == math.inf
    assert exact.stems["vocals"].score is not None and exact.stems["vocals"].score["label"]["text"] == "Excellent"
    mir = shared_fixtures / "real_stems" / "mir1k_amy_3_01"
    files = {p.stem: p for p in mir.glob("*.*") if p.suffix in (".flac", ".wav")}
    mix = load_audio(files.pop("mixture"))
    refs = {n: load_audio(p) for n, p in files.items()}
    est = {n: Audio(mix.samples * 0.5, mix.sample_rate) for n in refs}  # a poor separation
    quiet = analyze_stems(est, refs, mix=mix)
    for stem in quiet.stems.values():
        assert np.isfinite(stem.sections["seed_metrics"]["sdr_db"])
        assert stem.score is not None and 0 <= stem.score["score_percent"] <= 100
    json.dumps(quiet.to_json(), default=float)


def test_engine_analysis_imports_no_qt() -> None:
    code = ("import sys, engine.analysis, engine.analysis.report_pdf, engine.analysis.figures, "
            "engine.analysis.command\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph', 'gui')]\n"
            "assert not bad, bad\n"
            "import matplotlib; assert 'qt' not in matplotlib.get_backend().lower()\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
