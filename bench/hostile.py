"""Worst-case packets from a hostile container: how long does one take to dissect?

Each crafted packet goes through the whole engine (link header to hosts), timed over many
repeats; the reference is an ordinary DNS answer measured in the same run. The issue's
target: no single packet takes more than a few milliseconds.
"""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.dnsbomb import compression_bomb  # noqa: E402
from tests.pcapgen import dns_message, ether, ip, tcp, udp  # noqa: E402
from tests.strategies import client_hello  # noqa: E402
from egress_tui.core.engine import Engine  # noqa: E402

C, R, S = "198.18.0.10", "198.18.0.2", "198.18.64.10"
LIMIT_MS = 3.0


def dns_frames(payload: bytes, ident: int, qname: str) -> list[bytes]:
    q = ether(ip(C, R, 17, udp(40000, 53, dns_message(ident, qname, 1, [], False))))
    a = ether(ip(R, C, 17, udp(53, 40000, payload)))
    return [q, a]


def chained_answers() -> bytes:
    """256 answers within every limit, each owner a pointer into one 245-octet name."""
    name = ".".join(["l" * 60] * 4)
    msg = bytearray(dns_message(9, name, 1, [], True))
    msg[6:8] = struct.pack("!H", 256)
    return bytes(msg) + (b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([198, 18, 64, 1])) * 256


def tls_frames(record: bytes) -> list[bytes]:
    return [ether(ip(C, S, 6, tcp(40001, 443, "S", 1))), ether(ip(C, S, 6, tcp(40001, 443, "PA", 2, 1, record)))]


CASES = {
    "ordinary DNS answer (reference)": dns_frames(
        dns_message(1, "api.anthropic.com", 1, [("api.anthropic.com", 1, "198.18.64.7")], True), 1, "api.anthropic.com"),
    "compression bomb, 61 KB, chained pointers": dns_frames(compression_bomb(), 0x4242, "a"),
    "compression bomb, 61 KB, pointer loop": dns_frames(compression_bomb(backwards=False), 0x4242, "a"),
    "256 answers sharing one 245-octet name": dns_frames(chained_answers(), 9, ".".join(["l" * 60] * 4)),
    "ClientHello with a 16 KB SNI": tls_frames(client_hello(b"\x1b[8m" * 3000, [b"[/]"] * 100)),
}


def per_packet_ms(frames: list[bytes], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        eng = Engine(resolvers=[R])
        t0 = time.perf_counter()
        for i, fr in enumerate(frames):
            eng.feed(1, 1.0 + i, fr)
        best = min(best, (time.perf_counter() - t0) / len(frames))
    return best * 1000


def main() -> int:
    print("hostile packets: whole-engine time per packet (best of 50)")
    ref = per_packet_ms(CASES["ordinary DNS answer (reference)"], 50)
    worst = 0.0
    for what, frames in CASES.items():
        ms = per_packet_ms(frames, 50)
        worst = max(worst, ms)
        print(f"  {what:45} {ms:8.3f} ms  ({ms / ref:6.1f}x the reference)")
    print(f"  worst: {worst:.3f} ms per packet; target <= {LIMIT_MS:g} ms: {'met' if worst <= LIMIT_MS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
