"""Server side of the network lab: one process with every listener.

Started by ``Lab`` inside the server namespace as ``python -m tests.lab.sink``.
It binds dual-stack ([::], v4-mapped too) listeners, so thanks to the lab's
local routes it accepts on *any* lab address:

    TCP 443, 8443  TLS (self-signed cert made at start; ALPN h2 / http/1.1);
                   HTTP/1.1 gets "200 ok", h2 gets a minimal HTTP/2 200
    TCP 80         plain HTTP, 200 to anything
                   (HTTP/1.1 on either: a path under ``/delay/MS`` is answered
                   after MS milliseconds, at most 5000, so a connection lives as
                   long as a test needs, as one to a real server does)
    UDP 443        QUIC (aioquic): completes the handshake, nothing more
    UDP/TCP 53     the sinkhole DNS responder (tests.lab.dnsd), on 0.0.0.0

Nothing listens on other ports (e.g. 9), so those connections are refused.
When everything is bound it prints one line ``READY {json}`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time

from . import dnsd

DEFAULT_SAN = [
    "*.test",
    "test",
    "localhost",
    "*.anthropic.com",
    "*.amazonaws.com",
    "*.ap-northeast-1.amazonaws.com",
    "*.githubusercontent.com",
    "example.com",
]

HTTP1_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    b"Connection: close\r\n\r\nok\n"
)
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def log(msg: str) -> None:
    print(f"sink: {msg}", file=sys.stderr, flush=True)


# -- certificate -----------------------------------------------------------------


def make_cert(directory: str, names: list[str]) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress-tui lab sink")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "sink-cert.pem")
    key_path = os.path.join(directory, "sink-key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


# -- TCP sinks ------------------------------------------------------------------


def dual_stack_listener(port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    if kind == socket.SOCK_STREAM:
        s.listen(128)
    return s


DELAY_MAX_MS = 5000


def answer_http1(conn: socket.socket, req: bytes) -> None:
    """The 200 for an HTTP/1.1 request, after the delay its path asks for: ``/delay/MS``, or
    anything under it (``/delay/300/repo.git/info/refs``: a client that picks its own path)."""
    line = req.split(b"\r\n", 1)[0].split()
    m = re.match(rb"/delay/(\d{1,6})(?:[/?]|$)", line[1]) if len(line) >= 2 else None
    if m:
        time.sleep(min(int(m.group(1)), DELAY_MAX_MS) / 1000)
    conn.sendall(HTTP1_RESPONSE)


def read_http_request(conn: socket.socket, first: bytes = b"") -> bytes:
    buf = first
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def h2_frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + struct.pack("!I", stream) + payload


def serve_h2(conn: socket.socket) -> None:
    """Just enough HTTP/2 to give every request a 200 (HPACK 0x88 = :status 200)."""
    conn.sendall(h2_frame(4, 0, 0))  # our SETTINGS (all defaults)
    buf = b""
    preface = False
    pending: set[int] = set()
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buf += chunk
        if not preface:
            if len(buf) < len(H2_PREFACE):
                continue
            if not buf.startswith(H2_PREFACE):
                return
            buf = buf[len(H2_PREFACE) :]
            preface = True
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, flags = buf[3], buf[4]
            stream = struct.unpack("!I", buf[5:9])[0] & 0x7FFFFFFF
            payload = buf[9 : 9 + length]
            buf = buf[9 + length :]
            out = b""
            if ftype == 4 and not flags & 1:  # SETTINGS -> ACK
                out += h2_frame(4, 1, 0)
            elif ftype == 6 and not flags & 1:  # PING -> PONG
                out += h2_frame(6, 1, 0, payload)
            elif ftype == 7:  # GOAWAY
                return
            elif ftype in (1, 9):  # HEADERS / CONTINUATION
                pending.add(stream)
                if flags & 0x4:  # END_HEADERS
                    for sid in sorted(pending):
                        out += h2_frame(1, 0x4, sid, b"\x88")
                        out += h2_frame(0, 0x1, sid, b"ok\n")
                    pending.clear()
            if out:
                conn.sendall(out)


def handle_tls(conn: socket.socket, ctx: ssl.SSLContext) -> None:
    try:
        conn.settimeout(10)
        with ctx.wrap_socket(conn, server_side=True) as tls:
            if tls.selected_alpn_protocol() == "h2":
                serve_h2(tls)
            else:
                req = read_http_request(tls)
                if req:
                    answer_http1(tls, req)
                try:
                    tls.unwrap()
                except (OSError, ssl.SSLError):
                    pass
    except (OSError, ssl.SSLError, ValueError) as exc:
        log(f"tls: {type(exc).__name__}: {exc}")
    finally:
        conn.close()


def handle_http(conn: socket.socket) -> None:
    try:
        conn.settimeout(10)
        req = read_http_request(conn)
        if req:
            answer_http1(conn, req)
    except OSError as exc:
        log(f"http: {exc}")
    finally:
        conn.close()


def accept_loop(listener: socket.socket, handler, *args) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=handler, args=(conn, *args), daemon=True).start()


# -- QUIC sink -------------------------------------------------------------------

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


class PktinfoTransport:
    """A datagram "transport" for aioquic's QuicServer that answers from the
    address the client wrote to.

    The server namespace accepts on whole ranges through local routes; a
    wildcard UDP socket would otherwise reply from the veth's primary address
    and the client (and any capture) would see answers from the wrong host.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol, port: int) -> None:
        self._loop = loop
        self._protocol = protocol
        self._local: dict[tuple, str] = {}
        self._closing = False
        self.sock4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock4.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        # FREEBIND: the source we answer from is covered by a local *route*,
        # not configured on an interface; without it v6 sendmsg says EINVAL.
        self.sock4.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        self.sock4.bind(("0.0.0.0", port))
        self.sock6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.sock6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        self.sock6.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        self.sock6.bind(("::", port))
        for s in (self.sock4, self.sock6):
            s.setblocking(False)
            loop.add_reader(s.fileno(), self._readable, s)
        protocol.connection_made(self)

    def _readable(self, sock: socket.socket) -> None:
        while True:
            try:
                data, anc, _flags, addr = sock.recvmsg(65535, socket.CMSG_SPACE(64))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log(f"quic recv: {exc}")
                return
            for level, ctype, cdata in anc:
                if level == socket.IPPROTO_IP and ctype == IP_PKTINFO and len(cdata) >= 12:
                    self._local[addr[:2]] = socket.inet_ntop(socket.AF_INET, cdata[8:12])
                elif level == socket.IPPROTO_IPV6 and ctype == socket.IPV6_PKTINFO and len(cdata) >= 16:
                    self._local[addr[:2]] = socket.inet_ntop(socket.AF_INET6, cdata[:16])
            try:
                self._protocol.datagram_received(data, addr)
            except Exception as exc:  # never let one bad datagram kill the sink
                log(f"quic: {type(exc).__name__}: {exc}")

    def sendto(self, data: bytes, addr) -> None:
        if self._closing:
            return
        local = self._local.get(tuple(addr[:2]))
        try:
            if ":" in addr[0]:
                anc = []
                if local:
                    anc = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                            socket.inet_pton(socket.AF_INET6, local) + struct.pack("@I", 0))]
                self.sock6.sendmsg([data], anc, 0, addr)
            else:
                anc = []
                if local:
                    anc = [(socket.IPPROTO_IP, IP_PKTINFO,
                            struct.pack("@i", 0) + socket.inet_aton(local) + socket.inet_aton("0.0.0.0"))]
                self.sock4.sendmsg([data], anc, 0, addr)
        except OSError as exc:
            log(f"quic send to {addr[0]}: {exc}")

    def get_extra_info(self, name: str, default=None):
        if name == "sockname":
            return self.sock6.getsockname()
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for s in (self.sock4, self.sock6):
            try:
                self._loop.remove_reader(s.fileno())
            except Exception:
                pass
            s.close()

    def abort(self) -> None:
        self.close()


