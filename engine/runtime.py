"""Process-wide memory settings for the heavy numeric work (call before torch is imported).

Separation allocates and frees tensors of tens to hundreds of MB per chunk. With glibc's
defaults every such block is its own ``mmap``: freed blocks go back to the kernel, and the
next chunk's block is faulted in and zeroed again, page by page. On the 2-core development VM
that page-fault work was most of the U-Net's time (bench/bench_query.py ``--speed-only``
measures the whole query engine with and without, see the README). :func:`configure_memory`
keeps freed memory in the process instead:

* glibc (Linux): ``mallopt(M_MMAP_MAX, 0)`` (large blocks come from the heap, reused after
  ``free``) and ``mallopt(M_TRIM_THRESHOLD, 1 GiB)`` (free memory at the heap's top is returned
  to the system only above that). The cost: after a job the process keeps up to its peak
  memory mapped for the next one.
* other C libraries and systems: nothing is changed.

``UNMIX_KEEP_MEMORY=0`` in the environment switches it off (to compare, or on a machine short
of memory). ``THP_MEM_ALLOC_ENABLE`` (torch's huge-page allocation) is left to the user; it
helps with glibc's defaults but not with memory kept this way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_BYTES = 1 << 30

_state: dict[str, bool] = {}


def configure_memory() -> bool:
    """Apply the settings once per process; True when they are in effect."""
    if "applied" in _state:
        return _state["applied"]
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
    _state["applied"] = applied
    return applied
