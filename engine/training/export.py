"""Turn a training checkpoint into shippable weights: float16 safetensors + model card.

    python -m engine.training.export --checkpoint DIR/checkpoint.safetensors --name unet2 \
        --out resources/models [--bank BANK] [--status "..."] [--logs-dir resources/models/logs]

The exported weights are re-loaded through :func:`engine.models.load_model` (SHA-256 checked)
and re-validated on the bank's held-out songs, so the card's numbers are those of the shipped
float16 file. The training log and curve beside the checkpoint are copied to ``--logs-dir``.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from engine.models.unet import SpectrogramUNet, UNetConfig, parameter_count
from engine.models.weights import load_model, save_weights, write_model_card
from engine.training.bank import StemBank
from engine.training.checkpoint import read_checkpoint, restore
from engine.training.evaluate import oracle_irm, validate
from engine.training.mixer import MixerConfig
from engine.training.train import CURVE_NAME, LOG_NAME, read_log

CPU_PROOF_STATUS = ("CPU proof-of-pipeline model, not the final one: trained for about 20 minutes on "
                    "one CPU thread on a small synthetic stem bank to prove the training pipeline end to "
                    "end. Expect weak results on real music; GPU-trained weights replace it.")


def export(
    checkpoint: str | Path,
    name: str,
    out_dir: str | Path,
    bank_dir: str | Path | None = None,
    status: str = "",
    logs_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/NAME.safetensors`` + ``NAME.json`` + ``NAME.md``; returns the card."""
    tensors, meta = read_checkpoint(checkpoint)
    config = UNetConfig.from_json(meta["model_config"])
    model = SpectrogramUNet(config)
    restore(model, None, tensors, meta)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}.safetensors"
    sha = save_weights(model, weights, torch.float16)
    card: dict[str, Any] = {
        "name": name,
        "status": status,
        "summary": (f"Spectrogram U-Net separating a mix into {len(config.stems)} stems "
                    f"({', '.join(config.stems)}) with soft masks (softmax over stems)."),
        "architecture": config.to_json(),
        "parameters": parameter_count(model),
        "weights": weights.name, "weights_dtype": "float16", "weights_bytes": weights.stat().st_size,
        "sha256": sha,
        "date": datetime.now(timezone.utc).date().isoformat(),
    }
    train_cfg = meta.get("config", {})
    recipe = meta.get("bank_recipe") or {}
    log = read_log(Path(checkpoint).with_name(LOG_NAME))
    runs = [r for r in log if r.get("type") == "run"]
    card["data"] = {
        "source": "songs from the project's song synthesizer (engine.synth: General MIDI soundfont "
                  "instruments, a sung line via espeak-ng + WORLD, seeded per-stem mixing, optional bus)",
        "bank_recipe": recipe,
        "distinct_training_audio_hours": round(recipe.get("train_songs", 0) * recipe.get("seconds", 0) / 3600, 3),
        "validation": f"{recipe.get('val_songs', '?')} whole songs from a disjoint seed range, never seen in training",
        "augmentation": "dynamic mixing across songs (engine.training.mixer): " + ", ".join(
            f"{k}={v}" for k, v in MixerConfig(**train_cfg.get("mixer", {})).to_json().items()),
        "hours_of_mixes_seen": round(float(meta.get("hours_seen", 0.0)), 3),
    }
    card["training"] = {
        "steps": meta.get("step"), "examples": meta.get("examples"),
        "optimizer": f"AdamW lr {train_cfg.get('lr')} (warm-up {train_cfg.get('warmup_steps')}, cosine to "
                     f"{train_cfg.get('min_lr_fraction')}× at step {train_cfg.get('total_steps')}), "
                     f"weight decay {train_cfg.get('weight_decay')}",
        "loss": "L1 on masked magnitudes per stem at the internal STFT, examples level-normalised",
        "runs": len(runs), "devices": sorted({r.get("device", "?") for r in runs}),
        "threads": sorted({r.get("threads", 0) for r in runs}),
        "train_wall_seconds": round(float(meta.get("train_seconds", 0.0)), 1),
        "checkpoint_sha256": meta.get("sha256"),
    }
    write_model_card(out, name, card)  # the card first: loading verifies against it
    if bank_dir is not None:
        bank = StemBank.load(bank_dir, splits=("val",))
        val = bank.split("val")
        shipped, _ = load_model(weights)
        v = validate(shipped, val, bank.sample_rate)
        oracle = oracle_irm(val, config.stems, config.n_fft)
        card["validation"] = {
            "columns": ["U-Net SDR (dB, mean)", "U-Net SDR (median)", "oracle IRM (mean)"],
            "rows": {s: [v["sdr"][s], v["sdr_median"][s], oracle["sdr"][s]] for s in config.stems},
            "note": (f"Plain SDR (10·log10 ‖s‖²/‖s−ŝ‖², whole song, both channels; not BSS Eval) on "
                     f"{len(val)} held-out synthetic songs, shipped float16 weights, no Wiener filter. "
                     f"Oracle: ideal power-ratio masks at the same STFT (n_fft {config.n_fft}). "
                     "bench/bench_unet.py reports BSS Eval and baselines."),
            "per_track": v["per_track"],
        }
    elif meta.get("last_validation"):
        lv = meta["last_validation"]
        card["validation"] = {"columns": ["SDR (dB, mean)", "SDR (median)"],
                              "rows": {s: [lv["sdr"][s], lv["sdr_median"][s]] for s in config.stems},
                              "note": "plain SDR at the checkpoint (float32 weights), from training's validation"}
    card["limitations"] = (
        "Trained only on synthesized songs (one General MIDI soundfont, one singing synthesizer); "
        "real recordings differ in timbre, production and vocal style. " + (status or ""))
    write_model_card(out, name, card)
    if logs_dir is not None:
        copy_training_logs(checkpoint, logs_dir, name)
    return card


def copy_training_logs(checkpoint: str | Path, logs_dir: str | Path, name: str) -> None:
    """Copy the training log and curve written beside ``checkpoint`` to ``logs_dir`` as
    ``NAME_train_log.jsonl`` and ``NAME_curve.png`` (committed with the weights)."""
    logs = Path(logs_dir)
    logs.mkdir(parents=True, exist_ok=True)
    for src, dst in ((LOG_NAME, f"{name}_train_log.jsonl"), (CURVE_NAME, f"{name}_curve.png")):
        p = Path(checkpoint).with_name(src)
        if p.is_file():
            shutil.copyfile(p, logs / dst)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Export a checkpoint as shippable weights + model card.")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--name", required=True, help="unet2 or unet4 for the shipped models")
    ap.add_argument("--out", required=True)
    ap.add_argument("--bank", help="re-validate the exported weights on this bank's 'val' split")
    ap.add_argument("--status", default="", help="a status line for the card; 'cpu-proof' for the standard one")
    ap.add_argument("--logs-dir")
    a = ap.parse_args(argv)
    status = CPU_PROOF_STATUS if a.status == "cpu-proof" else a.status
    card = export(a.checkpoint, a.name, a.out, a.bank, status, a.logs_dir)
    print(f"wrote {Path(a.out) / (a.name + '.safetensors')} sha256 {card['sha256'][:16]}…")
    for stem, row in card.get("validation", {}).get("rows", {}).items():
        print(f"  {stem:>12}: " + "  ".join(f"{x:6.2f}" for x in row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
