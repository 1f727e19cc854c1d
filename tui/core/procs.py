"""Which program opened a connection: the record a process lookup leaves on a connection.

The lookup itself (``/proc`` of the container's processes, from the host) lives in
``live/procs.py``; this is the data every consumer reads (rows, reports, the detail pane).
Everything here came from the watched container (a process names itself, and writes its
own command line), so it is data to escape, never to trust.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from egress_tui.core.safetext import safe_text

UNKNOWN = "process unknown"   # the socket was gone before it could be looked up: never a guess


@dataclass(frozen=True)
class ProcInfo:
    """The process holding a connection's socket when it was looked up."""

    pid: int                       # as the host numbers it
    comm: str                      # /proc/PID/comm: the program's own name for itself (15 chars)
    exe: str = ""                  # /proc/PID/exe, "" when unreadable
    cmdline: str = ""              # arguments joined by spaces, credentials masked (core/secrets)
    parents: tuple[tuple[int, str], ...] = field(default_factory=tuple)  # (pid, comm) up to the container's init
    run: str = ""                  # the rerun (r, learn) it descends from, "" when none
    pid_ns: str = ""               # whose numbers the pids are: "" the host's, "container" the container's own

    @property
    def program(self) -> str:
        """The name a column shows: comm, the name the program was started as, or the
        executable's base name when that is comm uncut (comm keeps 15 characters). The
        executable alone misleads: busybox for ``wget``, node for Claude Code (whose comm is
        ``claude``), a version number for a native ``claude`` reached through a symlink."""
        base = self.exe.rsplit("/", 1)[-1] if self.exe else ""
        if base and (not self.comm or base == self.comm or (len(self.comm) >= 15 and base.startswith(self.comm))):
            return base
        return self.comm or base or "?"

    def chain(self) -> str:
        """``curl ← bash ← claude ← tini``: the process, then its parents."""
        return " ← ".join([self.program, *(c for _p, c in self.parents)])

    def anonymous(self) -> ProcInfo:
        """The same program, command line, parents and run with every pid 0: what a count per
        program keys on (each run of ``curl`` is a new process)."""
        return replace(self, pid=0, parents=tuple((0, c) for _p, c in self.parents))

    def to_dict(self) -> dict:
        return {"pid": self.pid, "comm": self.comm, "exe": self.exe or None, "cmdline": self.cmdline,
                "parents": [{"pid": p, "comm": c} for p, c in self.parents], "run": self.run or None,
                "pid_namespace": self.pid_ns or "host"}


# -- reading it back, and showing it -------------------------------------------------------

def run_tag(number: int) -> str:
    """What ``ProcInfo.run`` holds for a process descended from rerun ``number``."""
    return str(number)


def in_run(tag: str, number: int) -> bool:
    """Whether a process tagged ``tag`` (``ProcInfo.run``) descends from rerun ``number``."""
    return bool(tag) and tag.removeprefix("run").strip() == run_tag(number)


def run_label(tag: str) -> str:
    """``run 2`` for the tag of rerun 2."""
    return f"run {tag}" if tag.isdigit() else tag


def from_dict(value: object) -> ProcInfo | str | None:
    """A connection's ``"process"`` as ``Conn.to_dict`` wrote it, back as ``Conn.proc`` held it."""
    if not isinstance(value, dict):
        return UNKNOWN if value == UNKNOWN else None
    parents = value.get("parents") or ()
    return ProcInfo(pid=_int(value.get("pid")), comm=str(value.get("comm") or ""), exe=str(value.get("exe") or ""),
                    cmdline=str(value.get("cmdline") or ""),
                    parents=tuple((_int(p.get("pid")), str(p.get("comm") or "")) for p in parents
                                  if isinstance(p, dict)),
                    run=str(value.get("run") or ""),
                    pid_ns="container" if value.get("pid_namespace") == "container" else "")


def _int(v: object) -> int:
    return v if isinstance(v, int) else 0


def programs_line(programs: Iterable[str], most: int = 5, width: int = 32) -> str:
    """Program names as one line safe anywhere (a comment, a log, a cell): each escaped and cut
    to ``width``, at most ``most`` of them, then ``+N more``."""
    names = list(programs)
    text = ", ".join(safe_text(n, width) for n in names[:most])
    return text + (f" +{len(names) - most} more" if len(names) > most else "")
