"""Shared pytest setup; kept deliberately small."""

import sys
from pathlib import Path

# `tests.lab` is imported by the lab tests and run as `python -m tests.lab.sink`:
# make sure the project root is importable however pytest was started.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
