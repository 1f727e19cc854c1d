"""Rootless Podman, real: what works and what cannot, each said in one line. Its user captures
through a helper container (egress-tui cannot enter a user namespace without root, and says so
for --method netns); root works from the host, the container's PID proved through its conmon
(cgroup v1 gives a rootless container no cgroup of its own), firewall included; any other user
can neither talk to the socket nor enter the namespace. The container has only its loopback
(``--network none``): its traffic goes to a server inside it."""

from __future__ import annotations

import os
import subprocess

import pytest

from egress_tui.firewall.apply import Firewall
from egress_tui.firewall.runners import NamespaceRunner
from tests.enginelab.podman import IMAGE, LABEL, LABEL_PID, ULIMITS
from tests.enginelab.run import EGRESS, egress, report_while
from tests.test_pid_target import one_line

pytestmark = [pytest.mark.podman, pytest.mark.docker, pytest.mark.root]

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


@pytest.fixture(scope="module")
def rootless(docker_client):
    from tests.enginelab.rootless import ensure_rootless
    return ensure_rootless(docker_client)


@pytest.fixture(scope="module")
def rbox(rootless):
    c = rootless.client()
    box = c.containers.create(IMAGE, ["sh", "-c", "python3 -m http.server 8080 --bind 127.0.0.1 >/dev/null 2>&1 & "
                                                   "exec sleep infinity"],
                              name=f"egt-rootless-{os.getpid()}", network_mode="none", ulimits=ULIMITS,
                              labels={LABEL: "rootless", LABEL_PID: str(os.getpid())})
    box.start()
    box.reload()
    for _ in range(50):   # the server listens
        if box.exec_run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:8080/"]).exit_code == 0:
            break
    yield box
    box.remove(force=True)


def visit(box, name: str) -> str:
    """An HTTP request for ``name`` to the server on the container's own loopback."""
    r = box.exec_run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                      "--resolve", f"{name}:8080:127.0.0.1", f"http://{name}:8080/"])
    return r.output.decode()


def test_its_user_captures_through_a_helper(rootless, rbox):
    hosts, err, done = report_while(["--container", rbox.name, "--helper-image", IMAGE],
                                    lambda: visit(rbox, "rl-helper.test"), prefix=rootless.argv([]),
                                    env=rootless.env())
    assert done == "200"
    assert f"capturing {rbox.name} (helper {IMAGE})" in err          # auto: the helper, as the user
    assert "http" in hosts["rl-helper.test"]["via"]
    assert not rootless.client().containers.list(all=True, filters={"label": "egress-tui.helper"})


def test_its_user_cannot_enter_the_namespace_and_says_so(rootless, rbox):
    r = rootless.run([EGRESS, "report", "--container", rbox.name, "--method", "netns"])
    one_line(r, f"containers of rootless Podman (uid {rootless.uid}) live in that user's own user namespace, "
                "which egress-tui cannot enter without root: use --method helper")


def test_root_works_from_the_host_firewall_included(rootless, rbox):
    env = {**os.environ, "CONTAINER_HOST": rootless.url}
    hosts, err, _ = report_while(["--container", rbox.name], lambda: visit(rbox, "rl-root.test"), env=env)
    assert f"found {rbox.name} in Podman ({rootless.url})" in err
    assert f"capturing {rbox.name} (netns (host))" in err           # its PID proved through conmon
    assert "http" in hosts["rl-root.test"]["via"]
    fw = Firewall(NamespaceRunner(f"/proc/{rbox.attrs['State']['Pid']}/ns/net"), "test-rootless")
    before = fw.snapshot()
    r = egress("firewall", "apply", rbox.name, "--preset", "anthropic", "--no-verify", env=env)
    assert r.returncode == 0, r.stderr
    st = egress("firewall", "status", rbox.name, env=env)
    assert f"firewall on {rbox.name}: ON" in st.stdout, st.stderr
    assert visit(rbox, "loopback-stays-open.test") == "200"          # loopback is always let through
    r = egress("firewall", "remove", rbox.name, env=env)
    assert r.returncode == 0 and "firewall removed" in r.stdout
    assert fw.snapshot().same_rules(before)


def test_another_user_can_do_nothing_and_is_told_in_one_line(rootless, rbox, tmp_path):
    env = {**os.environ, "CONTAINER_HOST": rootless.url}
    r = subprocess.run([*NOBODY, EGRESS, "report", "--container", rbox.name, "--engine", "podman"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    one_line(r, f"no permission to talk to Podman at {rootless.url}: a rootless Podman answers only its own "
                f"user (uid {rootless.uid}); run egress-tui as that user, or as root")
    r = subprocess.run([*NOBODY, EGRESS, "report", "--pid", str(rbox.attrs["State"]["Pid"])],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    one_line(r, "--pid and --netns enter the namespace from the host: run as root")
