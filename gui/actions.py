"""One way to make a window-wide action (menus show its shortcut), and the run row of the panels
that start jobs (action button, Cancel, progress bar, status line)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)


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


def add_run_row(
    layout: QVBoxLayout, text: str, on_run: Callable[[], Any], on_cancel: Callable[[], Any], status: str = "",
) -> tuple[QPushButton, QPushButton, QProgressBar, QLabel]:
    """Add ``[text][Cancel]``, a thin progress bar (0–1000) and a word-wrapped status line to
    ``layout``; returns ``(run button, cancel button, progress bar, status label)``."""
    row = QHBoxLayout()
    run = QPushButton(text)
    run.clicked.connect(lambda _=False: on_run())
    cancel = QPushButton("Cancel")
    cancel.clicked.connect(lambda _=False: on_cancel())
    cancel.setEnabled(False)
    row.addWidget(run, 1)
    row.addWidget(cancel)
    layout.addLayout(row)
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setTextVisible(False)
    bar.setFixedHeight(10)
    layout.addWidget(bar)
    label = QLabel(status)
    label.setWordWrap(True)
    layout.addWidget(label)
    return run, cancel, bar, label


def set_scrolling_body(dock: QDockWidget, body: QWidget, min_width: int = 300) -> None:
    """Put ``body`` in ``dock`` inside a vertical scroll area (many parameters must not push the
    dock off screen)."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(body)
    dock.setWidget(scroll)
    dock.setMinimumWidth(min_width)


def show_status(label: QLabel, text: str, error: bool = False) -> None:
    """A panel's status line: errors in red."""
    label.setText(text)
    label.setStyleSheet("color: #ff7070;" if error else "")
