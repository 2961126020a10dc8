"""The session (what the user is working on) and its project file.

A session holds the tracks (mix, acapella, stems, residual) with their lane settings (gain, mute,
solo, polarity, position on the timeline), the alignment parameters, the separation's stems and
masks, and the shared :class:`~engine.timeline.Timeline`.

Project file ``.unmix``: a ZIP holding data only, never code —

* ``manifest.json``: ``{"format": "unmix-project", "schema_version": 1, ...}`` with the tracks;
  loaded source files (mix, acapella) are *referenced* by absolute path, path relative to the
  project, size and SHA-256, and never modified or copied;
* ``audio/<track id>.flac``: generated audio (stems, residual), 24-bit FLAC;
* ``masks.npz``: the time-frequency masks (compressed).

Saves are atomic: the ZIP is written to a temporary file beside the target, fsync'd, then renamed
over it, so a save killed half-way leaves the previous project intact. :class:`Autosaver` keeps a
crash-recovery copy and tells the next start about it.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import __version__
from engine.audio import Audio, file_checksum, load_audio, save_audio
from engine.errors import InputError
from engine.events import Event
from engine.timeline import Timeline

PROJECT_FORMAT = "unmix-project"
SCHEMA_VERSION = 1
PROJECT_SUFFIX = ".unmix"
ROLES = ("mix", "acapella", "stem", "residual")
RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def demo_session_paths() -> tuple[Path, Path]:
    """The bundled demo's mix and acapella (``resources/demo``)."""
    return RESOURCES / "demo" / "mix.flac", RESOURCES / "demo" / "acapella.flac"


@dataclass
class Track:
    """One lane: audio plus how it plays.

    ``offset_frames`` is where the track's sample 0 sits on the session timeline, in session
    frames (fractional allowed; negative = starts before the session's zero).
    """

    name: str
    role: str
    audio: Audio
    source_path: Path | None = None
    checksum: str | None = None
    gain_db: float = 0.0
    mute: bool = False
    solo: bool = False
    polarity: int = 1
    offset_frames: float = 0.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown track role {self.role!r}; expected one of {ROLES}")

    @property
    def gain_linear(self) -> float:
        return float(10.0 ** (self.gain_db / 20.0)) * (1 if self.polarity >= 0 else -1)

    def frames_at(self, sample_rate: int) -> float:
        """The track's length in frames of ``sample_rate``."""
        return self.audio.frames * sample_rate / self.audio.sample_rate


