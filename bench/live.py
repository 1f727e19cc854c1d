#!/usr/bin/env python3
"""Live-capture benchmark: what the capture costs and how fast the screen follows.

Usage: python bench/live.py [--strict] [--seconds 5] [--gap 0.4] [--reps 7] [--load-pps 50000]
                            [--apply-budget 35] [--sync-conns 20] [--skip-lab]

Five measurements, printed as one table of figure / target / MET-MISSED:

1. Rejected traffic.  A ``Capturer`` on a ``NetnsSource`` listens in the network lab's
   client namespace (entered through the PID of a ``sleep`` started in it) while a bulk
   TCP download paced by the kernel (SO_MAX_PACING_RATE) pours ~100,000 data packets/s
   into that namespace for ``--seconds``.  The capture filter rejects all of it (data
   received and the pure ACKs sent back).  The capture runs in a child Python process of
   this script, so its CPU (utime+stime from /proc/PID/stat, all threads) is its own.
   Reported: packets/s on the wire (``ip -s -j link`` counters of veth-c, in and out),
   frames delivered to Python, kernel drops, CPU as % of one core.
   Targets: 0 kernel drops, <= 10 % of one core.
2. Matching traffic.  The client namespace sends ~50,000 small UDP datagrams/s to the
   server namespace (what a container sends passes the filter): frames delivered to
   Python vs datagrams sent, kernel drops.  Target: 0 drops.
3. Latency.  The real app, headless (``run_test``), captures the client namespace
   (``app.show_inspection(open_inspection(source=NetnsSource(...)))``) while 20 Python TLS clients connect one after
   another to distinct names, each followed by ``--gap`` seconds of silence (an agent
   calling an API now and then).  For each name: the ClientHello frame's kernel timestamp
   (read back from the app's own packet recording) to the wall time when
   ``app.main.apply_rows`` has put the row, with "tls" in its Via column, in the table.
   Target: median and max <= 250 ms.
   3b. Latency under load: the same while the flood of part 2 (``--load-pps``, 50,000
   datagrams/s; 0 skips it) leaves the namespace for the whole run.  Same targets.
4. Table apply time.  An app with ``start_capture=False`` in ``run_test(size=(200, 60))``
   holds 5,000 host rows; ``app.main.apply_rows`` is timed on batches that update 500
   existing rows and add 20 new ones: the call itself, and the call plus the work it leaves
   for the app's next idle moment (``await pilot.pause()``; DataTable recomputes column
   widths there), during which the UI cannot react.  Target: < 100 ms for both.  This runs
   in a child process cut off after ``--apply-budget`` seconds; if over target, a sampled
   profile of the first batch is printed.

5. DNS answer to firewall set.  The firewall (``Guard``) is applied in the client namespace
   with only ``*.sync.test`` allowed, so every address must come from a DNS answer the
   capture sees; the capture thread queues it and the guard's worker writes it to ipset.
   ``--sync-conns`` times, a fresh client process resolves a new name and connects at once
   (what a client does).  Reported: the DNS answer handed to the guard (capture thread) to the
   address in the kernel set, by a shell loop polling ``ipset test`` from before the lookup
   (each poll ~1-2 ms, so the figure is that coarse); and how many connections got through
   with their first SYN (no drop counted by the chain, connect under 0.5 s: a dropped SYN is
   retransmitted after 1 s).  Target: usually (more than half).  Measured here: missed, with
   this design and with the one before it (the capture thread writing to ipset itself): the
   capture hands the answer over 0.1-0.4 ms after it arrived, and a client that connects as
   soon as getaddrinfo returns sends its SYN before that.

All traffic stays inside the lab's two namespaces (``tests.lab.netlab.Lab``), which are
torn down on exit.  Needs root for 1-3 and 5 (skipped otherwise).  Exits 0 whatever the outcome
unless --strict is given; then 1 if any target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import select
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BULK_PORT, UDP_PORT = 5201, 5202
REJECTED_AIM_PPS = 100_000        # data packets/s into the namespace
MATCHING_AIM_PPS = 50_000         # datagrams/s out of the namespace
CPU_TARGET_PCT = 10.0
LATENCY_TARGET_MS = 250.0
APPLY_TARGET_MS = 100.0
TABLE_ROWS, UPDATED_ROWS, NEW_ROWS = 5_000, 500, 20
LATENCY_CONNS = 20
SYNC_CONNS = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- traffic helpers

# Server namespace: a kernel-paced bulk TCP sender (port 5201) and a UDP port that is bound
# but never read (5202), so datagrams sent to it are dropped quietly instead of drawing
# ICMP port-unreachable replies.
SERVER_GEN = r"""
import socket, sys, time
SO_MAX_PACING_RATE = 47
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", %(udp)d))
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", %(bulk)d))
l.listen(4)
print("READY", flush=True)
chunk = bytes(1 << 20)
while True:
    c, _ = l.accept()
    rate, dur = c.makefile("rb").readline().split()
    c.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, int(float(rate)))
    end = time.monotonic() + float(dur)
    try:
        while time.monotonic() < end:
            c.sendall(chunk)
    except OSError:
        pass
    c.close()
