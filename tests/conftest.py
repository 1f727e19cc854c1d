"""Shared pytest setup; kept deliberately small."""

import sys
from pathlib import Path

# `tests.lab` is imported by the lab tests and run as `python -m tests.lab.sink`:
# make sure the project root is importable however pytest was started.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# Docker lab fixtures (docker_client, lab_images, docker_lab, proxy_image, docker_proxy_lab, tools_image),
# shared by every module that needs the engine; they skip with a reason when not root.
from tests.tmux import tmux_session  # noqa: E402,F401 - the screen in a real terminal
from tests.dockerlab.fixtures import (  # noqa: E402,F401
    docker_client,
    docker_lab,
    docker_proxy_lab,
    lab_images,
    proxy_image,
    tools_image,
)

# Podman and containerd (tests/enginelab/): the same, for the other engines
from tests.enginelab.fixtures import ctr_image, podman_client, podman_image, podman_lab  # noqa: E402,F401

import os  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def lab():
    """The network-namespace lab with a process in its client namespace (``lab.pid``): what
    the firewall and capture tests enter, as egress-tui enters a container's namespace."""
    if os.geteuid() != 0:
        pytest.skip("the network lab needs root")
    from tests.lab.netlab import Lab

    with Lab() as lab:
        lab.pid = lab.client_pid()
        yield lab


@pytest.fixture
def fw(lab, request):
    """egress-tui's firewall on the lab's client namespace, removed before and after."""
    from egress_tui.firewall.apply import Firewall
    from egress_tui.firewall.runners import NamespaceRunner

    f = Firewall(NamespaceRunner(lab.pid), f"test-{request.module.__name__}-{lab.client_ns}")
    f.remove()
    yield f
    f.remove()


@pytest.fixture(autouse=True)
def _no_cursor_blink(monkeypatch):
    """Inputs keep a steady cursor in tests: a blinking one makes screenshots depend on timing."""
    from textual.widgets import Input

    init = Input.__init__

    def steady(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.set_reactive(Input.cursor_blink, False)

    monkeypatch.setattr(Input, "__init__", steady)
