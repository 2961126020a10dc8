#!/usr/bin/env bash
# Set up Unmix Studio on a fresh Debian/Ubuntu machine: system libraries, a virtual environment
# in .venv, and the app with its Python dependencies. Safe to run again (skips what is done).
#
#   bash scripts/setup.sh        # what the app needs to run
#   bash scripts/setup.sh dev    # plus what the tests, benchmarks and data scripts need
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"

# Qt's runtime (xcb/EGL/fonts), PortAudio for playback, libsndfile for audio files.
apt_run=(libportaudio2 libsndfile1 libegl1 libgl1 libglib2.0-0 libfontconfig1 libxkbcommon0
  libxkbcommon-x11-0 libdbus-1-3 libx11-6 libx11-xcb1 fonts-dejavu-core libxcb-cursor0
  libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-randr0
  libxcb-shape0 libxcb-xfixes0 libxcb-xkb1 python3-venv)
# Tests and tools: a virtual screen, PDF rendering, a soundfont synthesizer and voice for the
# song synthesizer (espeak-ng formant voices, flite recorded-speaker voices), a null PulseAudio
# sink for playback tests.
apt_dev=(xvfb xauth poppler-utils sox fluidsynth fluid-soundfont-gm espeak-ng flite pulseaudio
  pulseaudio-utils alsa-utils libasound2-plugins)

want=("${apt_run[@]}")
[ "$mode" = dev ] && want+=("${apt_dev[@]}")
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"
  else
    echo "setup: these system packages are missing and installing them needs root:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    echo "run that, then run this script again." >&2
    exit 1
  fi
  echo "setup: installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.unmix-installed-$mode-$(cat pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned: the CPU build on our machines, never a loose multi-GB CUDA pull.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  if [ "$mode" = dev ]; then
    .venv/bin/python -m pip install -q -e ".[dev]"
  else
    .venv/bin/python -m pip install -q -e .
  fi
  touch "$stamp"
fi
echo "setup: ready ($mode). Run the app with: .venv/bin/python app.py"
