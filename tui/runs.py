"""Reruns of a command (Claude Code by default) inside the watched container, and what each
run reached: the record a security team gets, and the difference between two runs.

Through the docker SDK. Nothing here imports Textual.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .engine import Engine
from .hosts import CLOSED, CONNECTED
from .secrets import mask_env, redact, secret_values

DEFAULT_COMMAND = ["claude", "-p", "hello"]
DEFAULT_TIMEOUT = 120.0

# What each provider needs, as the seed ran it: fixed values, and variables passed through
# from egress-tui's own environment when they are set there (credentials never stored).
PROVIDERS: dict[str, dict] = {
    "anthropic": {"set": {}, "pass": ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"]},
    "bedrock": {"set": {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "{region}"},
                "pass": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                         "AWS_BEARER_TOKEN_BEDROCK", "ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL"]},
    "vertex": {"set": {"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "{region}"},
               "pass": ["ANTHROPIC_VERTEX_PROJECT_ID", "GOOGLE_APPLICATION_CREDENTIALS", "ANTHROPIC_MODEL"]},
    "none": {"set": {}, "pass": []},
}
DEFAULT_REGIONS = {"bedrock": "ap-northeast-1", "vertex": "us-east5"}


class RunError(Exception):
    """The command could not be started; the message names the container and the fix."""


def provider_env(provider: str, region: str | None = None, model: str | None = None,
                 environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a provider preset (values passed through only when set)."""
    if provider not in PROVIDERS:
        raise RunError(f"unknown provider '{provider}'; use one of {', '.join(PROVIDERS)}")
    environ = os.environ if environ is None else environ
    p = PROVIDERS[provider]
    region = region or DEFAULT_REGIONS.get(provider, "")
    env = {k: v.format(region=region) for k, v in p["set"].items()}
    for k in p["pass"]:
        if environ.get(k):
            env[k] = environ[k]
    if model:
        env["ANTHROPIC_MODEL"] = model
    return env


@dataclass
class RunSpec:
    command: list[str] = field(default_factory=lambda: list(DEFAULT_COMMAND))
    provider: str = "anthropic"
    region: str = ""
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT

    def describe(self) -> str:
        """One line for screens, logs and reports: credentials and URL userinfo masked."""
        where = f" {self.region}" if self.region else ""
        return redact(f"{' '.join(self.command)}  [{self.provider}{where}]", secret_values(self.env))


@dataclass
class RunRecord:
    """One run: what ran, with the firewall on or off, and which hosts it reached."""

    number: int
    spec: RunSpec
    container: str
    firewall: bool
    started: float
    ended: float = 0.0
    exit_code: int | None = None
    timed_out: bool = False
    error: str = ""
    output_tail: list[str] = field(default_factory=list)
    hosts: dict[str, dict] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        if self.timed_out:
            return "timed out"
        if self.exit_code is None:
            return "running"
        return f"exit {self.exit_code}"

    def to_json(self) -> dict:
        """The record for files handed around: no credential, in the environment or in any text."""
        hide = secret_values(self.spec.env)
        d = asdict(self)
        d["status"] = self.status
        d["spec"]["env"] = mask_env(self.spec.env)
        d["spec"]["command"] = [redact(a, hide) for a in self.spec.command]
        d["error"] = redact(self.error, hide)
        d["output_tail"] = [redact(ln, hide) for ln in self.output_tail]
        return d


def hosts_during(engine: Engine, start: float, end: float) -> dict[str, dict]:
    """Hosts whose connections (or lookups) fall inside [start, end], with outcomes."""
    out: dict[str, dict] = {}
    for h in engine.host_list():
        conns = [c for c in h.conns if start <= c.first <= end]
        looked_up = h.queries and h.last_seen() >= start and h.first <= end
        if not conns and not looked_up:
            continue
        outcomes: dict[str, int] = {}
        for c in conns:
            outcomes[c.outcome] = outcomes.get(c.outcome, 0) + 1
        reached = bool(outcomes.get(CONNECTED) or outcomes.get(CLOSED))
        out[h.name] = {"connections": len(conns), "outcomes": outcomes, "reached": reached,
                       "blocked": bool(conns) and not reached, "via": sorted(h.via),
                       "ports": sorted({c.sport for c in conns})}
    return out


@dataclass
class RunDiff:
    needed: list[str]        # reached in both runs
    stopped: list[str]       # reached in the first, blocked in the second
    appeared: list[str]      # tried only in the second
    gone: list[str]          # tried only in the first
    still_blocked: list[str]


def diff_runs(a: RunRecord, b: RunRecord) -> RunDiff:
    ta = {n: h for n, h in a.hosts.items() if h["connections"]}
    tb = {n: h for n, h in b.hosts.items() if h["connections"]}
    both = sorted(set(ta) & set(tb))
    return RunDiff(
        needed=[n for n in both if ta[n]["reached"] and tb[n]["reached"]],
        stopped=[n for n in both if ta[n]["reached"] and tb[n]["blocked"]],
        appeared=sorted(set(tb) - set(ta)),
        gone=sorted(set(ta) - set(tb)),
        still_blocked=[n for n in both if ta[n]["blocked"] and tb[n]["blocked"]],
    )


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
                     stop: threading.Event | None = None) -> tuple[int | None, bool]:
    """Run spec.command in the container, streaming its output lines; (exit code, timed out).

    The time limit acts inside the container, through the engine's API: the command's
    process group gets SIGTERM, then SIGKILL. Nothing is signalled on this host, where the
    engine's PIDs may mean other processes (a remote engine, another PID namespace). Lines
    reach ``on_line`` with the run's credentials and URL userinfo masked.
    """
    hide = secret_values(spec.env)

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
        # the wrapper's first stderr line names the PID; before it, only a failed start speaks
        held: list[str] = []
        while True:
            try:
                item = lines.get(timeout=max(self.deadline - time.monotonic(), 0.01))
            except queue.Empty:
                return ex["Id"], lines, held  # no PID yet: the limit can only stop reading
            if item is None:
                break
            fd, text = item
            if fd == 2 and text.startswith(PID_MARKER) and not held:
                pid = text[len(PID_MARKER):].strip()
                self.pid = int(pid) if pid.isdigit() and int(pid) > 1 else None
                return ex["Id"], lines, []
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
