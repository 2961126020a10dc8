"""Shared test fixtures.

``shared_fixtures`` is ``<repo>/../shared/fixtures`` (the peer metric suite and real stems; see
:func:`_find_shared_fixtures` for a clone made elsewhere). In a user's clone it may be absent:
tests that need it skip with a reason, except under CI, where its absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("UNMIX_BLOCK_QT"):
    # The engine's tests run with Qt made unimportable, proving the engine never needs it.
    import importlib.abc
    import sys

    class _BlockQt(importlib.abc.MetaPathFinder):
        BLOCKED = ("PySide6", "shiboken6", "pyqtgraph", "gui")

        def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked: engine code must not import Qt or gui")
            return None

    sys.meta_path.insert(0, _BlockQt())


def _find_shared_fixtures() -> Path:
    """``<repo>/../shared/fixtures``; else ``$UNMIX_SHARED_FIXTURES``; else, for a clone made
    elsewhere (e.g. under a temporary folder), the same place beside the repository it was cloned
    from (``remote.origin.url`` when that is a local path)."""
    beside = (REPO_ROOT / ".." / "shared" / "fixtures").resolve()
    candidates = [beside]
    if os.environ.get("UNMIX_SHARED_FIXTURES"):
        candidates.append(Path(os.environ["UNMIX_SHARED_FIXTURES"]).resolve())
    try:
        import subprocess

        origin = subprocess.run(["git", "-C", str(REPO_ROOT), "config", "--get", "remote.origin.url"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and Path(origin).is_dir():
        candidates.append((Path(origin).resolve() / ".." / "shared" / "fixtures").resolve())
    return next((c for c in candidates if c.is_dir()), beside)


SHARED_FIXTURES = _find_shared_fixtures()


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared fixtures missing at {SHARED_FIXTURES} (required under CI)")
        pytest.skip(f"shared fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES
