"""Audio files in and out: one ``Audio`` type, float32 ``(channels, samples)`` at the file's own rate.

Loading streams the file block by block into one preallocated array, so a 1-hour file costs its
float32 size once (no second transposed copy), and every block is checked for NaN/Inf. Every
problem with a file raises :class:`engine.errors.InputError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.errors import Cancelled, InputError
from engine.files import atomic_path

#: Extensions we read (libsndfile handles all of them, MP3 included since 1.1).
READ_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc")

#: What :func:`save_audio` can write: format -> {bit depth name: libsndfile subtype}.
WRITE_SUBTYPES: dict[str, dict[str, str]] = {
    "wav": {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"},
    "flac": {"16": "PCM_16", "24": "PCM_24"},
}

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8
_BLOCK_FRAMES = 1 << 18

ProgressFn = Callable[[float, str], None]


@dataclass
class Audio:
    """Audio in memory.

    Attributes:
        samples: float32 array, shape ``(channels, frames)``.
        sample_rate: frames per second (Hz).
        path: the file it came from, if any (never written to).
    """

    samples: np.ndarray
    sample_rate: int
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.samples.ndim == 1:
            self.samples = self.samples[None, :]
        if self.samples.ndim != 2:
            raise ValueError(f"Audio samples must be (channels, frames), got {self.samples.shape}")
        if self.samples.dtype != np.float32:
            self.samples = self.samples.astype(np.float32)

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_seconds(self) -> float:
        return self.frames / float(self.sample_rate)

    def mono(self) -> np.ndarray:
        """The mean of the channels, float32 ``(frames,)``."""
        return self.samples.mean(axis=0, dtype=np.float32)


def _describe(path: Path, exc: Exception) -> str:
    text = str(exc).strip()
    low = text.lower()
    if any(k in low for k in ("format not recognised", "unknown format", "not recognised",
                              "not a regular file", "unsupported file format", "malformed")):
        return "not an audio file, or a format we cannot read (corrupt header?)"
    if "unimplemented format" in low or "unsupported" in low:
        return f"unsupported audio encoding ({text})"
    return f"cannot read audio ({text or type(exc).__name__})"


def probe_audio(path: str | Path) -> sf._SoundFileInfo:
    """Header information of an audio file, validated (rate, channels, non-empty)."""
    p = Path(path)
    _check_path(p)
    try:
        info = sf.info(str(p))
    except Exception as exc:  # libsndfile raises several types
        raise InputError(_describe(p, exc), p) from exc
    _check_header(p, info.samplerate, info.channels, info.frames)
    return info


def _check_path(p: Path) -> None:
    if not p.exists():
        raise InputError("file not found", p)
    if p.is_dir():
        raise InputError("is a folder, not an audio file", p)
    if not os.access(p, os.R_OK):
        raise InputError("permission denied (file not readable)", p)
    if p.stat().st_size == 0:
        raise InputError("file is empty (0 bytes)", p)


def _check_header(p: Path, rate: int, channels: int, frames: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InputError(
            f"sample rate {rate} Hz is outside the supported {MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz",
            p,
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise InputError(f"{channels} channels; 1 to {MAX_CHANNELS} are supported", p)
    if frames == 0:
        raise InputError("contains no audio (0 samples)", p)


def _declared_data_bytes(p: Path) -> tuple[int, int] | None:
    """For WAV/AIFF: (bytes the header declares for sample data, bytes actually present).

    libsndfile quietly shortens a truncated WAV to what is there; a user wants to be told.
    """
    import struct

    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(12)
            if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
                little, target = True, b"data"
            elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                little, target = False, b"SSND"
            else:
                return None
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                cid, clen = struct.unpack("<4sI" if little else ">4sI", fh.read(8))
                if cid == target:
                    if clen in (0, 0xFFFFFFFF):  # streaming writers / RF64: size unknown here
                        return None
                    return clen, size - pos - 8
                pos += 8 + clen + (clen & 1)
    except OSError:
        return None
    return None


def load_audio(
    path: str | Path,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Audio:
    """Read an audio file at its own sample rate and channel count.

    Args:
        path: WAV, FLAC, OGG/Vorbis, MP3 or AIFF file.
        progress: optional ``progress(fraction, message)`` called per block.
        cancel: optional ``cancel() -> bool``; when it returns True loading stops with
            :class:`Cancelled`.

    Returns:
        ``Audio`` with float32 samples of shape ``(channels, frames)``.

    Raises:
        InputError: missing, unreadable, empty, truncated or corrupt file, non-audio content,
            unsupported rate/channels, or NaN/Inf samples.
    """
    p = Path(path)
    _check_path(p)
    declared_bytes = _declared_data_bytes(p)
    if declared_bytes is not None and declared_bytes[1] < declared_bytes[0]:
        raise InputError(
            f"file is truncated: the header declares {declared_bytes[0]} bytes of audio, "
            f"only {declared_bytes[1]} are present",
            p,
        )
    try:
        handle = sf.SoundFile(str(p))
    except Exception as exc:
        raise InputError(_describe(p, exc), p) from exc
    with handle as f:
        rate, channels, declared = int(f.samplerate), int(f.channels), int(f.frames)
        _check_header(p, rate, channels, declared)
        # MP3/Vorbis frame counts can be estimates: grow if the stream is longer than declared.
        out = np.empty((channels, max(declared, 1)), dtype=np.float32)
        block = np.empty((_BLOCK_FRAMES, channels), dtype=np.float32)
        pos = 0
        while True:
            if cancel is not None and cancel():
                raise Cancelled()
            try:
                n = len(f.read(dtype="float32", out=block))
            except Exception as exc:
                raise InputError(
                    f"corrupt or truncated audio data after {pos} samples ({exc})", p
                ) from exc
            if n <= 0:
                break
            if not np.isfinite(block[:n]).all():
                bad = pos + int(np.argmax(~np.isfinite(block[:n]).all(axis=1)))
                raise InputError(
                    f"contains invalid samples (NaN or infinity) at {bad / rate:.3f} s", p
                )
            if pos + n > out.shape[1]:
                grown = np.empty((channels, max(2 * out.shape[1], pos + n)), dtype=np.float32)
                grown[:, :pos] = out[:, :pos]
                out = grown
            out[:, pos : pos + n] = block[:n].T
            pos += n
            if progress is not None:
                progress(min(pos / max(declared, 1), 1.0), f"Reading {p.name}")
    if pos == 0:
        raise InputError("contains no audio (0 samples could be decoded)", p)
    lossless = p.suffix.lower() in (".wav", ".wave", ".flac", ".aif", ".aiff", ".aifc")
    if lossless and pos < declared:
        raise InputError(
            f"file is truncated: header says {declared} samples, only {pos} could be read", p
        )
    samples = out if pos == out.shape[1] else out[:, :pos].copy()
    return Audio(samples, rate, p)


def save_audio(
    path: str | Path,
    audio: Audio,
    bit_depth: str = "24",
    file_format: str | None = None,
) -> Path:
    """Write ``audio`` to ``path`` atomically (temp file, fsync, rename).

    Args:
        path: destination; its extension picks the format unless ``file_format`` is given.
        audio: what to write.
        bit_depth: ``"16"``, ``"24"`` or ``"float"`` (32-bit float, WAV only).
        file_format: ``"wav"`` or ``"flac"``.

    Returns:
        The path written.
    """
    p = Path(path)
    fmt = (file_format or p.suffix.lstrip(".")).lower()
    if fmt not in WRITE_SUBTYPES:
        raise InputError(f"cannot write format '{fmt}'; use WAV or FLAC", p)
    subtypes = WRITE_SUBTYPES[fmt]
    if bit_depth not in subtypes:
        raise InputError(f"{fmt.upper()} cannot be written as '{bit_depth}'; choose {sorted(subtypes)}", p)
    if not np.isfinite(audio.samples).all():
        raise InputError("refusing to write NaN or infinite samples", p)
    with atomic_path(p) as tmp, sf.SoundFile(
        str(tmp), "w", samplerate=audio.sample_rate, channels=audio.channels,
        subtype=subtypes[bit_depth], format=fmt.upper(),
    ) as f:
        for start in range(0, audio.frames, _BLOCK_FRAMES):
            f.write(audio.samples[:, start : start + _BLOCK_FRAMES].T)
    return p


def file_checksum(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, hex. Used to reference source files in projects."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """High-quality band-limited resampling along the last axis (polyphase, Kaiser window).

    Args:
        samples: float array ``(..., frames)``.
        rate_in: its sample rate (Hz).
        rate_out: the wanted sample rate (Hz).

    Returns:
        float32 array ``(..., round(frames * rate_out / rate_in))``.
    """
    if rate_in == rate_out:
        return samples.astype(np.float32, copy=False)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(rate_in), int(rate_out))
    up, down = int(rate_out) // g, int(rate_in) // g
    out = resample_poly(samples, up, down, axis=-1, window=("kaiser", 10.0))
    return out.astype(np.float32, copy=False)
