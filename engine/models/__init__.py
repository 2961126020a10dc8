"""Torch networks and their weights (safetensors + model card, verified; never pickled)."""

from engine.models.unet import LOG_FLOOR, SpectrogramUNet, UNetConfig, level_gain, parameter_count
from engine.models.weights import (
    DEFAULT_MODELS,
    MAX_WEIGHTS_BYTES,
    MODELS_DIR,
    load_model,
    save_weights,
    sha256_of,
    write_model_card,
)

__all__ = [
    "DEFAULT_MODELS",
    "LOG_FLOOR",
    "MAX_WEIGHTS_BYTES",
    "MODELS_DIR",
    "SpectrogramUNet",
    "UNetConfig",
    "level_gain",
    "load_model",
    "parameter_count",
    "save_weights",
    "sha256_of",
    "write_model_card",
]
