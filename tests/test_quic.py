"""Tests for tui.quic: passive decryption of QUIC client Initial packets.

Three sources of packets, from most to least authoritative:

* the RFC 9001 / RFC 9369 Appendix A test vectors (fixed bytes, known plaintext);
* a real QUIC client (aioquic) driven without any network, for v1 and v2;
* packets built here with aioquic's own packet protection (``CryptoPair``),
  to cover coalescing, frame types and malformed payloads.
"""

from __future__ import annotations

import functools

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.crypto import CryptoPair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from egress_tui.wire import quic
from egress_tui.wire.quic import QUIC_V1, QUIC_V2, CryptoAssembler, parse_initial_datagram


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# --------------------------------------------------------------------------
# RFC test vectors
# --------------------------------------------------------------------------

RFC_DCID = _hex("8394c8f03e515708")

# RFC 9001 Appendix A.2 / RFC 9369 Appendix A.2: the unprotected payload starts
# with one CRYPTO frame header (type 06, offset 0, length 0x40f1 = 241), then the
# ClientHello below, then PADDING.  Both RFCs use the same ClientHello.
RFC_CLIENT_HELLO = _hex(
    """
    010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47
    f06a2b69484c00000413011302010000c000000010000e00000b6578616d706c
    652e636f6dff01000100000a00080006001d0017001800100007000504616c70
    6e000500050100000000003300260024001d00209370b2c9caa47fbabaf4559f
    edba753de171fa71f50f1ce15d43e994ec74d748002b0003020304000d001000
    0e0403050306030203080408050806002d00020101001c000240010039003204
    08ffffffffffffffff05048000ffff07048000ffff0801100104800075300901
    100f088394c8f03e51570806048000ffff
    """
)

# RFC 9001 Appendix A.2: the protected client Initial (QUIC v1), 1200 bytes.
RFC9001_CLIENT_INITIAL = _hex(
    """
    c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11
    d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399
    1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c
    8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212
    30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5
    457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208
    4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec
    4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3
    485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db
    059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c
    7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8
    9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556
    be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74
    68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a
    c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00
    f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632
    291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964
    25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd
    14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff
    ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198
    e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd
    c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73
    203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f
    cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e
    fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade
    a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047
    90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2
    162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4
    40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0
    6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e
    8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0
    be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400
    54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab
    760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9
    f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4
    056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064
    7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241
    e221af44860018ab0856972e194cd934
    """
)

# RFC 9369 Appendix A.2: the same client Initial protected for QUIC v2.
RFC9369_CLIENT_INITIAL = _hex(
    """
    d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485
    dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04
    9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d
    250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a
    12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500
    cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68
    18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33
    12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3
    d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd
    6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520
    bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045
    636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f
    ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12
    16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5
    4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4
    fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b
    8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7
    14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9
    9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91
    abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd
    80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db
    848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18
    d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15
    c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc
    7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61
    f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710
    10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b
    3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e
    06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce
    8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1
    34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1
    e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd
    5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3
    8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89
    d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53
    6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19
    9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b
    a18b2faa745b6fe189cf772a9f84cbfc
    """
)

# RFC 9001 Appendix A.3: the server's Initial (protected with the *server* keys).
RFC9001_SERVER_INITIAL = _hex(
    """
    cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a
    5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3
    dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84
    022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4
    2158407dd074ee
    """
)


# --------------------------------------------------------------------------
# Helpers: minimal ClientHello reader (the project's TLS parser lives elsewhere)
# --------------------------------------------------------------------------


def hello_extensions(hello: bytes) -> dict[int, bytes]:
    """Return {extension type: extension data} of a complete ClientHello message."""
    assert hello[0] == 0x01, "not a ClientHello"
    assert len(hello) == 4 + int.from_bytes(hello[1:4], "big")
    p = 4 + 2 + 32  # msg header, legacy_version, random
    p += 1 + hello[p]  # legacy_session_id
    p += 2 + int.from_bytes(hello[p : p + 2], "big")  # cipher_suites
    p += 1 + hello[p]  # legacy_compression_methods
    ext_end = p + 2 + int.from_bytes(hello[p : p + 2], "big")
    p += 2
    extensions = {}
    while p < ext_end:
        ext_type = int.from_bytes(hello[p : p + 2], "big")
        ext_len = int.from_bytes(hello[p + 2 : p + 4], "big")
        extensions[ext_type] = hello[p + 4 : p + 4 + ext_len]
        p += 4 + ext_len
    assert p == ext_end == len(hello)
    return extensions


