"""Runs in a real container: the time limit stops the command inside the container (through the
engine, never a signal on this host), output reaches the log with credentials masked, and the
local engine's PIDs are proven to be the container's before anything enters its namespace."""

from __future__ import annotations

import threading

import pytest

from tests.dockerlab.images import BASE_TAG
from egress_tui.live.containers import choose_method, find_container, netns_refusal, pid_refusal
from egress_tui.core.runs import RunError, RunSpec
from egress_tui.live.execute import run_in_container
from egress_tui.core.secrets import HIDDEN

pytestmark = [pytest.mark.docker, pytest.mark.root]


@pytest.fixture(scope="module")
def box(docker_lab):
    return docker_lab.add_container(BASE_TAG, "runs")


def _processes(c) -> list[str]:
    top = c.top(ps_args="-eo pid,args")
    return [p[-1] for p in top["Processes"]]


def test_the_time_limit_stops_the_command_inside_the_container(docker_lab, box):
    lines: list[str] = []
    spec = RunSpec(command=["sh", "-c", "echo started; sleep 60 & sleep 61; echo never"], provider="none", timeout=2)
    code, timed_out = run_in_container(docker_lab.client, box.id, spec, lines.append)
    assert timed_out
    assert lines == ["started"]                       # the PID line egress-tui reads is not output
    left = _processes(box)
    assert not any(p.startswith(("sleep 60", "sleep 61")) for p in left), left  # the whole group
    assert code is not None                            # it ended: killed, not abandoned


def test_a_stop_request_ends_the_run_without_a_timeout(docker_lab, box):
    stop = threading.Event()
    lines: list[str] = []

    def on_line(text):
        lines.append(text)
        stop.set()
    spec = RunSpec(command=["sh", "-c", "echo go; sleep 62"], provider="none", timeout=60)
    code, timed_out = run_in_container(docker_lab.client, box.id, spec, on_line, stop)
    assert not timed_out and lines == ["go"]
    assert not any(p.startswith("sleep 62") for p in _processes(box))


def test_run_output_reaches_the_log_with_credentials_masked(docker_lab, box):
    env = {"MY_API_KEY": "sk-live-never-in-a-log-4242", "HTTPS_PROXY": "http://corp:pr0xy-pw@proxy:3128"}
    spec = RunSpec(command=["sh", "-c", 'echo "key=$MY_API_KEY"; echo "via $HTTPS_PROXY" >&2; exit 3'],
                   provider="none", env=env, timeout=20)
    lines: list[str] = []
    code, timed_out = run_in_container(docker_lab.client, box.id, spec, lines.append)
    assert (code, timed_out) == (3, False)
    # stdout and stderr travel separately through the engine: their relative order is not kept
    assert sorted(lines) == sorted([f"key={HIDDEN}", "via http://***@proxy:3128"])


def test_a_missing_command_is_one_clear_error(docker_lab, box):
    spec = RunSpec(command=["claude", "-p", "hello"], provider="none", timeout=20)
    with pytest.raises(RunError) as e:
        run_in_container(docker_lab.client, box.id, spec, lambda line: None)
    assert "has no 'claude' command" in str(e.value) and "npm install" in str(e.value)


def test_without_a_shell_the_command_runs_and_the_limit_says_what_it_could_not_do(docker_lab):
    c = docker_lab.add_container(BASE_TAG, "noshell")
    c.exec_run(["rm", "-f", "/bin/sh"])
    assert c.exec_run(["/bin/sh", "-c", "true"]).exit_code in (126, 127)
    lines: list[str] = []
    spec = RunSpec(command=["sleep", "63"], provider="none", timeout=2)
    code, timed_out = run_in_container(docker_lab.client, c.id, spec, lines.append)
    assert timed_out and code is None                  # still running: nothing could stop it
    assert lines and "has no /bin/sh" in lines[0] and "can only stop reading" in lines[0]
    assert any(p.startswith("sleep 63") for p in _processes(c))
    c.exec_run(["pkill", "sleep"])


def test_a_local_container_is_proven_and_a_wrong_id_is_not(docker_lab, box):
    dc = docker_lab.client
    info = find_container(dc, box.id)
    assert netns_refusal(dc, info) == "" and pid_refusal(info) == ""
    assert choose_method(dc, info, "netns") == "netns"
    other = find_container(dc, docker_lab.target.id)
    info.pid = other.pid                                # another container's process
    assert "is not in container" in pid_refusal(info)
