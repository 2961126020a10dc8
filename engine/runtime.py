"""Process-wide memory settings for the heavy numeric work (call before torch is imported).

Separation allocates and frees tensors of tens to hundreds of MB per chunk. With glibc's
defaults every such block is its own ``mmap``: freed blocks go back to the kernel, and the
next chunk's block is faulted in and zeroed again, page by page. On the 2-core development VM
that page-fault work was most of the U-Net's time (bench/bench_query.py ``--speed-only``
measures the whole query engine with and without, see the README). :func:`configure_memory`
keeps freed memory in the process instead:

* glibc (Linux): ``mallopt(M_MMAP_MAX, 0)`` (large blocks come from the heap, reused after
  ``free``) and ``mallopt(M_TRIM_THRESHOLD, 1 GiB)`` (free memory at the heap's top is returned
  to the system only above that).
* other C libraries and systems: nothing is changed.

Kept memory fragments as a long file streams through many chunks: bench/bench_unet.py
``--memory`` measured the 4-stem U-Net's working memory on a 15-minute file at 2.9 GiB with it
against 1.1 GiB without, for about the same time. So :func:`memory_for` runs each separation
job with the setting only for inputs up to :data:`LONG_INPUT_SECONDS` (glibc's default above),
and hands free memory back to the system (``malloc_trim``) when the job ends.

``UNMIX_KEEP_MEMORY=0`` in the environment switches it off (to compare, or on a machine short
of memory). :func:`configure_memory` also defaults ``THP_MEM_ALLOC_ENABLE`` to 1 (torch's
huge-page allocation, read when torch is imported; a value already set is kept): it helps with
glibc's defaults but not measurably with memory kept this way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_BYTES = 1 << 30
_MMAP_MAX_DEFAULT = 65536

#: Jobs on longer inputs run with glibc's default allocation (see the module docstring);
#: ``UNMIX_LONG_INPUT_SECONDS`` in the environment moves the limit (to compare).
LONG_INPUT_SECONDS = 480.0

_state: dict[str, Any] = {"long_jobs": 0}
_lock = threading.Lock()


def _long_input_seconds() -> float:
    text = os.environ.get("UNMIX_LONG_INPUT_SECONDS")
    if text is None:
        return LONG_INPUT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also NaN
        print(f"unmix: ignoring UNMIX_LONG_INPUT_SECONDS={text!r} (not a number of seconds ≥ 0); "
              f"using {LONG_INPUT_SECONDS:g}", file=sys.stderr)
        return LONG_INPUT_SECONDS
    return value


def configure_memory() -> bool:
    """Apply the settings once per process (before torch is imported); True when the kept-memory
    setting is in effect."""
    if "applied" in _state:
        return bool(_state["applied"])
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    applied = False
    if os.environ.get("UNMIX_KEEP_MEMORY", "1") != "0" and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (musl has no mallopt)
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            mallopt.restype = ctypes.c_int
            applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES))
            if applied:
                _state["libc"] = libc
    _state["applied"] = applied
    return applied


@contextmanager
def memory_for(duration_seconds: float) -> Iterator[None]:
    """Around one job on ``duration_seconds`` of audio: inputs longer than
    :data:`LONG_INPUT_SECONDS` get glibc's default allocation while any such job runs; at the
    end free memory goes back to the system. Without :func:`configure_memory` in effect it does
    nothing."""
    libc = _state.get("libc")
    if libc is None:
        yield
        return
    long_input = duration_seconds > _long_input_seconds()
    if long_input:
        with _lock:
            _state["long_jobs"] += 1
            libc.mallopt(_M_MMAP_MAX, _MMAP_MAX_DEFAULT)
    try:
        yield
    finally:
        with _lock:
            if long_input:
                _state["long_jobs"] -= 1
            if _state["long_jobs"] == 0:
                libc.mallopt(_M_MMAP_MAX, 0)
        libc.malloc_trim(0)
