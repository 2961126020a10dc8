"""The Qt binding must not corrupt reference counts.

PySide6 6.12.0 on Python 3.11 drops a reference to ``None`` on every call of a method that
returns nothing; ``None``'s count (~16k after imports) then reaches zero within seconds of
GUI work and the interpreter aborts ("none_dealloc"). This guards the installed binding.
"""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel

pytestmark = pytest.mark.gui


def test_void_qt_calls_keep_the_reference_count_of_none(qapp) -> None:
    label, obj, timer = QLabel(), QObject(), QTimer()
    before = sys.getrefcount(None)
    for _ in range(2000):
        label.setText("x")
        obj.setObjectName("y")
        timer.setInterval(5)
    drift = sys.getrefcount(None) - before
    assert abs(drift) < 100, (
        f"the Qt binding leaked {-drift} references to None over 6000 calls: this "
        "PySide6 build is broken on this Python (PySide6 6.12.0 on 3.11); install another"
    )
