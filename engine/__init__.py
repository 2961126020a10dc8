"""Unmix Studio's engine: every piece of audio work, headless and Qt-free.

Nothing under ``engine`` may import PySide6, shiboken6, pyqtgraph or ``gui`` (enforced by the
import-linter contract in ``pyproject.toml`` and by the Qt-less engine test run).
"""

__version__ = "0.1.0"
