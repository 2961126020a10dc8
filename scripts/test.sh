#!/usr/bin/env bash
# Set up (if needed) and run every check headless: lint, the engine/Qt import rule, type checks,
# the engine tests with Qt made unimportable, then the GUI tests offscreen (which include a smoke
# run of the app writing a screenshot of the demo session).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
py=.venv/bin/python

# A PulseAudio null sink gives the playback tests a real output device with real-time callbacks
# (started here, stopped on exit; skipped where a sound server already runs).
if command -v pulseaudio >/dev/null && ! pulseaudio --check 2>/dev/null; then
  pulseaudio -D -n --exit-idle-time=-1 --log-target=stderr --log-level=error \
    --load="module-null-sink sink_name=unmix_null" --load="module-native-protocol-unix" \
    --load="module-always-sink" 2>/dev/null && started_pulse=1 || echo "note: no PulseAudio null sink; real-device playback tests will skip"
  trap '[ -n "${started_pulse:-}" ] && pulseaudio --kill 2>/dev/null || true' EXIT
fi
if command -v pactl >/dev/null && server=$(pactl info 2>/dev/null | sed -n 's/^Server String: //p') && [ -n "$server" ]; then
  # Tests isolate HOME/XDG dirs; name the server so clients still find it.
  case "$server" in /*) export PULSE_SERVER="unix:$server" ;; *) export PULSE_SERVER="$server" ;; esac
fi

echo "== ruff"
$py -m ruff check .
echo "== import rule: engine/ never imports Qt"
.venv/bin/lint-imports
echo "== mypy (strict on engine/)"
$py -m mypy engine
echo "== engine tests (Qt made unimportable)"
UNMIX_BLOCK_QT=1 $py -m pytest tests/engine -p no:pytest-qt -q "$@"
echo "== GUI tests (offscreen) and the app smoke run"
QT_QPA_PLATFORM=offscreen $py -m pytest tests/gui -q "$@"
