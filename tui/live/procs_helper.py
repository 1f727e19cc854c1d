"""Process attribution by the helper method: a second helper container that shares the
target's PID namespace (``pid_mode=container:``) as well as its network namespace runs the
agent (``procs_agent.py``), which reads the container's own ``/proc`` and answers over the
helper's standard streams (Docker's attach socket).

For when egress-tui cannot read the container's processes from the host (not root, a remote
or rootless engine). The helper gets only what reading another process's ``/proc`` entries
needs (CAP_SYS_PTRACE for its fd links and environment, CAP_DAC_READ_SEARCH for its fd
directory), every other capability dropped, a read-only root and no new privileges.

``AgentTable`` stands in for ``ProcTable`` in the ``Attributor``: ``lookup``, ``register_run``,
``set_init``, ``close``. The agent runs in a namespace the watched container shares: whatever
it says is checked and bounded again here like anything else from the container (``_raw``).
Its pids are the container's own (``pid_ns = "container"``). A target that restarts takes the
agent with it (its PID namespace ends); ``set_init`` starts a new one.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from importlib import resources

from egress_tui.live.helpers import HelperOwner, remove_quietly, start_helper
from egress_tui.live.procs import Unavailable
from egress_tui.live.proctable import (CMDLINE_MAX, COMM_MAX, ENVIRON_MAX, EXE_MAX, GONE, OUTSIDE,
                                       PARENTS_MAX, RawProc)

ANSWER_TIMEOUT = 5.0     # seconds for one answer (a lookup takes milliseconds)
START_TIMEOUT = 20.0     # seconds for the agent to say it is ready (python3 starting in a new container)
LINE_MAX = 1 << 20       # bytes of one answer at most (an environment is 64 KiB at most)
_NO_PYTHON = ("process lookup needs python3 in the helper image {image}: pass --helper-image with an image "
              "that has python3 and tcpdump, or run as root with --method netns")
ARGV_MAX = 1024          # arguments of one command line kept
ENV_MAX = 4096           # environment entries of one process kept


class _HelperError(Exception):
    """start_helper's error type here: turned into Unavailable with its one line."""


def agent_source() -> str:
    """What ``python3 -c`` runs in the helper: the two stdlib-only modules, each loaded as a
    module of its own, then the agent's main loop."""
    live = resources.files("egress_tui.live")
    table = live.joinpath("proctable.py").read_text(encoding="utf-8")
    agent = live.joinpath("procs_agent.py").read_text(encoding="utf-8")
    return ("import sys, types\n"
            "def _load(name, src):\n"
            "    m = types.ModuleType(name)\n"
            "    sys.modules[name] = m\n"
            "    exec(compile(src, name + '.py', 'exec'), m.__dict__)\n"
            "    return m\n"
            f"_table = _load('egress_proctable', {table!r})\n"
            f"_load('egress_procs_agent', {agent!r}).main(_table)\n")


def _text(v: object, limit: int) -> str:
    if not isinstance(v, str):
        raise ValueError("not a string")
    return v[:limit]


def _int(v: object, low: int = 0, high: int = 1 << 62) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise ValueError(f"not a number in [{low}, {high}]")
    return v


def _raw(d: object) -> RawProc:
    """An agent's answer back as a RawProc, every field checked and cut to the limits the host's
    own reading keeps; ValueError when it is not one."""
    if not isinstance(d, dict):
        raise ValueError("not an object")
    argv = d.get("argv")
    env = d.get("env")
    parents = d.get("parents")
    if not isinstance(argv, list) or not isinstance(env, list) or not isinstance(parents, list):
        raise ValueError("argv, env and parents must be lists")
    args, size = [], 0
    for a in argv[:ARGV_MAX]:
        a = _text(a, CMDLINE_MAX)
        size += len(a) + 1
        if size > CMDLINE_MAX + 1:
            break
        args.append(a)
    pairs = []
    for kv in env[:ENV_MAX]:
        if not isinstance(kv, list) or len(kv) != 2:
            raise ValueError("an environment entry is not a pair")
        pairs.append((_text(kv[0], 256), _text(kv[1], ENVIRON_MAX)))
    chain = []
    for p in parents[:PARENTS_MAX]:
        if not isinstance(p, list) or len(p) != 2:
            raise ValueError("a parent is not a pair")
        chain.append((_int(p[0], 1, 1 << 22), _text(p[1], COMM_MAX)))
    cut = d.get("cut")
    return RawProc(pid=_int(d.get("pid"), 1, 1 << 22), start=_int(d.get("start")), comm=_text(d.get("comm"), COMM_MAX),
                   exe=_text(d.get("exe"), EXE_MAX), argv=tuple(args), cut=cut is True or len(args) < len(argv),
                   env=tuple(pairs), parents=tuple(chain), run=_text(d.get("run", ""), 32))


