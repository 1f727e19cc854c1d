"""The architecture holds: layered packages (import-linter), and the headless entry points
load neither Textual nor, for reading files, the Docker SDK (checked in a fresh interpreter,
so a new module or a new cycle cannot slip past a list of names)."""

import json
import os
import pkgutil
import subprocess
import sys

import pytest

import egress_tui

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_linter_contracts_hold():
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    r = subprocess.run([lint], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "BROKEN" not in r.stdout and r.stdout.count("KEPT") >= 3


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/", timeout=60)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.splitlines()[-1]))


def tops(mods: set[str]) -> set[str]:
    return {m.split(".")[0] for m in mods}


HEADLESS = [m.name for m in pkgutil.walk_packages(egress_tui.__path__, "egress_tui.")
            if not m.name.startswith("egress_tui.ui") and m.name != "egress_tui.__main__"]


@pytest.mark.parametrize("module", HEADLESS)
def test_every_headless_module_loads_without_textual(module):
    assert "textual" not in tops(loaded_after(f"import {module}"))


def test_report_on_a_file_needs_neither_textual_nor_docker(tmp_path):
    out = tmp_path / "r.json"
    mods = loaded_after("from egress_tui.cli import main, demo_capture\n"
                        f"assert main(['report', '--pcap', demo_capture(), '--format', 'json', '-o', {str(out)!r}]) == 0")
    assert not {"textual", "docker"} & tops(mods)
    assert json.loads(out.read_text())["hosts"]


def test_the_package_is_egress_tui_not_tui():
    """The folder is tui/; imported under that name every module would exist twice."""
    r = subprocess.run([sys.executable, "-c", "import tui"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "import egress_tui, not tui" in r.stderr
    assert os.path.realpath(egress_tui.__file__).startswith(os.path.realpath(os.path.join(ROOT, "tui")))
