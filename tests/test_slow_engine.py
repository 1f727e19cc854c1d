"""The screen answers while Docker or iptables is slow: attaching, listing containers, the
firewall's status for a session report and removing the firewall on quit all wait in
workers, never on the UI thread. The slow parts are held by the test until it lets them go."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest

from tests.pilot import screen_text
from tests.pilot import until as wait

from egress_tui.inspection import Inspection
from egress_tui.live.containers import ContainerInfo
from egress_tui.ui.app import AppConfig, create_app
from egress_tui.ui.screens.help import HelpScreen
from egress_tui.ui.screens.picker import PickerScreen

SIZE = (140, 40)
CID = "3f2a9c1d7e6b" + "0" * 52
BOX = ContainerInfo(CID, "claude-box", "egress-tui-test/claude", "running", ["lab"], 4242, ["198.18.0.9"])


async def until(pilot, cond, what: str) -> None:
    await wait(pilot, cond, 20, what)


class Held:
    """Something slow: each call says it was asked, then waits until the test lets it go."""

    def __init__(self):
        self.asked = threading.Event()
        self.go = threading.Event()

    def wait(self) -> None:
        self.asked.set()
        assert self.go.wait(30), "never let go"


class SlowEngine(Held):
    """A docker client whose every call waits for the test: an engine slow to answer."""

    def __init__(self, items: list[ContainerInfo]):
        super().__init__()
        self.items = items
        self.api = SimpleNamespace(base_url="http+docker://localhost")
        self.containers = self

    def list(self, all=False, filters=None):
        self.wait()
        return [] if filters else [SimpleNamespace(
            id=i.id, name=i.name, status=i.status, image=None,
            attrs={"State": {"Status": i.status, "Pid": i.pid}, "Config": {"Image": i.image},
                   "NetworkSettings": {"Networks": {n: {} for n in i.networks}}}) for i in self.items]

    def get(self, ref):
        from docker.errors import NotFound
        self.wait()
        raise NotFound(ref)


@pytest.mark.asyncio
async def test_the_picker_takes_keys_while_the_engine_lists_containers():
    dc = SlowEngine([BOX, ContainerInfo("b" * 64, "postgres", "postgres:16", "running", ["bridge"], 2, [])])
    app = create_app(AppConfig(docker_client=dc))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, dc.asked.is_set, "the picker to ask the engine")
        picker = app.screen
        assert isinstance(picker, PickerScreen)
        await pilot.press("slash", *"claude")           # typed while the list is still coming
        assert picker.query_one("Input").value == "claude"
        dc.go.set()
        await until(pilot, lambda: not picker.loading, "the list")
        await pilot.pause()
        assert picker.query_one("#picker-table").row_count == 1


@pytest.mark.asyncio
async def test_attaching_through_a_slow_engine_leaves_the_screen_answering():
    dc = SlowEngine([])
    app = create_app(AppConfig(container="ghost", docker_client=dc))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, dc.asked.is_set, "the attach to ask the engine")
        assert app.state == "attaching…"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is app.main
        dc.go.set()
        await until(pilot, lambda: app.return_code is not None, "the app to give up on ghost")
    assert app.return_code == 2


class SlowFirewall(Inspection):
    """A live inspection whose firewall is on and answers only when the test lets it: iptables
    slow to answer, or a helper container slow to start."""

    def __init__(self):
        super().__init__(container=BOX, method="netns (host)", target=BOX.name)
        self.resolvers = ["127.0.0.11"]
        self.status_call, self.removal = Held(), Held()
        self.on = True

    def start_capture(self, on_batch=None, on_state=None, record=None):
        return None

    @property
    def firewall_on(self) -> bool:
        return self.on

    def firewall_counts(self):
        return (1, 2) if self.on else None

    def firewall_addresses(self):
        return {"198.18.64.1"} if self.on else None

    def firewall_state(self):
        self.status_call.wait()
        return {"on": self.on, "allowlist": ["api.anthropic.com"], "dropped_packets": {4: 3, 6: 0}}

    def remove_firewall(self) -> None:
        self.removal.wait()
        self.on = False


@pytest.mark.asyncio
async def test_the_session_report_and_quitting_never_wait_on_the_firewall(tmp_path):
    insp = SlowFirewall()
    app = create_app(AppConfig(start_capture=False, presets=["anthropic"]))
    async with app.run_test(size=SIZE) as pilot:
        app.show_inspection(insp)
        app.update_firewall_text()
        out = tmp_path / "session.json"
        app.export("session-json", str(out))
        await until(pilot, insp.status_call.asked.is_set, "the report to ask the firewall")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        insp.status_call.go.set()
        await until(pilot, out.exists, "the session report")
        await app.workers.wait_for_complete()
        assert json.loads(out.read_text())["firewall"]["on"] is True
        await pilot.press("q")
        await until(pilot, lambda: app.screen.__class__.__name__ == "ChoiceDialog", "the quit dialog")
        await pilot.press("enter")                        # remove the firewall, then quit
        await until(pilot, insp.removal.asked.is_set, "the removal")
        assert "removing" in app.firewall_text
        await pilot.press("question_mark")              # still answering while it removes
        assert isinstance(app.screen, HelpScreen)
        assert app.return_code is None
        insp.removal.go.set()
        await until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == 0 and not insp.on and insp.closed


@pytest.mark.asyncio
async def test_the_detail_pane_never_waits_for_the_capture_lock():
    """Selecting a host while the capture thread holds the engine: the screen answers at once
    and the flows arrive with the capture's next batch."""
    from egress_tui.cli import demo_capture
    app = create_app(AppConfig(pcap=demo_capture(), speed=0.02))  # slow: the capture runs on
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: any(r.connections for r in app.session.rows.values()), "a host with flows")
        name, row = next((n, r) for n, r in app.session.rows.items() if r.connections)
        cap = app.inspection.capturer
        held, release, gave_up = threading.Event(), threading.Event(), threading.Event()

        def hold() -> None:
            with cap.lock:  # what the capture thread does while it feeds the engine
                held.set()
                if not release.wait(3):
                    gave_up.set()  # the screen was stuck behind the lock all this time

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        assert held.wait(5)
        app.main.table.move_cursor(row=app.main.table.get_row_index(name))
        app.main.show_detail(name)              # the old code waited for the lock right here
        release.set()
        holder.join(5)
        assert not gave_up.is_set() and cap.is_alive()
        await until(pilot, lambda: f"{row.connections} connection(s)" in screen_text(app)
                    or f"{app.session.rows[name].connections} connection(s)" in screen_text(app), "the flows")
