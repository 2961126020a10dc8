"""Train the query AST (classes + contrastive embedding) on synthesized multitrack songs.

    python -m engine.training.ast_train render --config CONFIG.json          # songs → tmp cache
    python -m engine.training.ast_train train --config CONFIG.json --out DIR --minutes 9 [--resume auto]
    python -m engine.training.ast_train export --checkpoint DIR/checkpoint.safetensors [--out resources/models]

``render`` synthesizes the training and validation songs (disjoint seed ranges) into the cache
(:mod:`engine.training.ast_data`; each song a pure function of its seed). ``train`` runs in
resumable steps like :mod:`engine.training.train`: it trains until its time budget is nearly
spent, validates, writes ``DIR/checkpoint.safetensors`` + ``.json`` (model + AdamW state, never
a pickle), appends to ``DIR/train_log.jsonl`` and re-plots ``DIR/curve.png``. Batches are a pure
function of ``(seed, step)`` so a resumed run continues the same stream. ``export`` writes the
float16 weights + model card, re-loads them through :func:`engine.models.ast.load_ast` (SHA-256
checked) and evaluates the shipped file on the validation songs.

Loss = ``bce_weight`` × binary cross-entropy over the multi-hot class targets (a window of a mix
holds several sources) + ``contrastive_weight`` × a supervised InfoNCE on the embeddings: the two views of a
source (same track, different times, solo or under other material) are the positives; sources of
other classes are the negatives; other sources *of the same class* are left out of the
denominator (neither pulled together nor pushed apart: "same kind of sound" should stay close).

Device-agnostic: CUDA with bfloat16 autocast when present (``--device auto``), else CPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from engine.errors import InputError
from engine.models.ast import (
    AstConfig,
    AudioSpectrogramTransformer,
    QueryEmbedder,
    load_ast,
    log_mel,
    parameter_count,
    save_ast_weights,
)
from engine.models.unet import SpectrogramUNet
from engine.training.ast_data import (
    CLASSES,
    FAMILY_PROGRAMS,
    PRESENT_DB,
    SAMPLE_RATE,
    MultitrackSong,
    SamplerConfig,
    WindowSampler,
    build_cache,
    window_rms_db,
)
from engine.training.checkpoint import read_checkpoint, restore, save_checkpoint
from engine.training.export import copy_training_logs
from engine.training.train import (
    CHECKPOINT_NAME,
    CURVE_NAME,
    LOG_NAME,
    append_log,
    learning_rate,
    read_log,
)

DEFAULT_CONFIG: dict[str, Any] = {
    "cache": "tmp/ast_cache",
    "train_seeds": [10000, 200],  # [first, count]
    "val_seeds": [90000, 24],
    "song_seconds": 30.0,
    "recorded_voice_share": 0.0,  # songs sung by a flite (recorded-speaker) voice; see ast_data.song_voice
    "vocal_production": 0.0,  # songs whose vocal gets a record's production; see ast_data.produce_vocal
    "render_workers": 1,
    "model": {},
    "sampler": {},
    "seed": 0,
    "lr": 5e-4,
    "weight_decay": 0.05,
    "warmup_steps": 150,
    "total_steps": 3000,
    "schedule_start_step": 0,
    "min_lr_fraction": 0.05,
    "grad_clip": 1.0,
    "temperature": 0.1,
    "bce_weight": 1.0,
    "contrastive_weight": 1.0,
    "patchout": 0.5,
    "validate_every_minutes": 10.0,
    "val_batches": 12,
    "log_every_steps": 10,
    "threads": 0,
    "data_workers": 0,
}



def _seeds(pair: Sequence[int]) -> range:
    return range(int(pair[0]), int(pair[0]) + int(pair[1]))


def load_songs(config: dict[str, Any], split: str) -> list[MultitrackSong]:
    """The split's songs from the cache, rendering the missing ones."""
    folder = Path(config["cache"]) / split
    seeds = _seeds(config["train_seeds" if split == "train" else "val_seeds"])
    paths = build_cache(seeds, folder, float(config["song_seconds"]), progress=print,
                        workers=int(config["render_workers"]),
                        recorded_voice_share=float(config.get("recorded_voice_share", 0.0)),
                        vocal_production=float(config.get("vocal_production", 0.0)))  # older configs lack them
    return [MultitrackSong.load(p) for p in paths]


