"""The Textual application, and the one factory that builds it for the CLI, the tests and
the screenshot script."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import App, SystemCommand
from textual.message import Message

from egress_tui.core.allowlist import AllowlistError, build
from egress_tui.live.capture import Batch, Capturer, ReplaySource
from egress_tui.live.recorder import PcapngRecorder
from egress_tui.core.safetext import safe_text
from egress_tui.core.rows import HostRow
from egress_tui.core.session import Session


class CaptureBatch(Message):
    """Posted by the capture thread a few times a second: the hosts that changed."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        super().__init__()


class CaptureState(Message):
    """Posted by the capture thread when the container stops, restarts or goes away."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__()


class FirewallDone(Message):
    """The firewall worker finished: applied, removed, or failed (``error``)."""

    def __init__(self, on: bool, text: str, error: str = "", checks: list | None = None) -> None:
        self.on = on
        self.text = text
        self.error = error
        self.checks = checks or []
        super().__init__()


class RunLine(Message):
    def __init__(self, line: str) -> None:
        self.line = line
        super().__init__()


class RunDone(Message):
    def __init__(self, record) -> None:
        self.record = record
        super().__init__()


@dataclass
class AppConfig:
    """Everything the app needs, decided by the CLI (or a test) before it starts."""

    container: str | None = None          # name or id; None with no pcap: show the picker
    pcap: str | None = None               # replay this capture instead
    pcap_input: object = None             # pcapfile.CaptureInput: the --pcap stream, opened once by the CLI
    speed: float = 1.0
    allow_files: list[str] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)
    method: str = "auto"                  # auto, netns, helper
    helper_image: str | None = None
    docker_client: object = None          # injected by tests; else from the environment
    start_capture: bool = True            # tests and screenshots may feed batches themselves


class EgressApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "egress-tui"

    def __init__(self, config: AppConfig, session: Session):
        super().__init__()
        self.config = config
        self.session = session
        self.capturer: Capturer | None = None
        self.paused = False
        self.pending: list[dict] = []
        self.target = "-"
        self.method = "-"
        self.state = ""
        self.last_batch = Batch()
        self._record_path: str | None = None
        self._recorder: PcapngRecorder | None = None
        self.guard = None            # firewall.Guard, when attached to a container from the host
        self.no_firewall_reason = ""  # why there is no guard for this container, when there is a reason
        self.firewall_text = ""       # shown in the status bar when a container is attached
        self.firewall_stale = False   # the session's allowlist is not the one the firewall carries
        self._set_errors_told = 0     # set update errors already notified
        self.container = None        # containers.ContainerInfo
        self.runs: list = []         # runs.RunRecord
        self.last_spec = None
        self.run_active = False

    # -- plain text only ------------------------------------------------------------------

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Every notification as plain text, whoever asks (screens pass ``markup=True``):
        messages carry host names, paths and errors, which are data, never markup."""
        super().notify(safe_text(message), title=safe_text(title), severity=severity, timeout=timeout,
                       markup=False)

    def exit(self, result=None, return_code: int = 0, message=None) -> None:
        # printed on the real terminal after the screen closes: a str would be parsed as markup
        if isinstance(message, str):
            message = Text(safe_text(message))
        super().exit(result, return_code, message)

    # -- start ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        from egress_tui.ui.screens.main import MainScreen
        self.install_screen(MainScreen(), name="main")
        self.push_screen("main")
        if not self.config.start_capture:
            self.refresh_status()
            return
        if self.config.pcap:
            self.start_source(ReplaySource(self.config.pcap_input or self.config.pcap, self.config.speed),
                              os.path.basename(self.config.pcap), "replay")
        elif self.config.container:
            self.attach(self.config.container)
        else:
            self.show_picker()

    def show_picker(self) -> None:
        from egress_tui.live.containers import DockerError, client, list_containers
        from egress_tui.ui.screens.picker import PickerScreen
        try:
            dc = self.docker()
        except DockerError as e:
            self.exit(message=str(e), return_code=2)
            return
        del client
        self.push_screen(PickerScreen(lambda: list_containers(dc)), lambda cid: cid and self.attach(cid))

    def docker(self):
        from egress_tui.live.containers import client
        if self.config.docker_client is None:
            self.config.docker_client = client()
        return self.config.docker_client

    def attach(self, ref: str) -> None:
        from egress_tui.live.capture import CaptureError
        from egress_tui.live.containers import capture_source
        from egress_tui.live.containers import DockerError
        try:
            src, label = capture_source(self.docker(), ref, self.config.method, self.config.helper_image)
        except (DockerError, CaptureError) as e:
            self.exit(message=str(e), return_code=2)
            return
        if hasattr(src, "on_state"):
            src.on_state = lambda text: self.post_message(CaptureState(text))
        self.container = src.info
        self.start_source(src, src.info.name, label)
        from egress_tui.live.containers import DEFAULT_HELPER_IMAGE, engine_resolvers, host_network_refusal
        from egress_tui.firewall.apply import Firewall
        from egress_tui.firewall.dnssync import Guard
        from egress_tui.firewall.runners import HelperRunner, NamespaceRunner
        info = src.info
        if label.startswith("netns"):
            runner = NamespaceRunner(info.pid)
        else:
            runner = HelperRunner(self.docker(), info.id, self.config.helper_image or DEFAULT_HELPER_IMAGE)
        try:
            resolvers = engine_resolvers(self.docker(), info)
            refused = host_network_refusal(self.docker(), info)
        except DockerError as e:
            # no resolvers would mean a firewall that blocks all DNS: none, and `f` says why
            refused = f"firewall unavailable: {e}"
        if refused:
            self.guard = None  # `f` says why; a firewall here would lock down this host
            self.no_firewall_reason = refused
            self.refresh_status()
            return
        self.guard = Guard(Firewall(runner, info.id), info.pid, resolvers)
        self.capturer.engine.on_dns_answer = self.guard.on_dns_answer
        self.capturer.engine.on_dns_withdraw = self.guard.on_dns_withdraw
        self.firewall_text = "firewall off"
        self.refresh_status()

    def start_source(self, source, target: str, method: str) -> None:
        self.target = target
        self.method = method
        self.session.source = getattr(source, "description", target)
        fd, self._record_path = tempfile.mkstemp(prefix="egress-tui-", suffix=".pcapng")
        os.close(fd)
        self._recorder = PcapngRecorder(self._record_path, source=source)
        self.capturer = Capturer(source, lambda b: self.post_message(CaptureBatch(b)), record=self._recorder)
        self.capturer.start()
        self.refresh_status()

    # -- capture messages -----------------------------------------------------------------

    def on_capture_batch(self, message: CaptureBatch) -> None:
        b = message.batch
        self.last_batch = b
        if b.cleared:
            self.pending.clear()
        if b.status and b.status != self.state:
            self.state = b.status
            if b.ended and self.capturer and self.capturer.error:
                self.notify(b.status, severity="error", timeout=10)
        if b.shared:
            self.session.shared = b.shared
        rows = self.session.update(b.rows)
        if self.paused:
            self.pending.extend(rows)
        else:
            self.main.apply_rows(rows)
        if b.ended and not b.status:
            self.state = "replay finished" if self.config.pcap else "capture ended"
        self.refresh_status()

    def on_capture_state(self, message: CaptureState) -> None:
        self.state = message.text
        src = self.capturer.source if self.capturer else None
        info = getattr(src, "info", None)
        if self.guard and info and info.pid and info.pid != self.guard.pid:
            # restarted: a new namespace, without our rules; put them back if they were on
            self.guard.pid = info.pid
            if self.guard.firewall.runner.pid is not None:
                self.guard.firewall.runner.pid = info.pid
            if self.guard.on:
                self.notify("container restarted: re-applying the firewall", timeout=4)
                self.reapply_firewall(self.guard.allowlist)
        self.refresh_status()

    def feed_rows(self, rows: list[dict], status: Batch | None = None) -> None:
        """Apply rows as if a capture batch brought them (tests and screenshots)."""
        self.on_capture_batch(CaptureBatch(status or Batch(rows=rows, packets=self.last_batch.packets)))

    @property
    def main(self):
        return self.get_screen("main")

    def refresh_status(self) -> None:
        b = self.last_batch
        try:
            status = self.main.query_one("#status")
        except Exception:
            return
        status.show(target=self.target, method=self.method, rate=b.rate, packets=b.packets,
                    drops=b.kernel_drops, errors=b.errors, allowlist=self.session.allowlist_label(),
                    paused=self.paused, state=self.state, hosts=len(self.session.rows),
                    firewall=self.firewall_text, firewall_warning=self.firewall_warning())
        g = self.guard
        if g is not None and g.updater.errors > self._set_errors_told:
            self._set_errors_told = g.updater.errors
            self.notify(f"firewall: a DNS set update failed: {g.updater.last_error}", severity="warning",
                        timeout=8, markup=False)

    def host_connections(self, name: str) -> tuple[list[dict], dict[str, set[str]]]:
        """Flows of one host, read from the engine under the capture lock."""
        cap = self.capturer
        if cap is None:
            return [], {}
        with cap.lock:
            h = cap.engine.hosts.get(name)
            conns = [c.to_dict() for c in h.conns] if h else []
            shared = cap.engine.shared_addresses()
        return conns, shared

    # -- user actions (the screen calls these) --------------------------------------------

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused and self.pending:
            rows, self.pending = self.pending, []
            self.main.apply_rows(rows)
        self.refresh_status()

    def clear_hosts(self) -> None:
        if self.capturer:
            self.capturer.clear()
        self.session.clear()
        self.pending.clear()
        self.main.table.reset()
        self.main.show_detail(None)
        self.refresh_status()

    def _verdicts_changed(self) -> None:
        self.session.firewall_addresses = self.firewall_addresses()
        changed = self.session.refresh_verdicts()
        if changed:
            self.main.apply_rows(changed)
        self.update_firewall_text()
        self.refresh_status()

    def allow(self, pattern: str) -> None:
        try:
            entry = self.session.allow(pattern)
        except AllowlistError as e:
            self.notify(str(e), severity="error", markup=False)
            return
        self.notify(f"allowed {entry.text()}  (ctrl+s saves)", timeout=3, markup=False)
        self._verdicts_changed()

    def disallow(self, name: str) -> None:
        removed = self.session.disallow(name)
        if removed:
            self.notify("removed " + ", ".join(removed), timeout=3, markup=False)
        else:
            self.notify(f"{name[:120]} is not on the allowlist", severity="warning", markup=False)
        self._verdicts_changed()

    def add_preset(self, spec: str) -> None:
        try:
            n = self.session.add_preset(spec)
        except AllowlistError as e:
            self.notify(str(e), severity="error")
            return
        self.notify(f"preset {spec}: {n} entries added", timeout=3)
        self._verdicts_changed()

    def save_allowlist(self, path: str | None) -> None:
        try:
            saved = self.session.save_allowlist(path)
        except AllowlistError as e:
            self.notify(str(e), severity="error")
            return
        self.notify(f"allowlist saved to {saved}", timeout=3)
        self.refresh_status()

    def export(self, fmt: str, path: str) -> None:
        try:
            if fmt in ("session-md", "session-json"):
                from egress_tui.core.evidence import write_session
                write_session(path, self.session_data())
                self.notify(f"session report saved to {path}", timeout=3)
                return
            if fmt == "allowlist":
                self.save_allowlist(path)
                return
            if fmt == "init-script":
                from egress_tui.firewall.script import render_init_script
                resolvers = self.guard.resolvers if self.guard else None
                with open(path, "w", encoding="utf-8") as f:
                    f.write(render_init_script(self.session.allowlist, resolvers=resolvers,
                                               generated_by=f"egress-tui for {self.target}"))
                os.chmod(path, 0o755)
                self.notify(f"firewall script saved to {path}", timeout=3)
                return
            if fmt == "pcap":
                # a replayed regular file is copied as is; a pipe cannot be read again: the recording
                replayed = self.config.pcap if self.config.pcap and os.path.isfile(self.config.pcap) else None
                src = replayed or self._record_path
                if not src:
                    raise AllowlistError("no packets captured yet")
                if self.capturer and not replayed:
                    with self.capturer.lock:  # the capture thread appends to it
                        self._recorder.flush()
                        shutil.copyfile(src, path)
                        held = self._recorder.describe()
                else:
                    shutil.copyfile(src, path)
                    held = f"a copy of {os.path.basename(src)}"
                note = "" if self.config.pcap else ", the packets the capture filter let through"
                self.notify(f"saved {held} to {path}{note}", timeout=6, markup=False)
                return
            self.session.export(fmt, path)
        except (AllowlistError, OSError) as e:
            self.notify(str(e), severity="error")
            return
        self.notify(f"table saved to {path}", timeout=3)

    # -- firewall -------------------------------------------------------------------------

    def toggle_firewall(self) -> None:
        if self.guard is None:
            self.notify(self.no_firewall_reason or "the firewall needs a live container captured from the host "
                        "(as root)", severity="warning", markup=False)
            return
        if not self.guard.on and not self.session.allowlist.entries:
            self.notify("the allowlist is empty: allow hosts (a) or add a preset (p) first", severity="warning")
            return
        self.firewall_text = "firewall: removing…" if self.guard.on else "firewall: applying…"
        self.refresh_status()
        # a copy taken here, on the thread that changes the allowlist
        todo = None if self.guard.on else self.session.allowlist.copy()
        self.run_worker(lambda: self._firewall_work(todo), thread=True, exclusive=True, group="firewall",
                        exit_on_error=False)

    def reapply_firewall(self, allowlist=None) -> None:
        """Apply ``allowlist`` (the session's by default) over the firewall that is on, in one
        step: unlike `f` twice, the container is never left open in between."""
        if self.guard is None or not self.guard.on:
            self.notify("the firewall is off: f applies it", severity="warning")
            return
        self.firewall_text = "firewall: re-applying…"
        self.refresh_status()
        todo = (allowlist if allowlist is not None else self.session.allowlist).copy()
        self.run_worker(lambda: self._firewall_work(todo), thread=True, exclusive=True, group="firewall",
                        exit_on_error=False)

    def _firewall_work(self, allowlist) -> None:
        """Apply ``allowlist`` (over whatever is on), or remove the firewall when it is None."""
        from egress_tui.firewall.plan import FirewallError, resolver_warning
        guard = self.guard
        try:
            if allowlist is None:
                guard.remove()
                self.post_message(FirewallDone(False, "firewall removed"))
            else:
                plan, checks = guard.apply(allowlist)
                notes = [w for w in [resolver_warning(guard.resolvers)] if w]
                if plan.unresolved:
                    notes.append("not resolved: " + ", ".join(plan.unresolved))
                if plan.wildcards:
                    notes.append("from DNS as seen: " + ", ".join(plan.wildcards))
                self.post_message(FirewallDone(True, "; ".join(notes), checks=checks))
        except FirewallError as e:
            self.post_message(FirewallDone(guard.on, "", error=str(e)))

    def on_firewall_done(self, message: FirewallDone) -> None:
        if message.error:
            self.notify(f"firewall unchanged: {message.error}", severity="error", timeout=10)
        elif message.on:
            checks = "  ".join(f"{c.what} {c.name}: {c.result}{'' if c.ok else ' (FAILED)'}"
                               for c in message.checks)
            self.notify(f"firewall ON. {checks} {message.text}".strip(),
                        severity="information" if all(c.ok for c in message.checks) else "error", timeout=8)
        else:
            self.notify(message.text, timeout=3)
        self.update_firewall_text()
        self._verdicts_changed()

    def update_firewall_text(self) -> None:
        g = self.guard
        if g is None:
            return
        if not g.on:
            self.firewall_text = "firewall off"
        else:
            n = len(g.plan.nets[4]) + len(g.plan.nets[6]) + (len(g.plan.ports[4]) + len(g.plan.ports[6])) // 2
            self.firewall_text = f"FIREWALL ON ({len(g.plan.allowlist)} entries, {n + g.learned} addresses)"
        self.firewall_stale = g.on and not g.carries(self.session.allowlist)
        self.refresh_status()

    def firewall_warning(self) -> str:
        """What is wrong with the firewall that is on, for the status bar ("" when nothing)."""
        g = self.guard
        if g is None or not g.on:
            return ""
        notes = ["firewall carries an older allowlist (re-apply: ctrl+p)"] if self.firewall_stale else []
        if g.dropped:
            notes.append(f"DNS updates dropped: {g.dropped:,}")
        if g.updater.errors:
            notes.append(f"set update errors: {g.updater.errors:,}")
        return ", ".join(notes)

    def firewall_addresses(self) -> set[str] | None:
        """Addresses the firewall lets through now; None when it is off."""
        g = self.guard
        if g is None or not g.on:
            return None
        addrs = set(g.plan.nets[4]) | set(g.plan.nets[6])
        addrs |= {k.split(",")[0] for k in list(g.plan.ports[4]) + list(g.plan.ports[6])}
        addrs |= g.learned_addresses()
        return addrs

    # -- reruns -----------------------------------------------------------------------------

    def ask_run(self) -> None:
        if self.container is None or self.capturer is None:
            self.notify("reruns need a live container (not a replay)", severity="warning")
            return
        if self.run_active:
            self.notify("a run is still going; wait for it to finish", severity="warning")
            return
        from egress_tui.ui.screens.run_dialog import RunDialog
        self.push_screen(RunDialog(self.last_spec), lambda spec: spec and self.start_run(spec))

    def start_run(self, spec) -> None:
        import time as _time
        from egress_tui.core.runs import RunRecord
        self.last_spec = spec
        rec = RunRecord(len(self.runs) + 1, spec, self.container.name,
                        firewall=bool(self.guard and self.guard.on), started=_time.time())
        self.runs.append(rec)
        self.run_active = True
        self.main.show_log(f"run {rec.number}: {spec.describe()}  (firewall {'on' if rec.firewall else 'off'})")
        self.run_worker(lambda: self._run_work(rec), thread=True, group="run", exit_on_error=False)

    def _run_work(self, rec) -> None:
        import time as _time
        from egress_tui.core.runs import RunError, hosts_during
        from egress_tui.live.execute import run_in_container
        from egress_tui.core.secrets import redact, secret_values
        tail: list[str] = []

        def line(text: str) -> None:
            tail.append(text)
            del tail[:-200]
            self.post_message(RunLine(text))

        try:
            rec.exit_code, rec.timed_out = run_in_container(self.docker(), self.container.id, rec.spec, line)
        except RunError as e:
            rec.error = str(e)  # already masked
        except Exception as e:  # Docker went away mid-run: recorded, not raised into the UI
            rec.error = redact(f"{type(e).__name__}: {e}", secret_values(rec.spec.env))
        rec.ended = _time.time()
        _time.sleep(1.0)  # late packets (FIN, SYN retries) of the run still count
        rec.output_tail = tail
        with self.capturer.lock:
            rec.hosts = hosts_during(self.capturer.engine, rec.started, rec.ended + 1.0)
        self.post_message(RunDone(rec))

    def on_run_line(self, message: RunLine) -> None:
        self.main.log_line(message.line)

    def on_run_done(self, message: RunDone) -> None:
        rec = message.record
        self.run_active = False
        reached = sorted(n for n, h in rec.hosts.items() if h["reached"])
        blocked = sorted(n for n, h in rec.hosts.items() if h["blocked"])
        summary = (f"run {rec.number} {rec.status}: reached {', '.join(reached) or 'nothing'}"
                   + (f"; blocked {', '.join(blocked)}" if blocked else ""))
        if rec.error:
            self.notify(rec.error, severity="error", timeout=12)
            self.main.log_line(rec.error)
        else:
            self.notify(summary + "  (R: runs)", timeout=8)
        self.main.log_line(summary)

    def show_runs(self) -> None:
        from egress_tui.ui.screens.runs import RunsScreen
        self.push_screen(RunsScreen(self.runs))

    # -- quitting ---------------------------------------------------------------------------

    async def action_quit(self) -> None:
        if self.guard is not None and self.guard.on:
            from egress_tui.ui.screens.dialogs import ChoiceDialog

            def chosen(choice: str | None) -> None:
                if choice == "leave":
                    from egress_tui.firewall.plan import FirewallError
                    left = f"egress-tui: the firewall stays on in {self.target}; remove it with " \
                           f"egress-tui firewall remove {self.target}"
                    try:
                        self.guard.close()
                    except FirewallError as e:
                        left += f"\negress-tui: {e}"
                    self.exit(message=left)
                elif choice == "remove":
                    try:
                        self.guard.remove()
                    except Exception as e:
                        self.exit(message=f"egress-tui: could not remove the firewall: {e}", return_code=2)
                        return
                    self.exit()

            self.push_screen(ChoiceDialog("The firewall is on. Quit and…", [
                ("remove", "remove the firewall, then quit"),
                ("leave", "leave it on (egress-tui firewall remove later), then quit"),
                ("cancel", "don't quit")]), chosen)
            return
        self.exit()

    # -- evidence ---------------------------------------------------------------------------

    def session_data(self) -> dict:
        from egress_tui.core.evidence import session_data, tool_versions
        fw = None
        if self.guard is not None:
            try:
                st = self.guard.firewall.status()
                fw = {"on": st.on, "allowlist": st.allowlist, "dropped_packets": st.dropped_packets}
            except Exception as e:
                fw = {"on": None, "error": str(e)}
        c = self.container
        container = {"name": c.name, "id": c.id, "image": c.image, "networks": c.networks} if c else None
        rows = sorted(self.session.rows.values(), key=HostRow.sort_key)
        return session_data(source=self.session.source, container=container, rows=rows, runs=self.runs,
                            allowlist=[e.text() for e in self.session.allowlist.entries], firewall=fw,
                            versions=tool_versions())

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for fmt in ("json", "csv", "markdown"):
            ext = {"markdown": "md"}.get(fmt, fmt)
            yield SystemCommand(f"Export table as {fmt}", f"write egress-report.{ext}",
                                lambda f=fmt, e=ext: self.export(f, f"egress-report.{e}"))
        yield SystemCommand("Export packets (pcapng)", "write egress-capture.pcapng",
                            lambda: self.export("pcap", "egress-capture.pcapng"))
        yield SystemCommand("Export session report (Markdown)", "write egress-session.md",
                            lambda: self.export("session-md", "egress-session.md"))
        yield SystemCommand("Export session report (JSON)", "write egress-session.json",
                            lambda: self.export("session-json", "egress-session.json"))
        yield SystemCommand("Export init-firewall.sh", "a standalone script with the same rules",
                            lambda: self.export("init-script", "init-firewall.sh"))
        yield SystemCommand("Toggle the firewall", "apply or remove it in the container", self.toggle_firewall)
        yield SystemCommand("Re-apply the firewall", "with the allowlist as it is now, never open in between",
                            self.reapply_firewall)
        yield SystemCommand("Rerun a command in the container", "Claude Code by default", self.ask_run)
        yield SystemCommand("Show runs", "history and differences", self.show_runs)
        for spec in ("anthropic", "bedrock:ap-northeast-1", "bedrock:us-east-1", "vertex:us-east5"):
            yield SystemCommand(f"Add preset {spec}", "to the allowlist", lambda s=spec: self.add_preset(s))
        yield SystemCommand("Clear the table", "forget every host seen so far", self.clear_hosts)
        yield SystemCommand("Pause / resume the display", "capture goes on", self.toggle_pause)

    def on_unmount(self) -> None:
        if self.capturer:
            self.capturer.stop()
            self.capturer.join(timeout=2)
        if self._recorder:
            self._recorder.close()
        if self._record_path and os.path.exists(self._record_path):
            os.unlink(self._record_path)


def create_app(config: AppConfig) -> EgressApp:
    """The one way to build the app: from the CLI, tests and the screenshot script.

    Raises AllowlistError for a bad allowlist, before any screen is drawn.
    """
    session = Session(allowlist=build(config.allow_files, config.presets),
                      allowlist_path=config.allow_files[0] if len(config.allow_files) == 1 else None)
    return EgressApp(config, session)
