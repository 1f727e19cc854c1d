"""Helper containers: the one way egress-tui starts a container in a target's network
namespace (tcpdump for capture, iptables and ipset for the firewall), and the labels that
say who owns it, so that nothing is left running after egress-tui is gone.

Every helper carries:
- ``egress-tui.helper``: what it is for (``capture``, ``firewall``);
- ``egress-tui.target``: the id of the container whose namespace it shares;
- ``egress-tui.owner``: the egress-tui process that started it, ``host:pid:start-time``
  (the start time tells a live owner from a later process that reused its PID);
- ``egress-tui.inspection``: a token naming the one inspection that started it, so closing
  an inspection removes exactly its own helpers, even one whose creation was interrupted.

A helper whose owner process is gone (killed with SIGKILL, a crash) is removed the next
time egress-tui starts on the same host (``reap_orphans``). Nothing here imports Textual.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass, field

LABEL_HELPER = "egress-tui.helper"
LABEL_TARGET = "egress-tui.target"
LABEL_OWNER = "egress-tui.owner"
LABEL_INSPECTION = "egress-tui.inspection"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" when there is no such process):
    with the PID it names one process for the whole uptime of the host."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return ""
    # the command name (field 2) may hold spaces and parentheses: count from the last ")"
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def this_process() -> str:
    """The owner label value of this process: ``host:pid:start-time``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def owner_gone(owner: str) -> bool:
    """True when ``owner`` names a process on this host that is no longer running. An owner on
    another host (a shared remote engine) cannot be checked from here: never gone."""
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return _start_time(int(pid)) != start


@dataclass
class HelperOwner:
    """Who owns the helpers an inspection starts: this process, and the inspection's token."""

    process: str = field(default_factory=this_process)
    token: str = field(default_factory=lambda: secrets.token_hex(8))

    def labels(self, purpose: str, target_id: str) -> dict[str, str]:
        return {LABEL_HELPER: purpose, LABEL_TARGET: target_id, LABEL_OWNER: self.process,
                LABEL_INSPECTION: self.token}


def start_helper(dc, target_id: str, target_name: str, image: str, command: list[str], *,
                 entrypoint: list[str], purpose: str, needs: str, owner: HelperOwner,
                 error: type[Exception], attach: bool = False, caps: tuple[str, ...] = ("NET_RAW", "NET_ADMIN"),
                 share_pid: bool = False, stdin: bool = False):
    """Create and start a helper container in the network namespace of ``target_id``, with
    ``caps`` there (NET_RAW and NET_ADMIN) and the owner's labels; ``(container, stream)``,
    where ``stream`` is its stdout attach stream when ``attach`` (opened before the start, so
    no byte is missed). ``share_pid``: it also joins the target's PID namespace, with every
    capability but ``caps`` dropped, a read-only root and no new privileges. ``stdin``: its
    standard input and output, as Docker's raw attach socket (stdout multiplexed), is the
    stream instead. Failures raise ``error`` with one line saying what to do; a helper created
    before the failure is removed again."""
    from docker.errors import DockerException, ImageNotFound
    name = f"egress-tui-{purpose}-{re.sub(r'[^a-zA-Z0-9_.-]', '_', target_name)[:40]}-{owner.token[:6]}"
    helper = None
    try:
        # create + start, never run: run() would pull a missing image behind the user's back
        extra = {}
        if share_pid:
            extra = {"pid_mode": f"container:{target_id}", "cap_drop": ["ALL"], "read_only": True,
                     "security_opt": ["no-new-privileges"]}
        helper = dc.containers.create(image, command, entrypoint=entrypoint, name=name,
                                      network_mode=f"container:{target_id}", cap_add=list(caps),
                                      labels=owner.labels(purpose, target_id), stdin_open=stdin, **extra)
        if stdin:
            stream = dc.api.attach_socket(helper.id, params={"stdin": 1, "stdout": 1, "stream": 1})
        else:
            stream = helper.attach(stdout=True, stderr=False, stream=True, logs=True) if attach else None
        helper.start()
        return helper, stream
    except ImageNotFound:
        raise error(f"helper image {image} is not on this Docker host: docker pull it, or pass "
                    f"--helper-image with a local image that has {needs}") from None
    except DockerException as e:
        if helper is not None:
            remove_quietly(helper)
        raise error(f"cannot start the {purpose} helper container: {e}") from None


def remove_quietly(container) -> None:
    """Remove a helper, whatever state it is in; one already gone is fine."""
    from docker.errors import DockerException
    try:
        container.remove(force=True)
    except DockerException:
        pass


def _labelled(dc, label: str) -> list:
    from docker.errors import DockerException
    try:
        return dc.containers.list(all=True, filters={"label": label})
    except DockerException:
        return []


def remove_helpers(dc, owner: HelperOwner) -> list[str]:
    """Remove every helper of one inspection (names of those removed)."""
    gone = []
    for c in _labelled(dc, f"{LABEL_INSPECTION}={owner.token}"):
        remove_quietly(c)
        gone.append(c.name)
    return gone


def reap_orphans(dc) -> str:
    """Remove the helpers whose owner process is gone; a one-line notice saying so ("" when
    there were none)."""
    removed: list[str] = []
    owners: set[str] = set()
    for c in _labelled(dc, LABEL_OWNER):
        owner = (c.labels or {}).get(LABEL_OWNER, "")
        if owner_gone(owner):
            remove_quietly(c)
            removed.append(c.name)
            owners.add(owner.split(":")[1])
    if not removed:
        return ""
    pids = ", ".join(sorted(owners))
    return (f"removed {len(removed)} helper container(s) left by egress-tui process(es) {pids}, which "
            f"are gone: {', '.join(sorted(removed)[:5])}{' ...' if len(removed) > 5 else ''}")
