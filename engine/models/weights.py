"""Shipped weights: safetensors files with a model card beside them, verified before loading.

A model named ``NAME`` in a models folder is three files::

    NAME.safetensors   the network's tensors (float16 or float32); never a pickle
    NAME.json          the card, machine-readable: architecture, data recipe, training, metrics,
                       date and the weights' SHA-256
    NAME.md            the same card for people

Loading reads the card, hashes the weights file and refuses (``InputError`` naming the file) when
the hash differs, then reads the tensors with ``safetensors`` (plain data, no code) into a network
built from the card's architecture. Nothing here ever unpickles.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.errors import InputError
from engine.files import atomic_path
from engine.models.unet import SpectrogramUNet, UNetConfig

#: The folder of the shipped models.
MODELS_DIR = Path(__file__).resolve().parents[2] / "resources" / "models"
#: Shipped names per stem count.
DEFAULT_MODELS = {2: "unet2", 4: "unet4"}
#: Largest weights file we ship or accept from a checkpoint step (bytes).
MAX_WEIGHTS_BYTES = 16 * 1024 * 1024


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def model_state(model: SpectrogramUNet, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The tensors to ship: parameters in ``dtype``; BatchNorm statistics kept in float32
    (a running variance can exceed float16's range); the step counter dropped."""
    out: dict[str, torch.Tensor] = {}
    params = {name for name, _ in model.named_parameters()}
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        t = tensor.detach().cpu()
        out[name] = (t.to(dtype) if name in params else t.float()).contiguous()
    return out


def save_weights(model: SpectrogramUNet, path: str | Path, dtype: torch.dtype = torch.float16) -> str:
    """Write the model's tensors to ``path`` (safetensors, atomically); returns their SHA-256."""
    p = Path(path)
    with atomic_path(p, mode=0o644) as tmp:
        save_file(model_state(model, dtype), str(tmp), metadata={"config": json.dumps(model.config.to_json())})
    size = p.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise ValueError(f"{p}: {size} bytes exceeds the {MAX_WEIGHTS_BYTES}-byte weights limit")
    return sha256_of(p)


def write_model_card(folder: str | Path, name: str, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``NAME.json`` and ``NAME.md``. ``card`` must hold ``sha256`` and ``architecture``;
    the Markdown is generated from it (one source of truth)."""
    folder = Path(folder)
    for key in ("sha256", "architecture", "weights"):
        if key not in card:
            raise ValueError(f"model card lacks '{key}'")
    json_path = folder / f"{name}.json"
    md_path = folder / f"{name}.md"
    json_path.write_text(json.dumps(card, indent=2) + "\n")
    md_path.write_text(card_markdown(name, card))
    return json_path, md_path


def card_markdown(name: str, card: dict[str, Any]) -> str:
    """Human-readable model card from the JSON card."""
    arch = card["architecture"]
    lines = [f"# Model card: `{name}`", ""]
    if card.get("status"):
        lines += [f"> **{card['status']}**", ""]
    lines += [card.get("summary", ""), "", "## Architecture", ""]
    lines += [f"- stems: {', '.join(arch['stems'])}",
              f"- internal audio: {arch['sample_rate']} Hz, STFT n_fft {arch['n_fft']}, hop {arch['hop']} "
              f"(periodic Hann, `engine.spectral` convention); the network sees the lowest {arch['model_bins']} bins",
              f"- encoder widths {arch['widths']}, time strides {arch['time_strides']}, kernels "
              f"{arch['encoder_kernel']} (encoder) / {arch['decoder_kernel']} (decoder)",
              f"- parameters: {card.get('parameters', '?')}; weights `{card['weights']}` "
              f"({card.get('weights_dtype', '?')}, {card.get('weights_bytes', '?')} bytes)",
              f"- sha256: `{card['sha256']}`", ""]
    data = card.get("data", {})
    if data:
        lines += ["## Training data", ""]
        for key, value in data.items():
            lines.append(f"- {key.replace('_', ' ')}: {value}")
        lines.append("")
    training = card.get("training", {})
    if training:
        lines += ["## Training", ""]
        for key, value in training.items():
            lines.append(f"- {key.replace('_', ' ')}: {value}")
        lines.append("")
    metrics = card.get("validation", {})
    if metrics:
        lines += ["## Validation (held-out songs, never seen in training)", "",
                  "| stem | " + " | ".join(metrics.get("columns", [])) + " |",
                  "|---|" + "---|" * len(metrics.get("columns", []))]
        for stem, row in metrics.get("rows", {}).items():
            lines.append(f"| {stem} | " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
        if metrics.get("note"):
            lines += ["", metrics["note"]]
        lines.append("")
    if card.get("limitations"):
        lines += ["## Limitations", "", card["limitations"], ""]
    lines += [f"Date: {card.get('date', '?')}", ""]
    return "\n".join(lines)


def read_card(weights_path: Path) -> dict[str, Any]:
    card_path = weights_path.with_suffix(".json")
    if not card_path.is_file():
        raise InputError("has no model card (NAME.json) beside it; refusing to load unverified weights", weights_path)
    try:
        card: dict[str, Any] = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"model card is unreadable ({exc})", card_path) from exc
    if not isinstance(card, dict) or "sha256" not in card or "architecture" not in card:
        raise InputError("model card lacks 'sha256' or 'architecture'", card_path)
    return card


def resolve_weights(name_or_path: str | Path, models_dir: str | Path | None = None) -> Path:
    """``"unet2"`` → ``MODELS_DIR/unet2.safetensors``; a path is taken as it is."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.is_absolute() or len(p.parts) > 1:
        return p
    return Path(models_dir or MODELS_DIR) / f"{name_or_path}.safetensors"


def verified_tensors(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The card and the tensors of a safetensors file whose SHA-256 matches its card.

    Raises:
        InputError: weights or card missing, SHA-256 mismatch (tampered or corrupt file), or not
            a safetensors file (each naming the file).
    """
    if not path.is_file():
        raise InputError("model weights not found (were resources/models shipped?)", path)
    card = read_card(path)
    actual = sha256_of(path)
    if actual != card["sha256"]:
        raise InputError(
            f"weights do not match the SHA-256 in their model card (expected {card['sha256'][:12]}…, "
            f"got {actual[:12]}…): the file was modified or is corrupt; refusing to load it", path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"not a readable safetensors file ({exc})", path) from exc
    return card, tensors


def load_model(
    name_or_path: str | Path,
    models_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> tuple[SpectrogramUNet, dict[str, Any]]:
    """Load a U-Net by name (from ``models_dir``) or path, verified against its card.

    Returns:
        ``(model in eval mode on device, card dict)``.

    Raises:
        InputError: weights or card missing, SHA-256 mismatch (tampered or corrupt file),
            not a safetensors file, or tensors that do not fit the card's architecture.
    """
    path = resolve_weights(name_or_path, models_dir)
    card, tensors = verified_tensors(path)
    try:
        config = UNetConfig.from_json(card["architecture"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"model card architecture is invalid ({exc})", path.with_suffix(".json")) from exc
    model = SpectrogramUNet(config)
    state = {k: v.float() for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise InputError(f"weights do not fit the card's architecture (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})", path)
    return model.to(device).eval(), card
