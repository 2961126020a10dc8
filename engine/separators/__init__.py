"""Separation engines behind one interface (:mod:`engine.separators.base`).

Importing this package registers every engine in :data:`REGISTRY`.
"""

from engine.separators import (
    fingerprint,  # noqa: F401  (registers "fingerprint")
    query,  # noqa: F401  (registers "query")
    reference,  # noqa: F401  (registers "reference")
    unet,  # noqa: F401  (registers "unet")
)
from engine.separators.base import (
    REGISTRY,
    Parameter,
    SeparationResult,
    Separator,
    get_separator,
    resolve_device,
)

__all__ = ["REGISTRY", "Parameter", "SeparationResult", "Separator", "get_separator", "resolve_device"]
