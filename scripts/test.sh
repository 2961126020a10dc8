#!/usr/bin/env bash
# Set up (if needed) and run every check headless: lint, the engine/Qt import rule, type checks,
# the engine tests with Qt made unimportable, then the GUI tests offscreen (which include a smoke
# run of the app writing a screenshot of the demo session).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
py=.venv/bin/python

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
