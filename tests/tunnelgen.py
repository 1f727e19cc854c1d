"""Offline captures of proxy tunnels, byte for byte as the protocols define them: HTTP CONNECT
(RFC 9110 §9.3.6) with a proxy's 407 and 403, SOCKS5 (RFC 1928, RFC 1929 credentials) by name,
IPv4 and IPv6 address, SOCKS4 and 4a, and absolute-form requests to an HTTP proxy. The TLS inside
is a real ClientHello from Python's ssl module, cut into as many segments as a test asks.

The live tests (tests/test_docker_proxy.py) record the same exchanges from real Squid, dante and
curl; these let fast tests place them in exact segment layouts.
"""

from __future__ import annotations

import socket
import struct

from tests.pcapgen import Conversation, ip, python_client_hello, tcp, write_pcap

CLIENT = "10.0.0.1"
PROXY = "10.0.0.2"
RESOLVER = "10.0.0.53"


class Tcp:
    """One TCP connection with both sides' sequence numbers kept."""

    def __init__(self, conv: Conversation, client: str, cport: int, server: str, sport: int):
        self.conv, self.client, self.cport, self.server, self.sport = conv, client, cport, server, sport
        self.cseq, self.sseq = conv.tcp_open(client, cport, server, sport, isn=1000 + cport, sisn=7000 + cport)

    def send(self, data: bytes, cuts: list[int] = ()) -> None:
        """The client sends data, cut at these offsets into segments."""
        self.conv.segments(self.client, self.cport, self.server, self.sport, self.cseq, self.sseq,
                           data, list(cuts))
        self.cseq += len(data)

    def recv(self, data: bytes) -> None:
        """The server answers."""
        self.conv.emit(ip(self.server, self.client, 6, tcp(self.sport, self.cport, "PA", self.sseq, self.cseq, data)))
        self.sseq += len(data)

    def close(self) -> None:
        self.conv.emit(ip(self.client, self.server, 6, tcp(self.cport, self.sport, "FA", self.cseq, self.sseq)))
        self.conv.emit(ip(self.server, self.client, 6, tcp(self.sport, self.cport, "FA", self.sseq, self.cseq + 1)))


def hello(sni: str, cuts: int = 1) -> tuple[bytes, list[int]]:
    """A ClientHello for sni, and offsets that cut it into ``cuts`` segments."""
    data = python_client_hello(sni, ["h2", "http/1.1"])
    step = max(1, len(data) // cuts)
    return data, [step * i for i in range(1, cuts)]


def connect_head(target: str, auth: str = "") -> bytes:
    extra = f"Proxy-Authorization: Basic {auth}\r\n" if auth else ""
    return (f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: curl/7.88.1\r\n{extra}"
            "Proxy-Connection: Keep-Alive\r\n\r\n").encode()


ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def proxy_error(code: int, reason: str) -> bytes:
    body = f"<html><body>{code} {reason}: a page from the proxy</body></html>\n".encode() * 20
    extra = 'Proxy-Authenticate: Basic realm="lab"\r\n' if code == 407 else ""
    return (f"HTTP/1.1 {code} {reason}\r\nServer: squid\r\nContent-Type: text/html\r\n{extra}"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n").encode() + body


def http_connect(conv: Conversation, cport: int, target: str, sni: str | None, cuts: int = 1,
                 replies: tuple[bytes, ...] = (ESTABLISHED,), proxy: str = PROXY, port: int = 3128) -> Tcp:
    """CONNECT target; the proxy answers each reply in turn (the client asks again after a
    non-2xx); after a 200 the client sends a ClientHello for sni."""
    t = Tcp(conv, CLIENT if ":" not in proxy else "fd00::1", cport, proxy, port)
    for i, reply in enumerate(replies):
        t.send(connect_head(target, auth="bGFiOmxhYnBhc3M=" if i else ""))
        t.recv(reply)
    if replies[-1].startswith(b"HTTP/1.1 2") and sni is not None:
        data, offs = hello(sni, cuts)
        t.send(data, offs)
        t.recv(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")  # the start of a ServerHello
    t.close()
    return t


def socks5(conv: Conversation, cport: int, target: str, port: int, sni: str | None, cuts: int = 1,
           form: str = "domain", credentials: tuple[str, str] | None = None, rep: int = 0,
           proxy: str = PROXY) -> Tcp:
    """A SOCKS5 CONNECT: greeting, optional username/password, request by domain, IPv4 or IPv6."""
    t = Tcp(conv, CLIENT, cport, proxy, 1080)
    if credentials:
        t.send(b"\x05\x02\x00\x02")
        t.recv(b"\x05\x02")
        user, pw = (x.encode() for x in credentials)
        t.send(b"\x01" + bytes([len(user)]) + user + bytes([len(pw)]) + pw)
        t.recv(b"\x01\x00")
    else:
        t.send(b"\x05\x01\x00")
        t.recv(b"\x05\x00")
    if form == "domain":
        addr = b"\x03" + bytes([len(target.encode())]) + target.encode()
    elif form == "ipv4":
        addr = b"\x01" + socket.inet_pton(socket.AF_INET, target)
    else:
        addr = b"\x04" + socket.inet_pton(socket.AF_INET6, target)
    t.send(b"\x05\x01\x00" + addr + struct.pack("!H", port))
    t.recv(bytes([5, rep, 0, 1]) + socket.inet_aton(PROXY) + struct.pack("!H", 40000))
    if rep == 0 and sni is not None:
        data, offs = hello(sni, cuts)
        t.send(data, offs)
    t.close()
    return t


def socks4(conv: Conversation, cport: int, target: str, port: int, sni: str | None,
           granted: bool = True, proxy: str = PROXY) -> Tcp:
    """SOCKS4 by address, or SOCKS4a by name (address 0.0.0.1, the name after the user id)."""
    t = Tcp(conv, CLIENT, cport, proxy, 1080)
    try:
        addr, name = socket.inet_aton(target), b""
    except OSError:
        addr, name = b"\x00\x00\x00\x01", target.encode() + b"\x00"
    t.send(b"\x04\x01" + struct.pack("!H", port) + addr + b"labuser\x00" + name)
    t.recv(b"\x00" + (b"\x5a" if granted else b"\x5b") + b"\x00" * 6)
    if granted and sni is not None:
        data, offs = hello(sni)
        t.send(data, offs)
    t.close()
    return t


def absolute_get(conv: Conversation, cport: int, uri: str, host: str) -> Tcp:
    """A plain HTTP request to an HTTP proxy: the destination is in the request URI."""
    t = Tcp(conv, CLIENT, cport, PROXY, 3128)
    t.send(f"GET {uri} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n\r\n".encode())
    t.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    t.close()
    return t


def write(conv: Conversation, path) -> str:
    write_pcap(str(path), conv.frames)
    return str(path)
