#!/usr/bin/env python3
"""Benchmark `egress-tui report` against the tshark one-liner it replaces.

Usage: python bench/run.py [--runs 5] [--strict] [--regen] [--pcap FILE]
                           [--egress-tui PATH] [--timeout SEC] [--only bulk,handshake,2m]
                           [--tshark-2m]

Three captures, generated with bench/gen_pcap.py into .cache/bench (again only when the
generator's source changed):

* bulk: 200,000 packets, mostly long TCP transfers (the fast path's easy case);
* handshake: 200,000 packets that are mostly handshakes and DNS: 2,000 TLS connections (a third
  of the ClientHellos split over segments), their lookups, QUIC, a little bulk;
* 2m: the same hosts watched ten times as long, 2,000,000 packets, to show growth.

On each, egress-tui (the compiled fast path, and the pure-Python engine with
EGRESS_TUI_PURE=1, the reference it is tested against) and the tshark one-liner each run once
to warm up, then --runs times measured, alternating (on 2m, tshark only with --tshark-2m: it
needs minutes and gigabytes). For each: the median wall time including start-up, the child's
peak RSS (ru_maxrss from os.wait4) and how many planted SNIs it reported; the ratio against
tshark measured in the same run; and whether both engines wrote the same report. Each target
is printed MET or MISSED. Exits 0 whatever the outcome unless --strict is given; then 1 if
any target is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GEN = HERE / "gen_pcap.py"
CACHE = ROOT / ".cache" / "bench"
PCAP = CACHE / "bench.pcap"
SEED = 1

# name -> (file, mix, epochs)
CAPTURES = {
    "bulk": (PCAP, "bulk", 1),
    "handshake": (CACHE / "handshake.pcap", "handshake", 1),
    "2m": (CACHE / "handshake-2m.pcap", "handshake", 10),
}
SPEEDUP_TARGET = {"bulk": 8.0, "handshake": 10.0}
RSS_TARGET_KB = {"bulk": 100 * 1024, "handshake": 64 * 1024, "2m": 64 * 1024}  # ru_maxrss is in KiB
GROWTH_TARGET = 12.0     # 10x the packets: at most 1.2 x 10 the time
FLAT_RSS_TARGET = 1.25   # 10x the packets: at most a quarter more memory

TSHARK_FILTER = "tls.handshake.extensions_server_name"


# --------------------------------------------------------------------------- capture

def truth_path(pcap: Path) -> Path:
    return pcap.with_suffix(".truth.json") if pcap.suffix == ".pcap" else Path(str(pcap) + ".truth.json")


def source_hash(mix: str, epochs: int) -> str:
    return hashlib.sha256(GEN.read_bytes() + f"\nseed={SEED} mix={mix} epochs={epochs}".encode()).hexdigest()


def ensure_capture(name: str, force: bool) -> tuple[Path, dict, str]:
    """Return (pcap, truth, how) generating into .cache/bench if missing or stale."""
    pcap, mix, epochs = CAPTURES[name]
    stamp = pcap.with_name(pcap.name + ".source-sha256")
    want = source_hash(mix, epochs)
    tp = truth_path(pcap)
    if (not force and pcap.exists() and tp.exists() and stamp.exists()
            and stamp.read_text().strip() == want):
        return pcap, json.loads(tp.read_text()), "cached"
    CACHE.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)  # a generation cut short leaves no valid stamp
    t0 = time.perf_counter()
    # in a child: the generator holds hundreds of MB, and every tool started later would be
    # forked from this process, its peak RSS (ru_maxrss) counting that copy before exec
    subprocess.run([sys.executable, str(GEN), str(pcap), "--seed", str(SEED), "--mix", mix,
                    "--epochs", str(epochs)], check=True)
    dt = time.perf_counter() - t0
    stamp.write_text(want + "\n")
    return pcap, json.loads(tp.read_text()), f"generated in {dt:.1f} s"


# --------------------------------------------------------------------------- measuring

@dataclass
class Run:
    wall: float
    maxrss_kb: int
    rc: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


def run_child(argv: list[str], timeout: float, env: dict | None = None) -> Run:
    """Run argv (no shell) and measure it from a fresh, small Python process (spawn_measured):
    a child's peak RSS (ru_maxrss) counts the memory of the process it was forked from, up to
    its exec, and this one holds the reports read so far."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".json") as result:
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--spawn-measured", result.name,
                        str(timeout), "--", *argv], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                       env=env, check=True)
        got = json.loads(Path(result.name).read_text())
        out.seek(0)
        err.seek(0)
        return Run(got["wall"], got["maxrss_kb"], got["rc"], out.read(), err.read(), got["timed_out"])


