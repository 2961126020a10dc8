"""The Separate panel, the stem lanes with their masks, A/B, and the Export Stems dialog."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import gui.separate_panel as sp
from engine.audio import Audio
from engine.separators.base import REGISTRY
from gui.export_dialog import FORMATS

pytestmark = pytest.mark.gui
RATE = 22_050


def song(seconds: float = 2.0, channels: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic (vocal, instrumental) pair: "syllables" of a harmonic tone with random pitch
    and breathy noise under random envelopes, and noise plus a bass tone. Fixed seed."""
    rng = np.random.default_rng(7)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    syllable = (t / 0.2).astype(int)
    f0 = rng.uniform(180.0, 400.0, syllable.max() + 1)[syllable]
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    envelope = rng.uniform(0.0, 1.0, syllable.max() + 1)[syllable] * np.sin(np.pi * (t / 0.2 % 1.0))
    voice = (sum(np.sin(k * phase) / k for k in range(1, 6)) + 0.3 * rng.standard_normal(n)) * envelope
    inst = 0.05 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * 82.0 * t)
    vocal = np.repeat((0.2 * voice)[None], channels, axis=0).astype(np.float32)
    instrumental = np.repeat(inst[None], channels, axis=0).astype(np.float32)
    return vocal, instrumental


def load_song(window, aligned: bool = True) -> tuple[np.ndarray, np.ndarray]:
    vocal, inst = song()
    s = window.session
    s.set_track("mix", Audio(vocal + inst, RATE), name="song")
    s.set_track("acapella", Audio(vocal.copy(), RATE), name="song acapella")
    if aligned:  # the session's alignment: sample 0 on sample 0, no drift
        s.set_alignment({"match": True, "offset_samples": 0.0, "drift_ppm": 0.0, "gain_db": 0.0, "polarity": 1})
    return vocal, inst


def separate(qtbot, panel) -> None:
    with qtbot.waitSignal(panel.separated, timeout=30_000):
        assert panel.separate() is not None


def test_controls_come_from_the_registry(window) -> None:
    panel = window.panels["separate"]
    names = [panel.engine_combo.itemData(i) for i in range(panel.engine_combo.count())]
    assert sorted(names) == sorted(n for n, c in REGISTRY.items() if not c.needs_query)  # query: Find Similar
    assert panel.engine_name == "reference"
    for name in names:
        panel.set_engine(name)
        params = REGISTRY[name].parameters
        assert list(panel.controls) == [p.name for p in params]
        values = panel.parameters()
        for p in params:
            assert values[p.name] == pytest.approx(p.default) if p.kind in ("float", "int") else values[p.name] == p.default
            assert p.description in panel.controls[p.name].toolTip()
    # a changed control goes to the engine; Reset puts the defaults back
    panel.set_engine("reference")
    panel.controls["cleanup"].setValue(0.5)
    assert panel.parameters()["cleanup"] == 0.5
    panel.reset_button.click()
    assert panel.parameters()["cleanup"] == REGISTRY["reference"]().resolve_parameters(None)["cleanup"]
    # the Separate menu, then the Masks menu, sit before Help
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles.index("Se&parate") == titles.index("&Masks") - 1 == titles.index("&Help") - 2