class AgentTable:
    """The Attributor's table, answered by the agent in a helper container (see the module)."""

    pid_ns = "container"

    def __init__(self, dc, target_id: str, target_name: str, image: str, owner: HelperOwner | None = None,
                 init_pid: int = 0):
        self.dc = dc
        self.target_id = target_id
        self.target_name = target_name
        self.image = image
        self.owner = owner or HelperOwner()
        self.init_pid = init_pid      # the target's init as the host numbers it: a change is a restart
        self.helper = None
        self.diag = False             # the agent has a sock_diag socket (else it reads /proc/net)
        self._sock: socket.socket | None = None
        self._handle = None
        self._buf = b""
        self._seq = 0
        self.failed = ""              # why the agent cannot answer, once it could not

    # -- the agent's life ------------------------------------------------------------------------

    def open(self) -> None:
        """Start the agent (the Attributor's thread calls it first): Unavailable with one line
        when it cannot be."""
        self._ensure()

    def _ensure(self) -> None:
        if self._sock is not None:
            return
        if self.failed:
            raise Unavailable(self.failed)
        try:
            self._start()
        except Unavailable as e:
            self.failed = str(e)
            self.close()
            raise

    def _start(self) -> None:
        try:
            self.helper, raw = start_helper(
                self.dc, self.target_id, self.target_name, self.image, ["-c", agent_source()],
                entrypoint=["python3"], purpose="procs", needs="python3", owner=self.owner,
                error=_HelperError, caps=("SYS_PTRACE", "DAC_READ_SEARCH"), share_pid=True, stdin=True)
        except _HelperError as e:
            if "executable file not found" in str(e) or "no such file" in str(e).lower():
                raise Unavailable(_NO_PYTHON.format(image=self.image)) from None
            raise Unavailable(f"process lookup: {e}") from None
        self._handle = raw                       # keeps the attach response (and its socket) alive
        self._sock = getattr(raw, "_sock", raw)
        try:
            hello = self._line(START_TIMEOUT)
        except Unavailable:
            why = self._last_words()
            if "python3" in why and ("not found" in why or "no such file" in why.lower()):
                raise Unavailable(_NO_PYTHON.format(image=self.image)) from None
            raise Unavailable(f"process lookup: the helper's agent did not start: {why or 'no answer'}") from None
        if not isinstance(hello, dict) or hello.get("ready") is not True:
            raise Unavailable("process lookup: the helper's agent did not say it was ready")
        self.diag = hello.get("diag") is True

    def _last_words(self) -> str:
        from docker.errors import DockerException
        try:
            self.helper.reload()
            state = self.helper.attrs.get("State", {})
            out = self.helper.logs(stdout=True, stderr=True, tail=5).decode("utf-8", "replace")
        except (DockerException, AttributeError):
            return ""
        words = " ".join((state.get("Error") or "", out)).split()
        return " ".join(words)[:300]

    def set_init(self, pid: int) -> None:
        """The target restarted (a new init): its PID namespace, and the agent in it, are gone;
        the next lookup starts a new agent."""
        self.close()
        self.init_pid = pid
        self.failed = ""

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        self._handle = None
        self._buf = b""
        if self.helper is not None:
            remove_quietly(self.helper)
            self.helper = None

    # -- talking to it ---------------------------------------------------------------------------

    def _line(self, timeout: float) -> object:
        """The agent's next line of output, parsed (Docker multiplexes stdout in frames: an
        8-byte header, then the bytes)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            if len(self._buf) > LINE_MAX:
                raise Unavailable("process lookup: the helper's agent wrote an overlong line")
            head = self._read(8, deadline)
            kind, size = head[0], struct.unpack(">I", head[4:8])[0]
            data = self._read(size, deadline)
            if kind == 1:
                self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            raise Unavailable("process lookup: the helper's agent wrote something that is not JSON") from None

    def _read(self, n: int, deadline: float) -> bytes:
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable("process lookup: the helper's agent stopped answering")
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(min(n - got, 1 << 16))
            except (socket.timeout, OSError):
                raise Unavailable("process lookup: the helper's agent stopped answering") from None
            if not chunk:
                raise Unavailable("process lookup: the helper's agent is gone (the container stopped it?)")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _ask(self, req: dict) -> object:
        self._ensure()
        self._seq += 1
        req["id"] = self._seq
        try:
            self._sock.sendall(json.dumps(req).encode() + b"\n")
            while True:
                reply = self._line(ANSWER_TIMEOUT)
                if isinstance(reply, dict) and reply.get("id") == self._seq:
                    break  # an answer to an earlier question that timed out is skipped
        except (OSError, Unavailable) as e:
            self.failed = str(e) if isinstance(e, Unavailable) else f"process lookup: the helper's agent is gone: {e}"
            self.close()
            raise Unavailable(self.failed) from None
        if "error" in reply:
            raise RuntimeError(f"the helper's agent: {str(reply['error'])[:300]}")
        return reply.get("answer")

    # -- what the Attributor asks ----------------------------------------------------------------

    def lookup(self, proto: int, client: bytes, cport: int, server: bytes, sport: int) -> RawProc | str:
        got = self._ask({"op": "lookup", "flow": [proto, client.hex(), cport, server.hex(), sport]})
        if got == GONE:
            return GONE
        if got == OUTSIDE:
            return OUTSIDE
        return _raw(got)

    def register_run(self, pid: int, run: str, in_container: bool = True) -> tuple[int, int] | None:
        """Only a pid as the container numbers it (the wrapper's ``$$``) means anything here."""
        if not in_container:
            return None
        got = self._ask({"op": "run", "pid": pid, "run": run})
        if got is None:
            return None
        if not isinstance(got, list) or len(got) != 2:
            raise ValueError("the helper's agent answered a run with something else")
        return _int(got[0], 1, 1 << 22), _int(got[1])

    def forget_answers(self) -> None:
        pass  # the agent's table forgets its kept answers when it registers a run
