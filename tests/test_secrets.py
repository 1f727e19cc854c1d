"""Credentials stay in memory: the masking rules, and every place that could leak them (run
records, the session report, the run dialog on its second opening)."""

from __future__ import annotations

import json

import pytest

from egress_tui.core.evidence import session_data, session_markdown, write_session
from egress_tui.core.runs import RunRecord, RunSpec, provider_env
from egress_tui.core.secrets import (HIDDEN, NOT_RECORDED, is_secret_key, mask_cmdline, mask_env, mask_urls,
                                     mask_value, redact, redact_argv, secret_values)

API_KEY = "sk-ant-api03-NEVER-ON-DISK-1234"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PROXY_PW = "pr0xy-pass-word"


@pytest.mark.parametrize("key, secret", [
    ("ANTHROPIC_API_KEY", True),
    ("Anthropic_Api_Key", True),
    ("anthropic_auth_token", True),
    ("aws_session_token", True),
    ("AWS_SECRET_ACCESS_KEY", True),
    ("AWS_ACCESS_KEY_ID", True),
    ("GOOGLE_APPLICATION_CREDENTIALS", True),
    ("Db_Password", True),
    ("MYSQL_PASSWD", True),
    ("AWS_BEARER_TOKEN_BEDROCK", True),
    ("ANTHROPIC_MODEL", False),
    ("AWS_REGION", False),
    ("CLAUDE_CODE_USE_BEDROCK", False),
    ("HTTPS_PROXY", False),
])
def test_secret_names_match_whatever_their_case(key, secret):
    assert is_secret_key(key) is secret