def hello_sni(hello: bytes) -> str:
    ext = hello_extensions(hello)[0x0000]
    # server_name_list length (2), name_type (1) = host_name, name length (2)
    assert ext[2] == 0
    name_len = int.from_bytes(ext[3:5], "big")
    return ext[5 : 5 + name_len].decode("ascii")


def hello_alpn(hello: bytes) -> list[str]:
    ext = hello_extensions(hello)[0x0010]
    protocols, p = [], 2
    while p < len(ext):
        protocols.append(ext[p + 1 : p + 1 + ext[p]].decode("ascii"))
        p += 1 + ext[p]
    return protocols


def assemble(datagrams) -> CryptoAssembler:
    """Feed every parsed datagram's CRYPTO frames into one assembler."""
    asm = CryptoAssembler()
    for datagram in datagrams:
        parsed = parse_initial_datagram(datagram)
        assert parsed is not None
        for offset, data in parsed[1]:
            asm.add(offset, data)
    return asm


# --------------------------------------------------------------------------
# Helpers: packets from a real client, and hand-built ones
# --------------------------------------------------------------------------


def client_datagrams(version: int, server_name: str = "example.org", alpn=("h3",)) -> list[bytes]:
    """The first flight of an aioquic client: no sockets, just bytes."""
    config = QuicConfiguration(
        is_client=True,
        server_name=server_name,
        alpn_protocols=list(alpn),
        supported_versions=[version],
    )
    conn = QuicConnection(configuration=config)
    conn.connect(("192.0.2.1", 443), now=0.0)
    return [data for data, _addr in conn.datagrams_to_send(now=0.0)]


# Enough ALPN identifiers (about 3.7 kB) to spread the ClientHello over four
# 1200-byte Initial packets; ALPN is independent of anything else in the hello.
LONG_ALPN = tuple(f"proto-{i:02d}-" + "x" * 110 for i in range(30)) + ("h3",)


@functools.cache
def single_datagram(version: int) -> bytes:
    (datagram,) = client_datagrams(version, server_name="quic.example.net")
    return datagram


@functools.cache
def multi_datagrams(version: int) -> tuple[bytes, ...]:
    return tuple(client_datagrams(version, server_name="big.example.net", alpn=LONG_ALPN))


def varint(value: int, size: int | None = None) -> bytes:
    """Encode a QUIC variable-length integer, optionally with a forced size."""
    if size is None:
        size = next(s for s in (1, 2, 4, 8) if value < 1 << (8 * s - 2))
    prefix = {1: 0x00, 2: 0x40, 4: 0x80, 8: 0xC0}[size]
    encoded = bytearray(value.to_bytes(size, "big"))
    encoded[0] |= prefix
    return bytes(encoded)


def crypto_frame(offset: int, data: bytes) -> bytes:
    return b"\x06" + varint(offset) + varint(len(data)) + data


def long_header(version: int, ptype: int, dcid: bytes, scid: bytes) -> bytes:
    """First byte (long header, fixed bit, type), version, DCID and SCID."""
    return (
        bytes((0xC0 | ptype << 4,))
        + version.to_bytes(4, "big")
        + bytes((len(dcid),)) + dcid
        + bytes((len(scid),)) + scid
    )


def build_initial(
    payload: bytes,
    *,
    version: int = QUIC_V1,
    dcid: bytes = RFC_DCID,
    scid: bytes = b"\x5c" * 8,
    token: bytes = b"",
    pn: int = 0,
    pn_len: int = 2,
    is_client: bool = True,
) -> bytes:
    """Protect an Initial packet with aioquic's implementation (an independent oracle)."""
    payload = payload.ljust(20, b"\x00")  # room for the header protection sample
    initial_type = 0b00 if version == QUIC_V1 else 0b01
    header = bytearray(long_header(version, initial_type, dcid, scid))
    header[0] |= pn_len - 1
    header += varint(len(token)) + token
    header += varint(pn_len + len(payload) + 16, 2) + pn.to_bytes(pn_len, "big")
    pair = CryptoPair()
    pair.setup_initial(cid=dcid, is_client=is_client, version=version)
    return pair.encrypt_packet(bytes(header), payload, pn)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    size = 1 << (buf[pos] >> 6)
    return int.from_bytes(buf[pos : pos + size], "big") & ((1 << (8 * size - 2)) - 1), pos + size


