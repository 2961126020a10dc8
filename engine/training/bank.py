"""Stem banks: compact, checksummed sets of songs with their true stems, for training.

A bank is a folder::

    manifest.json        format, sample rate, stem names, and one entry per track
    train/NAME.npz       one track per file (a few MB): its stems, losslessly packed
    val/NAME.npz         validation tracks: whole songs never used for training

A track file is a plain ``.npz`` (read with ``allow_pickle=False``) holding ``shape``
``(stems, channels, frames)``, ``scale`` (float32: sample = int16 / 32767 · scale) and ``data``:
the int16 samples, right channel stored as R − L, first-differenced along time (wrapping in
int16, so it is exactly invertible), split into low/high byte planes and LZMA-compressed. That
packs synthesized stems to about FLAC's size (≈ 50 % of raw int16) and needs nothing but numpy
and the standard library to read, so a bank can travel to a bare GPU machine.

Tracks come from the song synthesizer (:func:`build_synth_bank`, seeds fixed, so a bank is
re-rendered from its manifest's recipe rather than stored) or from a user's own material
(:func:`write_track`, e.g. a mix and its aligned acapella: ``vocals`` = aligned acapella,
``instrumental`` = mix − vocals; see :mod:`engine.training.mixer` for how 2-stem tracks are used).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InputError
from engine.files import atomic_path, atomic_write_text

FORMAT = "unmix-stem-bank/1"
FOUR_STEMS = ("drums", "bass", "other", "vocals")
#: First seed of the validation songs: far from any training seed, so no song is in both.
VAL_SEED_BASE = 1_000_000


# ----------------------------------------------------------------------------------------------
# The track codec
# ----------------------------------------------------------------------------------------------


def encode_stems(stems: np.ndarray, quantize_bits: int = 16) -> dict[str, np.ndarray]:
    """Pack float stems ``(S, C, N)`` into the arrays of a track file.

    Args:
        stems: float32 ``(stems, channels, frames)``.
        quantize_bits: 16 is lossless at 16-bit; fewer bits (e.g. 12) round away the lowest
            bits first (about 6 dB more noise per bit dropped, smaller files).

    Returns:
        ``{"shape", "scale", "data", "bits"}`` for :func:`numpy.savez`.
    """
    if stems.ndim != 3:
        raise ValueError(f"stems must be (S, C, N), got {stems.shape}")
    if not 4 <= quantize_bits <= 16:
        raise ValueError("quantize_bits must be 4..16")
    peak = float(np.max(np.abs(stems))) if stems.size else 0.0
    scale = peak if peak > 0 else 1.0
    q = np.round(stems / scale * 32767.0)
    drop = 16 - quantize_bits
    if drop:
        step = float(1 << drop)
        q = np.round(q / step) * step
    q16 = np.clip(q, -32768, 32767).astype(np.int16)
    x = q16.copy()
    if x.shape[1] == 2:  # stereo decorrelation: keep L and R − L (wraps; exactly invertible)
        x[:, 1] = q16[:, 1] - q16[:, 0]
    x = np.diff(x, axis=-1, prepend=np.int16(0))  # int16 wrap-around is exactly invertible by cumsum
    planes = np.ascontiguousarray(np.moveaxis(x.view(np.uint8).reshape(*x.shape, 2), -1, 0))
    blob = lzma.compress(planes.tobytes(), preset=6)
    return {
        "shape": np.array(stems.shape, dtype=np.int64),
        "scale": np.array(scale, dtype=np.float32),
        "bits": np.array(quantize_bits, dtype=np.int64),
        "data": np.frombuffer(blob, dtype=np.uint8),
    }


def decode_stems_int16(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """Inverse of :func:`encode_stems`: ``(int16 (S, C, N), scale)``."""
    shape = tuple(int(v) for v in arrays["shape"])
    raw = np.frombuffer(lzma.decompress(arrays["data"].tobytes()), dtype=np.uint8)
    planes = raw.reshape(2, *shape)
    x = np.moveaxis(planes, 0, -1).copy().view(np.int16).reshape(shape)
    x = np.cumsum(x, axis=-1, dtype=np.int16)
    if shape[1] == 2:
        x[:, 1] = x[:, 1] + x[:, 0]
    return x, float(arrays["scale"])


def read_track(path: str | Path) -> tuple[np.ndarray, float]:
    """Read one track file: ``(int16 (S, C, N), scale)``; never unpickles."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("shape", "scale", "data")}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise InputError(f"not a stem-bank track ({exc})", p) from exc
    try:
        return decode_stems_int16(arrays)
    except (lzma.LZMAError, ValueError) as exc:
        raise InputError(f"corrupt stem-bank track ({exc})", p) from exc


