"""Memory settings: with them, a freed large block stays in the process for the next one (no
fresh page faults); switched off, glibc hands it back to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from engine.runtime import configure_memory
    applied = configure_memory()
    import numpy as np

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    base = rss_mb()
    a = np.ones(50_000_000 // 8)  # 50 MB, touched
    del a
    print(applied, rss_mb() - base)
""")


def _probe(keep: str) -> tuple[bool, float]:
    env = {"UNMIX_KEEP_MEMORY": keep, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(REPO)], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    return out[0] == "True", float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_kept_for_reuse_only_when_configured() -> None:
    applied, kept_mb = _probe("1")
    assert applied
    assert kept_mb > 40  # the 50 MB block is still mapped after `del`
    applied, kept_mb = _probe("0")
    assert not applied
    assert kept_mb < 10  # returned to the system (glibc's default: large blocks are mmapped)


LONG_PROBE = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from engine.runtime import LONG_INPUT_SECONDS, configure_memory, memory_for
    configure_memory()
    import numpy as np

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    def kept_after_free():
        base = rss_mb()
        a = np.ones(50_000_000 // 8)
        del a
        return rss_mb() - base

    with memory_for(LONG_INPUT_SECONDS + 1):
        long_job = kept_after_free()
    with memory_for(60.0):
        short_job = kept_after_free()
        inside = rss_mb()
    trimmed = inside - rss_mb()
    print(long_job, short_job, trimmed)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_long_jobs_hand_memory_back_and_jobs_end_trimmed() -> None:
    """A job on a long input runs with glibc's default (a freed block goes back at once); a short
    job keeps freed blocks while it runs and hands them back when it ends."""
    out = subprocess.run([sys.executable, "-c", LONG_PROBE, str(REPO)], capture_output=True, text=True,
                         env={"UNMIX_KEEP_MEMORY": "1", "PATH": "/usr/bin:/bin"}, check=True).stdout.split()
    long_job, short_job, trimmed = (float(v) for v in out)
    assert long_job < 10
    assert short_job > 40
    assert trimmed > 40


def test_a_bad_long_input_limit_is_named_and_ignored(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from engine import runtime

    monkeypatch.setenv("UNMIX_LONG_INPUT_SECONDS", "ten minutes")
    assert runtime._long_input_seconds() == runtime.LONG_INPUT_SECONDS
    assert "UNMIX_LONG_INPUT_SECONDS='ten minutes'" in capsys.readouterr().err
    monkeypatch.setenv("UNMIX_LONG_INPUT_SECONDS", "100000")
    assert runtime._long_input_seconds() == 100000.0
