"""The loop the user came for, on the screen, against real Claude Code in the Docker lab:
watch a run, lock the container down with `f`, rerun with `r`, see what was stopped, compare
runs, export the evidence, and quit leaving the namespace as it was."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.pilot import screen_text, until
from egress_tui.ui.app import AppConfig, create_app
from egress_tui.core.runs import RunSpec, provider_env

pytestmark = [pytest.mark.docker, pytest.mark.root]

RUNTIME = "bedrock-runtime.ap-northeast-1.amazonaws.com"
BEDROCK_ENV = {**provider_env("bedrock", "ap-northeast-1", environ={}),
               "AWS_ACCESS_KEY_ID": "AKIAEGRESSTUITEST000", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"}
ANTHROPIC_ENV = {"ANTHROPIC_API_KEY": "sk-ant-egress-tui-test"}


def normalize(text):
    return [re.sub(r"\[\d+:\d+\]", "", ln) for ln in text.splitlines() if not ln.startswith("#")]


@pytest.mark.asyncio
async def test_watch_lock_rerun_compare_export_quit(docker_lab, tmp_path):
    lab = docker_lab
    before = [normalize(lab.nsenter([t, "-t", "filter"]).stdout) for t in ("iptables-save", "ip6tables-save")]
    app = create_app(AppConfig(container=lab.target.name, presets=["bedrock:ap-northeast-1"]))
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: app.inspection is not None and "capturing" in app.state
                    and app.inspection.source.ready.is_set(), 30, "attach")
        # run 1: Bedrock mode, firewall off
        app.start_run(RunSpec(["claude", "-p", "hello"], "bedrock", "ap-northeast-1", BEDROCK_ENV, 12))
        await until(pilot, lambda: not app.run_active, 60, "run 1")
        assert app.runs[0].hosts[RUNTIME]["reached"] and not app.runs[0].firewall
        # lock down: f
        await pilot.press("f")
        await until(pilot, lambda: app.inspection.firewall_on and "FIREWALL ON" in app.firewall_text, 60, "firewall on")
        # run 2: Anthropic mode under the firewall
        app.start_run(RunSpec(["claude", "-p", "hello"], "anthropic", "", ANTHROPIC_ENV, 12))
        await until(pilot, lambda: not app.run_active, 60, "run 2")
        r2 = app.runs[1]
        assert r2.firewall and r2.hosts["api.anthropic.com"]["blocked"]
        await until(pilot, lambda: getattr(app.session.rows.get("api.anthropic.com"), "blocked", False), 10, "row")
        cell = app.main.table.get_cell("api.anthropic.com", "verdict").plain
        assert cell == "denied, blocked"
        # run 3: Bedrock again, still allowed through
        app.start_run(RunSpec(["claude", "-p", "hello"], "bedrock", "ap-northeast-1", BEDROCK_ENV, 12))
        await until(pilot, lambda: not app.run_active, 60, "run 3")
        assert app.runs[2].hosts[RUNTIME]["reached"]
        # the runs view compares run 3 with run 2
        await pilot.press("R")
        await until(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen", 10, "the runs view")
        text = screen_text(app)
        assert "Compared with run 2 (firewall on)" in text
        assert f"appeared (only now): {RUNTIME}" in text or RUNTIME in text.split("appeared (only now):")[1]
        await pilot.press("escape")
        # evidence
        app.export("session-json", str(tmp_path / "s.json"))     # written by workers
        app.export("session-md", str(tmp_path / "s.md"))
        await until(pilot, lambda: (tmp_path / "s.json").exists() and (tmp_path / "s.md").exists(), 30, "exports")
        await app.workers.wait_for_complete()
        data = json.loads((tmp_path / "s.json").read_text())
        assert [r["firewall"] for r in data["runs"]] == [False, True, True]
        assert data["firewall"]["on"] is True
        assert "AKIA" not in (tmp_path / "s.json").read_text()        # credentials stay out
        md = (tmp_path / "s.md").read_text()
        assert "**blocked**: api.anthropic.com" in md and "Run 2 → run 3" in md
        # quit: asked whether to leave the firewall on; remove it
        await pilot.press("q")
        await until(pilot, lambda: app.screen.__class__.__name__ == "ChoiceDialog", 10, "the quit question")
        await pilot.press("enter")                                   # "remove the firewall, then quit"
        await until(pilot, lambda: app.return_code is not None, 60, "the app to exit")
    after = [normalize(lab.nsenter([t, "-t", "filter"]).stdout) for t in ("iptables-save", "ip6tables-save")]
    assert after == before
    assert "egress-tui" not in lab.nsenter(["ipset", "list", "-n"]).stdout
    assert not os.path.exists(f"/run/egress-tui/{lab.target.id}.json")