def first_packet_len(datagram: bytes) -> int:
    """Length of the leading Initial packet, read from its header."""
    pos = 5
    pos += 1 + datagram[pos]  # DCID
    pos += 1 + datagram[pos]  # SCID
    token_len, pos = read_varint(datagram, pos)
    length, pos = read_varint(datagram, pos + token_len)
    return pos + length


def fake_long_packet(version: int, ptype: int, body: bytes, dcid: bytes = RFC_DCID) -> bytes:
    """A 0-RTT/Handshake-shaped packet: header + Length + opaque bytes (never decrypted)."""
    return long_header(version, ptype, dcid, b"\x5c" * 8) + varint(len(body), 2) + body


# --------------------------------------------------------------------------
# RFC vectors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("datagram", [RFC9001_CLIENT_INITIAL, RFC9369_CLIENT_INITIAL], ids=["v1", "v2"])
def test_rfc_client_initial(datagram):
    assert len(datagram) == 1200
    parsed = parse_initial_datagram(datagram)
    assert parsed is not None
    dcid, frames = parsed
    assert dcid == RFC_DCID
    assert frames == [(0, RFC_CLIENT_HELLO)]
    assert hello_sni(frames[0][1]) == "example.com"
    asm = CryptoAssembler()
    asm.add(*frames[0])
    assert asm.client_hello() == RFC_CLIENT_HELLO


def test_rfc_vectors_derive_the_published_keys():
    # RFC 9001 A.1 and RFC 9369 A.1 client key / iv / hp for DCID 8394c8f03e515708.
    v1 = quic._InitialKeys(QUIC_V1, RFC_DCID)
    assert v1.iv == int("fa044b2f42a3fd3b46fb255c", 16)
    v2 = quic._InitialKeys(QUIC_V2, RFC_DCID)
    assert v2.iv == int("91f73e2351d8fa91660e909f", 16)
    # Header protection masks from the appendices (sample -> first 5 mask bytes).
    assert v1.hp_mask(_hex("d1b1c98dd7689fb8ec11d242b123dc9b"))[:5] == _hex("437b9aec36")
    assert v2.hp_mask(_hex("ffe67b6abcdb4298b485dd04de806071"))[:5] == _hex("94a0c95e80")


def test_rfc_server_initial_is_not_a_client_initial():
    assert parse_initial_datagram(RFC9001_SERVER_INITIAL) is None


def test_version_and_type_bits_must_agree():
    # v1 bytes relabelled as v2: type 0b00 means Retry in v2.
    as_v2 = RFC9001_CLIENT_INITIAL[:1] + QUIC_V2.to_bytes(4, "big") + RFC9001_CLIENT_INITIAL[5:]
    assert parse_initial_datagram(as_v2) is None
    # v2 bytes relabelled as v1: type 0b01 means 0-RTT in v1.
    as_v1 = RFC9369_CLIENT_INITIAL[:1] + QUIC_V1.to_bytes(4, "big") + RFC9369_CLIENT_INITIAL[5:]
    assert parse_initial_datagram(as_v1) is None


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\xc0",
        b"\xc0\x00\x00\x00\x01",
        RFC9001_CLIENT_INITIAL[:50],  # truncated: Length runs past the datagram
        RFC9001_CLIENT_INITIAL[:-1],
        RFC9001_CLIENT_INITIAL[:-1] + bytes((RFC9001_CLIENT_INITIAL[-1] ^ 1,)),  # bad tag
        b"\x40" + RFC_DCID + bytes(100),  # short header
        b"\xc0\x00\x00\x00\x00\x08" + RFC_DCID + b"\x08" + RFC_DCID + b"\x00\x00\x00\x01",  # version negotiation
        b"\xc0\xff\x00\x00\x1d" + RFC9001_CLIENT_INITIAL[5:],  # draft-29, unsupported
        b"\xc0\x1a\x2a\x3a\x4a" + RFC9001_CLIENT_INITIAL[5:],  # greased version
        b"\xc0\x00\x00\x00\x01\x15" + bytes(200),  # DCID longer than 20 bytes
        bytes(1200),  # zero padding
        b"\x16\x03\x01\x00\xc8" + bytes(200),  # TLS record (TCP) bytes
    ],
)
def test_not_a_client_initial(datagram):
    assert parse_initial_datagram(datagram) is None


