"""Resumable U-Net training in short steps.

    python -m engine.training.train --config CONFIG.json --out DIR --minutes 9 [--resume CKPT|auto]

Each run trains until its time budget is nearly spent, then validates, writes
``DIR/checkpoint.safetensors`` + ``DIR/checkpoint.json`` (model + AdamW state, ≤ 16 MiB, never
a pickle), appends to ``DIR/train_log.jsonl`` (the log beside the resumed checkpoint is carried
over) and re-plots ``DIR/curve.png``. Batches are a pure function of ``(seed, step)``
(:class:`engine.training.mixer.DynamicMixer`), so a run resumed from step ``k`` continues the
same stream; the learning-rate schedule is a function of the step too.

Loss: L1 between the masked mix magnitude and each stem's true magnitude, at the internal
STFT, after scaling each example to the model's reference level (as inference does). On CUDA the
network runs under bfloat16 autocast; STFTs and the loss stay float32.

Config keys (JSON; defaults in :data:`DEFAULT_CONFIG`): ``stems``, ``bank`` (folder), ``model``
(:class:`engine.models.UNetConfig` overrides), ``mixer`` (:class:`MixerConfig` overrides),
``val_bank`` (folder whose ``val`` split validates; default: ``bank``'s), ``seed``, ``lr``, ``weight_decay``, ``warmup_steps``, ``total_steps`` (cosine horizon),
``min_lr_fraction``, ``grad_clip``, ``validate_every_minutes``, ``log_every_steps``,
``val_tracks`` (0: all), ``threads`` (0: torch default), ``data_workers`` (0: mix on the
training device; N: a DataLoader with N CPU workers).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import InputError
from engine.models.unet import SpectrogramUNet, UNetConfig
from engine.spectral import StftConfig, stft
from engine.training.bank import StemBank
from engine.training.checkpoint import read_checkpoint, restore, save_checkpoint
from engine.training.evaluate import oracle_irm, validate
from engine.training.mixer import DynamicMixer, MixerConfig, TrackDataset

DEFAULT_CONFIG: dict[str, Any] = {
    "stems": ["vocals", "instrumental"],
    "bank": "tmp/bank",
    "val_bank": None,
    "model": {},
    "mixer": {},
    "seed": 0,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "warmup_steps": 100,
    "total_steps": 20000,
    "min_lr_fraction": 0.1,
    "grad_clip": 5.0,
    "validate_every_minutes": 4.0,
    "log_every_steps": 10,
    "val_tracks": 0,
    "threads": 0,
    "data_workers": 0,
}

LOG_NAME = "train_log.jsonl"
CHECKPOINT_NAME = "checkpoint.safetensors"
CURVE_NAME = "curve.png"


def learning_rate(step: int, cfg: dict[str, Any]) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_fraction`` at ``total_steps`` (then flat)."""
    base = float(cfg["lr"])
    warm = int(cfg["warmup_steps"])
    if step < warm:
        return base * (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, int(cfg["total_steps"]) - warm))
    floor = float(cfg["min_lr_fraction"])
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def level_gains(mix: torch.Tensor, reference_rms_db: float) -> torch.Tensor:
    """Per-example gains ``(B,)`` to the reference level (as :func:`level_gain`, clamped ±40 dB)."""
    rms = mix.pow(2).mean(dim=tuple(range(1, mix.dim()))).sqrt()
    gain = 10 ** (reference_rms_db / 20) / rms.clamp_min(1e-12)
    return gain.clamp(10 ** (-40 / 20), 10 ** (40 / 20))


