#!/usr/bin/env bash
# One ≤ 9-minute U-Net training step on the GPU machine (run from the repository root).
#
#   bash scripts/gpu_train_step.sh 2|4 [MINUTES]
#
# What it needs in the working tree (carry the ignored folders with the device tool's `carry`):
#   tmp/gpu_wheels/   soundfile + cffi + pycparser wheels for Python 3.12 (the GPU image has no
#                     soundfile, which engine.audio imports); see "Preparing" below
#   tmp/bank_gpu/     a stem bank (python -m engine.training.bank); the GPU image cannot run the
#                     song synthesizer (no fluidsynth, soundfont, espeak-ng or pyworld there), so
#                     the bank travels: ≤ ~45 MiB. Rotate different banks between steps
#                     (--seed 1, 2, … give disjoint songs) for more material.
#   tmp/bank_val/     (optional) the validation bank, the same for every step
#   tmp/ckpt_unetN/   (optional) the previous step's $OUT (checkpoint + log) to resume from
# What it leaves in $OUT (≤ 8 files, each ≤ 16 MiB): checkpoint.safetensors, checkpoint.json,
# train_log.jsonl, curve.png, unetN.safetensors, unetN.json, unetN.md.
#
# Preparing (on the CPU machine, once; all paths are git-ignored):
#   .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d tmp/gpu_wheels soundfile==0.13.1 cffi==2.0.0 pycparser
#   .venv/bin/python -m engine.training.bank --out tmp/bank_gpu --seed 1 --train 14 --val 0 \
#       --seconds 20 --bits 12 --workers 2        # ≈ 30 MiB
#   .venv/bin/python -m engine.training.bank --out tmp/bank_val --seed 0 --train 0 --val 6 \
#       --seconds 12 --workers 2                  # ≈ 12 MiB
# After a step: copy the returned files into tmp/ckpt_unetN/ and carry it next time; ship the
# weights with `cp unetN.* resources/models/` (the card holds the SHA-256 the loader checks).
set -euo pipefail
STEMS=${1:?usage: gpu_train_step.sh 2|4 [MINUTES]}
MINUTES=${2:-8}
OUT=${OUT:-tmp/gpu_out}
PY=${PYTHON:-python3}
BANK=${BANK:-tmp/bank_gpu}
VAL_BANK=${VAL_BANK:-}
WHEELS=${WHEELS:-tmp/gpu_wheels}
RESUME=${RESUME:-tmp/ckpt_unet${STEMS}/checkpoint.safetensors}
CONFIG=${CONFIG:-engine/training/configs/gpu_${STEMS}stem.json}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if ! $PY -c "import soundfile" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
if [ ! -f "$BANK/manifest.json" ]; then
  echo "no stem bank at $BANK: rendering one here (needs the song synthesizer's tools)"
  $PY -m engine.training.bank --out "$BANK" --train 200 --val 8 --seconds 20 --workers 16
fi
args=(--config "$CONFIG" --bank "$BANK" --out "$OUT" --minutes "$MINUTES" --device cuda)
[ -n "$VAL_BANK" ] && args+=(--val-bank "$VAL_BANK")
[ -f "$RESUME" ] && args+=(--resume "$RESUME")
$PY -m engine.training.train "${args[@]}"
$PY -m engine.training.export --checkpoint "$OUT/checkpoint.safetensors" --name "unet${STEMS}" \
    --out "$OUT" --bank "${VAL_BANK:-$BANK}" \
    --status "GPU-trained in resumable steps; see train_log.jsonl for its history."
ls -la "$OUT"
