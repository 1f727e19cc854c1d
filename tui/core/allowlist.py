"""Allowlists: which hosts a container may reach.

A file has one entry per line: a host name (``api.anthropic.com``), a wildcard for any
subdomain (``*.amazonaws.com``), an IP address or network (``198.18.0.0/15``), each with
an optional ``:port`` (IPv6 addresses with a port are written ``[2001:db8::1]:443``).
``#`` starts a comment. Presets bundle what a given Claude Code setup needs.

Names seen on the wire are chosen by the watched container, which may be hostile: only
``choices_for`` turns one into entries, and only into entries for a valid host name, never
wider than the name's registrable domain (Public Suffix List).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import idna

from egress_tui.core.safetext import safe_text

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")
_REGION_AWS = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d+\Z")
_REGION_GCP = re.compile(r"^([a-z]+-[a-z]+\d+|global|us|eu)\Z")


# An allowlist is a short text file; anything bigger is the wrong file (or /dev/zero).
MAX_FILE_BYTES = 4 * 1024 * 1024
_LDH = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


class AllowlistError(ValueError):
    """A bad allowlist entry, file or preset; the message says where and why."""


def _lookup_form(name: str) -> str:
    """The form names are compared in: lowercase, no trailing dot, A-labels for IDNs."""
    name = name.rstrip(".")
    if name.isascii():
        return name.lower()
    return host_form(name) or name.lower()


@dataclass(frozen=True, slots=True)
class Entry:
    pattern: str                 # "api.anthropic.com", "*.amazonaws.com", or an address/network
    port: int | None = None
    source: str = ""             # "file.txt:3" or "preset anthropic"
    comment: str = ""
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    @property
    def wildcard(self) -> bool:
        return self.pattern.startswith("*.")

    def matches_name(self, name: str) -> bool:
        name = _lookup_form(name)
        if self.network is not None:
            try:
                return ipaddress.ip_address(name) in self.network
            except ValueError:
                return False
        if self.wildcard:
            return name.endswith(self.pattern[1:]) and len(name) > len(self.pattern) - 1
        return name == self.pattern

    def text(self) -> str:
        p = self.pattern
        if self.port is None:
            return p
        if self.network is not None and ":" in p:
            return f"[{p}]:{self.port}"
        return f"{p}:{self.port}"


def is_host_name(name: str) -> bool:
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    return all(_LABEL.match(lb) for lb in labels) and not labels[-1].isdigit()


def parse_entry(text: str, source: str = "", comment: str = "") -> Entry:
    """Parse one allowlist entry; raises AllowlistError saying what is wrong."""
    s = text.strip().lower()
    text = safe_text(text.strip(), 80)
    if not s:
        raise AllowlistError("empty entry")
    if "://" in s:
        bare = s.split("://", 1)[1].split("/", 1)[0]
        raise AllowlistError(f"'{text}' is a URL, not a host name: write just '{safe_text(bare, 80)}'")
    port = None
    host = s
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise AllowlistError(f"'{text}': missing ']' after an IPv6 address")
        host, rest = s[1:end], s[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise AllowlistError(f"'{text}': expected ':PORT' after ']'")
            port = _port(rest[1:], text)
    elif s.count(":") == 1:
        host, p = s.split(":")
        port = _port(p, text)
    if "/" in host or _looks_like_address(host):
        try:
            net = ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise AllowlistError(f"'{text}' is not a valid IP address or network") from None
        return Entry(str(net) if net.num_addresses > 1 else str(net.network_address), port,
                     source, comment, net)
    name = host.rstrip(".")
    if name.startswith("*."):
        base = name[2:]
        if "*" in base or not is_host_name(base) or "." not in base:
            raise AllowlistError(f"'{text}' is not a host name or a wildcard like *.example.com")
        return Entry(name, port, source, comment)
    if "*" in name:
        raise AllowlistError(f"'{text}': a wildcard must be a whole first label, like *.example.com")
    if not is_host_name(name):
        raise AllowlistError(f"'{text}' is not a host name")
    if _inet_aton(name):
        # getent and friends would resolve it to an address without asking DNS
        raise AllowlistError(f"'{text}' reads as the address {_inet_aton(name)}: write the address itself")
    return Entry(name, port, source, comment)


def _inet_aton(s: str) -> str:
    """The IPv4 address libc's resolver reads ``s`` as (``0x7f.1`` is 127.0.0.1), or ""."""
    if not s.isascii() or not s[:1].isdigit():
        return ""
    try:
        return socket.inet_ntoa(socket.inet_aton(s))
    except (OSError, ValueError):
        return ""


