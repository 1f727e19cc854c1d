"""Credentials stay in memory: which environment names hold secrets, and how to mask them
(and any URL userinfo) before a value reaches a screen, a log line, a report or an error.

Everything that leaves the process (session reports, run records, log lines, exception texts)
goes through here. Nothing here imports Textual.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

HIDDEN = "<hidden>"            # a secret value shown on a screen or written to a record
NOT_RECORDED = "<not recorded>"  # an environment value on a recorded command line
MASK = "***"                   # URL userinfo

# Substrings of a variable name that mark its value as a credential (matched case-insensitively:
# aws_session_token, Anthropic_Api_Key, GOOGLE_APPLICATION_CREDENTIALS, DB_PASSWD ...).
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "SESSION")

# scheme://userinfo@ : the userinfo runs up to the last "@" before the authority ends ("/", "?",
# "#" or white space), so a password with an unescaped "@" is masked whole. Anchored on "://"
# by a fixed-width look-behind, so a long hostile line costs linear time.
_URL_USERINFO = re.compile(r"(?<=[A-Za-z0-9+.\-]://)[^/?#\s]*@")

# shorter values would mask ordinary words of a log line; no real credential is this short
MIN_SECRET_LEN = 4

_ENV_OPTIONS = ("-e", "--env")
_PROXY_OPTIONS = ("--proxy",)   # egress-tui's own: a proxy URL, maybe with a login


def is_secret_key(key: str) -> bool:
    """True when an environment variable of this name holds a credential."""
    k = key.upper()
    return any(w in k for w in SECRET_WORDS)


def mask_urls(text: str) -> str:
    """Every ``scheme://userinfo@`` in text becomes ``scheme://***@`` (any scheme)."""
    if "@" not in text or "://" not in text:
        return text
    return _URL_USERINFO.sub(MASK + "@", text)


def mask_value(key: str, value: str) -> str:
    """What may be shown of one environment value: nothing for a credential, else the value
    with URL userinfo masked (``HTTPS_PROXY=http://user:pw@proxy`` → ``http://***@proxy``)."""
    if is_secret_key(key):
        return HIDDEN
    masked = mask_urls(value)
    if masked == value and is_proxy_key(key) and "@" in value and "://" not in value:
        # curl and Node take proxies without a scheme too: user:pw@proxy:3128
        masked = f"{MASK}@{value.rsplit('@', 1)[1]}"
    return masked


def is_proxy_key(key: str) -> bool:
    """HTTP_PROXY, https_proxy, ALL_PROXY ...: a URL whose userinfo is a login."""
    return key.upper().endswith("_PROXY")


