"""``ensure_docker()``: a Docker engine answering on /var/run/docker.sock.

CI starts from a fresh Debian 12 machine with nothing installed and no daemon
running, so this module installs Debian's ``docker.io`` when ``dockerd`` is
missing and starts ``dockerd`` itself (there is no systemd to do it).  Every
step is skipped when already done: on a machine where the daemon answers,
``ensure_docker()`` costs one ``ping()``.

Daemon settings, and why (checked on this sandbox: kernel 6.18, ext4 root,
cgroup v1 hybrid, no systemd, iptables 1.8.9 with the nft backend selected):

* storage driver -- ``overlay2`` when an overlay mount actually works on the
  file system that holds /var/lib/docker (probed with a real mount: the
  kernel listing ``overlay`` in /proc/filesystems is not enough, e.g. overlay
  on overlay fails inside another container), else ``vfs`` (slow, full copies
  per layer, but works everywhere).  Here overlay2 works.
* iptables -- dockerd runs whatever ``iptables`` is on PATH, i.e. the
  ``update-alternatives`` choice.  We keep the current choice when it can list
  the filter and nat tables (here: iptables-nft, which works on this kernel;
  the "iptables-legacy tables present" warning only means something once
  loaded legacy tables, whose chains are empty with ACCEPT policies, so they
  change nothing).  If the current backend cannot, and the other one can, we
  switch the alternatives for iptables/ip6tables to it.  If neither works we
  run ``dockerd --iptables=false``: ``--internal`` networks then lose their
  DROP rules, but the lab still has no route out of the target (see lab.py).
* cgroups -- dockerd 20.10 (Debian 12) picks the cgroupfs driver and v1 on its
  own; nothing to set.
* settings that /etc/docker/daemon.json already makes are not repeated on the
  command line (dockerd refuses a directive given both ways).

The daemon is started detached (own session, stdin from /dev/null) and logs to
/var/log/egress-tui-dockerd.log; it outlives the test run on purpose, so the
next run finds it answering.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import docker

SOCKET = "/var/run/docker.sock"
PIDFILE = Path("/var/run/docker.pid")
DAEMON_JSON = Path("/etc/docker/daemon.json")
DOCKERD_LOG = Path("/var/log/egress-tui-dockerd.log")
START_TIMEOUT = 60.0


class DockerUnavailable(RuntimeError):
    """No engine could be had (not root, install failed, daemon would not start)."""


def _run(argv: list[str], timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise DockerUnavailable(
            f"{' '.join(argv)} failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-2000:]}"
        )
    return p


# -- Debian packages --------------------------------------------------------------


def missing_packages(packages: list[str]) -> list[str]:
    """The Debian packages of ``packages`` that dpkg does not list as installed."""
    out = []
    for pkg in packages:
        p = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True
        )
        if p.returncode != 0 or "ok installed" not in p.stdout:
            out.append(pkg)
    return out


def apt_install(packages: list[str]) -> None:
    """``apt-get install -y`` the packages not installed yet (root only).

    Tries without ``apt-get update`` first (fast when the lists are there) and
    updates the lists once if that fails (a fresh machine may have none).
    """
    todo = missing_packages(packages)
    if not todo:
        return
    if os.geteuid() != 0:
        raise DockerUnavailable(f"need root to install {' '.join(todo)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *todo]
    if subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900).returncode != 0:
        _run(["apt-get", "update", "-q"], env=env, timeout=600)
        _run(argv, env=env, timeout=900)


def docker_cli() -> str:
    """Path of the docker CLI (Debian's or any other on PATH)."""
    path = shutil.which("docker")
    if not path:
        raise DockerUnavailable("docker CLI not found")
    return path


# -- daemon settings --------------------------------------------------------------


def _daemon_json() -> dict:
    try:
        return json.loads(DAEMON_JSON.read_text())
    except (OSError, ValueError):
        return {}


def overlay_works(base: str = "/var/lib/docker") -> bool:
    """Whether an overlay mount works on the file system holding ``base``
    (dockerd's data root: on this sandbox /var/lib/docker is a file system of its own)."""
    if not shutil.which("mount"):
        return False
    try:
        os.makedirs(base, exist_ok=True)
        top = tempfile.mkdtemp(prefix="egress-tui-overlay-probe-", dir=base)
    except OSError:
        return False
    try:
        dirs = {k: os.path.join(top, k) for k in ("lower", "upper", "work", "merged")}
        for d in dirs.values():
            os.mkdir(d)
        Path(dirs["lower"], "f").write_text("x")
        opts = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
        p = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, dirs["merged"]],
            capture_output=True, text=True, timeout=30,
        )
        if p.returncode != 0:
            return False
        try:
            Path(dirs["merged"], "g").write_text("y")  # copy-up / upper writes work too
            return Path(dirs["merged"], "f").read_text() == "x"
        finally:
            subprocess.run(["umount", dirs["merged"]], capture_output=True, timeout=30)
    except OSError:
        return False
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _iptables_ok(binary: str) -> bool:
    if not shutil.which(binary):
        return False
    for table in ("filter", "nat"):
        p = subprocess.run([binary, "-w", "-t", table, "-L", "-n"], capture_output=True, timeout=30)
        if p.returncode != 0:
            return False
    return True


