"""BSS Eval: the peer suite's reference results (MATLAB toolbox via mir_eval's tests), a
brute-force least-squares re-implementation, and analytic cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.analysis.bss_eval import (
    bss_eval_images,
    bss_eval_images_framewise,
    bss_eval_images_v4,
    bss_eval_sources,
    bss_eval_sources_framewise,
    cross_correlations,
    gram_matrix,
    safe_db,
)

CASES = ["01", "02", "03", "05", "06", "07", "08", "09"]
TOL_DB = 0.01  # mir_eval's tolerance


def _load_stack(folder: Path) -> np.ndarray:
    """All WAVs of a folder as (nsrc, samples); stereo files become the channel mean (as mir_eval)."""
    rows = []
    for f in sorted(folder.glob("*.wav")):
        x, _ = sf.read(str(f), dtype="float64")
        rows.append(x.mean(axis=1) if x.ndim == 2 else x)
    return np.vstack(rows)


def _images(mono: np.ndarray, nchan: int, gain: float = 1.0, reverse: bool = False) -> np.ndarray:
    """mir_eval's test harness: channel 0 is the source, the others ``gain`` × the source
    ("reverse" reverses the order of those identical channels, a no-op kept for fidelity).
    Returns (nsrc, nchan, samples), our layout."""
    first = np.atleast_3d(mono)  # (nsrc, samples, 1)
    others = [gain * first for _ in range(nchan - 1)]
    if reverse:
        others = others[::-1]
    return np.concatenate([first, *others], axis=2).transpose(0, 2, 1)


def _check(name: str, got: np.ndarray, expected: list) -> None:
    exp = np.asarray(expected, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if exp.ndim == 1 and got.ndim == 2 and got.shape[1] == 1:
        got = got[:, 0]
    assert got.shape == exp.shape, f"{name}: shape {got.shape} != {exp.shape}"
    same = (np.isinf(exp) & (got == exp)) | (np.isnan(exp) & np.isnan(got))
    finite = np.isfinite(exp) & np.isfinite(got)
    assert np.all(same | finite), f"{name}: non-finite values differ\n got {got}\n expected {exp}"
    diff = np.abs(np.where(finite, got, 0.0) - np.where(finite, exp, 0.0))
    assert np.all(diff <= TOL_DB), f"{name}: max difference {diff.max():.4g} dB\n got {got}\n expected {exp}"


@pytest.fixture(scope="module")
def separation_dir(shared_fixtures: Path) -> Path:
    return shared_fixtures / "mir_eval" / "separation"


def _case(separation_dir: Path, case: str) -> tuple[np.ndarray, np.ndarray, dict]:
    expected = json.loads((separation_dir / f"output{case}.json").read_text())
    return _load_stack(separation_dir / f"ref{case}"), _load_stack(separation_dir / f"est{case}"), expected


@pytest.mark.parametrize("case", CASES)
def test_sources_and_framewise_match_the_matlab_toolbox(separation_dir: Path, case: str) -> None:
    ref, est, expected = _case(separation_dir, case)
    res = bss_eval_sources(ref, est, compute_permutation=True)
    exp = expected["Sources"]
    _check("SDR", res.sdr, exp["Source to Distortion"])
    _check("SIR", res.sir, exp["Source to Interference"])
    _check("SAR", res.sar, exp["Source to Artifact"])
    assert res.permutation.tolist() == exp["Source permutation"]
    fr = expected["Framewise"]
    res = bss_eval_sources_framewise(ref, est, fr["win"], fr["hop"], compute_permutation=False)
    _check("frames SDR", res.sdr, fr["Source to Distortion"])
    _check("frames SIR", res.sir, fr["Source to Interference"])
    _check("frames SAR", res.sar, fr["Source to Artifact"])
    _check("frames permutation", res.permutation, fr["Source permutation"])


@pytest.mark.parametrize("case", CASES)
def test_images_and_images_framewise_match_the_matlab_toolbox(separation_dir: Path, case: str) -> None:
    ref, est, expected = _case(separation_dir, case)
    exp = expected["Images"]
    res = bss_eval_images(_images(ref, exp["nchan"]), _images(est, exp["nchan"], exp["gain"], exp["reverse"]))
    _check("SDR", res.sdr, exp["Source to Distortion"])
    _check("ISR", res.isr, exp["Image to Spatial"])
    _check("SIR", res.sir, exp["Source to Interference"])
    _check("SAR", res.sar, exp["Source to Artifact"])
    assert res.permutation.tolist() == exp["Source permutation"]
    exp = expected["Images Framewise"]
    res = bss_eval_images_framewise(_images(ref, exp["nchan"]),
                                    _images(est, exp["nchan"], exp["gain"], exp["reverse"]),
                                    exp["win"], exp["hop"])
    _check("frames SDR", res.sdr, exp["Source to Distortion"])
    _check("frames ISR", res.isr, exp["Image to Spatial"])
    _check("frames SIR", res.sir, exp["Source to Interference"])
    _check("frames SAR", res.sar, exp["Source to Artifact"])


def test_single_source_has_infinite_sir(separation_dir: Path) -> None:
    ref, est, expected = _case(separation_dir, "09")
    assert expected["Sources"]["Source to Interference"] == [float("inf")]
    assert bss_eval_sources(ref, est).sir.tolist() == [float("inf")]


# ---------------------------------------------------------------------------------------------
# Building blocks against direct computation
# ---------------------------------------------------------------------------------------------


def test_cross_correlations_equal_direct_sums() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 9000))
    lags = 40
    corr = cross_correlations(x, 2, lags)
    assert corr.shape == (2, 3, lags)
    for a in range(2):
        for c in range(3):
            direct = [np.dot(x[a, : 9000 - t], x[c, t:]) for t in range(lags)]
            np.testing.assert_allclose(corr[a, c], direct, rtol=1e-10, atol=1e-9)


def test_gram_matrix_equals_delayed_inner_products() -> None:
    rng = np.random.default_rng(4)
    n, taps = 300, 7
    s = rng.standard_normal((2, n))
    g = gram_matrix(cross_correlations(s, 2, taps)[:, :2])
    delayed = np.zeros((n + taps - 1, 2 * taps))
    for k in range(2):
        for d in range(taps):
            delayed[d : d + n, k * taps + d] = s[k]
    np.testing.assert_allclose(g, delayed.T @ delayed, rtol=1e-10, atol=1e-9)


def _brute_v4(ref: np.ndarray, est: np.ndarray, taps: int, window: int, hop: int) -> np.ndarray:
    """museval v4 by explicit least squares on delayed copies: (4, nsrc, nwin) SDR/ISR/SIR/SAR."""
    nsrc, nchan, n = ref.shape

    def delayed(x: np.ndarray) -> np.ndarray:
        m = np.zeros((n + taps - 1, taps))
        for d in range(taps):
            m[d : d + n, d] = x
        return m

    a_all = np.hstack([delayed(ref[k, c]) for k in range(nsrc) for c in range(nchan)])
    nwin = (n - window + hop) // hop
    out = np.zeros((4, nsrc, nwin))
    for j in range(nsrc):
        a_j = np.hstack([delayed(ref[j, c]) for c in range(nchan)])
        energies = np.zeros((7, nwin))
        for c in range(nchan):
            e = np.r_[est[j, c], np.zeros(taps - 1)]
            s = np.r_[ref[j, c], np.zeros(taps - 1)]
            q = a_all @ np.linalg.lstsq(a_all, e, rcond=None)[0]
            p = a_j @ np.linalg.lstsq(a_j, e, rcond=None)[0]
            for w in range(nwin):
                sl = slice(w * hop, w * hop + window)
                for i, v in enumerate([s, e - s, p - s, p, q - p, q, e - q]):
                    energies[i, w] += np.sum(v[sl] ** 2)
        s2, es, ps, p2, qp, q2, eq = energies
        out[:, j] = [safe_db(s2, es), safe_db(s2, ps), safe_db(p2, qp), safe_db(q2, eq)]
    return out


def test_images_v4_equals_brute_force_least_squares() -> None:
    rng = np.random.default_rng(5)
    n, taps, window, hop = 2400, 12, 600, 400
    ref = rng.standard_normal((2, 2, n))
    mixing = np.array([[0.9, 0.3], [0.2, 0.7]])
    est = np.einsum("ij,jcn->icn", mixing, ref) + 0.05 * rng.standard_normal((2, 2, n))
    est[:, 1] = np.roll(est[:, 1], 3, axis=-1)  # a small delay: the filters must absorb it
    v4, src = bss_eval_images_v4(ref, est, window, hop, taps=taps, sources_scores=True)
    brute = _brute_v4(ref, est, taps, window, hop)
    for i, got in enumerate([v4.sdr, v4.isr, v4.sir, v4.sar]):
        np.testing.assert_allclose(got, brute[i], atol=1e-6)
    assert src is not None and src.permutation.tolist() == [0, 1]


def test_identical_channels_score_as_mono() -> None:
    rng = np.random.default_rng(6)
    ref = rng.standard_normal((2, 5000))
    est = ref + 0.3 * ref[::-1] + 0.1 * rng.standard_normal((2, 5000))
    mono = bss_eval_images(ref[:, None], est[:, None], compute_permutation=False, taps=64)
    stereo = bss_eval_images(np.repeat(ref[:, None], 2, 1), np.repeat(est[:, None], 2, 1),
                             compute_permutation=False, taps=64)
    for a, b in zip(mono[:4], stereo[:4], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_analytic_interference_and_artifacts() -> None:
    """White-noise sources: est = s1 + 0.1·s2 has SIR = 20 dB (less the share of s2 the filter
    can explain, ~taps/n) and no artifacts; est = s1 + 0.1·n (n in no reference) has SAR ≈ 20 dB."""
    rng = np.random.default_rng(7)
    n, taps = 120_000, 64
    s = rng.standard_normal((2, n))
    noise = rng.standard_normal(n)
    est = np.stack([s[0] + 0.1 * s[1], s[1] + 0.1 * noise])
    res = bss_eval_sources(s, est, compute_permutation=False, taps=taps)
    assert res.sir[0] == pytest.approx(20.0, abs=0.05)
    assert res.sar[0] > 60.0  # the estimate lies in the span of the references
    assert res.sdr[0] == pytest.approx(20.0, abs=0.05)
    assert res.sar[1] == pytest.approx(20.0, abs=0.05)
    assert res.sir[1] > 35.0


def test_perfect_estimate_and_swapped_estimates() -> None:
    rng = np.random.default_rng(8)
    s = rng.standard_normal((3, 20_000))
    res = bss_eval_sources(s, s, taps=32)
    assert np.all(res.sdr > 100) and res.permutation.tolist() == [0, 1, 2]
    swapped = bss_eval_sources(s, s[[2, 0, 1]], taps=32)
    assert swapped.permutation.tolist() == [1, 2, 0]  # estimate perm[j] is true source j
    assert np.all(swapped.sdr > 100)


def test_v4_silent_windows_are_left_out_and_silent_source_is_defined() -> None:
    rng = np.random.default_rng(9)
    n = 8000
    ref = rng.standard_normal((2, 1, n))
    ref[0, :, 2000:4000] = 0.0  # one silent second (window = hop = 2000)
    est = ref + 0.1 * rng.standard_normal(ref.shape)
    v4, _ = bss_eval_images_v4(ref, est, 2000, 2000, taps=16)
    assert np.isnan(v4.sdr[0, 1]) and not np.isnan(v4.sdr[0]).all()
    assert np.isfinite(v4.median("sdr")).all()
    silent = np.zeros_like(ref)
    silent[1] = ref[1]
    v4, src = bss_eval_images_v4(silent, est, 2000, 2000, taps=16, sources_scores=True)
    assert np.isnan(v4.median("sdr")[0])  # no window to score: undefined, not an error
    assert src is not None and not np.isnan(src.sdr[1])
