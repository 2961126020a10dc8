"""Query-by-example: find where a sound plays in a mix (AST detection) and pull it out
(source-prior + query mask, refined by optimisation). Two separately callable steps, so a user
can edit the segments in between:

* :func:`detect_segments` (mix, query, params) → :class:`Detection` (segments with scores);
* :func:`separate_segments` (mix, query, segments, params) → target and residual, with masks.

The ``query`` separator (:mod:`engine.separators.query`) runs both.
"""

from engine.query.detection import (
    Detection,
    DetectionParams,
    QueryInfo,
    Segment,
    detect_from_sequences,
    detect_segments,
    prepare_query,
    query_from_region,
    seed_gating,
)
from engine.query.masking import (
    MaskOutput,
    MaskParams,
    SourcePrior,
    query_stft,
    separate_segments,
    unet_source_prior,
)

__all__ = [
    "Detection",
    "DetectionParams",
    "MaskOutput",
    "MaskParams",
    "QueryInfo",
    "Segment",
    "SourcePrior",
    "detect_from_sequences",
    "detect_segments",
    "prepare_query",
    "query_from_region",
    "query_stft",
    "seed_gating",
    "separate_segments",
    "unet_source_prior",
]
