"""The Textual application, and the one factory that builds it for the CLI, the tests and
the screenshot script.

The app only shows and asks: what it watches is one ``Inspection`` (capture, recording,
helpers, firewall, runs), built by ``open_inspection`` in a worker. Whatever may wait on
Docker, iptables or the capture lock runs in a thread worker that ends with one message.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import App, SystemCommand

from egress_tui.core.allowlist import AllowlistError, build
from egress_tui.core.proxy import ProxyConfig, json_summary
from egress_tui.core.safetext import safe_text
from egress_tui.core.rows import HostRow
from egress_tui.core.session import Session
from egress_tui.firewall.plan import FirewallError
from egress_tui.inspection import Inspection, InspectionError, open_inspection
from egress_tui.live.capture import Batch, CaptureError
from egress_tui.live.containers import DockerError
from egress_tui.live.namespaces import NamespaceError
from egress_tui.ui.messages import (Attached, CaptureBatch, CaptureState, Closed, Exported, FirewallDone, RunDone,
                                    RunLine)


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
    engines: list | None = None           # container engines the CLI connected (live/engines.py); else made here
    engine: str = "auto"                  # --engine: which engines to ask when none were given
    pid: int | None = None                # --pid: a process's network namespace instead of a container
    netns: str | None = None              # --netns: a namespace by path
    proxy: ProxyConfig | None = None      # --proxy: the proxies a capture went through (else the container's own)
    start_capture: bool = True            # tests and screenshots may feed batches themselves
    handle_signals: bool = False          # SIGTERM and SIGHUP close in order (the real terminal only)


class EgressApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "egress-tui"

    def __init__(self, config: AppConfig, session: Session):
        super().__init__()
        self.config = config
        self.session = session
        self.inspection: Inspection | None = None
        self.paused = False
        self.pending: list[dict] = []
        self.target = "-"
        self.method = "-"
        self.state = ""
        self.last_batch = Batch()
        self.firewall_text = ""       # shown in the status bar when a container is attached
        self.firewall_busy = False
        self.firewall_stale = False   # the session's allowlist is not the one the firewall carries
        self._watched: tuple[str, list[dict]] | None = None  # flows the capture thread last handed over
        self._set_errors_told = 0     # set update errors already notified
        self._procs_told = ""         # why processes are not looked up, once notified
        self.last_spec = None
        self.run_active = False
        self.closing = False          # quitting: no new inspection may start
        self._owner_lock = threading.Lock()  # inspection and closing, between workers and this thread

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
        if self.config.handle_signals:
            import asyncio
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, self.hang_up)
            # not through the loop: once the terminal is gone the loop may block for good
            signal.signal(signal.SIGHUP, self._terminal_gone)
        if not self.config.start_capture:
            self.refresh_status()
            return
        if self.config.pcap:
            self.show_inspection(open_inspection(replay=self.config.pcap_input or self.config.pcap, speed=self.config.speed,
                                                 target=os.path.basename(self.config.pcap), proxy=self.config.proxy))
        elif self.config.container or self.config.pid is not None or self.config.netns:
            self.attach(self.config.container or "")
        else:
            self.show_picker()

    def show_picker(self) -> None:
        from egress_tui.live.engines import list_all
        from egress_tui.ui.screens.picker import PickerScreen
        # the lister runs in the picker's worker: the engines may be slow to answer
        self.push_screen(PickerScreen(lambda: list_all(self.engines())), lambda picked: picked and self.attach(*picked))

    def engines(self) -> list:
        """The container engines (connected on first use; workers only: it asks them)."""
        from egress_tui.live.engines import connect, wrap
        if self.config.engines is None:
            self.config.engines = ([wrap(self.config.docker_client)] if self.config.docker_client is not None
                                   else connect(self.config.engine))
        return self.config.engines

    def attach(self, ref: str, engine: str = "") -> None:
        """Attach to a container (``engine``: the one the picker listed it from), or to the
        --pid/--netns namespace."""
        self.state = "attaching…"
        self.refresh_status()
        self.run_worker(lambda: self._attach_work(ref, engine), thread=True, exclusive=True, group="attach",
                        exit_on_error=False)

    def _attach_work(self, ref: str, engine: str = "") -> None:
        cfg = self.config
        try:
            if cfg.pid is not None or cfg.netns:
                insp = open_inspection(pid=cfg.pid, netns=cfg.netns, method=cfg.method, proxy=cfg.proxy)
            else:
                engines = [e for e in self.engines() if not engine or e.name == engine]
                insp = open_inspection(ref, method=cfg.method, helper_image=cfg.helper_image, engines=engines,
                                       proxy=cfg.proxy)
        except (DockerError, CaptureError, InspectionError, NamespaceError) as e:
            self.post_message(Attached(None, str(e)))
            return
        try:
            self._capture(insp)
        except (DockerError, CaptureError, InspectionError, OSError) as e:
            insp.close()
            self.post_message(Attached(None, str(e)))
            return
        self.post_message(Attached(insp))

    def show_inspection(self, inspection: Inspection) -> None:
        """Show this inspection: start its capture (a replay, or a source given by a benchmark)."""
        self._capture(inspection)
        self.on_attached(Attached(inspection))

    def _capture(self, insp: Inspection) -> None:
        """Own the inspection, then start its capture, unless quitting began meanwhile."""
        with self._owner_lock:
            if not self.closing:
                self.inspection = insp
        if self.inspection is not insp:
            insp.close()
            raise InspectionError("quitting")
        insp.start_capture(on_batch=lambda b: self.post_message(CaptureBatch(b)),
                           on_state=lambda text: self.post_message(CaptureState(text)), record="")

    def on_attached(self, message: Attached) -> None:
        insp = message.inspection
        if insp is None:
            if not self.closing:
                self.exit(message=message.error, return_code=2)
            return
        self.target = insp.target
        self.method = insp.method
        eng = insp.container_engine
        if eng is not None and eng.name != "docker":
            self.target = f"{insp.target} ({eng.name})"  # which engine, where it is not the usual one
        self.session.source = insp.description
        self.session.proxy = insp.proxy
        for line in insp.notices:
            self.notify(line, severity="warning", timeout=8)
        if insp.is_live:
            self.firewall_text = "firewall off" if insp.firewall_possible else ""
        self.refresh_status()

    # -- capture messages -----------------------------------------------------------------

    def on_capture_batch(self, message: CaptureBatch) -> None:
        b = message.batch
        self.last_batch = b
        if b.cleared:
            self.pending.clear()
        if b.status and b.status != self.state:
            self.state = b.status
            if b.ended and self.inspection and self.inspection.error:
                self.notify(b.status, severity="error", timeout=10)
        if b.shared:
            self.session.shared = b.shared
        if b.watched is not None:
            self._watched = (b.watched, b.watched_conns)
        rows = self.session.update(b.rows)
        if self.paused:
            self.pending.extend(rows)
        else:
            self.main.apply_rows(rows)
            if b.watched is not None and b.watched == self.main._detail_for:
                self.main.show_detail(b.watched)  # its flows arrived
        if b.ended and not b.status and not self.closing:
            self.state = "replay finished" if self.config.pcap else "capture ended"
        self._tell_procs_refusal()
        self.refresh_status()

    def _tell_procs_refusal(self) -> None:
        """Say once (and again if it changes) why a live capture's connections get no process:
        the Process column stays hidden then, and silence would read as "nothing to say"."""
        insp = self.inspection
        why = insp.procs_refusal if insp is not None and insp.is_live else ""
        if why and why != self._procs_told:
            self._procs_told = why
            self.notify(f"no process attribution: {why}", severity="warning", timeout=12, markup=False)

    def on_capture_state(self, message: CaptureState) -> None:
        self.state = message.text
        insp = self.inspection
        if insp is not None and insp.reapply_needed and not self.closing and not self.firewall_busy:
            # restarted: a new namespace, without our rules; put back what the firewall carried
            # (not the session's allowlist, which may have changed since)
            self.notify("container restarted: re-applying the firewall", timeout=4)
            self._start_firewall_work(insp, False, insp.reapply_allowlist or self.session.allowlist.copy(),
                                      proxy=insp.reapply_proxy)
        self.refresh_status()

    def feed_rows(self, rows: list[dict], status: Batch | None = None) -> None:
        """Apply rows as if a capture batch brought them (tests and screenshots)."""
        self.on_capture_batch(CaptureBatch(status or Batch(rows=rows, packets=self.last_batch.packets)))

    @property
    def main(self):
        return self.get_screen("main")

    @property
    def guard(self):
        """The firewall guard, if the inspection made one (never makes one: that may start a
        helper container)."""
        insp = self.inspection
        return insp.made_guard if insp is not None else None

    def refresh_status(self) -> None:
        b = self.last_batch
        try:
            status = self.main.query_one("#status")
        except Exception:
            return
        status.show(target=self.target, method=self.method, rate=b.rate, packets=b.packets,
                    drops=b.kernel_drops, errors=b.errors, allowlist=self.session.allowlist_label(),
                    paused=self.paused, state=self.state, hosts=len(self.session.rows),
                    firewall=self.firewall_text, firewall_warning=self.firewall_warning(),
                    proxy=self.proxy_text(), proxy_warning=self.proxy_warning())
        g = self.guard
        if g is not None and g.updater.errors > self._set_errors_told:
            self._set_errors_told = g.updater.errors
            self.notify(f"firewall: a DNS set update failed: {g.updater.last_error}", severity="warning",
                        timeout=8, markup=False)

    def proxy_text(self) -> str:
        """The proxies the target goes through, for the status bar (credentials masked); ""
        when it is told of none."""
        proxy = self.session.proxy
        return proxy.summary() if proxy else ""

    def proxy_warning(self) -> str:
        proxy = self.session.proxy
        if proxy is None or not proxy.problems:
            return ""
        n = len(proxy.problems)
        return f"{n} proxy setting{'s' if n > 1 else ''} not understood"

    def host_connections(self, name: str) -> tuple[list[dict], dict[str, set[str]]] | None:
        """The flows of one host, or None when they come with the next capture batch."""
        if self.inspection is None:
            return [], {}
        got = self.inspection.host_connections(name)
        if got is None and self._watched and self._watched[0] == name:
            return self._watched[1], self.session.shared  # the last ones handed over, until then
        return got

    @property
    def runs(self) -> list:
        return self.inspection.runs if self.inspection else []

    # -- user actions (the screen calls these) --------------------------------------------

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused and self.pending:
            rows, self.pending = self.pending, []
            self.main.apply_rows(rows)
        self.refresh_status()

    def clear_hosts(self) -> None:
        if self.inspection:
            self.inspection.clear()
        self.session.clear()
        self.pending.clear()
        self.main.table.reset()
        self.main.show_detail(None)
        self.refresh_status()

    def _verdicts_changed(self) -> None:
        self.session.firewall_addresses = self.inspection.firewall_addresses() if self.inspection else None
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
        """Write an export. Session reports (the firewall's status) and packets (the capture
        lock, a large copy) are written by a worker that says when it is done."""
        if fmt in ("session-md", "session-json"):
            snapshot = self._session_snapshot()
            self.run_worker(lambda: self._export_session(path, snapshot), thread=True, group="export",
                            exit_on_error=False)
            return
        if fmt == "pcap":
            self.run_worker(lambda: self._export_packets(path), thread=True, group="export", exit_on_error=False)
            return
        try:
            if fmt == "allowlist":
                self.save_allowlist(path)
                return
            if fmt == "init-script":
                from egress_tui.firewall.script import render_init_script, render_proxy_script
                resolvers = self.inspection.resolvers if self.inspection else None
                g = self.guard
                if g is not None and g.mode == "proxy":  # the script follows the firewall that is on
                    text = render_proxy_script(g.proxy, resolvers=resolvers,
                                               generated_by=f"egress-tui for {self.target}, proxy only")
                else:
                    text = render_init_script(self.session.allowlist, resolvers=resolvers,
                                              generated_by=f"egress-tui for {self.target}")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
                os.chmod(path, 0o755)
                self.notify(f"firewall script saved to {path}", timeout=3)
                return
            self.session.export(fmt, path)
        except (AllowlistError, FirewallError, OSError) as e:
            self.notify(str(e), severity="error")
            return
        self.notify(f"table saved to {path}", timeout=3)

    # -- exports for enforcement tools (squid, nftables, ...) ----------------------------------

    EXPORT_SOURCES = {"allowlist": "the allowlist", "allowed": "the allowed hosts seen",
                      "seen": "every host seen (connected to, blocked included)"}

    def export_sources(self) -> list[tuple[str, str]]:
        """What an enforcement-tool export can be made from, now: (id, label)."""
        out = []
        if self.session.allowlist.entries:
            out.append(("allowlist", self.EXPORT_SOURCES["allowlist"]))
        if self.session.rows:
            if self.session.allowlist:
                out.append(("allowed", self.EXPORT_SOURCES["allowed"]))
            out.append(("seen", self.EXPORT_SOURCES["seen"]))
        return out

    def export_for(self, fmt: str, option: str, which: str, path: str) -> None:
        """Write the allowlist, or the hosts seen, in an enforcement tool's format (``option``:
        "ssl_bump", "suricata" or ""). The source is taken here, on the screen's thread; a worker
        writes it (nftables looks the names up first) and says what could not be expressed."""
        from egress_tui.exports import ExportError
        from egress_tui.exports.sources import from_allowlist, from_rows
        try:
            if which == "allowlist":
                if not self.session.allowlist.entries:
                    raise ExportError("the allowlist is empty: add hosts or a preset first")
                source = from_allowlist(self.session.allowlist.copy())
            else:
                rows = [{"name": r.name, "allowed": r.allowed, "connections": r.connections}
                        for r in sorted(self.session.rows.values(), key=HostRow.sort_key)]
                source = from_rows(rows, which == "seen", f"hosts seen in {self.session.source or self.target}")
        except ExportError as e:
            self.notify(str(e), severity="error", markup=False)
            return
        self.run_worker(lambda: self._write_export(fmt, option, source, path), thread=True, group="export",
                        exit_on_error=False)

    def _write_export(self, fmt: str, option: str, source, path: str) -> None:
        from egress_tui.exports import ExportError, Options, render
        options = Options(**{option: True}) if option else Options()
        try:
            if fmt == "nftables":
                options.resolvers, options.resolved = self._export_lookups(source.allowlist)
            export = render(fmt, source, options)
            with open(path, "w", encoding="utf-8") as f:
                f.write(export.text)
        except (ExportError, OSError, InspectionError, FirewallError) as e:
            self.post_message(Exported(str(e), error=True))
            return
        notes = (f"; {len(export.notes)} entries not exactly as listed (the file's comments say which)"
                 if export.notes else "")
        self.post_message(Exported(f"{fmt}{' ' + option.replace('_', '-') if option else ''} export of "
                                   f"{len(source.entries)} entries saved to {path}{notes}"))

    def _export_lookups(self, allowlist) -> tuple[list[str], dict]:
        """nftables: the container's resolvers and its names looked up in its namespace, where
        that can be done from here; else this machine's resolvers, from here."""
        from egress_tui.exports.nftables import names_to_resolve, resolve, system_resolvers
        insp = self.inspection
        if insp is not None and insp.can_look_up():
            return list(insp.resolvers or []), insp.look_up(names_to_resolve(allowlist))
        resolvers = system_resolvers()
        return resolvers, resolve(allowlist, resolvers)

    def ask_export_source(self, fmt: str, option: str, then) -> None:
        """Ask what to export from (the allowlist, the allowed hosts seen, every host seen),
        then call ``then(which)``."""
        from egress_tui.ui.screens.dialogs import ChoiceDialog
        choices = self.export_sources()
        if not choices:
            self.notify("nothing to export yet: no allowlist and no hosts seen", severity="warning")
            return
        self.push_screen(ChoiceDialog(f"Export for {fmt}{' --' + option.replace('_', '-') if option else ''}: "
                                      "from", choices), lambda which: which and then(which))

    def _session_snapshot(self) -> dict:
        """What the session report needs from this thread's state, copied for the worker."""
        insp = self.inspection
        c = insp.container if insp else None
        return {"source": self.session.source, "rows": sorted(self.session.rows.values(), key=HostRow.sort_key),
                "container": {"name": c.name, "id": c.id, "image": c.image, "networks": c.networks} if c else None,
                "runs": list(self.runs), "allowlist": [e.text() for e in self.session.allowlist.entries],
                "proxy": insp.proxy.to_json() if insp else None}

    def _export_session(self, path: str, snapshot: dict) -> None:
        from egress_tui.core.evidence import session_data, tool_versions, write_session
        firewall = self.inspection.firewall_state() if self.inspection else None
        try:
            write_session(path, session_data(firewall=firewall, versions=tool_versions(), **snapshot))
        except OSError as e:
            self.post_message(Exported(str(e), error=True))
            return
        self.post_message(Exported(f"session report saved to {path}"))

    def _export_packets(self, path: str) -> None:
        import shutil
        # a replayed regular file is copied as is; a pipe cannot be read again: the recording
        replayed = self.config.pcap if self.config.pcap and os.path.isfile(self.config.pcap) else None
        try:
            if replayed:
                shutil.copyfile(replayed, path)
                held = f"a copy of {os.path.basename(replayed)}"
            elif self.inspection:
                held = self.inspection.save_recording(path)
            else:
                raise OSError("no packets captured yet")
        except OSError as e:
            self.post_message(Exported(str(e), error=True))
            return
        note = "" if self.config.pcap else ", the packets the capture filter let through"
        self.post_message(Exported(f"saved {held} to {path}{note}"))

    def on_exported(self, message: Exported) -> None:
        self.notify(message.text, severity="error" if message.error else "information",
                    timeout=8 if message.error else 4)

    # -- firewall -------------------------------------------------------------------------

    def toggle_firewall(self) -> None:
        insp = self.inspection
        if insp is None or not insp.is_live:
            self.notify("the firewall needs a live container captured from the host (as root)",
                        severity="warning", markup=False)
            return
        if insp.firewall_refusal:
            self.notify(insp.firewall_refusal, severity="warning", markup=False)
            return
        if self.firewall_busy:
            self.notify("the firewall is still changing; wait for it", severity="warning")
            return
        on = insp.firewall_on
        proxy = insp.proxy
        if not on and (proxy.endpoints or proxy.problems):
            self._ask_firewall_mode(insp, proxy)
            return
        self._apply_or_remove(insp, on)

    def _apply_or_remove(self, insp: Inspection, on: bool, proxy=None) -> None:
        if not on and proxy is None and not self.session.allowlist.entries:
            self.notify("the allowlist is empty: allow hosts (a) or add a preset (p) first", severity="warning")
            return
        # a copy taken here, on the thread that changes the allowlist
        self._start_firewall_work(insp, on, self.session.allowlist.copy(), proxy=proxy)

    def _ask_firewall_mode(self, insp: Inspection, proxy) -> None:
        """The container has a proxy configured: let only the allowlist through, or only the proxy."""
        from egress_tui.ui.screens.dialogs import ChoiceDialog
        shown = ", ".join(ep.url for ep in proxy.endpoints[:3]) or "its proxy settings cannot be read"
        n = len(self.session.allowlist.entries)

        def chosen(choice: str | None) -> None:
            if self.firewall_busy or insp.firewall_on or insp is not self.inspection:
                return  # something else changed it while the question was open
            if choice == "allowlist":
                self._apply_or_remove(insp, False)
            elif choice == "proxy":
                self._apply_or_remove(insp, False, proxy)

        self.push_screen(ChoiceDialog("Firewall: what may the container reach?", [
            ("allowlist", f"allowlist: only its {n} entr{'y' if n == 1 else 'ies'}"
                          + ("" if n else " (empty: allow hosts first)")),
            ("proxy", f"proxy only: {shown}; the allowlist still colors the names seen through it"),
            ("cancel", "cancel")]), chosen)

    def reapply_firewall(self) -> None:
        """Apply the session's allowlist over the firewall that is on, in one step: unlike `f`
        twice, the container is never left open in between."""
        insp = self.inspection
        if insp is None or not insp.firewall_on:
            self.notify("the firewall is off: f applies it", severity="warning")
            return
        if self.firewall_busy:
            self.notify("the firewall is still changing; wait for it", severity="warning")
            return
        # in the mode it is in: proxy-only looks the proxies up again, the allowlist is the session's
        proxy = self.guard.proxy if self.guard is not None else None
        self._start_firewall_work(insp, False, self.session.allowlist.copy(), "firewall: re-applying…", proxy=proxy)

    def _start_firewall_work(self, insp: Inspection, remove: bool, allowlist, text: str = "", proxy=None) -> None:
        self.firewall_busy = True
        self.firewall_text = text or ("firewall: removing…" if remove else "firewall: applying…")
        self.refresh_status()
        self.run_worker(lambda: self._firewall_work(insp, remove, allowlist, proxy), thread=True, group="firewall",
                        exit_on_error=False)

    def _firewall_work(self, insp: Inspection, remove: bool, allowlist, proxy=None) -> None:
        try:
            if remove:
                insp.remove_firewall()
                self.post_message(FirewallDone(False, "firewall removed"))
                return
            from egress_tui.firewall.plan import resolver_warning
            plan, checks = insp.apply_firewall(allowlist, proxy=proxy)
            notes = [w for w in [resolver_warning(insp.resolvers or [])] if w]
            if plan.unresolved:
                notes.append("not resolved: " + ", ".join(plan.unresolved))
            if plan.wildcards:
                notes.append("from DNS as seen: " + ", ".join(plan.wildcards))
            self.post_message(FirewallDone(True, "; ".join(notes), checks=checks))
        except Exception as e:  # FirewallError, or Docker failing under the helper: said, never lost
            self.post_message(FirewallDone(insp.firewall_on, "", error=str(e) or type(e).__name__))

    def on_firewall_done(self, message: FirewallDone) -> None:
        self.firewall_busy = False
        if message.error:
            self.notify(f"firewall unchanged: {message.error}", severity="error", timeout=10)
        elif message.on:
            checks = "  ".join(f"{c.what} {c.name}: {c.result}{'' if c.ok else ' (FAILED)'}"
                               for c in message.checks)
            mode = " (proxy only)" if self.inspection is not None and self.inspection.firewall_mode == "proxy" else ""
            self.notify(f"firewall ON{mode}. {checks} {message.text}".strip(),
                        severity="information" if all(c.ok for c in message.checks) else "error", timeout=8)
        else:
            self.notify(message.text, timeout=3)
        self.update_firewall_text()
        self._verdicts_changed()

    def update_firewall_text(self) -> None:
        insp = self.inspection
        if insp is None or not insp.is_live:
            return
        self.firewall_text = insp.firewall_summary() or "firewall off"
        g = self.guard
        # proxy-only carries the proxies, not the allowlist: changing the allowlist changes nothing there
        self.firewall_stale = g is not None and g.on and g.mode == "allowlist" and not g.carries(self.session.allowlist)
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

    # -- reruns -----------------------------------------------------------------------------

    def ask_run(self) -> None:
        insp = self.inspection
        if insp is None or insp.container is None or insp.capturer is None:
            from egress_tui.inspection import RERUN_NEEDS_ENGINE
            self.notify(RERUN_NEEDS_ENGINE if insp is not None and insp.namespace is not None
                        else "reruns need a live container (not a replay)", severity="warning")
            return
        if self.run_active:
            self.notify("a run is still going; wait for it to finish", severity="warning")
            return
        from egress_tui.ui.screens.run_dialog import RunDialog
        self.push_screen(RunDialog(self.last_spec, inherited=insp.container.proxy),
                         lambda spec: spec and self.start_run(spec))

    def start_run(self, spec) -> None:
        insp = self.inspection
        self.last_spec = spec
        rec = insp.new_run(spec)
        self.run_active = True
        through = f"; {json_summary(rec.proxy)}" if rec.proxy.get("proxies") else ""
        self.main.show_log(f"run {rec.number}: {spec.describe()}  (firewall {'on' if rec.firewall else 'off'}{through})")

        def work() -> None:
            insp.execute(rec, lambda line: self.post_message(RunLine(line)))
            self.post_message(RunDone(rec))
        self.run_worker(work, thread=True, group="run", exit_on_error=False)

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
        if self.closing:
            self.notify("closing: stopping the capture and removing helpers…", timeout=3)
            return
        insp = self.inspection
        if insp is not None and insp.firewall_on:
            from egress_tui.ui.screens.dialogs import ChoiceDialog

            def chosen(choice: str | None) -> None:
                if choice == "leave":
                    self.close_and_exit(message=self._left_on_message())
                elif choice == "remove":
                    self.close_and_exit(remove_firewall=True)

            self.push_screen(ChoiceDialog("The firewall is on. Quit and…", [
                ("remove", "remove the firewall, then quit"),
                ("leave", "leave it on (egress-tui firewall remove later), then quit"),
                ("cancel", "don't quit")]), chosen)
            return
        self.close_and_exit()

    def _left_on_message(self) -> str:
        return (f"egress-tui: the firewall stays on in {self.target}; remove it with "
                f"egress-tui firewall remove {self.target}")

    def hang_up(self) -> None:
        """SIGTERM: nobody is there to ask, so the firewall stays as it is; everything else
        closes in order, and the screen too."""
        if self.closing:
            return
        insp = self.inspection
        self.close_and_exit(message=self._left_on_message() if insp is not None and insp.firewall_on else None)

    def _terminal_gone(self, signum, frame) -> None:
        """SIGHUP: the terminal is gone. Textual's writes to it fail, its output thread dies,
        and the next writes block the event loop for good (seen), so no message would be
        handled: a thread closes the inspection (the firewall stays as it is) and ends the
        process; there is no screen left to restore."""
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)

        def end() -> None:
            try:
                self.close_inspection()
            finally:
                os._exit(128 + signal.SIGHUP)
        threading.Thread(target=end, name="egress-hangup").start()

    def close_and_exit(self, remove_firewall: bool = False, message: str | None = None) -> None:
        """Quit: a worker removes the firewall when asked, then closes the inspection (the
        capture drains, helpers go); the app exits when it is done."""
        with self._owner_lock:
            self.closing = True
            insp = self.inspection
        if insp is None:
            self.exit(message=message)
            return
        self.state = "closing…"
        if remove_firewall:
            self.firewall_text = "firewall: removing…"
        self.refresh_status()

        def work() -> None:
            error = ""
            if remove_firewall:
                try:
                    insp.remove_firewall()
                except Exception as e:  # FirewallError, or Docker failing under the helper
                    error = f"egress-tui: could not remove the firewall: {e}"
            insp.close()
            self.post_message(Closed(error or message, 2 if error else 0))
        self.run_worker(work, thread=True, group="close", exit_on_error=False)

    def on_closed(self, message: Closed) -> None:
        self.exit(message=message.message, return_code=message.return_code)

    def close_inspection(self) -> None:
        """Close the inspection now, in this thread (after the screen is gone)."""
        with self._owner_lock:
            self.closing = True
            insp = self.inspection
        if insp is not None:
            insp.close()

    def on_unmount(self) -> None:
        # every way out (an error, a test leaving run_test) still closes what we started
        self.close_inspection()

    # -- commands -----------------------------------------------------------------------------

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
        from egress_tui.exports import FORMATS, VARIANTS
        for (fmt, option), (label, filename) in [*(((f, ""), v) for f, v in FORMATS.items()), *VARIANTS.items()]:
            what = label if option else f"{fmt}: {label}"
            yield SystemCommand(f"Export for {fmt}{' --' + option.replace('_', '-') if option else ''}",
                                f"{what}; from the allowlist or the hosts seen; writes {filename}",
                                lambda f=fmt, o=option, n=filename: self.ask_export_source(
                                    f, o, lambda which: self.export_for(f, o, which, n)))
        yield SystemCommand("Toggle the firewall", "apply or remove it in the container", self.toggle_firewall)
        yield SystemCommand("Re-apply the firewall", "with the allowlist as it is now, never open in between",
                            self.reapply_firewall)
        yield SystemCommand("Rerun a command in the container", "Claude Code by default", self.ask_run)
        yield SystemCommand("Show runs", "history and differences", self.show_runs)
        for spec in ("anthropic", "bedrock:ap-northeast-1", "bedrock:us-east-1", "vertex:us-east5"):
            yield SystemCommand(f"Add preset {spec}", "to the allowlist", lambda s=spec: self.add_preset(s))
        yield SystemCommand("Clear the table", "forget every host seen so far", self.clear_hosts)
        yield SystemCommand("Pause / resume the display", "capture goes on", self.toggle_pause)


def create_app(config: AppConfig) -> EgressApp:
    """The one way to build the app: from the CLI, tests and the screenshot script.

    Raises AllowlistError for a bad allowlist, before any screen is drawn.
    """
    session = Session(allowlist=build(config.allow_files, config.presets),
                      allowlist_path=config.allow_files[0] if len(config.allow_files) == 1 else None)
    return EgressApp(config, session)
