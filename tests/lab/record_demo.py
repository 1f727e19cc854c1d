"""Record ``tui/data/demo.pcap``: real Claude Code sessions, plus a few probes.

Everything happens inside the lab (tests/lab/netlab.py): every name is answered by
the lab's sinkhole DNS with lab addresses (198.18.64.0/18, fd65:6774:0:1::/64) and
served by the lab's sinks, so no packet leaves the machine. Run as root from the
project root::

    .venv/bin/python -m tests.lab.record_demo [--output tui/data/demo.pcap]

What ends up in the capture:
    Claude Code (npm, native binary), `claude -p hello`, bounded by a timeout:
      Anthropic mode (ANTHROPIC_API_KEY set)      -> api.anthropic.com
      Bedrock mode (CLAUDE_CODE_USE_BEDROCK=1,
        AWS_REGION=ap-northeast-1, dummy keys)    -> bedrock-runtime / bedrock .ap-northeast-1.amazonaws.com
      (the sink's certificate is not trusted, so Claude Code retries: several connections)
    Probes with neutral names, to show what the engine reads:
      www.example.org        curl_cffi as Chrome: ~1.9 KB ClientHello split over 2 segments
      cdn.example.net        TLS through a CNAME chain, over IPv6
      quic.example.net       QUIC (aioquic)
      http.example.net       plain HTTP
      lookup.example.net     DNS lookup only, no connection
      nxdomain.example.net   NXDOMAIN
      example.com            the seed's firewall check: SYNs go unanswered (blocked)
      ssh.example.net:22     refused (RST)
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
    cnames={"cdn.example.net": "edge.cdn-provider.example"},
    nxdomain={"nxdomain.example.net"},
    blackholed={"example.com"},
    https=set(),
)
CLAUDE_TIMEOUT = 12  # Claude Code retries an untrusted endpoint for minutes


def claude_binary() -> str:
    """The native Claude Code binary from npm (installed under .cache/ on first use)."""
    from tests.dockerlab.images import ensure_claude_code
    path, _version = ensure_claude_code()
    return str(path)


def claude_env(home: str, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
           "DISABLE_AUTOUPDATER": "1", "TERM": "dumb"}
    env.update(extra)
    return env

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
                claude = claude_binary()
                home = tempfile.mkdtemp(prefix="claude-home-", dir=tmp)
                anthropic = claude_env(home, ANTHROPIC_API_KEY="sk-ant-demo-not-a-real-key")
                bedrock = claude_env(home, CLAUDE_CODE_USE_BEDROCK="1", AWS_REGION="ap-northeast-1",
                                     AWS_ACCESS_KEY_ID="AKIADEMONOTAREALKEY", AWS_SECRET_ACCESS_KEY="demo")
                steps = [
                    ("claude (anthropic)", lambda: lab.run_client(
                        ["timeout", str(CLAUDE_TIMEOUT), claude, "-p", "hello"], env=anthropic,
                        timeout=CLAUDE_TIMEOUT + 10)),
                    ("claude (bedrock)", lambda: lab.run_client(
                        ["timeout", str(CLAUDE_TIMEOUT), claude, "-p", "hello"], env=bedrock,
                        timeout=CLAUDE_TIMEOUT + 10)),
                    ("www.example.org", lambda: lab.curl_cffi_get("https://www.example.org/")),
                    ("cdn.example.net", lambda: lab.py_tls("cdn.example.net", family=socket.AF_INET6)),
                    ("quic.example.net", lambda: lab.quic_connect("quic.example.net")),
                    ("http.example.net", lambda: lab.curl("-o", "/dev/null", "-w", "%{http_code}",
                                                          "http://http.example.net/")),
                    ("lookup.example.net", lambda: lab.resolve("lookup.example.net")),
                    ("nxdomain.example.net", lambda: lab.resolve("nxdomain.example.net")),
                    ("example.com", lambda: lab.curl("-k", "--connect-timeout", "2", "https://example.com/")),
                    ("ssh.example.net", lambda: lab.py(_CONNECT, "ssh.example.net", "22")),
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
