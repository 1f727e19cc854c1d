#!/usr/bin/env python3
"""Write the egress-tui benchmark capture: ~200,000 packets, deterministic from a seed.

Usage:  python bench/gen_pcap.py OUT.pcap [--seed N]
Import: generate(path, seed=1) -> truth dict

Writes a classic pcap (little-endian, microsecond timestamps, linktype Ethernet)
and OUT.truth.json beside it with the planted facts.  Packets are built with
struct (IPv4/IPv6, TCP/UDP, correct lengths and checksums).  Content:

* ~2,000 TLS connections (SYN / SYN-ACK / ACK, ClientHello, ServerHello flight,
  application data, FIN) to ~1,750 distinct SNI names over IPv4 and IPv6, ports
  443 / 8443 / 4433.  About half the ClientHellos are post-quantum sized
  (X25519MLKEM768 key share, ~1.9 KB) and travel in two TCP segments; the split
  falls before, inside or after the server_name extension.  A few percent of
  split hellos arrive out of order, with a duplicate retransmission, with an
  overlapping retransmission, or straddle the 2^32 sequence wrap.
* DNS (A + AAAA, some CNAME chains, some NXDOMAIN) before every connection.
* QUIC v1 connections made by aioquic client and server in memory (real,
  decryptable Initials carrying the SNI); skipped if aioquic is missing.
* Plain HTTP/1.1 requests with a Host header (port 80, and 8080 bulk downloads).
* Long-lived bulk TCP flows (ssh, postgres, http downloads; 1448-byte payloads;
  some picked up mid-stream, some wrapping the sequence space) making up the
  rest, so the file holds exactly PKT_TARGET packets.

Everything except the bytes aioquic produces (its keys and connection IDs come
from the OS random source) is a pure function of the seed.
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import json
import random
import struct
import sys
import time
from pathlib import Path

PKT_TARGET = 200_000
DURATION_US = 60_000_000
BASE_TS = 1_735_689_600  # 2025-01-01T00:00:00Z
N_TLS_CONNS = 2_000
N_QUIC_CONNS = 300
N_HTTP_CONNS = 40
N_NXDOMAIN = 24
MASK32 = 0xFFFFFFFF

_pack = struct.pack

# TCP flags
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

CLIENT_MAC = bytes.fromhex("0242ac110002")
GATEWAY_MAC = bytes.fromhex("0242d1a5c001")
ETH_C2S = {4: GATEWAY_MAC + CLIENT_MAC + b"\x08\x00", 6: GATEWAY_MAC + CLIENT_MAC + b"\x86\xdd"}
ETH_S2C = {4: CLIENT_MAC + GATEWAY_MAC + b"\x08\x00", 6: CLIENT_MAC + GATEWAY_MAC + b"\x86\xdd"}

CLIENT4 = ipaddress.IPv4Address("172.17.0.2").packed
CLIENT6 = ipaddress.IPv6Address("fd00:17::2").packed
RESOLVER4 = ipaddress.IPv4Address("10.0.0.53").packed
RESOLVER6 = ipaddress.IPv6Address("fd00::53").packed

GREASE = [0x0A0A + 0x1010 * i for i in range(16)]

REAL_TLS_NAMES = """
api.github.com github.com objects.githubusercontent.com raw.githubusercontent.com
codeload.github.com pkg-containers.githubusercontent.com ghcr.io
registry-1.docker.io auth.docker.io production.cloudflare.docker.com index.docker.io
pypi.org files.pythonhosted.org upload.pypi.org registry.npmjs.org registry.yarnpkg.com
proxy.golang.org sum.golang.org storage.googleapis.com oauth2.googleapis.com
www.googleapis.com dl.google.com crates.io static.crates.io index.crates.io
quay.io cdn01.quay.io gcr.io k8s.gcr.io registry.k8s.io us-docker.pkg.dev
s3.amazonaws.com sts.amazonaws.com ecr.us-east-1.amazonaws.com dynamodb.us-east-1.amazonaws.com
sqs.eu-west-1.amazonaws.com login.microsoftonline.com management.azure.com
api.nuget.org rubygems.org index.rubygems.org repo.maven.apache.org repo1.maven.org
plugins.gradle.org services.gradle.org cdn.jsdelivr.net unpkg.com
o450123.ingest.sentry.io api.segment.io api.datadoghq.com http-intake.logs.datadoghq.com
hooks.slack.com api.stripe.com api.twilio.com smtp.sendgrid.net api.mailgun.net
auth0.com tenant-7.eu.auth0.com vault.internal.bench.test grafana.bench.test
update.traefik.io checkpoint-api.hashicorp.com releases.hashicorp.com
telemetry.bench.test metrics.bench.test api.openai.com
""".split()

REAL_QUIC_NAMES = """
www.youtube.com i.ytimg.com fonts.gstatic.com www.gstatic.com play.googleapis.com
www.google.com static.xx.fbcdn.net cloudflare-quic.com quic.nginx.org http3.is
""".split()

HTTP_NAMES = """
deb.debian.org security.debian.org archive.ubuntu.com security.ubuntu.com
dl-cdn.alpinelinux.org ocsp.digicert.com crl.bench.test mirror.bench.test
""".split()


# --------------------------------------------------------------------------- checksums / frames

def _sum16(b: bytes) -> int:
    """Value congruent (mod 0xFFFF) to the one's-complement sum of b's 16-bit words."""
    v = int.from_bytes(b, "big")
    return v << 8 if len(b) & 1 else v


def _fold(total: int) -> int:
    v = total % 0xFFFF
    return 0xFFFF - v if v else 0


class Net:
    """Builds Ethernet frames; keeps per-source IPv4 identification counters."""

    def __init__(self) -> None:
        self.ipid: dict[bytes, int] = {}

    def ip(self, c2s: bool, src: bytes, dst: bytes, proto: int, l4: bytes, ttl: int) -> bytes:
        if len(src) == 4:
            ident = self.ipid.get(src, 0x1234)
            self.ipid[src] = (ident + 1) & 0xFFFF
            hdr = _pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident, 0x4000, ttl, proto, 0, src, dst)
            hdr = hdr[:10] + _pack("!H", _fold(_sum16(hdr))) + hdr[12:]
            return (ETH_C2S if c2s else ETH_S2C)[4] + hdr + l4
        hdr = _pack("!IHBB", 0x60000000, len(l4), proto, ttl) + src + dst
        return (ETH_C2S if c2s else ETH_S2C)[6] + hdr + l4

    def udp(self, c2s, src, dst, sport, dport, payload, ttl=64) -> bytes:
        ln = 8 + len(payload)
        total = _sum16(src) + _sum16(dst) + 17 + ln + sport + dport + ln + _sum16(payload)
        cs = _fold(total) or 0xFFFF
        return self.ip(c2s, src, dst, 17, _pack("!HHHH", sport, dport, ln, cs) + payload, ttl)

    def tcp(self, c2s, src, dst, sport, dport, seq, ack, flags, win, opts, payload, ttl=64,
            psum: int | None = None) -> bytes:
        hl = 20 + len(opts)
        hdr = _pack("!HHIIBBHHH", sport, dport, seq, ack, hl << 2, flags, win, 0, 0) + opts
        total = (_sum16(src) + _sum16(dst) + 6 + hl + len(payload) + _sum16(hdr)
                 + (_sum16(payload) if psum is None else psum))
        l4 = hdr[:16] + _pack("!H", _fold(total)) + hdr[18:] + payload
        return self.ip(c2s, src, dst, 6, l4, ttl)


def syn_opts(mss: int, tsval: int, tsecr: int) -> bytes:
    # Linux order: MSS, SACK permitted, timestamps, NOP, window scale 7
    return _pack("!BBHBBBBIIBBBB", 2, 4, mss, 4, 2, 8, 10, tsval, tsecr, 1, 3, 3, 7)


def ts_opts(tsval: int, tsecr: int) -> bytes:
    return _pack("!BBBBII", 1, 1, 8, 10, tsval, tsecr)


class Events:
    """Packets of the short flows, collected then sorted by time."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, bytes]] = []

    def add(self, t: int, frame: bytes) -> None:
        self.items.append((t, len(self.items), frame))


