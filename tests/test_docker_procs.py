"""Which process opened each connection, in a real container watched from the host (netns) and
through a helper that shares its PID namespace (helper): a program its init started (the parent
chain ends at the container's init, numbered as the host numbers it, or as the container does),
a rerun (tagged with the run, its chain ending at the run's shell: docker exec's parent is
outside the container), and a DNS query through Docker's resolver at 127.0.0.11, whose NAT
moves port 53 before the capture sees it."""

from __future__ import annotations

import time

import pytest

from egress_tui.core.procs import run_tag
from egress_tui.core.runs import RunSpec
from egress_tui.inspection import open_inspection
from tests.dockerlab.images import BASE_TAG

pytestmark = [pytest.mark.docker, pytest.mark.root]

HOLD = "import socket, sys, time; s = socket.create_connection((sys.argv[1], 443)); time.sleep(0.5)"
# the container's init: a shell that runs a client whenever /tmp/go appears
INIT = ["sh", "-c", "while :; do if [ -e /tmp/go ]; then rm -f /tmp/go; "
                    f"python3 -c '{HOLD}' from-init.test; fi; sleep 0.1; done"]
DNS_CLIENT = r"""
import socket, struct, time
q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\x04dnsq\x04test\x00" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.11", 53))
s.send(q)
s.recv(512)
time.sleep(0.3)
"""


def until(what, insp, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        with insp.capturer.lock:
            got = what(insp.engine)
        if got:
            return got
        assert time.monotonic() < deadline, f"not seen in {timeout} s ({insp.attributor.stats})"
        time.sleep(0.1)


def answered(name: str):
    def get(engine):
        h = engine.hosts.get(name)
        conns = list(h.conns) if h is not None else []
        return conns if conns and all(c.proc is not None for c in conns) else None
    return get


@pytest.mark.parametrize("method", ["netns", "helper"])
def test_processes_in_a_container_with_their_parents_runs_and_dns(docker_lab, docker_client, lab_images, method):
    box = docker_lab.add_container(BASE_TAG, f"procs-{method}", command=INIT)
    box.reload()
    # the helper reads the container's own /proc: its init is PID 1 there
    init_pid = int(box.attrs["State"]["Pid"]) if method == "netns" else 1
    with open_inspection(box.name, dc=docker_client, method=method, helper_image=lab_images["base"].id) as insp:
        insp.start_capture()
        assert insp.method.startswith(method) and insp.attributor is not None, insp.procs_refusal
        assert insp.wait_ready(30), insp.error
        assert not insp.procs_refusal, insp.procs_refusal

        box.exec_run(["touch", "/tmp/go"])
        conns = until(answered("from-init.test"), insp)
        p = conns[0].proc
        assert p.program.startswith("python3") and "from-init.test" in p.cmdline
        assert p.parents == ((init_pid, "sh"),)  # the container's init
        assert p.pid_ns == ("container" if method == "helper" else "")

        rec = insp.new_run(RunSpec(command=["sh", "-c", f"python3 -c '{HOLD}' run.test; echo done"],
                                   provider="none", timeout=30))
        lines: list[str] = []
        insp.execute(rec, lines.append)
        assert rec.exit_code == 0 and "done" in lines, (rec.error, lines)
        conns = until(answered("run.test"), insp)
        p = conns[0].proc
        assert p.program.startswith("python3") and p.run == run_tag(1)
        # the run's shell, and nothing above it: docker exec starts it from outside the container
        assert [c for _pid, c in p.parents] == ["sh"]

        r = box.exec_run(["python3", "-c", DNS_CLIENT])
        assert r.exit_code == 0, r.output

        def dns(engine):
            h = engine.hosts.get("dnsq.test")
            return dict(h.query_procs) if h is not None and h.query_procs else None
        got = until(dns, insp)
        assert len(got) == 1, got
        [(who, n)] = got.items()
        assert who.program.startswith("python3") and n == 1


@pytest.mark.parametrize("method", ["netns", "helper"])
def test_real_claude_code_in_a_rerun_is_named_with_its_run(docker_lab, docker_client, lab_images, method):
    """Claude Code from npm, rerun in the lab's target: its connections to the API (the lab's
    sink answers for it) name the claude program and the run, never its key."""
    key = "sk-ant-egress-tui-procs-test"
    with open_inspection(docker_lab.target.name, dc=docker_client, method=method,
                         helper_image=lab_images["base"].id) as insp:
        insp.start_capture()
        assert insp.wait_ready(30), insp.error
        rec = insp.new_run(RunSpec(command=["claude", "-p", "hello"], provider="anthropic",
                                   env={"ANTHROPIC_API_KEY": key}, timeout=12))
        insp.execute(rec, lambda line: None)
        assert not rec.error, rec.error
        conns = until(answered("api.anthropic.com"), insp)
        named = [c.proc for c in conns if c.proc != "process unknown"]
        assert named, [c.proc for c in conns]
        for p in named:
            assert p.program == "claude" and p.run == run_tag(1), p
            assert p.cmdline == "claude -p hello" and key not in repr(p)


def test_a_helper_image_without_python3_is_refused_in_one_line_and_capture_goes_on(docker_lab, docker_client,
                                                                                     lab_images):
    """The agent is Python: an image without python3 (but with tcpdump) still captures; the
    connections are "not looked up" (never "process unknown"), and one line says what to do."""
    strip = docker_client.containers.create(lab_images["base"].id, ["sh", "-c", "rm -f /usr/bin/python3*"])
    try:
        strip.start()
        strip.wait(timeout=30)
        nopy = strip.commit(repository="egress-tui-test/nopython", tag="procs-tests")
    finally:
        strip.remove(force=True)
    try:
        box = docker_lab.add_container(BASE_TAG, "procs-nopy", command=INIT)
        with open_inspection(box.name, dc=docker_client, method="helper", helper_image=nopy.id) as insp:
            insp.start_capture()
            assert insp.wait_ready(30), insp.error
            refusal = insp.procs_refusal
            assert "python3" in refusal and "--helper-image" in refusal and "\n" not in refusal, refusal
            box.exec_run(["touch", "/tmp/go"])
            conns = until(lambda e: list(e.hosts["from-init.test"].conns) if "from-init.test" in e.hosts else None,
                          insp)
            assert all(c.proc is None for c in conns), [c.proc for c in conns]
        assert not docker_client.containers.list(all=True, filters={"label": f"egress-tui.target={box.id}"})
    finally:
        docker_client.images.remove(nopy.id, force=True)