def choose_iptables() -> bool:
    """Make ``iptables`` on PATH a backend that works; False if none does."""
    if _iptables_ok("iptables"):
        return True
    for backend in ("nft", "legacy"):
        if _iptables_ok(f"iptables-{backend}"):
            for tool in ("iptables", "ip6tables"):
                target = shutil.which(f"{tool}-{backend}")
                if target and shutil.which("update-alternatives"):
                    subprocess.run(
                        ["update-alternatives", "--set", tool, target], capture_output=True, timeout=30
                    )
            return _iptables_ok("iptables")
    return False


def dockerd_argv() -> list[str]:
    """The dockerd command line for this machine (see the module docstring)."""
    conf = _daemon_json()
    argv = ["dockerd"]
    if "storage-driver" not in conf:
        root = conf.get("data-root", "/var/lib/docker")
        argv.append("--storage-driver=" + ("overlay2" if overlay_works(root) else "vfs"))
    if "iptables" not in conf and not choose_iptables():
        argv.append("--iptables=false")
    return argv


# -- the daemon ---------------------------------------------------------------------


def _try_client() -> docker.DockerClient | None:
    if not os.path.exists(SOCKET):
        return None
    try:
        client = docker.DockerClient(base_url=f"unix://{SOCKET}", version="auto", timeout=300)
        client.ping()
        return client
    except Exception:
        return None


def _running_dockerd() -> int | None:
    """PID of a live dockerd that owns the pid file (a zombie counts as dead:
    PID 1 here does not always reap at once)."""
    try:
        pid = int(PIDFILE.read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    state = stat[stat.rindex(")") + 2 :].split()[0]
    return pid if comm == "dockerd" and state not in ("Z", "X") else None


def _log_tail(n: int = 30) -> str:
    try:
        return "\n".join(DOCKERD_LOG.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _spawn_dockerd() -> subprocess.Popen:
    PIDFILE.unlink(missing_ok=True)  # stale: dockerd refuses to start over it
    argv = dockerd_argv()
    DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(DOCKERD_LOG, "ab") as log:
        log.write(f"\n=== egress-tui: {' '.join(argv)} at {time.ctime()}\n".encode())
        log.flush()
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def start_dockerd(timeout: float = START_TIMEOUT) -> docker.DockerClient:
    """Start dockerd in the background (unless a live one is already starting)
    and wait until it answers ``ping()``."""
    proc = None
    spawned = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = _try_client()
        if client is not None:
            return client
        if proc is not None and proc.poll() is not None:
            # seen after a dockerd was killed: its containerd was still going
            # away and the new dockerd gave up waiting for it; one more try
            if spawned >= 2:
                raise DockerUnavailable(
                    f"dockerd exited with {proc.returncode}; {DOCKERD_LOG}:\n{_log_tail()}"
                )
            proc = None
            time.sleep(1)
        if proc is None and _running_dockerd() is None:
            proc = _spawn_dockerd()
            spawned += 1
        time.sleep(0.25)
    raise DockerUnavailable(f"dockerd did not answer within {timeout:.0f} s; {DOCKERD_LOG}:\n{_log_tail()}")


def ensure_docker(timeout: float = START_TIMEOUT) -> docker.DockerClient:
    """A client for a running engine: installs docker.io and starts dockerd
    when needed (root only for those steps).  Idempotent and cheap when done."""
    client = _try_client()
    if client is not None:
        return client
    if os.geteuid() != 0:
        raise DockerUnavailable("no Docker engine answering, and installing/starting one needs root")
    if not (shutil.which("dockerd") and shutil.which("containerd") and shutil.which("runc")):
        apt_install(["docker.io"])
    if not shutil.which("docker"):  # dockerd without the CLI (a partial install)
        apt_install(["docker.io"])
    return start_dockerd(timeout)
