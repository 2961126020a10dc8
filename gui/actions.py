"""One way to make a window-wide action (menus show its shortcut)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget


def window_action(
    window: QWidget, text: str, shortcut: str | None, slot: Callable[..., Any], checkable: bool = False
) -> QAction:
    """A QAction on ``window`` with a window-wide shortcut; ``slot`` gets the checked state when
    ``checkable``, nothing otherwise."""
    a = QAction(text, window)
    if shortcut:
        a.setShortcut(QKeySequence(shortcut))
        a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    a.setCheckable(checkable)
    if checkable:
        a.toggled.connect(slot)
    else:
        a.triggered.connect(lambda _=False: slot())
    window.addAction(a)
    return a