def test_separate_adds_stem_lanes_that_sum_to_the_mix_with_masks(qtbot, window) -> None:
    panel = window.panels["separate"]
    load_song(window)
    assert panel.separate_button.isEnabled() and not panel.export_button.isEnabled()
    separate(qtbot, panel)
    s = window.session
    stems = [t for t in s.tracks if t.role == "stem"]
    assert [t.name for t in stems] == ["vocals", "instrumental"]
    mix = s.track_by_role("mix").audio.samples.astype(np.float64)
    total = sum(t.audio.samples.astype(np.float64) for t in stems)
    assert 10 * np.log10(np.sum((total - mix) ** 2) / np.sum(mix**2) + 1e-30) <= -100.0
    for t in stems:  # the editable form: one (bins, frames) mask per stem, summing to one
        assert s.masks[t.id].shape[0] == 1025 and 0.0 <= s.masks[t.id].min() <= s.masks[t.id].max() <= 1.0
    assert np.max(np.abs(sum(s.masks[t.id] for t in stems) - 1.0)) < 1e-5
    assert s.separation["engine"] == "reference" and s.separation["seconds"] > 0
    assert s.separation["parameters"]["cleanup"] == REGISTRY["reference"]().resolve_parameters(None)["cleanup"]
    # one lane per stem, each with its mask overlay over the spectrogram
    qtbot.waitUntil(lambda: all(t.id in window.lane_stack.lanes for t in stems), timeout=10_000)
    lane = window.lane_stack.lanes[stems[0].id]
    qtbot.waitUntil(lambda: lane.spectrogram.mask_image is not None, timeout=10_000)
    assert lane.spectrogram._mask_item.isVisible()
    window.panels["separate"].act_masks.setChecked(False)
    assert not lane.spectrogram._mask_item.isVisible()
    # a second separation replaces the stem lanes and their masks
    old_ids = {t.id for t in stems}
    separate(qtbot, panel)
    new = [t for t in s.tracks if t.role == "stem"]
    assert len(new) == 2 and not old_ids & {t.id for t in new}
    assert set(s.masks) == {t.id for t in new}


def test_ab_solos_the_mix_or_the_stems_in_live_playback(qtbot, window, fake_output) -> None:
    panel = window.panels["separate"]
    load_song(window)
    separate(qtbot, panel)
    s = window.session
    stems = {t.name: t for t in s.tracks if t.role == "stem"}
    panel.act_ab.setChecked(True)  # B: the stems
    assert {t.role for t in s.audible_tracks()} == {"stem"} and len(s.audible_tracks()) == 2
    assert panel.ab_button.isChecked() and panel.ab_button.text() == "A/B: Stems"
    panel.act_ab.setChecked(False)  # A: the mix
    assert [t.role for t in s.audible_tracks()] == ["mix"]
    # what the device gets: A = the mix; B with the instrumental muted = the vocals alone
    s.set_mute(stems["instrumental"].id, True)
    window.playback.play()
    stream = fake_output.streams[-1]
    mix = s.track_by_role("mix").audio.samples
    np.testing.assert_allclose(stream.pump(2048), mix[:, :2048].T, atol=1e-6)
    panel.act_ab.setChecked(True)
    out = stream.pump(2048)
    np.testing.assert_allclose(out, stems["vocals"].audio.samples[:, 2048:4096].T, atol=1e-6)
    window.playback.stop()


def test_without_alignment_the_job_aligns_first(qtbot, window) -> None:
    panel = window.panels["separate"]
    vocal, inst = song(seconds=4.0)
    lead = 1000  # the acapella has 1000 extra samples of lead-in
    s = window.session
    s.set_track("mix", Audio(vocal + inst, RATE), name="song")
    s.set_track("acapella", Audio(np.concatenate([np.zeros((2, lead), np.float32), vocal], axis=1), RATE))
    separate(qtbot, panel)
    aca = s.track_by_role("acapella")
    assert s.alignment is not None and s.alignment["match"]
    assert aca.offset_frames == pytest.approx(-lead, abs=0.5)
    vocals = next(t for t in s.tracks if t.name == "vocals").audio.samples
    err = np.sum((vocals - vocal) ** 2) / np.sum(vocal**2)
    assert 10 * np.log10(err) < -20.0  # the aligned acapella was used


