"""Proxies as a user meets them without Docker: ``--proxy`` on ``egress-tui report`` and on the
TUI, the status bar line, every report and export, the run dialog, and the proxy a rerun keeps.
The proxy login (``lab:s3cretpw``) must appear in none of them. (tests/test_docker_proxy.py does
the same on a real container whose own HTTPS_PROXY holds the login.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from egress_tui.cli import demo_capture
from egress_tui.core.evidence import session_data, write_session
from egress_tui.core.proxy import ProxyConfig, from_env, from_urls, json_summary
from egress_tui.core.runs import PROVIDERS, RunRecord, RunSpec, proxy_names, proxy_secrets, provider_env, run_proxy
from egress_tui.core.secrets import redact
from egress_tui.ui.app import AppConfig, create_app
from tests.pilot import screen_text, until, wait_replay

PW = "s3cretpw"
URL = f"http://lab:{PW}@proxy.test:3128"
SHOWN = "http://***@proxy.test:3128"
CONTAINER = from_env({"HTTPS_PROXY": URL, "NO_PROXY": "localhost"})


def status_lines(app) -> list[str]:
    """The status bar as the screen shows it, line by line."""
    lines = screen_text(app).splitlines()
    top = next(i for i, line in enumerate(lines) if "pkt/s" in line)
    return [line.strip() for line in lines[top:top + 2]]


def egress(*args):
    return subprocess.run([sys.executable, "-m", "egress_tui", *args], capture_output=True, text=True, timeout=60)


# -- the command line ------------------------------------------------------------------------------

def test_report_records_the_proxy_masked_in_every_format():
    r = egress("report", "--demo", "--proxy", URL, "--proxy", "socks5h://[fd00::1]:1080", "--format", "json")
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)["proxy"]
    assert meta == {"proxies": {"--proxy": SHOWN, "--proxy #2": "socks5h://[fd00::1]:1080"}, "no_proxy": [],
                    "problems": []}
    # told to the engine: the demo's direct connections went around that proxy
    api = {h["name"]: h for h in json.loads(r.stdout)["hosts"]}["api.anthropic.com"]
    assert api["bypass"] == api["connections"] == 28 and "proxy bypass" in api["verdict"]
    md = egress("report", "--demo", "--proxy", URL, "--format", "markdown")
    assert "- proxy: http://\\*\\*\\*@proxy.test:3128 (--proxy)" in md.stdout.splitlines()
    for out in (r, md):
        assert PW not in out.stdout + out.stderr


def test_report_without_proxy_says_so():
    r = egress("report", "--demo", "--format", "json")
    assert json.loads(r.stdout)["proxy"] == {"proxies": {}, "no_proxy": [], "problems": []}
    assert all(h["bypass"] == 0 for h in json.loads(r.stdout)["hosts"])
    assert "- proxy" not in egress("report", "--demo", "--format", "markdown").stdout


@pytest.mark.parametrize("args", [["report", "--demo"], ["--demo"]])     # report, and the TUI before its screen
@pytest.mark.parametrize("bad, said", [
    ("ftp://lab:s3cretpw@proxy.test", "--proxy: proxy scheme 'ftp' is not one of"),
    ("http://lab:s3cretpw@proxy.test:99999", "--proxy: http://***@proxy.test:99999: the port must be"),
    ("lab:s3cretpw@", "--proxy: http://***@: no proxy host"),
    ("http://lab:s3c/s3cretpw@proxy.test:3128", "percent-encode it"),
    ("http://proxy\x1b[2J:3128", "'proxy\\x1b[2j' is not a host name"),
])
def test_a_bad_proxy_url_is_one_line_and_exit_2(args, bad, said):
    r = egress(*args, "--proxy", bad)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("egress-tui: --proxy: ") and said in r.stderr, r.stderr
    assert PW not in r.stderr and "\x1b" not in r.stderr and "Traceback" not in r.stderr


def test_the_engine_is_told_of_the_proxy_for_a_file(monkeypatch, capsys):
    """``set_proxy_config`` is the engine's hook (it flags traffic that bypasses the proxy): a
    capture file read by ``report`` hands it the --proxy settings before the first packet."""
    import egress_tui.cli as cli
    told = []

    class Engine(cli.Engine):
        def set_proxy_config(self, cfg):
            told.append((cfg, self.packets))

    monkeypatch.setattr(cli, "Engine", Engine)
    assert cli.main(["report", "--demo", "--proxy", URL, "--format", "json"]) == 0
    [(cfg, packets)] = told
    assert packets == 0 and cfg.for_scheme("https").authority == "proxy.test:3128"
    assert json.loads(capsys.readouterr().out)["packets"] > 0
    told.clear()
    assert cli.main(["report", "--demo", "--format", "json"]) == 0
    assert told == []                                   # no proxy: nothing to tell


def test_an_inspection_tells_every_engine_it_makes(monkeypatch):
    """The capture thread's engine, and the fresh one ``clear`` makes, both know the proxy."""
    import egress_tui.live.capture as capture
    from egress_tui.inspection import open_inspection
    told = []

    class Engine(capture.Engine):
        def set_proxy_config(self, cfg):
            told.append((self, cfg))

    monkeypatch.setattr(capture, "Engine", Engine)
    cfg = from_urls([URL])
    with open_inspection(replay=demo_capture(), speed=0, proxy=cfg) as insp:
        assert insp.proxy is cfg
        cap = insp.start_capture()
        assert told == [(cap.engine, cfg)]
        insp.clear()
        assert len(told) == 2 and told[1] == (cap.engine, cfg) and told[0][0] is not cap.engine
    with open_inspection(replay=demo_capture(), speed=0) as insp:
        assert insp.proxy == ProxyConfig() and not insp.proxy
        insp.start_capture()
    assert len(told) == 2