@pytest.mark.parametrize("text, shown", [
    ("http://user:pw@proxy:3128", "http://***@proxy:3128"),
    ("HTTPS_PROXY=http://user:pw@proxy:3128/", "HTTPS_PROXY=http://***@proxy:3128/"),
    ("https://token@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
    ("socks5h://u:p@10.0.0.1:1080", "socks5h://***@10.0.0.1:1080"),
    ("git+ssh://git@host:22/x", "git+ssh://***@host:22/x"),
    ("postgres://app:s3cr@t@db/name", "postgres://***@db/name"),          # unescaped @ in a password
    ("a http://u:p@one and ftp://v:q@two", "a http://***@one and ftp://***@two"),
    ("http://host/path?mail=a@b.c", "http://host/path?mail=a@b.c"),      # an @ after the authority
    ("user@example.com wrote", "user@example.com wrote"),                # no URL at all
    ("http://host:8080/", "http://host:8080/"),
])
def test_url_userinfo_is_masked_anywhere_in_a_string(text, shown):
    assert mask_urls(text) == shown


def test_a_long_hostile_line_is_masked_in_linear_time():
    line = "a." * 200_000 + "x://y" * 50_000 + "http://" + "u:" * 100_000 + "@h"
    assert mask_urls(line).endswith("x://y" * 3 + "http://***@h")


@pytest.mark.parametrize("key, value, shown", [
    ("ANTHROPIC_API_KEY", API_KEY, HIDDEN),
    ("aws_secret_access_key", AWS_SECRET, HIDDEN),
    ("HTTPS_PROXY", f"http://corp:{PROXY_PW}@proxy:3128", "http://***@proxy:3128"),
    ("https_proxy", f"corp:{PROXY_PW}@proxy:3128", "***@proxy:3128"),  # no scheme: still a proxy login
    ("ANTHROPIC_BASE_URL", "https://gw.example/v1", "https://gw.example/v1"),
    ("AWS_REGION", "ap-northeast-1", "ap-northeast-1"),
])
def test_env_values_are_shown_masked(key, value, shown):
    assert mask_value(key, value) == shown
    assert mask_env({key: value}) == {key: shown}


def test_known_secret_values_are_redacted_out_of_free_text():
    env = {"ANTHROPIC_API_KEY": API_KEY, "HTTPS_PROXY": f"http://corp:{PROXY_PW}@proxy:3128",
           "CLAUDE_CODE_USE_BEDROCK": "1", "AWS_SESSION_TOKEN": "abc"}  # too short to be a credential
    values = secret_values(env)
    assert API_KEY in values and PROXY_PW in values and "1" not in values and "abc" not in values
    text = f"Error: 401 for key {API_KEY}; proxy said {PROXY_PW}; see http://x:y@z"
    out = redact(text, values)
    assert API_KEY not in out and PROXY_PW not in out and "x:y" not in out
    assert out == f"Error: 401 for key {HIDDEN}; proxy said {HIDDEN}; see http://***@z"


@pytest.mark.parametrize("key, value", [
    ("HTTPS_PROXY", f"http://corp:{PROXY_PW}@proxy:3128"),
    ("https_proxy", f"corp:{PROXY_PW}@proxy:3128"),              # no scheme, as curl and Node take it
    ("All_Proxy", f"socks5h://corp:{PROXY_PW}@proxy:1080"),
    ("HTTP_PROXY", f"corp:{PROXY_PW.replace('-', '%2D')}@proxy:3128"),  # percent-encoded
])
def test_a_proxy_login_is_a_secret_value_in_every_form_a_client_prints(key, value):
    import base64
    values = secret_values({key: value})
    basic = base64.b64encode(f"corp:{PROXY_PW}".encode()).decode()  # curl -v: Proxy-Authorization: Basic ...
    assert PROXY_PW in values and basic in values
    for line in (f"password {PROXY_PW}", f"> Proxy-Authorization: Basic {basic}", f"via {value}"):
        out = redact(line, values)
        assert PROXY_PW not in out and basic not in out and PROXY_PW.replace("-", "%2D") not in out, out
    assert "corp" not in values                                   # too short to mask ordinary words


@pytest.mark.parametrize("argv, recorded", [
    (["report", "--demo", "--proxy", f"corp:{PROXY_PW}@proxy:3128"], ["report", "--demo", "--proxy", "***@proxy:3128"]),
    (["report", "--demo", f"--proxy=http://corp:{PROXY_PW}@proxy:3128"],
     ["report", "--demo", "--proxy=http://***@proxy:3128"]),
    (["report", "--demo", "--proxy", "http://squid:3128"], ["report", "--demo", "--proxy", "http://squid:3128"]),
    (["learn", "c", "-e", f"ANTHROPIC_API_KEY={API_KEY}"], ["learn", "c", "-e", f"ANTHROPIC_API_KEY={NOT_RECORDED}"]),
    (["learn", "c", "--env=MODEL=x"], ["learn", "c", f"--env=MODEL={NOT_RECORDED}"]),
    (["learn", "c", "--env", "A=b"], ["learn", "c", "--env", f"A={NOT_RECORDED}"]),
    (["learn", "c", f"-eAWS_SECRET_ACCESS_KEY={AWS_SECRET}"], ["learn", "c", f"-eAWS_SECRET_ACCESS_KEY={NOT_RECORDED}"]),
    (["learn", "c", "--", "curl", f"http://u:{PROXY_PW}@h/"], ["learn", "c", "--", "curl", "http://***@h/"]),
    (["learn", "c", "--", "tool", "--key", API_KEY], ["learn", "c", "--", "tool", "--key", HIDDEN]),
])
def test_a_recorded_command_line_has_no_environment_values(argv, recorded):
    assert redact_argv(argv, {API_KEY}) == recorded


@pytest.mark.parametrize("argv, shown", [
    # what a process in the container may have on its command line (read from /proc)
    (["curl", "-u", "bob:hunter22", "https://x.test/"], f"curl -u {HIDDEN} https://x.test/"),
    (["curl", "-ubob:hunter22", "https://x.test/"], f"curl -u{HIDDEN} https://x.test/"),
    (["curl", "-H", "Authorization: Bearer abc.def", "https://x.test/"], f"curl -H Authorization: {HIDDEN} https://x.test/"),
    (["curl", "-H", "x-api-key: sk-123456", "https://x.test/"], f"curl -H x-api-key: {HIDDEN} https://x.test/"),
    (["git", "clone", f"https://tok:{PROXY_PW}@git.test/r"], "git clone https://***@git.test/r"),
    (["env", f"ANTHROPIC_API_KEY={API_KEY}", "claude"], f"env ANTHROPIC_API_KEY={HIDDEN} claude"),
    (["tool", "--api-key", "k-1234", "--verbose"], f"tool --api-key {HIDDEN} --verbose"),
    (["tool", "--token=t-1234"], f"tool --token={HIDDEN}"),
    # a flag named like a secret takes no value: the next option is shown
    (["claude", "--no-session-persistence", "-p", "hi"], "claude --no-session-persistence -p hi"),
    # a secret of the process's own environment, wherever it appears
    (["node", "app.js", f"--header=x-goog: {API_KEY}"], f"node app.js --header=x-goog: {HIDDEN}"),
    (["sh", "-c", "curl https://x.test/"], "sh -c curl https://x.test/"),
])
def test_a_process_command_line_is_shown_masked(argv, shown):
    assert mask_cmdline(argv, {API_KEY}) == shown


def _run(env: dict[str, str]) -> RunRecord:
    spec = RunSpec(command=["curl", "-x", f"http://corp:{PROXY_PW}@proxy:3128", "https://api.anthropic.com"],
                   provider="anthropic", env=env, timeout=5)
    return RunRecord(1, spec, "claude-box", firewall=False, started=1.0, ended=2.0, exit_code=0,
                     error=f"upstream refused key {API_KEY}",
                     output_tail=[f"ANTHROPIC_API_KEY={API_KEY}", f"using {AWS_SECRET}", "done"],
                     hosts={"api.anthropic.com": {"connections": 1, "outcomes": {"closed": 1}, "reached": True,
                                                  "blocked": False, "via": ["tls"], "ports": [443]}})


def test_a_run_record_written_out_holds_no_credential():
    rec = _run({"ANTHROPIC_API_KEY": API_KEY, "aws_secret_access_key": AWS_SECRET, "ANTHROPIC_MODEL": "m"})
    d = rec.to_json()
    text = json.dumps(d)
    for secret in (API_KEY, AWS_SECRET, PROXY_PW):
        assert secret not in text
    assert d["spec"]["env"] == {"ANTHROPIC_API_KEY": HIDDEN, "aws_secret_access_key": HIDDEN, "ANTHROPIC_MODEL": "m"}
    assert d["output_tail"][-1] == "done" and d["hosts"]["api.anthropic.com"]["reached"]
    assert PROXY_PW not in rec.spec.describe() and "curl -x http://***@proxy:3128" in rec.spec.describe()
    # the record in memory keeps what the next run needs
    assert rec.spec.env["ANTHROPIC_API_KEY"] == API_KEY


@pytest.mark.parametrize("suffix", [".json", ".md"])
def test_the_session_report_holds_no_credential_from_the_command_line_or_the_environment(
        tmp_path, monkeypatch, suffix):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMMYSHELL0000")
    env = provider_env("bedrock", "ap-northeast-1")  # passed through from the environment
    env["ANTHROPIC_API_KEY"] = API_KEY                  # as given with -e
    argv = ["egress-tui", "learn", "claude-box", "--provider", "bedrock", "-e", f"ANTHROPIC_API_KEY={API_KEY}",
            "--session-report", f"s{suffix}", "--", "curl", "-x", f"http://corp:{PROXY_PW}@proxy:3128", "x"]
    data = session_data(source="learn claude-box", container={"name": "claude-box", "id": "a" * 64,
                        "image": "img", "networks": ["bridge"]}, rows=[], runs=[_run(env)], allowlist=[],
                        firewall=None, versions={"egress-tui": "test"}, argv=argv)
    path = write_session(str(tmp_path / f"s{suffix}"), data)
    text = open(path, encoding="utf-8").read()
    for secret in (API_KEY, AWS_SECRET, "AKIAFROMMYSHELL0000", PROXY_PW):
        assert secret not in text
    if suffix == ".json":
        cl = json.loads(text)["command_line"]
        assert f"ANTHROPIC_API_KEY={NOT_RECORDED}" in cl and "http://***@proxy:3128" in cl
    else:
        assert "Run 1: `curl -x http://***@proxy:3128" in text


def test_the_session_report_records_the_real_command_line_masked(monkeypatch):
    monkeypatch.setattr("sys.argv", ["egress-tui", "learn", "c", "-e", f"ANTHROPIC_API_KEY={API_KEY}"])
    data = session_data(source="s", container=None, rows=[], runs=[], allowlist=[], firewall=None, versions={})
    assert data["command_line"] == ["egress-tui", "learn", "c", "-e", f"ANTHROPIC_API_KEY={NOT_RECORDED}"]
    assert API_KEY not in session_markdown(data)


# -- the run dialog, opened twice --------------------------------------------------------------

def _dialog_text(app) -> str:
    """Everything the dialog shows: the screen, and the values inside its inputs."""
    from textual.widgets import Input

    from tests.test_app import screen_text
    return screen_text(app) + "\n".join(i.value for i in app.screen.query(Input))


@pytest.mark.asyncio
async def test_the_run_dialog_never_shows_a_credential_on_any_opening(monkeypatch):
    from textual.widgets import Input

    from egress_tui.ui.app import AppConfig, create_app
    from egress_tui.ui.screens.run_dialog import RunDialog
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    typed = "tok-typed-by-the-user-5678"
    app = create_app(AppConfig(start_capture=False))
    got = []
    async with app.run_test(size=(150, 44)) as pilot:
        app.push_screen(RunDialog(), got.append)
        await pilot.pause()
        assert API_KEY not in _dialog_text(app)
        assert "ANTHROPIC_API_KEY (set, passed through)" in _dialog_text(app)
        app.screen.query_one("#env", Input).value = (f"MY_SERVICE_TOKEN={typed} ANTHROPIC_MODEL=m "
                                                     f"HTTPS_PROXY=http://corp:{PROXY_PW}@proxy:3128")
        await pilot.click("#run")
        await pilot.pause()
        first = got[-1]
        assert first.env["ANTHROPIC_API_KEY"] == API_KEY and first.env["MY_SERVICE_TOKEN"] == typed
        # second opening, with the spec the first one returned (as `r` does)
        for _ in range(2):
            app.push_screen(RunDialog(got[-1]), got.append)
            await pilot.pause()
            shown = _dialog_text(app)
            for secret in (API_KEY, typed, PROXY_PW):
                assert secret not in shown
            env_input = app.screen.query_one("#env", Input).value
            assert f"MY_SERVICE_TOKEN={HIDDEN}" in env_input and "http://***@proxy:3128" in env_input
            assert "ANTHROPIC_API_KEY (set, passed through)" in shown
            await pilot.click("#run")
            await pilot.pause()
            # left as shown: the values typed before are used, from memory
            again = got[-1]
            assert again.env["MY_SERVICE_TOKEN"] == typed and again.env["ANTHROPIC_API_KEY"] == API_KEY
            assert again.env["HTTPS_PROXY"] == f"http://corp:{PROXY_PW}@proxy:3128"
        # retyped: the new value wins
        app.push_screen(RunDialog(got[-1]), got.append)
        await pilot.pause()
        app.screen.query_one("#env", Input).value = "MY_SERVICE_TOKEN=new-value-9999"
        await pilot.click("#run")
        await pilot.pause()
    assert got[-1].env["MY_SERVICE_TOKEN"] == "new-value-9999" and "HTTPS_PROXY" not in got[-1].env
