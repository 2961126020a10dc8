"""Session model and the .unmix project file: round trip, atomic save, autosave recovery."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.audio import Audio, save_audio
from engine.errors import InputError
from engine.session import Autosaver, Session, Track


def _audio(seconds: float, rate: int = 22_050, channels: int = 2, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    return Audio((0.1 * rng.standard_normal((channels, int(seconds * rate)))).astype(np.float32), rate)


def _session(tmp_path: Path) -> tuple[Session, Path, Path]:
    mix_path = save_audio(tmp_path / "song mix.flac", _audio(3.0, seed=1))
    aca_path = save_audio(tmp_path / "acapella.wav", _audio(2.0, rate=44_100, channels=1, seed=2), bit_depth="float")
    from engine.audio import load_audio

    s = Session()
    s.set_track("mix", load_audio(mix_path))
    aca = s.set_track("acapella", load_audio(aca_path))
    stem = Audio(np.random.default_rng(3).standard_normal((2, 66_150)).astype(np.float32) * 0.05, 22_050)
    s.add_track(Track("vocals", "stem", stem))
    s.set_gain_db(aca.id, -3.5)
    s.set_polarity(aca.id, -1)
    s.set_offset(aca.id, 1234.75)
    s.set_mute(s.tracks[0].id, True)
    s.set_alignment({"offset_samples": 1234.75, "drift_ppm": 12.5, "gain_db": -3.5, "polarity": -1})
    s.masks[s.tracks[2].id] = np.random.default_rng(4).random((2, 1025, 130)).astype(np.float16)
    s.timeline.set_selection(100, 5000)
    return s, mix_path, aca_path


def test_tracks_order_and_length(tmp_path: Path) -> None:
    s, _, _ = _session(tmp_path)
    assert [t.role for t in s.tracks] == ["mix", "acapella", "stem"]
    assert s.sample_rate == 22_050
    # acapella: 2 s at 44.1 kHz = 44_100 session frames, starting at 1234.75
    assert s.length_frames() == max(66_150, int(np.ceil(1234.75 + 44_100)))
    assert s.timeline.length_frames == s.length_frames()


def test_project_round_trip(tmp_path: Path) -> None:
    s, mix_path, aca_path = _session(tmp_path)
    path = s.save_project(tmp_path / "proj")
    assert path.name == "proj.unmix" and not s.dirty
    r = Session.open_project(path)
    assert [(t.id, t.name, t.role, t.gain_db, t.mute, t.solo, t.polarity, t.offset_frames) for t in r.tracks] == [
        (t.id, t.name, t.role, t.gain_db, t.mute, t.solo, t.polarity, t.offset_frames) for t in s.tracks
    ]
    for a, b in zip(r.tracks, s.tracks, strict=True):
        assert a.audio.sample_rate == b.audio.sample_rate and a.audio.samples.shape == b.audio.samples.shape
        assert np.max(np.abs(a.audio.samples - b.audio.samples)) < 2**-22  # 24-bit FLAC for stems
    assert r.tracks[0].source_path == mix_path.resolve()
    assert r.alignment == s.alignment
    assert set(r.masks) == set(s.masks)
    for k in s.masks:
        np.testing.assert_array_equal(r.masks[k], s.masks[k])
        assert r.masks[k].dtype == s.masks[k].dtype
    assert r.timeline.selection == (100, 5000)
    assert r.warnings == []


def test_sources_referenced_never_copied_or_modified(tmp_path: Path) -> None:
    s, mix_path, aca_path = _session(tmp_path)
    before = {p: p.read_bytes() for p in (mix_path, aca_path)}
    path = s.save_project(tmp_path / "p.unmix")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == "unmix-project" and manifest["schema_version"] == 1
    assert sum(n.startswith("audio/") for n in names) == 1  # only the generated stem
    mix_entry = manifest["tracks"][0]["source"]
    assert len(mix_entry["sha256"]) == 64 and mix_entry["relative_path"] == "song mix.flac"
    assert {p: p.read_bytes() for p in (mix_path, aca_path)} == before


def test_moved_project_finds_sources_by_relative_path(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    s, _, _ = _session(a)
    s.save_project(a / "p.unmix")
    b = tmp_path / "b"
    a.rename(b)
    r = Session.open_project(b / "p.unmix")
    assert r.tracks[0].source_path == (b / "song mix.flac").resolve()


def test_changed_source_warns_missing_source_errors(tmp_path: Path) -> None:
    s, mix_path, aca_path = _session(tmp_path)
    p = s.save_project(tmp_path / "p.unmix")
    save_audio(aca_path, _audio(2.0, rate=44_100, channels=1, seed=99), bit_depth="float")
    r = Session.open_project(p)
    assert len(r.warnings) == 1 and "changed" in r.warnings[0]
    mix_path.unlink()
    with pytest.raises(InputError, match="source file is missing"):
        Session.open_project(p)


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"", "damaged"), (b"PK\x03\x04garbage", "damaged"), (None, "not an Unmix Studio project")],
)
def test_bad_project_files(tmp_path: Path, content: bytes | None, words: str) -> None:
    p = tmp_path / "bad.unmix"
    if content is None:
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("manifest.json", json.dumps({"format": "something-else"}))
    else:
        p.write_bytes(content)
    with pytest.raises(InputError, match=words) as info:
        Session.open_project(p)
    assert str(p) in str(info.value)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "future.unmix"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("manifest.json", json.dumps({"format": "unmix-project", "schema_version": 99, "tracks": []}))
    with pytest.raises(InputError, match="newer"):
        Session.open_project(p)


def test_failed_save_leaves_previous_project_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, _, _ = _session(tmp_path)
    p = s.save_project(tmp_path / "p.unmix")
    before = p.read_bytes()
    import engine.session as session_mod

    def explode(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(session_mod, "save_audio", explode)
    s.set_gain_db(s.tracks[0].id, 6.0)
    with pytest.raises(OSError):
        s.save_project(p)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir() if x.suffix in (".unmix", ".tmp")) == ["p.unmix"]


def test_save_killed_half_way_leaves_previous_project_intact(tmp_path: Path) -> None:
    """A real process killed (SIGKILL) while writing a large project: the old file survives."""
    s, _, _ = _session(tmp_path)
    p = s.save_project(tmp_path / "p.unmix")
    before = p.read_bytes()
    repo = Path(__file__).resolve().parents[2]
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(repo)!r})
        from engine.session import Session, Track
        from engine.audio import Audio
        s = Session.open_project({str(p)!r})
        big = Audio(np.random.default_rng(0).standard_normal((2, 44_100 * 120)).astype(np.float32) * 0.1, 44_100)
        s.add_track(Track("big", "stem", big))
        print("saving", flush=True)
        s.save_project({str(p)!r})
        print("saved", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "saving"
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    proc.stdout.close()
    # Whatever moment the kill hit, the project is complete: the old one (or, if the save
    # finished first, the new one) — never a torn file.
    r = Session.open_project(p)
    assert len(r.tracks) in (3, 4)
    if len(r.tracks) == 3:
        assert p.read_bytes() == before


def test_autosave_recovery_after_crash(tmp_path: Path) -> None:
    s, _, _ = _session(tmp_path)
    crashed = Autosaver(tmp_path / "data")
    crashed.save(s)
    # Pretend the process that wrote it died: rewrite its pid to one that cannot exist.
    info = json.loads(crashed._pid_file.read_text())
    info["pid"] = 2**22 + 12345
    crashed._pid_file.write_text(json.dumps(info))
    fresh = Autosaver(tmp_path / "data")
    found = fresh.pending_recovery()
    assert len(found) == 1
    recovered = Session.open_project(found[0]["autosave"])
    assert [t.gain_db for t in recovered.tracks] == [t.gain_db for t in s.tracks]
    Autosaver.discard(found[0])
    assert fresh.pending_recovery() == []


def test_autosave_of_a_live_process_is_not_offered_and_clean_exit_removes_it(tmp_path: Path) -> None:
    s, _, _ = _session(tmp_path)
    live = Autosaver(tmp_path / "data")
    live.save(s)
    assert Autosaver(tmp_path / "data").pending_recovery() == []  # our own pid is alive
    live.close()
    assert list((tmp_path / "data" / "autosave").iterdir()) == []
