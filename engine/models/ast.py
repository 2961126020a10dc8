"""The Audio Spectrogram Transformer (AST) behind query-by-example: classify and embed 1-s windows.

Only the network, its input transform and a small batched embedder live here (detection, mask
optimisation and the CLI are :mod:`engine.separators.query`; training is
:mod:`engine.training.ast_train`).

Shape names: ``B`` windows in a batch, ``M`` mel bands, ``T`` log-mel frames, ``P`` patches,
``D`` transformer width, ``E`` embedding size, ``K`` classes.

The architecture is the published AST (Gong et al., 2021), sized for CPU speed:

* input: a 16 kHz mono window, scaled to a reference RMS (gain clamped to ±40 dB, so silence
  stays quiet), 128-band log-mel power in dB (n_fft 400 = 25 ms, hop 160 = 10 ms, periodic Hann,
  ``engine.spectral`` STFT), normalised with the training data's mean and spread
  (``(x − mean) / (2·std)``, as AST does);
* 16×16 patches with overlap (stride 10 in mel and time) → a linear projection to ``D``;
* a learned [CLS] token and learned positional embeddings, a pre-norm transformer encoder;
* output: the [CLS] token and the mean of the patch tokens, averaged (AST averages its two
  special tokens), feed a classifier (``K`` logits: multi-label, read with a sigmoid, because a
  window of a mix holds several sources at once) and an embedding head (``E`` values,
  L2-normalised: cosine similarity = "same kind of sound").
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from engine.errors import InputError
from engine.files import atomic_path
from engine.models.weights import MAX_WEIGHTS_BYTES, MODELS_DIR, sha256_of, verified_tensors
from engine.spectral import StftConfig, stft

#: Default class names (the instrument families the synthesizer renders; see
#: :mod:`engine.training.ast_data` for the General MIDI programs in each).
DEFAULT_CLASSES = ("vocals", "drums", "bass", "keys", "organ", "guitar", "strings", "brass",
                   "synth_lead", "synth_pad")
#: The shipped weights' name in :data:`engine.models.weights.MODELS_DIR`.
DEFAULT_NAME = "ast"


@dataclass(frozen=True)
class AstConfig:
    """Everything that defines the AST and the signal it expects.

    Attributes:
        sample_rate: rate of the windows (Hz); mono.
        window_seconds: length of one window (s).
        n_mels, n_fft, hop, fmin_hz, fmax_hz: the log-mel (Slaney mel scale and norm).
        reference_rms_db: each window is scaled to this RMS (dBFS) before the log-mel, with the
            gain clamped to ±``max_gain_db``.
        norm_mean_db, norm_std_db: the training data's log-mel statistics (set by training).
        patch, patch_stride: square patch size and stride (mel bands and frames).
        dim, depth, heads, mlp_ratio: the transformer encoder.
        embed_dim: size of the L2-normalised embedding.
        classes: class names, in logit order (multi-label; read with a sigmoid).
    """

    sample_rate: int = 16000
    window_seconds: float = 1.0
    n_mels: int = 128
    n_fft: int = 400
    hop: int = 160
    fmin_hz: float = 20.0
    fmax_hz: float = 8000.0
    reference_rms_db: float = -20.0
    max_gain_db: float = 40.0
    norm_mean_db: float = -40.0
    norm_std_db: float = 20.0
    patch: int = 16
    patch_stride: int = 10
    dim: int = 192
    depth: int = 4
    heads: int = 3
    mlp_ratio: float = 4.0
    embed_dim: int = 128
    dropout: float = 0.0
    classes: tuple[str, ...] = DEFAULT_CLASSES
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.dim % self.heads != 0:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if self.n_mels < self.patch or self.frames < self.patch:
            raise ValueError("the log-mel is smaller than one patch")
        if not self.classes:
            raise ValueError("at least one class is needed")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def frames(self) -> int:
        """Log-mel frames of one window (centred STFT)."""
        return self.window_samples // self.hop + 1

    @property
    def patch_grid(self) -> tuple[int, int]:
        """Patches along mel and time."""
        return ((self.n_mels - self.patch) // self.patch_stride + 1,
                (self.frames - self.patch) // self.patch_stride + 1)

    @property
    def tokens(self) -> int:
        """Patch tokens plus [CLS]."""
        fm, ft = self.patch_grid
        return fm * ft + 1

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(d["classes"])
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AstConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown AST config keys {sorted(unknown)}")
        kw: dict[str, Any] = dict(d)
        if "classes" in kw:
            kw["classes"] = tuple(kw["classes"])
        return cls(**kw)


@lru_cache(maxsize=8)
def _mel_basis_np(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    import librosa

    basis: np.ndarray = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                                            fmax=fmax).astype(np.float32)
    return basis


def _mel_basis(config: AstConfig, device: torch.device) -> torch.Tensor:
    """``(M, n_fft // 2 + 1)`` float32 on ``device``."""
    basis = _mel_basis_np(config.sample_rate, config.n_fft, config.n_mels, config.fmin_hz, config.fmax_hz)
    return torch.from_numpy(basis).to(device)


def log_mel(windows: torch.Tensor, config: AstConfig) -> torch.Tensor:
    """Normalised log-mel of 16 kHz mono windows, exactly as in training.

    Args:
        windows: ``(B, samples)`` float (any length; the model expects ``config.window_samples``).
        config: the model's config.

    Returns:
        ``(B, n_mels, T)`` float32, ``(dB − norm_mean_db) / (2·norm_std_db)``.
    """
    x = windows.float()
    rms = x.pow(2).mean(dim=-1).sqrt()
    lim = 10 ** (config.max_gain_db / 20)
    gain = (10 ** (config.reference_rms_db / 20) / rms.clamp_min(1e-12)).clamp(1 / lim, lim)
    spec = stft(x * gain[:, None], StftConfig(n_fft=config.n_fft, hop=config.hop))  # (B, F, T)
    power = spec.real.pow(2) + spec.imag.pow(2)
    mel = torch.matmul(_mel_basis(config, power.device), power)  # (B, M, T)
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    return (db - config.norm_mean_db) / (2.0 * config.norm_std_db)


class _Block(nn.Module):
    """Pre-norm transformer block: ``x + MHSA(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` → ``(B, N, D)``."""
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, D/heads)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + F.dropout(self.mlp(self.norm2(x)), self.dropout, self.training)