def test_accepts_bytes_like_inputs():
    assert parse_initial_datagram(bytearray(RFC9001_CLIENT_INITIAL))[1] == [(0, RFC_CLIENT_HELLO)]
    assert parse_initial_datagram(memoryview(RFC9369_CLIENT_INITIAL))[1] == [(0, RFC_CLIENT_HELLO)]
    assert parse_initial_datagram(None) is None  # type: ignore[arg-type]
    assert parse_initial_datagram(10**12) is None  # type: ignore[arg-type]  # not bytes(10**12)


# --------------------------------------------------------------------------
# Real client (aioquic)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("version", [QUIC_V1, QUIC_V2], ids=["v1", "v2"])
def test_real_client_initial(version):
    datagram = single_datagram(version)
    assert int.from_bytes(datagram[1:5], "big") == version
    parsed = parse_initial_datagram(datagram)
    assert parsed is not None
    dcid, frames = parsed
    assert len(dcid) == 8
    asm = CryptoAssembler()
    for offset, data in frames:
        asm.add(offset, data)
    hello = asm.client_hello()
    assert hello is not None
    assert hello_sni(hello) == "quic.example.net"
    assert hello_alpn(hello) == ["h3"]


@pytest.mark.parametrize("version", [QUIC_V1, QUIC_V2], ids=["v1", "v2"])
def test_real_client_hello_spanning_several_packets(version):
    datagrams = multi_datagrams(version)
    assert len(datagrams) >= 2
    dcids = {parse_initial_datagram(d)[0] for d in datagrams}
    assert len(dcids) == 1  # one connection

    # No single datagram is enough on its own.
    for datagram in datagrams:
        assert assemble([datagram]).client_hello() is None

    in_order = assemble(datagrams).client_hello()
    assert in_order is not None
    assert len(in_order) > 2400
    assert hello_sni(in_order) == "big.example.net"
    assert hello_alpn(in_order) == list(LONG_ALPN)

    reverse = assemble(reversed(datagrams)).client_hello()
    assert reverse == in_order
    duplicated = assemble([datagrams[-1], *datagrams[::-1], datagrams[0], *datagrams]).client_hello()
    assert duplicated == in_order


def test_assembler_bound_drops_oversized_client_hello():
    datagrams = multi_datagrams(QUIC_V1)
    asm = CryptoAssembler(max_bytes=1000)
    for datagram in datagrams:
        for offset, data in parse_initial_datagram(datagram)[1]:
            asm.add(offset, data)
    assert len(asm.contiguous()) == 1000
    assert asm.client_hello() is None


# --------------------------------------------------------------------------
# Hand-built packets: coalescing and frames
# --------------------------------------------------------------------------

HELLO_A, HELLO_B = RFC_CLIENT_HELLO[:100], RFC_CLIENT_HELLO[100:]


@pytest.mark.parametrize("version", [QUIC_V1, QUIC_V2], ids=["v1", "v2"])
def test_coalesced_initials_and_skipped_packets(version):
    zero_rtt, handshake = (0b01, 0b10) if version == QUIC_V1 else (0b10, 0b11)
    datagram = (
        build_initial(crypto_frame(100, HELLO_B), version=version, pn=1)
        + fake_long_packet(version, zero_rtt, bytes(range(60)))
        + build_initial(b"\x01" + crypto_frame(0, HELLO_A), version=version, pn=0, pn_len=1, token=b"tok")
        + fake_long_packet(version, handshake, b"\xee" * 40)
        + bytes(300)  # datagram padding outside any packet
    )
    parsed = parse_initial_datagram(datagram)
    assert parsed == (RFC_DCID, [(100, HELLO_B), (0, HELLO_A)])
    asm = CryptoAssembler()
    for frame in parsed[1]:
        asm.add(*frame)
    assert asm.client_hello() == RFC_CLIENT_HELLO


def test_coalesced_packet_with_other_dcid_or_bad_tag_is_ignored():
    first = build_initial(crypto_frame(0, HELLO_A))
    other_dcid = build_initial(crypto_frame(100, HELLO_B), dcid=b"\x01" * 8)
    server_keys = build_initial(crypto_frame(100, HELLO_B), is_client=False)
    last = build_initial(crypto_frame(100, HELLO_B), pn=3)
    parsed = parse_initial_datagram(first + other_dcid + server_keys + last)
    assert parsed == (RFC_DCID, [(0, HELLO_A), (100, HELLO_B)])


