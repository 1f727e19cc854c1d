"""Shared pytest setup; kept deliberately small."""

import sys
from pathlib import Path

# `tests.lab` is imported by the lab tests and run as `python -m tests.lab.sink`:
# make sure the project root is importable however pytest was started.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# Docker lab fixtures (docker_client, lab_images, docker_lab), shared by every module that
# needs the engine; they skip with a reason when not root.
from tests.dockerlab.fixtures import docker_client, docker_lab, lab_images  # noqa: E402,F401