""" % {"udp": UDP_PORT, "bulk": BULK_PORT}

# Client namespace: receive the bulk download (prints START once the connection is up and
# the parameters are sent, DONE <bytes> at EOF).
BULK_RECV = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.sendall(("%s %s\n" % (sys.argv[3], sys.argv[4])).encode())
print("START", flush=True)
buf = bytearray(1 << 20)
total = 0
while True:
    n = s.recv_into(buf)
    if not n:
        break
    total += n
print("DONE", total, flush=True)
"""

# Client namespace: small UDP datagrams at a fixed rate (prints START, then DONE <sent>).
UDP_SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
rate, dur = float(sys.argv[3]), float(sys.argv[4])
payload = bytes(64)
send = s.send
print("START", flush=True)
t0 = time.monotonic()
sent = 0
while True:
    el = time.monotonic() - t0
    if el >= dur:
        break
    due = int(el * rate)
    while sent < due:
        try:
            send(payload)
        except OSError:
            pass
        sent += 1
    time.sleep(0.0005)
print("DONE", sent, flush=True)
"""


def link_counters(ns: str, dev: str) -> dict:
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev],
                         capture_output=True, text=True, check=True, timeout=10).stdout
    st = json.loads(out)[0]["stats64"]
    return {"rx": st["rx"]["packets"], "tx": st["tx"]["packets"],
            "rx_dropped": st["rx"]["dropped"], "tx_dropped": st["tx"]["dropped"]}


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of process pid, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def read_line(p: subprocess.Popen, want: str, timeout: float) -> str:
    """The next stdout line of p that starts with want; raises on timeout or exit."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"timed out waiting for {want!r}")
        r, _, _ = select.select([p.stdout], [], [], left)
        if r:
            line = p.stdout.readline()
            if not line:
                err = p.stderr.read().decode(errors="replace") if p.stderr else ""
                raise RuntimeError(f"helper exited before {want!r}: {err.strip()[-500:]}")
            line = line.decode() if isinstance(line, bytes) else line
            if line.startswith(want):
                return line.strip()


def stop_proc(p: subprocess.Popen | None) -> None:
    if p is None or p.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
        p.wait(5)


# --------------------------------------------------------------------------- capture child

