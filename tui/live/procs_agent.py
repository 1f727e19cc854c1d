"""The agent of the helper method's process attribution: runs inside a helper container that
shares the target's PID and network namespaces, reads the container's ``/proc`` there with
``proctable.ProcTable``, and answers the host on its standard streams, one JSON line each.

It is not imported by egress-tui: ``live/procs_helper.py`` sends this file's source and
``proctable.py``'s to ``python3 -c`` in the helper, so both import nothing but the standard
library. The protocol (host -> agent, then agent -> host):

    {"id": 1, "op": "lookup", "flow": [6, "c6120005", 40000, "c6124e4b", 443]}
    {"id": 1, "answer": {"pid": 42, "start": ..., "comm": "curl", ...}}   (RawProc.to_wire)
    {"id": 1, "answer": "gone"}            (or "held outside the container")
    {"id": 2, "op": "run", "pid": 17, "run": "1"}
    {"id": 2, "answer": [17, 81234]}       (null: no such process in the container)

It says ``{"ready": true, "pid": ...}`` first. Anything it cannot do is an ``"error"`` answer
to that request; it never ends on a bad request, and ends when its input ends.
"""

import json
import os
import sys

LINE_MAX = 1 << 16   # bytes of one request: the host's are short


def handle(table, req: dict):
    op = req.get("op")
    if op == "lookup":
        proto, client, cport, server, sport = req["flow"]
        got = table.lookup(int(proto), bytes.fromhex(client), int(cport), bytes.fromhex(server), int(sport))
        return got if isinstance(got, str) else got.to_wire()
    if op == "run":
        table.forget_answers()  # an answer kept for a second lookup may be about to get the run
        got = table.register_run(int(req["pid"]), str(req["run"])[:32])
        return list(got) if got is not None else None
    raise ValueError(f"unknown op {op!r}")


def main(proctable) -> None:
    out = sys.stdout
    # the container's init is PID 1 of the namespace shared with it; sock_diag's socket is
    # opened right here, in the container's network namespace
    table = proctable.ProcTable(1, "/proc", enter=None)
    out.write(json.dumps({"ready": True, "pid": os.getpid(), "diag": table.diag is not None}) + "\n")
    out.flush()
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline(LINE_MAX)
        if not line:
            return
        rid = None
        try:
            req = json.loads(line)
            rid = req.get("id")
            reply = {"id": rid, "answer": handle(table, req)}
        except Exception as e:  # noqa: BLE001 - one bad request is answered, never fatal
            reply = {"id": rid, "error": f"{type(e).__name__}: {e}"[:300]}
        out.write(json.dumps(reply) + "\n")
        out.flush()
