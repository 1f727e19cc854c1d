"""Passive QUIC Initial dissector: recover the TLS ClientHello a QUIC client sends.

A QUIC client's first flight is carried in *Initial* packets.  Their protection
keys are derived only from public values (a version-specific salt and the
Destination Connection ID chosen by the client, RFC 9001 section 5.2), so any
on-path observer can remove the protection and read the CRYPTO frames, which
hold the TLS ClientHello (and thus the SNI and ALPN).

This module works on raw UDP payloads (bytes in, bytes out) and depends only on
the standard library and ``cryptography``.  It supports QUIC version 1
(RFC 9000/9001) and version 2 (RFC 9369).

Typical use::

    parsed = parse_initial_datagram(udp_payload)
    if parsed is not None:
        dcid, frames = parsed
        asm = assemblers.setdefault(flow_key, CryptoAssembler())
        for offset, data in frames:
            asm.add(offset, data)
        hello = asm.client_hello()   # bytes of the handshake message, or None

The module is meant to be driven from a single capture thread: the key cache
is a plain dict, which is safe under the GIL but not coordinated across
threads (at worst, two threads derive the same keys twice).
"""

from __future__ import annotations

import hmac
import re

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "QUIC_V1",
    "QUIC_V2",
    "parse_initial_datagram",
    "CryptoAssembler",
]

QUIC_V1 = 0x00000001
QUIC_V2 = 0x6B3343CF


class _VersionParams:
    """Per-version constants: the Initial salt, HKDF labels and the long-header
    type code that means "Initial" (v2 deliberately shuffled the type codes so
    that middleboxes do not ossify on v1's)."""

    __slots__ = ("salt", "key_label", "iv_label", "hp_label", "initial_type")

    def __init__(self, salt: str, prefix: str, initial_type: int) -> None:
        self.salt = bytes.fromhex(salt)
        self.key_label = f"{prefix} key".encode()
        self.iv_label = f"{prefix} iv".encode()
        self.hp_label = f"{prefix} hp".encode()
        self.initial_type = initial_type


_VERSIONS: dict[int, _VersionParams] = {
    # RFC 9001 section 5.2
    QUIC_V1: _VersionParams("38762cf7f55934b34d179ae6a4c80cadccbb7f0a", "quic", 0b00),
    # RFC 9369 section 3.3
    QUIC_V2: _VersionParams("0dede3def700a6db819381be6e269dcbf9bd2ed9", "quicv2", 0b01),
}

# RFC 9000 section 17.2: connection IDs in v1 (and v2) are at most 20 bytes.
_MAX_CID_LEN = 20
# Header protection samples 16 bytes starting 4 bytes after the packet number
# offset (RFC 9001 section 5.4.2), whatever the actual packet number length.
_SAMPLE_OFFSET = 4
_SAMPLE_LEN = 16
_TAG_LEN = 16

# A connection's Initials come within a round trip or two; each entry holds OpenSSL cipher
# contexts (a few KB), so a long capture with thousands of QUIC connections keeps only these.
_KEY_CACHE_MAX = 256

# Frame types allowed in Initial packets (RFC 9000 section 12.4, table 3).
_FRAME_PADDING = 0x00
_FRAME_PING = 0x01
_FRAME_ACK = 0x02
_FRAME_ACK_ECN = 0x03
_FRAME_CRYPTO = 0x06
_FRAME_CONNECTION_CLOSE = 0x1C
_FRAME_CONNECTION_CLOSE_APP = 0x1D

# Initial payloads are mostly PADDING (clients must fill datagrams to 1200
# bytes); skipping zero runs with a C-level regex search avoids a Python loop
# over ~1000 bytes per packet.
_NON_ZERO = re.compile(rb"[^\x00]")


# --------------------------------------------------------------------------
# Key derivation (RFC 9001 section 5.2, RFC 8446 section 7.1)
# --------------------------------------------------------------------------


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt, ikm, "sha256")


def _hkdf_expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """TLS 1.3 HKDF-Expand-Label with an empty context.

    Every output used here is at most one SHA-256 block (32 bytes), so HKDF-Expand
    reduces to a single HMAC over ``info || 0x01``.
    """
    full_label = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full_label),)) + full_label + b"\x00"
    return hmac.digest(secret, info + b"\x01", "sha256")[:length]