def spawn_measured(result: str, timeout: float, argv: list[str]) -> int:
    """In the small process: run argv with this process's stdout and stderr, wait with os.wait4
    for its own rusage, write {wall, maxrss_kb, rc, timed_out} to result."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    lock = threading.Lock()
    state = {"done": False, "timed_out": False}

    def kill() -> None:
        with lock:
            if not state["done"]:
                state["timed_out"] = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    try:
        while True:
            try:
                _, status, ru = os.wait4(proc.pid, 0)
                break
            except InterruptedError:
                continue
    finally:
        with lock:
            state["done"] = True
        timer.cancel()
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, tell Popen
    Path(result).write_text(json.dumps({"wall": wall, "maxrss_kb": ru.ru_maxrss, "rc": proc.returncode,
                                        "timed_out": state["timed_out"]}))
    return 0


@dataclass
class Tool:
    label: str
    argv: list[str]
    parse: object  # callable(bytes) -> dict[str, set[str]]
    env: dict | None = None
    runs: list[Run] = field(default_factory=list)
    error: str | None = None
    found: dict[str, set[str]] | None = None
    report: str | None = None  # digest of egress-tui's JSON report, "generated" left out

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs)

    def median(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    def peak_rss(self) -> int:
        return max(r.maxrss_kb for r in self.runs)


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def parse_egress(stdout: bytes) -> dict[str, set[str]]:
    doc = json.loads(stdout)
    hosts = doc.get("hosts") if isinstance(doc, dict) else None
    if not isinstance(hosts, list):
        raise ValueError('JSON has no "hosts" list')
    found: dict[str, set[str]] = {"tls": set(), "quic": set(), "dns": set(), "http": set(), "all": set()}
    for h in hosts:
        if not isinstance(h, dict) or not isinstance(h.get("name"), str):
            continue
        name = _norm(h["name"])
        found["all"].add(name)
        ports = h.get("ports")
        if isinstance(ports, list):
            found.setdefault("ports:" + name, set()).update(p for p in ports if isinstance(p, int))
        if isinstance(h.get("connections"), int):
            found["conns:" + name] = {h["connections"]}
        via = h.get("via") or []
        if isinstance(via, str):
            via = [via]
        for v in via:
            v = str(v).lower()
            if v in found:
                found[v].add(name)
    return found


def parse_tshark(stdout: bytes) -> dict[str, set[str]]:
    names = set()
    for line in stdout.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        for n in parts[1].split(","):
            if n.strip():
                names.add(_norm(n))
    return {"all": names}


def measure(tool: Tool, timeout: float, first: bool) -> None:
    """Warm-up (first=True) or one measured run; sets tool.error on failure."""
    if tool.error is not None:
        return
    try:
        r = run_child(tool.argv, timeout, tool.env)
    except OSError as e:
        tool.error = f"could not start: {e}"
        return
    if r.timed_out:
        tool.error = f"killed after {timeout:.0f} s timeout"
        return
    if r.rc != 0:
        tail = r.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        tool.error = f"exit status {r.rc}: " + " | ".join(tail)
        return
    if tool.found is None:
        try:
            tool.found = tool.parse(r.stdout)
            if tool.parse is parse_egress:
                # a digest, not the report: every tool is forked from this process, and its peak
                # RSS (ru_maxrss) counts what this process held before the exec
                doc = json.loads(r.stdout)
                doc.pop("generated", None)
                tool.report = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
                del doc
        except (ValueError, UnicodeDecodeError) as e:
            tool.error = f"unreadable output: {e}"
            return
    if not first:
        r.stdout = r.stderr = b""  # keep this process small: see above
        tool.runs.append(r)


def find_egress(explicit: str | None) -> str | None:
    if explicit:
        return explicit if (os.path.isfile(explicit) or shutil.which(explicit)) else None
    for cand in (Path(sys.executable).parent / "egress-tui", ROOT / ".venv" / "bin" / "egress-tui"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which("egress-tui")


# --------------------------------------------------------------------------- report

def fmt_mib(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def breakdown(missing: set[str], truth: dict) -> str:
    detail = truth.get("split_detail", {})
    cats = [("out_of_order_names", "out-of-order split hello"),
            ("tiny_first_segment_names", "hello whose first segment has only 1-9 bytes"),
            ("sni_after_first_segment_names", "SNI only in a later segment")]
    parts = []
    rest = set(missing)
    for key, label in cats:
        hit = rest & set(detail.get(key, []))
        if hit:
            parts.append(f"{len(hit)} {label}")
            rest -= hit
    if rest:
        parts.append(f"{len(rest)} other")
    return ", ".join(parts)


def allowlist_seconds(lines: int) -> float:
    """Best of three: load an allowlist of ``lines`` entries (names, wildcards, networks,
    ports) and ask 1,000 verdicts of it."""
    sys.path.insert(0, str(ROOT))
    from egress_tui.core.allowlist import Allowlist
    text = "\n".join([f"host{i}.example{i % 97}.test", f"*.zone{i}.test", f"10.{i // 256 % 256}.{i % 256}.0/24",
                      f"port{i}.test:{1 + i % 60000}"][i % 4] for i in range(lines))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        al = Allowlist(sources=["bench"])
        al.add_text(text)
        for i in range(1_000):
            al.verdict(f"a.host{i}.zone{i}.test", [443], [f"10.0.{i % 256}.1"])
        best = min(best, time.perf_counter() - t0)
    return best


def child_env(pure: bool) -> dict:
    """egress-tui's environment: with its bytecode cached, as an installed package has it (a
    session with PYTHONDONTWRITEBYTECODE would compile every module at each start-up)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "EGRESS_TUI_PURE")}
    if pure:
        env["EGRESS_TUI_PURE"] = "1"
    return env


