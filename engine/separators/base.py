"""One interface for every separation engine, and the registry the GUI builds its controls from.

A separator takes the mix (and, depending on the engine, an aligned acapella, a query clip or a
region), a device choice, parameters, a progress callback and a cancel check; it returns named
stems at the mix's rate and channels plus the time-frequency masks it used, so the GUI can show
and edit them. Stems of one separation sum to the mix (error ≤ −100 dB) unless the engine says
otherwise in its description.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from engine.audio import Audio
from engine.errors import InputError
from engine.runtime import memory_for
from engine.spectral import DEFAULT_STFT, StftConfig

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


@dataclass(frozen=True)
class Parameter:
    """One user-facing engine parameter (the GUI makes a control from it)."""

    name: str
    default: Any
    description: str
    kind: str = "float"  # "float" | "int" | "bool" | "choice"
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""

    def coerce(self, value: Any) -> Any:
        """Check and convert a user value; raises InputError with the parameter named."""
        try:
            if self.kind == "bool":
                v: Any = value if isinstance(value, bool) else _BOOL_WORDS[str(value).strip().lower()]
            elif self.kind == "int":
                v = int(value)
            elif self.kind == "float":
                v = float(value)
            else:
                v = str(value)
        except (TypeError, ValueError, KeyError) as exc:
            raise InputError(f"parameter '{self.name}': {value!r} is not a valid {self.kind}"
                             + (" (use true/false, yes/no, on/off or 1/0)" if self.kind == "bool" else "")) from exc
        if self.kind == "choice" and v not in self.choices:
            raise InputError(f"parameter '{self.name}': {v!r} is not one of {list(self.choices)}")
        if self.kind in ("int", "float"):
            if self.minimum is not None and v < self.minimum:
                raise InputError(f"parameter '{self.name}': {v} is below the minimum {self.minimum}")
            if self.maximum is not None and v > self.maximum:
                raise InputError(f"parameter '{self.name}': {v} is above the maximum {self.maximum}")
        return v


#: Words a bool parameter accepts (anything else is an error, not a silent "false").
_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass
class SeparationResult:
    """What a separator returns.

    Attributes:
        stems: name -> Audio at the mix's rate and channels.
        masks: name -> float array ``(channels, bins, frames)`` in [0, 1] at ``stft``'s resolution
            (what the GUI shows and edits); may be empty for engines that are not mask-based.
        stft: the STFT configuration the masks live in.
        engine: engine name; parameters: the values used; seconds: wall time; device: where it ran.
        info: engine-specific extra facts (e.g. filter statistics).
    """

    stems: dict[str, Audio]
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    stft: StftConfig = DEFAULT_STFT
    engine: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = "cpu"
    info: dict[str, Any] = field(default_factory=dict)

    def sum_error_db(self, mix: Audio) -> float:
        """Energy of (sum of stems − mix) relative to the mix, in dB."""
        total = np.zeros_like(mix.samples, dtype=np.float64)
        for stem in self.stems.values():
            total += stem.samples
        err = float(np.sum((total - mix.samples) ** 2))
        ref = float(np.sum(mix.samples.astype(np.float64) ** 2)) + 1e-30
        return 10.0 * np.log10(err / ref + 1e-30)


class Separator:
    """Base class: subclasses set the class attributes and implement :meth:`_separate`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_acapella: ClassVar[bool] = False
    needs_query: ClassVar[bool] = False
    stem_names: ClassVar[tuple[str, ...]] = ()
    parameters: ClassVar[tuple[Parameter, ...]] = ()

    def resolve_parameters(self, overrides: dict[str, Any] | None) -> dict[str, Any]:
        known = {p.name: p for p in self.parameters}
        values = {p.name: p.default for p in self.parameters}
        for key, value in (overrides or {}).items():
            if key not in known:
                raise InputError(f"engine '{self.name}' has no parameter '{key}' (has: {sorted(known)})")
            values[key] = known[key].coerce(value)
        return values

    def separate(
        self,
        mix: Audio,
        *,
        acapella: np.ndarray | None = None,
        query: Audio | None = None,
        region: tuple[float, float] | None = None,
        device: str = "auto",
        parameters: dict[str, Any] | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> SeparationResult:
        """Separate ``mix``.

        Args:
            mix: the mix, float32 ``(channels, frames)``.
            acapella: the acapella already aligned onto the mix's timeline, float32
                ``(channels, frames)`` at the mix's rate (see :func:`engine.align.render_aligned`).
            query, region: for query engines.
            device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
            parameters: overrides of the engine's defaults (validated).
            progress, cancel: job hooks.
        """
        if self.needs_acapella and acapella is None:
            raise InputError(f"the '{self.name}' engine needs an acapella")
        if acapella is not None and acapella.shape[-1] != mix.frames:
            raise ValueError("the acapella must be aligned onto the mix's timeline first")
        values = self.resolve_parameters(parameters)
        dev = resolve_device(device)
        t0 = time.perf_counter()
        with memory_for(mix.duration_seconds):
            result = self._separate(mix, acapella, query, region, dev, values, progress, cancel)
        result.engine, result.parameters = self.name, values
        result.seconds, result.device = time.perf_counter() - t0, str(dev)
        return result

    def _separate(
        self, mix: Audio, acapella: np.ndarray | None, query: Audio | None,
        region: tuple[float, float] | None, device: torch.device, params: dict[str, Any],
        progress: ProgressFn | None, cancel: CancelFn | None,
    ) -> SeparationResult:
        raise NotImplementedError

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name, "title": cls.title, "description": cls.description,
            "needs_acapella": cls.needs_acapella, "needs_query": cls.needs_query,
            "stems": list(cls.stem_names),
            "parameters": [p.__dict__ for p in cls.parameters],
        }


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; a CUDA request without CUDA is bad input."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA GPU is available here")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device '{device}'; use auto, cpu or cuda")
    return torch.device(device)


REGISTRY: dict[str, type[Separator]] = {}


def register(cls: type[Separator]) -> type[Separator]:
    REGISTRY[cls.name] = cls
    return cls


def get_separator(name: str) -> Separator:
    from engine import separators  # noqa: F401  (registers the engines)

    if name not in REGISTRY:
        raise InputError(f"unknown engine '{name}'; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]()


def check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        from engine.errors import Cancelled

        raise Cancelled()