def magnitude_loss(
    model: SpectrogramUNet, mix: torch.Tensor, stems: torch.Tensor, autocast: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean L1 between ``mask_j · |X|`` and ``|S_j|``.

    Args:
        mix: ``(B, C, N)``; stems: ``(B, S, C, N)`` with ``mix = Σ stems``.

    Returns:
        ``(loss, per-stem losses (S,))``.
    """
    cfg = model.config
    scfg = StftConfig(n_fft=cfg.n_fft, hop=cfg.hop)
    g = level_gains(mix, cfg.reference_rms_db)
    x = stft(mix * g[:, None, None], scfg)  # (B, C, F, T)
    target = stft(stems * g[:, None, None, None], scfg).abs()  # (B, S, C, F, T)
    mag = x.abs()
    with torch.autocast(mag.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        masks = model(mag)
    est = masks.float() * mag.unsqueeze(1)
    per_stem = (est - target).abs().mean(dim=(0, 2, 3, 4))
    return per_stem.mean(), per_stem.detach()


@torch.no_grad()
def init_input_statistics(model: SpectrogramUNet, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Set the per-bin input affine to the data's log-magnitude mean and 1/std."""
    cfg = model.config
    scfg = StftConfig(n_fft=cfg.n_fft, hop=cfg.hop)
    feats = []
    for mix, _ in batches:
        g = level_gains(mix, cfg.reference_rms_db)
        mag = stft(mix * g[:, None, None], scfg).abs()[:, :, : cfg.model_bins]
        feats.append(torch.log(mag + 1e-4).transpose(2, 3).reshape(-1, cfg.model_bins))
    f = torch.cat(feats)
    model.input_mean.copy_(f.mean(0))
    model.input_scale.copy_(1.0 / f.std(0).clamp_min(1e-3))


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record, default=float) + "\n")