# -- reruns -----------------------------------------------------------------------------------------

def test_no_provider_preset_sets_or_passes_a_proxy_variable(monkeypatch):
    """A rerun keeps the container's proxy: a preset carrying egress-tui's own HTTPS_PROXY into
    the run would silently replace it."""
    monkeypatch.setenv("HTTPS_PROXY", "http://my-shell-proxy:3128")
    monkeypatch.setenv("no_proxy", "*")
    for name, p in PROVIDERS.items():
        assert not [k for k in [*p["set"], *p["pass"]] if k.lower().endswith("_proxy")], name
        env = provider_env(name, None)
        assert run_proxy(CONTAINER, env) is CONTAINER


@pytest.mark.parametrize("env, proxies, no_proxy", [
    ({}, {"HTTPS_PROXY": SHOWN}, ["localhost"]),                                     # kept as the container has it
    ({"HTTPS_PROXY": "http://other:8080"}, {"HTTPS_PROXY": "http://other:8080"}, ["localhost"]),  # replaced
    ({"https_proxy": "http://other:8080"}, {"https_proxy": "http://other:8080"}, ["localhost"]),  # lower case wins
    ({"HTTP_PROXY": "http://plain:80"}, {"HTTP_PROXY": "http://plain:80", "HTTPS_PROXY": SHOWN}, ["localhost"]),
    ({"HTTPS_PROXY": ""}, {}, ["localhost"]),                                        # emptied: no proxy
    ({"no_proxy": ".corp"}, {"HTTPS_PROXY": SHOWN}, [".corp"]),
    ({"ANTHROPIC_MODEL": "m"}, {"HTTPS_PROXY": SHOWN}, ["localhost"]),
])
def test_a_rerun_keeps_the_container_proxy_unless_its_environment_sets_one(env, proxies, no_proxy):
    cfg = run_proxy(CONTAINER, env)
    assert cfg.to_json()["proxies"] == proxies and list(cfg.no_proxy) == no_proxy


def test_a_run_record_names_its_proxy_variables_and_holds_no_login():
    extra = {"ALL_PROXY": "socks5h://u:pw2secret@socks.test:1080"}
    cfg = run_proxy(CONTAINER, extra)
    assert proxy_names(cfg) == ["HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"]
    hide = proxy_secrets(cfg)
    assert {PW, "pw2secret"} <= hide
    rec = RunRecord(1, RunSpec(["curl", "https://api.anthropic.com"], "none", env=extra), "box", False, 1.0,
                    proxy_env=proxy_names(cfg), proxy=cfg.to_json(),
                    output_tail=[redact(f"< Proxy-Authorization: Basic bGFiOnMzY3JldHB3 via {URL}", hide)])
    text = json.dumps(rec.to_json())
    assert PW not in text and "pw2secret" not in text and "bGFiOnMzY3JldHB3" not in text
    assert rec.to_json()["proxy_env"] == ["HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"]
    assert json_summary(rec.to_json()["proxy"]) == cfg.summary()


@pytest.mark.parametrize("suffix", [".md", ".json"])
def test_the_session_report_records_the_proxy_of_the_target_and_of_each_run(tmp_path, suffix):
    cfg = run_proxy(CONTAINER, {})
    rec = RunRecord(1, RunSpec(["true"], "none"), "box", False, 1.0, exit_code=0,
                    proxy_env=proxy_names(cfg), proxy=cfg.to_json())
    data = session_data(source="learn box", container={"name": "box", "id": "a" * 64, "image": "img",
                        "networks": []}, rows=[], runs=[rec], allowlist=[], firewall=None, versions={},
                        argv=["egress-tui", "learn", "box"], proxy=CONTAINER.to_json())
    text = open(write_session(str(tmp_path / f"s{suffix}"), data), encoding="utf-8").read()
    assert PW not in text
    if suffix == ".json":
        d = json.loads(text)
        assert d["proxy"]["proxies"] == {"HTTPS_PROXY": SHOWN}
        assert d["runs"][0]["proxy_env"] == ["HTTPS_PROXY", "NO_PROXY"]
    else:
        assert "- proxy: http://\\*\\*\\*@proxy.test:3128 (HTTPS\\_PROXY); no\\_proxy localhost" in text
        assert "Through proxy http://\\*\\*\\*@proxy.test:3128 (HTTPS\\_PROXY)" in text


