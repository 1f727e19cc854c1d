"""Live capture from the host inside another network namespace (what egress-tui does to a
container), with real clients in the lab: hosts appear, and bulk traffic stays in the kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.lab.netlab import CLIENT_IF, Lab
from egress_tui.live.capture import Capturer, NetnsSource, capture_filter

pytestmark = [pytest.mark.root, pytest.mark.netns]

if os.geteuid() != 0:
    pytest.skip("live capture in a namespace needs root", allow_module_level=True)

BULK_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 8000)); s.listen(8)
print("READY", flush=True)
chunk = b"x" * 65536
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (len(chunk) * 320))
    for _ in range(320):
        c.sendall(chunk)
    c.close()
"""


def link_packets(lab: Lab) -> int:
    out = subprocess.run(["ip", "-n", lab.client_ns, "-s", "-j", "link", "show", "dev", CLIENT_IF],
                         capture_output=True, text=True, check=True).stdout
    st = json.loads(out)[0]["stats64"]
    return st["rx"]["packets"] + st["tx"]["packets"]


@pytest.fixture(scope="module")
def live():
    with Lab() as lab:
        pid = lab.client_pid()
        bulk = subprocess.Popen(["ip", "netns", "exec", lab.server_ns, sys.executable, "-c", BULK_SERVER],
                                stdout=subprocess.PIPE, text=True)
        assert bulk.stdout.readline().startswith("READY")
        batches = []
        src = NetnsSource(pid, "lab client")
        cap = Capturer(src, batches.append, interval=0.1)
        cap.start()
        assert src.ready.wait(15), cap.error
        before = link_packets(lab)
        results = {
            "tls": lab.py_tls("alpha.test"),
            "split": lab.curl_cffi_get("https://split.test/"),
            "quic": lab.quic_connect("quic.test"),
            "dns-only": lab.resolve("dns-only.test"),
            "blackholed": lab.curl("--max-time", "2", "https://blackholed.test/"),
            "bulk": lab.curl("-o", "/dev/null", "-w", "%{size_download}", "http://bulk.test:8000/"),
        }
        time.sleep(0.5)
        wire = link_packets(lab) - before
        cap.stop()
        cap.join(5)
        bulk.kill()
        rows = {}
        for b in batches:
            for r in b.rows:
                rows[r.name] = r
        yield {"rows": rows, "wire": wire, "seen": src.packets, "src": src, "cap": cap,
               "results": results, "batches": batches, "lab": lab}


def test_capture_thread_reported_no_error(live):
    assert live["cap"].error is None
    assert live["batches"][-1].ended
    assert live["batches"][-1].kernel_drops == 0


def test_hosts_appear(live):
    rows = live["rows"]
    assert "tls" in rows["alpha.test"].via
    assert "tls" in rows["split.test"].via        # a two-segment ClientHello
    assert "quic" in rows["quic.test"].via
    assert rows["dns-only.test"].connections == 0
    b = rows["blackholed.test"]
    assert b.blocked and b.outcomes.get("unanswered")
    assert "http" in rows["bulk.test"].via
    assert rows["alpha.test"].outcomes.get("closed") or rows["alpha.test"].outcomes.get("connected")


def test_bulk_traffic_stays_in_the_kernel(live):
    assert live["results"]["bulk"].stdout.strip() == str(65536 * 320)
    # 20 MB downloaded: thousands of packets on the wire, a handful reach Python
    assert live["wire"] > 10_000
    assert live["seen"] < live["wire"] * 0.05, (live["seen"], live["wire"])


def test_filter_is_the_documented_one(live):
    f = live["src"].filter_used
    # the namespace's own addresses, read after entering it, name "what it sends"
    assert f.startswith("(ip and (src host 198.18.0.1)")
    assert "src host fd65:6774::1" in f
    assert f.endswith(capture_filter([]))