def _looks_like_address(s: str) -> bool:
    return ":" in s or bool(re.fullmatch(r"[0-9.]+", s))


def _port(p: str, text: str) -> int:
    if not p.isdigit() or not 0 < int(p) < 65536:
        raise AllowlistError(f"'{text}': port must be a number from 1 to 65535")
    return int(p)


# -- entries from observed names ---------------------------------------------------

def host_form(name: str) -> str | None:
    """``name`` as an allowlist writes it (lowercase ASCII, IDNs as ``xn--`` A-labels), or
    None when it is not a valid host name: letters, digits and hyphens, labels of 1 to 63
    bytes, at most 253 bytes, a top-level label that is not all digits. Labels that are not
    ASCII go through IDNA 2008 as they are (what it rejects, such as upper case or joiners,
    is rejected here); ``xn--`` labels must be what IDNA would have produced."""
    name = name[:-1] if name.endswith(".") else name
    # a U-label is never longer than its A-label: the bound also keeps IDNA's work small
    if not name or len(name) > 253:
        return None
    labels = []
    for label in name.split("."):
        if len(label) > 63:
            return None
        if label.isascii():
            label = label.lower()
            if label.startswith("xn--") and _alabel(label) != label:
                return None
        else:
            label = _alabel(label) or ""
        if not _LDH.match(label):
            return None
        labels.append(label)
    out = ".".join(labels)
    if len(out) > 253 or labels[-1].isdigit():
        return None
    return out


def _alabel(label: str) -> str | None:
    try:
        return idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


@lru_cache(maxsize=1)
def _psl():
    # the list ships inside the package: no download, ever
    from publicsuffixlist import PublicSuffixList
    return PublicSuffixList()


def registrable_domain(host: str) -> str | None:
    """The domain a single owner registered (``example.co.uk`` for ``a.b.example.co.uk``),
    by the Public Suffix List with its private part (``github.io``, ``s3.amazonaws.com``...);
    None when ``host`` is itself a public suffix or a top-level name."""
    return _psl().privatesuffix(host)


@dataclass(frozen=True, slots=True)
class Choice:
    """One allowlist entry a user may add for an observed name."""
    entry: str    # the allowlist line: "api.anthropic.com" or "*.anthropic.com"
    allows: str   # one line saying what it lets through


@dataclass(frozen=True, slots=True)
class Choices:
    """What may be added to the allowlist for one observed name."""
    host: str | None            # the name as an allowlist writes it; None: not a host name
    choices: tuple[Choice, ...]
    why: str = ""               # one line: why nothing, or only the exact name, is offered


# A deep name (a.b.c.d....example.com) would otherwise offer one wildcard per level.
_MAX_WILDCARDS = 4


