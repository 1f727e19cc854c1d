"""Local or refuse: egress-tui enters a container's network namespace (capture, firewall) only
when the engine is a unix socket on this machine and the PID it reports is, here, a process
of that container. A remote engine cannot run in the tests, so a fake one stands in for it
(FakeRemoteEngine): it answers like a Docker client whose containers live elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from egress_tui import cli
from egress_tui.live import containers
from egress_tui.inspection import open_inspection
from egress_tui.live.capture import CaptureError
from egress_tui.live.containers import (ContainerInfo, ContainerSource, DockerError, choose_method, netns_refusal,
                                        pid_refusal)

CID = "3f2a9c1d7e6b" + "0123456789abcdef" * 3 + "0123"
assert len(CID) == 64


class _FakeContainer:
    def __init__(self, info: ContainerInfo):
        self.id, self.name, self.status = info.id, info.name, info.status
        self.image = None
        self.attrs = {"State": {"Status": info.status, "Pid": info.pid}, "Config": {"Image": info.image},
                      "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.9"}}}}


class FakeRemoteEngine:
    """A docker client whose engine is elsewhere: tcp:// (or a local socket, with ``base_url``),
    and whose one container reports ``pid`` (1, or some unrelated process of this host)."""

    def __init__(self, pid: int, base_url: str = "http://10.20.30.40:2375"):
        self.info = ContainerInfo(CID, "claude-box", "img", "running", ["bridge"], pid, ["172.17.0.9"])

        class Api:
            pass
        self.api = Api()
        self.api.base_url = base_url
        engine = self

        class Containers:
            def get(self, ref):
                if ref in (engine.info.id, engine.info.name):
                    return _FakeContainer(engine.info)
                from docker.errors import NotFound
                raise NotFound(ref)

            def list(self, all=False, filters=None):
                return [] if filters else [_FakeContainer(engine.info)]
        self.containers = Containers()


@pytest.fixture
def unrelated_process():
    """A process of this host that belongs to no container."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p.pid
    p.kill()
    p.wait()


