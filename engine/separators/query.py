"""The ``query`` engine: find a sound in the mix by example and pull it out (seed 002, fixed).

Two steps, each callable on its own (the GUI lets the user edit the segments in between):
:func:`engine.query.detect_segments` and :func:`engine.query.separate_segments`; this separator
runs both. Stems: ``target`` (the query's sound inside the segments) and ``residual``
(``mix − target``, exact). When nothing is found the target is silence, the residual is the mix,
and ``result.info["found"]`` is False (the CLI then writes no stems).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from engine.audio import Audio
from engine.errors import InputError
from engine.query.detection import (
    Detection,
    DetectionParams,
    Segment,
    detect_segments,
    prepare_query,
    query_from_region,
)
from engine.query.masking import MaskParams, SourcePrior, query_stft, separate_segments
from engine.separators.base import (
    CancelFn,
    Parameter,
    ProgressFn,
    SeparationResult,
    Separator,
    register,
    resolve_device,
)

_DETECTION = {f.name for f in dataclasses.fields(DetectionParams)} - {"window_seconds"}
_MASK = {f.name for f in dataclasses.fields(MaskParams)} - {"padding_ms"}
#: Share of the progress bar taken by detection (AST + the stem gate's U-Net pass).
_DETECT_SHARE = 0.6


def detection_params(values: dict[str, Any]) -> DetectionParams:
    kw = {k: v for k, v in values.items() if k in _DETECTION}
    if isinstance(kw.get("stem_alone_for"), str):  # the choice's text: "none" or stems joined by "+"
        text = kw["stem_alone_for"]
        kw["stem_alone_for"] = () if text == "none" else tuple(text.split("+"))
    return DetectionParams(**kw)


def mask_params(values: dict[str, Any]) -> MaskParams:
    kw = {k: v for k, v in values.items() if k in _MASK}
    if "padding_ms" in values:
        kw["padding_ms"] = values["padding_ms"]
    return MaskParams(**kw)


@register
class QuerySeparator(Separator):
    name = "query"
    title = "Query by example (find & separate)"
    description = (
        "Select a region or drop a 1–3 s clip of a sound: an Audio Spectrogram Transformer finds "
        "every segment of the mix where it plays (class and similarity gates; nothing when it is "
        "absent), then a mask pulls it out — the shipped 4-stem U-Net's masks routed by the "
        "query, refined by optimisation with total-variation and saturation terms. Stems: "
        "target and residual (they sum to the mix)."
    )
    needs_query = True
    stem_names = ("target", "residual")
    parameters = (
        Parameter("hop_seconds", 0.5, "Hop between the 1-s analysis windows.", minimum=0.1, maximum=1.0, unit="s"),
        Parameter("class_threshold", 0.2, "Class gate: a window must give the query's class at least this "
                  "probability (absolute, not relative to the song).", minimum=0.0, maximum=1.0),
        Parameter("cosine_threshold", 0.6, "Similarity gate: cosine similarity of a window's embedding "
                  "to the query's (the seed used 0.45; 0.6 calibrated for the shipped models).",
                  minimum=-1.0, maximum=1.0),
        Parameter("use_class_gate", True, "Apply the class gate (off: similarity only).", kind="bool"),
        Parameter("query_class_confidence", 0.5, "The class gate applies only when the query's own top "
                  "class reaches this probability (else its class is a guess).", minimum=0.0, maximum=1.0),
        Parameter("class_must_match_stem", True, "The class gate applies only when the query's class "
                  "belongs to the stem the U-Net hears the query in (when the two models disagree, "
                  "the class is not trusted).", kind="bool"),
        Parameter("class_follows_stem", False, "When the query's top class is not in the stem the U-Net hears "
                  "it in, use its most probable class that is (if that reaches the query class confidence).",
                  kind="bool"),
        Parameter("related_class_probability", 0.3, "The class gate also accepts the query's other classes "
                  "of the same stem that the query reaches this probability for (1: its top class only). "
                  "The AST confuses neighbouring timbres under other sounds (a synth pad heard as keys).",
                  minimum=0.0, maximum=1.0),
        Parameter("stem_alone_for", "none", "When the AST is unsure of the query's class and the U-Net "
                  "hears the query as one of these stems, that stem's level alone finds it (the AST was "
                  "trained on synthesized singing; real voices can puzzle it). Off by default: on real "
                  "instrumental recordings it can find vocals that are not there.", kind="choice",
                  choices=("none", "vocals", "vocals+drums+bass")),
        Parameter("use_cosine_gate", True, "Apply the similarity gate (off: class only).", kind="bool"),
        Parameter("hysteresis", 0.4, "How far both gates are lowered to extend a segment around "
                  "windows that pass them fully.", minimum=0.0, maximum=0.5),
        Parameter("percentile", 0.0, "Optional relative gate: windows must also reach this percentile "
                  "of the gated windows' scores (0: off; the seed used 92 over all windows, which "
                  "fires even when the sound is absent).", minimum=0.0, maximum=100.0),
        Parameter("class_weight", 0.5, "Weight of the class probability in the score (the rest: "
                  "similarity).", minimum=0.0, maximum=1.0),
        Parameter("smoothing_windows", 1.0, "Gaussian smoothing of the per-window values (σ in windows).",
                  minimum=0.0, maximum=10.0),
        Parameter("min_duration_ms", 500.0, "Drop segments shorter than this.", minimum=0.0, maximum=60000.0, unit="ms"),
        Parameter("merge_gap_ms", 200.0, "Merge segments closer than this.", minimum=0.0, maximum=60000.0, unit="ms"),
        Parameter("padding_ms", 50.0, "Extend each segment by this much each side (the mask fades in "
                  "and out over it).", minimum=0.0, maximum=5000.0, unit="ms"),
        Parameter("listen", "stem", "What the AST listens to: 'stem' the U-Net's estimate of the query's "
                  "stem(s) (other instruments mostly removed), 'mix' the mix itself.",
                  kind="choice", choices=("stem", "mix")),
        Parameter("query_listen", "stem", "What the AST listens to in the query (with listen = 'stem'): "
                  "'stem' the query's own routed U-Net stems, heard as the mix is (for a region of a full "
                  "mix: the routed instrument, not the whole mix); 'clip' the query as given; 'auto': "
                  "'stem' for a region of the mix, 'clip' for a clip from elsewhere.",
                  kind="choice", choices=("auto", "clip", "stem")),
        Parameter("use_stem_gate", True, "Stem gate: the 4-stem U-Net, routed by the query, must hear the "
                  "query's stem in a window (absent sounds give no segments).", kind="bool"),
        Parameter("stem_threshold_db", -14.0, "Stem gate: the least share of a window's power the "
                  "routed stem must hold.", minimum=-60.0, maximum=0.0, unit="dB"),
        Parameter("stem_hysteresis_db", 6.0, "How far the stem gate is lowered to extend a segment.",
                  minimum=0.0, maximum=30.0, unit="dB"),
        Parameter("prior", "unet", "Mask source: 'unet' routes the 4-stem U-Net's masks by the query "
                  "(best on music); 'none' uses the query's own spectra only (any sound).",
                  kind="choice", choices=("unet", "none")),
        Parameter("stem_weight_power", 4.0, "Sharpness of the routing of the query onto the U-Net's "
                  "stems (higher: pick the dominant stem).", minimum=1.0, maximum=64.0),
        Parameter("gamma_profile", 0.1, "Weight of the query-only spectral mask against the prior "
                  "(geometric; 0: the prior alone).", minimum=0.0, maximum=1.0),
        Parameter("opt_steps", 18, "Mask optimisation steps (Adam).", kind="int", minimum=0, maximum=500),
        Parameter("lr", 0.28, "Optimisation learning rate (on mask logits).", minimum=0.0, maximum=10.0),
        Parameter("lambda_tv", 0.008, "Total-variation weight (smoother masks).", minimum=0.0, maximum=10.0),
        Parameter("lambda_sat", 0.001, "Saturation weight (masks nearer 0 or 1).", minimum=0.0, maximum=10.0),
        Parameter("mask_floor", 0.0, "Lowest mask value inside the segments (keeps some of the mix "
                  "in the target; 0: none).",
                  minimum=0.0, maximum=1.0),
        Parameter("blur", 0.1, "Blur applied to the mask after each optimisation step (0–1).",
                  minimum=0.0, maximum=1.0),
        Parameter("time_mask_sharpening", 1.2, "Exponent of the segment envelope (sharper fades).",
                  minimum=0.1, maximum=10.0),
        Parameter("query_components", 16, "Spectral atoms learned from the query.", kind="int", minimum=1, maximum=128),
        Parameter("background_components", 24, "Spectral atoms learned outside the segments.", kind="int",
                  minimum=0, maximum=256),
        Parameter("free_components", 4, "Extra atoms learned inside the segments.", kind="int", minimum=0, maximum=64),
        Parameter("nmf_iterations", 60, "Factorisation iterations.", kind="int", minimum=1, maximum=1000),
        Parameter("chunk_seconds", 60.0, "Audio per processing chunk (memory).", minimum=5.0, maximum=600.0, unit="s"),
        Parameter("masks", True, "Return the masks for viewing and editing.", kind="bool"),
    )

    def _separate(
        self, mix: Audio, acapella: np.ndarray | None, query: Audio | None,
        region: tuple[float, float] | None, device: torch.device, params: dict[str, Any],
        progress: ProgressFn | None, cancel: CancelFn | None,
    ) -> SeparationResult:
        if query is None and region is None:
            raise InputError("the 'query' engine needs a query clip (--query) or a region of the mix "
                             "(--query-region START:END)")
        clip = query if query is not None else query_from_region(mix, region)  # type: ignore[arg-type]

        def first(fraction: float, message: str) -> None:
            if progress is not None:
                progress(_DETECT_SHARE * fraction, message)

        detection = detect_segments(mix, clip, detection_params(params), device=str(device),
                                    progress=first, cancel=cancel, query_from_mix=query is None)
        result = self.separate_detected(mix, clip, detection.segments, params, device, progress, cancel,
                                        prior=detection.prior)
        result.info["detection"] = detection
        result.info["found"] = detection.found
        return result

    def separate_detected(self, mix: Audio, query: Audio, segments: list[Segment], params: dict[str, Any],
                          device: torch.device, progress: ProgressFn | None = None,
                          cancel: CancelFn | None = None, prior: SourcePrior | None = None) -> SeparationResult:
        """The separation step alone, from a given (possibly user-edited) segment list;
        ``prior``: the detection's whole-mix U-Net prior, when it has one (else computed here)."""
        clip, _ = prepare_query(query)

        def second(fraction: float, message: str) -> None:
            if progress is not None:
                progress(_DETECT_SHARE + (1 - _DETECT_SHARE) * fraction, message)

        cfg = query_stft(mix.sample_rate)
        if not segments:
            silent = np.zeros_like(mix.samples)
            masks = {}
            if params.get("masks", True):
                shape = (mix.channels, cfg.bins, cfg.frames_for(mix.frames))
                masks = {"target": np.zeros(shape, np.float16), "residual": np.ones(shape, np.float16)}
            return SeparationResult({"target": Audio(silent, mix.sample_rate),
                                     "residual": Audio(mix.samples.copy(), mix.sample_rate)},
                                    masks, cfg, info={"found": False})
        out = separate_segments(mix, clip, segments, mask_params(params), device,
                                return_masks=bool(params.get("masks", True)), prior=prior,
                                progress=second, cancel=cancel)
        return SeparationResult({"target": out.target, "residual": out.residual}, out.masks, out.stft,
                                info={"found": True, "separation": out.info})

    def separate_segments(self, mix: Audio, query: Audio, segments: list[Segment],
                          parameters: dict[str, Any] | None = None, device: str = "auto",
                          progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                          prior: SourcePrior | None = None) -> SeparationResult:
        """Public entry for the edit-then-separate flow (segments from the user); ``prior``: the
        detection's (:attr:`Detection.prior`) for the same mix and query, to skip recomputing it."""
        import time

        values = self.resolve_parameters(parameters)
        dev = resolve_device(device)
        t0 = time.perf_counter()
        result = self.separate_detected(mix, query, segments, values, dev, progress, cancel, prior=prior)
        result.engine, result.parameters = self.name, values
        result.seconds, result.device = time.perf_counter() - t0, str(dev)
        return result


def detection_of(result: SeparationResult) -> Detection | None:
    """The :class:`Detection` a query separation carries (None for other engines)."""
    det = result.info.get("detection")
    return det if isinstance(det, Detection) else None
