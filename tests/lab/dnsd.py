"""Sinkhole DNS responder for the network lab (stdlib only).

Every A/AAAA query is answered with a deterministic lab address derived from
a hash of the name: IPv4 in 198.18.64.0/18 (RFC 2544 benchmarking range) and
IPv6 in fd65:6774:0:1::/64 (ULA).  It never recurses and never forwards: it has
no upstream at all.

Configurable behaviour (``DnsConfig``):
    cnames      name -> target; answers start with the CNAME chain
    nxdomain    names answered with NXDOMAIN (also every name under ``.invalid``)
    blackholed  names whose addresses fall in the dropped ranges
                (198.18.127.0/24 and fd65:6774:0:1:ffff::/80); the lab's server
                namespace drops everything sent there, so connections go unanswered
    https       names whose HTTPS (type 65) query gets a simple ServiceMode record
                (alpn h2,h3); every other HTTPS query gets an empty NOERROR

Run standalone: ``python -m tests.lab.dnsd [--config JSON] [--host H] [--port P]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import ipaddress
import json
import socket
import struct
import sys
import threading

LAB_V4 = ipaddress.ip_network("198.18.64.0/18")
LAB_V6 = ipaddress.ip_network("fd65:6774:0:1::/64")
BLACKHOLE_V4 = ipaddress.ip_network("198.18.127.0/24")
BLACKHOLE_V6 = ipaddress.ip_network("fd65:6774:0:1:ffff::/80")
TTL = 60

QTYPE_A = 1
QTYPE_CNAME = 5
QTYPE_AAAA = 28
QTYPE_HTTPS = 65
QCLASS_IN = 1

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4


@dataclasses.dataclass
class DnsConfig:
    cnames: dict[str, str] = dataclasses.field(
        default_factory=lambda: {
            "cdn-alias.test": "edge.cdn.test",
            "www.chain.test": "hop1.chain.test",
            "hop1.chain.test": "hop2.chain.test",
        }
    )
    nxdomain: set[str] = dataclasses.field(
        default_factory=lambda: {"nxdomain.test", "does-not-exist.test"}
    )
    blackholed: set[str] = dataclasses.field(
        default_factory=lambda: {"blackholed.test"}
    )
    https: set[str] = dataclasses.field(default_factory=lambda: {"https-rr.test", "quic.test"})

    def __post_init__(self) -> None:
        self.cnames = {_norm(k): _norm(v) for k, v in self.cnames.items()}
        self.nxdomain = {_norm(n) for n in self.nxdomain}
        self.blackholed = {_norm(n) for n in self.blackholed}
        self.https = {_norm(n) for n in self.https}

    def to_json(self) -> str:
        return json.dumps(
            {
                "cnames": self.cnames,
                "nxdomain": sorted(self.nxdomain),
                "blackholed": sorted(self.blackholed),
                "https": sorted(self.https),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "DnsConfig":
        d = json.loads(text)
        return cls(
            cnames=dict(d.get("cnames", {})),
            nxdomain=set(d.get("nxdomain", [])),
            blackholed=set(d.get("blackholed", [])),
            https=set(d.get("https", [])),
        )

    # -- name semantics ---------------------------------------------------
    def is_nxdomain(self, name: str) -> bool:
        name = _norm(name)
        return name in self.nxdomain or name == "invalid" or name.endswith(".invalid")

    def is_blackholed(self, name: str) -> bool:
        name = _norm(name)
        return name in self.blackholed or any(name.endswith("." + b) for b in self.blackholed)

    def chain(self, name: str) -> list[str]:
        """[name, cname1, ..., final] following configured CNAMEs (loop-safe)."""
        out = [_norm(name)]
        while out[-1] in self.cnames and len(out) < 16:
            nxt = self.cnames[out[-1]]
            if nxt in out:
                break
            out.append(nxt)
        return out


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _digest(name: str) -> bytes:
    return hashlib.sha256(_norm(name).encode()).digest()


def hashed_address(name: str, blackholed: bool = False) -> tuple[str, str]:
    """Deterministic (v4, v6) for a final (non-CNAME) name."""
    h = _digest(name)
    if blackholed:
        v4 = BLACKHOLE_V4.network_address + 1 + (h[0] % 254)
        v6 = BLACKHOLE_V6.network_address + 1 + int.from_bytes(h[1:5], "big") % 0xFFFFFFFE
    else:
        # 198.18.64.0 .. 198.18.126.255 (198.18.127.0/24 is the black hole);
        # last octet 1..254 so nothing looks like a network/broadcast address.
        third = h[0] % 63
        fourth = 1 + h[1] % 254
        v4 = LAB_V4.network_address + third * 256 + fourth
        # fd65:6774:0:1::XXXX:XXXX -- the 5th group stays 0, so never in ffff::/80.
        v6 = LAB_V6.network_address + 1 + int.from_bytes(h[2:6], "big") % 0xFFFFFFFE
    return str(v4), str(v6)


def address_for(name: str, config: DnsConfig | None = None) -> tuple[str, str]:
    """The (v4, v6) the responder hands out for ``name`` (after CNAMEs).

    Raises KeyError for NXDOMAIN names.
    """
    config = config or DnsConfig()
    final = config.chain(name)[-1]
    if config.is_nxdomain(name) or config.is_nxdomain(final):
        raise KeyError(name)
    return hashed_address(final, config.is_blackholed(final) or config.is_blackholed(name))


# -- wire format ---------------------------------------------------------------


def encode_name(name: str) -> bytes:
    name = _norm(name)
    out = b""
    if name:
        for label in name.split("."):
            raw = label.encode("idna") if not label.isascii() else label.encode()
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def decode_name(msg: bytes, off: int) -> tuple[str, int]:
    """Returns (name, offset after the name in the original position)."""
    labels: list[str] = []
    end = None
    jumps = 0
    while True:
        if off >= len(msg):
            raise ValueError("truncated name")
        ln = msg[off]
        if ln & 0xC0 == 0xC0:
            if off + 1 >= len(msg) or jumps > 20:
                raise ValueError("bad pointer")
            if end is None:
                end = off + 2
            off = ((ln & 0x3F) << 8) | msg[off + 1]
            jumps += 1
            continue
        if ln & 0xC0:
            raise ValueError("bad label")
        off += 1
        if ln == 0:
            break
        labels.append(msg[off : off + ln].decode("ascii", "replace"))
        off += ln
    return ".".join(labels).lower(), (end if end is not None else off)


def _rr(owner: bytes, rtype: int, rdata: bytes, ttl: int = TTL) -> bytes:
    return owner + struct.pack("!HHIH", rtype, QCLASS_IN, ttl, len(rdata)) + rdata


def _https_rdata() -> bytes:
    # SvcPriority 1, TargetName ".", alpn="h2","h3"
    alpn = b"\x02h2\x02h3"
    return struct.pack("!H", 1) + b"\x00" + struct.pack("!HH", 1, len(alpn)) + alpn


def build_response(query: bytes, config: DnsConfig) -> bytes | None:
    """Answer one DNS query message; None when it cannot even be parsed."""
    if len(query) < 12:
        return None
    qid, flags, qdcount, _an, _ns, _ar = struct.unpack("!6H", query[:12])
    if flags & 0x8000:  # a response: ignore
        return None
    opcode = (flags >> 11) & 0xF
    rd = flags & 0x0100

    def header(rcode: int, qd: int, an: int) -> bytes:
        rflags = 0x8000 | (opcode << 11) | 0x0400 | rd | rcode
        return struct.pack("!6H", qid, rflags, qd, an, 0, 0)

    if opcode != 0:
        return header(RCODE_NOTIMP, 0, 0)
    if qdcount != 1:
        return header(RCODE_FORMERR, 0, 0)
    try:
        qname, off = decode_name(query, 12)
        qtype, qclass = struct.unpack("!HH", query[off : off + 4])
    except (ValueError, struct.error):
        return header(RCODE_FORMERR, 0, 0)
    question = encode_name(qname) + struct.pack("!HH", qtype, qclass)

    chain = config.chain(qname)
    if config.is_nxdomain(qname) or config.is_nxdomain(chain[-1]):
        return header(RCODE_NXDOMAIN, 1, 0) + question
    if qclass != QCLASS_IN:
        return header(RCODE_NOERROR, 1, 0) + question

    answers: list[bytes] = []
    owner = b"\xc0\x0c"  # pointer to the question name
    if qtype != QTYPE_CNAME:
        for target in chain[1:]:
            answers.append(_rr(owner, QTYPE_CNAME, encode_name(target)))
            owner = encode_name(target)
    elif len(chain) > 1:
        answers.append(_rr(owner, QTYPE_CNAME, encode_name(chain[1])))
    final = chain[-1]
    if qtype in (QTYPE_A, QTYPE_AAAA):
        v4, v6 = hashed_address(final, config.is_blackholed(final) or config.is_blackholed(qname))
        if qtype == QTYPE_A:
            answers.append(_rr(owner, QTYPE_A, ipaddress.IPv4Address(v4).packed))
        else:
            answers.append(_rr(owner, QTYPE_AAAA, ipaddress.IPv6Address(v6).packed))
    elif qtype == QTYPE_HTTPS and (final in config.https or qname in config.https):
        answers.append(_rr(owner, QTYPE_HTTPS, _https_rdata()))
    # any other type: NOERROR/NODATA (after the CNAME chain, if any)
    return header(RCODE_NOERROR, 1, len(answers)) + question + b"".join(answers)


# -- servers -------------------------------------------------------------------


def _log(verbose: bool, msg: str) -> None:
    if verbose:
        print(f"dnsd: {msg}", file=sys.stderr, flush=True)


def _describe(query: bytes) -> str:
    try:
        name, off = decode_name(query, 12)
        qtype = struct.unpack("!H", query[off : off + 2])[0]
        return f"{name} type {qtype}"
    except Exception:
        return "<unparsable>"


def _udp_loop(sock: socket.socket, config: DnsConfig, verbose: bool) -> None:
    while True:
        try:
            data, addr = sock.recvfrom(4096)
        except OSError:
            return
        resp = build_response(data, config)
        _log(verbose, f"udp {addr[0]} {_describe(data)}")
        if resp is not None:
            try:
                sock.sendto(resp, addr)
            except OSError:
                pass


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _tcp_conn(conn: socket.socket, config: DnsConfig, verbose: bool) -> None:
    with conn:
        conn.settimeout(5)
        try:
            while True:
                hdr = _recv_exact(conn, 2)
                if hdr is None:
                    return
                data = _recv_exact(conn, struct.unpack("!H", hdr)[0])
                if data is None:
                    return
                _log(verbose, f"tcp {_describe(data)}")
                resp = build_response(data, config)
                if resp is None:
                    return
                conn.sendall(struct.pack("!H", len(resp)) + resp)
        except OSError:
            return


def _tcp_loop(sock: socket.socket, config: DnsConfig, verbose: bool) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=_tcp_conn, args=(conn, config, verbose), daemon=True).start()


def start(config: DnsConfig, host: str = "0.0.0.0", port: int = 53, verbose: bool = False) -> list[socket.socket]:
    """Bind UDP+TCP and serve from daemon threads; returns the sockets."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    udp = socket.socket(fam, socket.SOCK_DGRAM)
    udp.bind((host, port))
    tcp = socket.socket(fam, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((host, port))
    tcp.listen(64)
    threading.Thread(target=_udp_loop, args=(udp, config, verbose), daemon=True).start()
    threading.Thread(target=_tcp_loop, args=(tcp, config, verbose), daemon=True).start()
    return [udp, tcp]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--config", help="DnsConfig as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    config = DnsConfig.from_json(args.config) if args.config else DnsConfig()
    start(config, args.host, args.port, args.verbose)
    print("READY", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