def write_track(
    bank_dir: str | Path,
    name: str,
    stems: dict[str, np.ndarray],
    split: str,
    sample_rate: int,
    info: dict[str, Any] | None = None,
    quantize_bits: int = 16,
) -> dict[str, Any]:
    """Add one track to a bank (creating the bank if needed) and update its manifest.

    Use this for your own material. A 4-stem track needs ``drums``, ``bass``, ``other``,
    ``vocals``; a 2-stem track needs ``vocals`` and ``instrumental`` (e.g. from a mix and its
    aligned acapella: ``vocals = render_aligned(acapella, ...)``, ``instrumental = mix − vocals``).
    All stems float32 ``(channels, frames)`` at ``sample_rate`` (the model's rate, see
    ``UNetConfig.sample_rate``), stereo.

    Returns:
        the manifest entry written.
    """
    if split not in ("train", "val"):
        raise ValueError("split must be 'train' or 'val'")
    names = tuple(stems)
    if set(names) not in (set(FOUR_STEMS), {"vocals", "instrumental"}):
        raise InputError(f"track '{name}': stems must be {FOUR_STEMS} or (vocals, instrumental), got {names}")
    ordered = FOUR_STEMS if set(names) == set(FOUR_STEMS) else ("vocals", "instrumental")
    arr = np.stack([np.asarray(stems[s], dtype=np.float32) for s in ordered])
    if arr.shape[1] != 2:
        raise InputError(f"track '{name}': stems must be stereo (2, frames), got {arr.shape[1:]}")
    bank = Path(bank_dir)
    (bank / split).mkdir(parents=True, exist_ok=True)
    rel = f"{split}/{name}.npz"
    _save_npz(bank / rel, encode_stems(arr, quantize_bits))
    entry = {"name": name, "file": rel, "split": split, "stems": list(ordered),
             "frames": int(arr.shape[-1]), "seconds": arr.shape[-1] / sample_rate,
             "bytes": (bank / rel).stat().st_size, "quantize_bits": quantize_bits, "info": info or {}}
    manifest = load_manifest(bank) if (bank / "manifest.json").exists() else new_manifest(sample_rate)
    if manifest["sample_rate"] != sample_rate:
        raise InputError(f"bank is at {manifest['sample_rate']} Hz, the track at {sample_rate} Hz", bank)
    manifest["tracks"] = [t for t in manifest["tracks"] if t["name"] != name] + [entry]
    save_manifest(bank, manifest)
    return entry


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]


def new_manifest(sample_rate: int, recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"format": FORMAT, "sample_rate": int(sample_rate), "recipe": recipe or {}, "tracks": []}


def load_manifest(bank_dir: str | Path) -> dict[str, Any]:
    p = Path(bank_dir) / "manifest.json"
    if not p.is_file():
        raise InputError("not a stem bank (no manifest.json)", Path(bank_dir))
    try:
        manifest: dict[str, Any] = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable manifest ({exc})", p) from exc
    if manifest.get("format") != FORMAT:
        raise InputError(f"unknown stem-bank format {manifest.get('format')!r} (expected {FORMAT})", p)
    return manifest