@pytest.fixture
def remote(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.20.30.40:2375")
    return FakeRemoteEngine(pid=1)


def test_a_tcp_engine_is_remote_even_on_loopback(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    why = netns_refusal(FakeRemoteEngine(1, base_url="http://127.0.0.1:2375"))
    assert "tcp://127.0.0.1:2375 is not a local unix socket" in why
    assert "not a local unix socket" in netns_refusal(FakeRemoteEngine(1, base_url="http+docker://ssh"))
    local = FakeRemoteEngine(1, base_url="http+docker://localhost")
    assert netns_refusal(local) == ""  # a local socket, no PID to check yet (the container is stopped)
    assert netns_refusal(local, local.info) == "the engine reports PID 1 for container claude-box"


def test_userinfo_in_docker_host_stays_out_of_the_message(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://admin:hunter22@10.1.1.1:2376")
    why = netns_refusal(FakeRemoteEngine(1, base_url="https://10.1.1.1:2376"))
    assert "hunter22" not in why and "tcp://***@10.1.1.1:2376" in why


def test_pid_1_or_an_unrelated_process_is_no_proof(unrelated_process):
    info = ContainerInfo(CID, "claude-box", "img", "running", [], 1, [])
    assert "PID 1" in pid_refusal(info)
    info.pid = unrelated_process
    assert "is not in container claude-box" in pid_refusal(info)
    info.pid = 2 ** 22 + 12345  # above pid_max: no such process here
    assert "is not a process on this host" in pid_refusal(info)


def test_a_pid_whose_cgroup_names_the_container_is_proof(tmp_path):
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
    (proc / "4343").mkdir()
    (proc / "4343" / "cgroup").write_text("0::/\n")
    (proc / "4343" / "cpuset").write_text(f"/docker/{CID}\n")  # cgroup v1 hosts
    (proc / "4444").mkdir()
    (proc / "4444" / "cgroup").write_text(f"0::/docker/{CID[:12]}\n")  # a short id could be anyone's
    info = ContainerInfo(CID, "claude-box", "img", "running", [], 4242, [])
    assert pid_refusal(info, proc=str(proc)) == ""
    info.pid = 4343
    assert pid_refusal(info, proc=str(proc)) == ""
    info.pid = 4444
    assert "is not in container" in pid_refusal(info, proc=str(proc))


@pytest.mark.parametrize("base_url, pid", [("http://10.20.30.40:2375", 1),
                                            ("http://10.20.30.40:2375", "unrelated"),
                                            ("http+docker://localhost", 1),
                                            ("http+docker://localhost", "unrelated")])
def test_auto_picks_the_helper_and_explicit_netns_is_refused(monkeypatch, unrelated_process, base_url, pid):
    monkeypatch.setattr("egress_tui.live.containers.can_enter_namespaces", lambda: True)  # as root
    dc = FakeRemoteEngine(unrelated_process if pid == "unrelated" else pid, base_url=base_url)
    assert choose_method(dc, dc.info, "auto") == "helper"
    with open_inspection("claude-box", dc=dc) as insp:   # capture and firewall decide as one
        assert insp.method.startswith("helper") and insp.container.id == CID
    with pytest.raises(DockerError) as e:
        open_inspection("claude-box", method="netns", dc=dc)
    assert "--method netns refused" in str(e.value) and "use --method helper" in str(e.value)


def test_a_restart_onto_an_unprovable_pid_stops_the_capture(monkeypatch):
    """The engine is local and its first PID was fine, but after a restart it reports PID 1:
    the capture stops rather than enter the host's own namespace."""
    dc = FakeRemoteEngine(pid=1, base_url="http+docker://localhost")
    src = ContainerSource(dc, "claude-box")
    with pytest.raises(CaptureError) as e:
        next(src.batches(threading.Event()))
    assert "not entering the namespace" in str(e.value) and "PID 1" in str(e.value)


def _one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("argv", [
    ["report", "--container", "claude-box", "--method", "netns"],
    ["firewall", "status", "claude-box", "--method", "netns"],
    ["firewall", "apply", "claude-box", "--preset", "anthropic", "--method", "netns"],
    ["learn", "claude-box", "--method", "netns", "--", "true"],
    ["claude-box", "--method", "netns"],
])
def test_every_command_refuses_netns_on_a_remote_engine_in_one_line(monkeypatch, capsys, remote, argv):
    monkeypatch.setattr("egress_tui.live.containers.client", lambda: remote)
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # root is not what decides here
    assert cli.main(argv) == cli.EXIT_ERROR
    line = _one_line(capsys)
    assert "--method netns refused" in line and "tcp://10.20.30.40:2375" in line and "--method helper" in line


def test_a_login_in_docker_host_stays_out_of_the_unreachable_message(monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "tcp://bob:pw-in-docker-host@127.0.0.1:1")
    assert cli.main(["report", "--container", "x"]) == cli.EXIT_ERROR
    line = _one_line(capsys)
    assert "pw-in-docker-host" not in line and "tcp://***@127.0.0.1:1" in line


@pytest.mark.parametrize("network, dns, says", [
    ("bridge", [], "no DNS server is known for this container"),
    ("labnet", [], "the servers Docker's embedded DNS (127.0.0.11) forwards to are unknown"),
    ("labnet", ["192.0.2.53"], ""),
])
def test_dns_a_firewall_would_break_is_said(remote, monkeypatch, network, dns, says):
    """A remote engine's own resolvers cannot be known from here: without --dns, a firewall
    would block the container's lookups, and `firewall apply` and the screen say so."""
    from egress_tui.firewall.plan import resolver_warning
    made = _FakeContainer.__init__

    def on_network(self, info):
        made(self, info)
        self.attrs["HostConfig"] = {"NetworkMode": network, "Dns": dns}
        self.attrs["NetworkSettings"] = {"Networks": {network: {}}}

    monkeypatch.setattr(_FakeContainer, "__init__", on_network)
    warning = resolver_warning(containers.engine_resolvers(remote, remote.info))
    assert warning.startswith(says) if says else warning == ""
