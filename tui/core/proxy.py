"""Proxies: what the container is told to use, read from its environment as the engine
(Docker) keeps it, never from inside the container.

``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` in any case: the lower-case
spelling wins when both are set, as curl and most HTTP clients do. A proxy URL's userinfo is
a credential: it is kept only in ``ProxyEndpoint.userinfo`` (for a rerun that must pass it on)
and every text made from an endpoint shows ``***`` instead.

Core: imports neither Textual nor the Docker SDK.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from egress_tui.core.safetext import safe_text
from egress_tui.core.secrets import MASK

# The variables, by the lower-case name that stands for every spelling of it.
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
# Default port per scheme when the URL gives none. (curl itself assumes 1080 for any proxy
# without a port; Python, Node and Go take the scheme's port, as here. The status bar always
# shows the port in use, so a difference is visible.)
SCHEMES = {"http": 80, "https": 443, "socks": 1080, "socks4": 1080, "socks4a": 1080,
           "socks5": 1080, "socks5h": 1080}
MAX_VALUE = 4096
MAX_NO_PROXY = 256
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,19}")


class ProxyError(ValueError):
    """A proxy setting that cannot be used; the message is one line and shows no credential."""


@dataclass(frozen=True)
class ProxyEndpoint:
    """One proxy: where it listens and what speaks there."""

    scheme: str          # http, https, socks4, socks4a, socks5, socks5h
    host: str            # lower-case name, or an address (IPv6 without brackets)
    port: int
    var: str = ""        # the variable it came from, as spelled ("HTTPS_PROXY")
    userinfo: str = field(default="", repr=False, compare=False)  # a credential: never shown

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL to show: credentials masked."""
        cred = f"{MASK}@" if self.userinfo else ""
        return f"{self.scheme}://{cred}{self.authority}"

    @property
    def is_address(self) -> bool:
        return _address(self.host) is not None

    @property
    def encrypted(self) -> bool:
        """An ``https://`` proxy: the client speaks TLS to the proxy itself, so the CONNECT
        inside, and the destination it names, cannot be seen on the wire."""
        return self.scheme == "https"

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class ProxyConfig:
    """The proxy settings of one container (or of one capture, given on the command line)."""

    vars: tuple[tuple[str, ProxyEndpoint], ...] = ()   # (name as spelled, endpoint), http/https/all
    no_proxy: tuple[str, ...] = ()
    no_proxy_var: str = ""
    problems: tuple[str, ...] = ()                     # settings that could not be read, one line each

    def __bool__(self) -> bool:
        return bool(self.vars)

    @property
    def endpoints(self) -> list[ProxyEndpoint]:
        """Every distinct proxy, in the order http, https, all."""
        seen: dict[tuple, ProxyEndpoint] = {}
        for _var, ep in self.vars:
            seen.setdefault((ep.scheme, ep.host, ep.port), ep)
        return list(seen.values())

    def for_scheme(self, scheme: str) -> ProxyEndpoint | None:
        """The proxy a client uses for a URL of this scheme (http or https)."""
        want = f"{scheme}_proxy"
        for var, ep in self.vars:
            if var.lower() == want:
                return ep
        for var, ep in self.vars:
            if var.lower() in ("all_proxy", "--proxy"):  # --proxy on the command line: for every scheme
                return ep
        return None

    def excluded(self, host: str) -> bool:
        """NO_PROXY says this host goes direct: ``*``, an exact name, a domain suffix (with
        or without a leading dot), an address or a network."""
        host = host.lower().rstrip(".")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        addr = _address(host)
        for item in self.no_proxy:
            if item == "*":
                return True
            if "/" in item:
                if addr is not None:
                    try:
                        if addr in ipaddress.ip_network(item, strict=False):
                            return True
                    except ValueError:
                        pass
                continue
            bare = item.lstrip(".").lstrip("*").lstrip(".").rstrip(".")
            if not bare:
                continue
            if host == bare or host.endswith("." + bare):
                return True
            if addr is not None and _address(bare.strip("[]")) == addr:  # fd00::1 is FD00:0::0001
                return True
        return False

    def summary(self) -> str:
        """One line for a status bar: ``proxy http://squid:3128 (HTTP_PROXY, HTTPS_PROXY); no_proxy localhost``."""
        return _summary([(var, ep.url) for var, ep in self.vars], list(self.no_proxy))

    def to_json(self) -> dict:
        proxies: dict[str, str] = {}
        for var, ep in self.vars:  # --proxy given twice: "--proxy", "--proxy #2"
            key, n = var, 1
            while key in proxies:
                n += 1
                key = f"{var} #{n}"
            proxies[key] = ep.url
        return {"proxies": proxies, "no_proxy": list(self.no_proxy), "problems": list(self.problems)}


def json_summary(data: object) -> str:
    """ProxyConfig.summary() of settings as ``to_json()`` wrote them (a report read back, a run
    record): one escaped line, at most 200 characters; "" for anything else."""
    if not isinstance(data, dict):
        return ""
    proxies = data.get("proxies") if isinstance(data.get("proxies"), dict) else {}
    no_proxy = data.get("no_proxy") if isinstance(data.get("no_proxy"), list) else []
    return _summary([(str(var), str(url)) for var, url in proxies.items()], no_proxy)