def test_datagram_must_start_with_initial():
    datagram = fake_long_packet(QUIC_V1, 0b10, bytes(40)) + build_initial(crypto_frame(0, HELLO_A))
    assert parse_initial_datagram(datagram) is None


def test_short_header_after_initial_ends_the_walk():
    datagram = build_initial(crypto_frame(0, HELLO_A)) + b"\x41" + RFC_DCID + bytes(50)
    assert parse_initial_datagram(datagram) == (RFC_DCID, [(0, HELLO_A)])


def test_all_initial_frame_types():
    payload = (
        b"\x00\x00\x00"  # PADDING
        + b"\x01"  # PING
        # ACK: largest 5, delay 300, 2 extra ranges, first range 1, (gap, len) x 2
        + b"\x02" + varint(5) + varint(300) + varint(2) + varint(1) + varint(0) + varint(1) + varint(0) + varint(0)
        + crypto_frame(0, b"abc")
        # ACK_ECN: largest 9, no extra range, then the three ECN counts
        + b"\x03" + varint(9) + varint(0) + varint(0) + varint(3) + varint(1) + varint(2) + varint(70000)
        + b"\x1c" + varint(0x0A) + varint(0x06) + varint(4) + b"oops"  # CONNECTION_CLOSE (transport)
        + b"\x1d" + varint(0x101) + varint(0)  # CONNECTION_CLOSE (application)
        + crypto_frame(3, b"defg")
        + crypto_frame(2**20, b"far")  # large offsets use longer varints
        + bytes(50)
    )
    parsed = parse_initial_datagram(build_initial(payload, pn=7, pn_len=4))
    assert parsed == (RFC_DCID, [(0, b"abc"), (3, b"defg"), (2**20, b"far")])


def test_unknown_frame_stops_parsing():
    payload = crypto_frame(0, b"abc") + b"\x08\x00\x00" + crypto_frame(3, b"lost")
    assert parse_initial_datagram(build_initial(payload)) == (RFC_DCID, [(0, b"abc")])


def test_truncated_frames_stop_parsing():
    ok = crypto_frame(0, b"ok")
    crypto_past_end = b"\x06\x00\x44\x00abc"  # declares 1024 bytes of data
    assert parse_initial_datagram(build_initial(ok + crypto_past_end)) == (RFC_DCID, [(0, b"ok")])
    absurd_ack = b"\x02\x00\x00" + varint(2**40) + b"\x00"  # 2^40 ack ranges
    assert parse_initial_datagram(build_initial(ok + absurd_ack)) == (RFC_DCID, [(0, b"ok")])


def test_ack_only_initial_returns_no_frames():
    assert parse_initial_datagram(build_initial(b"\x02\x00\x00\x00\x00")) == (RFC_DCID, [])


def test_any_dcid_length_up_to_20():
    for dcid in (b"", b"\x07", bytes(range(20))):
        assert parse_initial_datagram(build_initial(crypto_frame(0, b"x"), dcid=dcid)) == (dcid, [(0, b"x")])


# --------------------------------------------------------------------------
# Key cache
# --------------------------------------------------------------------------


def test_key_cache_reuses_and_is_bounded():
    quic._key_cache.clear()
    try:
        first = quic._initial_keys(QUIC_V1, RFC_DCID)
        assert quic._initial_keys(QUIC_V1, RFC_DCID) is first
        assert quic._initial_keys(QUIC_V2, RFC_DCID) is not first
        for i in range(quic._KEY_CACHE_MAX + 10):
            quic._initial_keys(QUIC_V1, i.to_bytes(8, "big"))
        assert len(quic._key_cache) == quic._KEY_CACHE_MAX
        assert (QUIC_V1, RFC_DCID) not in quic._key_cache  # oldest went first
    finally:
        quic._key_cache.clear()


# --------------------------------------------------------------------------
# CryptoAssembler
# --------------------------------------------------------------------------


def test_assembler_basics():
    asm = CryptoAssembler()
    assert asm.contiguous() == b"" and asm.client_hello() is None
    asm.add(4, b"body")
    assert asm.contiguous() == b""
    asm.add(0, b"\x01\x00")
    assert asm.contiguous() == b"\x01\x00"
    asm.add(1, b"\x00\x00\x04bo")  # overlap with both pieces
    assert asm.client_hello() == b"\x01\x00\x00\x04body"
    asm.add(8, b"trailing")  # data after the message does not change it
    assert asm.client_hello() == b"\x01\x00\x00\x04body"
    assert asm.contiguous() == b"\x01\x00\x00\x04bodytrailing"


