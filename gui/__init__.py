"""Unmix Studio's desktop interface (PySide6 + pyqtgraph): views and controllers only.

No signal processing lives here: widgets call engine functions, and anything slow runs as a
job through :mod:`gui.jobs`.
"""
