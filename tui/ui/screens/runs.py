"""The runs view: every rerun with its firewall state and outcome, and what changed
between two runs (e.g. firewall off vs on: needed, stopped, appeared)."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from egress_tui.core.proxy import json_summary
from egress_tui.core.runs import RunRecord, diff_runs, process_split
from egress_tui.core.safetext import safe_text
from egress_tui.ui.widgets.wire import wire


class RunsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close", id="runs.close")]

    def __init__(self, runs: list[RunRecord]):
        super().__init__()
        self.runs = runs

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog runs"):
            yield Static(Text("Runs (enter or arrows: compare with the run before)", style="bold"))
            yield DataTable(cursor_type="row", id="runs-table")
            yield Static(id="runs-diff")

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for col in ("#", "started", "command", "firewall", "status", "reached", "blocked"):
            t.add_column(col, key=col)
        for r in self.runs:
            reached = sum(1 for h in r.hosts.values() if h["reached"])
            blocked = sum(1 for h in r.hosts.values() if h["blocked"])
            t.add_row(*map(wire, (r.number, time.strftime("%H:%M:%S", time.localtime(r.started)), r.spec.describe(),
                                  "on" if r.firewall else "off", r.status, reached, blocked)), key=str(r.number))
        if self.runs:
            t.move_cursor(row=len(self.runs) - 1)
        self._show(len(self.runs) - 1)
        t.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show(event.cursor_row)

    def _show(self, i: int) -> None:
        out = self.query_one("#runs-diff", Static)
        if not self.runs or i < 0:
            out.update(Text("No runs yet: press r on the main screen.", style="dim"))
            return
        b = self.runs[i]
        t = Text()
        t.append(f"\nRun {b.number}: {safe_text(b.spec.describe())}  "
                 f"firewall {'on' if b.firewall else 'off'}  {b.status}\n", style="bold")
        if b.proxy.get("proxies"):  # masked when recorded
            t.append(f"  through {json_summary(b.proxy)}\n", style="cyan")
        for name, h in sorted(b.hosts.items()):
            if not h["connections"]:
                continue
            mark = "reached" if h["reached"] else "blocked"
            t.append(f"  {mark:8} ", style="green" if h["reached"] else "bold dark_orange")
            t.append(f"{safe_text(name)}  {', '.join(f'{k}:{v}' for k, v in h['outcomes'].items())}")
            programs = sorted({p.get("program") or "?" for p in h.get("processes") or ()})
            if programs:
                t.append(f"  by {safe_text(', '.join(programs), 80)}", style="dim")
            t.append("\n")
        split = process_split(b)
        if any(split[k] for k in ("itself", "tools", "others", "unknown")):
            t.append("\nBy process:\n", style="bold")
            for key, label in (("itself", f"{safe_text(split['command'], 40)} itself"),
                               ("tools", "tools it started"), ("others", "processes not started by this run"),
                               ("unknown", "process unknown (gone before the lookup)")):
                if split[key]:
                    t.append(f"  {label}: ", style="cyan" if key != "unknown" else "dim")
                    t.append(safe_text(", ".join(split[key])) + "\n")
        if i > 0:
            a = self.runs[i - 1]
            d = diff_runs(a, b)
            t.append(f"\nCompared with run {a.number} (firewall {'on' if a.firewall else 'off'}):\n", style="bold")
            for label, names, style in (("needed (reached in both)", d.needed, "green"),
                                        ("stopped (reached before, blocked now)", d.stopped, "bold dark_orange"),
                                        ("appeared (only now)", d.appeared, "yellow"),
                                        ("gone (only before)", d.gone, "dim"),
                                        ("blocked in both", d.still_blocked, "red")):
                if names:
                    t.append(f"  {label}: ", style=style)
                    t.append(safe_text(", ".join(names)) + "\n")
        out.update(t)

    def action_close(self) -> None:
        self.dismiss(None)
