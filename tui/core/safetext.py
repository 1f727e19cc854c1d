"""Strings from the wire, made safe to show: on a terminal, in a text table, in CSV and Markdown.

The watched container chooses every SNI, ALPN, Host header, DNS name and CNAME we display.
Written as is, such a string can drive the terminal (``ESC[8m`` hides the verdict after it,
``ESC]0;...`` retitles the window), reorder or hide text (bidi and zero-width controls), run a
formula in a spreadsheet, or break a Markdown table. Everything here turns such a string into
plain, visible data. No Textual, no Rich: the report, the CLI and the TUI all use it.
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring_ascii

ELLIPSIS = "…"

# Every code point a terminal or a text renderer treats as something other than a glyph:
# C0, DEL and C1 controls (Cc), format and bidi controls that hide or reorder text (Cf),
# line and paragraph separators (Zl, Zp: str.splitlines breaks on them), and lone surrogates
# (Cs: left by errors="surrogateescape", they make printing raise). The backslash is escaped
# too, so the escaped form is unambiguous: a name cannot fake an escape it does not contain.
# tests/test_hostile_output.py checks this class against unicodedata.
_UNSAFE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]")
_SHORT = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_cache: dict[str, str] = {}


def _escape_one(m: re.Match) -> str:
    c = m.group()
    e = _cache.get(c)
    if e is None:
        n = ord(c)
        e = _SHORT.get(c) or (f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")
        _cache[c] = e
    return e


def safe_text(value: object, limit: int | None = None) -> str:
    """``value`` as text that prints as itself: every control visibly escaped (``\\x1b``,
    ``\\u202e``, ``\\n``, ``\\\\``). With ``limit``, at most that many characters, the last
    one ``…`` when something was cut."""
    s = _UNSAFE.sub(_escape_one, value if isinstance(value, str) else str(value))
    if limit is not None and len(s) > limit:
        s = s[:max(limit - 1, 0)] + ELLIPSIS
    return s


# OWASP "CSV injection": a spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: controls escaped, and a leading ``'`` when it
    would otherwise start a formula (``=cmd|...``, ``+1``, ``@SUM(...)``)."""
    s = safe_text(value)
    return "'" + s if s.startswith(_FORMULA_START) else s


# Backslash and pipe keep a table row whole; the rest stop a name from turning into a link,
# an image, HTML, emphasis or a code span when the report is rendered.
_MD_SPECIAL = re.compile(r"([\\|`*_\[\]<>&~])")


def md_text(value: object) -> str:
    """Text for a Markdown table cell or a line of prose: controls and newlines escaped
    visibly, and Markdown's own syntax (``|``, ``\\``, ``[``, ``<``, ...) escaped so it
    renders as the characters themselves."""
    return _MD_SPECIAL.sub(r"\\\1", safe_text(value))


def md_code(value: object) -> str:
    """An inline code span holding ``value`` as is: the fence is longer than any run of
    backticks inside, so the value cannot close it (backslashes do not escape in code)."""
    s = safe_text(value)
    runs = [len(r) for r in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def json_text(obj: object, **kw) -> str:
    """JSON whose every control is escaped: ``json.dumps`` leaves DEL raw, even in ASCII mode."""
    text = None
    if kw.keys() == {"indent"} and isinstance(kw["indent"], int) and not isinstance(kw["indent"], bool):
        text = _indented(obj, " " * kw["indent"])
    if text is None:
        text = json.dumps(obj, ensure_ascii=True, **kw)
    return text.replace("\x7f", "\\u007f")


class _NotPlain(Exception):
    pass


_enc = encode_basestring_ascii
_int = int.__repr__
_float = float.__repr__
_INF = float("inf")


def _number(o: float) -> str:
    if o != o:
        return "NaN"
    if o == _INF:
        return "Infinity"
    if o == -_INF:
        return "-Infinity"
    return _float(o)


def _key(k: object) -> str:
    if isinstance(k, str):
        return _enc(k)
    if isinstance(k, float):
        return _enc(_number(k))
    if k is True or k is False or k is None:
        return '"' + ("true" if k is True else "false" if k is False else "null") + '"'
    if isinstance(k, int):
        return '"' + _int(k) + '"'
    raise _NotPlain


def _indented(obj: object, indent: str) -> str | None:
    """``json.dumps(obj, ensure_ascii=True, indent=...)`` character for character, about five
    times faster: json's own C encoder does not indent, and its Python one builds a generator
    per container. None for anything but plain JSON values (json.dumps then says why).
    tests/test_fastpath.py compares the two on hostile and random values."""
    parts: list[str] = []
    try:
        _value(obj, 0, indent, parts.append)
    except (_NotPlain, RecursionError):
        return None
    return "".join(parts)


def _value(o: object, level: int, indent: str, add) -> None:
    """One value of _indented (a module function: a nested one would be a reference cycle,
    garbage only the cyclic collector frees, holding its output until then)."""
    if isinstance(o, str):
        add(_enc(o))
    elif o is None:
        add("null")
    elif o is True:
        add("true")
    elif o is False:
        add("false")
    elif isinstance(o, int):
        add(_int(o))
    elif isinstance(o, float):
        add(_number(o))
    elif isinstance(o, (list, tuple)):
        if not o:
            add("[]")
            return
        nl = "\n" + indent * (level + 1)
        if all(type(v) is str for v in o):
            add("[" + nl + ("," + nl).join(map(_enc, o)) + "\n" + indent * level + "]")
            return
        add("[" + nl)
        first = True
        for v in o:
            if first:
                first = False
            else:
                add("," + nl)
            _value(v, level + 1, indent, add)
        add("\n" + indent * level + "]")
    elif isinstance(o, dict):
        if not o:
            add("{}")
            return
        nl = "\n" + indent * (level + 1)
        sep = "{" + nl
        for k, v in o.items():
            t = type(v)
            # the common leaves inline; the rest (and subclasses) through _value()
            if t is str:
                add(sep + _key(k) + ": " + _enc(v))
            elif t is int:
                add(sep + _key(k) + ": " + _int(v))
            elif t is bool or v is None:
                add(sep + _key(k) + (": true" if v is True else ": false" if v is False else ": null"))
            else:
                add(sep + _key(k) + ": ")
                _value(v, level + 1, indent, add)
            sep = "," + nl
        add("\n" + indent * level + "}")
    else:
        raise _NotPlain