def capture_child(pid: int) -> int:
    """Run in a child process: a Capturer on the namespace of pid; answer "stats" on stdin."""
    from egress_tui.live.capture import Capturer, NetnsSource

    src = NetnsSource(pid, "bench")
    batches = {"n": 0, "rows": 0}

    def on_batch(b) -> None:
        batches["n"] += 1
        batches["rows"] += len(b.rows)

    cap = Capturer(src, on_batch)
    cap.start()
    if not src.ready.wait(20):
        print("ERROR", json.dumps(cap.error or "source not ready"), flush=True)
        return 1
    print("READY", json.dumps(src.filter_used), flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            with cap.lock:
                engine_packets = cap.engine.packets
            print("STATS", json.dumps({"packets": src.packets, "kernel_drops": src.kernel_drops,
                                       "errors": src.errors, "engine_packets": engine_packets,
                                       "batches": batches["n"], "error": cap.error}), flush=True)
        elif line.strip() == "quit":
            break
    cap.stop()
    cap.join(2)
    return 0


class CaptureChild:
    def __init__(self, pid: int):
        self.p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--capture-child", str(pid)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=ROOT)
        line = read_line(self.p, "READY", 30)
        self.filter = json.loads(line.split(" ", 1)[1])

    def stats(self) -> dict:
        self.p.stdin.write("stats\n")
        self.p.stdin.flush()
        return json.loads(read_line(self.p, "STATS", 10).split(" ", 1)[1])

    def cpu(self) -> float:
        return proc_cpu_seconds(self.p.pid)

    def close(self) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                stop_proc(self.p)


# --------------------------------------------------------------------------- results

@dataclass
class Figure:
    label: str
    value: str
    target: str = "-"
    ok: bool | None = None      # None: information only

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("MET" if self.ok else "MISSED")


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: str = ""

    def add(self, label: str, value: str, target: str = "-", ok: bool | None = None) -> None:
        self.figures.append(Figure(label, value, target, ok))

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  {text}")


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


# --------------------------------------------------------------------------- 1 and 2: load

def bench_load(lab, pid: int, seconds: float, res: Results) -> None:
    from tests.lab.netlab import CLIENT_IF, SERVER_V4

    server = subprocess.Popen(["ip", "netns", "exec", lab.server_ns, sys.executable, "-c", SERVER_GEN],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = None
    try:
        read_line(server, "READY", 15)
        child = CaptureChild(pid)
        time.sleep(0.3)

        # ---- 1. rejected: bulk TCP download into the namespace
        print(f"[1] rejected traffic: paced TCP download into the client namespace for {seconds:g} s")
        pace = REJECTED_AIM_PPS * 1500  # bytes/s on the wire for ~100k full-size segments/s
        s0 = child.stats()  # before the connection: its SYNs and FINs count as delivered
        recv = lab.popen_client([sys.executable, "-c", BULK_RECV, SERVER_V4, str(BULK_PORT), str(pace),
                                 str(seconds)], text=True)
        read_line(recv, "START", 15)
        c0, w0, t0 = child.cpu(), link_counters(lab.client_ns, CLIENT_IF), time.monotonic()
        done = read_line(recv, "DONE", seconds + 30)
        w1, c1, t1 = link_counters(lab.client_ns, CLIENT_IF), child.cpu(), time.monotonic()
        recv.wait(10)
        time.sleep(0.7)  # the source reads PACKET_STATISTICS every 0.5 s
        s1 = child.stats()
        dt = t1 - t0
        rx, tx = w1["rx"] - w0["rx"], w1["tx"] - w0["tx"]
        delivered = s1["packets"] - s0["packets"]
        drops = s1["kernel_drops"] - s0["kernel_drops"]
        cpu_pct = (c1 - c0) / dt * 100
        mbit = int(done.split()[1]) * 8 / dt / 1e6
        print(f"  {dt:.2f} s: {rx / dt:,.0f} pkt/s in + {tx / dt:,.0f} pkt/s out on veth-c "
              f"({mbit:,.0f} Mbit/s); {delivered} frames reached Python, {drops} kernel drops, "
              f"capture process {cpu_pct:.1f} % of one core")
        res.add("rejected: packets into the namespace", f"{rx / dt:,.0f} pkt/s",
                f"aim ~{REJECTED_AIM_PPS:,}", None)
        res.add("rejected: packets out (pure ACKs)", f"{tx / dt:,.0f} pkt/s")
        res.add("rejected: frames delivered to Python", f"{delivered:,} of {rx + tx:,}")
        res.add("rejected: kernel drops", f"{drops:,}", "0", drops == 0)
        res.add("rejected: capture process CPU", f"{cpu_pct:.1f} % of a core", f"<= {CPU_TARGET_PCT:g} %",
                cpu_pct <= CPU_TARGET_PCT)
        if rx / dt < 0.8 * REJECTED_AIM_PPS:
            res.note(f"note: only {rx / dt:,.0f} pkt/s came in (aim {REJECTED_AIM_PPS:,}): this machine's "
                     "veth could not carry more alongside the other processes")

        # ---- 2. matching: small UDP datagrams out of the namespace
        print(f"[2] matching traffic: {MATCHING_AIM_PPS:,} UDP datagrams/s out of the client namespace "
              f"for {seconds:g} s")
        s0 = child.stats()  # before the first datagram, so delivered and sent compare
        send = lab.popen_client([sys.executable, "-c", UDP_SEND, SERVER_V4, str(UDP_PORT),
                                 str(MATCHING_AIM_PPS), str(seconds)], text=True)
        read_line(send, "START", 15)
        c0, w0, t0 = child.cpu(), link_counters(lab.client_ns, CLIENT_IF), time.monotonic()
        done = read_line(send, "DONE", seconds + 30)
        w1, c1, t1 = link_counters(lab.client_ns, CLIENT_IF), child.cpu(), time.monotonic()
        send.wait(10)
        time.sleep(0.7)
        s1 = child.stats()
        dt = t1 - t0
        sent = int(done.split()[1])
        tx, rx = w1["tx"] - w0["tx"], w1["rx"] - w0["rx"]
        delivered = s1["packets"] - s0["packets"]
        drops = s1["kernel_drops"] - s0["kernel_drops"]
        cpu_pct = (c1 - c0) / dt * 100
        print(f"  {dt:.2f} s: {sent:,} datagrams sent ({sent / dt:,.0f}/s; veth-c counted {tx / dt:,.0f} frames/s "
              f"out, {rx / dt:,.0f} in); {delivered:,} frames reached Python, {drops} kernel drops, "
              f"capture process {cpu_pct:.1f} % of one core")
        res.add("matching: datagrams sent", f"{sent:,} ({sent / dt:,.0f}/s)", f"aim ~{MATCHING_AIM_PPS:,}/s")
        res.add("matching: frames delivered to Python", f"{delivered:,} ({delivered / max(sent, 1):.1%} of sent)")
        res.add("matching: kernel drops", f"{drops:,}", "0", drops == 0)
        res.add("matching: capture process CPU", f"{cpu_pct:.1f} % of a core")
        if s1.get("error"):
            res.note(f"capture child error: {s1['error']}")
    finally:
        if child:
            child.close()
        stop_proc(server)


# --------------------------------------------------------------------------- 3: latency

def hello_times(path: str, names: set[str]) -> dict[str, float]:
    """Kernel timestamp of the first ClientHello frame carrying each SNI, from a capture of
    any link type (the live capture writes Linux cooked v2)."""
    from egress_tui.wire.packet import PROTO_TCP, decode
    from egress_tui.wire.pcapfile import open_capture

    wanted = {b"\x00\x00" + bytes([len(n)]) + n.encode(): n for n in names}
    found: dict[str, float] = {}
    for lt, ts, data in open_capture(path, strict=False):
        d = decode(lt, data)
        if d is None or d[2] != PROTO_TCP:
            continue
        payload = d[-1]
        if not payload[:1] == b"\x16":
            continue
        for needle, name in wanted.items():
            if name not in found and needle in payload:
                found[name] = ts
    return found


async def _latency(lab, pid: int, gap: float, load_pps: int = 0) -> dict:
    from egress_tui.ui.app import AppConfig, create_app
    from egress_tui.inspection import open_inspection
    from egress_tui.live.capture import NetnsSource

    app = create_app(AppConfig(start_capture=False))
    names = [f"lat-{i:02d}.test" for i in range(LATENCY_CONNS)]
    shown: dict[str, float] = {}
    emitted: dict[str, float] = {}
    apply_cost: list[float] = []
    failures: list[str] = []
    out: dict = {}
    async with app.run_test(size=(200, 50)) as pilot:
        screen = app.main
        orig_apply = screen.apply_rows

        def apply_rows(rows: list[dict]) -> None:
            a = time.perf_counter()
            orig_apply(rows)
            apply_cost.append(time.perf_counter() - a)
            now = time.time()
            for r in rows:
                if "tls" in r.via and r.name not in shown and in_table(r.name):
                    shown[r.name] = now

        def in_table(name: str) -> bool:
            try:
                screen.table.get_row_index(name)
            except Exception:
                return False
            return True

        screen.apply_rows = apply_rows
        src = NetnsSource(pid, "bench")
        insp = open_inspection(source=src, target="bench", method="netns")
        app.show_inspection(insp)
        cap = insp.capturer
        orig_batch = cap.on_batch

        def on_batch(b) -> None:
            now = time.time()
            for r in b.rows:
                if "tls" in r.via:
                    emitted.setdefault(r.name, now)
            orig_batch(b)

        cap.on_batch = on_batch
        deadline = time.monotonic() + 20
        while not src.ready.is_set():
            if time.monotonic() > deadline or not cap.is_alive():
                raise RuntimeError(f"capture did not start: {cap.error}")
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        flood = None
        if load_pps:
            from tests.lab.netlab import SERVER_V4
            # the matching flood of part 2 for the whole run: every datagram reaches the capture
            flood = lab.popen_client([sys.executable, "-c", UDP_SEND, SERVER_V4, str(UDP_PORT), str(load_pps),
                                      str(LATENCY_CONNS * (gap + 1.5) + 10)], text=True)
            read_line(flood, "START", 15)
            await pilot.pause(1.0)  # the flood is on before the first connection
        print(f"[{'3b' if load_pps else '3'}] latency: {LATENCY_CONNS} TLS connections to distinct names through "
              f"the headless app, {gap:g} s of silence after each"
              + (f", while {load_pps:,} UDP datagrams/s leave the namespace" if load_pps else ""))
        frames0 = src.packets
        t0 = time.monotonic()
        try:
            for name in names:
                r = await asyncio.to_thread(lab.py_tls, name)
                if r.returncode != 0:
                    failures.append(f"{name}: {r.stderr.strip()[-200:]}")
                await asyncio.sleep(gap)
        finally:
            out["load_rate"] = (src.packets - frames0) / max(time.monotonic() - t0, 1e-9)
            if flood is not None:
                stop_proc(flood)
        deadline = time.monotonic() + 3
        while len(shown) < len(names) - len(failures) and time.monotonic() < deadline:
            await pilot.pause(0.01)
        hellos = {}
        if insp.recording:
            # a copy taken under the capture lock after a flush: the live file may still hold
            # the last ClientHellos in its write buffer
            import tempfile
            with tempfile.TemporaryDirectory() as d:
                insp.save_recording(os.path.join(d, "hellos.pcapng"))
                hellos = hello_times(os.path.join(d, "hellos.pcapng"), set(names))
        out.update({"names": names, "shown": dict(shown), "emitted": dict(emitted), "hellos": hellos,
                    "failures": failures, "apply_cost": apply_cost, "drops": src.kernel_drops,
                    "error": cap.error})
        # the capture ends (its last batches applied) before the app does
        await asyncio.to_thread(insp.stop_capture)
        await pilot.pause(0.2)
    return out


def bench_latency(lab, pid: int, gap: float, res: Results, load_pps: int = 0) -> None:
    """Part 3; with load_pps, part 3b: the same while the matching flood of part 2 runs."""
    server = None
    if load_pps:
        server = subprocess.Popen(["ip", "netns", "exec", lab.server_ns, sys.executable, "-c", SERVER_GEN],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        read_line(server, "READY", 15)
    try:
        r = asyncio.run(_latency(lab, pid, gap, load_pps))
    finally:
        stop_proc(server)
    under = " under load" if load_pps else ""
    if load_pps:
        res.add("under load: frames captured while it ran", f"{r.get('load_rate', 0):,.0f}/s",
                f"aim ~{load_pps:,}/s")
    lat, cap_wait, ui_wait, missing, unseen = [], [], [], [], []
    for n in r["names"]:
        h = r["hellos"].get(n)
        s = r["shown"].get(n)
        if h is None:
            unseen.append(n)
            continue
        if s is None:
            missing.append(n)
            continue
        lat.append(s - h)
        e = r["emitted"].get(n)
        if e is not None:
            cap_wait.append(e - h)
            ui_wait.append(s - e)
    for f in r["failures"]:
        res.note(f"TLS client failed: {f}")
    if r["error"]:
        res.note(f"capture error: {r['error']}")
    if unseen:
        res.note(f"no ClientHello recorded for {len(unseen)} name(s): {', '.join(unseen)}")
    if missing:
        res.note(f"{len(missing)} name(s) whose ClientHello was captured but whose row never showed \"tls\" "
                 f"(waited 3 s after the last connection): {', '.join(missing)}")
    if not lat:
        res.add(f"latency{under} ClientHello -> row in table", "no sample", f"<= {LATENCY_TARGET_MS:g} ms", False)
        return
    med, worst = statistics.median(lat), max(lat)
    print(f"  {len(lat)} samples: median {ms(med)}, min {ms(min(lat))}, max {ms(worst)}")
    if cap_wait:
        print(f"  of which ClientHello -> batch handed over by the capture thread: median {ms(statistics.median(cap_wait))}, "
              f"max {ms(max(cap_wait))}; batch -> row in table: median {ms(statistics.median(ui_wait))}, "
              f"max {ms(max(ui_wait))}")
    if r["apply_cost"]:
        print(f"  apply_rows calls: {len(r['apply_cost'])}, max {ms(max(r['apply_cost']))}")
    res.add(f"latency{under} ClientHello -> row: median", ms(med), f"<= {LATENCY_TARGET_MS:g} ms",
            med * 1000 <= LATENCY_TARGET_MS)
    missing += unseen
    worst_ok = worst * 1000 <= LATENCY_TARGET_MS and not missing
    res.add(f"latency{under} ClientHello -> row: max", ms(worst) + (f" (+{len(missing)} never)" if missing else ""),
            f"<= {LATENCY_TARGET_MS:g} ms", worst_ok)
    if cap_wait:
        res.add("  of which waiting in the capture thread", f"median {ms(statistics.median(cap_wait))}, "
                f"max {ms(max(cap_wait))}")
        res.add("  of which batch -> table", f"median {ms(statistics.median(ui_wait))}, max {ms(max(ui_wait))}")
    res.add(f"latency{under} run: kernel drops", str(r["drops"]), "0", r["drops"] == 0)


# --------------------------------------------------------------------------- 5: DNS answer -> set

SYNC_CLIENT = r"""
import socket, sys, time
addr = socket.getaddrinfo(sys.argv[1], 443, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
s = socket.socket()
s.settimeout(5)
t0 = time.monotonic()
try:
    s.connect((addr, 443))
    print("ok", addr, time.monotonic() - t0)
except OSError as e:
    print("failed", addr, time.monotonic() - t0)
"""


def bench_dns_sync(lab, pid: int, conns: int, res: Results) -> None:
    from egress_tui.core.allowlist import Allowlist
    from egress_tui.firewall.apply import Firewall
    from egress_tui.firewall.dnssync import Guard
    from egress_tui.firewall.runners import NamespaceRunner, resolvers_of
    from egress_tui.live.capture import Capturer, NetnsSource

    resolvers = resolvers_of(pid)
    fw = Firewall(NamespaceRunner(pid), f"bench-{lab.client_ns}")
    guard = Guard(fw, pid, resolvers)
    src = NetnsSource(pid, "bench client", resolvers=resolvers)
    cap = Capturer(src, lambda b: None)
    handed: dict[str, float] = {}

    def on_answer(name: str, addr: str, ttl: int) -> None:
        handed.setdefault(addr, time.time())
        guard.on_dns_answer(name, addr, ttl)

    cap.engine.on_dns_answer = on_answer
    cap.start()
    lat, first_syn, failed = [], 0, []
    drops_before = drops_after = 0
    try:
        if not src.ready.wait(15):
            raise RuntimeError("the capture did not start")
        al = Allowlist()
        al.add_text("*.sync.test\n", "bench")
        al.sources.append("bench")
        guard.apply(al, check=False)
        drops_before = fw.status().dropped_packets[4]
        for i in range(conns):
            name = f"c{i}-{random.randrange(1 << 30)}.sync.test"
            addr = lab.address_for(name)[0]
            # a process of its own, so its polling takes nothing from the capture's interpreter
            poller = subprocess.Popen(
                ["ip", "netns", "exec", lab.client_ns, "sh", "-c",
                 'until ipset -q test egress-tui-v4 "$0"; do :; done; date +%s.%N', addr],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            out = lab.py(SYNC_CLIENT, name, timeout=30).stdout.split()
            try:
                seen = poller.communicate(timeout=5)[0].strip()
            except subprocess.TimeoutExpired:
                stop_proc(poller)
                seen = ""
            if seen and addr in handed:
                lat.append(float(seen) - handed[addr])
            if out[:1] == ["ok"] and float(out[2]) < 0.5:
                first_syn += 1
            elif out[:1] != ["ok"]:
                failed.append(name)
        drops_after = fw.status().dropped_packets[4]
    finally:
        cap.stop()
        cap.join(5)
        guard.remove()
    if failed:
        res.note(f"{len(failed)} connection(s) failed under the firewall: {', '.join(failed)}")
    if lat:
        print(f"  {len(lat)} samples: answer -> in set median {ms(statistics.median(lat))}, "
              f"max {ms(max(lat))} (polled: ~1-2 ms steps)")
        res.add("DNS answer -> address in set: median", ms(statistics.median(lat)))
        res.add("DNS answer -> address in set: max", ms(max(lat)))
    res.add("connections through on their first SYN", f"{first_syn}/{conns}", "usually (> half)",
            first_syn * 2 > conns)
    res.add("  packets the firewall dropped meanwhile", str(drops_after - drops_before), "0",
            drops_after == drops_before)
    res.add("  DNS updates dropped / set errors", f"{guard.dropped} / {guard.updater.errors}", "0 / 0",
            guard.dropped == 0 and guard.updater.errors == 0)


# --------------------------------------------------------------------------- 4: table apply

WORDS = ["api", "cdn", "auth", "metrics", "storage", "registry", "telemetry", "login", "assets", "events",
         "sync", "queue", "search", "static", "update", "download", "mirror", "pkg", "objects", "gateway"]
ZONES = ["example.com", "amazonaws.com", "googleapis.com", "githubusercontent.com", "anthropic.com",
         "cloudfront.net", "azureedge.net", "pypi.org", "npmjs.org", "docker.io", "sentry.io", "datadoghq.com"]
JA4 = ["t13d1516h2_8daaf6152771_e5627efa2ab1", "t13d1715h2_5b57614c22b0_3d5424432f57",
       "t13d301000_01455d0db58d_5ac7197df9d2"]


def make_row(i: int, rng: random.Random, t0: float):
    """A row as the engine makes one (before the session adds the verdict)."""
    from egress_tui.core.rows import HostRow
    zone = rng.choice(ZONES)
    name = f"{rng.choice(WORDS)}-{i}.{rng.choice(['', 'eu-west-1.', 'us-east-1.', 'ap-northeast-1.'])}{zone}"
    v6 = rng.random() < 0.3
    n_addr = rng.choice([1, 1, 1, 2, 4])
    addrs = sorted({f"2001:db8:{rng.randrange(1 << 16):x}::{rng.randrange(1, 1 << 16):x}" if v6 else
                    f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(n_addr)})
    connected = rng.random() > 0.05
    conns = rng.randint(1, 40) if connected else rng.randint(1, 3)
    via = ["dns", "tls"] if rng.random() < 0.85 else (["dns", "quic", "tls"] if rng.random() < 0.5 else ["dns", "http"])
    first = t0 + i * 0.05
    outcomes = {"closed": conns - 1, "connected": 1} if connected else {"unanswered": conns}
    return HostRow(
        name=name, via=via, addresses=addrs, resolved=list(addrs),
        ports=[443] if "http" not in via else [80],
        connections=conns, outcomes={k: v for k, v in sorted(outcomes.items()) if v},
        blocked=not connected, first_seen=first, last_seen=first + rng.uniform(0, 600),
        dns_queries=rng.randint(1, 10), dns_rcodes=["NOERROR"], cnames=[],
        alpn=["h2", "http/1.1"] if "tls" in via else [], tls_versions=["TLS1.3"] if "tls" in via else [],
        ech=False, ja4=[rng.choice(JA4)] if "tls" in via else [],
    )


def touched(row, rng: random.Random, now: float):
    """The same host one batch later: one more connection, seen again just now."""
    import copy
    r = copy.deepcopy(row)
    r.allowed, r.warning = None, ""
    r.connections += 1
    r.outcomes["closed"] = r.outcomes.get("closed", 0) + 1
    r.blocked = False
    r.last_seen = now
    if rng.random() < 0.1:
        r.ports = sorted(set(r.ports) | {8443})
    return r


class Sampler(threading.Thread):
    """A statistical profiler for one thread: its stack every few ms (cheap, unlike cProfile,
    which makes Textual's deferred table work several times slower)."""

    def __init__(self, thread_id: int, interval: float = 0.01, limit: float = 5.0, on_done=None):
        super().__init__(name="bench-sampler", daemon=True)
        self.thread_id = thread_id
        self.interval = interval
        self.limit = limit          # stop sampling after this many seconds
        self.on_done = on_done      # called from this thread with the seconds sampled
        self.halt = threading.Event()
        self.samples = 0
        self.inclusive: Counter = Counter()
        self.own: Counter = Counter()

    def run(self) -> None:
        start = time.perf_counter()
        while not self.halt.wait(self.interval) and time.perf_counter() - start < self.limit:
            f = sys._current_frames().get(self.thread_id)
            if f is None:
                continue
            self.samples += 1
            seen = set()
            top = True
            while f is not None:
                code = f.f_code
                key = f"{short_path(code.co_filename)}:{code.co_firstlineno}({code.co_name})"
                if top:
                    self.own[key] += 1
                    top = False
                if key not in seen:
                    seen.add(key)
                    self.inclusive[key] += 1
                f = f.f_back
            del f
        if self.on_done:
            self.on_done(self, time.perf_counter() - start)

    def report(self, title: str, skip: tuple[str, ...] = ("asyncio/", "_callback.py", "message_pump.py",
                                                        "bench/live.py", "threading.py")) -> str:
        n = max(self.samples, 1)
        lines = [f"{title}: {self.samples} stack samples",
                 "  inclusive (share of samples with the function on the stack):"]
        for key, c in [kv for kv in self.inclusive.most_common(60) if not any(s in kv[0] for s in skip)][:14]:
            lines.append(f"    {c / n:6.1%}  {key}")
        lines.append("  own time (share of samples with the function on top):")
        for key, c in self.own.most_common(8):
            lines.append(f"    {c / n:6.1%}  {key}")
        return "\n".join(lines)


def short_path(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/lib/python3" in path:
        return path.split("/lib/python3", 1)[1].partition("/")[2]
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(ROOT))
    return path


def apply_child(reps: int) -> int:
    """Run in a child process (so the parent can cut it off): fill a 5,000-row table, then time
    apply_rows on batches; prints FILL, then APPLY and IDLE per batch, PROFILE once."""
    asyncio.run(_apply_child(reps))
    return 0


async def _apply_child(reps: int) -> None:
    from egress_tui.ui.app import AppConfig, create_app

    def say(*parts) -> None:
        print(*parts, flush=True)

    rng = random.Random(7)
    t0 = time.time() - 3600
    app = create_app(AppConfig(start_capture=False, presets=["anthropic"]))
    async with app.run_test(size=(200, 60)) as pilot:
        rows = [make_row(i, rng, t0) for i in range(TABLE_ROWS)]
        a = time.perf_counter()
        app.feed_rows(rows)
        await pilot.pause()
        say("FILL", time.perf_counter() - a, app.main.table.row_count)
        next_id = TABLE_ROWS
        for k in range(reps):
            now = time.time()
            old = rng.sample(list(app.session.rows.values()), UPDATED_ROWS)
            batch = [touched(r, rng, now) for r in old] + [make_row(next_id + j, rng, now - 3600)
                                                           for j in range(NEW_ROWS)]
            next_id += NEW_ROWS
            rng.shuffle(batch)
            rows = app.session.update(batch)  # what on_capture_batch does before apply_rows
            sampler = None
            if k == 0:
                # The first batch is sampled for up to 5 s; the profile is printed from the
                # sampler's thread, so it is not lost if the parent cuts this process off.
                def done(smp: Sampler, secs: float) -> None:
                    if secs * 1000 >= APPLY_TARGET_MS:
                        more = "" if smp.halt.is_set() else "+ (sampling stopped there)"
                        say("PROFILE", json.dumps(smp.report(
                            f"apply_rows + the app's deferred work until idle, first {secs:.1f} s{more}")))
                sampler = Sampler(threading.get_ident(), on_done=done)
                sampler.start()
            a = time.perf_counter()
            app.main.apply_rows(rows)
            b = time.perf_counter()
            say("APPLY", b - a)
            await pilot.pause()
            c = time.perf_counter()
            say("IDLE", c - a)
            if sampler:
                sampler.halt.set()
                sampler.join()
    say("END")


def bench_apply(reps: int, budget: float, res: Results) -> None:
    print(f"[4] table apply: {TABLE_ROWS:,} rows, batches of {UPDATED_ROWS} updated + {NEW_ROWS} new rows, "
          f"up to {reps} batches within {budget:g} s")
    p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--apply-child", str(reps)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + budget
    fill, applies, idles, cut = None, [], [], None
    pending_since = None
    try:
        while True:
            left = deadline - time.monotonic()
            r, _, _ = select.select([p.stdout], [], [], max(left, 0))
            if not r:
                cut = time.perf_counter() - pending_since if pending_since else None
                break
            line = p.stdout.readline()
            if not line:
                break
            word, _, rest = line.strip().partition(" ")
            if word == "FILL":
                fill = float(rest.split()[0])
            elif word == "APPLY":
                applies.append(float(rest))
                pending_since = time.perf_counter() - float(rest)
            elif word == "IDLE":
                idles.append(float(rest))
                pending_since = None
            elif word == "PROFILE":
                res.profile = json.loads(rest)
            elif word == "END":
                break
    finally:
        stop_proc(p)
    err = p.stderr.read().strip() if p.stderr else ""
    if fill is None:
        res.note("table apply: the app did not start: " + err[-500:])
        res.add("table apply", "failed", f"< {APPLY_TARGET_MS:g} ms", False)
        return
    print(f"  filling {TABLE_ROWS:,} rows in one batch took {fill:.2f} s (info)")
    if applies:
        print(f"  apply_rows call: {len(applies)} batches, median {ms(statistics.median(applies))}, "
              f"max {ms(max(applies))}")
    if idles:
        print(f"  apply_rows + deferred work until the app is idle: {len(idles)} batches, "
              f"median {ms(statistics.median(idles))}, max {ms(max(idles))}")
    if cut is not None:
        res.note(f"stopped after {budget:g} s: batch {len(applies)} was still not done after {cut:.1f} s "
                 "(the app's event loop busy the whole time)")
    label = f"table apply ({UPDATED_ROWS} upd + {NEW_ROWS} new of {TABLE_ROWS // 1000}k)"
    if applies:
        med, worst = statistics.median(applies), max(applies)
        res.add(f"{label}: call median", ms(med), f"< {APPLY_TARGET_MS:g} ms", med * 1000 < APPLY_TARGET_MS)
        res.add(f"{label}: call max", ms(worst), f"< {APPLY_TARGET_MS:g} ms", worst * 1000 < APPLY_TARGET_MS)
    else:
        res.add(f"{label}: call", "no sample", f"< {APPLY_TARGET_MS:g} ms", False)
    waits = list(idles) + ([cut] if cut is not None else [])
    if waits:
        med, worst = statistics.median(waits), max(waits)
        more = " (last cut off)" if cut is not None else ""
        res.add(f"{label}: until idle, median", ms(med) + more, f"< {APPLY_TARGET_MS:g} ms",
                med * 1000 < APPLY_TARGET_MS)
        res.add(f"{label}: until idle, max", (">= " if cut is not None and worst == cut else "") + ms(worst),
                f"< {APPLY_TARGET_MS:g} ms", worst * 1000 < APPLY_TARGET_MS)
    res.add(f"  filling the {TABLE_ROWS:,}-row table (info)", f"{fill:.2f} s")


# --------------------------------------------------------------------------- main

def lab_pid(lab) -> tuple[subprocess.Popen, int]:
    """A sleep in the client namespace and its PID (what the capture enters, like a container's)."""
    sleeper = lab.popen_client(["sleep", "600"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "pids", lab.client_ns], capture_output=True, text=True).stdout
        for p in out.split():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{p}/comm").read_text().strip() == "sleep":
                    return sleeper, int(p)
        time.sleep(0.05)
    raise RuntimeError("no sleep process in the client namespace")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="egress-tui live-capture benchmark")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any target is missed")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each load phase (default 5)")
    ap.add_argument("--gap", type=float, default=0.4,
                    help="silence after each latency connection, seconds (default 0.4)")
    ap.add_argument("--reps", type=int, default=7, help="table-apply batches (default 7)")
    ap.add_argument("--load-pps", type=int, default=MATCHING_AIM_PPS,
                    help=f"datagrams/s flooding the capture during the second latency run (default "
                         f"{MATCHING_AIM_PPS:,}; 0: skip it)")
    ap.add_argument("--sync-conns", type=int, default=SYNC_CONNS,
                    help=f"connections for the DNS-answer-to-set measurement (default {SYNC_CONNS})")
    ap.add_argument("--skip-lab", action="store_true", help="only the table-apply measurement")
    ap.add_argument("--apply-budget", type=float, default=35.0,
                    help="seconds the table-apply measurement may take before it is cut off (default 35)")
    ap.add_argument("--capture-child", type=int, metavar="PID", help=argparse.SUPPRESS)
    ap.add_argument("--apply-child", type=int, metavar="REPS", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.capture_child:
        return capture_child(args.capture_child)
    if args.apply_child:
        return apply_child(args.apply_child)

    sys.stdout.reconfigure(line_buffering=True)  # progress shows under make too
    started = time.monotonic()
    res = Results()
    print(f"machine : {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{platform.machine()}, Linux {platform.release()}")

    lab_ok, why = (False, "--skip-lab") if args.skip_lab else (True, "")
    if lab_ok:
        from tests.lab.netlab import Lab, LabError, can_run_lab
        lab_ok, why = can_run_lab()
    if lab_ok:
        try:
            with Lab(prefer_ipv4=True) as lab:
                sleeper, pid = lab_pid(lab)
                print(f"lab     : client ns {lab.client_ns} (capture enters it through pid {pid}), "
                      f"server ns {lab.server_ns}\n")
                try:
                    bench_load(lab, pid, args.seconds, res)
                    bench_latency(lab, pid, args.gap, res)
                    if args.load_pps:
                        bench_latency(lab, pid, args.gap, res, args.load_pps)
                    bench_dns_sync(lab, pid, args.sync_conns, res)
                finally:
                    stop_proc(sleeper)
        except (LabError, RuntimeError, OSError, subprocess.SubprocessError) as e:
            res.note(f"lab measurement failed: {type(e).__name__}: {e}")
            res.add("live capture (1-3, 5)", "failed", "runs", False)
    else:
        print(f"lab     : skipped ({why})\n")
        res.add("live capture (1-3, 5)", f"skipped: {why}", "-", None)

    bench_apply(max(1, args.reps), args.apply_budget, res)

    # ---- table
    w1 = max(len(f.label) for f in res.figures)
    w2 = max(len(f.value) for f in res.figures)
    w3 = max(len(f.target) for f in res.figures)
    hdr = f"{'measure':<{w1}}  {'value':>{w2}}  {'target':<{w3}}  verdict"
    print("\n" + hdr)
    print("-" * len(hdr))
    for f in res.figures:
        print(f"{f.label:<{w1}}  {f.value:>{w2}}  {f.target:<{w3}}  {f.verdict}")
    if res.profile:
        print("\ntable apply over target; where the time went (first batch):\n" + res.profile)
    print(f"\n(whole run {time.monotonic() - started:.0f} s)")
    missed = [f.label for f in res.figures if f.ok is False]
    if args.strict and missed:
        print(f"--strict: {len(missed)} target(s) missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