def choices_for(observed: str) -> Choices:
    """The entries a user may choose for a name seen on the wire, exact name first.

    Never an address or a network (an entry for ``0.0.0.0/0`` allows everything), never a
    name holding ``*`` (clients connect to host names, not patterns), and no wildcard wider
    than the name's registrable domain: ``a.b.example.co.uk`` offers itself,
    ``*.b.example.co.uk`` and ``*.example.co.uk``, never ``*.co.uk``."""
    if "*" in observed:
        return Choices(None, (), "a name with '*' is not a host name, so nothing is offered; if you trust "
                                 "a whole domain, write its *.domain entry into the allowlist file yourself")
    host = host_form(observed)
    kind = _address_kind(observed.rstrip(".")) or (_address_kind(host) if host else "")
    if kind:
        return Choices(None, (), f"{kind}, not a host name, so nothing is offered; if you really mean it, "
                                 "write it into the allowlist file yourself")
    if host is None:
        return Choices(None, (), "not a valid host name (letters, digits and hyphens, labels of at most 63 "
                                 "bytes, at most 253 in all), so nothing is offered; write the real host "
                                 "name into the allowlist file yourself")
    unicode = _unicode_form(host)
    exact = Choice(host, f"only {host}" + (f" ({unicode})" if unicode != host else ""))
    base = registrable_domain(host)
    if base is None:
        return Choices(host, (exact,), f"no wildcard: {host} is a public suffix or a top-level name, "
                                       "under which anyone can register their own domains")
    labels = host.split(".")
    parents = [".".join(labels[i:]) for i in range(1, len(labels) - base.count("."))]
    if len(parents) > _MAX_WILDCARDS:
        parents = parents[:_MAX_WILDCARDS - 1] + [base]
    wild = tuple(Choice(f"*.{p}", f"{host} and any other subdomain of {p}, not {p} itself")
                 for p in parents)
    return Choices(host, (exact, *wild))


def _address_kind(name: str) -> str:
    """"an address", "an address range" or "" for a name that is neither."""
    s = name.strip().strip("[]")
    try:
        ipaddress.ip_address(s)
        return "an address"
    except ValueError:
        pass
    if _inet_aton(s):
        return "an address in disguise (resolvers read it as " + _inet_aton(s) + ")"
    if "/" in s:
        try:
            ipaddress.ip_network(s, strict=False)
            return "an address range"
        except ValueError:
            pass
    return ""


def _unicode_form(host: str) -> str:
    if "xn--" not in host:
        return host
    try:
        return idna.decode(host)
    except (idna.IDNAError, UnicodeError, ValueError):
        return host


# A learned entry's comment: one line, however many programs a container named.
LEARNED_COMMENT_MAX = 400


def learned_allowlist(seen: Iterable[tuple[str, str]]) -> tuple[Allowlist, list[str]]:
    """The minimal allowlist for ``(name, comment)`` pairs seen during a run: each name's
    exact entry when it is a host name. Returns it and one line for each name left out,
    saying why (the name visibly escaped: it comes from the container). Each comment becomes
    one line with every control escaped (it may name programs the container chose)."""
    al = Allowlist()
    skipped = []
    for name, comment in seen:
        c = choices_for(name)
        if c.host is None:
            skipped.append(f"'{safe_text(name, 80)}': {c.why}")
        else:
            al.add(parse_entry(c.host, "learn", safe_text(" ".join(comment.split()), LEARNED_COMMENT_MAX)))
    return al, skipped


# -- presets -------------------------------------------------------------------------

def _anthropic() -> list[tuple[str, str]]:
    return [
        ("api.anthropic.com", "the Messages API (required)"),
        ("statsig.anthropic.com", "feature flags and telemetry (official list)"),
        ("sentry.io", "error reports (official list)"),
        ("*.sentry.io", "error reports: ingest hosts such as o1.ingest.us.sentry.io"),
        ("console.anthropic.com", "login and OAuth"),
        ("platform.claude.com", "login and OAuth (interactive mode)"),
        ("raw.githubusercontent.com", "release notes (interactive mode)"),
    ]


def _bedrock(region: str) -> list[tuple[str, str]]:
    if not _REGION_AWS.match(region):
        raise AllowlistError(f"'{region}' is not an AWS region like ap-northeast-1")
    return [
        (f"bedrock-runtime.{region}.amazonaws.com", "model invocation (required)"),
        (f"bedrock.{region}.amazonaws.com", "model and inference profile lookups"),
    ]


def _vertex(region: str) -> list[tuple[str, str]]:
    if not _REGION_GCP.match(region):
        raise AllowlistError(f"'{region}' is not a Google Cloud region like us-east5 (or 'global')")
    endpoint = "aiplatform.googleapis.com" if region == "global" else f"{region}-aiplatform.googleapis.com"
    return [
        (endpoint, "model invocation (required)"),
        ("oauth2.googleapis.com", "exchanging credentials for an access token"),
    ]


