"""Running a command inside the watched container through the engine's API, with its
output streamed and its time limit enforced inside the container. Nothing here imports Textual.
"""

from __future__ import annotations
import queue
import threading
import time
from collections.abc import Callable, Iterable
from egress_tui.core.secrets import redact, secret_values
from egress_tui.core.runs import RunError, RunSpec

# The command starts under a shell that reports its PID first, so a time limit can signal it
# inside the container; the command travels as argv ("$@"), never as a string.
PID_MARKER = "egress-tui-run-pid "
_WRAPPER = ["/bin/sh", "-c", f'echo "{PID_MARKER}$$" >&2; exec "$@"', "egress-run"]
# Signal the run's process group (the exec is a session leader), else the process alone.
_KILL = ["/bin/sh", "-c", 'kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" "$2"', "egress-kill"]
TERM_GRACE = 2.0   # seconds between SIGTERM and SIGKILL
KILL_GRACE = 3.0   # after SIGKILL, how long to wait for the output to end before giving up on it
MAX_LINE = 65536   # a line without a newline is cut here (a hostile command could send no newline)


def run_in_container(dc, container_id: str, spec: RunSpec, on_line: Callable[[str], None],
                     stop: threading.Event | None = None, hide: Iterable[str] = (),
                     on_pid: Callable[[int], None] | None = None) -> tuple[int | None, bool]:
    """Run spec.command in the container, streaming its output lines; (exit code, timed out).

    The time limit acts inside the container, through the engine's API: the command's
    process group gets SIGTERM, then SIGKILL. Nothing is signalled on this host, where the
    engine's PIDs may mean other processes (a remote engine, another PID namespace). Lines
    reach ``on_line`` with the run's credentials, URL userinfo and the values in ``hide`` (the
    container's own proxy login, which the command inherits) masked. ``on_pid`` hears the
    command's PID as the container numbers it, as soon as the wrapper says it (the process
    attribution tags what descends from it with the run).
    """
    hide = secret_values(spec.env) | set(hide)

    def say(text: str) -> None:
        on_line(redact(text, hide))

    run = _Exec(dc, container_id, spec, hide)
    result = run.start(_WRAPPER + list(spec.command))
    if result is None:
        # no /bin/sh in the image: run the command itself; a time limit can then only stop
        # reading its output (the process may go on in the container)
        say(f"egress-tui: the image has no /bin/sh; the {spec.timeout:g} s limit can only stop "
            "reading the command's output, not stop the command")
        result = run.start(list(spec.command), wrapped=False)
    if on_pid is not None and run.pid:
        on_pid(run.pid)
    return run.follow(result, say, stop)


