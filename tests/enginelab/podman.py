"""Podman for the tests: Debian's ``podman``, its API service on the rootful socket, the lab's
base image imported from the same debootstrap tree as Docker's, and ``PodmanLab``: containers
in the network lab's client namespace (``--network ns:/run/netns/...``).

Why ``ns:`` and not a Podman network: Podman's own networks (CNI on Debian 12) write bridge,
NAT and FORWARD rules into the host's iptables, where dockerd keeps its own: two engines
rewriting one table is how a Docker lab breaks. A container that joins a namespace the test
built itself makes Podman touch no network at all, and the namespace (tests/lab/netlab.py)
has no default route: only the lab's sink and its sinkhole DNS (198.18.0.2), which answers
every name with a lab address, are reachable.

    client = ensure_podman()                  # docker SDK client on /run/podman/podman.sock
    image = ensure_podman_image(docker_client)
    with PodmanLab(client) as lab:
        box = lab.add("box")                  # sleep infinity, DNS 198.18.0.2
        lab.exec(["curl", "-sk", "https://alpha.test/"], box)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tarfile
import time
from pathlib import Path

import docker

from ..dockerlab.engine import DockerUnavailable, apt_install, docker_cli
from ..dockerlab.images import (BASE_TAG, CACHE, IMAGE_ENV_PATH, LABEL_RECIPE, SUITE, _labels, base_recipe,
                                create_container, ensure_base_image)
from ..lab import netlab

SOCKET = "/run/podman/podman.sock"
CONF = Path(__file__).with_name("containers.conf")
LOG = Path("/var/log/egress-tui-podman.log")
IMAGE = f"localhost/egress-tui-test/base:{SUITE}"
LABEL = "egress-tui.podmanlab"
LABEL_PID = "egress-tui.podmanlab.pid"
START_TIMEOUT = 30.0
# what every lab container gets, whatever containers.conf the service runs with (see there)
ULIMITS = [docker.types.Ulimit(name="nofile", soft=1024, hard=1024),
           docker.types.Ulimit(name="nproc", soft=1024, hard=1024)]


def podman_env() -> dict[str, str]:
    """The environment for the podman CLI and its service: our containers.conf."""
    return dict(os.environ, CONTAINERS_CONF=str(CONF))


def _client() -> docker.DockerClient | None:
    try:
        c = docker.DockerClient(base_url=f"unix://{SOCKET}", timeout=30)
        c.ping()
        return c
    except docker.errors.DockerException:
        return None


def ensure_podman() -> docker.DockerClient:
    """Podman's API answering on the rootful socket: ``apt-get install podman`` when it is
    missing, then ``podman system service`` started in the background (no systemd here to
    start podman.socket); it outlives the test run on purpose, like dockerd."""
    c = _client()
    if c is not None:
        return c
    apt_install(["podman"])
    os.makedirs(os.path.dirname(SOCKET), exist_ok=True)
    if os.path.exists(SOCKET):
        os.unlink(SOCKET)  # a service that died left it
    log = open(LOG, "ab")
    subprocess.Popen(["podman", "--log-level=warn", "system", "service", "--time=0", f"unix://{SOCKET}"],
                     env=podman_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        c = _client()
        if c is not None:
            return c
        time.sleep(0.2)
    raise DockerUnavailable(f"podman system service did not answer on {SOCKET}: {LOG.read_text()[-2000:]}")


def ensure_podman_image(docker_client: docker.DockerClient, client: docker.DockerClient | None = None) -> str:
    """``localhost/egress-tui-test/base:bookworm`` in Podman: the lab's debootstrap base
    (curl, python3, iproute2, tcpdump, ...), ``podman import``ed from the same tree Docker's
    base was imported from (``.cache/dockerlab/rootfs-bookworm``; where that cache is gone,
    from Docker's base image, which holds exactly that tree). Returns the tag."""
    client = client or ensure_podman()
    base = ensure_base_image(docker_client)
    recipe = f"{base_recipe()}:{base.id}"
    try:
        if _labels(client.images.get(IMAGE)).get(LABEL_RECIPE) == recipe:
            return IMAGE
    except docker.errors.ImageNotFound:
        pass
    t0 = time.monotonic()
    argv = ["podman", "import", "--change", f"ENV PATH={IMAGE_ENV_PATH}", "--change", "ENV LANG=C.UTF-8",
            "--change", 'CMD ["/bin/bash"]', "--change", f"LABEL {LABEL_RECIPE}={recipe}", "-", IMAGE]
    rootfs = CACHE / f"rootfs-{SUITE}"
    stamp = rootfs / ".egress-tui-recipe"
    if stamp.exists() and stamp.read_text().strip() == base_recipe():
        tar = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-c", "."],
                               stdout=subprocess.PIPE)
        imp = subprocess.run(argv, stdin=tar.stdout, capture_output=True, text=True, env=podman_env(), timeout=600)
        tar.stdout.close()
        tar.wait(60)
    else:  # the tree is not cached here: Docker's base holds the same files
        c = create_container(docker_client, BASE_TAG, ["true"], network_mode="none")
        try:
            exp = subprocess.Popen([docker_cli(), "export", c.id], stdout=subprocess.PIPE)
            imp = subprocess.run(argv, stdin=exp.stdout, capture_output=True, text=True, env=podman_env(),
                                 timeout=600)
            exp.stdout.close()
            exp.wait(60)
        finally:
            c.remove(force=True)
    if imp.returncode != 0:
        raise DockerUnavailable(f"podman import failed: {imp.stderr[-2000:]}")
    print(f"[enginelab] imported {IMAGE} into Podman in {time.monotonic() - t0:.0f} s", flush=True)
    return IMAGE


