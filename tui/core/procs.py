"""Which program opened a connection: the record a process lookup leaves on a connection.

The lookup itself (``/proc`` of the container's processes, from the host) lives in
``live/procs.py``; this is the data every consumer reads (rows, reports, the detail pane).
Everything here came from the watched container (a process names itself, and writes its
own command line), so it is data to escape, never to trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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

    @property
    def program(self) -> str:
        """The name a column shows: the executable's base name, else comm."""
        base = self.exe.rsplit("/", 1)[-1] if self.exe else ""
        return base or self.comm or "?"

    def chain(self) -> str:
        """``curl ← bash ← claude ← tini``: the process, then its parents."""
        return " ← ".join([self.program, *(c for _p, c in self.parents)])

    def anonymous(self) -> ProcInfo:
        """The same program, command line, parents and run with every pid 0: what a count per
        program keys on (each run of ``curl`` is a new process)."""
        return replace(self, pid=0, parents=tuple((0, c) for _p, c in self.parents))

    def to_dict(self) -> dict:
        return {"pid": self.pid, "comm": self.comm, "exe": self.exe or None, "cmdline": self.cmdline,
                "parents": [{"pid": p, "comm": c} for p, c in self.parents], "run": self.run or None}
