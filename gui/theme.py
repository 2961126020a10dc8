"""The dark theme: a Fusion palette, a small stylesheet and pyqtgraph's colours."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

#: Colours used across the views (hex strings so pyqtgraph and stylesheets share them).
COLORS = {
    "window": "#202226",
    "base": "#17181b",
    "panel": "#26282d",
    "lane_header": "#2b2e34",
    "border": "#3a3d44",
    "text": "#dcdfe4",
    "text_dim": "#8b9099",
    "accent": "#4aa3ff",
    "plot_bg": "#141518",
    "playhead": "#ff5c5c",
    "selection": (74, 163, 255, 45),
    "grid": "#2c2f35",
}

#: Waveform colour per track role.
ROLE_COLORS = {
    "mix": "#4fc3f7",
    "acapella": "#ffb74d",
    "stem": "#81c784",
    "residual": "#ce93d8",
}

STYLESHEET = f"""
QMainWindow, QDialog {{ background: {COLORS['window']}; }}
QToolBar {{ background: {COLORS['panel']}; border: none; border-bottom: 1px solid {COLORS['border']};
           spacing: 4px; padding: 3px; }}
QStatusBar {{ background: {COLORS['panel']}; border-top: 1px solid {COLORS['border']}; }}
QStatusBar QLabel {{ color: {COLORS['text']}; padding: 0 6px; }}
QFrame#LaneHeader {{ background: {COLORS['lane_header']}; border-right: 1px solid {COLORS['border']}; }}
QFrame#Lane {{ border-bottom: 1px solid {COLORS['border']}; }}
QFrame#Lane[dropTarget="true"] {{ border: 2px solid {COLORS['accent']}; }}
QLabel#LaneName {{ font-weight: bold; color: {COLORS['text']}; }}
QLabel#LaneRole {{ color: {COLORS['text_dim']}; }}
QLabel#TimeDisplay {{ font-family: monospace; font-size: 14px; color: {COLORS['text']};
                      background: {COLORS['base']}; border: 1px solid {COLORS['border']};
                      border-radius: 3px; padding: 2px 8px; }}
QLabel#EmptyHint {{ color: {COLORS['text_dim']}; font-size: 15px; }}
QToolButton {{ color: {COLORS['text']}; border: 1px solid transparent; border-radius: 3px;
               padding: 2px 6px; }}
QToolButton:hover {{ border-color: {COLORS['border']}; background: #33363c; }}
QToolButton:checked {{ background: #3b4250; border-color: {COLORS['accent']}; }}
QToolButton#MuteButton:checked {{ background: #6b4a1f; border-color: #f0a040; }}
QToolButton#SoloButton:checked {{ background: #5c5a1a; border-color: #e8d84a; }}
QToolButton#PolarityButton:checked {{ background: #5a2a2a; border-color: #ff6b6b; }}
QScrollArea {{ border: none; background: {COLORS['window']}; }}
QProgressBar {{ border: 1px solid {COLORS['border']}; border-radius: 3px; background: {COLORS['base']};
                color: {COLORS['text']}; text-align: center; max-height: 14px; }}
QProgressBar::chunk {{ background: {COLORS['accent']}; }}
QMenu::separator {{ height: 1px; background: {COLORS['border']}; margin: 4px 8px; }}
"""


def dark_palette() -> QPalette:
    p = QPalette()
    c = {k: QColor(v) for k, v in COLORS.items() if isinstance(v, str)}
    p.setColor(QPalette.ColorRole.Window, c["window"])
    p.setColor(QPalette.ColorRole.WindowText, c["text"])
    p.setColor(QPalette.ColorRole.Base, c["base"])
    p.setColor(QPalette.ColorRole.AlternateBase, c["panel"])
    p.setColor(QPalette.ColorRole.ToolTipBase, c["panel"])
    p.setColor(QPalette.ColorRole.ToolTipText, c["text"])
    p.setColor(QPalette.ColorRole.Text, c["text"])
    p.setColor(QPalette.ColorRole.Button, c["panel"])
    p.setColor(QPalette.ColorRole.ButtonText, c["text"])
    p.setColor(QPalette.ColorRole.BrightText, QColor("#ffffff"))
    p.setColor(QPalette.ColorRole.Highlight, c["accent"])
    p.setColor(QPalette.ColorRole.HighlightedText, QColor("#0b0c0e"))
    p.setColor(QPalette.ColorRole.Link, c["accent"])
    p.setColor(QPalette.ColorRole.PlaceholderText, c["text_dim"])
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#5d6169"))
    return p


def configure_pyqtgraph() -> None:
    """pyqtgraph's global colours; call before creating plots."""
    pg.setConfigOptions(
        background=COLORS["plot_bg"], foreground=COLORS["text_dim"], antialias=False,
        imageAxisOrder="col-major",
    )


def apply_dark_theme(app: QApplication) -> None:
    """Fusion style, dark palette, stylesheet and pyqtgraph colours."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    app.setStyleSheet(STYLESHEET)
    configure_pyqtgraph()
