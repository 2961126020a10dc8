"""Dynamic mixing: endless, reproducible training mixes built on the fly from a stem bank.

Every batch is a pure function of ``(seed, batch index)``: resuming at step ``k`` sees exactly
the batches it would have seen, with no state to save. For each example and each model stem:

* a source track: with probability ``p_same_song`` all stems come from one song (a natural,
  musically aligned mix), otherwise each stem from an independently chosen song and offset;
* a random segment, played at a random speed (band-limited FFT resampling: pitch and tempo move
  together, like a turntable) and through a random smooth EQ (a few log-frequency bumps and a
  tilt, applied in the same FFT), a random gain, channel swap and polarity;
* occasionally a silent stem (songs without vocals, breaks without drums);
* on some mixes a bus limiter: drive, then one gain curve (look-ahead peak envelope, smoothed)
  applied to every stem, so the stems still sum to the mix.

Targets are the processed stems; ``mix = Σ stems`` exactly. The 2-stem model's
``instrumental`` is the sum of a 4-stem track's drums, bass and other; 2-stem tracks (a user's
mix + aligned acapella, see :func:`engine.training.bank.write_track`) serve the 2-stem model
directly. Everything runs in torch on the training device.

Interface for other data (fine-tuning on your own pairs): anything that yields
``(mix (B, C, N), stems (B, S, C, N))`` float32 tensors at the model's rate, stems in the model's
order, with ``mix == stems.sum(1)``, can feed :func:`engine.training.train.train` (see its
``batches`` argument); :class:`DynamicMixer` is one such source, :class:`TrackDataset` wraps it
as a ``torch.utils.data.IterableDataset``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.fft import next_fast_len

from engine.training.bank import StemBank, Track


@dataclass(frozen=True)
class MixerConfig:
    """Augmentation settings (stored in checkpoints and model cards)."""

    segment_samples: int = 65280  # 256 STFT frames at hop 256 (≈ 2.96 s at 22.05 kHz)
    batch_size: int = 8
    p_same_song: float = 0.3
    gain_db: float = 6.0  # per-stem gain uniform in ±gain_db
    p_silent_stem: float = 0.08
    p_speed: float = 0.5
    speed_range: float = 0.06  # speed factor in [1 − r, 1 + r]
    p_eq: float = 0.6
    eq_db: float = 6.0
    p_swap: float = 0.5
    p_polarity: float = 0.5
    p_limiter: float = 0.3
    limiter_drive_db: float = 8.0
    limiter_ceiling_db: float = -1.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _resample_spectrum(spec: torch.Tensor, length_in: int, length_out: int) -> torch.Tensor:
    """Band-limited resampling: the ``rfft`` of ``(C, length_in)`` samples → ``(C, length_out)``
    samples, by truncating (anti-aliasing) or zero-padding the spectrum."""
    bins = length_out // 2 + 1
    if bins <= spec.shape[-1]:
        spec = spec[..., :bins]
    else:
        spec = torch.nn.functional.pad(spec, (0, bins - spec.shape[-1]))
    return torch.fft.irfft(spec, n=length_out) * (length_out / length_in)


def random_eq_db(rng: np.random.Generator, freqs_hz: np.ndarray, max_db: float) -> np.ndarray:
    """A smooth random EQ curve (dB) over ``freqs_hz``: 3 log-frequency bumps and a tilt."""
    logf = np.log2(np.maximum(freqs_hz, 20.0) / 1000.0)
    curve = np.zeros_like(logf)
    for _ in range(3):
        centre = rng.uniform(np.log2(60 / 1000), np.log2(9000 / 1000))
        width = rng.uniform(0.3, 1.5)
        curve += rng.uniform(-max_db, max_db) * np.exp(-0.5 * ((logf - centre) / width) ** 2)
    curve += rng.uniform(-max_db / 3, max_db / 3) * np.clip(logf, -4, 4) / 4
    return np.clip(curve, -max_db * 1.5, max_db * 1.5)


def limiter_gain(mix: torch.Tensor, sample_rate: int, ceiling: float) -> torch.Tensor:
    """Gain curve ``(N,)`` of a look-ahead peak limiter for ``mix (C, N)``: never above 1, and
    ``|gain · mix| ≤ ceiling`` up to the smoothing's ripple."""
    peak = mix.abs().amax(0)[None, None]  # (1, 1, N)
    look = max(1, int(0.005 * sample_rate)) | 1
    env = torch.nn.functional.max_pool1d(peak, look, stride=1, padding=look // 2)
    smooth = max(1, int(0.01 * sample_rate)) | 1
    env = torch.nn.functional.max_pool1d(env, smooth, stride=1, padding=smooth // 2)
    gain = torch.clamp(ceiling / (env + 1e-9), max=1.0)
    gain = torch.nn.functional.avg_pool1d(gain, smooth, stride=1, padding=smooth // 2, count_include_pad=False)
    return gain[0, 0]


class DynamicMixer:
    """Makes training batches from a :class:`StemBank` (see the module docstring).

    Args:
        bank: the bank (its ``train`` split is used).
        stems: the model's stem names, e.g. ``("vocals", "instrumental")``.
        config: augmentation settings.
        seed: batch ``i`` depends only on ``(seed, i)``.
        device: where the mixing happens and the batches live.
        split: which split to draw from.
    """

    def __init__(self, bank: StemBank, stems: tuple[str, ...], config: MixerConfig, seed: int = 0,
                 device: torch.device | str = "cpu", split: str = "train") -> None:
        self.rate = bank.sample_rate
        self.stems = tuple(stems)
        self.config = config
        self.seed = int(seed)
        self.device = torch.device(device)
        need = set(self.stems)
        self.tracks: list[Track] = [t for t in bank.split(split) if self._provides(t, need)]
        if not self.tracks:
            raise ValueError(f"no '{split}' tracks in the bank provide stems {self.stems}")
        # int16 tensors on the device; floats are made per segment.
        self._data = [torch.from_numpy(t.samples).to(self.device) for t in self.tracks]
        self._scale = [t.scale / 32767.0 for t in self.tracks]

    @staticmethod
    def _provides(track: Track, need: set[str]) -> bool:
        have = set(track.stems)
        if "instrumental" in need and "vocals" in have:
            have = have | {"instrumental"}
        return need <= have

    def _stem_rows(self, track_index: int, stem: str) -> list[int]:
        track = self.tracks[track_index]
        if stem in track.stems:
            return [track.stems.index(stem)]
        return [i for i, s in enumerate(track.stems) if s != "vocals"]  # instrumental of a 4-stem track

    def _segment(self, track_index: int, stem: str, start: int, length: int) -> torch.Tensor:
        """float32 ``(C, length)`` of a stem from ``start`` (zeros past the end)."""
        data = self._data[track_index]
        rows = self._stem_rows(track_index, stem)
        n = data.shape[-1]
        out = torch.zeros((data.shape[1], length), device=self.device)
        a, b = min(max(start, 0), n), min(max(start + length, 0), n)
        if b > a:
            seg = data[rows, :, a:b].float().sum(0)
            out[:, a - start : b - start] = seg
        return out * self._scale[track_index]

    def example(self, rng: np.random.Generator) -> torch.Tensor:
        """One example's stems, float32 ``(S, C, N)`` (mix = their sum)."""
        cfg = self.config
        n = cfg.segment_samples
        s_count = len(self.stems)
        same = rng.random() < cfg.p_same_song
        song = int(rng.integers(len(self.tracks)))
        speed_same = 1.0 + rng.uniform(-cfg.speed_range, cfg.speed_range) if rng.random() < cfg.p_speed else 1.0
        stems = []
        offset_same = None
        for stem in self.stems:
            ti = song if same else int(rng.integers(len(self.tracks)))
            speed = speed_same if same else (
                1.0 + rng.uniform(-cfg.speed_range, cfg.speed_range) if rng.random() < cfg.p_speed else 1.0)
            # Extra context so the FFT resampler's circular edges are cropped away; lengths are
            # 5-smooth so the FFTs are fast (the speed is rounded accordingly).
            work_len = next_fast_len(n + 2048)
            pad = (work_len - n) // 2
            src_len = next_fast_len(int(math.ceil(work_len * speed)))
            total = self.tracks[ti].frames
            if same and offset_same is not None:
                start = offset_same
            else:
                start = int(rng.integers(-src_len // 4, max(total - src_len // 2, 1)))
                offset_same = start
            x = self._segment(ti, stem, start, src_len)
            eq = rng.random() < cfg.p_eq
            if src_len != work_len or eq:
                spec = torch.fft.rfft(x)
                if eq:
                    freqs = np.fft.rfftfreq(src_len, 1.0 / self.rate)
                    curve = 10 ** (random_eq_db(rng, freqs, cfg.eq_db) / 20)
                    spec = spec * torch.from_numpy(curve).to(self.device, torch.float32)
                x = _resample_spectrum(spec, src_len, work_len)
            x = x[:, pad : pad + n]
            gain = 10 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20)
            if rng.random() < cfg.p_silent_stem and s_count > 1:
                gain = 0.0
            if rng.random() < cfg.p_polarity:
                gain = -gain
            if rng.random() < cfg.p_swap:
                x = x.flip(0)
            stems.append(x * gain)
        out = torch.stack(stems)  # (S, C, N)
        if rng.random() < cfg.p_limiter:
            mix = out.sum(0)
            rms = mix.pow(2).mean().sqrt().item()
            if rms > 0:
                drive = 10 ** (rng.uniform(0, cfg.limiter_drive_db) / 20) * 0.1 / rms  # to −20 dBFS, then drive
                g = limiter_gain(mix * drive, self.rate, 10 ** (cfg.limiter_ceiling_db / 20))
                out = out * (drive * g)
        return out

    def example_at(self, index: int) -> torch.Tensor:
        """Example ``index`` of the endless stream (seeded by ``(seed, index)``): ``(S, C, N)``."""
        return self.example(np.random.default_rng([self.seed, int(index)]))

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``index`` = examples ``[index·B, (index+1)·B)``: ``(mix (B, C, N), stems (B, S, C, N))``."""
        b = self.config.batch_size
        stems = torch.stack([self.example_at(index * b + k) for k in range(b)])
        return stems.sum(1), stems

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        i = start
        while True:
            yield self.batch(i)
            i += 1


class TrackDataset(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """The mixer's examples as an ``IterableDataset`` for a ``DataLoader(batch_size=B,
    num_workers=W)`` (mixer on the CPU): worker ``w`` makes batches ``start + w, start + w + W, …``
    and the loader interleaves the workers in order, so the loader yields exactly
    ``mixer.batch(start), mixer.batch(start + 1), …`` whatever ``W`` is."""

    def __init__(self, mixer: DynamicMixer, start_batch: int = 0) -> None:
        self.mixer, self.start_batch = mixer, start_batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        wid, count = (info.id, info.num_workers) if info is not None else (0, 1)
        b = self.mixer.config.batch_size
        k = self.start_batch + wid
        while True:
            for j in range(b):
                stems = self.mixer.example_at(k * b + j)
                yield stems.sum(0), stems
            k += count
