#!/usr/bin/env python3
"""Unmix Studio entry point: the GUI by default, headless sub-commands for batch work.

    python app.py                 # the GUI on the bundled demo session
    python app.py --help          # every command
"""

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