# -- the screen ---------------------------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.parametrize("width", [100, 160])
async def test_the_status_bar_shows_the_proxy_on_its_own_line(tmp_path, width):
    cfg = from_urls([URL])
    app = create_app(AppConfig(pcap=demo_capture(), speed=0, proxy=cfg, presets=["anthropic"]))
    async with app.run_test(size=(width, 30)) as pilot:
        await wait_replay(app, pilot)
        bar = status_lines(app)
        assert bar[1] == f"proxy {SHOWN} (--proxy)"
        assert "errors 0" in bar[0]                   # the counters still fit at 100 columns
        assert app.main.query_one("#status").size.height == 2
        for fmt, name in (("json", "r.json"), ("markdown", "r.md"), ("session-json", "s.json"),
                          ("session-md", "s.md")):
            app.export(fmt, str(tmp_path / name))
        await until(pilot, lambda: (tmp_path / "s.json").exists() and (tmp_path / "s.md").exists(), 20, "exports")
        await app.workers.wait_for_complete()
    assert json.loads((tmp_path / "r.json").read_text())["proxy"]["proxies"] == {"--proxy": SHOWN}
    assert json.loads((tmp_path / "s.json").read_text())["proxy"]["proxies"] == {"--proxy": SHOWN}
    assert "- proxy: http://\\*\\*\\*@proxy.test:3128 (--proxy)" in (tmp_path / "r.md").read_text()
    for name in ("r.json", "r.md", "s.json", "s.md"):
        assert PW not in (tmp_path / name).read_text(), name


@pytest.mark.asyncio
async def test_without_a_proxy_the_status_bar_is_one_line():
    app = create_app(AppConfig(pcap=demo_capture(), speed=0))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_replay(app, pilot)
        assert app.main.query_one("#status").size.height == 1
        assert status_lines(app)[1].split()[0] == "Host"


@pytest.mark.asyncio
async def test_a_hostile_proxy_setting_is_a_notice_and_a_warning_never_a_crash():
    cfg = from_env({"HTTPS_PROXY": "http://lab:s3cretpw@evil\x1b]0;pwned\x07:3128", "http_proxy": "[bold]x[/]:1"})
    app = create_app(AppConfig(pcap=demo_capture(), speed=0, proxy=cfg))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_replay(app, pilot)
        text = screen_text(app)
        assert status_lines(app)[1] == "2 proxy settings not understood"
        said = [n.message for n in app._notifications]
        assert any(m.startswith("proxy setting of demo.pcap not understood: HTTPS_PROXY: http://***@evil")
                   for m in said), said
        assert any("http_proxy: http://[bold]x[: expected ':PORT'" in m for m in said), said  # markup as text
        assert PW not in text + "".join(said) and "\x1b" not in text + "".join(said)


@pytest.mark.asyncio
async def test_the_run_dialog_says_which_proxy_the_run_goes_through():
    from textual.widgets import Input
    from egress_tui.ui.screens.run_dialog import RunDialog
    app = create_app(AppConfig(start_capture=False))
    got = []
    async with app.run_test(size=(150, 44)) as pilot:
        app.push_screen(RunDialog(inherited=CONTAINER), got.append)
        await pilot.pause()
        line = app.screen.query_one("#run-proxy")     # the line wraps in the dialog: read it whole
        assert str(line.render()) == f"proxy {SHOWN} (HTTPS_PROXY); no_proxy localhost  (the container's, kept for the run)"
        assert "(HTTPS_PROXY); no_proxy localhost  (the" in screen_text(app)
        app.screen.query_one("#env", Input).value = "HTTPS_PROXY=http://me:pw2secret@other.test:8080"
        await pilot.pause()
        assert str(line.render()) == "proxy http://***@other.test:8080 (HTTPS_PROXY); no_proxy localhost  (set for this run)"
        assert "pw2secret" not in str(line.render())
        await pilot.click("#run")
        await pilot.pause()
        # reopened with what was run: the login typed stays in memory, masked on the screen
        app.push_screen(RunDialog(got[-1], inherited=CONTAINER), got.append)
        await pilot.pause()
        text = screen_text(app) + app.screen.query_one("#env", Input).value
        shown = str(app.screen.query_one("#run-proxy").render())
        assert "pw2secret" not in text and PW not in text and shown.endswith("(set for this run)")
        await pilot.click("#run")
        await pilot.pause()
    assert got[-1].env["HTTPS_PROXY"] == "http://me:pw2secret@other.test:8080"
