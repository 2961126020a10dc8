"""Atomic file output: every file the app writes appears whole or not at all.

:func:`atomic_path` yields a temporary path beside the destination; when the ``with`` block
ends without an error the temporary file is fsync'd and renamed over the destination, otherwise
it is removed and the destination is left as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = "", mode: int | None = None) -> Iterator[Path]:
    """A temporary path to write instead of ``path`` (renamed over it on success).

    Args:
        path: the destination.
        suffix: appended to the temporary name (e.g. ``.npz`` for writers that add it).
        mode: permission bits to give the file before the rename (None: as created).
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating the folder)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(p) as tmp:
        tmp.write_bytes(data)
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (creating the folder)."""
    return atomic_write_bytes(path, text.encode("utf-8"))