class _Exec:
    """One exec of the command in the container, read line by line in a thread so that the
    time limit holds even when the command writes nothing."""

    def __init__(self, dc, container_id: str, spec: RunSpec, hide: set[str]):
        self.dc = dc
        self.cid = container_id
        self.spec = spec
        self.hide = hide
        self.name = spec.command[0] if spec.command else ""
        self.pid: int | None = None
        self.deadline = time.monotonic() + spec.timeout

    def _error(self, detail: str) -> RunError:
        return RunError(redact(_start_error(self.cid, self.name, detail), self.hide))

    def start(self, argv: list[str], wrapped: bool = True):
        """Start argv; with the wrapper, returns None when the image has no /bin/sh."""
        from docker.errors import APIError, NotFound
        try:
            ex = self.dc.api.exec_create(self.cid, argv, environment=self.spec.env or None,
                                         stdout=True, stderr=True, tty=False)
            stream = self.dc.api.exec_start(ex["Id"], stream=True, demux=True)
        except NotFound:
            raise RunError(f"container {self.cid[:12]} is gone") from None
        except APIError as e:
            raise self._error(str(e)) from None
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(stream, lines), daemon=True, name="egress-run-output").start()
        if not wrapped:
            return ex["Id"], lines, []
        # the wrapper's first stderr line names the PID; before it, only a failed start speaks on
        # stderr. stdout and stderr travel separately through the engine, so the command's own
        # first stdout lines may arrive before the marker: they are held, not mistaken for it.
        held: list[str] = []
        stderr_seen = False
        while True:
            try:
                item = lines.get(timeout=max(self.deadline - time.monotonic(), 0.01))
            except queue.Empty:
                return ex["Id"], lines, held  # no PID yet: the limit can only stop reading
            if item is None:
                break
            fd, text = item
            if fd == 2 and text.startswith(PID_MARKER) and not stderr_seen:
                pid = text[len(PID_MARKER):].strip()
                self.pid = int(pid) if pid.isdigit() and int(pid) > 1 else None
                return ex["Id"], lines, held
            stderr_seen = stderr_seen or fd == 2
            held.append(text)
        code = self._inspect(ex["Id"]).get("ExitCode")
        if code in (126, 127):
            return None  # the runtime could not start /bin/sh
        lines.put(None)
        return ex["Id"], lines, held

    def follow(self, started, say: Callable[[str], None], stop: threading.Event | None) -> tuple[int | None, bool]:
        exec_id, lines, held = started
        for text in held:
            say(text)
        deadline = self.deadline
        timed_out = False
        phase, phase_end = "run", deadline
        while True:
            try:
                item = lines.get(timeout=0.25)
            except queue.Empty:
                item = ()
            if item is None:
                break
            if item:
                say(item[1])
            now = time.monotonic()
            if phase == "run" and (now > deadline or (stop is not None and stop.is_set())):
                timed_out = now > deadline
                if self.pid is None:
                    break  # nothing to signal: stop reading
                self._signal("TERM")
                phase, phase_end = "term", now + TERM_GRACE
            elif phase == "term" and now > phase_end:
                self._signal("KILL")
                phase, phase_end = "kill", now + KILL_GRACE
            elif phase == "kill" and now > phase_end:
                break  # a child outside the group still holds the output open
        info = self._inspect(exec_id)
        code = None if info.get("Running") else info.get("ExitCode")
        if code in (126, 127) and not timed_out:
            raise self._error(f"exit {code}")
        return code, timed_out

    def _inspect(self, exec_id: str) -> dict:
        from docker.errors import DockerException
        try:
            return self.dc.api.exec_inspect(exec_id)
        except DockerException as e:
            raise RunError(redact(f"container {self.cid[:12]} went away during the run ({e})", self.hide)) from None

    def _signal(self, sig: str) -> None:
        """Signal the command inside the container, through the engine."""
        from docker.errors import DockerException
        try:
            ex = self.dc.api.exec_create(self.cid, _KILL + [sig, str(self.pid)], stdout=True, stderr=True)
            self.dc.api.exec_start(ex["Id"])
        except DockerException:
            pass  # the container is gone: so is the command


def _pump(stream, lines: queue.Queue) -> None:
    """Split the demuxed exec stream into (fd, line) items; None at the end."""
    buf = {1: b"", 2: b""}
    try:
        for out, err in stream:
            for fd, chunk in ((1, out), (2, err)):
                if not chunk:
                    continue
                buf[fd] += chunk
                *done, buf[fd] = buf[fd].split(b"\n")
                if len(buf[fd]) > MAX_LINE:
                    done.append(buf[fd])
                    buf[fd] = b""
                for ln in done:
                    lines.put((fd, ln.decode("utf-8", "replace")))
        for fd, rest in buf.items():
            if rest:
                lines.put((fd, rest.decode("utf-8", "replace")))
    except Exception as e:  # the engine went away mid-run: say so in the output
        lines.put((2, f"egress-tui: reading the output failed: {type(e).__name__}: {e}"))
    finally:
        lines.put(None)


def _start_error(container_id: str, name: str, detail: str) -> str:
    return (f"container {container_id[:12]} has no '{name}' command ({detail.splitlines()[0][:120]}): "
            f"install it in the image (Claude Code: npm install -g @anthropic-ai/claude-code), "
            f"or change the command (r in the screen, or after -- with egress-tui learn)")
