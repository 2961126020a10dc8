"""Preferences: the audio output device, stored with QSettings ("UnmixStudio", "Unmix Studio").

The device is stored by name (PortAudio's indices change when devices come and go) and looked
up again at start; a device that has gone falls back to the system default.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from engine.playback import OutputDevice, list_output_devices, portaudio_available

SETTINGS_ORG = "UnmixStudio"
SETTINGS_APP = "Unmix Studio"
OUTPUT_DEVICE_KEY = "audio/output_device"


def app_settings() -> QSettings:
    return QSettings(SETTINGS_ORG, SETTINGS_APP)


# QSettings.value(..., type=bool) in PySide6 6.x can corrupt the refcount of True/False (the
# interpreter then aborts at exit), so values are read raw and converted here.
def setting_str(settings: QSettings, key: str, default: str = "") -> str:
    value = settings.value(key, default)
    return default if value is None else str(value)


def setting_bool(settings: QSettings, key: str, default: bool) -> bool:
    value = settings.value(key, None)
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def setting_list(settings: QSettings, key: str) -> list[str]:
    value = settings.value(key, None)
    if value is None or value == "":
        return []
    if isinstance(value, str):  # a one-element list comes back as a plain string
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def stored_output_device(settings: QSettings, devices: list[OutputDevice] | None = None) -> int | None:
    """The stored device's current PortAudio index, or None for the system default."""
    name = setting_str(settings, OUTPUT_DEVICE_KEY)
    if not name:
        return None
    devices = list_output_devices() if devices is None else devices
    return next((d.index for d in devices if d.label == name), None)


class PreferencesDialog(QDialog):
    """Edit ▸ Preferences…: choose the output device."""

    def __init__(self, settings: QSettings, parent: QWidget | None = None,
                 devices: list[OutputDevice] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.settings = settings
        self.devices = list_output_devices() if devices is None else devices
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.device_combo = QComboBox()
        self.device_combo.addItem("System default", "")
        for d in self.devices:
            self.device_combo.addItem(f"{d.label} — {d.channels} ch, {d.default_sample_rate:g} Hz", d.label)
        stored = setting_str(settings, OUTPUT_DEVICE_KEY)
        idx = self.device_combo.findData(stored)
        self.device_combo.setCurrentIndex(max(idx, 0))
        form.addRow("Audio output:", self.device_combo)
        lay.addLayout(form)
        if not portaudio_available():
            note = "The PortAudio library is missing: playback is off."
        elif not self.devices:
            note = "No audio output device was found: playback is off."
        else:
            note = ""
        if note:
            hint = QLabel(note)
            hint.setObjectName("LaneRole")
            lay.addWidget(hint)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

    def chosen_device(self) -> int | None:
        """The chosen device's index (None = system default)."""
        label = self.device_combo.currentData()
        return next((d.index for d in self.devices if d.label == label), None)

    def accept(self) -> None:
        self.settings.setValue(OUTPUT_DEVICE_KEY, self.device_combo.currentData() or "")
        super().accept()
