"""The CLI's contract: help, one-line errors with exit code 2, no traceback, no Qt import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from engine.audio import Audio, save_audio

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "app.py"), *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_help_lists_commands() -> None:
    r = _run("--help")
    assert r.returncode == 0
    for cmd in ("gui", "align", "analyze"):
        assert cmd in r.stdout


def test_bad_arguments_exit_2_one_line() -> None:
    r = _run("align", "--mix", "x.wav")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "--acapella" in r.stderr


def test_missing_file_exit_2_names_it(tmp_path: Path) -> None:
    aca = save_audio(tmp_path / "a.wav", Audio(np.zeros((1, 8000), np.float32) + 0.1, 8000))
    missing = tmp_path / "no such mix.wav"
    r = _run("align", "--mix", str(missing), "--acapella", str(aca))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "not found" in lines[0]
    assert "Traceback" not in r.stderr


def test_corrupt_file_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "mix.flac"
    bad.write_bytes(b"fLaC" + b"\x00" * 64)
    aca = save_audio(tmp_path / "a.wav", Audio(np.zeros((1, 8000), np.float32) + 0.1, 8000))
    r = _run("align", "--mix", str(bad), "--acapella", str(aca))
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr


def test_headless_commands_do_not_import_qt() -> None:
    code = (
        "import sys; sys.argv=['app.py','--help']\n"
        "import engine.cli, engine.align, engine.analysis.command\n"
        "assert not any(m.split('.')[0] in ('PySide6','pyqtgraph','gui') for m in sys.modules), sorted(sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
