"""Hostile DNS messages: compression bombs and pointer tricks (for tests and make bench)."""

from __future__ import annotations

import struct


def compression_bomb(size: int = 61_000, backwards: bool = True, labels_per_link: int = 30,
                     links_count: int = 31) -> bytes:
    """A response whose names chain through pointers: each link is ``labels_per_link``
    labels and a pointer to the link before it; then as many answers as fit, each owned by
    the last link, so every owner name is the whole chain (far past 255 octets, within a
    32-jump limit).

    With ``backwards=False`` the first link points forwards to the last one, a loop a
    parser that only counts jumps walks many times before giving up.
    """
    header = struct.pack("!HHHHHH", 0x4242, 0x8180, 1, 0, 0, 0)
    body = bytearray(b"\x01a\x00" + struct.pack("!HH", 1, 1))  # question "a", A IN at offset 12
    # The chain sits in the rdata of a first (TXT) answer, where a parser does not walk it.
    link = b"\x01b" * labels_per_link
    blob_at = 12 + len(body) + 2 + 10
    links = []
    blob = bytearray()
    prev = 12
    for _ in range(links_count):
        links.append(blob_at + len(blob))
        blob += link + struct.pack("!H", 0xC000 | prev)
        prev = links[-1]
    if not backwards:
        blob[len(link):len(link) + 2] = struct.pack("!H", 0xC000 | links[-1])
    body += b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, len(blob)) + blob
    answers = 1
    rr = struct.pack("!H", 0xC000 | links[-1]) + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([198, 18, 0, 1])
    while 12 + len(body) + len(rr) <= size and answers < 0xFFFF:
        body += rr
        answers += 1
    return header[:6] + struct.pack("!H", answers) + header[8:] + bytes(body)
