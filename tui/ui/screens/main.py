"""The main screen: live host table, detail pane, status bar."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, RichLog

from egress_tui.core.allowlist import PRESET_EXAMPLES, PRESETS, choices_for
from egress_tui.core.report import FORMATS
from egress_tui.ui.widgets.detail import DetailPane
from egress_tui.ui.widgets.host_table import HostTable
from egress_tui.ui.widgets.status import StatusBar
from egress_tui.ui.widgets.wire import wire
from egress_tui.ui.screens.dialogs import AllowDialog, ChoiceDialog, InputDialog
from egress_tui.ui.screens.help import HelpScreen


class MainScreen(Screen):
    BINDINGS = [
        Binding("f", "firewall", "Firewall", id="main.firewall",
                tooltip="apply or remove the firewall; with a proxy configured, choose: the allowlist, or proxy "
                        "only (the only way out is the proxy)"),
        Binding("r", "rerun", "Rerun", id="main.rerun"),
        Binding("a", "allow", "Allow", id="main.allow"),
        Binding("d", "disallow", "Remove", id="main.disallow"),
        Binding("slash", "filter", "Filter", id="main.filter",
                tooltip="filter the table: words that must all appear; proc:NAME keeps hosts a program whose name "
                        "holds NAME connected to (proc:? a process gone before its lookup)"),
        Binding("space", "pause", "Pause", id="main.pause"),
        Binding("question_mark", "help", "Help", id="main.help"),
        Binding("q", "app.quit", "Quit", id="main.quit"),
        Binding("ctrl+s", "save", "Save allowlist", id="main.save", show=False),
        Binding("p", "preset", "Add preset", id="main.preset", show=False),
        Binding("c", "clear", "Clear table", id="main.clear", show=False),
        Binding("s", "sort", "Sort by next column", id="main.sort", show=False),
        Binding("S", "sort_reverse", "Reverse sort", id="main.sort_reverse", show=False),
        Binding("e", "export", "Export table or packets", id="main.export", show=False),
        Binding("R", "runs", "Runs: history and differences", id="main.runs", show=False),
        Binding("l", "toggle_log", "Show/hide the run log", id="main.log", show=False),
        Binding("escape", "clear_filter", "Clear filter", id="main.clear_filter", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Input(placeholder="filter: words that must all appear (name, via, address, port, verdict); "
                                "proc:NAME for a program", id="filter")
        with Vertical(id="body"):
            yield HostTable(id="hosts")
            with VerticalScroll(id="detail-scroll"):
                yield DetailPane(id="detail")
            yield RichLog(id="runlog", max_lines=2000, wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.query_one("#runlog").display = False
        self.query_one(HostTable).focus()
        self.query_one(DetailPane).show(None, [])

    @property
    def table(self) -> HostTable:
        return self.query_one(HostTable)

    # -- capture updates (called by the app) ------------------------------------------------

    def apply_rows(self, rows: list[dict]) -> None:
        app = self.app
        with app.batch_update():
            self.table.apply(rows, app.session.rows)
        sel = self.table.highlighted_host
        if sel != self._detail_for or any(r.name == sel for r in rows):
            self.show_detail(sel)

    _detail_for: str | None = None

    def show_detail(self, name: str | None) -> None:
        self._detail_for = name
        row = self.app.session.rows.get(name) if name else None
        # None: the capture thread hands this host's flows over with its next batch
        conns, shared = (self.app.host_connections(name) if row else None) or ([], self.app.session.shared)
        self.query_one(DetailPane).show(row, conns, shared)

    def on_host_table_selected(self, event: HostTable.Selected) -> None:
        # the table's own idea of the cursor: a sort may have moved rows under it
        self.show_detail(self.table.highlighted_host)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        self.table.sort_by(event.column_key.value, self.app.session.rows)

    # -- actions ----------------------------------------------------------------------------

    def action_filter(self) -> None:
        f = self.query_one("#filter", Input)
        f.display = True
        f.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.table.filter_text = event.value
            self.table.refilter(self.app.session.rows)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value:
                event.input.display = False
            self.table.focus()

    def action_clear_filter(self) -> None:
        f = self.query_one("#filter", Input)
        f.value = ""
        f.display = False
        self.table.filter_text = ""
        self.table.refilter(self.app.session.rows)
        self.table.focus()

    def action_firewall(self) -> None:
        self.app.toggle_firewall()

    def action_rerun(self) -> None:
        self.app.ask_run()

    def action_runs(self) -> None:
        self.app.show_runs()

    def action_toggle_log(self) -> None:
        log = self.query_one("#runlog", RichLog)
        log.display = not log.display

    def show_log(self, title: str) -> None:
        log = self.query_one("#runlog", RichLog)
        log.display = True
        log.write(wire(f"── {title}", style="bold"))

    def log_line(self, line: str) -> None:
        # the container's own output: its escape sequences must not reach our terminal
        self.query_one("#runlog", RichLog).write(wire(line))

    def action_pause(self) -> None:
        self.app.toggle_pause()

    def action_clear(self) -> None:
        self.app.clear_hosts()

    def action_help(self) -> None:
        pairs = [(b.key_display or b.key.replace("question_mark", "?").replace("slash", "/"),
                  b.tooltip or b.description) for b in self.BINDINGS]
        self.app.push_screen(HelpScreen(pairs))

    def action_sort(self) -> None:
        keys = [c.key for c in self.table.shown_columns]
        cur = self.table.sort_column
        nxt = keys[(keys.index(cur) + 1) % len(keys)] if cur in keys else keys[0]
        self.table.sort_column = None
        self.table.sort_by(nxt, self.app.session.rows)
        self.notify(f"sorted by {nxt}", timeout=2)

    def action_sort_reverse(self) -> None:
        if self.table.sort_column:
            self.table.sort_by(self.table.sort_column, self.app.session.rows)

    def action_allow(self) -> None:
        name = self.table.highlighted_host
        if not name:
            self.notify("no host selected", severity="warning")
            return

        def done(pattern: str | None) -> None:
            if pattern:
                self.app.allow(pattern)

        self.app.push_screen(AllowDialog(name, choices_for(name)), done)

    def action_disallow(self) -> None:
        name = self.table.highlighted_host
        if name:
            self.app.disallow(name)

    def action_preset(self) -> None:
        choices = [(n, f"{n}{':' + PRESET_EXAMPLES[n] if arg else ''}  {desc}")
                   for n, (_f, arg, desc) in PRESETS.items()]

        def chosen(name: str | None) -> None:
            if not name:
                return
            if PRESETS[name][1]:
                self.app.push_screen(InputDialog(f"Region for {name}", PRESET_EXAMPLES[name]),
                                     lambda region: region and self.app.add_preset(f"{name}:{region}"))
            else:
                self.app.add_preset(name)

        self.app.push_screen(ChoiceDialog("Add a preset to the allowlist", choices), chosen)

    def action_save(self) -> None:
        s = self.app.session
        if s.allowlist_path:
            self.app.save_allowlist(None)
            return
        self.app.push_screen(InputDialog("Save the allowlist to", "allowlist.txt"),
                             lambda path: path and self.app.save_allowlist(path))

    def action_export(self) -> None:
        from egress_tui.exports import FORMATS as TOOLS, VARIANTS
        tools = {f"tool:{fmt}:": (f"for {fmt}: {label}", filename) for fmt, (label, filename) in TOOLS.items()}
        tools.update({f"tool:{fmt}:{option}": (f"for {fmt}: {label}", filename)
                      for (fmt, option), (label, filename) in VARIANTS.items()})
        choices = ([(f, f"table as {f}") for f in FORMATS if f != "table"]
                   + [("pcap", "captured packets (pcapng)"), ("allowlist", "the allowlist file"),
                      ("init-script", "init-firewall.sh: the same firewall as a standalone script"),
                      ("session-md", "session report (Markdown)"), ("session-json", "session report (JSON)")]
                   + [(cid, label) for cid, (label, _file) in tools.items()])

        def chosen(fmt: str | None) -> None:
            if not fmt:
                return
            if fmt in tools:  # an enforcement tool's format: from what, then where
                _tool, name, option = fmt.split(":")
                self.app.ask_export_source(name, option, lambda which: self.app.push_screen(
                    InputDialog(f"Export for {name} to", tools[fmt][1]),
                    lambda path: path and self.app.export_for(name, option, which, path)))
                return
            default = {"markdown": "egress-report.md", "allowlist": "allowlist.txt",
                       "init-script": "init-firewall.sh", "session-md": "egress-session.md",
                       "session-json": "egress-session.json", "pcap": "egress-capture.pcapng"}.get(
                fmt, f"egress-report.{fmt}")
            self.app.push_screen(InputDialog(f"Export {fmt} to", default),
                                 lambda path: path and self.app.export(fmt, path))

        self.app.push_screen(ChoiceDialog("Export", choices), chosen)
