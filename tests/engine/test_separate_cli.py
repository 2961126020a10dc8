"""``app.py separate`` end to end: align, separate, export, separation.json; bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.audio import Audio, load_audio, save_audio
from tests.engine.test_reference import RATE, _instrumental, _sdr, _vocal

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "app.py"), *args], capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    d = tmp_path_factory.mktemp("sep")
    v, i = _vocal(12.0, seed=5), _instrumental(12.0, seed=6)
    vocals, inst = np.stack([v, 0.9 * v]), np.stack([i, np.roll(i, 200)])
    mix = save_audio(d / "song.wav", Audio(vocals + inst, RATE), bit_depth="float")
    # the acapella starts 0.5 s later in its file and is 3 dB quieter
    lead = int(0.5 * RATE)
    aca = np.concatenate([np.zeros((2, lead), np.float32), vocals * 10 ** (-3 / 20)], axis=1)
    acapella = save_audio(d / "acapella.wav", Audio(aca.astype(np.float32), RATE), bit_depth="float")
    return mix, acapella, inst


def test_reference_engine_from_files(files: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    mix, acapella, inst = files
    out = tmp_path / "stems"
    r = _run("separate", "--mix", str(mix), "--acapella", str(acapella), "--engine", "reference",
             "--out", str(out), "--bit-depth", "float", "--quiet")
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "separation.json").read_text())
    assert info["engine"] == "reference" and info["stems"] == ["vocals", "instrumental"]
    assert info["alignment"]["offset_samples"] == pytest.approx(-0.5 * RATE, abs=1)
    assert info["sum_error_db"] <= -100
    stems = {n: load_audio(out / f"{n}.wav") for n in ("vocals", "instrumental")}
    m = load_audio(mix)
    assert stems["vocals"].samples.shape == m.samples.shape
    assert np.max(np.abs(stems["vocals"].samples + stems["instrumental"].samples - m.samples)) < 1e-5
    assert _sdr(inst, stems["instrumental"].samples) > 20


def test_refuses_to_overwrite_and_needs_acapella(files: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    mix, acapella, _ = files
    out = tmp_path / "o"
    args = ["separate", "--mix", str(mix), "--acapella", str(acapella), "--engine", "reference", "--out", str(out), "--quiet"]
    assert _run(*args).returncode == 0
    again = _run(*args)
    assert again.returncode == 2 and "overwrite" in again.stderr
    assert _run(*args, "--overwrite").returncode == 0
    no_aca = _run("separate", "--mix", str(mix), "--engine", "reference", "--out", str(tmp_path / "p"))
    assert no_aca.returncode == 2 and "--acapella" in no_aca.stderr


def test_wrong_song_acapella_is_refused(files: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    mix, _, _ = files
    other = save_audio(tmp_path / "other.wav", Audio(np.stack([_vocal(8.0, seed=77)] * 2), RATE))
    r = _run("separate", "--mix", str(mix), "--acapella", str(other), "--engine", "reference", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "does not match" in r.stderr
    assert not (tmp_path / "x").exists()


def test_bad_engine_and_param(files: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    mix, acapella, _ = files
    r = _run("separate", "--mix", str(mix), "--engine", "nope", "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown engine" in r.stderr
    r = _run("separate", "--mix", str(mix), "--acapella", str(acapella), "--engine", "reference",
             "--out", str(tmp_path / "q"), "--param", "cleanup=7")
    assert r.returncode == 2 and "cleanup" in r.stderr