def tools_for(pcap: Path, egress_path: str | None, tshark_path: str | None, with_tshark: bool,
              with_pure: bool) -> list[Tool]:
    argv = [egress_path or "egress-tui", "report", "--pcap", str(pcap), "--format", "json"]
    tools = [Tool("egress-tui report", argv, parse_egress, env=child_env(False))]
    if with_pure:
        tools.append(Tool("  pure Python", argv, parse_egress, env=child_env(True)))
    if egress_path is None:
        for t in tools:
            t.error = "egress-tui executable not found"
    if with_tshark:
        tshark = Tool("tshark one-liner", [tshark_path or "tshark", "-r", str(pcap), "-Y", TSHARK_FILTER,
                                           "-T", "fields", "-e", "tcp.dstport", "-e", TSHARK_FILTER], parse_tshark)
        if tshark_path is None:
            tshark.error = "tshark not installed (apt-get install tshark); showing egress-tui only"
        tools.append(tshark)
    return tools


def run_tools(tools: list[Tool], runs: int, timeout: float) -> None:
    for tool in tools:
        measure(tool, timeout, first=True)
    for _ in range(runs):
        for tool in tools:
            measure(tool, timeout, first=False)
            sys.stdout.write(".")
            sys.stdout.flush()
    print("\n")


def table(tools: list[Tool], truth: dict) -> None:
    planted_tls = set(truth["tls"])
    planted_quic = set(truth.get("quic", []))
    hdr = (f"{'tool':<20} {'median s':>9} {'min s':>8} {'max s':>8} {'peak RSS MiB':>13} {'TLS SNIs':>11} "
           f"{'QUIC SNIs':>10}")
    print(hdr)
    print("-" * len(hdr))
    for tool in tools:
        if not tool.ok:
            print(f"{tool.label:<20} {'-- ' + (tool.error or 'no runs')}")
            continue
        walls = [r.wall for r in tool.runs]
        f_all = tool.found["all"]
        f_tls = tool.found.get("tls", f_all)
        f_quic = tool.found.get("quic", f_all)
        tls_s = f"{len(planted_tls & f_tls)}/{len(planted_tls)}"
        quic_s = f"{len(planted_quic & f_quic)}/{len(planted_quic)}" if planted_quic else "-"
        print(f"{tool.label:<20} {tool.median():>9.3f} {min(walls):>8.3f} {max(walls):>8.3f} "
              f"{fmt_mib(tool.peak_rss()):>13} {tls_s:>11} {quic_s:>10}")