def test_cancel_mid_run_leaves_the_session_unchanged(qtbot, window, monkeypatch) -> None:
    panel = window.panels["separate"]
    load_song(window)
    s = window.session
    before = [(t.id, t.role, t.offset_frames) for t in s.tracks]
    real = sp.render_aligned

    def render_then_cancel(*args, **kwargs):  # the job is running: cancel it half-way
        out = real(*args, **kwargs)
        deadline = time.monotonic() + 5.0
        while panel.job is None and time.monotonic() < deadline:  # set once submit() returns
            time.sleep(0.001)
        panel.job.cancel()
        return out

    monkeypatch.setattr(sp, "render_aligned", render_then_cancel)
    with qtbot.waitSignal(panel.separation_ended, timeout=20_000) as sig:
        panel.separate()
    assert "cancelled" in sig.args[0]
    assert [(t.id, t.role, t.offset_frames) for t in s.tracks] == before
    assert s.masks == {} and s.separation is None
    assert panel.separate_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_export_writes_the_chosen_format_and_asks_before_overwriting(qtbot, window, tmp_path: Path) -> None:
    panel = window.panels["separate"]
    load_song(window)
    separate(qtbot, panel)
    dlg = panel.show_export_dialog()
    assert dlg is not None and not dlg.isModal()
    assert [f[0] for f in FORMATS] == ["WAV 16-bit", "WAV 24-bit", "WAV 32-bit float", "FLAC 16-bit", "FLAC 24-bit"]
    assert dlg.template_edit.text() == "{title} - {stem}"
    dlg.folder_edit.setText(str(tmp_path))
    dlg.set_format("FLAC 16-bit")
    assert "song - vocals.flac" in dlg.preview_label.text()
    with qtbot.waitSignal(dlg.exported, timeout=20_000) as sig:
        dlg.export()
    files = {p.name for p in tmp_path.iterdir()}
    assert files == {"song - vocals.flac", "song - instrumental.flac"}
    info = sf.info(str(tmp_path / "song - vocals.flac"))
    assert info.samplerate == RATE and info.subtype == "PCM_16" and info.channels == 2
    assert "peak" in dlg.report_label.text() and len(sig.args[0].files) == 2
    # exists: the injected answer "no" writes nothing
    mtime = (tmp_path / "song - vocals.flac").stat().st_mtime_ns
    asked: list[list[Path]] = []
    dlg.confirm_overwrite = lambda paths: asked.append(paths) or False
    with qtbot.waitSignal(dlg.export_failed, timeout=5_000):
        assert dlg.export() is None
    assert len(asked[0]) == 2 and (tmp_path / "song - vocals.flac").stat().st_mtime_ns == mtime
    # "yes" overwrites, now as 32-bit float WAV with the limiter on
    dlg.confirm_overwrite = lambda paths: True
    dlg.set_format("WAV 32-bit float")
    dlg.template_edit.setText("{stem}")
    (tmp_path / "vocals.wav").write_bytes(b"old")
    dlg.limiter_check.setChecked(True)
    with qtbot.waitSignal(dlg.exported, timeout=20_000):
        dlg.export()
    assert sf.info(str(tmp_path / "vocals.wav")).subtype == "FLOAT"
    # a template without {stem} cannot export
    dlg.template_edit.setText("{title}")
    assert not dlg.export_button.isEnabled()


def test_needs_an_acapella_and_the_stems_survive_a_project_round_trip(qtbot, window, tmp_path: Path) -> None:
    panel = window.panels["separate"]
    vocal, inst = song()
    s = window.session
    s.set_track("mix", Audio(vocal + inst, RATE), name="song")
    assert not panel.separate_button.isEnabled()  # reference needs the acapella
    assert panel.separate() is None and "needs an acapella" in panel.status_label.text()
    load_song(window)
    separate(qtbot, panel)
    # the mix and acapella here are in memory: save them as files so the project can refer to them
    for t in list(s.tracks):
        if t.role in ("mix", "acapella"):
            path = tmp_path / f"{t.role}.wav"
            sf.write(path, t.audio.samples.T, RATE, subtype="FLOAT")
            s.replace_track_audio(t.id, Audio(t.audio.samples, RATE, path), path)
    project = s.save_project(tmp_path / "p.unmix")
    with qtbot.waitSignal(window.jobs.finished, timeout=20_000):
        window.open_project(project)
    s2 = window.session
    stems = [t for t in s2.tracks if t.role == "stem"]
    assert [t.name for t in stems] == ["vocals", "instrumental"] and set(s2.masks) == {t.id for t in stems}
    qtbot.waitUntil(lambda: all(t.id in window.lane_stack.lanes for t in stems), timeout=10_000)
    lane = window.lane_stack.lanes[stems[0].id]
    qtbot.waitUntil(lambda: lane.spectrogram.mask_image is not None, timeout=10_000)
    assert panel.export_button.isEnabled()
