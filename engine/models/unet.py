"""The spectrogram U-Net: stereo magnitude spectrogram in, one soft mask per stem out.

Only the network lives here (STFT, chunking, resampling and post-filtering are the separator's,
:mod:`engine.separators.unet`; training is :mod:`engine.training`).

Shape names used throughout: ``B`` batch, ``C`` audio channels (2), ``S`` stems, ``F`` frequency
bins of the internal STFT (``n_fft // 2 + 1``), ``T`` STFT frames.

Design, chosen for CPU speed first (a 4-minute song must separate in seconds on a 2-core laptop):

* input: ``log(|X| + 1e-4)`` of both channels (the caller has scaled the mix to a reference
  level, see :func:`level_gain`), then a learned per-bin affine (the data's mean/std);
* encoder: ``L`` levels of ``Conv2d(k_e, stride 2 in frequency and time) → BN → LeakyReLU(0.2)``
  (Spleeter's encoder, slimmer), so most of the work happens at low resolution;
* decoder: per level a cheap learned up-sampling (1×1 conv + pixel shuffle, i.e. a transposed
  convolution whose kernel equals its stride: no checkerboard, no overlap cost), concatenation
  with the encoder's skip, ``Conv2d(k_d) → BN → ReLU``;
* head: at full resolution only a small ``Conv2d(3×3)`` over the up-sampled features and the
  input, giving ``S·C`` logits; a softmax over the stems makes masks that sum to 1 in every bin.

No layer normalises over time (BatchNorm is a fixed affine at inference), and the network is
fully convolutional, so its output at frame ``t`` depends only on input frames within
:meth:`SpectrogramUNet.receptive_radius_frames` of ``t``: chunked inference with that much
context equals one pass.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

#: Floor added to magnitudes before the log (magnitudes of a mix at the reference level are ~1e-3..1e2).
LOG_FLOOR = 1e-4


@dataclass(frozen=True)
class UNetConfig:
    """Everything that defines a U-Net's architecture and the signal it expects.

    Attributes:
        stems: output stem names, in order (e.g. ``("vocals", "instrumental")``).
        sample_rate: internal sample rate (Hz) the model was trained at.
        n_fft, hop: the internal STFT (``engine.spectral`` convention).
        channels: audio channels of the input (2: stereo).
        model_bins: bins the network sees (the lowest ``model_bins`` of ``n_fft // 2 + 1``; the
            bins above reuse the top bin's mask). Must be divisible by ``2 ** len(widths)``.
        widths: encoder feature channels per level.
        time_strides: time stride of each level (frequency stride is always 2).
        encoder_kernel, decoder_kernel: ``(frequency, time)`` kernel sizes.
        head_channels: channels of the full-resolution features before the mask head.
        reference_rms_db: the mix is scaled so its RMS is this (dBFS) before the STFT.
    """

    stems: tuple[str, ...]
    sample_rate: int = 22050
    n_fft: int = 1024
    hop: int = 256
    channels: int = 2
    model_bins: int = 512
    widths: tuple[int, ...] = (16, 32, 64, 96, 128, 160)
    time_strides: tuple[int, ...] = (2, 2, 2, 2, 2, 2)
    encoder_kernel: tuple[int, int] = (5, 5)
    decoder_kernel: tuple[int, int] = (3, 3)
    head_channels: int = 8
    reference_rms_db: float = -20.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.time_strides):
            raise ValueError("widths and time_strides must have one entry per level")
        if self.model_bins % (2 ** len(self.widths)) != 0:
            raise ValueError(f"model_bins {self.model_bins} must be divisible by 2**{len(self.widths)}")
        if self.model_bins > self.n_fft // 2 + 1:
            raise ValueError("model_bins exceeds the STFT's bins")
        for k in (*self.encoder_kernel, *self.decoder_kernel):
            if k % 2 != 1:
                raise ValueError("kernel sizes must be odd (centred 'same' padding)")

    @property
    def bins(self) -> int:
        """Bins of the internal STFT."""
        return self.n_fft // 2 + 1

    @property
    def time_multiple(self) -> int:
        """Input frame counts must be multiples of this (the product of the time strides)."""
        return int(math.prod(self.time_strides))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("stems", "widths", "time_strides", "encoder_kernel", "decoder_kernel"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UNetConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown U-Net config keys {sorted(unknown)}")
        kw: dict[str, Any] = dict(d)
        for key in ("stems", "widths", "time_strides", "encoder_kernel", "decoder_kernel"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


def level_gain(rms: float, reference_rms_db: float, max_gain_db: float = 40.0) -> float:
    """Linear gain that brings a mix of RMS ``rms`` to ``reference_rms_db`` (clamped to ±max)."""
    if not math.isfinite(rms) or rms <= 0:
        return 1.0
    gain_db = reference_rms_db - 20.0 * math.log10(rms)
    return float(10 ** (min(max(gain_db, -max_gain_db), max_gain_db) / 20.0))


class _ConvBnAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int], act: nn.Module) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding=(kernel[0] // 2, kernel[1] // 2)),
            nn.BatchNorm2d(cout),
            act,
        )


class _Upsample(nn.Module):
    """Transposed convolution with kernel == stride, as a 1×1 conv and a pixel shuffle (fast on CPU)."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.stride = stride
        self.cout = cout
        self.proj = nn.Conv2d(cin, cout * stride[0] * stride[1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, cin, F, T)`` → ``(B, cout, F·sf, T·st)``."""
        b, _, f, t = x.shape
        sf, st = self.stride
        if sf == st:  # the same reordering, in torch's dedicated kernel (about a third faster on CPU)
            return nn.functional.pixel_shuffle(self.proj(x), sf)
        y = self.proj(x).view(b, self.cout, sf, st, f, t)
        # (B, cout, sf, st, F, T) -> (B, cout, F, sf, T, st) -> (B, cout, F·sf, T·st)
        return y.permute(0, 1, 4, 2, 5, 3).reshape(b, self.cout, f * sf, t * st)


class SpectrogramUNet(nn.Module):
    """U-Net on magnitude spectrograms predicting one soft mask per stem (masks sum to 1)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c, s = config.channels, len(config.stems)
        # Per-bin input affine (set from data statistics before training).
        self.input_mean = nn.Parameter(torch.zeros(config.model_bins))
        self.input_scale = nn.Parameter(torch.ones(config.model_bins))
        self.encoders = nn.ModuleList()
        cin = c
        for width, ts in zip(config.widths, config.time_strides, strict=True):
            self.encoders.append(_ConvBnAct(cin, width, config.encoder_kernel, (2, ts), nn.LeakyReLU(0.2)))
            cin = width
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        levels = len(config.widths)
        for level in range(levels - 1, 0, -1):  # up from level `level` to `level - 1`
            cout = config.widths[level - 1]
            self.ups.append(_Upsample(config.widths[level], cout, (2, config.time_strides[level])))
            self.decoders.append(_ConvBnAct(2 * cout, cout, config.decoder_kernel, (1, 1), nn.ReLU()))
        self.final_up = _Upsample(config.widths[0], config.head_channels, (2, config.time_strides[0]))
        self.head = nn.Conv2d(config.head_channels + c, s * c, 3, padding=1)

    @property
    def stems(self) -> tuple[str, ...]:
        return self.config.stems

    def receptive_radius_frames(self) -> int:
        """Frames either side of ``t`` that can influence the output at ``t`` (an upper bound).

        Encoder level ``l`` (input resolution ``s``, the product of the earlier time strides) adds
        ``(k_e // 2)·s``; its up-sampling back to ``s`` adds ``(stride − 1)·s`` (which coarse frame
        covers a fine one); the convolution after it (the head's 3×3 at level 0) adds ``(k_d // 2)·s``.
        """
        cfg = self.config
        radius, s = 0, 1
        for level, ts in enumerate(cfg.time_strides):
            kd = cfg.decoder_kernel[1] if level > 0 else 3
            radius += s * (cfg.encoder_kernel[1] // 2 + (ts - 1) + kd // 2)
            s *= ts
        return radius

    def features(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Normalised log magnitudes ``(B, C, model_bins, T)`` of ``(B, C, F, T)`` magnitudes."""
        m = magnitude[:, :, : self.config.model_bins]
        x = torch.log(m + LOG_FLOOR)
        return (x - self.input_mean[:, None]) * self.input_scale[:, None]

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Soft masks.

        Args:
            magnitude: ``(B, C, F, T)`` magnitudes of the level-normalised mix, ``F`` the internal
                STFT's bins (or at least ``model_bins``); ``T`` any length (padded internally
                to a multiple of :attr:`UNetConfig.time_multiple` and cropped back).

        Returns:
            ``(B, S, C, F, T)`` masks in [0, 1] summing to 1 over ``S``; bins at and above
            ``model_bins`` repeat the top modelled bin.
        """
        b, c, f, t = magnitude.shape
        mult = self.config.time_multiple
        pad = (-t) % mult
        if pad:
            magnitude = nn.functional.pad(magnitude, (0, pad))
        x0 = self.features(magnitude)
        x = x0
        skips: list[torch.Tensor] = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
        for i, (up, dec) in enumerate(zip(self.ups, self.decoders, strict=True)):
            x = up(x)
            x = dec(torch.cat([x, skips[-2 - i]], dim=1))
        x = self.final_up(x)
        logits = self.head(torch.cat([x, x0], dim=1))  # (B, S·C, model_bins, T')
        s = len(self.config.stems)
        logits = logits.view(b, s, c, self.config.model_bins, -1)[..., :t]
        masks = torch.softmax(logits.float(), dim=1)
        if f > self.config.model_bins:
            top = masks[..., -1:, :].expand(-1, -1, -1, f - self.config.model_bins, -1)
            masks = torch.cat([masks, top], dim=3)
        return masks

    def fused_for_inference(self) -> SpectrogramUNet:
        """A copy in eval mode with every BatchNorm folded into its convolution (same outputs)."""
        model = copy.deepcopy(self).eval()
        for module in model.modules():
            if not isinstance(module, _ConvBnAct):
                continue
            conv, bn = module[0], module[1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[0] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
                module[1] = nn.Identity()
        return model


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