class Session:
    """Everything the user is working on. Qt-free; views subscribe to the events.

    Events:
        tracks_changed(): a track was added, replaced or removed.
        track_changed(track): a lane setting (gain, mute, solo, polarity, offset) changed.
        alignment_changed(alignment): the alignment parameters changed.
        dirty_changed(bool): unsaved changes appeared or were saved.
    """

    def __init__(self, name: str = "Untitled") -> None:
        self.name = name
        self.tracks: list[Track] = []
        self.timeline = Timeline()
        self.alignment: dict[str, Any] | None = None
        self.separation: dict[str, Any] | None = None
        self.masks: dict[str, np.ndarray] = {}
        self.project_path: Path | None = None
        self.warnings: list[str] = []
        self._dirty = False
        self.tracks_changed = Event()
        self.track_changed = Event()
        self.alignment_changed = Event()
        self.dirty_changed = Event()

    # ---- state -------------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return self._dirty

    def mark_dirty(self, dirty: bool = True) -> None:
        if dirty != self._dirty:
            self._dirty = dirty
            self.dirty_changed.emit(dirty)

    @property
    def sample_rate(self) -> int:
        """The session's rate: the mix's, else the first track's, else 44.1 kHz."""
        mix = self.track_by_role("mix")
        if mix is not None:
            return mix.audio.sample_rate
        return self.tracks[0].audio.sample_rate if self.tracks else 44_100

    def length_frames(self) -> int:
        """Frames from 0 to the end of the last track, at the session rate."""
        rate = self.sample_rate
        ends = [t.offset_frames + t.frames_at(rate) for t in self.tracks]
        return int(np.ceil(max(ends))) if ends else 0

    # ---- tracks ------------------------------------------------------------------------------
    def track(self, track_id: str) -> Track:
        for t in self.tracks:
            if t.id == track_id:
                return t
        raise KeyError(track_id)

    def track_by_role(self, role: str) -> Track | None:
        return next((t for t in self.tracks if t.role == role), None)

    def add_track(self, track: Track, index: int | None = None) -> Track:
        if index is None:
            self.tracks.append(track)
        else:
            self.tracks.insert(index, track)
        self._tracks_updated()
        return track

    def set_track(
        self, role: str, audio: Audio, source_path: Path | str | None = None, name: str | None = None,
        checksum: str | None = None,
    ) -> Track:
        """Put ``audio`` in the lane of ``role`` (mix/acapella), replacing what was there.

        Source files get a checksum so a reopened project can tell if they changed; pass
        ``checksum`` when it was already computed (e.g. in the load job, off the GUI thread).
        """
        src = Path(source_path) if source_path is not None else audio.path
        if checksum is None and src is not None and src.exists():
            checksum = file_checksum(src)
        new = Track(
            name=name or (src.stem if src is not None else role.capitalize()),
            role=role, audio=audio, source_path=src, checksum=checksum,
        )
        old = self.track_by_role(role) if role in ("mix", "acapella") else None
        if old is not None:
            idx = self.tracks.index(old)
            new.gain_db, new.mute, new.solo, new.polarity = old.gain_db, old.mute, old.solo, old.polarity
            self.tracks[idx] = new
            if role == "acapella":
                self.alignment = None
        else:
            # mix first, acapella second, generated lanes after
            order = {"mix": 0, "acapella": 1}
            idx = len(self.tracks)
            if role in order:
                idx = sum(1 for t in self.tracks if order.get(t.role, 9) <= order[role])
            self.tracks.insert(idx, new)
        if self.name == "Untitled" and role == "mix":
            self.name = new.name
        self._tracks_updated()
        return new

    def replace_track_audio(
        self, track_id: str, audio: Audio, source_path: Path | None = None, checksum: str | None = None
    ) -> Track:
        """Replace the audio of one lane (e.g. a file dropped on it), keeping its settings."""
        old = self.track(track_id)
        src = source_path or audio.path
        old.audio = audio
        old.source_path = src
        if checksum is None and src is not None and Path(src).exists():
            checksum = file_checksum(src)
        old.checksum = checksum
        old.name = Path(src).stem if src is not None else old.name
        self._tracks_updated()
        return old

    def remove_track(self, track_id: str) -> None:
        self.tracks = [t for t in self.tracks if t.id != track_id]
        self.masks.pop(track_id, None)
        self._tracks_updated()

    def _tracks_updated(self) -> None:
        self.timeline.set_length(self.length_frames(), self.sample_rate)
        self.mark_dirty()
        self.tracks_changed.emit()

    def _set(self, track_id: str, attr: str, value: Any) -> None:
        t = self.track(track_id)
        if getattr(t, attr) != value:
            setattr(t, attr, value)
            if attr == "offset_frames":
                self.timeline.set_length(self.length_frames(), self.sample_rate)
            self.mark_dirty()
            self.track_changed.emit(t)

    def set_gain_db(self, track_id: str, gain_db: float) -> None:
        self._set(track_id, "gain_db", float(gain_db))

    def set_mute(self, track_id: str, mute: bool) -> None:
        self._set(track_id, "mute", bool(mute))

    def set_solo(self, track_id: str, solo: bool) -> None:
        self._set(track_id, "solo", bool(solo))

    def set_polarity(self, track_id: str, polarity: int) -> None:
        self._set(track_id, "polarity", 1 if polarity >= 0 else -1)

    def set_offset(self, track_id: str, offset_frames: float) -> None:
        self._set(track_id, "offset_frames", float(offset_frames))

    def audible_tracks(self) -> list[Track]:
        """Tracks that play: any soloed ones if some are soloed, else all unmuted ones."""
        soloed = [t for t in self.tracks if t.solo]
        return soloed if soloed else [t for t in self.tracks if not t.mute]

    def set_alignment(self, alignment: dict[str, Any] | None) -> None:
        self.alignment = None if alignment is None else dict(alignment)
        self.mark_dirty()
        self.alignment_changed.emit(self.alignment)

    # ---- project file ------------------------------------------------------------------------
    def to_manifest(self, project_path: Path) -> dict[str, Any]:
        tracks = []
        for t in self.tracks:
            entry: dict[str, Any] = {
                "id": t.id, "name": t.name, "role": t.role, "gain_db": t.gain_db, "mute": t.mute,
                "solo": t.solo, "polarity": t.polarity, "offset_frames": t.offset_frames,
                "sample_rate": t.audio.sample_rate, "channels": t.audio.channels,
                "frames": t.audio.frames,
            }
            if t.role in ("mix", "acapella") and t.source_path is not None:
                src = Path(t.source_path).resolve()
                try:
                    rel = os.path.relpath(src, project_path.resolve().parent)
                except ValueError:  # another drive (Windows)
                    rel = None
                entry["source"] = {
                    "path": str(src), "relative_path": rel, "sha256": t.checksum,
                    "size_bytes": src.stat().st_size if src.exists() else None,
                }
            else:
                entry["embedded"] = f"audio/{t.id}.flac"
            tracks.append(entry)
        tl = self.timeline
        return {
            "format": PROJECT_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "app_version": __version__,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "name": self.name,
            "sample_rate": self.sample_rate,
            "tracks": tracks,
            "alignment": self.alignment,
            "separation": self.separation,
            "masks": sorted(self.masks),
            "timeline": {
                "view": [tl.view_start, tl.view_stop], "playhead": tl.playhead,
                "selection": list(tl.selection) if tl.selection else None,
                "loop_enabled": tl.loop_enabled,
            },
        }

    def save_project(self, path: str | Path) -> Path:
        """Write the project atomically; returns the path written."""
        p = Path(path)
        if p.suffix != PROJECT_SUFFIX:
            p = p.with_name(p.name + PROJECT_SUFFIX)
        write_project_atomic(p, self)
        self.project_path = p
        self.mark_dirty(False)
        return p

    @classmethod
    def open_project(cls, path: str | Path) -> Session:
        """Read a project; source files are re-loaded from their references.

        Raises:
            InputError: not a project, a newer schema, a damaged archive, or a missing source.
        """
        p = Path(path)
        if not p.exists():
            raise InputError("project file not found", p)
        try:
            zf = zipfile.ZipFile(p)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(f"not an Unmix Studio project or the file is damaged ({exc})", p) from exc
        with zf:
            try:
                manifest = json.loads(zf.read("manifest.json"))
            except (KeyError, ValueError) as exc:
                raise InputError("project has no readable manifest.json", p) from exc
            if manifest.get("format") != PROJECT_FORMAT:
                raise InputError("not an Unmix Studio project (unknown format)", p)
            version = manifest.get("schema_version")
            if not isinstance(version, int) or version > SCHEMA_VERSION:
                raise InputError(
                    f"project schema version {version} is newer than this app supports "
                    f"({SCHEMA_VERSION}); please update Unmix Studio", p,
                )
            session = cls(manifest.get("name", p.stem))
            for entry in manifest["tracks"]:
                audio, src, checksum = _load_track_audio(zf, p, entry, session.warnings)
                session.tracks.append(Track(
                    name=entry["name"], role=entry["role"], audio=audio, source_path=src,
                    checksum=checksum, gain_db=float(entry["gain_db"]), mute=bool(entry["mute"]),
                    solo=bool(entry["solo"]), polarity=int(entry["polarity"]),
                    offset_frames=float(entry["offset_frames"]), id=entry["id"],
                ))
            if manifest.get("masks"):
                with zf.open("masks.npz") as fh:
                    data = np.load(io.BytesIO(fh.read()), allow_pickle=False)
                    session.masks = {k: data[k] for k in data.files}
        session.alignment = manifest.get("alignment")
        session.separation = manifest.get("separation")
        session.project_path = p
        tl = manifest.get("timeline") or {}
        session.timeline.set_length(session.length_frames(), session.sample_rate)
        if tl.get("view"):
            session.timeline.set_range(*tl["view"])
        session.timeline.set_playhead(int(tl.get("playhead", 0)))
        sel = tl.get("selection")
        session.timeline.set_selection(*(sel if sel else (None, None)))
        session.timeline.loop_enabled = bool(tl.get("loop_enabled", False))
        session._dirty = False
        return session


