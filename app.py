#!/usr/bin/env python3
"""Unmix Studio entry point: the GUI by default, headless sub-commands for batch work.

    python app.py                 # the GUI on the bundled demo session
    python app.py --help          # every command

The engine never imports Qt; this file is where the GUI is handed to the command line.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine.runtime import configure_memory  # noqa: E402

# Before torch is imported: keep freed memory in the process for the next chunk instead of
# faulting it in again, and default torch's huge-page allocation on (engine/runtime.py).
# bench/bench_query.py --speed-only measures both (UNMIX_KEEP_MEMORY=0 or
# THP_MEM_ALLOC_ENABLE=0 to compare; the README has the table).
configure_memory()

from engine.cli import main as cli_main  # noqa: E402


def run_gui(**kwargs: object) -> int:
    from gui.app import run_gui as launch

    return launch(**kwargs)  # type: ignore[arg-type]


def main() -> int:
    return cli_main(gui_runner=run_gui)


if __name__ == "__main__":
    sys.exit(main())
