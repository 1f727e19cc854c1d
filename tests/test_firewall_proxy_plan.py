"""Proxy-only mode as data, as a script and on the command line: no namespace, no root needed.

The plan lets exactly the proxies' addresses through on their ports (TCP) plus DNS; a proxy
that is on loopback, does not resolve, or comes from a setting that cannot be read is refused
in one line; init-firewall.sh --proxy-only loads what the plan holds, text for text, and
refuses what egress-tui refuses; credentials never reach any of it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from egress_tui.core.proxy import ProxyConfig, from_env, from_urls
from egress_tui.firewall.plan import FirewallError, build_proxy_plan, is_loopback, proxy_allowlist
from egress_tui.firewall.script import render_proxy_script
from tests.test_init_script import BASH, dry_run, loads_the_plan, write_script

SECRET = "pw-never-shown"
RESOLVERS = ["198.18.0.2", "fd65:6774::2"]

# getent stand-in (nothing is looked up for real)
STUB_GETENT = r"""#!/bin/sh
printf '%s\n' "$*" >> "$(dirname "$0")/getent.log"
case "$1:$2" in
  ahostsv4:squid.test) printf '198.18.1.1      STREAM squid.test\n198.18.1.9      STREAM \n' ;;
  ahostsv6:squid.test) printf 'fd65:6774:0:1::5 STREAM squid.test\n::ffff:198.18.1.1 STREAM \n' ;;
  ahostsv4:loop.test) printf '127.0.0.1       STREAM loop.test\n' ;;
  ahostsv6:loop.test) exit 2 ;;
  *) exit 2 ;;