def details(egress: Tool, tshark: Tool | None, truth: dict) -> None:
    planted_tls = set(truth["tls"])
    planted_quic = set(truth.get("quic", []))
    if egress.ok:
        f = egress.found
        miss = planted_tls - f["tls"]
        extra = f["tls"] - planted_tls
        print(f"egress-tui: {len(planted_tls) - len(miss)}/{len(planted_tls)} planted TLS SNIs via tls"
              + (f"; missing {len(miss)} ({breakdown(miss, truth)}), e.g. {sorted(miss)[:5]}" if miss else ""))
        if extra:
            print(f"  {len(extra)} tls names that were not planted, e.g. {sorted(extra)[:5]}")
        if planted_quic:
            qmiss = planted_quic - f["quic"]
            print(f"  QUIC: {len(planted_quic) - len(qmiss)}/{len(planted_quic)} planted names via quic"
                  + (f", e.g. missing {sorted(qmiss)[:5]}" if qmiss else ""))
        got = planted_tls & f["tls"]
        if got and "tls_ports" in truth:
            same = sum(f.get("ports:" + n) == set(truth["tls_ports"][n]) for n in got)
            print(f"  info: ports equal the planted ones for {same}/{len(got)} found TLS names")
        if got and "tls_connections_per_name" in truth:
            same = sum(f.get("conns:" + n) == {truth["tls_connections_per_name"][n]} for n in got)
            print(f"  info: connection counts equal the planted ones for {same}/{len(got)} found TLS names")
        for key in ("dns", "http"):
            planted = set(truth.get(key, []))
            if planted:
                print(f"  info: {len(planted & f[key])}/{len(planted)} planted {key.upper()} names via {key}")
        print(f"  hosts reported: {len(f['all'])}")
    if tshark is not None and tshark.ok:
        names = tshark.found["all"]
        miss = planted_tls - names
        print(f"tshark one-liner: {len(planted_tls) - len(miss)}/{len(planted_tls)} planted TLS SNIs"
              + (f" and {len(planted_quic & names)}/{len(planted_quic)} QUIC SNIs" if planted_quic else "")
              + " (it reassembles in-order TCP segments by default)")
        if miss:
            print(f"  misses {len(miss)}: {breakdown(miss, truth)}")
            print("  (tshark does not reassemble out-of-order segments by default, and on ports it does not"
                  " map to TLS it finds TLS heuristically only when a segment starts with a record header)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--spawn-measured"]:
        return spawn_measured(argv[1], float(argv[2]), argv[4:])
    ap = argparse.ArgumentParser(description="egress-tui vs tshark one-liner benchmark")
    ap.add_argument("--runs", type=int, default=5, help="measured runs per tool (default 5; 2 on the 2m capture)")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any target is missed")
    ap.add_argument("--regen", action="store_true", help="regenerate the captures even if cached")
    ap.add_argument("--pcap", type=Path, help="use this capture only (needs FILE.truth.json beside it)")
    ap.add_argument("--only", default="bulk,handshake,2m", help="which captures (default bulk,handshake,2m)")
    ap.add_argument("--tshark-2m", action="store_true", help="run tshark on the 2,000,000-packet capture too")
    ap.add_argument("--egress-tui", dest="egress", help="path of the egress-tui executable")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before a run is killed")
    args = ap.parse_args(argv)
    runs = max(1, args.runs)

    print(f"machine : {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}")
    egress_path = find_egress(args.egress)
    tshark_path = shutil.which("tshark")
    if tshark_path:
        try:
            ver = subprocess.run([tshark_path, "--version"], capture_output=True, text=True,
                                 timeout=60).stdout.splitlines()
            print(f"tshark  : {ver[0] if ver else '?'}")
        except (OSError, subprocess.SubprocessError):
            pass
    if args.pcap:
        pcap = args.pcap.resolve()
        plan = [("given", pcap, json.loads(truth_path(pcap).read_text()), "given")]
    else:
        names = [n.strip() for n in args.only.split(",") if n.strip() in CAPTURES]
        plan = [(n, *ensure_capture(n, args.regen)) for n in names]

    results: list[tuple[str, str]] = []

    def target(desc: str, ok: bool | None) -> None:
        results.append((desc, "n/a" if ok is None else ("MET" if ok else "MISSED")))

    measured: dict[str, Tool] = {}
    for name, pcap, truth, how in plan:
        size_mb = pcap.stat().st_size / 1e6
        print(f"\n=== {name}: {pcap} ({how}; {truth['packets']} packets, {size_mb:.0f} MB)")
        print(f"planted : {len(truth['tls'])} TLS SNIs ({truth.get('split_hellos', '?')} split ClientHellos), "
              f"{len(truth.get('quic', []))} QUIC SNIs, {len(truth.get('dns', []))} DNS names"
              + (f"; packets by kind {truth['packets_by_kind']}" if "packets_by_kind" in truth else ""))
        big = name == "2m"
        n = min(runs, 2) if big else runs
        tools = tools_for(pcap, egress_path, tshark_path, with_tshark=not big or args.tshark_2m, with_pure=True)
        print(f"runs    : 1 warm-up + {n} measured per tool, alternating")
        run_tools(tools, n, args.timeout)
        egress, pure = tools[0], tools[1]
        tshark = tools[2] if len(tools) > 2 else None
        table(tools, truth)
        ratio = None
        if egress.ok and tshark is not None and tshark.ok and egress.median() > 0:
            ratio = tshark.median() / egress.median()
            print(f"\nspeed-up (tshark median / egress-tui median, start-up included): {ratio:.1f}x"
                  + (f"; the pure-Python engine: {tshark.median() / pure.median():.1f}x" if pure.ok else ""))
        print()
        details(egress, tshark, truth)
        measured[name] = egress

        # ---- targets
        if name in SPEEDUP_TARGET or (big and tshark is not None):
            want = SPEEDUP_TARGET.get(name, SPEEDUP_TARGET["handshake"])
            target(f"{name}: egress-tui >= {want:.0f}x faster than the tshark one-liner, start-up included"
                   + (f" (is {ratio:.1f}x)" if ratio else " (no tshark figure)" if tshark is None or not tshark.ok
                      else ""), None if tshark is None or not tshark.ok else ratio is not None and ratio >= want)
        rss_want = RSS_TARGET_KB.get(name, RSS_TARGET_KB["bulk"])
        target(f"{name}: egress-tui peak RSS <= {rss_want // 1024} MiB"
               + (f" (is {fmt_mib(egress.peak_rss())} MiB)" if egress.ok else ""),
               egress.ok and egress.peak_rss() <= rss_want)
        target(f"{name}: egress-tui finds every planted TLS SNI",
               egress.ok and set(truth["tls"]) <= egress.found["tls"])
        if truth.get("quic"):
            target(f"{name}: egress-tui finds every planted QUIC SNI",
                   egress.ok and set(truth["quic"]) <= egress.found["quic"])
        target(f"{name}: the compiled fast path writes the pure-Python engine's report",
               egress.ok and pure.ok and egress.report == pure.report)

    small, large = measured.get("handshake"), measured.get("2m")
    if small is not None and large is not None and small.ok and large.ok:
        growth = large.median() / small.median()
        rss = large.peak_rss() / small.peak_rss()
        print(f"\ngrowth, handshake -> 2m (10x the packets): time {growth:.1f}x, peak RSS {rss:.2f}x "
              f"({fmt_mib(small.peak_rss())} -> {fmt_mib(large.peak_rss())} MiB)")
        target(f"2m: time grows linearly (10x the packets: <= {GROWTH_TARGET:g}x the time; is {growth:.1f}x)",
               growth <= GROWTH_TARGET)
        target(f"2m: peak RSS flat (10x the packets: <= {FLAT_RSS_TARGET:g}x the memory; is {rss:.2f}x)",
               rss <= FLAT_RSS_TARGET)

    small_al, large_al = allowlist_seconds(1_000), allowlist_seconds(10_000)
    print(f"\nallowlist: 1,000 lines load and answer 1,000 verdicts in {small_al * 1000:.0f} ms, "
          f"10,000 lines in {large_al * 1000:.0f} ms ({large_al / small_al:.1f}x)")
    target("allowlist loading and lookups grow linearly (10x the lines: under 20x the time)",
           large_al < 20 * small_al)
    print("\ntargets:")
    for desc, verdict in results:
        print(f"  [{verdict:>6}] {desc}")
    missed = [d for d, v in results if v == "MISSED"]
    if args.strict and missed:
        print(f"\n--strict: {len(missed)} target(s) missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
