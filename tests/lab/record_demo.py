"""Record ``tui/data/demo.pcap``: what a Claude Code-like session looks like on the wire.

Everything happens inside the lab (tests/lab/netlab.py): the names below are
answered by the lab's sinkhole DNS with lab addresses (198.18.64.0/18,
fd65:6774:0:1::/64) and served by the lab's sinks, so no packet leaves the
machine.  Run as root from the project root::

    .venv/bin/python -m tests.lab.record_demo [--output tui/data/demo.pcap]

What ends up in the capture:
    api.anthropic.com                  TLS, browser-sized ClientHello split over 2 TCP segments, + a 2nd connection
    statsig.anthropic.com              TLS (Python ssl, http/1.1) over IPv6; the rest prefers IPv4
    bedrock-runtime.ap-northeast-1...  TLS (curl, h2)
    bedrock.ap-northeast-1...          TLS (openssl s_client, ALPN h2)
    raw.githubusercontent.com          TLS, reached through a CNAME
    claude.ai                          QUIC (aioquic)
    ocsp.digicert.com                  plain HTTP
    sentry.io                          DNS lookup only, no connection
    metadata.google.internal           NXDOMAIN
    example.com                        blocked probe: SYNs go unanswered
    ssh.github.com:22                  refused (RST)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import dnsd
from .netlab import PROJECT_ROOT, Lab

DEMO_DNS = dnsd.DnsConfig(
    cnames={"raw.githubusercontent.com": "github.map.fastly.net"},
    nxdomain={"metadata.google.internal"},
    blackholed={"example.com"},
    https=set(),
)

_CONNECT = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("connected")
except OSError as e:
    print(type(e).__name__)
"""


def record(output: Path) -> dict[str, subprocess.CompletedProcess]:
    out: dict[str, subprocess.CompletedProcess] = {}
    with tempfile.TemporaryDirectory(prefix="egress-demo-") as tmp:
        raw = Path(tmp) / "demo.pcap"
        with Lab(DEMO_DNS, prefer_ipv4=True) as lab:
            with lab.capture(raw):
                steps = [
                    ("api.anthropic.com", lambda: lab.curl_cffi_get("https://api.anthropic.com/v1/messages")),
                    ("statsig.anthropic.com", lambda: lab.py_tls("statsig.anthropic.com", family=socket.AF_INET6)),
                    ("bedrock-runtime", lambda: lab.curl(
                        "-k", "-o", "/dev/null", "-w", "%{http_code}",
                        "https://bedrock-runtime.ap-northeast-1.amazonaws.com/model/invoke")),
                    ("sentry.io", lambda: lab.resolve("sentry.io")),
                    ("bedrock", lambda: lab.openssl_s_client("bedrock.ap-northeast-1.amazonaws.com", 443, alpn="h2")),
                    ("raw.githubusercontent.com", lambda: lab.curl(
                        "-k", "-o", "/dev/null", "-w", "%{http_code}",
                        "https://raw.githubusercontent.com/anthropics/claude-code/main/README.md")),
                    ("claude.ai", lambda: lab.quic_connect("claude.ai")),
                    ("ocsp.digicert.com", lambda: lab.curl("-o", "/dev/null", "-w", "%{http_code}",
                                                           "http://ocsp.digicert.com/")),
                    ("metadata.google.internal", lambda: lab.resolve("metadata.google.internal")),
                    ("example.com", lambda: lab.curl("-k", "--connect-timeout", "2", "https://example.com/")),
                    ("ssh.github.com", lambda: lab.py(_CONNECT, "ssh.github.com", "22")),
                    ("api.anthropic.com#2", lambda: lab.curl(
                        "-k", "-o", "/dev/null", "-w", "%{http_code}", "https://api.anthropic.com/v1/messages")),
                ]
                for key, step in steps:
                    out[key] = step()
                    time.sleep(0.2)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(raw.read_bytes())
    os.chmod(output, 0o644)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="record tui/data/demo.pcap with the network lab")
    ap.add_argument("--output", type=Path, default=PROJECT_ROOT / "tui" / "data" / "demo.pcap")
    args = ap.parse_args(argv)
    out = record(args.output)
    for key, cp in out.items():
        first = (cp.stdout or "").strip().splitlines()
        print(f"{key:28} rc={cp.returncode} {first[-1][:80] if first else ''}")
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    exe = Path(sys.executable).with_name("egress-tui")
    if exe.exists():
        r = subprocess.run([str(exe), "report", "--pcap", str(args.output), "--format", "json"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            for h in json.loads(r.stdout)["hosts"]:
                print(f"  {h['name']:46} {','.join(h['via']):10} {h['outcomes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