def userinfo_secrets(userinfo: str) -> set[str]:
    """What of a URL's userinfo must never appear in text: all of it, the password, both
    percent-decoded, and the Basic credential a client sends a proxy for it
    (``Proxy-Authorization: Basic base64(user:password)``, which ``curl -v`` prints)."""
    out: set[str] = set()
    plain = unquote(userinfo)
    for u in (userinfo, plain):
        out.add(u)
        out.add(u.partition(":")[2])
    basic = plain if ":" in plain else plain + ":"
    out.add(base64.b64encode(basic.encode("utf-8", "surrogateescape")).decode("ascii"))
    return {v for v in out if len(v) >= MIN_SECRET_LEN}


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of env that is safe to show or write."""
    return {k: mask_value(k, v) for k, v in env.items()}


def secret_values(*envs: Mapping[str, str]) -> set[str]:
    """The values in these environments that must never appear in text: credentials, and the
    userinfo of any URL among the other values."""
    out: set[str] = set()
    for env in envs:
        for k, v in env.items():
            if not v:
                continue
            if is_secret_key(k):
                out.add(v)
            elif "@" in v:
                for m in _URL_USERINFO.finditer(v):
                    out |= userinfo_secrets(m.group(0)[:-1])
                if "://" not in v and is_proxy_key(k):
                    out |= userinfo_secrets(v.rsplit("@", 1)[0])  # user:pw@proxy:3128, no scheme
    return {v for v in out if len(v) >= MIN_SECRET_LEN}


def redact(text: str, values: Iterable[str] = ()) -> str:
    """text with every known secret value replaced and URL userinfo masked."""
    for v in sorted(values, key=len, reverse=True):  # a longer secret may contain a shorter one
        if v and v in text:
            text = text.replace(v, HIDDEN)
    return mask_urls(text)


def redact_argv(argv: Iterable[str], values: Iterable[str] = ()) -> list[str]:
    """A command line fit to record: environment values given with -e/--env are dropped
    (``-e ANTHROPIC_API_KEY=<not recorded>``), a ``--proxy`` login is masked with or without
    a scheme, and known secrets and URL userinfo masked in every other argument."""
    values = list(values)
    out: list[str] = []
    take_env = take_proxy = False
    for a in argv:
        if take_env:
            out.append(_env_arg(a))
            take_env = False
            continue
        if take_proxy:
            out.append(redact(mask_value("HTTPS_PROXY", a), values))
            take_proxy = False
            continue
        if a in _ENV_OPTIONS:
            out.append(a)
            take_env = True
            continue
        if a in _PROXY_OPTIONS:
            out.append(a)
            take_proxy = True
            continue
        if a.startswith(tuple(f"{o}=" for o in _PROXY_OPTIONS)):
            opt, _, url = a.partition("=")
            out.append(f"{opt}={redact(mask_value('HTTPS_PROXY', url), values)}")
            continue
        for opt in _ENV_OPTIONS:
            if opt.startswith("--") and a.startswith(opt + "="):
                out.append(f"{opt}={_env_arg(a[len(opt) + 1:])}")
                break
            if not opt.startswith("--") and a.startswith(opt) and len(a) > len(opt) and "=" in a:
                out.append(f"{opt}{_env_arg(a[len(opt):])}")
                break
        else:
            out.append(redact(a, values))
    return out


def _env_arg(kv: str) -> str:
    key, sep, _value = kv.partition("=")
    return f"{key}={NOT_RECORDED}" if sep else kv


# Request headers that carry a credential (curl -H, wget --header): their value is masked.
_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token")
# Options whose next argument is a login, whatever the program: curl -u/--user, --proxy-user,
# wget --password, git -c http.extraheader is a header (above).
_LOGIN_OPTIONS = ("-u", "--user", "-U", "--proxy-user", "--password", "--http-password", "--proxy-password")


def mask_cmdline(argv: Iterable[str], values: Iterable[str] = ()) -> str:
    """A process's command line (read from /proc, written by the process itself) as one masked
    line: ``values`` (the secrets of its own environment) hidden wherever they appear, URL
    userinfo masked, and what is plainly a credential whatever it holds: ``KEY=value`` when
    KEY names a secret (``env API_KEY=x cmd``), ``--api-key x`` / ``--token=x``, a login given
    to ``-u``, and the value of an ``Authorization:`` (or similar) header."""
    values = list(values)
    out: list[str] = []
    hide_next = False
    for a in argv:
        if hide_next:
            hide_next = False
            if not a.startswith("-"):  # else the option was a flag: this is the next option
                out.append(HIDDEN)
                continue
        key, eq, _val = a.partition("=")
        if eq and key and is_secret_key(key.lstrip("-")) and " " not in key:
            out.append(f"{key}={HIDDEN}")
            continue
        if a.startswith("-") and not eq and (a in _LOGIN_OPTIONS or is_secret_key(a.lstrip("-").replace("-", "_"))):
            out.append(a)
            hide_next = True
            continue
        head, colon, _rest = a.partition(":")
        if colon and head.strip().lower() in _SECRET_HEADERS:
            out.append(f"{head}: {HIDDEN}")
            continue
        if a.startswith(("-u", "-U")) and len(a) > 2 and a[:2] in _LOGIN_OPTIONS:
            out.append(f"{a[:2]}{HIDDEN}")  # curl -uuser:pw
            continue
        out.append(redact(a, values))
    return " ".join(out)
