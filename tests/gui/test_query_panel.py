"""Find Similar: query from a selection, detection as a job, editable segments on the mix lane,
Separate into target + residual lanes that sum to the mix and carry editable masks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gui.test_separate_panel import load_song

pytestmark = pytest.mark.gui


def _sum_error_db(session) -> float:
    mix = session.track_by_role("mix").audio.samples.astype(np.float64)
    total = sum(t.audio.samples.astype(np.float64) for t in session.tracks if t.role == "stem")
    return 10 * np.log10(np.sum((total - mix) ** 2) / np.sum(mix**2) + 1e-30)


def test_find_similar_edit_segments_then_separate(qtbot, window) -> None:
    panel = window.panels["query"]
    load_song(window)
    s = window.session
    qtbot.waitUntil(lambda: s.track_by_role("mix").id in window.lane_stack.lanes, timeout=10_000)
    rate = s.sample_rate
    assert not panel.use_selection()  # nothing selected: a clear message, no query
    assert "Select a region" in panel.status_label.text()
    s.timeline.set_selection(int(0.2 * rate), int(1.4 * rate))
    assert panel.use_selection() and panel.query is not None
    assert panel.query.duration_seconds == pytest.approx(1.2, abs=0.01)
    assert panel.find_button.isEnabled()
    assert panel.find_similar() is not None
    qtbot.waitUntil(lambda: panel.job is None, timeout=60_000)
    det = panel.detection
    assert det is not None and len(panel.segments) == len(det.segments)
    text = panel.status_label.text()
    assert text.startswith("Found") or text.startswith("Not found")
    # the user adds a segment by hand, moves its edge on the mix lane, deletes another
    s.timeline.set_selection(int(0.5 * rate), int(1.5 * rate))
    panel.set_segments([])
    panel.add_selection()
    s.timeline.set_selection(int(1.6 * rate), int(1.9 * rate))
    panel.add_selection()
    assert [round(x.start, 2) for x in panel.segments] == [0.5, 1.6]
    assert len(panel._items) == 2 and all(len(items) == 2 for items in panel._items)
    region = panel._items[0][0]
    region.setRegion((0.4, 1.5))
    region.sigRegionChangeFinished.emit(region)
    qtbot.waitUntil(lambda: round(panel.segments[0].start, 2) == 0.4, timeout=5_000)
    panel.segment_list.setCurrentRow(1)
    panel.delete_selected()
    assert len(panel.segments) == 1 and panel.segment_list.count() == 1
    # Separate: target + residual lanes, summing to the mix, with editable masks
    assert panel.separate() is not None
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    stems = {t.name: t for t in s.tracks if t.role == "stem"}
    assert set(stems) == {"target", "residual"}, panel.status_label.text()
    assert _sum_error_db(s) <= -100.0
    target = stems["target"].audio.samples
    outside = slice(int(1.7 * rate), None)  # after the segment (and its fade) the target is silent
    assert np.max(np.abs(target[:, outside])) < 1e-6
    assert s.separation["engine"] == "query" and s.separation["segments"][0]["start"] == pytest.approx(0.4, abs=1e-3)
    assert all(t.id in s.masks for t in stems.values())
    qtbot.waitUntil(lambda: window.panels["masks"].tool_actions["brush"].isEnabled(), timeout=10_000)


def test_a_selection_on_another_lane_takes_that_lane_as_the_query(qtbot, window) -> None:
    """Select on the acapella's lane (placed 1000 frames late): the query is the acapella's own
    audio under the selection, not the mix's; a selection made elsewhere takes the mix."""
    panel = window.panels["query"]
    load_song(window)
    s = window.session
    aca = s.track_by_role("acapella")
    mix = s.track_by_role("mix")
    qtbot.waitUntil(lambda: aca.id in window.lane_stack.lanes, timeout=10_000)
    lane = window.lane_stack.lanes[aca.id]
    assert lane.waveform.vb.track_id == aca.id and lane.spectrogram.vb.track_id == aca.id
    s.set_offset(aca.id, 1000.0)
    rate = s.sample_rate
    a, b = int(0.5 * rate), int(1.5 * rate)
    s.timeline.set_selection(a, b, track=aca.id)
    assert panel.use_selection()
    np.testing.assert_array_equal(panel.query.samples, aca.audio.samples[:, a - 1000 : b - 1000])
    assert aca.name in panel.query_label_text and not panel.query_from_mix  # an isolated part: heard as is
    s.timeline.set_selection(a, b)  # no lane named: the mix
    assert s.timeline.selection_track is None
    assert panel.use_selection()
    np.testing.assert_array_equal(panel.query.samples, mix.audio.samples[:, a:b])
    assert panel.query_from_mix  # query_listen "auto": the AST hears the region's routed stems