def scheduled_lr(step: int, config: dict[str, Any]) -> float:
    """The learning rate at global ``step``. A fine-tuning phase (resumed from another run's
    checkpoint with a new config) restarts warm-up and decay at ``schedule_start_step``."""
    return learning_rate(max(0, step - int(config["schedule_start_step"])), config)


def sampler_config(config: dict[str, Any]) -> SamplerConfig:
    """The training config's ``sampler`` entry as a :class:`SamplerConfig`."""
    kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in config["sampler"].items()}
    return SamplerConfig(**kw)


def contrastive_loss(emb: torch.Tensor, identity: torch.Tensor, cls: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised InfoNCE (see the module docstring).

    Args:
        emb: ``(B, E)`` unit-norm embeddings; identity: ``(B,)`` source ids; cls: ``(B,)`` classes.
    """
    sim = emb @ emb.T / temperature  # (B, B)
    eye = torch.eye(emb.shape[0], dtype=torch.bool, device=emb.device)
    same_id = (identity[:, None] == identity[None, :]) & ~eye
    same_cls_other = (cls[:, None] == cls[None, :]) & ~same_id & ~eye
    logits = sim.masked_fill(eye | same_cls_other, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = same_id.float()
    per = -(log_prob.masked_fill(~same_id, 0.0) * pos).sum(1) / pos.sum(1).clamp_min(1.0)
    return per[same_id.any(1)].mean()


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties averaged); NaN without both kinds."""
    from scipy.stats import rankdata

    pos = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _embed(model: AudioSpectrogramTransformer, windows: np.ndarray, device: torch.device,
           autocast: torch.dtype | None, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    probs, embs = [], []
    with torch.inference_mode():
        for i in range(0, windows.shape[0], batch):
            x = torch.from_numpy(windows[i : i + batch]).to(device)
            with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                logits, emb = model(log_mel(x, model.config))
            probs.append(torch.sigmoid(logits.float()).cpu().numpy())
            embs.append(F.normalize(emb.float(), dim=-1).cpu().numpy())
    return np.concatenate(probs), np.concatenate(embs)


def evaluate_windows(model: AudioSpectrogramTransformer, sampler: WindowSampler, batches: int,
                     device: torch.device, autocast: torch.dtype | None = None) -> dict[str, Any]:
    """Validation on a fixed set of windows (``sampler.batch(0..batches-1)``).

    Returns per-class top-1 accuracy (anchor class = argmax, on solo and mixed views), per-class
    ROC AUC of the sigmoid against the multi-hot targets, and the embedding's separation: ROC AUC
    of cosine for same-source vs other-source pairs, and for same-class vs other-class pairs.
    """
    xs, ts, ids, cls, solos = zip(*(sampler.batch(b) for b in range(batches)), strict=True)
    x, t, solo = np.concatenate(xs), np.concatenate(ts), np.concatenate(solos)
    identity = np.concatenate([i + 10**6 * b for b, i in enumerate(ids)])
    anchor = np.concatenate(cls)
    model.eval()
    probs, emb = _embed(model, x, device, autocast)
    classes = sampler.classes
    top = probs.argmax(1)
    acc = {c: float(np.mean(top[anchor == k] == k)) for k, c in enumerate(classes) if (anchor == k).any()}
    acc_solo = {c: float(np.mean(top[(anchor == k) & solo] == k)) for k, c in enumerate(classes)
                if ((anchor == k) & solo).any()}
    auc = {c: roc_auc(probs[:, k], t[:, k] > 0) for k, c in enumerate(classes)}
    cos = emb @ emb.T
    iu = np.triu_indices(len(x), 1)
    same_id = (identity[:, None] == identity[None, :])[iu]
    same_cls = (anchor[:, None] == anchor[None, :])[iu]
    c = cos[iu]
    diff_cls = ~same_cls
    return {
        "accuracy": acc,
        "accuracy_mean": float(np.mean(list(acc.values()))),
        "accuracy_solo": acc_solo,
        "accuracy_solo_mean": float(np.mean(list(acc_solo.values()))),
        "auc": auc,
        "auc_mean": float(np.nanmean(list(auc.values()))),
        "source_auc": roc_auc(c, same_id),  # same source vs any other source
        "source_vs_other_class_auc": roc_auc(c[same_id | diff_cls], same_id[same_id | diff_cls]),
        "class_auc": roc_auc(c[~same_id], same_cls[~same_id]),  # same kind vs other kind (different sources)
        "cos_same_source": float(c[same_id].mean()),
        "cos_same_class": float(c[same_cls & ~same_id].mean()),
        "cos_other_class": float(c[diff_cls].mean()),
        "windows": int(len(x)),
    }


def evaluate_detection(model: AudioSpectrogramTransformer, songs: Sequence[MultitrackSong],
                       device: torch.device, hop_seconds: float = 0.5) -> dict[str, Any]:
    """The detector's task on held-out songs: a 1-s **solo** excerpt of each source (its loudest
    second) as the query against the song's **mix** windows; a window is positive when the source
    is within :data:`PRESENT_DB` of the loudest source there. Returns the ROC AUC of the cosine
    and of the query's top class probability, per class (mean over sources) and overall."""
    embedder = QueryEmbedder(model, device)
    win = embedder.config.window_samples
    hop = int(round(hop_seconds * SAMPLE_RATE))
    per_class: dict[str, list[tuple[float, float, bool]]] = {}
    for song in songs:
        _, probs, emb = embedder.embed_signal(song.mix, hop_seconds)
        lv = window_rms_db(song.sources, win, hop)[:, : len(emb)]
        n = lv.shape[1]
        probs, emb = probs[:n], emb[:n]
        for j, label in enumerate(song.labels):
            best = int(np.argmax(lv[j]))
            qp, qe = embedder.embed_windows(song.sources[j : j + 1, best * hop : best * hop + win])
            k = int(qp[0].argmax())
            row = (float("nan"), float("nan"), k == embedder.classes.index(label))
            present = (lv[j] > lv.max(0) + PRESENT_DB) & (lv[j] > -50)
            if present.sum() >= 2 and (~present).sum() >= 2:  # sources that come and go
                row = (roc_auc(emb @ qe[0], present), roc_auc(probs[:, k], present), row[2])
            per_class.setdefault(label, []).append(row)

    def mean(values: list[float]) -> float:
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    rows = {c: {"cosine_auc": mean([r[0] for r in v]), "class_prob_auc": mean([r[1] for r in v]),
                "detection_queries": int(sum(np.isfinite(r[0]) for r in v)),
                "query_top1": float(np.mean([r[2] for r in v])), "queries": len(v)}
            for c, v in per_class.items()}
    everything = [r for v in per_class.values() for r in v]
    return {"per_class": rows,
            "cosine_auc": mean([r[0] for r in everything]),
            "class_prob_auc": mean([r[1] for r in everything]),
            "detection_queries": int(sum(np.isfinite(r[0]) for r in everything)),
            "query_top1": float(np.mean([r[2] for r in everything])),
            "queries": len(everything), "songs": len(songs)}


def plot_curve(log: list[dict[str, Any]], path: Path) -> None:
    """Training losses and validation metrics against the step, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in log if r.get("type") == "train"]
    val = [r for r in log if r.get("type") == "val"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        steps = [r["step"] for r in train]
        for key in ("loss", "bce", "contrastive"):
            a1.plot(steps, [r[key] for r in train], lw=0.8, label=key)
        a1.set_yscale("log")
        a1.legend()
    a1.set_xlabel("step")
    a1.set_title("training loss")
    a1.grid(alpha=0.3)
    if val:
        steps = [r["step"] for r in val]
        for key in ("accuracy_mean", "auc_mean", "source_auc", "class_auc"):
            a2.plot(steps, [r[key] for r in val], marker="o", ms=3, label=key)
        a2.legend()
    a2.set_xlabel("step")
    a2.set_title("held-out songs")
    a2.grid(alpha=0.3)
    fig.suptitle("AST (classes + contrastive embedding)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


class _BatchDataset(torch.utils.data.Dataset[tuple[torch.Tensor, ...]]):
    """Step ``k`` → the sampler's batch ``k`` (for DataLoader workers on a GPU machine)."""

    def __init__(self, sampler: WindowSampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, step: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(a) for a in self.sampler.batch(step))


def _batches(sampler: WindowSampler, start: int, workers: int, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    if workers <= 0:
        step = start
        while True:
            yield tuple(torch.from_numpy(a).to(device) for a in sampler.batch(step))
            step += 1
    loader = torch.utils.data.DataLoader(_BatchDataset(sampler), batch_size=None, num_workers=workers,
                                         sampler=range(start, 10**9), pin_memory=device.type == "cuda",
                                         prefetch_factor=4)
    for batch in loader:
        yield tuple(a.to(device, non_blocking=True) for a in batch)


@torch.no_grad()
def input_statistics(sampler: WindowSampler, config: AstConfig, batches: int = 4) -> tuple[float, float]:
    """Mean and std (dB) of the reference-level log-mel over a few training batches."""
    raw = AstConfig(**{**config.to_json(), "classes": config.classes, "norm_mean_db": 0.0, "norm_std_db": 0.5})
    vals = torch.cat([log_mel(torch.from_numpy(sampler.batch(10**8 + k)[0]), raw).flatten() for k in range(batches)])
    return float(vals.mean()), float(vals.std())


def _as_checkpointable(model: AudioSpectrogramTransformer) -> SpectrogramUNet:
    # engine.training.checkpoint only uses state_dict/named_parameters/config.to_json, which the
    # AST has too; its annotations name the U-Net.
    return cast(SpectrogramUNet, model)


def train(config: dict[str, Any], out_dir: str | Path, minutes: float, resume: str | Path | None = None,
          device: str = "auto", quiet: bool = False, max_steps: int | None = None) -> dict[str, Any]:
    """Train for about ``minutes`` of wall time (or to global step ``max_steps``); returns the
    checkpoint sidecar."""
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

    train_songs, val_songs = load_songs(config, "train"), load_songs(config, "val")
    model_cfg = AstConfig(**{**config["model"], "classes": CLASSES})
    sampler_cfg = sampler_config(config)
    sampler = WindowSampler(train_songs, CLASSES, model_cfg.window_samples, sampler_cfg, int(config["seed"]))
    val_sampler = WindowSampler(val_songs, CLASSES, model_cfg.window_samples, sampler_cfg, 12345)
    log_path = out / LOG_NAME
    step, examples, train_seconds = 0, 0, 0.0
    if resume is not None and str(resume) == "auto":
        resume = out / CHECKPOINT_NAME if (out / CHECKPOINT_NAME).is_file() else None
    tensors: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] = {}
    if resume is not None:
        tensors, meta = read_checkpoint(resume)
        model_cfg = AstConfig.from_json(meta["model_config"])
    else:
        mean, std = input_statistics(sampler, model_cfg)
        model_cfg = AstConfig(**{**model_cfg.to_json(), "classes": model_cfg.classes,
                                 "norm_mean_db": round(mean, 3), "norm_std_db": round(std, 3)})
    model = AudioSpectrogramTransformer(model_cfg).to(dev)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and "pos_embed" not in n and "cls_token" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() > 1 and "pos_embed" not in n and "cls_token" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": float(config["weight_decay"])},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=float(config["lr"]))
    if tensors is not None and resume is not None:
        restore(_as_checkpointable(model), optimizer, tensors, meta)
        step, examples = int(meta["step"]), int(meta["examples"])
        train_seconds = float(meta.get("train_seconds", 0.0))
        prev_log = Path(resume).with_name(LOG_NAME)
        if prev_log.is_file() and prev_log.resolve() != log_path.resolve():
            shutil.copyfile(prev_log, log_path)
        say(f"resumed from {resume} at step {step}")
    elif log_path.exists():
        log_path.unlink()
    window_seconds = model_cfg.window_seconds
    run_record = {
        "type": "run", "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(dev), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "resume_from": str(resume) if resume else None, "step": step, "minutes": minutes, "config": config,
        "model_config": model_cfg.to_json(), "parameters": parameter_count(model),
        "train_songs": len(train_songs), "val_songs": len(val_songs),
        "train_identities": sampler.class_counts(), "val_identities": val_sampler.class_counts(),
    }
    append_log(log_path, run_record)
    say(f"{run_record['parameters']} parameters, {len(train_songs)} training songs "
        f"({len(sampler.identities)} sources), device {dev}")

    last_val: dict[str, Any] | None = None
    val_seconds = 0.0

    def run_validation() -> None:
        nonlocal last_val, val_seconds
        t = time.perf_counter()
        v = evaluate_windows(model, val_sampler, int(config["val_batches"]), dev, autocast)
        model.train()
        val_seconds = time.perf_counter() - t
        record = {"type": "val", "step": step, **v, "seconds": round(val_seconds, 2),
                  "hours_seen": examples * window_seconds / 3600}
        append_log(log_path, record)
        last_val = record
        say(f"validation at step {step}: top-1 {v['accuracy_mean']:.3f} (solo {v['accuracy_solo_mean']:.3f}), class AUC {v['auc_mean']:.3f}, "
            f"same-source AUC {v['source_auc']:.3f}, same-class AUC {v['class_auc']:.3f}")

    if step == 0:
        run_validation()
    model.train()
    batches = _batches(sampler, step, int(config["data_workers"]), dev)
    last_val_time = time.perf_counter()
    window: list[tuple[float, float, float]] = []
    t_window = time.perf_counter()
    reserve = 10.0
    while True:
        now = time.perf_counter()
        step_time = (now - t_window) / max(len(window), 1) if window else 5.0
        if now + max(val_seconds * 1.5, 5.0) + reserve + step_time > deadline:
            break
        if max_steps is not None and step >= max_steps:
            break
        if (now - last_val_time > float(config["validate_every_minutes"]) * 60
                and now + 3 * max(val_seconds, 5.0) + reserve < deadline):
            run_validation()
            last_val_time = time.perf_counter()
        lr = scheduled_lr(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t_step = time.perf_counter()
        x, target, identity, cls, _ = next(batches)
        with torch.autocast(dev.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            logits, emb = model(log_mel(x, model_cfg), float(config["patchout"]))
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        con = contrastive_loss(F.normalize(emb.float(), dim=-1), identity, cls, float(config["temperature"]))
        loss = float(config.get("bce_weight", 1.0)) * bce + float(config["contrastive_weight"]) * con
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float(config["grad_clip"]))
        optimizer.step()
        train_seconds += time.perf_counter() - t_step
        step += 1
        examples += x.shape[0]
        window.append((float(loss.detach()), float(bce.detach()), float(con.detach())))
        if step % int(config["log_every_steps"]) == 0:
            elapsed = time.perf_counter() - t_window
            mean = np.mean(window, axis=0)
            append_log(log_path, {
                "type": "train", "step": step, "loss": float(mean[0]), "bce": float(mean[1]),
                "contrastive": float(mean[2]), "lr": lr, "grad_norm": float(grad_norm),
                "steps_per_second": len(window) / max(elapsed, 1e-9),
                "hours_seen": examples * window_seconds / 3600,
            })
            if not quiet and step % (5 * int(config["log_every_steps"])) == 0:
                say(f"step {step} loss {mean[0]:.4f} (bce {mean[1]:.4f}, contrastive {mean[2]:.4f}) "
                    f"lr {lr:.2e} ({len(window) / max(elapsed, 1e-9):.2f} steps/s)")
            window = []
            t_window = time.perf_counter()
    if last_val is None or last_val["step"] != step:
        run_validation()
    assert last_val is not None
    meta = {
        "step": step, "examples": examples, "train_seconds": train_seconds,
        "hours_seen": examples * window_seconds / 3600, "config": config,
        "last_validation": last_val, "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    sidecar = save_checkpoint(out / CHECKPOINT_NAME, _as_checkpointable(model), optimizer, meta)
    plot_curve(read_log(log_path), out / CURVE_NAME)
    say(f"saved {out / CHECKPOINT_NAME} at step {step}; {meta['hours_seen']:.2f} h of windows seen")
    return sidecar


CPU_STATUS = ("CPU-trained model (no GPU was available): trained from scratch on one CPU for about "
              "{minutes:.0f} minutes on synthesized songs only. Expect weaker results on real "
              "recordings; a GPU run (engine/training/configs/ast_gpu.json) should replace it.")


def _card_markdown(card: dict[str, Any]) -> str:
    arch = card["architecture"]
    v, d = card["validation"]["windows"], card["validation"]["detection"]
    lines = [f"# Model card: `{card['name']}`", "", f"> **{card['status']}**", "", card["summary"], "",
             "## Architecture", "",
             f"- input: {arch['sample_rate']} Hz mono, {arch['window_seconds']} s windows → "
             f"{arch['n_mels']}-band log-mel (n_fft {arch['n_fft']}, hop {arch['hop']}, "
             f"{arch['fmin_hz']:.0f}–{arch['fmax_hz']:.0f} Hz), window scaled to {arch['reference_rms_db']} dBFS RMS "
             f"(gain clamped ±{arch['max_gain_db']} dB), normalised with mean {arch['norm_mean_db']} dB / std "
             f"{arch['norm_std_db']} dB",
             f"- {arch['patch']}×{arch['patch']} patches, stride {arch['patch_stride']} ({card['tokens']} tokens with "
             f"[CLS]), learned positional embeddings, {arch['depth']} pre-norm transformer layers, width "
             f"{arch['dim']}, {arch['heads']} heads, MLP ×{arch['mlp_ratio']}",
             f"- outputs: {len(arch['classes'])} class logits (multi-label, **sigmoid**): "
             f"{', '.join(arch['classes'])}; a {arch['embed_dim']}-d L2-normalised embedding",
             f"- parameters: {card['parameters']}; weights `{card['weights']}` ({card['weights_dtype']}, "
             f"{card['weights_bytes']} bytes); sha256 `{card['sha256']}`", "",
             "## Training data", ""]
    lines += [f"- {k.replace('_', ' ')}: {val}" for k, val in card["data"].items()]
    lines += ["", "## Training", ""]
    lines += [f"- {k.replace('_', ' ')}: {val}" for k, val in card["training"].items()]
    lines += ["", "## Validation (held-out songs from disjoint seeds)", "",
              f"Windows ({v['windows']}: 1-s views of each source, solo or under other material): "
              f"same-source vs other-source cosine ROC AUC **{v['source_auc']:.3f}**, same-class vs "
              f"other-class (different sources) **{v['class_auc']:.3f}**; mean cosine same source "
              f"{v['cos_same_source']:.2f}, same class {v['cos_same_class']:.2f}, other class "
              f"{v['cos_other_class']:.2f}.", "",
              f"Detection ({d['songs']} songs): the loudest 1-s solo excerpt of each source as the query "
              f"({d['queries']} queries; 'query top-1': its top class is right), against the mix's windows "
              f"(1 s, hop 0.5 s); a window is positive where that source is within {-PRESENT_DB:.0f} dB of "
              f"the loudest source. ROC AUCs over the {d['detection_queries']} sources that come and go "
              "(sources present in every window, usually drums and bass, have no negatives).", "",
              "Top-1 accuracy: the window's anchor source's class is the highest probability (all views; "
              "solo views in brackets).", "",
              "| class | top-1 accuracy (windows) | class ROC AUC (windows) | detection AUC, cosine | "
              "detection AUC, class prob. | query top-1 |", "|---|---|---|---|---|---|"]
    for c in arch["classes"]:
        row = d["per_class"].get(c, {})
        lines.append(f"| {c} | {v['accuracy'].get(c, float('nan')):.3f} ({v['accuracy_solo'].get(c, float('nan')):.3f}) | "
                     f"{v['auc'].get(c, float('nan')):.3f} | "
                     f"{row.get('cosine_auc', float('nan')):.3f} | {row.get('class_prob_auc', float('nan')):.3f} | "
                     f"{row.get('query_top1', float('nan')):.2f} ({row.get('queries', 0)}) |")
    lines.append(f"| **mean** | {v['accuracy_mean']:.3f} ({v['accuracy_solo_mean']:.3f}) | {v['auc_mean']:.3f} | "
                 f"{d['cosine_auc']:.3f} | "
                 f"{d['class_prob_auc']:.3f} | {d['query_top1']:.2f} ({d['queries']}) |")
    lines += ["", "## Limitations", "", card["limitations"], "", f"Date: {card['date']}", ""]
    return "\n".join(lines)


def _share_text(config: dict[str, Any]) -> str:
    share = float(config.get("recorded_voice_share", 0.0))
    text = f"{share:.0%} of songs sung by recorded-speaker voices" if share > 0 else "espeak-ng voices only"
    produced = float(config.get("vocal_production", 0.0))
    return text + (f", {produced:.0%} with a record's vocal production" if produced > 0 else "")


def _schedule_text(config: dict[str, Any]) -> str:
    start = int(config.get("schedule_start_step", 0))
    text = (f"warm-up {config['warmup_steps']}, cosine to {config['min_lr_fraction']}× at step "
            f"{start + int(config['total_steps'])}")
    return f"the last phase from step {start}: {text}" if start else text


def _voices_text(runs: list[dict[str, Any]]) -> str:
    """How the training songs were sung, run by run (a fine-tuning phase can change it)."""
    shares = [float(r["config"].get("recorded_voice_share", 0.0)) for r in runs]
    if not any(shares):
        return "espeak-ng formant voices re-sung with WORLD"
    first = next(r["step"] for r, sh in zip(runs, shares, strict=True) if sh > 0)
    text = (f"espeak-ng formant voices re-sung with WORLD; from step {first}, "
            f"{max(shares):.0%} of songs sung by flite's recorded-speaker voices "
            f"(CMU ARCTIC slt, rms, awb and the kal diphones) re-sung the same way "
            "(engine.synth.singer.RECORDED_VOICES)")
    produced = [(r["step"], float(r["config"].get("vocal_production", 0.0))) for r in runs]
    if any(p > 0 for _, p in produced):
        step, share = next((s, p) for s, p in produced if p > 0)
        text += (f"; from step {step}, {share:.0%} of songs with a record's vocal production (a doubled take, "
                 "a parallel harmony line, compression, saturation, echo, a telephone EQ, each drawn with its "
                 "own chance: engine.training.ast_data.produce_vocal)")
    return text


def export(checkpoint: str | Path, out_dir: str | Path = "resources/models", name: str = "ast",
           logs_dir: str | Path | None = "resources/models/logs", date: str | None = None,
           status: str | None = None) -> dict[str, Any]:
    """Write ``NAME.safetensors`` (float16) + ``NAME.json`` + ``NAME.md``; evaluate the shipped file."""
    tensors, meta = read_checkpoint(checkpoint)
    config = AstConfig.from_json(meta["model_config"])
    model = AudioSpectrogramTransformer(config)
    restore(_as_checkpointable(model), None, tensors, meta)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}.safetensors"
    sha = save_ast_weights(model, weights, torch.float16)
    train_cfg = meta["config"]
    log = read_log(Path(checkpoint).with_name(LOG_NAME))
    runs = [r for r in log if r.get("type") == "run"]
    train_minutes = sum(float(r["minutes"]) for r in runs)
    devices = sorted({r["device"] for r in runs})
    card: dict[str, Any] = {
        "name": name,
        "status": status or (CPU_STATUS.format(minutes=train_minutes) if devices == ["cpu"] else ""),
        "summary": ("Audio Spectrogram Transformer for query-by-example: classifies 1-s windows into "
                    "source classes (multi-label) and embeds them so that cosine similarity means "
                    "'same kind of sound'."),
        "architecture": config.to_json(), "tokens": config.tokens, "parameters": parameter_count(model),
        "weights": weights.name, "weights_dtype": "float16", "weights_bytes": weights.stat().st_size,
        "sha256": sha,
        "data": {
            "source": "songs synthesized by engine.synth parts (fluidsynth GM soundfont + WORLD singer), "
                      "every instrument track rendered on its own (engine/training/ast_data.py)",
            "voices": _voices_text(runs),
            "train_songs": f"{train_cfg['train_seeds'][1]} songs × {train_cfg['song_seconds']} s "
                           f"(seeds {train_cfg['train_seeds'][0]}…), "
                           f"{train_cfg['train_seeds'][1] * train_cfg['song_seconds'] / 3600:.2f} h of mixes",
            "validation_songs": f"{train_cfg['val_seeds'][1]} songs (seeds {train_cfg['val_seeds'][0]}…, disjoint)",
            "class_programs": {k: list(v) for k, v in FAMILY_PROGRAMS.items()},
            "train_sources_per_class": runs[-1]["train_identities"] if runs else {},
            "windows": "1 s at 16 kHz; per batch 2 views of each source (solo, or with other sources of the "
                       "same song mixed 18 dB below to 3 dB above it), random gain −20…+10 dB",
        },
        "training": {
            "device": ", ".join(devices), "threads": runs[-1]["threads"] if runs else None,
            "steps": meta["step"], "batch": f"{sampler_config(train_cfg).identities * sampler_config(train_cfg).views} windows",
            "windows_seen": meta["examples"], "hours_of_windows_seen": round(float(meta["hours_seen"]), 2),
            "wall_minutes": round(train_minutes, 1),
            "loss": f"{train_cfg.get('bce_weight', 1.0)} × BCE (multi-label classes) + "
                    f"{train_cfg['contrastive_weight']} × supervised InfoNCE "
                    f"(temperature {train_cfg['temperature']}; positives: same source; same-class "
                    "sources excluded from the denominator)",
            "optimizer": f"AdamW lr {train_cfg['lr']} ({_schedule_text(train_cfg)}), weight decay "
                         f"{train_cfg['weight_decay']}",
            "runs": "; ".join(f"from step {r['step']}: {r['minutes']:g} min on {r['device']} "
                              f"({r['threads']} thread{'s' if r['threads'] != 1 else ''}), BCE weight "
                              f"{r['config'].get('bce_weight', 1.0)}, {r['train_songs']} songs in "
                              f"{r['config']['cache']} ({_share_text(r['config'])})" for r in runs),
        },
        "limitations": ("Trained only on synthesized General-MIDI songs and WORLD-resynthesised singers (TTS "
                        "voices, some built from recordings of real speakers, never real singing): timbres of "
                        "real recordings (real drum kits, real voices, effects) are out of distribution. Classes are instrument families of the synthesizer; anything else "
                        "(speech, noise, sound effects) maps to the nearest family. Probabilities are "
                        "uncalibrated sigmoids."),
        "date": date or datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    (out / f"{name}.json").write_text(json.dumps(card, indent=2, default=float) + "\n")
    loaded, _ = load_ast(weights)  # the shipped float16 file, through the verified loader
    dev = torch.device("cpu")
    val_songs = load_songs(train_cfg, "val")
    sampler_cfg = sampler_config(train_cfg)
    val_sampler = WindowSampler(val_songs, CLASSES, config.window_samples, sampler_cfg, 12345)
    card["validation"] = {
        "windows": evaluate_windows(loaded, val_sampler, int(train_cfg["val_batches"]), dev),
        "detection": evaluate_detection(loaded, val_songs, dev),
    }
    (out / f"{name}.json").write_text(json.dumps(card, indent=2, default=float) + "\n")
    (out / f"{name}.md").write_text(_card_markdown(card))
    if logs_dir is not None:
        copy_training_logs(checkpoint, logs_dir, name)
    return card


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Render data for, train and export the query AST.")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="synthesize the training and validation songs into the cache")
    r.add_argument("--config")
    r.add_argument("--workers", type=int, dest="render_workers", help="rendering processes (overrides the config)")
    t = sub.add_parser("train", help="train in a resumable step")
    t.add_argument("--config", help="JSON config (defaults: engine.training.ast_train.DEFAULT_CONFIG)")
    t.add_argument("--out", required=True, help="folder for checkpoint, log and curve")
    t.add_argument("--minutes", type=float, default=9.0, help="wall-time budget of this run")
    t.add_argument("--resume", help="checkpoint to continue from, or 'auto'")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    t.add_argument("--threads", type=int)
    t.add_argument("--data-workers", type=int, dest="data_workers")
    t.add_argument("--max-steps", type=int, dest="max_steps")
    t.add_argument("--quiet", action="store_true")
    e = sub.add_parser("export", help="write resources/models/ast.* from a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--out", default="resources/models")
    e.add_argument("--name", default="ast")
    e.add_argument("--logs-dir", default="resources/models/logs")
    e.add_argument("--date", help="date for the card (default: today, UTC)")
    a = ap.parse_args(argv)
    try:
        if a.command == "export":
            card = export(a.checkpoint, a.out, a.name, a.logs_dir, a.date)
            print(json.dumps(card["validation"], indent=1, default=float))
            return 0
        cfg = _load_config(getattr(a, "config", None), {"threads": getattr(a, "threads", None),
                                                       "data_workers": getattr(a, "data_workers", None),
                                                       "render_workers": getattr(a, "render_workers", None)})
        if a.command == "render":
            load_songs(cfg, "val")
            load_songs(cfg, "train")
        else:
            train(cfg, a.out, a.minutes, a.resume, a.device, a.quiet, a.max_steps)
    except InputError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    return 0


def _load_config(path: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """:data:`DEFAULT_CONFIG` updated by the JSON file at ``path`` and the non-None overrides."""
    cfg: dict[str, Any] = json.loads(json.dumps(DEFAULT_CONFIG))
    if path:
        try:
            user = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the training config ({exc})", path) from exc
        unknown = set(user) - set(cfg)
        if unknown:
            raise InputError(f"unknown config keys {sorted(unknown)}", path)
        cfg.update(user)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


if __name__ == "__main__":
    raise SystemExit(main())