class _InitialKeys:
    """Client Initial keys for one (version, DCID), with the cipher objects built
    once so that each packet costs one AES block and one AES-GCM open."""

    __slots__ = ("aead", "iv", "hp_cipher")

    def __init__(self, version: int, dcid: bytes) -> None:
        params = _VERSIONS[version]
        initial_secret = _hkdf_extract(params.salt, dcid)
        # "client in" is not versioned: v2 only changes the salt and the
        # packet-protection labels (RFC 9369 section 3.3.2).
        client_secret = _hkdf_expand_label(initial_secret, b"client in", 32)
        key = _hkdf_expand_label(client_secret, params.key_label, 16)
        self.iv = int.from_bytes(_hkdf_expand_label(client_secret, params.iv_label, 12), "big")
        hp = _hkdf_expand_label(client_secret, params.hp_label, 16)
        self.aead = AESGCM(key)
        self.hp_cipher = Cipher(algorithms.AES(hp), modes.ECB())

    def hp_mask(self, sample: bytes) -> bytes:
        # A fresh encryptor per call is cheap and keeps this object free of
        # mutable cipher state, so sharing it between threads stays safe.
        return self.hp_cipher.encryptor().update(sample)


# Insertion-ordered dict used as a FIFO cache: the observer sees each new
# connection's DCID a handful of times in quick succession, so evicting the
# oldest entry is as good as LRU here and cheaper.
_key_cache: dict[tuple[int, bytes], _InitialKeys] = {}


def _initial_keys(version: int, dcid: bytes) -> _InitialKeys:
    """Return (and cache) the client Initial keys for ``version`` and ``dcid``."""
    cache_key = (version, dcid)
    keys = _key_cache.get(cache_key)
    if keys is None:
        keys = _InitialKeys(version, dcid)
        if len(_key_cache) >= _KEY_CACHE_MAX:
            del _key_cache[next(iter(_key_cache))]
        _key_cache[cache_key] = keys
    return keys


# --------------------------------------------------------------------------
# Wire helpers
# --------------------------------------------------------------------------


