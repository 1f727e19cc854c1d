"""Rootless Podman for the tests: a user of its own (``egt-rootless``, with subordinate ids),
its runtime directory, its Podman API service on ``/run/user/UID/podman/podman.sock``, and the
lab's base image loaded into its storage. Its containers run with ``--network none``: only
their own loopback, so nothing can leave them (rootless Podman's usual network, slirp4netns,
would be a way out through this host)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import docker

from ..dockerlab.engine import DockerUnavailable, apt_install
from . import podman

USER = "egt-rootless"
LOG = Path("/var/log/egress-tui-podman-rootless.log")


class Rootless:
    """The user, where things are, and how to run a command as it."""

    def __init__(self):
        self.user = pwd.getpwnam(USER)
        self.uid = self.user.pw_uid
        self.runtime = f"/run/user/{self.uid}"
        self.socket = f"{self.runtime}/podman/podman.sock"
        self.url = f"unix://{self.socket}"
        self.conf = f"{self.runtime}/containers.conf"

    def env(self, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONPATH", "TERM")}
        return {**keep, "HOME": self.user.pw_dir, "USER": USER, "XDG_RUNTIME_DIR": self.runtime,
                "CONTAINERS_CONF": self.conf, **extra}

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` as the user (its groups cleared), with the user's environment."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.user.pw_gid}", "--init-groups", "--", *argv]

    def run(self, argv: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(argv), env=kw.pop("env", None) or self.env(), capture_output=True,
                              text=True, timeout=timeout, cwd="/", **kw)

    def client(self) -> docker.DockerClient:
        """A client on the user's socket (as root: root may talk to any socket)."""
        return docker.DockerClient(base_url=self.url, timeout=60)


def _ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
        return
    except KeyError:
        pass
    p = subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], capture_output=True, text=True)
    if p.returncode != 0:
        raise DockerUnavailable(f"useradd {USER}: {p.stderr.strip()}")


def _subids(uid: int) -> None:
    """Subordinate uids and gids for the user's namespaces (useradd adds them where
    login.defs says so; a range far above anything in use otherwise)."""
    for f in ("/etc/subuid", "/etc/subgid"):
        text = Path(f).read_text() if os.path.exists(f) else ""
        if not any(line.split(":")[0] == USER for line in text.splitlines()):
            with open(f, "a") as out:
                out.write(f"{USER}:{3_000_000 + uid * 65536 % 1_000_000_000}:65536\n")


def ensure_rootless(docker_client) -> Rootless:
    """The user, its service answering, and the base image in its storage."""
    apt_install(["podman", "uidmap"])
    _ensure_user()
    r = Rootless()
    _subids(r.uid)
    for d in (r.runtime, os.path.dirname(r.socket)):
        os.makedirs(d, exist_ok=True)
        os.chown(d, r.uid, r.user.pw_gid)
        os.chmod(d, 0o700)
    shutil.copyfile(podman.CONF, r.conf)     # the user must read it: the repository may be root's alone
    os.chmod(r.conf, 0o644)
    if not _answers(r):
        log = open(LOG, "ab")
        subprocess.Popen(r.argv(["podman", "--log-level=warn", "system", "service", "--time=0", r.url]),
                         env=r.env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                         cwd="/")
        log.close()
        deadline = time.monotonic() + podman.START_TIMEOUT
        while not _answers(r):
            if time.monotonic() > deadline:
                raise DockerUnavailable(f"rootless podman did not answer on {r.socket}: {LOG.read_text()[-2000:]}")
            time.sleep(0.2)
    image = podman.ensure_podman_image(docker_client)
    c = r.client()
    try:
        c.images.get(image)
    except docker.errors.ImageNotFound:
        save = subprocess.Popen(["podman", "save", "--format", "docker-archive", image], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=podman.podman_env())
        load = subprocess.run(r.argv(["podman", "load"]), stdin=save.stdout, env=r.env(), capture_output=True,
                              text=True, timeout=600, cwd="/")
        save.stdout.close()
        save.wait(60)
        if load.returncode != 0:
            raise DockerUnavailable(f"podman load as {USER} failed: {load.stderr[-2000:]}")
    return r


def _answers(r: Rootless) -> bool:
    try:
        r.client().ping()
        return True
    except docker.errors.DockerException:
        return False