class TcpConn:
    """One TCP connection seen from the client's side of the wire."""

    def __init__(self, net: Net, emit, rng: random.Random, v6: bool, sip: bytes, sport: int,
                 cport: int, c_isn: int | None = None, s_isn: int | None = None, s_ttl: int = 54,
                 cip: bytes | None = None):
        self.net, self.emit = net, emit
        self.v6 = v6
        self.cip = cip or (CLIENT6 if v6 else CLIENT4)
        self.sip, self.sport, self.cport = sip, sport, cport
        self.c_next = rng.getrandbits(32) if c_isn is None else c_isn
        self.s_next = rng.getrandbits(32) if s_isn is None else s_isn
        self.mss = 1440 if v6 else 1460
        self.seg = self.mss - 12  # payload per segment with the timestamp option
        self.c_tsb = rng.getrandbits(32)
        self.s_tsb = rng.getrandbits(32)
        self.c_ts = self.s_ts = 0
        self.s_ttl = s_ttl

    def c(self, t: int, flags: int, payload: bytes = b"", seq: int | None = None, advance=True,
          psum=None) -> None:
        self.c_ts = (self.c_tsb + t // 1000) & MASK32
        s = self.c_next if seq is None else seq
        ack = self.s_next if flags & ACK else 0
        if flags & SYN:
            opts, win = syn_opts(self.mss, self.c_ts, 0), 64800 if self.v6 else 64240
        elif flags & RST:
            opts, win = b"", 0
        else:
            opts, win = ts_opts(self.c_ts, self.s_ts), 502
        self.emit(t, self.net.tcp(True, self.cip, self.sip, self.cport, self.sport, s, ack, flags,
                                  win, opts, payload, 64, psum))
        if advance:
            self.c_next = (s + len(payload) + (1 if flags & (SYN | FIN) else 0)) & MASK32

    def s(self, t: int, flags: int, payload: bytes = b"", psum=None) -> None:
        self.s_ts = (self.s_tsb + t // 1000) & MASK32
        ack = self.c_next if flags & ACK else 0
        if flags & SYN:
            opts, win = syn_opts(self.mss, self.s_ts, self.c_ts), 65160 if not self.v6 else 64260
        else:
            opts, win = ts_opts(self.s_ts, self.c_ts), 501
        self.emit(t, self.net.tcp(False, self.sip, self.cip, self.sport, self.cport, self.s_next,
                                  ack, flags, win, opts, payload, self.s_ttl, psum))
        self.s_next = (self.s_next + len(payload) + (1 if flags & (SYN | FIN) else 0)) & MASK32

    def handshake(self, t: int, rtt: int) -> int:
        self.c(t, SYN)
        t += rtt
        self.s(t, SYN | ACK)
        t += 40
        self.c(t, ACK)
        return t

    def server_burst(self, t: int, data: bytes, gap: int = 12) -> int:
        """Server sends data in MSS chunks; the client ACKs every second segment."""
        n = 0
        for i in range(0, len(data), self.seg):
            chunk = data[i:i + self.seg]
            last = i + self.seg >= len(data)
            self.s(t, ACK | (PSH if last else 0), chunk)
            n += 1
            t += gap
            if n % 2 == 0 or last:
                self.c(t + 25, ACK)
                t += 30
        return t

    def client_send(self, t: int, data: bytes, gap: int = 12) -> int:
        for i in range(0, len(data), self.seg):
            chunk = data[i:i + self.seg]
            self.c(t, ACK | (PSH if i + self.seg >= len(data) else 0), chunk)
            t += gap
        return t

    def close(self, t: int, rtt: int) -> int:
        self.c(t, FIN | ACK)
        t += rtt
        self.s(t, FIN | ACK)
        t += 30
        self.c(t, ACK)
        return t


# --------------------------------------------------------------------------- TLS

def _ext(etype: int, body: bytes) -> bytes:
    return _pack("!HH", etype, len(body)) + body


def _u16list(values) -> bytes:
    body = b"".join(_pack("!H", v) for v in values)
    return _pack("!H", len(body)) + body


def client_hello(rng: random.Random, name: str, style: str, order: str, pad_len: int = 0):
    """A TLS 1.3 ClientHello record.

    style: "pq" (Chrome-like, X25519MLKEM768 + x25519 key shares, ECH GREASE, ~1.9 KB),
           "chrome" (same without the PQ share), "openssl" (curl/OpenSSL-like, no GREASE),
           "padded" (Chrome-like with a padding extension of pad_len bytes before server_name).
    order: "sni_first", "shuffled", "ks_first" (key_share right before server_name),
           "late_sni" (key_share, ECH and the rest before server_name).
    Returns (record, offset of the server_name extension, offset of the name).
    """
    nb = name.encode("ascii")
    sni = _ext(0x0000, _pack("!HBH", len(nb) + 3, 0, len(nb)) + nb)
    grease = rng.sample(GREASE, 4)  # cipher, first ext, group, version (last ext uses another)
    random32 = rng.randbytes(32)
    session_id = rng.randbytes(32)
    alpn_list = b"\x02h2\x08http/1.1"
    alpn = _ext(0x0010, _pack("!H", len(alpn_list)) + alpn_list)
    sigalgs = _ext(0x000D, _u16list([0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]))
    versions_ext = lambda vs: _ext(0x002B, bytes([2 * len(vs)]) + b"".join(_pack("!H", v) for v in vs))
    psk = _ext(0x002D, b"\x01\x01")
    ecpf = _ext(0x000B, b"\x01\x00")

    if style == "openssl":
        ciphers = [0x1302, 0x1303, 0x1301, 0xC02C, 0xC030, 0x009F, 0xCCA9, 0xCCA8, 0xCCAA,
                   0xC02B, 0xC02F, 0x009E, 0xC024, 0xC028, 0x006B, 0xC023, 0xC027, 0x0067,
                   0xC00A, 0xC014, 0x0039, 0xC009, 0xC013, 0x0033, 0x009D, 0x009C, 0x003D,
                   0x003C, 0x0035, 0x002F, 0x00FF]
        ks = _pack("!HH", 0x001D, 32) + rng.randbytes(32)
        middle = {
            "sni": sni,
            "ecpf": _ext(0x000B, b"\x03\x00\x01\x02"),
            "groups": _ext(0x000A, _u16list([0x001D, 0x0017, 0x001E, 0x0019, 0x0018])),
            "ticket": _ext(0x0023, b""),
            "alpn": alpn,
            "etm": _ext(0x0016, b""),
            "ems": _ext(0x0017, b""),
            "sigalgs": sigalgs,
            "versions": versions_ext([0x0304, 0x0303]),
            "psk": psk,
            "ks": _ext(0x0033, _pack("!H", len(ks)) + ks),
        }
        head, tail = [], []
    else:
        pq = style == "pq"
        ciphers = [grease[0], 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9,
                   0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
        groups = [grease[2]] + ([0x11EC] if pq else []) + [0x001D, 0x0017, 0x0018]
        ks = _pack("!HH", grease[2], 1) + b"\x00"
        if pq:
            ks += _pack("!HH", 0x11EC, 1216) + rng.randbytes(1216)
        ks += _pack("!HH", 0x001D, 32) + rng.randbytes(32)
        ech_payload = rng.randbytes(rng.choice([144, 176, 208, 240]))
        ech = _ext(0xFE0D, _pack("!BHHB", 0, 1, 1, rng.getrandbits(8)) + _pack("!H", 32)
                   + rng.randbytes(32) + _pack("!H", len(ech_payload)) + ech_payload)
        middle = {
            "sni": sni,
            "ems": _ext(0x0017, b""),
            "reneg": _ext(0xFF01, b"\x00"),
            "groups": _ext(0x000A, _u16list(groups)),
            "ecpf": ecpf,
            "ticket": _ext(0x0023, b""),
            "alpn": alpn,
            "status": _ext(0x0005, b"\x01\x00\x00\x00\x00"),
            "sigalgs": sigalgs,
            "sct": _ext(0x0012, b""),
            "ks": _ext(0x0033, _pack("!H", len(ks)) + ks),
            "psk": psk,
            "versions": versions_ext([grease[3], 0x0304, 0x0303]),
            "compress": _ext(0x001B, b"\x02\x00\x02"),
            "alps": _ext(0x4469, b"\x00\x03\x02h2"),
            "ech": ech,
        }
        if style == "padded":
            middle["padding"] = _ext(0x0015, bytes(pad_len))
        last_grease = rng.choice([g for g in GREASE if g != grease[1]])
        head, tail = [_ext(grease[1], b"")], [_ext(last_grease, b"\x00")]

    keys = list(middle)
    if order == "shuffled":
        rng.shuffle(keys)
    elif order == "ks_first":
        keys.remove("ks")
        keys.remove("sni")
        keys = ["ks", "sni"] + keys
    elif order == "late_sni":
        first = [k for k in ("padding", "ks", "ech", "groups", "sigalgs", "alpn") if k in keys]
        rest = [k for k in keys if k not in first and k != "sni"]
        keys = first + rest[:2] + ["sni"] + rest[2:]
    if style == "padded" and order != "late_sni":
        keys.remove("padding")
        keys.insert(0, "padding")
    exts = head + [middle[k] for k in keys] + tail
    if style == "openssl" and pad_len:
        exts.append(_ext(0x0015, bytes(pad_len)))

    body_prefix = (b"\x03\x03" + random32 + bytes([32]) + session_id
                   + _u16list(ciphers) + b"\x01\x00")
    ext_bytes = b"".join(exts)
    pos = 0
    for e in exts:
        if e is sni:
            break
        pos += len(e)
    body = body_prefix + _pack("!H", len(ext_bytes)) + ext_bytes
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    record = b"\x16\x03\x01" + _pack("!H", len(hs)) + hs
    sni_off = 5 + 4 + len(body_prefix) + 2 + pos
    return record, sni_off, sni_off + 9


def server_flight(rng: random.Random, pq: bool, session_id: bytes = b"") -> bytes:
    """ServerHello + ChangeCipherSpec + encrypted handshake records (random bytes)."""
    sid = session_id or rng.randbytes(32)
    if pq:
        share = _pack("!HH", 0x11EC, 1120) + rng.randbytes(1120)
    else:
        share = _pack("!HH", 0x001D, 32) + rng.randbytes(32)
    exts = _ext(0x002B, b"\x03\x04") + _ext(0x0033, share)
    body = b"\x03\x03" + rng.randbytes(32) + bytes([len(sid)]) + sid + b"\x13\x01\x00" + _pack("!H", len(exts)) + exts
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    out = b"\x16\x03\x03" + _pack("!H", len(hs)) + hs + b"\x14\x03\x03\x00\x01\x01"
    return out + app_records(rng, rng.randint(1800, 4200))


def app_records(rng: random.Random, n: int) -> bytes:
    out = []
    while n > 0:
        k = min(n, rng.randint(60, 16401))
        out.append(b"\x17\x03\x03" + _pack("!H", k) + rng.randbytes(k))
        n -= k + 5
    return b"".join(out)


# --------------------------------------------------------------------------- DNS

def _qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.split(".")) + b"\x00"


def dns_query(qid: int, name: str, qtype: int) -> bytes:
    return _pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _qname(name) + _pack("!HH", qtype, 1)


def dns_response(qid: int, name: str, qtype: int, cnames: list[str], addrs: list[bytes],
                 rcode: int = 0, ttl: int = 300) -> bytes:
    q = _qname(name) + _pack("!HH", qtype, 1)
    body = bytearray(q)
    owner = _pack("!H", 0xC00C)
    n_ans = 0
    for cn in cnames:
        rdata = _qname(cn)
        rr = owner + _pack("!HHIH", 5, 1, ttl, len(rdata))
        owner = _pack("!H", 0xC000 | (12 + len(body) + len(rr)))
        body += rr + rdata
        n_ans += 1
    for a in addrs:
        body += owner + _pack("!HHIH", qtype, 1, ttl // 5, len(a)) + a
        n_ans += 1
    return _pack("!HHHHHH", qid, 0x8180 | rcode, 1, n_ans, 0, 0) + bytes(body)


def dns_lookup(ev: Events, net: Net, rng: random.Random, t: int, name: str, cnames, v4: list,
               v6: list, over_v6: bool = False, rcode: int = 0) -> int:
    """glibc-style A + AAAA on one socket; returns the time the last answer arrived."""
    csrc, rsrv = (CLIENT6, RESOLVER6) if over_v6 else (CLIENT4, RESOLVER4)
    sport = rng.randint(32768, 60999)
    rtt = rng.randint(300, 20000)
    qa, qaaaa = rng.getrandbits(16), rng.getrandbits(16)
    ev.add(t, net.udp(True, csrc, rsrv, sport, 53, dns_query(qa, name, 1)))
    ev.add(t + 35, net.udp(True, csrc, rsrv, sport, 53, dns_query(qaaaa, name, 28)))
    t1 = t + rtt
    ev.add(t1, net.udp(False, rsrv, csrc, 53, sport, dns_response(qa, name, 1, cnames, v4, rcode)))
    t2 = t1 + rng.randint(20, 900)
    ev.add(t2, net.udp(False, rsrv, csrc, 53, sport, dns_response(qaaaa, name, 28, cnames, v6, rcode)))
    return t2


# --------------------------------------------------------------------------- TLS connection

# Shares of ClientHello styles: below the first, post-quantum (split); below the second, padded
# (split); below the third, Chrome-like; the rest OpenSSL-like; and the share of those two whose
# first segment holds only a few bytes.
BULK_HELLOS = (0.52, 0.60, 0.80, 0.08)
HANDSHAKE_HELLOS = (0.26, 0.31, 0.65, 0.03)  # a third of the hellos split


def tls_plan(rng: random.Random, name: str, inf: dict, cport: int, step: int, shares: tuple,
             styles: dict) -> dict:
    """One TLS connection's plan: its ClientHello's style and split, anomalies, client port."""
    pq, padded, chrome, tiny = shares
    r = rng.random()
    if r < pq:
        style = "pq"
        order, split = rng.choice([("sni_first", "mss"), ("shuffled", "mss"),
                                   ("ks_first", "in_sni"), ("late_sni", "mss")])
    elif r < padded:
        style, order, split = "padded", rng.choice(["sni_first", "late_sni"]), "mss"
    elif r < chrome:
        style, order = "chrome", rng.choice(["sni_first", "shuffled"])
        split = "hdr" if rng.random() < tiny else "mss"
    else:
        style, order = "openssl", "sni_first"
        split = "hdr" if rng.random() < tiny else "mss"
    styles[style] += 1
    a = rng.random()
    anomaly = ("out_of_order" if a < 0.04 else "retransmit" if a < 0.08
               else "overlap" if a < 0.10 else None)
    cport += rng.randint(1, step)
    return {"name": name, "v6": inf["v6"], "ip": inf["ip"], "port": inf["port"], "cport": cport,
            "rtt": rng.randint(4_000, 90_000), "ttl": inf["ttl"], "style": style, "order": order,
            "split": split, "anomaly": anomaly, "seq_wrap": rng.random() < 0.02,
            "end": "rst" if rng.random() < 0.05 else "fin"}


def tls_connection(ev: Events, net: Net, rng: random.Random, t: int, conn: dict, stats: dict) -> None:
    v6 = conn["v6"]
    rtt = conn["rtt"]
    c_isn = None
    if conn["seq_wrap"]:
        c_isn = (MASK32 - rng.randint(0, 1400)) & MASK32
    tcp = TcpConn(net, ev.add, rng, v6, conn["ip"], conn["port"], conn["cport"], c_isn=c_isn,
                  s_ttl=conn["ttl"])
    t = tcp.handshake(t, rtt)
    t += rng.randint(60, 400)

    style, order, split = conn["style"], conn["order"], conn["split"]
    pad = 0
    if style == "padded":
        pad = rng.randint(1250, 1400)
    elif style == "openssl" and rng.random() < 0.5:
        pad = rng.randint(20, 200)
    record, sni_off, name_off = client_hello(rng, conn["name"], style, order, pad)
    seg = tcp.seg
    name_end = name_off + len(conn["name"])

    if split == "in_sni":
        lo, hi = sni_off + 1, min(seg, name_end - 1)
        cuts = [rng.randint(lo, hi)] if lo <= hi else []
        if cuts and len(record) - cuts[0] > seg:
            cuts = []
        if not cuts:
            split = "mss"
    if split == "hdr":
        cuts = [rng.choice([1, 3, 5, 5, 5, 9])]
    if split == "mss":
        cuts = list(range(seg, len(record), seg))
    bounds = [0] + cuts + [len(record)]
    segs = [(bounds[i], record[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]

    base = tcp.c_next
    if len(segs) > 1:
        stats["split_hellos"] += 1
        stats["split_segments"][str(len(segs))] = stats["split_segments"].get(str(len(segs)), 0) + 1
        first = bounds[1]
        if name_end <= first:
            where = "sni_in_first_segment"
        elif name_off >= first:
            where = "sni_after_first_segment"
        else:
            where = "sni_straddles_segments"
        if sni_off < first < name_off:
            where_ext = "cut_inside_sni_extension_header"
            stats[where_ext] = stats.get(where_ext, 0) + 1
        stats[where] += 1
        if where == "sni_after_first_segment":
            stats["sni_after_first_segment_names"].add(conn["name"])
        if split == "hdr":
            stats["tiny_first_segment_names"].add(conn["name"])
        if style == "pq" and len(segs) == 2 and max(len(p) for _, p in segs) <= 1448:
            stats["pq_two_segment_hellos"] += 1
        if conn["seq_wrap"]:
            stats["seq_wrap"] += 1
    order_out = list(segs)
    anomaly = conn["anomaly"] if len(segs) > 1 else None
    if anomaly == "out_of_order":
        order_out[0], order_out[1] = order_out[1], order_out[0]
        stats["out_of_order"] += 1
        stats["out_of_order_names"].add(conn["name"])
    for i, (off, payload) in enumerate(order_out):
        last = off + len(payload) == len(record)
        tcp.c(t, ACK | (PSH if last else 0), payload, seq=(base + off) & MASK32, advance=False)
        t += rng.randint(8, 40)
    tcp.c_next = (base + len(record)) & MASK32
    if anomaly == "retransmit":
        off, payload = segs[rng.randrange(len(segs))]
        t += rng.randint(2000, rtt // 2 + 2000)
        tcp.c(t, ACK | PSH, payload, seq=(base + off) & MASK32, advance=False)
        stats["retransmitted"] += 1
    elif anomaly == "overlap":
        start = max(0, bounds[1] - rng.randint(50, 400))
        t += rng.randint(2000, rtt // 2 + 2000)
        tcp.c(t, ACK | PSH, record[start:], seq=(base + start) & MASK32, advance=False)
        stats["overlapping_retransmission"] += 1

    t += rtt
    t = tcp.server_burst(t, server_flight(rng, style == "pq"))
    t += rng.randint(150, 900)
    req = b"\x14\x03\x03\x00\x01\x01" + app_records(rng, 53) + app_records(rng, rng.randint(90, 700))
    t = tcp.client_send(t, req)
    t += rtt
    t = tcp.server_burst(t, app_records(rng, rng.randint(1000, 4000)))
    for _ in range(conn.get("rounds", 0)):
        # further API calls on the kept-alive connection: a small request, an answer of a few KB
        t += rng.randint(2000, 400_000)
        t = tcp.client_send(t, app_records(rng, rng.randint(80, 900)))
        t += rtt
        t = tcp.server_burst(t, app_records(rng, rng.randint(200, 9000)))
    t += rng.randint(1000, 60000)
    if conn["end"] == "rst":
        tcp.c(t, RST | ACK)
    else:
        tcp.close(t, rtt)


def http_connection(ev: Events, net: Net, rng: random.Random, t: int, name: str, ip: bytes, v6: bool,
                    cport: int | None = None) -> None:
    rtt = rng.randint(5000, 60000)
    tcp = TcpConn(net, ev.add, rng, v6, ip, 80, rng.randint(32768, 60999) if cport is None else cport)
    t = tcp.handshake(t, rtt)
    path = rng.choice(["/debian/dists/bookworm/InRelease", "/ubuntu/dists/jammy/Release",
                       "/alpine/v3.20/main/x86_64/APKINDEX.tar.gz", "/", "/status"])
    req = (f"GET {path} HTTP/1.1\r\nHost: {name}\r\nUser-Agent: Debian APT-HTTP/1.3 (2.6.1)\r\n"
           f"Accept: */*\r\nConnection: keep-alive\r\n\r\n").encode()
    t = tcp.client_send(t + 100, req)
    t += rtt
    body = rng.randbytes(rng.randint(300, 6000))
    resp = (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n"
            f"Server: nginx\r\n\r\n").encode() + body
    t = tcp.server_burst(t, resp)
    tcp.close(t + rng.randint(1000, 20000), rtt)


# --------------------------------------------------------------------------- QUIC

def quic_connections(ev: Events, net: Net, rng: random.Random, specs: list[dict]) -> list[str]:
    """Real QUIC v1 handshakes between aioquic client and server, in memory."""
    try:
        import datetime
        import ssl

        from aioquic.quic import events as qev
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.connection import QuicConnection
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return []

    key = ec.generate_private_key(ec.SECP256R1())
    subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quic.bench.test")])
    nb = datetime.datetime(2024, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(subj).issuer_name(subj)
            .public_key(key.public_key()).serial_number(1).not_valid_before(nb)
            .not_valid_after(nb + datetime.timedelta(days=3650)).sign(key, hashes.SHA256()))
    names = []
    for spec in specs:
        v6, t, rtt = spec["v6"], spec["t"], spec["rtt"]
        cip, sip = (CLIENT6 if v6 else CLIENT4), spec["ip"]
        caddr = (str(ipaddress.ip_address(cip)), spec["cport"])
        saddr = (str(ipaddress.ip_address(sip)), 443)
        cc = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=spec["name"],
                               verify_mode=ssl.CERT_NONE)
        sc = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
        sc.certificate, sc.private_key = cert, key
        client = QuicConnection(configuration=cc)
        client.connect(saddr, now=t / 1e6)
        server = None
        requested = responded = closing = False
        idle = 0
        for _round in range(40):
            out_c = client.datagrams_to_send(now=t / 1e6)
            for i, (d, _) in enumerate(out_c):
                ev.add(t + i * 15, net.udp(True, cip, sip, spec["cport"], 443, d))
            ts = t + rtt // 2
            for d, _ in out_c:
                if server is None:
                    server = QuicConnection(configuration=sc,
                                            original_destination_connection_id=client.original_destination_connection_id)
                server.receive_datagram(d, caddr, now=ts / 1e6)
            out_s = []
            if server is not None:
                while (e := server.next_event()) is not None:
                    if isinstance(e, qev.StreamDataReceived) and e.end_stream and not responded:
                        server.send_stream_data(e.stream_id, rng.randbytes(spec["resp"]), end_stream=True)
                        responded = True
                out_s = server.datagrams_to_send(now=ts / 1e6)
            t += rtt
            for i, (d, _) in enumerate(out_s):
                ev.add(t + i * 15, net.udp(False, sip, cip, 443, spec["cport"], d, ttl=spec["ttl"]))
                client.receive_datagram(d, saddr, now=(t + i * 15) / 1e6)
            t += 15 * len(out_s) + 200
            finished = False
            while (e := client.next_event()) is not None:
                if isinstance(e, qev.HandshakeCompleted) and not requested:
                    sid = client.get_next_available_stream_id()
                    client.send_stream_data(sid, rng.randbytes(rng.randint(60, 400)), end_stream=True)
                    requested = True
                elif isinstance(e, qev.StreamDataReceived) and e.end_stream:
                    finished = True
                elif isinstance(e, qev.ConnectionTerminated):
                    closing = True
            if finished and not closing:
                client.close(error_code=0)
                closing = True
            idle = idle + 1 if not out_c and not out_s else 0
            if idle >= 2:
                break
        names.append(spec["name"])
    return names


def plain_http(ev: Events, net: Net, rng: random.Random, t0: int, dns_names: set, http_names: set,
               cport: int | None = None, count: int = N_HTTP_CONNS) -> None:
    """N_HTTP_CONNS lookups and plain HTTP requests within DURATION_US from t0 (client ports
    from cport on, or random)."""
    for i in range(count):
        name = HTTP_NAMES[i % len(HTTP_NAMES)] if i < 2 * len(HTTP_NAMES) else f"http-{i:03d}.bench.test"
        v6 = i % 7 == 3
        ip = (ipaddress.IPv6Address(f"2001:db8:80::{i + 1:x}").packed if v6 else bytes([198, 18, 220, i + 1]))
        t = rng.randint(t0 + 200_000, t0 + DURATION_US - 2_000_000)
        t = dns_lookup(ev, net, rng, t, name, [], [] if v6 else [ip], [ip] if v6 else []) + 200
        http_connection(ev, net, rng, t, name, ip, v6, None if cport is None else cport + i)
        http_names.add(name)
        dns_names.add(name)


def quic_section(ev: Events, net: Net, rng: random.Random, t0: int, dns_names: set,
                 ports: list[int] | None = None, count: int = N_QUIC_CONNS) -> list[str]:
    """N_QUIC_CONNS lookups and QUIC handshakes within DURATION_US from t0 (client ports from
    ports, or random); returns the names."""
    quic_specs = []
    qnames = [f"quic-{i:03d}.bench.test" for i in range(1, N_QUIC_CONNS - len(REAL_QUIC_NAMES) + 1)]
    qnames += REAL_QUIC_NAMES
    for i, name in enumerate(qnames[-count:] if count else []):
        v6 = rng.random() < 0.15
        ip = (ipaddress.IPv6Address(f"2001:db8:443::{i + 1:x}").packed if v6
              else bytes([198, 19, (i + 1) // 250, (i + 1) % 250 + 1]))
        t = rng.randint(t0 + 200_000, t0 + DURATION_US - 2_000_000)
        t = dns_lookup(ev, net, rng, t, name, [], [] if v6 else [ip], [ip] if v6 else []) + 300
        dns_names.add(name)
        quic_specs.append({"name": name, "v6": v6, "ip": ip, "t": t,
                           "cport": rng.randint(40000, 60999) if ports is None else ports[i],
                           "rtt": rng.randint(5_000, 80_000), "ttl": rng.choice([52, 56, 58]),
                           "resp": rng.randint(800, 6000)})
    return quic_connections(ev, net, rng, quic_specs)


# --------------------------------------------------------------------------- bulk flows

def bulk_flow(spec: dict, n_packets: int, seed: int):
    """Long-lived TCP transfer; yields (t, key, frame) sorted by t."""
    rng = random.Random(seed)
    net = Net()
    out: list[tuple[int, int, bytes]] = []
    key_base = spec["key"]
    counter = [0]

    def emit(t, frame):
        out.append((t, key_base + counter[0], frame))
        counter[0] += 1

    v6 = spec["v6"]
    tcp = TcpConn(net, emit, rng, v6, spec["ip"], spec["port"], spec["cport"],
                  c_isn=spec.get("c_isn"), s_isn=spec.get("s_isn"), s_ttl=62)
    chunks = [rng.randbytes(tcp.seg) for _ in range(8)]
    psums = [_sum16(c) for c in chunks]
    t = spec["start"]
    end = spec["end"]
    upload = spec["upload"]
    emitted = 0
    reserve = 0 if spec["midstream"] else 3
    if not spec["midstream"]:
        t = tcp.handshake(t, 2000)
        t += 200
        if spec.get("host"):
            req = (f"GET /artifacts/{spec['host']}.tar HTTP/1.1\r\nHost: {spec['host']}:{spec['port']}\r\n"
                   "User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n").encode()
            tcp.c(t, ACK | PSH, req)
            t += 2000
            hdr = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nContent-Length: 4294967296\r\n\r\n"
            tcp.s(t, ACK | PSH, hdr + chunks[0][:tcp.seg - len(hdr)])
            t += 30
            tcp.c(t, ACK)
    yield from out
    emitted = len(out)
    out.clear()
    remaining = n_packets - emitted - reserve
    avg_burst = 24 * 1.5
    gap_mean = max(100, int((end - t) * avg_burst / max(remaining, 1)))
    while remaining > 0:
        k = rng.randint(8, 40)
        for i in range(k):
            if remaining <= 0:
                break
            j = rng.randrange(8)
            flags = ACK | (PSH if i == k - 1 else 0)
            if upload:
                tcp.c(t, flags, chunks[j], psum=psums[j])
            else:
                tcp.s(t, flags, chunks[j], psum=psums[j])
            remaining -= 1
            t += 12
            if i % 2 == 1 and remaining > 0:
                if upload:
                    tcp.s(t + 3, ACK)
                else:
                    tcp.c(t + 3, ACK)
                remaining -= 1
                t += 6
        t += rng.randint(gap_mean // 2, gap_mean * 3 // 2)
        yield from out
        out.clear()
    if reserve:
        tcp.close(t, 2000)
        yield from out


# --------------------------------------------------------------------------- plan + write

def _names(rng: random.Random) -> list[str]:
    names = [f"host-{i:04d}.bench.test" for i in range(1, 1601)]
    names += REAL_TLS_NAMES
    names += [f"bucket-{i:03d}.s3.us-east-1.amazonaws.com" for i in range(40)]
    names += ["xn--bcher-kva.bench.test", "xn--caf-dma.bench.test", "xn--mnchen-3ya.bench.test",
              "xn--80ak6aa92e.bench.test", "xn--fiqs8s.bench.test"]
    names += ["a.b.c.d.e.f.g.h.deep.bench.test", "x.bench.test", "1.2.3.4.bench.test",
              "under_score.bench.test", "dash--dash.bench.test"]
    for i in range(12):  # long names, up to 253 characters
        labels = []
        target = rng.randint(90, 240)
        while sum(len(x) + 1 for x in labels) < target:
            labels.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                                  for _ in range(rng.randint(8, 63))))
        name = ".".join(labels) + f".long{i}.bench.test"
        names.append(name[-253:].lstrip(".-"))
    # labels must not start with '-' after trimming; rebuild defensively
    fixed = []
    for n in names:
        fixed.append(".".join(lbl.strip("-") or "x" for lbl in n.split(".")))
    return list(dict.fromkeys(fixed))


def _name_info(rng: random.Random, names: list[str]) -> dict[str, dict]:
    """Where each TLS name lives: address family, address, port, CNAME chain, server TTL."""
    shared4 = [bytes([198, 18, 200, i]) for i in range(1, 21)]
    info: dict[str, dict] = {}
    for i, name in enumerate(names):
        v6 = rng.random() < 0.15
        r = rng.random()
        port = 443 if r < 0.85 else (8443 if r < 0.94 else 4433)
        if v6:
            ip = ipaddress.IPv6Address(f"2001:db8:18::{i + 1:x}").packed
        elif rng.random() < 0.1:
            ip = rng.choice(shared4)
        else:
            ip = bytes([198, 18, (i + 1) // 250, (i + 1) % 250 + 1])
        cnames = []
        if rng.random() < 0.15:
            label = name.split(".")[0][:40]
            cnames.append(f"{label}.edge-{rng.randint(1, 9)}.cdnbench.net")
            if rng.random() < 0.5:
                cnames.append(f"e{rng.randint(1000, 9999)}.a.akamaibench.net")
        info[name] = {"v6": v6, "port": port, "ip": ip, "cnames": cnames,
                      "ttl": rng.choice([48, 52, 54, 56, 57, 59, 120]), "looked_up": False}
    return info


def _truth_path(path: Path) -> Path:
    return path.with_suffix(".truth.json") if path.suffix == ".pcap" else Path(str(path) + ".truth.json")


def _new_stats() -> dict:
    return {
        "split_hellos": 0, "pq_two_segment_hellos": 0, "split_segments": {},
        "sni_in_first_segment": 0, "sni_straddles_segments": 0, "sni_after_first_segment": 0,
        "out_of_order": 0, "out_of_order_names": set(), "retransmitted": 0,
        "sni_after_first_segment_names": set(), "tiny_first_segment_names": set(),
        "overlapping_retransmission": 0, "seq_wrap": 0,
    }


def generate(path, seed: int = 1) -> dict:
    path = Path(path)
    rng = random.Random(seed)
    net = Net()
    ev = Events()
    stats = _new_stats()

    # ---- TLS names -> addresses, ports, DNS shape
    names = _names(rng)
    info = _name_info(rng, names)

    conns = [n for n in names]
    popular = REAL_TLS_NAMES[:20]
    while len(conns) < N_TLS_CONNS:
        conns.append(rng.choice(popular) if rng.random() < 0.7 else rng.choice(names))
    rng.shuffle(conns)
    starts = sorted(rng.randint(300_000, DURATION_US - 2_000_000) for _ in conns)

    cport = 33000
    tls_ports: dict[str, set] = {}
    tls_count: dict[str, int] = {}
    dns_names: set[str] = set()
    cname_targets: set[str] = set()
    styles = {"pq": 0, "chrome": 0, "openssl": 0, "padded": 0}
    for name, t in zip(conns, starts):
        inf = info[name]
        if not inf["looked_up"]:
            v4a = [] if inf["v6"] else [inf["ip"]]
            v6a = [inf["ip"]] if inf["v6"] else []
            over_v6 = inf["v6"] and rng.random() < 0.5
            t = dns_lookup(ev, net, rng, t, name, inf["cnames"], v4a, v6a, over_v6) + rng.randint(50, 600)
            inf["looked_up"] = True
            dns_names.add(name)
            cname_targets.update(inf["cnames"])
        conn = tls_plan(rng, name, inf, cport, 7, BULK_HELLOS, styles)
        cport = conn["cport"]
        tls_connection(ev, net, rng, t, conn, stats)
        tls_ports.setdefault(name, set()).add(inf["port"])
        tls_count[name] = tls_count.get(name, 0) + 1

    # ---- NXDOMAIN lookups (search-domain style and typos)
    nx = [f"nx-{i:02d}.bench.test" for i in range(N_NXDOMAIN - 4)]
    nx += ["metadata.google.internal", "api.github.com.localdomain", "registry.local", "wpad.bench.test"]
    for name in nx:
        dns_lookup(ev, net, rng, rng.randint(100_000, DURATION_US - 1_000_000), name, [], [], [], rcode=3)
        dns_names.add(name)

    # ---- plain HTTP
    http_names: set[str] = set()
    plain_http(ev, net, rng, 0, dns_names, http_names)

    # ---- QUIC
    quic_names = quic_section(ev, net, rng, 0, dns_names)

    # ---- bulk flows fill the rest
    bulk_specs = [
        {"port": 22, "ip": bytes([10, 0, 5, 22]), "v6": False, "upload": True, "midstream": False},
        {"port": 5432, "ip": bytes([10, 0, 5, 32]), "v6": False, "upload": False, "midstream": False,
         "c_isn": (MASK32 - 30_000_000) & MASK32, "s_isn": (MASK32 - 20_000_000) & MASK32},
        {"port": 8080, "ip": bytes([198, 18, 250, 10]), "v6": False, "upload": False, "midstream": False,
         "host": "bulk-0.bench.test"},
        {"port": 8080, "ip": ipaddress.IPv6Address("2001:db8:8080::10").packed, "v6": True,
         "upload": False, "midstream": False, "host": "bulk-1.bench.test"},
        {"port": 5432, "ip": bytes([10, 0, 5, 33]), "v6": False, "upload": False, "midstream": True},
        {"port": 22, "ip": bytes([10, 0, 5, 23]), "v6": False, "upload": False, "midstream": True},
    ]
    for i, spec in enumerate(bulk_specs):
        spec["key"] = (i + 1) * 10**9
        spec["cport"] = 45000 + i * 111
        spec["start"] = 0 if spec["midstream"] else rng.randint(50_000, 3_000_000)
        spec["end"] = DURATION_US - rng.randint(0, 3_000_000)
        if spec.get("host"):
            ip = spec["ip"]
            t = max(0, spec["start"] - 3000)
            dns_lookup(ev, net, rng, t, spec["host"], [], [] if spec["v6"] else [ip], [ip] if spec["v6"] else [])
            dns_names.add(spec["host"])
            http_names.add(spec["host"])
    n_events = len(ev.items)
    bulk_total = PKT_TARGET - n_events
    weights = [0.2, 0.2, 0.2, 0.15, 0.15, 0.1]
    counts = [int(bulk_total * w) for w in weights]
    counts[0] += bulk_total - sum(counts)
    gens = [bulk_flow(spec, n, seed * 7919 + i) for i, (spec, n) in enumerate(zip(bulk_specs, counts))]

    ev.items.sort()
    path.parent.mkdir(parents=True, exist_ok=True)
    n_written = 0
    with open(path, "wb", buffering=4 << 20) as f:
        f.write(_pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        w = f.write
        for t, _, frame in heapq.merge(ev.items, *gens):
            ln = len(frame)
            w(_pack("<IIII", BASE_TS + t // 1_000_000, t % 1_000_000, ln, ln))
            w(frame)
            n_written += 1

    tls_names = sorted(tls_count)
    truth = {
        "seed": seed,
        "packets": n_written,
        "tls": tls_names,
        "quic": sorted(quic_names),
        "dns": sorted(dns_names),
        "http": sorted(http_names),
        "split_hellos": stats["split_hellos"],
        "tls_connections": N_TLS_CONNS,
        "tls_connections_per_name": {n: tls_count[n] for n in tls_names},
        "tls_ports": {n: sorted(tls_ports[n]) for n in tls_names},
        "dns_nxdomain": sorted(nx),
        "dns_cname_targets": sorted(cname_targets),
        "hello_styles": styles,
        "split_detail": {k: (sorted(v) if isinstance(v, set) else v) for k, v in stats.items()
                         if k != "split_hellos"},
        "bulk_packets": sum(counts),
    }
    _truth_path(path).write_text(json.dumps(truth, indent=1) + "\n")
    return truth


# --------------------------------------------------------------------------- handshake-heavy mix

# Kubernetes-style resolv.conf (ndots:5): a name is first tried under the search domains.
SEARCH_DOMAINS = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]


def _kind(frame: bytes) -> str:
    """What a frame this generator wrote carries, from its ports (for the truth's tally)."""
    if frame[12] == 0x08:
        proto, ports = frame[23], 34
    else:
        proto, ports = frame[20], 54
    sport, dport = struct.unpack_from("!HH", frame, ports)
    if proto == 17:
        return "dns" if 53 in (sport, dport) else "quic"
    if proto != 6:
        return "other"
    if 80 in (sport, dport):
        return "http"
    return "tls" if {443, 8443, 4433} & {sport, dport} else "bulk"


def generate_handshake(path, seed: int = 1, epochs: int = 1, scale: float = 1.0) -> dict:
    """The handshake-heavy capture: per epoch (60 s of capture time, exactly PKT_TARGET packets)
    2,000 TLS connections kept alive for a few API calls each (a third of the ClientHellos split
    over two or more segments, with the same anomalies as the bulk mix), their DNS lookups
    (A + AAAA, CNAME chains, NXDOMAIN walks through search domains), 300 QUIC handshakes,
    40 plain HTTP requests, and bulk TCP for the rest (about a tenth).

    Every epoch talks to the same hosts: ``epochs=10`` is the same container watched ten times
    as long (2,000,000 packets), whose report must not need more memory. Epoch 0 is the same
    in every file of one seed. Each epoch is built and written on its own, so memory stays flat.
    """
    path = Path(path)
    names_rng = random.Random(seed)
    names = _names(names_rng)
    info = _name_info(names_rng, names)
    # scale < 1: the same kind of capture, smaller (the tests compare engines on one)
    names = names[:max(20, int(len(names) * scale))]
    n_conns, n_lookups = int(N_TLS_CONNS * scale), int(3_000 * scale)
    n_quic, n_http, n_packets = int(N_QUIC_CONNS * scale), int(N_HTTP_CONNS * scale), int(PKT_TARGET * scale)
    popular = [n for n in REAL_TLS_NAMES[:20] if n in info and n in names] or names[:20]
    # how many search domains a lookup of each name walks through first (ndots), if any
    search_walk = {name: (1 + i % 3 if i % 5 < 3 else 0) for i, name in enumerate(names)}
    net = Net()
    stats = _new_stats()
    tls_ports: dict[str, set] = {}
    tls_count: dict[str, int] = {}
    dns_names: set[str] = set()
    nx_names: set[str] = set()
    cname_targets: set[str] = set()
    http_names: set[str] = set()
    quic_names: set[str] = set()
    styles = {"pq": 0, "chrome": 0, "openssl": 0, "padded": 0}
    kinds = {"tls": 0, "dns": 0, "quic": 0, "http": 0, "bulk": 0, "other": 0}
    n_written = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb", buffering=4 << 20) as f:
        f.write(_pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        w = f.write
        last = 0
        for epoch in range(epochs):
            rng = random.Random(seed * 1_000_003 + epoch + 1)
            t0 = epoch * DURATION_US
            ev = Events()
            looked_up: set[str] = set()

            def lookup(t: int, name: str) -> int:
                inf = info[name]
                walk = search_walk[name]  # the same names every epoch: the hosts do not grow
                if walk and rng.random() < 0.7:
                    for suffix in SEARCH_DOMAINS[:walk]:
                        nx = f"{name}.{suffix}"
                        t = dns_lookup(ev, net, rng, t, nx, [], [], [], rcode=3) + rng.randint(20, 200)
                        nx_names.add(nx)
                v4a = [] if inf["v6"] else [inf["ip"]]
                v6a = [inf["ip"]] if inf["v6"] else []
                over_v6 = inf["v6"] and rng.random() < 0.5
                t = dns_lookup(ev, net, rng, t, name, inf["cnames"], v4a, v6a, over_v6)
                looked_up.add(name)
                dns_names.add(name)
                cname_targets.update(inf["cnames"])
                return t + rng.randint(50, 600)

            # ---- TLS: every name once, then the popular ones again and again
            conns = list(names)
            while len(conns) < n_conns:
                conns.append(rng.choice(popular) if rng.random() < 0.7 else rng.choice(names))
            rng.shuffle(conns)
            starts = sorted(rng.randint(t0 + 300_000, t0 + DURATION_US - 12_000_000) for _ in conns)
            cport = 10_000 + epoch * 5_000
            for name, t in zip(conns, starts):
                inf = info[name]
                if name not in looked_up or rng.random() < 0.3:
                    t = lookup(t, name)
                conn = tls_plan(rng, name, inf, cport, 2, HANDSHAKE_HELLOS, styles)
                conn["rounds"] = rng.randint(2, 14)
                cport = conn["cport"]
                tls_connection(ev, net, rng, t, conn, stats)
                tls_ports.setdefault(name, set()).add(inf["port"])
                tls_count[name] = tls_count.get(name, 0) + 1

            # ---- DNS on its own: lookups whose answer is never used, telemetry names, typos
            for i in range(n_lookups):
                name = rng.choice(names)
                t = rng.randint(t0 + 100_000, t0 + DURATION_US - 2_000_000)
                if rng.random() < 0.2:
                    nx = f"nx-{rng.randint(0, 49):03d}.bench.test"
                    dns_lookup(ev, net, rng, t, nx, [], [], [], rcode=3)
                    nx_names.add(nx)
                else:
                    lookup(t, name)

            # ---- plain HTTP
            plain_http(ev, net, rng, t0, dns_names, http_names, cport=20_000 + epoch * 100, count=n_http)

            # ---- QUIC
            qports = rng.sample(range(40_000 + epoch * 2_100, 40_000 + (epoch + 1) * 2_100), n_quic)
            quic_names.update(quic_section(ev, net, rng, t0, dns_names, qports, n_quic))

            # ---- a little bulk fills the epoch up to PKT_TARGET packets
            bulk_specs = [
                {"port": 22, "ip": bytes([10, 0, 5, 22]), "v6": False, "upload": True, "midstream": False},
                {"port": 5432, "ip": bytes([10, 0, 5, 33]), "v6": False, "upload": False, "midstream": True},
                {"port": 8080, "ip": bytes([198, 18, 250, 10]), "v6": False, "upload": False, "midstream": False},
            ]
            for i, spec in enumerate(bulk_specs):
                spec["key"] = (i + 1) * 10**9
                spec["cport"] = 30_000 + epoch * 10 + i
                spec["start"] = t0 + (0 if spec["midstream"] else rng.randint(50_000, 3_000_000))
                spec["end"] = t0 + DURATION_US - rng.randint(1_000_000, 3_000_000)
            n_bulk = n_packets - len(ev.items)
            if n_bulk < 3 * 100:
                raise RuntimeError(f"handshake mix: {len(ev.items)} packets before the bulk, over budget")
            counts = [n_bulk // 3, n_bulk // 3, n_bulk - 2 * (n_bulk // 3)]
            gens = [bulk_flow(spec, n, seed * 7919 + epoch * 31 + i)
                    for i, (spec, n) in enumerate(zip(bulk_specs, counts))]
            ev.items.sort()
            for t, _, frame in heapq.merge(ev.items, *gens):
                t = max(t, last)  # the next epoch never starts before this one's last packet
                last = t
                kinds[_kind(frame)] += 1
                ln = len(frame)
                w(_pack("<IIII", BASE_TS + t // 1_000_000, t % 1_000_000, ln, ln))
                w(frame)
                n_written += 1

    tls_names = sorted(tls_count)
    truth = {
        "seed": seed,
        "mix": "handshake",
        "epochs": epochs,
        "packets": n_written,
        "tls": tls_names,
        "quic": sorted(quic_names),
        "dns": sorted(dns_names | nx_names),
        "http": sorted(http_names),
        "split_hellos": stats["split_hellos"],
        "tls_connections": sum(tls_count.values()),
        "tls_connections_per_name": {n: tls_count[n] for n in tls_names},
        "tls_ports": {n: sorted(tls_ports[n]) for n in tls_names},
        "dns_nxdomain": sorted(nx_names),
        "dns_cname_targets": sorted(cname_targets),
        "hello_styles": styles,
        "packets_by_kind": kinds,
        "split_detail": {k: (sorted(v) if isinstance(v, set) else v) for k, v in stats.items()
                         if k != "split_hellos"},
    }
    _truth_path(path).write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output pcap path (truth goes to OUT.truth.json)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mix", choices=("bulk", "handshake"), default="bulk",
                    help="bulk: mostly long TCP transfers (the default); handshake: mostly handshakes and DNS")
    ap.add_argument("--epochs", type=int, default=1,
                    help="handshake mix: this many 200,000-packet epochs of the same hosts")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.mix == "handshake":
        truth = generate_handshake(args.out, args.seed, max(1, args.epochs))
    else:
        truth = generate(args.out, args.seed)
    dt = time.perf_counter() - t0
    print(f"wrote {args.out}: {truth['packets']} packets, {len(truth['tls'])} TLS names "
          f"({truth['split_hellos']} split hellos), {len(truth['quic'])} QUIC names, "
          f"{len(truth['dns'])} DNS names in {dt:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
