"""The analysis dock: runs as a job on the stem lanes, per-stem tabs with numbers and status
colours, time plots on the shared axis (a click seeks), and the report export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QPoint, Qt

from engine.audio import Audio
from engine.session import Track
from gui.analysis_dock import GRADE_COLORS, format_value
from tests.gui.test_separate_panel import RATE, load_song

pytestmark = pytest.mark.gui


def add_stems(window, vocal: np.ndarray, inst: np.ndarray) -> None:
    """Stem lanes as a separation would leave them (the true stems: they sum to the mix)."""
    s = window.session
    s.add_track(Track(name="vocals", role="stem", audio=Audio(vocal, RATE)))
    s.add_track(Track(name="instrumental", role="stem", audio=Audio(inst, RATE)))


def analyze(qtbot, dock):
    with qtbot.waitSignal(dock.analyzed, timeout=40_000) as sig:
        assert dock.analyze() is not None
    return sig.args[0]


def test_reference_free_analysis_shows_per_stem_tabs_with_numbers(qtbot, window, tmp_path: Path) -> None:
    dock = window.panels["analysis"]
    assert dock.analyze() is None and "Separate first" in dock.status_label.text()
    vocal, inst = load_song(window)
    add_stems(window, vocal, inst)
    report = analyze(qtbot, dock)
    assert dock.isVisible() and report.mode != "reference"
    assert [dock.tabs.tabText(i) for i in range(dock.tabs.count())] == list(report.stems)
    assert set(report.stems) == {"vocals", "instrumental"}
    # the stems are the true ones: they sum to the mix, and the dock says so with the number
    err = report.mixture["error_db"]
    assert err < -100.0 and format_value(err) in dock.mixture_label.text()
    tab = dock.tabs_by_stem["vocals"]
    texts = [tab.table.item(r, 2).text() for r in range(tab.table.rowCount())]
    assert tab.table.rowCount() > 10 and any(any(ch.isdigit() for ch in t) for t in texts)
    # statuses are coloured by grade
    graded = [(r, g) for r, (_, _, _, g) in enumerate(tab.rows) if g]
    assert graded
    row, grade = graded[0]
    assert tab.table.item(row, 0).background().color().name() == GRADE_COLORS[grade]
    # the vocal compared with the acapella (the same signal here): levels coincide
    fig = report.stems["vocals"].figures
    assert fig.comparison_label == "acapella" and fig.envelope_ref_db is not None
    assert len(tab.plots) == 2 and [c.name() for c in tab.plots[0].curves] == ["acapella", "vocals"]


def test_time_plots_follow_the_timeline_and_a_click_seeks(qtbot, window) -> None:
    dock = window.panels["analysis"]
    vocal, inst = load_song(window)
    add_stems(window, vocal, inst)
    analyze(qtbot, dock)
    dock.resize(900, 500)
    plot = dock.tabs_by_stem["vocals"].plots[0]
    tl = window.session.timeline
    tl.set_range(0, tl.length_frames)
    (x0, x1), _ = plot.vb.viewRange()
    assert x0 == pytest.approx(0.0) and x1 == pytest.approx(tl.length_frames / RATE)
    qtbot.waitUntil(lambda: plot.vb.width() > 50, timeout=5000)
    vp = plot.viewport()
    target = plot.mapFromScene(plot.vb.mapViewToScene(plot.vb.mapToView(plot.vb.boundingRect().center())))
    qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, pos=QPoint(int(target.x()), int(target.y())))
    assert tl.playhead == pytest.approx(tl.length_frames / 2, abs=tl.length_frames * 0.02)


def test_reference_folder_and_report_export(qtbot, window, tmp_path: Path) -> None:
    dock = window.panels["analysis"]
    vocal, inst = load_song(window)
    add_stems(window, vocal, inst)
    refs = tmp_path / "refs"
    refs.mkdir()
    sf.write(refs / "vocals.wav", vocal.T, RATE, subtype="FLOAT")
    sf.write(refs / "instrumental.wav", inst.T, RATE, subtype="FLOAT")
    dock.set_references(refs)
    report = analyze(qtbot, dock)
    assert report.mode == "reference"
    assert "against reference stems" in dock.status_label.text()
    for name in ("report.json", "report.md"):
        with qtbot.waitSignal(dock.report_written, timeout=20_000):
            dock.export_report(tmp_path / name)
    data = json.loads((tmp_path / "report.json").read_text())
    assert set(data["stems"]) == {"vocals", "instrumental"}
    assert "vocals" in (tmp_path / "report.md").read_text()