def save_manifest(bank_dir: str | Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(Path(bank_dir) / "manifest.json", json.dumps(manifest, indent=1) + "\n")


# ----------------------------------------------------------------------------------------------
# Reading a bank into memory
# ----------------------------------------------------------------------------------------------


@dataclass
class Track:
    """One decoded track: int16 stems ``(S, C, N)`` plus the scale to float."""

    name: str
    split: str
    stems: tuple[str, ...]
    samples: np.ndarray
    scale: float
    info: dict[str, Any] = field(default_factory=dict)

    def stem(self, name: str) -> np.ndarray:
        """float32 ``(C, N)`` of one stem (``instrumental`` of a 4-stem track = the sum of the rest)."""
        k = 1.0 / 32767.0 * self.scale
        if name in self.stems:
            return self.samples[self.stems.index(name)].astype(np.float32) * np.float32(k)
        if name == "instrumental" and "vocals" in self.stems:
            idx = [i for i, s in enumerate(self.stems) if s != "vocals"]
            return self.samples[idx].astype(np.float32).sum(0) * np.float32(k)
        raise KeyError(name)

    @property
    def frames(self) -> int:
        return int(self.samples.shape[-1])


@dataclass
class StemBank:
    """All tracks of a bank, decoded to int16 in memory (≈ 2× the bank's size on disk)."""

    sample_rate: int
    tracks: list[Track]
    manifest: dict[str, Any]

    @classmethod
    def load(cls, bank_dir: str | Path, splits: Sequence[str] = ("train", "val")) -> StemBank:
        bank = Path(bank_dir)
        manifest = load_manifest(bank)
        tracks = []
        for entry in manifest["tracks"]:
            if entry["split"] not in splits:
                continue
            samples, scale = read_track(bank / entry["file"])
            tracks.append(Track(entry["name"], entry["split"], tuple(entry["stems"]), samples, scale,
                                entry.get("info", {})))
        return cls(int(manifest["sample_rate"]), tracks, manifest)

    def split(self, name: str) -> list[Track]:
        return [t for t in self.tracks if t.split == name]

    def seconds(self, split: str) -> float:
        return sum(t.frames for t in self.split(split)) / self.sample_rate


# ----------------------------------------------------------------------------------------------
# Building a bank from the song synthesizer
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthRecipe:
    """How a synthetic bank is rendered (stored in its manifest; the bank is re-renderable)."""

    train_songs: int = 40
    val_songs: int = 8
    seconds: float = 20.0
    sample_rate: int = 22050
    seed: int = 0
    bus_probability: float = 0.3
    quantize_bits: int = 16

    def seeds(self) -> list[tuple[str, int]]:
        """``(split, song seed)`` for every song: training seeds from ``seed·100000``, validation
        seeds from :data:`VAL_SEED_BASE` + ``seed·100000`` (disjoint ranges: whole songs held out)."""
        base = self.seed * 100_000
        return ([("train", base + i) for i in range(self.train_songs)]
                + [("val", VAL_SEED_BASE + base + i) for i in range(self.val_songs)])


def _render_song(args: tuple[int, float, int, float, int]) -> tuple[int, dict[str, np.ndarray], dict[str, Any]]:
    seed, seconds, rate, bus_p, bits = args
    from engine.synth import synthesize_song

    bus = bool(np.random.default_rng([seed, 77]).random() < bus_p)
    song = synthesize_song(seed, seconds, sample_rate=rate, bus=bus)
    arr = np.stack([song.stems[s].samples for s in FOUR_STEMS])
    info = {"seed": seed, "bus": bus, "style": song.info["score"].get("style"),
            "tempo_bpm": song.info["score"].get("tempo_bpm"),
            "vocal_to_instrumental_db": song.info["levels"].get("vocal_to_instrumental_db")}
    return seed, encode_stems(arr, bits), info


def build_synth_bank(
    out_dir: str | Path,
    recipe: SynthRecipe,
    workers: int = 1,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """Render ``recipe``'s songs with the song synthesizer into a bank at ``out_dir``.

    Songs already present (same name) are kept, so an interrupted build resumes.

    Returns:
        the manifest.
    """
    bank = Path(out_dir)
    bank.mkdir(parents=True, exist_ok=True)
    recipe_json = {k: getattr(recipe, k) for k in recipe.__dataclass_fields__}
    manifest = load_manifest(bank) if (bank / "manifest.json").exists() else new_manifest(recipe.sample_rate, recipe_json)
    if manifest["sample_rate"] != recipe.sample_rate:
        raise InputError(f"bank is at {manifest['sample_rate']} Hz, recipe at {recipe.sample_rate} Hz", bank)
    manifest["recipe"] = recipe_json
    have = {t["name"] for t in manifest["tracks"] if (bank / t["file"]).is_file()}
    todo = [(split, seed) for split, seed in recipe.seeds() if f"song{seed:07d}" not in have]
    split_of = dict((seed, split) for split, seed in todo)
    for split in ("train", "val"):
        (bank / split).mkdir(exist_ok=True)
    t0 = time.perf_counter()
    jobs = [(seed, recipe.seconds, recipe.sample_rate, recipe.bus_probability, recipe.quantize_bits) for _, seed in todo]

    def store(seed: int, arrays: dict[str, np.ndarray], info: dict[str, Any], done: int) -> None:
        split = split_of[seed]
        name = f"song{seed:07d}"
        rel = f"{split}/{name}.npz"
        _save_npz(bank / rel, arrays)
        frames = int(arrays["shape"][-1])
        manifest["tracks"].append({
            "name": name, "file": rel, "split": split, "stems": list(FOUR_STEMS), "frames": frames,
            "seconds": frames / recipe.sample_rate, "bytes": (bank / rel).stat().st_size,
            "quantize_bits": recipe.quantize_bits, "sha256": hashlib.sha256((bank / rel).read_bytes()).hexdigest(),
            "info": info,
        })
        if done % 8 == 0 or done == len(jobs):
            manifest["tracks"].sort(key=lambda t: t["name"])
            save_manifest(bank, manifest)
        if progress is not None:
            progress(done / max(len(jobs), 1), f"{done}/{len(jobs)} songs, {time.perf_counter() - t0:.0f} s")

    if workers <= 1:
        for i, job in enumerate(jobs, 1):
            store(*_render_song(job), i)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, result in enumerate(pool.map(_render_song, jobs, chunksize=1), 1):
                store(*result, i)
    manifest["tracks"].sort(key=lambda t: t["name"])
    manifest["build_seconds"] = round(time.perf_counter() - t0, 1)
    save_manifest(bank, manifest)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m engine.training.bank --out DIR [--train N --val M --seconds S --workers W]``."""
    import argparse

    ap = argparse.ArgumentParser(description="Render a stem bank with the song synthesizer.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=40)
    ap.add_argument("--val", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=int, default=22050)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bus", type=float, default=0.3, help="probability of bus EQ + limiter per song")
    ap.add_argument("--bits", type=int, default=16, help="16 = lossless; fewer = smaller, noisier")
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    recipe = SynthRecipe(a.train, a.val, a.seconds, a.rate, a.seed, a.bus, a.bits)

    def report(fraction: float, message: str) -> None:
        print(f"{fraction * 100:5.1f}%  {message}", flush=True)

    manifest = build_synth_bank(a.out, recipe, a.workers, report)
    total = sum(t["bytes"] for t in manifest["tracks"])
    print(f"bank {a.out}: {len(manifest['tracks'])} tracks, {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