esac
"""
STUB_RESOLVED = {"squid.test": [("198.18.1.1", 60), ("198.18.1.9", 60), ("fd65:6774:0:1::5", 60)]}
PROXIES = [f"http://user:{SECRET}@squid.test:3128", "socks5h://[fd65:6774::99]:1080", "http://198.18.7.7:8080"]


@pytest.fixture
def stub_path(tmp_path):
    d = tmp_path / "stub"
    d.mkdir()
    write_script(d / "getent", STUB_GETENT)
    return d


def test_the_plan_holds_the_proxies_and_nothing_else():
    plan = build_proxy_plan(from_urls(PROXIES), STUB_RESOLVED, RESOLVERS)
    assert plan.mode == "proxy" and plan.protocols == ["tcp"]
    assert plan.proxies == ["http://***@squid.test:3128", "socks5h://[fd65:6774::99]:1080", "http://198.18.7.7:8080"]
    assert plan.nets == {4: {}, 6: {}}
    assert set(plan.ports[4]) == {"198.18.1.1,tcp:3128", "198.18.1.9,tcp:3128", "198.18.7.7,tcp:8080"}
    assert set(plan.ports[6]) == {"fd65:6774:0:1::5,tcp:3128", "fd65:6774::99,tcp:1080"}
    assert plan.allowlist == ["squid.test:3128", "[fd65:6774::99]:1080", "198.18.7.7:8080"]
    v4 = plan.iptables_script(4, hook_present=False)
    assert "--dport 53" in v4 and "198.18.0.2" in v4 and v4.rstrip().endswith("COMMIT")
    assert SECRET not in json.dumps(plan.to_json())


def test_the_proxies_of_an_environment_once_each():
    """HTTP_PROXY and HTTPS_PROXY naming one proxy make one entry; NO_PROXY changes nothing."""
    cfg = from_env({"HTTP_PROXY": "http://squid.test:3128", "https_proxy": "http://squid.test:3128",
                    "NO_PROXY": "localhost,.internal"})
    assert [e.text() for e in proxy_allowlist(cfg).entries] == ["squid.test:3128"]


@pytest.mark.parametrize("host, loop", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True), ("0.0.0.0", True), ("::", True),
    ("::ffff:127.0.0.1", True), ("localhost", True), ("LocalHost.", True), ("proxy.localhost", True),
    ("0x7f.1", True), ("2130706433", True),
    ("198.18.0.1", False), ("fd65:6774::1", False), ("localhost.test", False), ("squid", False), ("0x7e.1", False),
])
def test_loopback(host, loop):
    assert is_loopback(host) is loop


@pytest.mark.parametrize("proxy, resolved, says", [
    (from_urls(["http://127.0.0.1:3128"]), {}, "proxy http://127.0.0.1:3128 (--proxy) is on a loopback address"),
    (from_urls([f"http://u:{SECRET}@localhost:3128"]), {}, "proxy http://***@localhost:3128 (--proxy) is on a loop"),
    (from_urls(["http://squid.test:3128"]), {"squid.test": [("127.0.0.1", 60)]},
     "(squid.test is 127.0.0.1): it runs inside the container"),
    (from_urls(["http://squid.test:3128"]), {"squid.test": [("198.18.1.1", 60), ("::1", 60)]}, "squid.test is ::1"),
    (from_urls(["http://squid.test:3128"]), {},
     "squid.test does not resolve through the container's DNS (198.18.0.2, fd65:6774::2); nothing applied"),
    (from_urls(["http://a.test:1", "http://b.test:2"]), {"a.test": [("198.18.1.1", 60)]}, "b.test does not resolve"),
    (from_env({"HTTPS_PROXY": "ftp://squid.test", "HTTP_PROXY": "http://squid.test:3128"}), STUB_RESOLVED,
     "cannot use the proxy settings: HTTPS_PROXY: proxy scheme 'ftp'"),
    (ProxyConfig(), {}, "no proxy is configured: set HTTPS_PROXY"),
    (from_urls(["http://0x7f.1:3128"]), {}, "proxy http://0x7f.1:3128 (--proxy) is on a loopback address"),
])
def test_refused_in_one_line(proxy, resolved, says):
    with pytest.raises(FirewallError) as e:
        build_proxy_plan(proxy, resolved, RESOLVERS)
    msg = str(e.value)
    assert says in msg and "\n" not in msg and SECRET not in msg


# -- init-firewall.sh --proxy-only ----------------------------------------------------------

def test_the_script_loads_the_plan_text_for_text(tmp_path, stub_path):
    proxy = from_urls(PROXIES)
    for reject in (False, True):
        text = render_proxy_script(proxy, reject=reject, resolvers=RESOLVERS, generated_by="test")
        assert SECRET not in text and "PROXY_ONLY=1" in text
        script = write_script(tmp_path / "s.sh", text)
        _r, got = loads_the_plan(script, stub_path, build_proxy_plan(proxy, STUB_RESOLVED, RESOLVERS, reject=reject))
        assert ",udp:" not in got["ipset"]
    calls = (stub_path / "getent.log").read_text().splitlines()
    assert "ahostsv4 squid.test" in calls and not any("198.18.7.7" in c or "fd65:6774::99" in c for c in calls)


@pytest.mark.parametrize("url, says", [
    ("http://nowhere.test:3128", "proxy nowhere.test did not resolve: nothing applied"),
    ("http://loop.test:3128", "proxy loop.test is on a loopback address (127.0.0.1)"),
])
def test_the_script_refuses_what_egress_tui_refuses(tmp_path, stub_path, url, says):
    script = write_script(tmp_path / "s.sh", render_proxy_script(from_urls([url]), resolvers=RESOLVERS))
    r = dry_run(script, stub_path)
    assert r.returncode == 1 and says in r.stderr, r.stderr
    assert "# ipset" not in r.stdout                       # it stopped before printing any input


def test_the_script_is_clean_bash(tmp_path):
    for i, (proxy, resolvers) in enumerate([(from_urls(PROXIES), RESOLVERS), (from_urls(PROXIES[:1]), None)]):
        script = write_script(tmp_path / f"s{i}.sh", render_proxy_script(proxy, resolvers=resolvers))
        assert subprocess.run([BASH, "-n", str(script)]).returncode == 0
        if shutil.which("shellcheck"):
            r = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", str(script)],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stdout


def test_the_script_refuses_loopback_when_rendered():
    with pytest.raises(FirewallError, match="loopback"):
        render_proxy_script(from_urls(["http://[::1]:3128"]))


# -- the command line: one line each, before any container is asked ---------------------------

def egress(*args):
    return subprocess.run([sys.executable, "-m", "egress_tui", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("argv, says", [
    (["firewall", "apply", "box", "--proxy", "http://squid:3128"], "--proxy goes with --proxy-only"),
    (["firewall", "apply", "box", "--proxy-only", "--preset", "anthropic"], "drop --allow/--preset"),
    (["firewall", "apply", "box", "--proxy-only", "--proxy", f"ftp://u:{SECRET}@squid"],
     "--proxy: proxy scheme 'ftp' is not one of"),
    (["firewall", "apply", "box", "--proxy-only", "--proxy", "http://squid:99999"], "the port must be a number"),
    (["firewall", "script", "--proxy-only"], "needs the proxy: --proxy URL, or --container NAME"),
    (["firewall", "script", "--proxy-only", "--proxy", f"http://u:{SECRET}@127.0.0.1:3128"],
     "proxy http://***@127.0.0.1:3128 (--proxy) is on a loopback address"),
    (["firewall", "script", "--proxy", "http://squid:3128", "--preset", "anthropic"], "--proxy goes with --proxy-only"),
])
def test_cli_errors_are_one_line(argv, says):
    r = egress(*argv)
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], r.stderr
    assert SECRET not in r.stderr + r.stdout


def test_cli_script_proxy_only(tmp_path):
    out = tmp_path / "init-firewall.sh"
    r = egress("firewall", "script", "--proxy-only", "--proxy", f"http://u:{SECRET}@squid.test:3128", "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert SECRET not in text and "# Mode: PROXY ONLY" in text and "#   http://***@squid.test:3128" in text
    assert "PORT_PROTOS=(tcp)" in text and "ENTRY_PAT=(squid.test)" in text


def test_the_session_report_says_proxy_only():
    from egress_tui.core.evidence import session_data, session_markdown
    fw = {"on": True, "allowlist": ["squid.test:3128"], "dropped_packets": {"4": 3, "6": 0}, "mode": "proxy",
          "proxies": ["http://***@squid.test:3128"]}
    md = session_markdown(session_data(source="t", container=None, rows=[], runs=[], allowlist=[], firewall=fw,
                                       versions={}, argv=[]))
    assert "- firewall: ON, proxy only: http://\\*\\*\\*@squid.test:3128, " in md, md
