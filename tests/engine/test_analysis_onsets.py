"""Onsets: the peer suite's F-measure results, one-to-one matching, detection of known clicks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.analysis.onsets import detect_onsets, f_measure, match_events, onset_envelope
from engine.analysis.spectral_pass import spectral_pass


@pytest.mark.parametrize("case", [f"{i:02d}" for i in range(10)])
def test_f_measure_matches_mir_eval(shared_fixtures: Path, case: str) -> None:
    folder = shared_fixtures / "mir_eval" / "onset"
    ref = np.loadtxt(folder / f"ref{case}.txt", comments="#", ndmin=1)
    est = np.loadtxt(folder / f"est{case}.txt", comments="#", ndmin=1)
    expected = json.loads((folder / f"output{case}.json").read_text())
    scores = f_measure(ref, est, 0.05)
    assert abs(scores.f1 - expected["F-measure"]) <= 1e-12
    assert abs(scores.precision - expected["Precision"]) <= 1e-12
    assert abs(scores.recall - expected["Recall"]) <= 1e-12


def test_matching_is_one_to_one_and_maximum() -> None:
    # Two estimates near one reference: only one may match it.
    assert len(match_events(np.array([1.0]), np.array([0.98, 1.02]), 0.05)) == 1
    # 1.04 is within reach of both references; pairing it with 1.08 would leave 1.0 unmatched.
    # The maximum matching pairs 1.0↔1.04 and 1.08↔1.12.
    pairs = match_events(np.array([1.0, 1.08]), np.array([1.04, 1.12]), 0.05)
    assert len(pairs) == 2
    assert f_measure(np.array([]), np.array([1.0])).f1 == 0.0


def test_clicks_are_found_within_a_frame() -> None:
    rate = 22_050
    times = np.array([0.5, 1.1, 1.6, 2.35, 3.0])
    x = np.zeros((1, rate * 4), dtype=np.float32)
    rng = np.random.default_rng(1)
    for t in times:
        i = int(t * rate)
        x[0, i : i + 400] += (rng.standard_normal(400) * np.exp(-np.arange(400) / 80)).astype(np.float32)
    sums = spectral_pass(x, None, rate)
    cfg = sums.config
    assert sums.mel_est is not None
    found = detect_onsets(onset_envelope(sums.mel_est, n_fft=cfg.n_fft, hop=cfg.hop_length), rate, cfg.hop_length)
    assert len(found) == len(times)
    assert np.max(np.abs(found - times)) <= 1.5 * cfg.hop_length / rate
    assert f_measure(times, found).f1 == 1.0


def test_silence_has_no_onsets() -> None:
    env = onset_envelope(np.zeros((128, 50), dtype=np.float32))
    assert env.shape == (50,) and detect_onsets(env, 44_100, 512).size == 0
