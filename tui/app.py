"""The Textual application, and the one factory that builds it for the CLI, the tests and
the screenshot script."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field

from textual.app import App, SystemCommand
from textual.message import Message

from .allowlist import AllowlistError, build
from .capture import Batch, Capturer, PcapRecorder, ReplaySource
from .session import Session


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


@dataclass
class AppConfig:
    """Everything the app needs, decided by the CLI (or a test) before it starts."""

    container: str | None = None          # name or id; None with no pcap: show the picker
    pcap: str | None = None               # replay this capture instead
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
        self._recorder: PcapRecorder | None = None

    # -- start ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        from .screens.main import MainScreen
        self.install_screen(MainScreen(), name="main")
        self.push_screen("main")
        if not self.config.start_capture:
            self.refresh_status()
            return
        if self.config.pcap:
            self.start_source(ReplaySource(self.config.pcap, self.config.speed), os.path.basename(self.config.pcap),
                              "replay")
        elif self.config.container:
            self.attach(self.config.container)
        else:
            self.show_picker()

    def show_picker(self) -> None:
        from .containers import DockerError, client, list_containers
        from .screens.picker import PickerScreen
        try:
            dc = self.docker()
        except DockerError as e:
            self.exit(message=str(e), return_code=2)
            return
        del client
        self.push_screen(PickerScreen(lambda: list_containers(dc)), lambda cid: cid and self.attach(cid))

    def docker(self):
        from .containers import client
        if self.config.docker_client is None:
            self.config.docker_client = client()
        return self.config.docker_client

    def attach(self, ref: str) -> None:
        from .capture import CaptureError
        from .cli import capture_source
        from .containers import DockerError
        try:
            src, label = capture_source(self.docker(), ref, self.config.method, self.config.helper_image)
        except (DockerError, CaptureError) as e:
            self.exit(message=str(e), return_code=2)
            return
        if hasattr(src, "on_state"):
            src.on_state = lambda text: self.post_message(CaptureState(text))
        self.start_source(src, src.info.name, label)

    def start_source(self, source, target: str, method: str) -> None:
        self.target = target
        self.method = method
        self.session.source = getattr(source, "description", target)
        fd, self._record_path = tempfile.mkstemp(prefix="egress-tui-", suffix=".pcap")
        os.close(fd)
        self._recorder = PcapRecorder(self._record_path)
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
                    paused=self.paused, state=self.state, hosts=len(self.session.rows))

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
        changed = self.session.refresh_verdicts()
        if changed:
            self.main.apply_rows(changed)
        self.refresh_status()

    def allow(self, pattern: str) -> None:
        try:
            entry = self.session.allow(pattern)
        except AllowlistError as e:
            self.notify(str(e), severity="error")
            return
        self.notify(f"allowed {entry.text()}  (ctrl+s saves)", timeout=3)
        self._verdicts_changed()

    def disallow(self, name: str) -> None:
        removed = self.session.disallow(name)
        if removed:
            self.notify("removed " + ", ".join(removed), timeout=3)
        else:
            self.notify(f"{name} is not on the allowlist", severity="warning")
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
            if fmt == "pcap":
                src = self.config.pcap or self._record_path
                if not src:
                    raise AllowlistError("no packets captured yet")
                if self.capturer and not self.config.pcap:
                    with self.capturer.lock:  # the capture thread appends to it
                        self._recorder.flush()
                        shutil.copyfile(src, path)
                else:
                    shutil.copyfile(src, path)
                note = "" if self.config.pcap else " (the packets the capture filter let through)"
                self.notify(f"packets saved to {path}{note}", timeout=4)
                return
            self.session.export(fmt, path)
        except (AllowlistError, OSError) as e:
            self.notify(str(e), severity="error")
            return
        self.notify(f"table saved to {path}", timeout=3)

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for fmt in ("json", "csv", "markdown"):
            ext = {"markdown": "md"}.get(fmt, fmt)
            yield SystemCommand(f"Export table as {fmt}", f"write egress-report.{ext}",
                                lambda f=fmt, e=ext: self.export(f, f"egress-report.{e}"))
        yield SystemCommand("Export packets (pcap)", "write egress-capture.pcap",
                            lambda: self.export("pcap", "egress-capture.pcap"))
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
