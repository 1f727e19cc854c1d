"""One owner per inspection, against real Docker and a real helper image: every way an
inspection ends leaves no helper container behind (checked by label and by image), a helper
whose owner was killed is removed at the next start, and the last packets before a stop are
in the report and in the saved pcap."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egress_tui.core.engine import analyze_file
from egress_tui.inspection import open_inspection
from egress_tui.live.helpers import LABEL_OWNER
from egress_tui.ui.app import AppConfig, create_app
from tests.dockerlab.images import SINK_TAG, ensure_fw_image
from tests.test_docker_capture import Tmux

pytestmark = [pytest.mark.docker, pytest.mark.root]

EGRESS = str(Path(sys.executable).with_name("egress-tui"))
# the lab's firewall image (tcpdump, iptables, ipset) under a tag only these tests use, so a
# helper left behind shows by its image as well as by its labels
HELPER = "egress-tui-test/helper:owner-tests"


@pytest.fixture(scope="module")
def helper_image(docker_client, lab_images):
    ensure_fw_image(docker_client).tag(*HELPER.split(":"))
    for c in docker_client.containers.list(all=True):
        if c.attrs["Config"]["Image"] == HELPER:
            c.remove(force=True)                        # left by an earlier, killed run of these tests
    yield HELPER
    docker_client.images.remove(HELPER)  # the tag only: the image stays


@pytest.fixture(scope="module")
def box(docker_lab):
    """A container with curl on the lab network, confined like the target."""
    return docker_lab.add_container(SINK_TAG, "owner")


def helpers(dc, target) -> list:
    return dc.containers.list(all=True, filters={"label": f"egress-tui.target={target.id}"})


def leftovers(dc, target) -> list[str]:
    """Helper containers of ``target``, by label and by image."""
    by_label = {c.name for c in helpers(dc, target)}
    by_image = {c.name for c in dc.containers.list(all=True) if c.attrs["Config"]["Image"] == HELPER}
    return sorted(by_label | by_image)


def read_until(p: subprocess.Popen, needle: str, timeout: float = 60) -> str:
    """Read the process's stderr until a line holds ``needle`` (what was read so far)."""
    fd = p.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while needle.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0 and p.poll() is None, f"never said {needle!r}: {seen.decode(errors='replace')}"
        if select.select([fd], [], [], min(left, 0.5))[0]:
            seen += os.read(fd, 65536)
    return seen.decode(errors="replace")