class AudioSpectrogramTransformer(nn.Module):
    """AST: normalised log-mel ``(B, M, T)`` → class logits ``(B, K)`` and an embedding ``(B, E)``."""

    def __init__(self, config: AstConfig) -> None:
        super().__init__()
        self.config = config
        fm, ft = config.patch_grid
        self.patch_embed = nn.Conv2d(1, config.dim, config.patch, config.patch_stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, fm * ft + 1, config.dim))
        self.blocks = nn.ModuleList(_Block(config.dim, config.heads, config.mlp_ratio, config.dropout)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)
        self.classifier = nn.Linear(config.dim, len(config.classes))
        self.embedding = nn.Sequential(nn.Linear(config.dim, config.dim), nn.GELU(),
                                       nn.Linear(config.dim, config.embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    def pooled(self, logmel: torch.Tensor, patchout: float = 0.0) -> torch.Tensor:
        """``(B, M, T)`` → ``(B, D)``: the mean of [CLS] and the mean patch token, layer-normed.

        ``patchout`` (training only) drops that fraction of the patch tokens at random, the same
        ones for the whole batch (PaSST's "patchout": faster training, less over-fitting)."""
        x = self.patch_embed(logmel.unsqueeze(1))  # (B, D, Fm, Ft)
        x = x.flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]  # (B, P, D)
        if patchout > 0.0 and self.training:
            keep = max(1, int(round(x.shape[1] * (1.0 - patchout))))
            x = x[:, torch.randperm(x.shape[1], device=x.device)[:keep]]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return 0.5 * (x[:, 0] + x[:, 1:].mean(dim=1))

    def forward(self, logmel: torch.Tensor, patchout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Classify and embed.

        Args:
            logmel: ``(B, n_mels, T)`` from :func:`log_mel`, ``T == config.frames``.
            patchout: fraction of patch tokens dropped in training mode (see :meth:`pooled`).

        Returns:
            ``(logits (B, K), embedding (B, E))``; the embedding has unit L2 norm.
        """
        if logmel.shape[-2:] != (self.config.n_mels, self.config.frames):
            raise ValueError(f"expected log-mel (B, {self.config.n_mels}, {self.config.frames}), "
                             f"got {tuple(logmel.shape)}")
        h = self.pooled(logmel, patchout)
        return self.classifier(h), F.normalize(self.embedding(h), dim=-1)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class QueryEmbedder:
    """A loaded AST that turns audio windows into class probabilities and embeddings.

    Probabilities are **sigmoids** (multi-label: each value is "this source is present in the
    window", independently), not a softmax.

    Attributes:
        config: the model's :class:`AstConfig`.
        classes: class names in probability-column order.
        device: where the model runs.
        card: the model card (empty for an unshipped model).
    """

    def __init__(self, model: AudioSpectrogramTransformer, device: torch.device,
                 card: dict[str, Any] | None = None, batch_size: int = 64) -> None:
        self.model = model.to(device).eval()
        self.config = model.config
        self.classes = model.config.classes
        self.device = device
        self.card = card or {}
        self.batch_size = batch_size

    def embed_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Classify and embed windows.

        Args:
            windows: float32 ``(N, config.window_samples)`` 16 kHz mono.

        Returns:
            ``(probs (N, K) float32 sigmoid, embeddings (N, E) float32 unit-norm)``.
        """
        w = np.asarray(windows, dtype=np.float32)
        if w.ndim != 2 or w.shape[1] != self.config.window_samples:
            raise ValueError(f"windows must be (N, {self.config.window_samples}), not {w.shape}")
        k, e = len(self.classes), self.config.embed_dim
        probs = np.zeros((w.shape[0], k), dtype=np.float32)
        embs = np.zeros((w.shape[0], e), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, w.shape[0], self.batch_size):
                x = torch.from_numpy(w[i : i + self.batch_size]).to(self.device)
                logits, emb = self.model(log_mel(x, self.config))
                probs[i : i + x.shape[0]] = torch.sigmoid(logits.float()).cpu().numpy()
                embs[i : i + x.shape[0]] = emb.float().cpu().numpy()
        return probs, embs

    def window_starts(self, samples: int, hop_seconds: float = 0.5) -> np.ndarray:
        """Start times (s) of the windows covering ``samples`` (the last may run past the end)."""
        win = self.config.window_samples
        hop = max(1, int(round(hop_seconds * self.config.sample_rate)))
        count = 1 if samples <= win else int(math.ceil((samples - win) / hop)) + 1
        return np.arange(count, dtype=np.float64) * hop / self.config.sample_rate

    def embed_signal(self, mono16k: np.ndarray, hop_seconds: float = 0.5
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Windows of a whole signal, embedded.

        Args:
            mono16k: float32 ``(samples,)`` at ``config.sample_rate``.
            hop_seconds: hop between window starts.

        Returns:
            ``(starts_seconds (N,), probs (N, K), embeddings (N, E))``; the tail is zero-padded
            so every sample is in at least one window. Processed in batches (memory is bounded
            by the batch, not the signal, apart from the windows' index).
        """
        x = np.asarray(mono16k, dtype=np.float32).reshape(-1)
        if hop_seconds <= 0:
            raise ValueError("hop_seconds must be positive")
        win = self.config.window_samples
        starts = self.window_starts(x.shape[0], hop_seconds)
        offsets = np.round(starts * self.config.sample_rate).astype(np.int64)
        need = int(offsets[-1]) + win
        if need > x.shape[0]:
            x = np.concatenate([x, np.zeros(need - x.shape[0], dtype=np.float32)])
        k, e = len(self.classes), self.config.embed_dim
        probs = np.zeros((len(starts), k), dtype=np.float32)
        embs = np.zeros((len(starts), e), dtype=np.float32)
        chunk = self.batch_size * 4
        for i in range(0, len(starts), chunk):
            idx = offsets[i : i + chunk, None] + np.arange(win)[None, :]
            probs[i : i + chunk], embs[i : i + chunk] = self.embed_windows(x[idx])
        return starts, probs, embs


def save_ast_weights(model: AudioSpectrogramTransformer, path: str | Path,
                     dtype: torch.dtype = torch.float16) -> str:
    """Write the model's tensors to ``path`` (safetensors, atomically); returns their SHA-256.
    The card (``NAME.json`` with ``sha256`` and ``architecture``) is the caller's."""
    p = Path(path)
    state = {k: v.detach().cpu().to(dtype).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(p, mode=0o644) as tmp:
        save_file(state, str(tmp), metadata={"config": json.dumps(model.config.to_json())})
    if p.stat().st_size > MAX_WEIGHTS_BYTES:
        raise ValueError(f"{p}: {p.stat().st_size} bytes exceeds the {MAX_WEIGHTS_BYTES}-byte weights limit")
    return sha256_of(p)


def load_ast(path: Path, device: torch.device | str = "cpu"
             ) -> tuple[AudioSpectrogramTransformer, dict[str, Any]]:
    """Load an AST from a safetensors file verified against the SHA-256 in its card.

    Raises:
        InputError: weights or card missing, hash mismatch, unreadable file, or tensors that do
            not fit the card's architecture (each naming the file).
    """
    path = Path(path)
    card, tensors = verified_tensors(path)
    try:
        config = AstConfig.from_json(card["architecture"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"model card architecture is invalid ({exc})", path.with_suffix(".json")) from exc
    model = AudioSpectrogramTransformer(config)
    try:
        model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    except RuntimeError as exc:
        raise InputError(f"weights do not fit the card's architecture ({str(exc)[:200]})", path) from exc
    return model.to(device).eval(), card


def load_query_embedder(device: str | torch.device = "cpu", path: Path | None = None) -> QueryEmbedder:
    """The shipped AST (``resources/models/ast.safetensors``) or ``path``, ready to embed."""
    dev = torch.device(device)
    model, card = load_ast(Path(path) if path is not None else MODELS_DIR / f"{DEFAULT_NAME}.safetensors", dev)
    return QueryEmbedder(model, dev, card)
