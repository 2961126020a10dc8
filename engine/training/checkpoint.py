"""Training checkpoints: model + AdamW state in one safetensors file and a JSON sidecar.

``checkpoint.safetensors`` holds ``model/<name>`` (float32 parameters and BatchNorm buffers)
and ``optim/<index>/exp_avg``, ``optim/<index>/exp_avg_sq`` (float32, or bfloat16 when float32
would exceed ``max_bytes``), ``optim/<index>/step``. ``checkpoint.json`` holds the step, the
training configuration, the model architecture, the parameter order, counters and the last
validation, and the SHA-256 of the tensors file (checked on load). Never a pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from engine.errors import InputError
from engine.files import atomic_path, atomic_write_text
from engine.models.unet import SpectrogramUNet
from engine.models.weights import sha256_of

FORMAT = "unmix-unet-checkpoint/1"
MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024


def save_checkpoint(
    path: str | Path,
    model: SpectrogramUNet,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> dict[str, Any]:
    """Write ``path`` (.safetensors) and its ``.json`` sidecar atomically; returns the sidecar."""
    p = Path(path)
    params = [p_ for g in optimizer.param_groups for p_ in g["params"]]
    names = {id(t): n for n, t in model.named_parameters()}
    state_bytes = sum(t.numel() * 4 for t in model.state_dict().values())
    moment_numel = sum(t.numel() for t in params)
    moments_dtype = torch.float32 if state_bytes + moment_numel * 8 + 65536 <= max_bytes else torch.bfloat16
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        tensors[f"model/{name}"] = t.detach().cpu().contiguous() if not t.is_floating_point() else t.detach().float().cpu().contiguous()
    for i, param in enumerate(params):
        st = optimizer.state.get(param, {})
        if "exp_avg" in st:
            tensors[f"optim/{i}/exp_avg"] = st["exp_avg"].detach().to(moments_dtype).cpu().contiguous()
            tensors[f"optim/{i}/exp_avg_sq"] = st["exp_avg_sq"].detach().to(moments_dtype).cpu().contiguous()
            tensors[f"optim/{i}/step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1).cpu()
    with atomic_path(p) as tmp:
        save_file(tensors, str(tmp))
    size = p.stat().st_size
    if size > max_bytes:
        raise ValueError(f"checkpoint {p} is {size} bytes, over the {max_bytes}-byte limit")
    sidecar = dict(meta)
    sidecar.update({
        "format": FORMAT,
        "model_config": model.config.to_json(),
        "param_order": [names[id(t)] for t in params],
        "optimizer": {k: v for k, v in optimizer.param_groups[0].items() if k != "params"},
        "moments_dtype": str(moments_dtype).replace("torch.", ""),
        "bytes": size,
        "sha256": sha256_of(p),
    })
    atomic_write_text(p.with_suffix(".json"), json.dumps(sidecar, indent=1, default=float) + "\n")
    return sidecar


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and sidecar of a checkpoint, verified against the sidecar's SHA-256."""
    p = Path(path)
    side = p.with_suffix(".json")
    if not p.is_file() or not side.is_file():
        raise InputError("checkpoint or its .json sidecar is missing", p)
    meta: dict[str, Any] = json.loads(side.read_text())
    if meta.get("format") != FORMAT:
        raise InputError(f"not a U-Net checkpoint (format {meta.get('format')!r})", side)
    if sha256_of(p) != meta.get("sha256"):
        raise InputError("checkpoint does not match the SHA-256 in its sidecar (modified or corrupt)", p)
    return load_file(str(p)), meta


def restore(model: SpectrogramUNet, optimizer: torch.optim.Optimizer | None, tensors: dict[str, torch.Tensor],
            meta: dict[str, Any]) -> None:
    """Load model weights (and optimizer moments/steps, if given) from a checkpoint's tensors."""
    device = next(model.parameters()).device
    state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    model.load_state_dict(state, strict=True)
    if optimizer is None:
        return
    params = [p_ for g in optimizer.param_groups for p_ in g["params"]]
    names = {id(t): n for n, t in model.named_parameters()}
    if [names[id(t)] for t in params] != meta["param_order"]:
        raise InputError("checkpoint's parameter order does not match this model")
    for i, param in enumerate(params):
        key = f"optim/{i}/exp_avg"
        if key in tensors:
            optimizer.state[param] = {
                "step": tensors[f"optim/{i}/step"].reshape(()).clone(),
                "exp_avg": tensors[key].to(device=device, dtype=param.dtype),
                "exp_avg_sq": tensors[f"optim/{i}/exp_avg_sq"].to(device=device, dtype=param.dtype),
            }