def image_archive(path: Path) -> Path:
    """The Podman image saved as a docker-archive tarball (what ``ctr images import`` reads)."""
    if not path.exists():
        tmp = path.with_suffix(".part")
        p = subprocess.run(["podman", "save", "--format", "docker-archive", "-o", str(tmp), IMAGE],
                           capture_output=True, text=True, env=podman_env(), timeout=600)
        if p.returncode != 0:
            raise DockerUnavailable(f"podman save failed: {p.stderr[-2000:]}")
        with tarfile.open(tmp):  # readable as a whole
            pass
        tmp.rename(path)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_leftovers(client: docker.DockerClient) -> None:
    """Lab containers whose test process is gone (a killed run)."""
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        pid = (c.labels or {}).get(LABEL_PID, "")
        if not pid.isdigit() or not _pid_alive(int(pid)):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass


class PodmanLab:
    """The network lab (tests/lab/netlab.py: a client namespace whose only way out is a veth to
    the sink's namespace) with Podman containers in its client namespace."""

    def __init__(self, client: docker.DockerClient, image: str = IMAGE):
        self.client = client
        self.image = image
        self.net: netlab.Lab | None = None
        self.name = f"egt-pm-{os.getpid()}-{secrets.token_hex(3)}"
        self.containers: list = []

    @property
    def netns(self) -> str:
        return f"/run/netns/{self.net.client_ns}"

    def __enter__(self) -> PodmanLab:
        remove_leftovers(self.client)
        self.net = netlab.Lab(prefer_ipv4=True).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, role: str, command: list[str] | None = None, **kw):
        """A container in the lab's client namespace, resolving through the lab DNS."""
        c = self.client.containers.create(
            self.image, command or ["sleep", "infinity"], name=f"{self.name}-{role}",
            network_mode=f"ns:{self.netns}", dns=[netlab.DNS_SERVER], ulimits=ULIMITS,
            labels={LABEL: self.name, LABEL_PID: str(os.getpid())}, **kw)
        self.containers.append(c)
        c.start()
        c.reload()
        return c

    def exec(self, argv: list[str], container, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run ``argv`` in ``container`` (through Podman's API); text output."""
        res = container.exec_run(["timeout", "-k", "2", f"{timeout:g}", *argv], demux=True)
        out, err = res.output if res.output else (None, None)
        return subprocess.CompletedProcess(argv, res.exit_code, (out or b"").decode(errors="replace"),
                                           (err or b"").decode(errors="replace"))

    def address_for(self, name: str) -> str:
        return self.net.address_for(name)[0]

    def close(self) -> None:
        for c in self.containers:
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass
        self.containers = []
        if self.net is not None:
            self.net.close()
            self.net = None
