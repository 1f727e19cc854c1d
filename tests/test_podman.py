"""egress-tui on Podman as on Docker, with a real Podman (Debian's, through its API socket):
capture from the host and through a helper, the firewall applied and removed (the namespace's
rules and sets as before), a rerun, the picker listing both engines and a restart followed
through Podman's events; a name both engines know; Podman unreachable. The containers live in
the network lab's client namespace (tests/enginelab/podman.py): nothing leaves it but to the
lab's sink and sinkhole DNS."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from egress_tui.firewall.apply import Firewall
from egress_tui.firewall.runners import NamespaceRunner
from tests.dockerlab.images import BASE_TAG, create_container
from tests.enginelab.podman import SOCKET
from tests.enginelab.run import EGRESS, egress, report_while

pytestmark = [pytest.mark.podman, pytest.mark.docker, pytest.mark.root, pytest.mark.netns]

@pytest.fixture(scope="module")
def box(podman_lab):
    return podman_lab.add("box")


def curl(lab, box, url: str, *extra: str) -> str:
    """The HTTP status curl got ("000" when it could not connect)."""
    return lab.exec(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", *extra, url],
                    box, timeout=10).stdout


def test_capture_a_podman_container_from_the_host(podman_lab, box):
    def traffic():
        return (curl(podman_lab, box, "https://alpha-pm.test/"), curl(podman_lab, box, "http://plain-pm.test/"),
                curl(podman_lab, box, "https://pm.blackholed.test/", "--max-time", "2"))

    hosts, err, done = report_while(["--container", box.name], traffic)
    assert done[:2] == ("200", "200"), done
    # auto found it in Podman, and said so (Docker answers too, and does not know it)
    assert f"found {box.name} in Podman (unix://{SOCKET})" in err
    assert f"capturing {box.name} (netns (host))" in err
    assert "tls" in hosts["alpha-pm.test"]["via"] and "http" in hosts["plain-pm.test"]["via"]
    blocked = hosts["pm.blackholed.test"]
    assert blocked["blocked"] and blocked["outcomes"].get("unanswered"), blocked


def test_capture_a_podman_container_through_a_helper(podman_lab, box, podman_client, podman_image):
    def traffic():
        return curl(podman_lab, box, "https://helper-pm.test/")

    hosts, err, done = report_while(["--container", box.name, "--engine", "podman", "--method", "helper",
                                      "--helper-image", podman_image], traffic)
    assert done == "200"
    assert f"capturing {box.name} (helper {podman_image})" in err
    assert "found " not in err                      # --engine podman: no choice was made
    assert "tls" in hosts["helper-pm.test"]["via"]
    assert not podman_client.containers.list(all=True, filters={"label": "egress-tui.helper"})


def test_firewall_on_podman_then_off_leaves_the_namespace_as_it_was(podman_lab, box, tmp_path):
    fw = Firewall(NamespaceRunner(podman_lab.netns), "test-podman-snapshot")
    before = fw.snapshot()
    allow = tmp_path / "allow.txt"
    allow.write_text("fw-ok-pm.test\n")
    r = egress("firewall", "apply", box.name, "--allow", str(allow))
    assert r.returncode == 0, r.stderr
    assert f"firewall applied to {box.name}: 1 entries" in r.stdout and "DNS only to 198.18.0.2" in r.stdout
    assert "check denied  example.com" in r.stdout and "FAILED" not in r.stdout
    try:
        assert curl(podman_lab, box, "https://fw-ok-pm.test/") == "200"
        assert curl(podman_lab, box, "https://fw-denied-pm.test/") == "000"
        st = json.loads(egress("firewall", "status", box.name, "--format", "json").stdout)
        assert st["on"] and st["allowlist"] == ["fw-ok-pm.test"] and st["dropped_packets"]["4"] > 0
    finally:
        r = egress("firewall", "remove", box.name)
    assert r.returncode == 0 and f"firewall removed from {box.name}" in r.stdout, r.stderr
    assert fw.snapshot().same_rules(before)
    assert curl(podman_lab, box, "https://fw-denied-pm.test/") == "200"


def test_a_rerun_in_a_podman_container(podman_lab, box):
    r = egress("learn", box.name, "--provider", "none", "--timeout", "20", "--format", "json", "--",
               "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}\\n", "https://learn-pm.test/")
    assert r.returncode == 0, r.stderr
    assert f"in {box.name} (netns (host))" in r.stderr
    assert "  | 200" in r.stderr                                  # its output, echoed
    hosts = {h["name"] for h in json.loads(r.stdout)["hosts"]}
    assert "learn-pm.test" in hosts


def test_a_name_both_engines_know_asks_which(podman_lab, docker_client, podman_image):
    twin = podman_lab.add("twin")
    other = create_container(docker_client, BASE_TAG, ["sleep", "infinity"], name=twin.name, network_mode="none")
    try:
        other.start()
        r = egress("firewall", "status", twin.name)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert (f"'{twin.name}' names a container in Docker and Podman: say which with --engine docker or "
                "--engine podman") in r.stderr
        r = egress("firewall", "status", twin.name, "--engine", "podman")
        assert r.returncode == 0 and f"firewall on {twin.name}: off" in r.stdout, r.stderr
    finally:
        other.remove(force=True)


def test_the_picker_lists_both_engines_and_follows_a_podman_restart(podman_lab, docker_client, tmux_session):  # noqa: F811
    box = podman_lab.add("picked")
    beside = create_container(docker_client, BASE_TAG, ["sleep", "infinity"], name=f"{podman_lab.name}-docker",
                              network_mode="none")
    try:
        beside.start()
        t = tmux_session([EGRESS])
        t.wait_line(box.name, "podman", "running")               # the engine column
        t.wait_line(beside.name, "docker", "running")
        # rows are sorted by name, the cursor on the first: walk down to ours (other tests' containers
        # may be listed too) and attach
        rows = t.text().splitlines()
        header = next(i for i, ln in enumerate(rows) if ln.split()[:2] == ["Name", "Engine"])
        below = next(i for i, ln in enumerate(rows) if box.name in ln) - header - 1
        if below:
            t.keys(*["Down"] * below)
        t.keys("Enter")
        t.wait_for(f"{box.name} (podman)", "netns (host)", "capturing")
        assert curl(podman_lab, box, "https://picked-pm.test/") == "200"
        t.wait_for("picked-pm.test")
        box.stop(timeout=0)
        t.wait_for("waiting for it to", timeout=20)             # stopped; then "exited", or "come back"
        box.start()                                              # the same namespace, a new PID
        t.wait_for("capturing", timeout=20)
        time.sleep(1.0)
        assert curl(podman_lab, box, "https://after-restart-pm.test/") == "200"
        t.wait_for("after-restart-pm.test", "picked-pm.test")
    finally:
        beside.remove(force=True)


def test_podman_unreachable_is_one_line(tmp_path):
    gone = tmp_path / "podman.sock"
    r = subprocess.run([EGRESS, "report", "--container", "x", "--engine", "podman"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "CONTAINER_HOST": f"unix://{gone}"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"Podman is not reachable at unix://{gone} (no socket there)" in r.stderr