PRESETS = {
    "anthropic": (_anthropic, None, "Claude Code against Anthropic's API"),
    "bedrock": (_bedrock, "REGION", "Claude Code through AWS Bedrock (CLAUDE_CODE_USE_BEDROCK=1)"),
    "vertex": (_vertex, "REGION", "Claude Code through Google Vertex AI (CLAUDE_CODE_USE_VERTEX=1)"),
}
PRESET_EXAMPLES = {"bedrock": "ap-northeast-1", "vertex": "us-east5"}


def preset_entries(spec: str) -> list[Entry]:
    """Entries of a preset named like ``anthropic`` or ``bedrock:ap-northeast-1``."""
    name, _, arg = spec.strip().lower().partition(":")
    if name not in PRESETS:
        raise AllowlistError(f"unknown preset '{spec}'; known: " + ", ".join(
            n + (":" + a if a else "") for n, (_, a, _) in PRESETS.items()) + " (see egress-tui presets)")
    fn, argname, _ = PRESETS[name]
    if argname and not arg:
        raise AllowlistError(f"preset '{name}' needs a {argname}, like {name}:{PRESET_EXAMPLES[name]}")
    if not argname and arg:
        raise AllowlistError(f"preset '{name}' takes no argument")
    items = fn(arg) if argname else fn()
    return [parse_entry(p, f"preset {spec}", why) for p, why in items]