def start_quic(cert: str, key: str, port: int, started: threading.Event, errors: list) -> None:
    async def run() -> None:
        from aioquic.asyncio.server import QuicServer
        from aioquic.quic.configuration import QuicConfiguration

        cfg = QuicConfiguration(
            is_client=False,
            alpn_protocols=["h3", "hq-interop", "doq", "h3-29"],
        )
        cfg.load_cert_chain(cert, key)
        loop = asyncio.get_running_loop()
        server = QuicServer(configuration=cfg)
        PktinfoTransport(loop, server, port)
        started.set()
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except Exception as exc:
        errors.append(exc)
        started.set()


# -- main --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="egress-tui lab sinks")
    ap.add_argument("--dns-config", help="tests.lab.dnsd.DnsConfig as JSON")
    ap.add_argument("--dns-host", default="0.0.0.0")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--tls-ports", default="443,8443")
    ap.add_argument("--http-ports", default="80")
    ap.add_argument("--quic-port", type=int, default=443)
    ap.add_argument("--san", action="append", default=[])
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    workdir = args.workdir or tempfile.mkdtemp(prefix="egress-lab-sink-")
    cert, key = make_cert(workdir, DEFAULT_SAN + args.san)

    config = dnsd.DnsConfig.from_json(args.dns_config) if args.dns_config else dnsd.DnsConfig()
    dnsd.start(config, args.dns_host, 53, args.verbose)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])

    tls_ports = [int(p) for p in args.tls_ports.split(",") if p]
    http_ports = [int(p) for p in args.http_ports.split(",") if p]
    for port in tls_ports:
        threading.Thread(target=accept_loop, args=(dual_stack_listener(port), handle_tls, ctx), daemon=True).start()
    for port in http_ports:
        threading.Thread(target=accept_loop, args=(dual_stack_listener(port), handle_http), daemon=True).start()

    started = threading.Event()
    errors: list = []
    threading.Thread(target=start_quic, args=(cert, key, args.quic_port, started, errors), daemon=True).start()
    started.wait(30)
    if errors or not started.is_set():
        log(f"QUIC sink failed: {errors or 'timeout'}")
        return 1

    ready = {
        "pid": os.getpid(),
        "tls": tls_ports,
        "http": http_ports,
        "quic": args.quic_port,
        "dns": args.dns_host,
        "cert": cert,
    }
    print("READY " + json.dumps(ready), flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