def _summary(proxies: list[tuple[str, str]], no_proxy: list) -> str:
    if not proxies and not no_proxy:
        return "no proxy"
    by_url: dict[str, list[str]] = {}
    for var, url in proxies:
        if var not in by_url.setdefault(url, []):
            by_url[url].append(var)
    parts = [f"{url} ({', '.join(vs)})" for url, vs in by_url.items()]
    text = "proxy " + "; ".join(parts) if parts else "no proxy"
    if no_proxy:
        shown = ",".join(map(str, no_proxy[:6])) + (f" +{len(no_proxy) - 6}" if len(no_proxy) > 6 else "")
        text += f"; no_proxy {shown}"
    return safe_text(text, 200)


def parse_proxy_url(value: str, var: str = "") -> ProxyEndpoint:
    """``http://user:pw@squid:3128``, ``socks5h://[fd00::1]:1080``, ``squid:3128`` (http)."""
    label = f"{var}: " if var else ""
    text = value.strip()
    if not text:
        raise ProxyError(f"{label}empty proxy URL")
    if len(text) > MAX_VALUE:
        raise ProxyError(f"{label}the proxy URL is longer than {MAX_VALUE} characters")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        if not _SCHEME.fullmatch(scheme):  # "user:pw@ftp": what came before :// is no scheme, and is not shown
            raise ProxyError(f"{label}not a proxy URL: write SCHEME://[USER:PASSWORD@]HOST:PORT")
        raise ProxyError(f"{label}proxy scheme '{safe_text(scheme, 20)}' is not one of "
                         + ", ".join(sorted(SCHEMES)))
    if scheme == "socks":
        scheme = "socks5"
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in rest[len(authority):]:
        # a password with a raw "/", "?" or "#" ends the authority early: what precedes the last
        # "@" may be a credential, so none of it is shown
        raise ProxyError(f"{label}{scheme}://{MASK}@{safe_text(rest.rpartition('@')[2], 80)}: the user name or "
                         "password holds '/', '?' or '#': percent-encode it (%2F, %3F, %23)")
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        userinfo, hostport = "", authority
    shown = f"{scheme}://{MASK + '@' if at else ''}{safe_text(hostport, 80)}"
    port = None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ProxyError(f"{label}{shown}: missing ']' after the IPv6 address")
        host, tail = hostport[1:end], hostport[end + 1:]
        if tail:
            if not tail.startswith(":"):
                raise ProxyError(f"{label}{shown}: expected ':PORT' after ']'")
            port = tail[1:]
        if _address(host) is None or ":" not in host:
            raise ProxyError(f"{label}{shown}: '{safe_text(host, 60)}' is not an IPv6 address")
    else:
        host, colon, p = hostport.rpartition(":")
        if not colon:
            host = hostport
        else:
            port = p
    if port is not None:
        if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise ProxyError(f"{label}{shown}: the port must be a number from 1 to 65535")
        port_n = int(port)
    else:
        port_n = SCHEMES[scheme]
    host = host.lower().rstrip(".")
    if not host:
        raise ProxyError(f"{label}{shown}: no proxy host")
    if _address(host) is None and not _host_name(host):
        raise ProxyError(f"{label}{shown}: '{safe_text(host, 60)}' is not a host name or an address")
    return ProxyEndpoint(scheme, host, port_n, var, userinfo)


def from_env(env: Mapping[str, str] | Iterable[str]) -> ProxyConfig:
    """The proxy settings in an environment: a mapping, or ``KEY=VALUE`` strings as the
    engine lists them. Unreadable values become ``problems`` (one line each, masked)."""
    if isinstance(env, Mapping):
        items = list(env.items())
    else:
        items = []
        for kv in env:
            k, sep, v = str(kv).partition("=")
            if sep:
                items.append((k, v))
    chosen: dict[str, tuple[str, str]] = {}
    for key, value in items:
        low = key.lower()
        if low not in PROXY_VARS or not value.strip():
            continue
        have = chosen.get(low)
        # lower case wins, then upper case, then any other spelling
        rank = 0 if key == low else 1 if key == key.upper() else 2
        if have is None or rank < _rank(have[0]):
            chosen[low] = (key, value)
    vars_: list[tuple[str, ProxyEndpoint]] = []
    problems: list[str] = []
    for low in ("http_proxy", "https_proxy", "all_proxy"):
        if low in chosen:
            key, value = chosen[low]
            try:
                vars_.append((key, parse_proxy_url(value, key)))
            except ProxyError as e:
                problems.append(str(e))
    no_proxy: tuple[str, ...] = ()
    no_var = ""
    if "no_proxy" in chosen:
        no_var, value = chosen["no_proxy"]
        items_np = [safe_text(x.strip().lower(), 253) for x in value[:MAX_VALUE].split(",") if x.strip()]
        no_proxy = tuple(items_np[:MAX_NO_PROXY])
    return ProxyConfig(tuple(vars_), no_proxy, no_var, tuple(problems))


def from_urls(urls: Iterable[str]) -> ProxyConfig:
    """Proxies named on a command line (``--proxy URL``); raises ProxyError on the first bad one."""
    return ProxyConfig(tuple(("--proxy", parse_proxy_url(u, "--proxy")) for u in urls))


def _rank(key: str) -> int:
    return 0 if key == key.lower() else 1 if key == key.upper() else 2


def _address(host: str):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _host_name(name: str) -> bool:
    if len(name) > 253:
        return False
    for label in name.split("."):
        if not label or len(label) > 63 or not label.isascii():
            return False
        if not all(ch.isalnum() or ch in "-_" for ch in label) or label.startswith("-") or label.endswith("-"):
            return False
    return True
