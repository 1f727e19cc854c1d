"""A hypothesis strategy for names a hostile container can put on the wire (SNI, HTTP Host,
DNS): address ranges and addresses (inet_aton spellings too), wildcards, public suffixes
from both parts of the Public Suffix List, IDNs good and bad, control characters, terminal
escapes, Rich markup, labels and names just over the limits, and real-looking host names
built on any of these."""

from __future__ import annotations

from hypothesis import strategies as st

# suffixes where a wildcard would cover domains of many owners: ICANN ones and private
# ones (hosting platforms and cloud endpoints), plain, wildcard (*.compute.amazonaws.com)
# and exception (!city.kawasaki.jp) rules
PUBLIC_SUFFIXES = ["com", "co.uk", "uk", "jp", "kawasaki.jp", "city.kawasaki.jp", "github.io",
                   "s3.amazonaws.com", "us-east-1.amazonaws.com", "x.compute.amazonaws.com",
                   "compute.amazonaws.com", "amazonaws.com", "herokuapp.com", "blogspot.com",
                   "appspot.com", "pages.dev", "xn--p1ai", "рф", "test", "localhost", "internal"]

ADDRESSES = ["0.0.0.0/0", "::/0", "0.0.0.0/1", "128.0.0.0/1", "10.0.0.0/8", "10.0.0.1", "127.0.0.1",
             "::", "::1", "[::1]", "fe80::1%eth0", "2001:db8::/32", "::ffff:10.0.0.1", "0", "1",
             "0x7f.0x1", "0x7f000001", "2130706433", "127.1", "0177.0.0.1", "10.0.0.1:443", "1.2.3.4.",
             "0.0.0.0/0.", "10.0.0.0/255.0.0.0"]

NASTY = ["*", "*.", "*.*", "**", "a*.example.com", "*.co.uk", "*.com", "*.github.io", "", ".", "..",
         "example..com", "-a.example", "a-.example", "a_b.example", "a b.example", "[/]", "[bold red]x[/]",
         "[link=https://evil.example]x[/link]", "\x1b[8m", "\x1b]0;pwned\x07", "\x9b31m", "\r", "\n", "\t",
         "\x00", "\u202e", "\u200b", "\u200d", "\ufffd", "ü", "Ü", "ß", "\u212a", "\u0130", "ı", "а",
         "ٱ", "١", "xn--", "xn--abc", "xn--bcher-kva", "XN--BCHER-KVA", "bücher", "ab--cd", "r3---sn-x",
         "a" * 63, "a" * 64, "%2e", "@", ":", "/", "\\"]

_LDH_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-"


def _labels() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(_LDH_ALPHABET, min_size=1, max_size=12),
        st.sampled_from(NASTY),
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=6),
        st.text("abcÄäöüß.-*[]/", min_size=1, max_size=8),
        st.integers(0, 300).map(str),
    )


def hostile_names() -> st.SearchStrategy[str]:
    """Names as a hostile container would send them."""
    suffix = st.sampled_from(PUBLIC_SUFFIXES)
    labels = st.lists(_labels(), min_size=1, max_size=5)
    return st.one_of(
        st.sampled_from(ADDRESSES + NASTY + PUBLIC_SUFFIXES),
        st.builds(lambda ls, s: ".".join([*ls, s]), labels, suffix),
        st.builds(lambda ls, s: "*." + ".".join([*ls, s]), labels, suffix),
        labels.map(".".join),
        st.builds(lambda n, s: ".".join(["a" * 63] * n + [s]), st.integers(1, 5), suffix),
        st.builds(lambda s, t: s + t, st.sampled_from(ADDRESSES + PUBLIC_SUFFIXES), st.sampled_from(["", ".", ":443", "/0"])),
    )
