"""containerd for the tests, as on a Kubernetes node: Debian's ``containerd`` (docker.io
depends on it) started with its own socket, root and state, driven with ``ctr``.

A node's operator finds a pod container's PID with ``crictl inspect`` (``.info.pid``); here
no kubelet runs, so ``ctr task ls`` reads the same PID from containerd, and egress-tui takes
it with ``--pid``. The container joins the network lab's client namespace
(``--with-ns network:/run/netns/...``, as a CNI plugin would hand a pod its namespace), so
its only way out is the lab's sink and sinkhole DNS.

    ensure_containerd()
    ensure_ctr_image(docker_client)                # the lab's debootstrap base
    with CtrContainer(netns, resolv_conf) as box:  # ctr run -d ... sleep infinity
        box.pid                                    # from ctr task ls
        box.exec(["curl", "-sk", "https://alpha.test/"])
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

from ..dockerlab.engine import DockerUnavailable, apt_install
from ..dockerlab.images import CACHE
from . import podman

SOCKET = "/run/egress-tui-containerd/containerd.sock"
ROOT = "/var/lib/egress-tui-containerd"
STATE = "/run/egress-tui-containerd"
CONFIG = Path(__file__).with_name("containerd.toml")
LOG = Path("/var/log/egress-tui-containerd.log")
NAMESPACE = "egress-tui-test"   # containerd's own namespaces, not Linux ones (k8s.io on a node)
IMAGE = podman.IMAGE            # localhost/egress-tui-test/base:bookworm


def ctr(*args: str, timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(["ctr", "--address", SOCKET, "--namespace", NAMESPACE, *args], capture_output=True,
                       text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise DockerUnavailable(f"ctr {' '.join(args)} failed ({p.returncode}): {(p.stderr or p.stdout)[-2000:]}")
    return p


def _answers() -> bool:
    return os.path.exists(SOCKET) and ctr("version", check=False, timeout=10).returncode == 0


def ensure_containerd() -> None:
    """containerd answering on SOCKET: installed when missing, started in the background
    (it outlives the test run, like dockerd)."""
    if _answers():
        return
    apt_install(["containerd"])
    os.makedirs(STATE, exist_ok=True)
    log = open(LOG, "ab")
    subprocess.Popen(["containerd", "--config", str(CONFIG), "--address", SOCKET, "--root", ROOT, "--state", STATE],
                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _answers():
            return
        time.sleep(0.2)
    raise DockerUnavailable(f"containerd did not answer on {SOCKET}: {LOG.read_text()[-2000:]}")


def ensure_ctr_image(docker_client) -> str:
    """The lab's base image in containerd (``ctr images import`` of the Podman image, itself
    imported from the debootstrap tree). Returns its reference."""
    ensure_containerd()
    if IMAGE in ctr("images", "ls", "-q").stdout.split():
        return IMAGE
    podman.ensure_podman_image(docker_client)
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = podman.image_archive(CACHE / "base-image.tar")
    try:
        ctr("images", "import", str(archive), timeout=600)
    finally:
        archive.unlink(missing_ok=True)  # 230 MB, and containerd holds its own copy now
    if IMAGE not in ctr("images", "ls", "-q").stdout.split():
        raise DockerUnavailable(f"ctr images import did not give {IMAGE}: {ctr('images', 'ls', '-q').stdout}")
    return IMAGE


def remove_leftovers() -> None:
    """Containers a killed run left behind (all of this test namespace's are the tests')."""
    for cid in ctr("containers", "ls", "-q", check=False).stdout.split():
        ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False, timeout=30)
        ctr("tasks", "rm", "-f", cid, check=False, timeout=30)
        ctr("containers", "rm", cid, check=False, timeout=30)


class CtrContainer:
    """``ctr run -d`` of the base image in a given network namespace, with a resolv.conf
    bound in (containerd writes none: on a node the kubelet does)."""

    def __init__(self, netns: str, resolv_conf: str, command: list[str] | None = None):
        self.netns = netns
        self.resolv_conf = resolv_conf
        self.command = command or ["sleep", "infinity"]
        self.id = f"egt-ctr-{os.getpid()}-{secrets.token_hex(3)}"
        self.pid = 0

    def __enter__(self) -> CtrContainer:
        remove_leftovers()
        ctr("run", "-d", "--with-ns", f"network:{self.netns}",
            "--mount", f"type=bind,src={self.resolv_conf},dst=/etc/resolv.conf,options=rbind:ro",
            IMAGE, self.id, *self.command)
        self.pid = task_pid(self.id)
        return self

    def __exit__(self, *exc) -> None:
        ctr("tasks", "kill", "-s", "SIGKILL", self.id, check=False, timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "RUNNING" in ctr("tasks", "ls", check=False).stdout:
            time.sleep(0.1)
        ctr("tasks", "rm", "-f", self.id, check=False, timeout=30)
        ctr("containers", "rm", self.id, check=False, timeout=30)

    def exec(self, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        return ctr("tasks", "exec", "--exec-id", f"x{secrets.token_hex(4)}", self.id,
                   "timeout", "-k", "2", f"{timeout:g}", *argv, check=False, timeout=timeout + 10)


def task_pid(container_id: str) -> int:
    """The PID of a container's task, as ``ctr task ls`` lists it (TASK PID STATUS)."""
    for line in ctr("tasks", "ls").stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == container_id and parts[1].isdigit():
            return int(parts[1])
    raise DockerUnavailable(f"no task {container_id} in ctr task ls")