class _Truncated(Exception):
    """Raised internally when a structure runs past the end of its buffer."""


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a QUIC variable-length integer (RFC 9000 section 16) at ``pos``.

    Returns ``(value, new_pos)``; raises ``_Truncated`` if it does not fit before ``end``.
    """
    if pos >= end:
        raise _Truncated
    first = buf[pos]
    size = 1 << (first >> 6)
    if pos + size > end:
        raise _Truncated
    if size == 1:
        return first, pos + 1
    value = int.from_bytes(buf[pos : pos + size], "big") & ((1 << (8 * size - 2)) - 1)
    return value, pos + size


def _parse_frames(payload: bytes, frames: list[tuple[int, bytes]]) -> None:
    """Append the CRYPTO frames of a decrypted Initial payload to ``frames``.

    Other frames legal in Initial packets are parsed only to be skipped.  On an
    unknown frame type or a truncated frame, parsing stops: the frame layout
    after an unknown type cannot be known, and what was found so far is still
    useful.
    """
    pos = 0
    end = len(payload)
    try:
        while pos < end:
            ftype = payload[pos]
            pos += 1
            if ftype == _FRAME_PADDING:
                match = _NON_ZERO.search(payload, pos)
                if match is None:
                    return
                pos = match.start()
            elif ftype == _FRAME_CRYPTO:
                offset, pos = _varint(payload, pos, end)
                length, pos = _varint(payload, pos, end)
                if pos + length > end:
                    return
                frames.append((offset, payload[pos : pos + length]))
                pos += length
            elif ftype == _FRAME_PING:
                pass
            elif ftype == _FRAME_ACK or ftype == _FRAME_ACK_ECN:
                _, pos = _varint(payload, pos, end)  # largest acknowledged
                _, pos = _varint(payload, pos, end)  # ack delay
                range_count, pos = _varint(payload, pos, end)
                _, pos = _varint(payload, pos, end)  # first ack range
                # Each further range is two varints of at least one byte, so a
                # bogus huge count is caught by the bound instead of looping.
                if range_count * 2 > end - pos:
                    return
                for _ in range(range_count):
                    _, pos = _varint(payload, pos, end)  # gap
                    _, pos = _varint(payload, pos, end)  # ack range length
                if ftype == _FRAME_ACK_ECN:
                    for _ in range(3):  # ECT(0), ECT(1), ECN-CE counts
                        _, pos = _varint(payload, pos, end)
            elif ftype == _FRAME_CONNECTION_CLOSE or ftype == _FRAME_CONNECTION_CLOSE_APP:
                _, pos = _varint(payload, pos, end)  # error code
                if ftype == _FRAME_CONNECTION_CLOSE:
                    _, pos = _varint(payload, pos, end)  # offending frame type
                reason_len, pos = _varint(payload, pos, end)
                pos += reason_len
            else:
                return
    except _Truncated:
        return


# --------------------------------------------------------------------------
# Packet parsing
# --------------------------------------------------------------------------


def parse_initial_datagram(datagram: bytes) -> tuple[bytes, list[tuple[int, bytes]]] | None:
    """Decrypt the client Initial packets of one UDP payload.

    If the datagram starts with a QUIC v1/v2 long-header Initial packet that
    decrypts with the *client* Initial keys, every coalesced Initial packet in
    it is decrypted (0-RTT and Handshake packets are skipped, trailing padding
    is ignored) and ``(dcid, frames)`` is returned: the Destination Connection
    ID of the first packet and the ``(crypto_offset, crypto_data)`` of all
    CRYPTO frames found, in packet order.  ``frames`` may be empty, e.g. for
    an ACK-only Initial.

    Returns ``None`` for anything else, including server Initials (they are
    protected with the server keys, so their AEAD tag does not verify).  Never
    raises.
    """
    try:
        if not isinstance(datagram, bytes):
            # memoryview() accepts only buffer objects; bytes(n) would happily
            # allocate n zero bytes for an int.
            datagram = bytes(memoryview(datagram))
        return _parse_initial_datagram(datagram)
    except Exception:  # noqa: BLE001 - a dissector must never take the capture down
        return None


def _parse_initial_datagram(data: bytes) -> tuple[bytes, list[tuple[int, bytes]]] | None:
    end = len(data)
    # Cheap rejects before any crypto: long header bit, known version, Initial
    # type.  The fixed bit (0x40) is not checked on purpose: RFC 9287 lets
    # endpoints grease it, and the AEAD check is authoritative anyway.
    if end < 7 or not data[0] & 0x80:
        return None
    version = int.from_bytes(data[1:5], "big")
    params = _VERSIONS.get(version)
    if params is None or (data[0] >> 4) & 0x03 != params.initial_type:
        return None

    first_dcid: bytes | None = None
    frames: list[tuple[int, bytes]] = []
    pos = 0
    try:
        # Coalesced packets (RFC 9000 section 12.2): walk them using each
        # packet's Length field.  Anything that is not a long-header packet of
        # the same version ends the walk: a short-header packet extends to the
        # end of the datagram and zero bytes are padding.
        while pos < end:
            first = data[pos]
            if not first & 0x80 or pos + 7 > end:
                break
            if int.from_bytes(data[pos + 1 : pos + 5], "big") != version:
                break
            ptype = (first >> 4) & 0x03
            is_initial = ptype == params.initial_type
            # 0-RTT and Handshake carry a Length field too and can be skipped;
            # Retry has none and is never coalesced (nor sent by a client).
            if not is_initial and ptype == (params.initial_type + 3) & 0x03:
                break

            p = pos + 5
            dcid_len = data[p]
            if dcid_len > _MAX_CID_LEN:
                break
            p += 1
            dcid = data[p : p + dcid_len]
            p += dcid_len
            if p >= end:
                break
            scid_len = data[p]
            if scid_len > _MAX_CID_LEN:
                break
            p += 1 + scid_len
            if is_initial:
                token_len, p = _varint(data, p, end)
                p += token_len
            length, p = _varint(data, p, end)
            pn_offset = p
            packet_end = pn_offset + length
            if packet_end > end:
                break

            if is_initial and (first_dcid is None or dcid == first_dcid):
                # Receivers ignore coalesced packets with another DCID
                # (RFC 9000 section 12.2); so do we.
                if _decrypt_initial(data, pos, pn_offset, packet_end, version, dcid, frames):
                    if first_dcid is None:
                        first_dcid = dcid
                elif first_dcid is None:
                    # The leading packet is not a client Initial (e.g. a server
                    # Initial, or garbage that looked like one).
                    return None
            elif first_dcid is None:
                # Our contract is about datagrams that *start* with an Initial.
                return None
            pos = packet_end
    except _Truncated:
        pass

    if first_dcid is None:
        return None
    return first_dcid, frames


def _decrypt_initial(
    data: bytes,
    start: int,
    pn_offset: int,
    packet_end: int,
    version: int,
    dcid: bytes,
    frames: list[tuple[int, bytes]],
) -> bool:
    """Remove header and packet protection from the Initial packet
    ``data[start:packet_end]`` and collect its CRYPTO frames.

    Returns False (without touching ``frames``) if it does not authenticate.
    """
    sample_start = pn_offset + _SAMPLE_OFFSET
    # The sample must fit, which also guarantees room for the longest packet
    # number and the AEAD tag.
    if sample_start + _SAMPLE_LEN > packet_end:
        return False

    keys = _initial_keys(version, dcid)
    mask = keys.hp_mask(data[sample_start : sample_start + _SAMPLE_LEN])

    # Long header: only the low 4 bits of the first byte are protected
    # (reserved bits and packet number length).
    first = data[start] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    pn_end = pn_offset + pn_len
    pn_bytes = bytes(b ^ m for b, m in zip(data[pn_offset:pn_end], mask[1 : 1 + pn_len]))
    # The truncated packet number is used as-is: an observer has no packet
    # number history, and client Initial numbers start at 0 and stay far below
    # the 2^(8*pn_len) range in which the expansion would change them.
    packet_number = int.from_bytes(pn_bytes, "big")

    header = bytes((first,)) + data[start + 1 : pn_offset] + pn_bytes
    nonce = (keys.iv ^ packet_number).to_bytes(12, "big")
    try:
        payload = keys.aead.decrypt(nonce, data[pn_end:packet_end], header)
    except Exception:  # InvalidTag: not a client Initial for this DCID
        return False
    _parse_frames(payload, frames)
    return True


# --------------------------------------------------------------------------
# CRYPTO stream reassembly
# --------------------------------------------------------------------------


class CryptoAssembler:
    """Reassemble the Initial CRYPTO stream of one connection.

    CRYPTO frames may arrive in several packets, out of order, duplicated or
    overlapping.  Bytes are stored at their stream offsets together with a
    per-byte "received" map, so overlaps are merged with C-level slice
    operations and the contiguous prefix is found with ``bytearray.find``.
    When ranges overlap, the first bytes received win: a later retransmission
    cannot rewrite data already reported.

    Only the first ``max_bytes`` of the stream are kept; anything beyond is
    dropped, which bounds memory per connection even for hostile input.
    """

    __slots__ = ("max_bytes", "_data", "_have", "_contiguous")

    def __init__(self, max_bytes: int = 16384) -> None:
        self.max_bytes = max_bytes
        self._data = bytearray()
        self._have = bytearray()  # 1 where the byte at that offset was received
        self._contiguous = 0  # length of the gap-free prefix

    def add(self, offset: int, data: bytes) -> None:
        """Record ``data`` found at stream ``offset``; out-of-range parts are ignored."""
        if offset < 0:
            return
        start = offset
        stop = min(offset + len(data), self.max_bytes)
        if stop <= max(start, self._contiguous):
            return  # empty, beyond the bound, or entirely inside the known prefix
        if stop > len(self._have):
            grow = stop - len(self._have)
            self._data.extend(bytes(grow))
            self._have.extend(bytes(grow))

        # Fill only the holes of [start, stop) so that earlier data wins.
        pos = max(start, self._contiguous)
        have = self._have
        while pos < stop:
            hole = have.find(0, pos, stop)
            if hole < 0:
                break
            filled = have.find(1, hole, stop)
            if filled < 0:
                filled = stop
            self._data[hole:filled] = data[hole - offset : filled - offset]
            have[hole:filled] = b"\x01" * (filled - hole)
            pos = filled

        if start <= self._contiguous:
            gap = have.find(0, self._contiguous)
            self._contiguous = len(have) if gap < 0 else gap

    def contiguous(self) -> bytes:
        """The stream bytes available without a gap from offset 0."""
        return bytes(self._data[: self._contiguous])

    def client_hello(self) -> bytes | None:
        """The complete TLS handshake message at the start of the stream if it is
        a ClientHello (type 0x01) and all of it has arrived, else None."""
        if self._contiguous < 4 or self._data[0] != 0x01:
            return None
        total = 4 + int.from_bytes(self._data[1:4], "big")
        if total > self._contiguous:
            # Also covers a declared length beyond max_bytes: never complete.
            return None
        return bytes(self._data[:total])
