"""A real container told to use a proxy with a login (``HTTPS_PROXY=http://lab:s3cretpw@...``,
``NO_PROXY=localhost``, as ``docker run -e`` sets them): the screen shows its proxy, reruns (``r``
and ``egress-tui learn``) keep it or take the one their environment sets, and the login shows
up nowhere: not on the screen, the run log, the run records, the exports or the session reports,
even when the command prints it (whole, alone, or as the Basic credential curl -v would show)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from egress_tui.core.runs import RunSpec
from egress_tui.core.secrets import HIDDEN
from egress_tui.ui.app import AppConfig, create_app
from tests.dockerlab.images import BASE_TAG
from tests.pilot import screen_text, until

pytestmark = [pytest.mark.docker, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[1]
PW = "s3cretpw"
BASIC = "bGFiOnMzY3JldHB3"            # base64("lab:s3cretpw"): Proxy-Authorization: Basic ...
ENV = {"HTTPS_PROXY": f"http://lab:{PW}@proxy.test:3128", "NO_PROXY": "localhost"}
SHOWN = "http://***@proxy.test:3128"
OTHER = "http://me:pw2secret@other.test:8080"     # a run's own proxy, given as extra environment
NEVER = (PW, BASIC, "pw2secret", "bWU6cHcyc2VjcmV0")

# What the command sees, printed three ways: the variable, its password alone, its Basic credential.
# The command line itself holds no credential (it is recorded): the values come from the container.
SHOW_PROXY = ["sh", "-c", 'echo "proxy=$HTTPS_PROXY no=$NO_PROXY"; '
                          'login=$(echo "$HTTPS_PROXY" | cut -d/ -f3 | cut -d@ -f1); '
                          'echo "${login#*:}"; printf %s "$login" | base64']


@pytest.fixture(scope="module")
def proxied(docker_lab):
    return docker_lab.add_container(BASE_TAG, "proxied", environment=ENV)


def status_lines(app) -> list[str]:
    lines = screen_text(app).splitlines()
    top = next(i for i, line in enumerate(lines) if "pkt/s" in line)
    return [line.strip() for line in lines[top:top + 2]]


def log_text(app) -> str:
    """The run log pane, its wrapped lines joined again."""
    return "".join(line.text for line in app.main.query_one("#runlog").lines)


@pytest.mark.asyncio
async def test_the_screen_shows_the_container_proxy_and_reruns_keep_it(docker_lab, proxied, tmp_path):
    app = create_app(AppConfig(container=proxied.name))
    async with app.run_test(size=(160, 44)) as pilot:
        await until(pilot, lambda: app.inspection is not None and "capturing" in app.state
                    and app.inspection.source.ready.is_set(), 30, "attach")
        assert status_lines(app)[1] == f"proxy {SHOWN} (HTTPS_PROXY); no_proxy localhost"
        assert app.inspection.proxy == app.inspection.container.proxy     # read from the engine
        # run 1: nothing set for the run: it keeps the container's proxy
        app.start_run(RunSpec(SHOW_PROXY, "none", "", {}, 20))
        await until(pilot, lambda: not app.run_active, 60, "run 1")
        r1 = app.runs[0]
        assert (r1.exit_code, r1.error) == (0, "")
        assert r1.output_tail == [f"proxy={SHOWN} no=localhost", HIDDEN, HIDDEN]
        assert r1.proxy_env == ["HTTPS_PROXY", "NO_PROXY"] and r1.proxy["proxies"] == {"HTTPS_PROXY": SHOWN}
        # run 2: the run's own HTTPS_PROXY replaces the container's; NO_PROXY stays
        app.start_run(RunSpec(SHOW_PROXY, "none", "", {"HTTPS_PROXY": OTHER}, 20))
        await until(pilot, lambda: not app.run_active, 60, "run 2")
        r2 = app.runs[1]
        assert r2.output_tail == ["proxy=http://***@other.test:8080 no=localhost", HIDDEN, HIDDEN]
        assert r2.proxy["proxies"] == {"HTTPS_PROXY": "http://***@other.test:8080"}
        assert r2.proxy_env == ["HTTPS_PROXY", "NO_PROXY"]
        log = log_text(app)
        assert f"(firewall off; proxy {SHOWN} (HTTPS_PROXY); no_proxy localhost)" in log
        assert "(firewall off; proxy http://***@other.test:8080 (HTTPS_PROXY)" in log
        # the runs view
        await pilot.press("R")
        await until(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen", 10, "the runs view")
        runs_view = screen_text(app)
        assert "through proxy http://***@other.test:8080 (HTTPS_PROXY); no_proxy localhost" in runs_view
        await pilot.press("escape")
        # every export
        for fmt, name in (("json", "r.json"), ("markdown", "r.md"), ("session-json", "s.json"),
                          ("session-md", "s.md")):
            app.export(fmt, str(tmp_path / name))
        await until(pilot, lambda: all((tmp_path / n).exists() for n in ("s.json", "s.md")), 30, "exports")
        await app.workers.wait_for_complete()
        seen = screen_text(app) + runs_view + log
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None, 60, "the app to exit")
    session = json.loads((tmp_path / "s.json").read_text())
    assert session["proxy"]["proxies"] == {"HTTPS_PROXY": SHOWN} and session["proxy"]["no_proxy"] == ["localhost"]
    assert [r["proxy_env"] for r in session["runs"]] == [["HTTPS_PROXY", "NO_PROXY"]] * 2
    assert session["runs"][1]["spec"]["env"] == {"HTTPS_PROXY": "http://***@other.test:8080"}
    assert json.loads((tmp_path / "r.json").read_text())["proxy"]["proxies"] == {"HTTPS_PROXY": SHOWN}
    assert "- proxy: http://\\*\\*\\*@proxy.test:3128 (HTTPS\\_PROXY); no\\_proxy localhost" in (
        tmp_path / "s.md").read_text()
    for text in [seen, *((tmp_path / n).read_text() for n in ("r.json", "r.md", "s.json", "s.md"))]:
        for secret in NEVER:
            assert secret not in text


def test_learn_keeps_the_container_proxy_and_writes_no_login(docker_lab, proxied, tmp_path):
    for report in ("s.json", "s.md"):
        r = subprocess.run([sys.executable, "-m", "egress_tui", "learn", "--provider", "none", "--timeout", "20",
                            "--format", "json", "--session-report", str(tmp_path / report), proxied.name,
                            "--", *SHOW_PROXY], capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        assert f"; proxy {SHOWN} (HTTPS_PROXY); no_proxy localhost" in r.stderr      # said as it starts
        assert f"  | proxy={SHOWN} no=localhost" in r.stderr.splitlines()             # the command's own view
        assert json.loads(r.stdout)["proxy"]["proxies"] == {"HTTPS_PROXY": SHOWN}
        for secret in NEVER:
            assert secret not in r.stdout + r.stderr
    session = json.loads((tmp_path / "s.json").read_text())
    [run] = session["runs"]
    assert run["proxy_env"] == ["HTTPS_PROXY", "NO_PROXY"] and run["output_tail"][1:] == [HIDDEN, HIDDEN]
    assert session["proxy"]["proxies"] == {"HTTPS_PROXY": SHOWN}
    md = (tmp_path / "s.md").read_text()
    assert "Through proxy http://\\*\\*\\*@proxy.test:3128 (HTTPS\\_PROXY); no\\_proxy localhost" in md
    for text in ((tmp_path / "s.json").read_text(), md):
        for secret in NEVER:
            assert secret not in text
