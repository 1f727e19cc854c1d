"""Allowlists: which hosts a container may reach.

A file has one entry per line: a host name (``api.anthropic.com``), a wildcard for any
subdomain (``*.amazonaws.com``), an IP address or network (``198.18.0.0/15``), each with
an optional ``:port`` (IPv6 addresses with a port are written ``[2001:db8::1]:443``).
``#`` starts a comment. Presets bundle what a given Claude Code setup needs.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_REGION_AWS = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d+$")
_REGION_GCP = re.compile(r"^([a-z]+-[a-z]+\d+|global|us|eu)$")


class AllowlistError(ValueError):
    """A bad allowlist entry, file or preset; the message says where and why."""


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
        name = name.lower().rstrip(".")
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
    if not s:
        raise AllowlistError("empty entry")
    if "://" in s:
        bare = s.split("://", 1)[1].split("/", 1)[0]
        raise AllowlistError(f"'{text}' is a URL, not a host name: write just '{bare}'")
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
    return Entry(name, port, source, comment)


def _looks_like_address(s: str) -> bool:
    return ":" in s or bool(re.fullmatch(r"[0-9.]+", s))


def _port(p: str, text: str) -> int:
    if not p.isdigit() or not 0 < int(p) < 65536:
        raise AllowlistError(f"'{text}': port must be a number from 1 to 65535")
    return int(p)


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


@dataclass
class Allowlist:
    entries: list[Entry] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sources)

    def add(self, entry: Entry) -> None:
        if not any(e.pattern == entry.pattern and e.port == entry.port for e in self.entries):
            self.entries.append(entry)

    def remove(self, pattern: str) -> bool:
        before = len(self.entries)
        self.entries = [e for e in self.entries if e.pattern != pattern]
        return len(self.entries) != before

    def add_preset(self, spec: str) -> None:
        for e in preset_entries(spec):
            self.add(e)
        self.sources.append(f"preset {spec}")

    def add_file(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise AllowlistError(f"cannot read allowlist {path}: {e.strerror}") from None
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
                raise AllowlistError(f"{origin} line {i}: one entry per line, found '{body}'")
            try:
                self.add(parse_entry(body, f"{origin}:{i}", comment.strip()))
            except AllowlistError as e:
                raise AllowlistError(f"{origin} line {i}: {e}") from None

    def match(self, name: str, port: int | None = None) -> Entry | None:
        for e in self.entries:
            if e.matches_name(name) and (e.port is None or port is None or e.port == port):
                return e
        return None

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
            lines.append(e.text() + (f"  # {e.comment}" if e.comment else ""))
        return "\n".join(lines) + "\n"


def build(files: list[str] | None = None, presets: list[str] | None = None) -> Allowlist:
    """An allowlist from files and presets; empty (no verdicts) when neither is given."""
    al = Allowlist()
    for p in presets or []:
        al.add_preset(p)
    for f in files or []:
        al.add_file(f)
    return al