def test_assembler_first_bytes_win_and_bad_input_is_ignored():
    asm = CryptoAssembler(max_bytes=8)
    asm.add(2, b"AB")
    asm.add(0, b"xxzzyy")  # the hole at 0-1 and 4-5 is filled, 2-3 keeps "AB"
    assert asm.contiguous() == b"xxAByy"
    asm.add(-5, b"neg")
    asm.add(6, b"12345")  # clipped to max_bytes
    asm.add(50, b"far")
    assert asm.contiguous() == b"xxAByy12"


def test_assembler_rejects_non_client_hello():
    asm = CryptoAssembler()
    asm.add(0, b"\x02\x00\x00\x01x")  # ServerHello type
    assert asm.client_hello() is None
    asm = CryptoAssembler(max_bytes=64)
    asm.add(0, b"\x01\x00\x01\x00" + bytes(60))  # declares 256 bytes > bound
    assert asm.client_hello() is None


# --------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------

REAL_DATAGRAMS = st.sampled_from([(QUIC_V1, 0), (QUIC_V2, 0), (QUIC_V1, 1), (QUIC_V2, 2)]).map(
    lambda key: multi_datagrams(key[0])[key[1]] if key[1] else single_datagram(key[0])
)


@settings(max_examples=500)
@given(st.binary(max_size=1500))
def test_arbitrary_bytes_never_raise(data):
    result = parse_initial_datagram(data)
    assert result is None or isinstance(result, tuple)
    # The internal parser must not lean on the outer catch-all either.
    assert quic._parse_initial_datagram(data) == result


@settings(max_examples=300)
@given(
    st.sampled_from([QUIC_V1, QUIC_V2]),
    st.sampled_from([0xC0, 0xD0, 0xE0, 0xF0, 0x80, 0xCF]),
    st.binary(max_size=300),
)
def test_plausible_long_headers_never_raise(version, first, tail):
    data = bytes((first,)) + version.to_bytes(4, "big") + tail
    quic._parse_initial_datagram(data)
    parse_initial_datagram(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(REAL_DATAGRAMS, st.data())
def test_single_byte_corruption(datagram, data):
    pos = data.draw(st.integers(0, len(datagram) - 1), label="pos")
    flip = data.draw(st.integers(1, 255), label="xor")
    corrupted = bytearray(datagram)
    corrupted[pos] ^= flip
    result = parse_initial_datagram(bytes(corrupted))
    assert quic._parse_initial_datagram(bytes(corrupted)) == result
    if pos < first_packet_len(datagram):
        # AES-GCM authenticates every byte of the packet, header included.
        assert result is None
    else:
        # aioquic pads the datagram with zeros after the packet; garbage there
        # ends the coalesced-packet walk without affecting the Initial.
        assert result == parse_initial_datagram(datagram)


@settings(max_examples=300)
@given(st.binary(max_size=1200), st.sampled_from([QUIC_V1, QUIC_V2]))
def test_authenticated_garbage_payload_never_raises(payload, version):
    # Worst case for the frame parser: arbitrary plaintext that does decrypt.
    parsed = quic._parse_initial_datagram(build_initial(payload, version=version))
    assert parsed is not None and parsed[0] == RFC_DCID
    for offset, chunk in parsed[1]:
        assert offset >= 0 and chunk in payload.ljust(20, b"\x00")  # build_initial pads to 20


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["rfc", "aioquic-multi-packet"]), st.data())
def test_assembler_random_splits_orders_duplicates(source, data):
    hello = RFC_CLIENT_HELLO if source == "rfc" else assemble(multi_datagrams(QUIC_V1)).client_hello()
    n = len(hello)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=20), label="cuts"))
    bounds = [0, *cuts, n]
    pieces = [(a, hello[a:b]) for a, b in zip(bounds, bounds[1:])]
    # Extra overlapping / duplicate ranges of the same stream.
    extra = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 400)), max_size=10), label="extra")
    pieces += [(a, hello[a : a + length]) for a, length in extra]
    pieces += data.draw(st.lists(st.sampled_from(pieces), max_size=5), label="dups")
    order = data.draw(st.permutations(pieces), label="order")

    asm = CryptoAssembler()
    for offset, chunk in order:
        assert asm.client_hello() in (None, hello)
        asm.add(offset, chunk)
    assert asm.client_hello() == hello
    assert asm.contiguous() == hello
