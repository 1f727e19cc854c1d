"""A container's proxy settings as egress-tui reads them (core/proxy.py): which spelling wins,
which proxy a URL uses, what NO_PROXY exempts, and that a proxy's credentials and a hostile
value never reach a text: every problem is one escaped line, never a crash."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egress_tui.core.proxy import MAX_VALUE, ProxyConfig, ProxyError, from_env, from_urls, parse_proxy_url
from tests.strategies import HOSTILE_PIECES, hostile_names

PW = "s3cretpw"


def one_clean_line(text: str) -> bool:
    """No control, format (bidi, zero-width) or separator character, no lone surrogate: what
    safe_text escapes (unassigned code points print as themselves)."""
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in text)


def texts(cfg: ProxyConfig) -> str:
    """Every text egress-tui makes of a configuration."""
    return "\n".join([cfg.summary(), json.dumps(cfg.to_json()), repr(cfg), *map(str, cfg.endpoints),
                      *cfg.problems])


# -- which variable wins --------------------------------------------------------------------

@pytest.mark.parametrize("env, var, host", [
    ({"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128"}, "https_proxy", "lower"),
    ({"https_proxy": "http://lower:3128", "HTTPS_PROXY": "http://upper:3128"}, "https_proxy", "lower"),
    ({"Https_Proxy": "http://mixed:3128", "HTTPS_PROXY": "http://upper:3128"}, "HTTPS_PROXY", "upper"),
    ({"Https_Proxy": "http://mixed:3128"}, "Https_Proxy", "mixed"),
    ({"https_proxy": "  ", "HTTPS_PROXY": "http://upper:3128"}, "HTTPS_PROXY", "upper"),  # blank: unset
])
def test_the_lower_case_spelling_wins_then_upper_then_any(env, var, host):
    cfg = from_env(env)
    assert [(v, ep.host) for v, ep in cfg.vars] == [(var, host)]


def test_the_engine_list_form_reads_like_a_mapping():
    env = ["PATH=/usr/bin", "HTTP_PROXY=http://squid:3128", "no_proxy=localhost,.internal", "BROKEN",
           "HTTPS_PROXY=http://lab:" + PW + "@squid:3129"]
    cfg = from_env(env)
    assert [(v, ep.authority) for v, ep in cfg.vars] == [("HTTP_PROXY", "squid:3128"), ("HTTPS_PROXY", "squid:3129")]
    assert cfg.no_proxy == ("localhost", ".internal") and cfg.no_proxy_var == "no_proxy"


@pytest.mark.parametrize("env, scheme, expected", [
    ({"http_proxy": "http://a:1", "https_proxy": "http://b:2"}, "http", "a"),
    ({"http_proxy": "http://a:1", "https_proxy": "http://b:2"}, "https", "b"),
    ({"http_proxy": "http://a:1", "ALL_PROXY": "socks5h://c:1080"}, "https", "c"),
    ({"http_proxy": "http://a:1"}, "https", None),
])
def test_the_proxy_a_url_uses(env, scheme, expected):
    ep = from_env(env).for_scheme(scheme)
    assert (ep.host if ep else None) == expected


def test_a_proxy_named_on_the_command_line_serves_every_scheme():
    cfg = from_urls(["http://squid:3128"])
    assert cfg.for_scheme("http").host == cfg.for_scheme("https").host == "squid"
    assert cfg.summary() == "proxy http://squid:3128 (--proxy)"
    with pytest.raises(ProxyError) as e:
        from_urls(["http://squid:3128", "ftp://x"])
    assert str(e.value).startswith("--proxy: proxy scheme 'ftp'")


# -- parsing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value, scheme, host, port", [
    ("http://squid:3128", "http", "squid", 3128),
    ("squid:3128", "http", "squid", 3128),                      # no scheme: http, as curl takes it
    ("HTTP://Squid.Corp.:8080/", "http", "squid.corp", 8080),
    ("https://proxy.test", "https", "proxy.test", 443),
    ("socks://s", "socks5", "s", 1080),
    ("socks5h://[fd00::1]:1081", "socks5h", "fd00::1", 1081),
    ("http://10.0.0.3", "http", "10.0.0.3", 80),
    (f"http://lab:{PW}@proxy.test:3128", "http", "proxy.test", 3128),
    (f"lab:{PW}@proxy.test:3128", "http", "proxy.test", 3128),
    ("http://a@b@proxy:1", "http", "proxy", 1),                 # an unescaped @ in the password
])
def test_proxy_urls(value, scheme, host, port):
    ep = parse_proxy_url(value)
    assert (ep.scheme, ep.host, ep.port) == (scheme, host, port)


def test_an_ipv6_proxy_is_shown_in_brackets():
    assert parse_proxy_url("http://[fd00::1]:3128").url == "http://[fd00::1]:3128"


# -- credentials ------------------------------------------------------------------------------

def test_the_credential_is_kept_for_a_rerun_and_shown_nowhere():
    cfg = from_env({"HTTPS_PROXY": f"http://lab:{PW}@proxy.test:3128", "NO_PROXY": "localhost"})
    ep = cfg.vars[0][1]
    assert ep.userinfo == f"lab:{PW}"
    assert cfg.summary() == "proxy http://***@proxy.test:3128 (HTTPS_PROXY); no_proxy localhost"
    assert cfg.to_json() == {"proxies": {"HTTPS_PROXY": "http://***@proxy.test:3128"},
                             "no_proxy": ["localhost"], "problems": []}
    assert PW not in texts(cfg) and "lab" not in texts(cfg)


@pytest.mark.parametrize("value", [
    f"http://lab:{PW}@",                       # no host
    f"http://lab:{PW}@proxy:99999",            # bad port
    f"http://lab:{PW}@[::1",                   # unclosed bracket
    f"http://lab:{PW}@pro\x1bxy:3128",         # escape in the host
    f"http://lab:s3c/{PW}@proxy:3128",         # raw "/" in the password ends the authority early
    f"http://lab:{PW}#x@proxy:3128",
    f"http://lab:{PW}?x@proxy:3128",
    f"lab:{PW}@ftp://proxy",                   # the credential where a scheme would be
    f"ftp://lab:{PW}@proxy",
])
def test_a_bad_proxy_url_is_one_line_without_its_credential(value):
    with pytest.raises(ProxyError) as e:
        parse_proxy_url(value, "HTTPS_PROXY")
    msg = str(e.value)
    assert PW not in msg and msg.startswith("HTTPS_PROXY: ") and one_clean_line(msg)
    cfg = from_env({"HTTPS_PROXY": value})     # read from a container: a problem, not an exception
    assert not cfg and cfg.problems == (msg,) and PW not in texts(cfg)


# -- NO_PROXY ----------------------------------------------------------------------------------

NO_PROXY = "localhost,.corp.example,*.svc.local,10.0.0.0/8,fd00::/8,192.168.1.7,Internal.Example.,[2001:db8::5]"


@pytest.mark.parametrize("host, excluded", [
    ("localhost", True), ("LOCALHOST.", True), ("notlocalhost", False),
    ("corp.example", True), ("a.b.corp.example", True), ("xcorp.example", False),  # leading dot: suffix
    ("svc.local", True), ("db.svc.local", True),                                  # "*." as well
    ("internal.example", True), ("x.internal.example", True),                    # no dot: also a suffix
    ("10.1.2.3", True), ("11.0.0.1", False), ("fd00::1", True), ("[fd00::1]", True), ("fe80::1", False),
    ("192.168.1.7", True), ("192.168.1.8", False),
    ("2001:db8::5", True), ("2001:db8::6", False),
    ("api.anthropic.com", False),
])
def test_no_proxy_names_suffixes_addresses_and_networks(host, excluded):
    cfg = from_env({"HTTPS_PROXY": "http://squid:3128", "no_proxy": NO_PROXY})
    assert cfg.excluded(host) is excluded


def test_a_star_exempts_everything_and_a_bad_network_nothing():
    assert from_env({"NO_PROXY": "*"}).excluded("anything.example")
    cfg = from_env({"NO_PROXY": "10.0.0.0/33,/,*.,.,"})
    assert not cfg.excluded("10.0.0.1") and not cfg.excluded("example.com")


# -- hostile values -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "http://proxy\x1b[2J:3128", "http://proxy\n:3128", "http://\u202eproxy:3128", "http://prox\u200by:3128",
    "http://[bold red]x[/]:3128", "x" * 10240, "http://" + "a" * 10240 + ":3128", "\x00", "http://proxy:31\r28",
])
def test_hostile_values_are_one_escaped_line(value):
    with pytest.raises(ProxyError) as e:
        parse_proxy_url(value, "HTTP_PROXY")
    msg = str(e.value)
    assert one_clean_line(msg) and len(msg) < 300, msg          # no newline, escape, bidi, zero-width
    cfg = from_env({"HTTP_PROXY": value, "NO_PROXY": value})
    assert not cfg and len(cfg.problems) == 1
    assert all(one_clean_line(t) for t in texts(cfg).split("\n"))
    assert len(cfg.summary()) <= 200


def test_a_huge_no_proxy_is_cut_not_swallowed():
    cfg = from_env({"HTTPS_PROXY": "http://squid:3128", "NO_PROXY": ",".join(f"h{i}.example" for i in range(5000))})
    assert 0 < len(cfg.no_proxy) <= 256 and sum(map(len, cfg.no_proxy)) <= MAX_VALUE
    assert len(cfg.summary()) <= 200 and cfg.summary().startswith("proxy http://squid:3128 (HTTPS_PROXY); no_proxy h0")


piece = st.one_of(st.sampled_from(HOSTILE_PIECES), hostile_names(3), st.text(max_size=8))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["HTTP_PROXY", "https_proxy", "All_Proxy", "NO_PROXY", "no_proxy", "X"]),
                       st.lists(piece, max_size=5).map("".join), max_size=6))
def test_any_environment_is_read_without_an_exception(env):
    cfg = from_env(env)
    for line in texts(cfg).split("\n"):
        assert one_clean_line(line)
    for name in cfg.no_proxy:
        cfg.excluded(name)
    for scheme in ("http", "https"):
        cfg.for_scheme(scheme)


@settings(max_examples=400, deadline=None)
@given(scheme=st.sampled_from(["http://", "https://", "socks5h://", "", "ftp://", "HTTP://"]),
       user=st.lists(piece, max_size=2).map("".join), before=st.lists(piece, max_size=3).map("".join),
       after=st.lists(piece, max_size=3).map("".join), rest=st.lists(piece, max_size=3).map("".join))
def test_no_text_ever_shows_the_password(scheme, user, before, after, rest):
    """Whatever surrounds it, a password before the last "@" never reaches a text: not in a
    summary, not in a one-line error."""
    value = f"{scheme}{user}:{before}{PW}{after}@{rest.replace('@', '')}"
    try:
        ep = parse_proxy_url(value, "HTTPS_PROXY")
        assert PW not in ep.url and PW not in repr(ep)
    except ProxyError as e:
        assert PW not in str(e) and one_clean_line(str(e))
    assert PW not in texts(from_env({"HTTPS_PROXY": value}))
