"""pytest fixtures for tests that need the Docker lab.

Import them into a test module (``from tests.dockerlab.fixtures import
docker_client, lab_images, docker_lab``) or, to share one engine/image set
across modules, into tests/conftest.py.  Not root: skipped with the reason.
Root (CI): never skipped -- a missing engine or a failed build is an error.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def docker_client():
    if os.geteuid() != 0:
        pytest.skip("the Docker lab needs root (installs/starts dockerd, nsenter into containers)")
    from .engine import ensure_docker

    return ensure_docker()


@pytest.fixture(scope="session")
def lab_images(docker_client):
    """{"base", "sink", "target"} images, built once per session (cached across runs)."""
    from .images import ensure_images

    return ensure_images(docker_client)


@pytest.fixture(scope="module")
def docker_lab(docker_client, lab_images):
    """A running ``DockerLab`` shared by one test module (one lab per daemon at a time)."""
    from .lab import DockerLab

    with DockerLab(docker_client) as lab:
        yield lab


@pytest.fixture(scope="session")
def proxy_image(docker_client, lab_images):
    """``egress-tui-test/proxy:bookworm`` (base + squid + dante-server), built once."""
    from .images import ensure_proxy_image

    return ensure_proxy_image(docker_client)


@pytest.fixture(scope="session")
def tools_image(docker_client, lab_images):
    """``egress-tui-test/tools:bookworm`` (base + nodejs + git), built once."""
    from .images import ensure_tools_image

    return ensure_tools_image(docker_client)


@pytest.fixture(scope="module")
def docker_proxy_lab(docker_client, lab_images, proxy_image):
    """A running ``DockerLab`` with its ``proxy`` container (``lab.add_proxies()``:
    Squid 3128/3129, Dante 1080/1081), shared by one test module."""
    from .lab import DockerLab

    with DockerLab(docker_client) as lab:
        lab.add_proxies()
        yield lab