class Allowlist:
    """Entries in file order, deduplicated by (pattern, port), with an index so that
    loading and every lookup stay linear however long the list is.

    ``match`` reports the first entry, in file order, that allows a name: the same answer
    as trying every entry in turn, found through exact names (a dict), wildcards (a dict
    keyed by the domain after ``*.``, probed with the name's parents) and networks (a dict
    per prefix length, probed with the address cut to that length)."""

    def __init__(self, entries: Iterable[Entry] = (), sources: Iterable[str] = ()):
        self.sources: list[str] = list(sources)
        self.entries = entries

    @property
    def entries(self) -> tuple[Entry, ...]:
        """The entries in order; assign a new sequence to replace them all."""
        return tuple(self._by_key.values())

    @entries.setter
    def entries(self, entries: Iterable[Entry]) -> None:
        self._by_key: dict[tuple[str, int | None], Entry] = {}
        self._exact: dict[str, list[tuple[int, Entry]]] = {}
        self._wild: dict[str, list[tuple[int, Entry]]] = {}
        self._wild_longest = 0
        self._nets: dict[tuple[int, int], dict[object, list[tuple[int, Entry]]]] = {}
        self._next = 0
        for e in entries:
            self.add(e)

    def __bool__(self) -> bool:
        return bool(self.sources)

    def __repr__(self) -> str:
        return f"Allowlist({len(self._by_key)} entries, sources={self.sources!r})"

    def add(self, entry: Entry) -> None:
        key = (entry.pattern, entry.port)
        if key in self._by_key:
            return
        pos = self._next
        self._next += 1
        self._by_key[key] = entry
        if entry.network is not None:
            net = entry.network
            self._nets.setdefault((net.version, net.prefixlen), {}).setdefault(net, []).append((pos, entry))
        elif entry.wildcard:
            base = entry.pattern[2:]
            self._wild.setdefault(base, []).append((pos, entry))
            self._wild_longest = max(self._wild_longest, len(base))
        else:
            self._exact.setdefault(entry.pattern, []).append((pos, entry))

    def remove(self, pattern: str) -> bool:
        kept = [e for e in self._by_key.values() if e.pattern != pattern]
        if len(kept) == len(self._by_key):
            return False
        self.entries = kept
        return True

    def copy(self) -> "Allowlist":
        """An independent copy: adding to or removing from one never changes the other
        (entries are immutable, so they are shared)."""
        return Allowlist(self.entries, self.sources)

    def matching(self, name: str) -> list[Entry]:
        """Every entry that allows ``name``, on any port, in file order."""
        return [e for _, e in sorted(self._candidates(_lookup_form(name)), key=lambda pe: pe[0])]

    def remove_matching(self, name: str) -> list[Entry]:
        """Remove every entry that allows ``name`` (on any port); returns them in file order."""
        gone = self.matching(name)
        if gone:
            drop = {(e.pattern, e.port) for e in gone}
            self.entries = [e for k, e in self._by_key.items() if k not in drop]
        return gone

    def add_preset(self, spec: str) -> None:
        for e in preset_entries(spec):
            self.add(e)
        self.sources.append(f"preset {spec}")

    def add_file(self, path: str) -> None:
        """Read an allowlist file once (FIFOs and ``<(cmd)`` work), at most MAX_FILE_BYTES."""
        cap = MAX_FILE_BYTES
        try:
            with open(path, "rb") as f:
                data = f.read(cap + 1)
        except OSError as e:
            raise AllowlistError(f"cannot read allowlist {path}: {e.strerror}") from None
        if len(data) > cap:
            raise AllowlistError(f"allowlist {path} is larger than {cap // (1024 * 1024)} MiB: an allowlist "
                                 "holds one host a line; check that this is the right file")
        if b"\0" in data:
            raise AllowlistError(f"allowlist {path} holds NUL bytes: it is not a text file; "
                                 "check that this is the right file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise AllowlistError(f"allowlist {path} is not UTF-8 text") from None
        self.add_text(text, path)
        self.sources.append(path)

    def add_text(self, text: str, origin: str = "<text>") -> None:
        for i, line in enumerate(text.splitlines(), 1):
            body, _, comment = line.partition("#")
            body = body.strip()
            if not body:
                continue
            if len(body.split()) > 1:
                raise AllowlistError(f"{origin} line {i}: one entry per line, found '{safe_text(body, 80)}'")
            try:
                self.add(parse_entry(body, f"{origin}:{i}", comment.strip()))
            except AllowlistError as e:
                raise AllowlistError(f"{origin} line {i}: {e}") from None

    def _candidates(self, name: str):
        """(position, entry) for every entry whose pattern covers ``name`` (already in
        lookup form), whatever its port."""
        yield from self._exact.get(name, ())
        i = name.rfind(".")
        while i > 0:  # something must come before the dot: *.x does not match x
            suffix = name[i + 1:]
            if len(suffix) > self._wild_longest:
                break
            yield from self._wild.get(suffix, ())
            i = name.rfind(".", 0, i)
        if self._nets:
            try:
                addr = ipaddress.ip_address(name)
            except ValueError:
                return
            for (version, prefixlen), nets in self._nets.items():
                if version == addr.version:
                    yield from nets.get(ipaddress.ip_network((addr, prefixlen), strict=False), ())

    def match(self, name: str, port: int | None = None) -> Entry | None:
        """The first entry, in file order, that allows ``name`` on ``port`` (any port: None)."""
        best: tuple[int, Entry] | None = None
        for pos, e in self._candidates(_lookup_form(name)):
            if (best is None or pos < best[0]) and (e.port is None or port is None or e.port == port):
                best = (pos, e)
        return best[1] if best else None

    def verdict(self, name: str, ports: list[int] | None = None,
                addresses: list[str] | None = None) -> bool | None:
        """True if every port used on this host is allowed, False if not, None with no list.

        A connection is also allowed when its address falls in an allowed network, so an
        address-only entry covers hosts that were reached under any name.
        """
        if not self:
            return None
        for port in (ports or [None]):
            if self.match(name, port):
                continue
            if addresses and all(self.match(a, port) for a in addresses):
                continue
            return False
        return True

    def to_text(self) -> str:
        lines = ["# egress-tui allowlist: one host per line, *.domain for subdomains, optional :port"]
        for e in self.entries:
            # a comment is one line, whatever it was made from (a command line, say)
            comment = " ".join(e.comment.split())
            lines.append(e.text() + (f"  # {comment}" if comment else ""))
        return "\n".join(lines) + "\n"


def build(files: list[str] | None = None, presets: list[str] | None = None) -> Allowlist:
    """An allowlist from files and presets; empty (no verdicts) when neither is given."""
    al = Allowlist()
    for p in presets or []:
        al.add_preset(p)
    for f in files or []:
        al.add_file(f)
    return al