def start_report(box, *extra: str, method: str = "helper") -> subprocess.Popen:
    p = subprocess.Popen([EGRESS, "report", "--container", box.name, "--method", method, "--helper-image", HELPER,
                          "--format", "json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    read_until(p, "egress-tui: capturing")
    return p


def curl(lab, box, *names: str):
    script = 'for n in "$@"; do curl -sk -o /dev/null --max-time 5 "https://$n/"; done'
    return lab.exec(["sh", "-c", script, "sh", *names], container=box, timeout=60)


def report_hosts(out: bytes) -> dict:
    return {h["name"]: h for h in json.loads(out)["hosts"]}


@pytest.mark.parametrize("end", ["duration", "SIGINT", "SIGTERM", "SIGHUP"])
def test_every_way_a_report_ends_removes_its_helper(docker_client, docker_lab, box, helper_image, end):
    p = start_report(box, *(["--duration", "4"] if end == "duration" else []))
    assert leftovers(docker_client, box), "the helper should be running while capturing"
    curl(docker_lab, box, f"end-{end.lower()}.test")
    if end != "duration":
        p.send_signal(getattr(signal, end))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "tls" in report_hosts(out)[f"end-{end.lower()}.test"]["via"]
    assert leftovers(docker_client, box) == []


def test_an_exception_inside_the_with_removes_both_helpers(docker_client, box, helper_image):
    with pytest.raises(RuntimeError, match="boom"):
        with open_inspection(box.name, method="helper", helper_image=HELPER, dc=docker_client) as insp:
            insp.start_capture()
            assert insp.wait_ready()
            assert not insp.firewall_status().on         # starts the firewall's helper
            # the capture's, the process lookup's (it shares the PID namespace too), the firewall's
            assert {c.labels["egress-tui.helper"] for c in helpers(docker_client, box)} == {"capture", "procs",
                                                                                              "firewall"}
            raise RuntimeError("boom")
    assert leftovers(docker_client, box) == []


def test_a_helper_whose_owner_died_is_removed_at_the_next_start(docker_client, box, helper_image):
    p = start_report(box)
    orphans = helpers(docker_client, box)
    # "capturing" is said once the capture listens and the process lookup's agent answers
    assert {c.labels["egress-tui.helper"] for c in orphans} == {"capture", "procs"}
    assert {c.labels[LABEL_OWNER].split(":")[1] for c in orphans} == {str(p.pid)}
    p.kill()                                           # SIGKILL: nothing of egress-tui runs any more
    p.wait()
    p.stdout.close()
    p.stderr.close()
    assert sorted(c.name for c in helpers(docker_client, box)) == sorted(c.name for c in orphans)
    r = subprocess.run([EGRESS, "firewall", "status", box.name, "--method", "helper", "--helper-image", HELPER],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    notice = [ln for ln in r.stderr.splitlines() if "helper container(s) left by" in ln]
    assert len(notice) == 1 and str(p.pid) in notice[0], r.stderr
    assert all(c.name in notice[0] for c in orphans), r.stderr
    assert leftovers(docker_client, box) == []


@pytest.mark.parametrize("method", ["netns", "helper"])
def test_the_last_requests_before_ctrl_c_are_in_the_report_and_the_pcap(docker_lab, box, helper_image, tmp_path,
                                                                        method):
    pcap = tmp_path / "tail.pcap"
    names = [f"tail-{method}-{i}.test" for i in range(3)]
    p = start_report(box, "--save-pcap", str(pcap), method=method)
    assert curl(docker_lab, box, *names).returncode == 0
    time.sleep(0.5)   # the scenario itself: Ctrl-C half a second after the last request
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    hosts = report_hosts(out)
    for name in names:
        assert "tls" in hosts[name]["via"], (name, hosts.get(name))
    saved = analyze_file(str(pcap))
    for name in names:
        assert "tls" in saved.hosts[name].to_row().via, name
    if shutil.which("tshark"):
        r = subprocess.run(["tshark", "-r", str(pcap), "-Y", "tls.handshake.extensions_server_name", "-T", "fields",
                           "-e", "tls.handshake.extensions_server_name"], capture_output=True, text=True, timeout=60)
        assert set(names) <= set(r.stdout.split()), r.stdout + r.stderr


# -- the screen ------------------------------------------------------------------------------

async def until(pilot, cond, timeout: float = 60.0, what: str = "") -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        await pilot.pause(0.1)


@pytest.mark.asyncio
@pytest.mark.parametrize("firewall", [False, True])
async def test_quitting_the_screen_removes_every_helper(docker_client, docker_lab, box, helper_image, firewall):
    app = create_app(AppConfig(container=box.name, method="helper", helper_image=HELPER,
                               presets=["bedrock:ap-northeast-1"]))
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: app.state == "capturing", 60, "capturing")
        expected = {"capture"}
        if firewall:
            await pilot.press("f")
            await until(pilot, lambda: "FIREWALL ON" in app.firewall_text, 90, "firewall on")
            expected.add("firewall")
        assert {c.labels["egress-tui.helper"] for c in helpers(docker_client, box)} == expected
        await pilot.press("q")
        if firewall:
            await until(pilot, lambda: app.screen.__class__.__name__ == "ChoiceDialog", 10, "the quit dialog")
            await pilot.press("enter")                  # remove the firewall, then quit
        await until(pilot, lambda: app.return_code is not None, 60, "the app to exit")
    assert app.return_code == 0
    assert leftovers(docker_client, box) == []
    assert "egress-tui" not in docker_lab.nsenter(["ipset", "list", "-n"], pid=box.attrs["State"]["Pid"]).stdout


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has ended
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


@pytest.mark.parametrize("end", ["SIGHUP", "SIGTERM"])
def test_closing_the_terminal_or_terminating_the_screen_removes_the_helper(docker_client, box, helper_image, end):
    t = Tmux([EGRESS, box.name, "--method", "helper", "--helper-image", HELPER], f"egt-owner-{os.getpid()}")
    try:
        t.wait_for(box.name, "capturing", timeout=60)
        pane = int(subprocess.run(["tmux", "display", "-p", "-t", t.name, "#{pane_pid}"], capture_output=True,
                                  text=True, check=True).stdout)
        [egress] = _children(pane)                     # the shell runs egress-tui, then a sleep
        assert leftovers(docker_client, box)
        if end == "SIGHUP":
            subprocess.run(["tmux", "kill-session", "-t", t.name], check=True)  # the terminal is gone
        else:
            os.kill(egress, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(egress) or leftovers(docker_client, box):
            assert time.monotonic() < deadline, (_alive(egress), leftovers(docker_client, box))
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", t.name], capture_output=True)