def _load_track_audio(
    zf: zipfile.ZipFile, project: Path, entry: dict[str, Any], warnings: list[str]
) -> tuple[Audio, Path | None, str | None]:
    if "embedded" in entry:
        import soundfile as sf

        try:
            with zf.open(entry["embedded"]) as fh:
                data, rate = sf.read(io.BytesIO(fh.read()), dtype="float32", always_2d=True)
        except (KeyError, RuntimeError) as exc:
            raise InputError(f"project is damaged: cannot read {entry['embedded']} ({exc})", project) from exc
        return Audio(np.ascontiguousarray(data.T), int(rate)), None, None
    src = entry["source"]
    candidates = [Path(src["path"])]
    if src.get("relative_path"):
        candidates.append((project.parent / src["relative_path"]).resolve())
    found = next((c for c in candidates if c.exists()), None)
    if found is None:
        raise InputError(
            f"the {entry['role']} source file is missing: {src['path']} (moved or deleted?)", project
        )
    checksum = file_checksum(found)
    if src.get("sha256") and checksum != src["sha256"]:
        warnings.append(
            f"{found}: the file changed since the project was saved (checksum differs); "
            "alignment and masks may no longer fit"
        )
    return load_audio(found), found, checksum


def write_project_atomic(path: Path, session: Session) -> None:
    """Write ``session`` to ``path`` via temp file + fsync + rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as zf:
            manifest = session.to_manifest(path)
            zf.writestr("manifest.json", json.dumps(manifest, indent=2), zipfile.ZIP_DEFLATED)
            for t in session.tracks:
                if t.role in ("mix", "acapella") and t.source_path is not None:
                    continue
                with tempfile.TemporaryDirectory() as d:
                    f = save_audio(Path(d) / "a.flac", t.audio, bit_depth="24")
                    zf.write(f, f"audio/{t.id}.flac", zipfile.ZIP_STORED)
            if session.masks:
                zf.writestr("masks.npz", _masks_npz(session.masks), zipfile.ZIP_STORED)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _masks_npz(masks: dict[str, np.ndarray]) -> bytes:
    """The masks as an ``.npz`` (what ``np.load`` reads), deflated at level 1: masks of a
    4-minute song are ~85 MB a stem, and level 1 packs them 2–3× faster than ``savez_compressed``
    for nearly the same size."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, mask in masks.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(mask), allow_pickle=False)
    return buf.getvalue()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def default_data_dir() -> Path:
    """Per-user data folder (``$UNMIX_DATA_DIR`` or ``$XDG_DATA_HOME/unmix-studio``)."""
    env = os.environ.get("UNMIX_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "unmix-studio"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Autosaver:
    """Crash-recovery copies of the running session.

    Each running app owns ``autosave-<id>.unmix`` plus a ``.pid`` file naming its process. A clean
    exit removes both; after a crash they stay, and the next start finds them with
    :meth:`pending_recovery` (files whose process is no longer alive) and offers to recover.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = (directory or default_data_dir()) / "autosave"
        self.session_id = uuid.uuid4().hex[:12]
        self.path = self.directory / f"autosave-{self.session_id}{PROJECT_SUFFIX}"
        self._pid_file = self.path.with_suffix(".pid")

    def save(self, session: Session) -> Path:
        """Write the recovery copy (atomically) and leave the session's dirty flag alone."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pid_file.write_text(json.dumps({
            "pid": os.getpid(), "project": str(session.project_path or ""), "name": session.name,
            "saved_at": time.time(),
        }))
        write_project_atomic(self.path, session)
        return self.path

    def pending_recovery(self) -> list[dict[str, Any]]:
        """Autosaves left by processes that are gone, newest first."""
        found: list[dict[str, Any]] = []
        if not self.directory.is_dir():
            return found
        for pid_file in self.directory.glob("autosave-*.pid"):
            project = pid_file.with_suffix(PROJECT_SUFFIX)
            try:
                info = json.loads(pid_file.read_text())
            except (OSError, ValueError):
                info = {"pid": -1}
            if project == self.path or _pid_alive(int(info.get("pid", -1))) or not project.exists():
                continue
            found.append({**info, "autosave": project, "pid_file": pid_file})
        return sorted(found, key=lambda d: -float(d.get("saved_at", 0)))

    @staticmethod
    def discard(entry: dict[str, Any]) -> None:
        for key in ("autosave", "pid_file"):
            Path(entry[key]).unlink(missing_ok=True)

    def close(self) -> None:
        """Clean exit: remove this process's recovery copy."""
        self.path.unlink(missing_ok=True)
        self._pid_file.unlink(missing_ok=True)
