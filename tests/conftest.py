"""Shared test fixtures.

``shared_fixtures`` is ``<repo>/../shared/fixtures`` (the peer metric suite and real stems). In a
user's clone it may be absent: tests that need it skip with a reason, except under CI, where its
absence is a failure.
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
SHARED_FIXTURES = (REPO_ROOT / ".." / "shared" / "fixtures").resolve()


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared fixtures missing at {SHARED_FIXTURES} (required under CI)")
        pytest.skip(f"shared fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES
