"""`learn --write-allowlist` on a real container that sends ClientHellos with hostile SNIs
(address ranges, wildcards, a public suffix wildcard, terminal escapes) to the lab's sink:
the file holds only the real host name, and stderr says in one escaped line per name why
the others were left out. No traffic leaves the lab."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.pcapgen import python_client_hello
from egress_tui.core.allowlist import build

pytestmark = [pytest.mark.docker, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ["0.0.0.0/0", "::/0", "*.co.uk", "*.example.com", "evil\x1b]0;pwned\x07.example"]
GOOD = "ok.example.com"

# Sends each argument (hex) as the first bytes of its own TLS connection, then waits briefly
# for the sink's answer so the engine sees the connection through.
SENDER = """
import socket, sys
addr = sys.argv[1]
for h in sys.argv[2:]:
    s = socket.create_connection((addr, 443), timeout=3)
    s.sendall(bytes.fromhex(h))
    try:
        s.recv(100)
    except OSError:
        pass
    s.close()
"""


def hello_with_sni(sni: str) -> bytes:
    """Python's own ClientHello with ``sni`` swapped in byte for byte for a placeholder of
    the same length (ssl would refuse to send most of these names)."""
    placeholder = ("q" * len(sni.encode())).encode()
    data = python_client_hello(placeholder.decode())
    assert data.count(placeholder) == 1
    return data.replace(placeholder, sni.encode())


def test_hello_with_sni_is_parsed_as_sent():
    from egress_tui.wire.tls import parse_client_hello
    for sni in [*HOSTILE, GOOD]:
        hello = parse_client_hello(hello_with_sni(sni)[5:])
        assert hello is not None and hello.sni == sni.lower()


def test_learn_writes_only_the_host_name(docker_lab, tmp_path):
    out = tmp_path / "allow.txt"
    addr = docker_lab.address_for(GOOD)
    hexes = [hello_with_sni(n).hex() for n in [*HOSTILE, GOOD]]
    w = docker_lab.exec(["python3", "-c", f"open('/tmp/send.py', 'w').write({SENDER!r})"])
    assert w.returncode == 0, w.stderr
    # options first: the command is whatever follows the container name
    r = subprocess.run([sys.executable, "-m", "egress_tui", "learn", "--provider", "none", "--timeout", "30", "--quiet",
                        "--format", "json", "--write-allowlist", str(out), docker_lab.target.name,
                        "python3", "/tmp/send.py", addr, *hexes],
                       capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    written = build([str(out)])                                 # it loads back
    assert [e.text() for e in written.entries] == [GOOD]
    left = [ln for ln in r.stderr.splitlines() if "left out of the allowlist" in ln]
    assert len(left) == len(HOSTILE), r.stderr
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert any("'0.0.0.0/0': an address range" in ln for ln in left)
    assert any("'*.co.uk': a name with '*'" in ln for ln in left)
    assert any("'evil\\x1b]0;pwned\\x07.example': not a valid host name" in ln for ln in left)
