"""pytest fixtures for the tests that need Podman or containerd (imported in tests/conftest.py).
Not root: skipped with the reason. Root (CI): never skipped; a missing engine is an error."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def podman_client():
    """A docker SDK client on Podman's rootful API socket (the service started if need be)."""
    if os.geteuid() != 0:
        pytest.skip("the Podman lab needs root (installs podman, starts its service, builds namespaces)")
    from .podman import ensure_podman
    return ensure_podman()


@pytest.fixture(scope="session")
def podman_image(docker_client, podman_client):
    """The lab's debootstrap base, imported into Podman."""
    from .podman import ensure_podman_image
    return ensure_podman_image(docker_client, podman_client)


@pytest.fixture(scope="module")
def podman_lab(podman_client, podman_image):
    """A ``PodmanLab``: Podman containers in the network lab's client namespace."""
    from .podman import PodmanLab
    with PodmanLab(podman_client, podman_image) as lab:
        yield lab


@pytest.fixture(scope="session")
def ctr_image(docker_client, podman_image):
    """containerd running, with the lab's base image imported (ctr images import)."""
    from .containerd import ensure_ctr_image
    return ensure_ctr_image(docker_client)
