"""The engine is headless: the import-linter contract in pyproject.toml must hold."""

import os
import subprocess
import sys


def test_core_never_imports_textual():
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    r = subprocess.run([lint], capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "KEPT" in r.stdout