def plot_curve(log: list[dict[str, Any]], path: Path, title: str) -> None:
    """Training loss and validation SDR per stem against the step, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in log if r.get("type") == "train"]
    val = [r for r in log if r.get("type") == "val"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        steps = np.array([r["step"] for r in train])
        loss = np.array([r["loss"] for r in train])
        a1.plot(steps, loss, lw=0.6, alpha=0.5, label="loss")
        if len(loss) >= 5:
            k = max(3, len(loss) // 30)
            sm = np.convolve(loss, np.ones(k) / k, mode="valid")
            a1.plot(steps[k - 1 :], sm, lw=1.5, label=f"mean of {k}")
        a1.set_yscale("log")
    a1.set_xlabel("step")
    a1.set_ylabel("L1 magnitude loss")
    a1.set_title("training loss")
    a1.grid(alpha=0.3)
    a1.legend()
    if val:
        for stem in val[-1]["sdr"]:
            a2.plot([r["step"] for r in val], [r["sdr"].get(stem, np.nan) for r in val], marker="o", ms=3, label=stem)
        oracle = next((r for r in reversed(log) if r.get("type") == "run" and r.get("oracle_irm")), None)
        if oracle:
            for i, (_stem, v) in enumerate(oracle["oracle_irm"]["sdr"].items()):
                a2.axhline(v, ls="--", lw=0.8, color=f"C{i}", alpha=0.6)
    a2.set_xlabel("step")
    a2.set_ylabel("validation SDR (plain, dB)")
    a2.set_title("held-out songs (dashed: ideal ratio mask)")
    a2.grid(alpha=0.3)
    if val:
        a2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    cfg = json.loads(json.dumps(DEFAULT_CONFIG))
    if path:
        p = Path(path)
        try:
            user = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the training config ({exc})", p) from exc
        unknown = set(user) - set(cfg)
        if unknown:
            raise InputError(f"unknown config keys {sorted(unknown)}", p)
        cfg.update(user)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # many mixing workers: one thread each, no oversubscription


def _batches(mixer: DynamicMixer, start: int, workers: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if workers <= 0:
        yield from mixer.batches(start)
        return
    loader = torch.utils.data.DataLoader(TrackDataset(mixer, start), batch_size=mixer.config.batch_size,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=False, prefetch_factor=4,
                                         worker_init_fn=_one_thread)
    for mix, stems in loader:
        yield mix.to(device, non_blocking=True), stems.to(device, non_blocking=True)


def train(
    config: dict[str, Any],
    out_dir: str | Path,
    minutes: float,
    resume: str | Path | None = None,
    device: str = "auto",
    quiet: bool = False,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Train for about ``minutes`` of wall time, or until the global step reaches ``max_steps``
    (see the module docstring).

    Returns:
        the checkpoint sidecar written.
    """
    t_start = time.perf_counter()
    deadline = t_start + minutes * 60.0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    if int(config["threads"]) > 0:
        torch.set_num_threads(int(config["threads"]))
    autocast = torch.bfloat16 if dev.type == "cuda" else None

    def say(msg: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    bank = StemBank.load(config["bank"])
    stems = tuple(config["stems"])
    model_cfg = UNetConfig(stems=stems, **{"sample_rate": bank.sample_rate, **config["model"]})
    if model_cfg.sample_rate != bank.sample_rate:
        raise InputError(f"the bank is at {bank.sample_rate} Hz but the model expects {model_cfg.sample_rate} Hz")
    mixer_cfg = MixerConfig(**config["mixer"])
    model = SpectrogramUNet(model_cfg).to(dev)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": float(config["weight_decay"])},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=float(config["lr"]))
    mixer_device = dev if int(config["data_workers"]) <= 0 else torch.device("cpu")
    mixer = DynamicMixer(bank, stems, mixer_cfg, seed=int(config["seed"]), device=mixer_device)
    val_tracks = bank.split("val") if not config.get("val_bank") else StemBank.load(config["val_bank"], ("val",)).split("val")
    if int(config["val_tracks"]) > 0:
        val_tracks = val_tracks[: int(config["val_tracks"])]
    log_path = out / LOG_NAME
    step, examples, train_seconds = 0, 0, 0.0
    best: dict[str, Any] | None = None
    if resume is not None and str(resume) == "auto":
        resume = out / CHECKPOINT_NAME if (out / CHECKPOINT_NAME).is_file() else None
    if resume is not None:
        tensors, meta = read_checkpoint(resume)
        if meta["model_config"] != model_cfg.to_json():
            raise InputError("the checkpoint's architecture differs from the config's", resume)
        restore(model, optimizer, tensors, meta)
        step, examples = int(meta["step"]), int(meta["examples"])
        train_seconds = float(meta.get("train_seconds", 0.0))
        best = meta.get("best_validation")
        prev_log = Path(resume).with_name(LOG_NAME)
        if prev_log.is_file() and prev_log.resolve() != log_path.resolve():
            shutil.copyfile(prev_log, log_path)
        say(f"resumed from {resume} at step {step}")
    else:
        if log_path.exists():
            log_path.unlink()
        init_input_statistics(model, [mixer.batch(10**9 + k) for k in range(4)])
    segment_seconds = mixer_cfg.segment_samples / bank.sample_rate
    run_record = {
        "type": "run", "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(dev), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "resume_from": str(resume) if resume else None, "step": step, "minutes": minutes, "config": config,
        "bank": {"train_tracks": len(bank.split("train")), "val_tracks": len(val_tracks),
                 "train_seconds": bank.seconds("train"), "recipe": bank.manifest.get("recipe")},
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if step == 0:
        oracle = oracle_irm(val_tracks, stems, model_cfg.n_fft)
        oracle.pop("per_track")
        run_record["oracle_irm"] = oracle
    append_log(log_path, run_record)
    say(f"{run_record['parameters']} parameters, {len(mixer.tracks)} training tracks, device {dev}")

    last_val: dict[str, Any] | None = None
    val_seconds = 0.0

    def run_validation() -> dict[str, Any]:
        nonlocal last_val, val_seconds, best
        if not val_tracks:
            raise InputError("the bank has no validation tracks (split 'val')", Path(config["bank"]))
        t = time.perf_counter()
        model.eval()
        v = validate(model, val_tracks, bank.sample_rate, dev)
        model.train()
        val_seconds = time.perf_counter() - t
        record = {"type": "val", "step": step, "sdr": v["sdr"], "sdr_median": v["sdr_median"],
                  "sdr_mean": float(np.nanmean(list(v["sdr"].values()))), "seconds": round(val_seconds, 2),
                  "hours_seen": examples * segment_seconds / 3600}
        append_log(log_path, record)
        last_val = record
        if best is None or record["sdr_mean"] > best["sdr_mean"]:
            best = {k: record[k] for k in ("step", "sdr", "sdr_mean")}
        say(f"validation at step {step}: " + ", ".join(f"{k} {v_:.2f} dB" for k, v_ in v["sdr"].items()))
        return record

    if step == 0:
        run_validation()
    model.train()
    batches = _batches(mixer, step, int(config["data_workers"]), dev)
    last_val_time = time.perf_counter()
    window_loss: list[float] = []
    window_stems: list[torch.Tensor] = []
    t_window = time.perf_counter()
    reserve = 15.0
    while True:
        now = time.perf_counter()
        step_time = (now - t_window) / max(len(window_loss), 1) if window_loss else 5.0
        if now + max(val_seconds * 1.5, 5.0) + reserve + step_time > deadline:
            break
        if max_steps is not None and step >= max_steps:
            break
        # Periodic validation, unless the final one is close anyway.
        if (now - last_val_time > float(config["validate_every_minutes"]) * 60
                and now + 3 * max(val_seconds, 5.0) + reserve < deadline):
            run_validation()
            last_val_time = time.perf_counter()
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t_step = time.perf_counter()
        mix, stems_b = next(batches)
        loss, per_stem = magnitude_loss(model, mix, stems_b, autocast)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float(config["grad_clip"]))
        optimizer.step()
        train_seconds += time.perf_counter() - t_step
        step += 1
        examples += mix.shape[0]
        window_loss.append(float(loss.detach()))
        window_stems.append(per_stem)
        if step % int(config["log_every_steps"]) == 0:
            per = torch.stack(window_stems).mean(0).tolist()
            elapsed = time.perf_counter() - t_window
            append_log(log_path, {
                "type": "train", "step": step, "loss": float(np.mean(window_loss)),
                "loss_per_stem": dict(zip(stems, per, strict=True)), "lr": lr, "grad_norm": float(grad_norm),
                "steps_per_second": len(window_loss) / max(elapsed, 1e-9),
                "hours_seen": examples * segment_seconds / 3600,
            })
            if not quiet and step % (10 * int(config["log_every_steps"])) == 0:
                say(f"step {step} loss {np.mean(window_loss):.4f} lr {lr:.2e} "
                    f"({len(window_loss) / max(elapsed, 1e-9):.2f} steps/s)")
            window_loss, window_stems = [], []
            t_window = time.perf_counter()
    if last_val is None or last_val["step"] != step:
        run_validation()
    meta = {
        "step": step, "examples": examples, "train_seconds": train_seconds,
        "hours_seen": examples * segment_seconds / 3600, "config": config,
        "last_validation": {k: last_val[k] for k in ("step", "sdr", "sdr_median", "sdr_mean")} if last_val else None,
        "best_validation": best, "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bank_recipe": bank.manifest.get("recipe"),
    }
    sidecar = save_checkpoint(out / CHECKPOINT_NAME, model, optimizer, meta)
    plot_curve(read_log(log_path), out / CURVE_NAME, f"U-Net {len(stems)} stems ({', '.join(stems)})")
    say(f"saved {out / CHECKPOINT_NAME} at step {step} ({sidecar['bytes'] / 2**20:.1f} MiB); "
        f"{meta['hours_seen']:.2f} h of mixes seen")
    return sidecar


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the spectrogram U-Net in resumable steps.")
    ap.add_argument("--config", help="JSON training config (defaults: engine.training.train.DEFAULT_CONFIG)")
    ap.add_argument("--out", required=True, help="folder for checkpoint, log and curve")
    ap.add_argument("--minutes", type=float, default=9.0, help="wall-time budget of this run")
    ap.add_argument("--resume", help="checkpoint to continue from, or 'auto' (DIR's own if present)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--bank", help="stem bank folder (overrides the config)")
    ap.add_argument("--val-bank", dest="val_bank", help="bank whose 'val' split validates (overrides the config)")
    ap.add_argument("--threads", type=int, help="torch threads (overrides the config)")
    ap.add_argument("--data-workers", type=int, dest="data_workers")
    ap.add_argument("--max-steps", type=int, dest="max_steps", help="stop at this global step")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    try:
        cfg = load_config(a.config, {"bank": a.bank, "val_bank": a.val_bank, "threads": a.threads,
                                           "data_workers": a.data_workers})
        train(cfg, a.out, a.minutes, a.resume, a.device, a.quiet, a.max_steps)
    except InputError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
