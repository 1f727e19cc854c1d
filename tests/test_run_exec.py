"""Starting a run through the engine's exec API, with a fake engine (named so): the order in
which stdout and stderr arrive is the engine's, and the PID marker must be found either way."""

from __future__ import annotations

from egress_tui.core.runs import RunSpec
from egress_tui.live.execute import PID_MARKER, run_in_container


class FakeExecEngine:
    """Just the three exec calls run_in_container makes; records the signals it is asked for."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.calls: list[list[str]] = []
        self.api = self

    def exec_create(self, cid, argv, **kw):
        self.calls.append(list(argv))
        return {"Id": f"exec{len(self.calls)}"}

    def exec_start(self, exec_id, stream=False, demux=False):
        return iter(self.chunks) if exec_id == "exec1" else b""

    def exec_inspect(self, exec_id):
        return {"ExitCode": 0, "Running": False, "Pid": 0}


def test_the_pid_marker_is_found_after_the_commands_own_stdout():
    marker = f"{PID_MARKER}7\n".encode()
    dc = FakeExecEngine([(b"started\n", None), (None, marker), (b"done\n", None)])
    shown: list[str] = []
    code, timed_out = run_in_container(dc, "c" * 64, RunSpec(["true"], "none", timeout=30), shown.append)
    assert (code, timed_out) == (0, False)
    assert shown == ["started", "done"]          # the marker is the wrapper's, never the command's


def test_a_marker_after_other_stderr_is_the_commands_own_output():
    """Only the wrapper's first stderr line is the marker: later look-alikes are output."""
    fake = f"{PID_MARKER}1\n".encode()
    dc = FakeExecEngine([(None, f"{PID_MARKER}9\n".encode()), (None, b"warning\n"), (None, fake)])
    shown: list[str] = []
    run_in_container(dc, "c" * 64, RunSpec(["true"], "none", timeout=30), shown.append)
    assert shown == ["warning", fake.decode().strip()]
