"""The live host table: keyed by host name, updated in place, sortable and filterable."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from egress_tui.core.report import outcome_text
from egress_tui.core.rows import HostRow
from egress_tui.core.safetext import safe_text
from egress_tui.core.session import ALLOWED, DENIED
from egress_tui.ui.widgets.wire import wire

STYLES = {ALLOWED: "green", DENIED: "bold red", "unlisted": ""}
BLOCKED_STYLE = "bold dark_orange"
BLOCKED_MARK = "⊘ "  # every attempt dropped or refused: visible without color too
NAME_WIDTH = 64      # longer names are cut here (as in the report); the detail pane shows them whole
PROGRAM_WIDTH = 16   # the Process cell's program (comm is 15 at most); the detail pane shows it whole
WARN_STYLE = "bold yellow"
SUSPICIOUS_STYLE = "bold magenta"
SUSPICIOUS_MARK = "⚑"


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def row_style(row: HostRow) -> str:
    if row.warning:
        return WARN_STYLE
    if row.blocked:
        return BLOCKED_STYLE
    return STYLES[ALLOWED if row.allowed is True else DENIED if row.allowed is False else "unlisted"]


def verdict_text(row: HostRow) -> Text:
    """The row's one verdict text (HostRow.verdict_text), colored; the suspicious-DNS part in
    its own color, so forged answers about a name stand out."""
    plain = row.verdict_text()
    text = Text(("⚠ " if row.warning else "") + plain[:len(plain) - len(row.suspicious_text())], style=row_style(row))
    if row.suspicious_dns:
        text.append(row.suspicious_text(), style=SUSPICIOUS_STYLE)
    return text


def address_cell(row: HostRow) -> Text:
    """Addresses connected to; for a name only looked up, its DNS answers, dimmed."""
    addrs = row.addresses or row.resolved
    if not addrs:
        return Text("-")
    text = addrs[0] + (f" +{len(addrs) - 1}" if len(addrs) > 1 else "")
    return Text(text, style="" if row.addresses else "dim italic")


def process_cell(row: HostRow) -> Text:
    """Which program opened its connections: the one with the most, ``+N`` others, ``?`` for a
    process gone before the lookup, ``-`` when none was looked up (HostRow.process_text)."""
    if not row.processes:
        return Text("?", style="yellow") if row.process_unknown else Text("-", style="dim")
    top = next(iter(row.processes))
    text = Text(safe_text(top, PROGRAM_WIDTH))
    if len(row.processes) > 1:
        text.append(f" +{len(row.processes) - 1}", style="dim")
    if row.process_unknown:
        text.append(" ?", style="yellow")
    return text


def process_sort(row: HostRow) -> tuple:
    """Hosts with a program first, by its name; then those with only unknown ones; then the rest."""
    if row.processes:
        top = next(iter(row.processes))
        return (0, top.lower(), -row.processes[top])
    return (1 if row.process_unknown else 2, "", 0)


def filter_match(row: HostRow, text: str) -> bool:
    """The filter: every word must appear in the row's name, via, addresses, ports or verdict;
    ``proc:NAME`` instead asks for a program whose name holds NAME (``proc:?``: a process gone
    before the lookup)."""
    hay = None
    for term in text.lower().split():
        if term.startswith("proc:"):
            want = term[5:]
            if want == "?":
                if not row.process_unknown:
                    return False
            elif want and not any(want in p.lower() for p in row.processes):
                return False
            continue
        if hay is None:
            hay = " ".join([row.name, *row.via, *row.addresses, *row.resolved, *map(str, row.ports),
                            row.verdict_text()]).lower()
        if term not in hay:
            return False
    return True


class NameCell(Text):
    """The host cell: the name escaped and cut to fit, and the name itself, which sorting
    needs (the text shown can no longer be mapped back to it)."""

    __slots__ = ("host",)

    def __init__(self, host: str, blocked: bool, style: str):
        super().__init__((BLOCKED_MARK if blocked else "") + safe_text(host, NAME_WIDTH), style=style)
        self.host = host


@dataclass(frozen=True)
class Column:
    """One column: its key and title, the cell it shows for a row, and what it sorts by."""

    key: str
    label: str
    cell: Callable[[HostRow], Text]
    sort: Callable[[HostRow], Any]


# Text everywhere: a str cell would be parsed as markup
COLUMNS = [
    Column("host", "Host", lambda r: NameCell(r.name, r.blocked, row_style(r)), lambda r: r.name),
    Column("process", "Process", process_cell, process_sort),
    Column("via", "Via", lambda r: wire(",".join(r.via) or "-"), lambda r: ",".join(r.via)),
    Column("addresses", "Addresses", address_cell, lambda r: ",".join(r.addresses or r.resolved)),
    Column("ports", "Ports", lambda r: Text(",".join(map(str, r.ports[:4])) + ("…" if len(r.ports) > 4 else "") or "-"),
           lambda r: r.ports),
    Column("conns", "Conns", lambda r: Text(str(r.connections)), lambda r: r.connections),
    Column("outcomes", "Outcomes", lambda r: Text(outcome_text(r.outcomes)), lambda r: outcome_text(r.outcomes)),
    Column("first", "First", lambda r: Text(clock(r.first_seen)), lambda r: r.first_seen),
    Column("last", "Last", lambda r: Text(clock(r.last_seen)), lambda r: r.last_seen),
    Column("verdict", "Verdict", verdict_text, lambda r: (str(r.allowed), r.blocked, r.suspicious_dns)),
]
COLUMN = {c.key: c for c in COLUMNS}
# Until some connection's process is looked up (never, for a capture file), no Process column.
WITHOUT_PROCESS = [c for c in COLUMNS if c.key != "process"]


def row_cells(row: HostRow, columns: list[Column] = COLUMNS) -> list[Text]:
    return [c.cell(row) for c in columns]


def _same(a: Text, b: Text) -> bool:
    # Text equality ignores the base style: a name turning from denied to allowed keeps its text
    return a == b and a.style == b.style


class HostTable(DataTable):
    """One row per host. ``apply`` adds new rows and updates changed cells; it never
    clears and refills, so the cursor and scroll position stay put while traffic flows."""

    class Selected(Message):
        """The highlighted host changed (None when the table is empty)."""

        def __init__(self, name: str | None) -> None:
            self.name = name
            super().__init__()

    def __init__(self, **kw):
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.filter_text = ""
        self.sort_column: str | None = "first"
        self.sort_reverse = False
        self._shown: dict[str, list] = {}   # host -> cells currently displayed
        self.shown_columns: list[Column] = WITHOUT_PROCESS

    def on_mount(self) -> None:
        for c in self.shown_columns:
            self.add_column(c.label, key=c.key)

    @property
    def process_column(self) -> bool:
        return self.shown_columns is COLUMNS

    def matches(self, row: HostRow) -> bool:
        return filter_match(row, self.filter_text)

    def apply(self, rows: list[HostRow], all_rows: dict[str, HostRow]) -> None:
        """Show the changed rows: add, update in place, or hide if filtered out."""
        if not self.process_column and any(r.attributed for r in rows):
            self._add_process_column(all_rows)
            return
        added = False
        for row in rows:
            name = row.name
            if not self.matches(row):
                if name in self._shown:
                    self.remove_row(name)
                    del self._shown[name]
                continue
            cells = row_cells(row, self.shown_columns)
            old = self._shown.get(name)
            if old is None:
                self.add_row(*cells, key=name)
                added = True
            else:
                for key, new, was in zip((c.key for c in self.shown_columns), cells, old):
                    if not _same(new, was):
                        # widening re-measures the whole column on the next idle: only when needed
                        col = self.columns.get(key)
                        self.update_cell(name, key, new,
                                         update_width=col is None or new.cell_len > col.content_width)
            self._shown[name] = cells
        # New hosts arrive in first-seen order, so the default order needs no re-sort (a
        # sort re-lays out every row: the one costly step with thousands of hosts).
        in_order = self.sort_column == "first" and not self.sort_reverse
        if rows and self.sort_column and not in_order and (added or self.sort_column != "host"):
            self.resort(all_rows)

    def _add_process_column(self, all_rows: dict[str, HostRow]) -> None:
        """The first process looked up: the table gets its Process column, after the host.
        A DataTable cannot insert a column, so it is laid out again, once, cursor kept."""
        highlighted = self.highlighted_host
        self.clear(columns=True)
        self._shown.clear()
        self.shown_columns = COLUMNS
        for c in COLUMNS:
            self.add_column(c.label, key=c.key)
        self.apply(sorted(all_rows.values(), key=HostRow.sort_key), all_rows)
        self.resort(all_rows)
        if highlighted in self._shown:
            self.move_cursor(row=self.get_row_index(highlighted))

    def refilter(self, all_rows: dict[str, HostRow]) -> None:
        for name in list(self._shown):
            row = all_rows.get(name)
            if row is None or not self.matches(row):
                self.remove_row(name)
                del self._shown[name]
        self.apply([r for n, r in all_rows.items() if n not in self._shown], all_rows)
        self.resort(all_rows)

    def reset(self) -> None:
        self.clear()
        self._shown.clear()

    def resort(self, all_rows: dict[str, HostRow]) -> None:
        if not self.sort_column or not self._shown:
            return
        keyfn = COLUMN[self.sort_column].sort
        highlighted = self.highlighted_host
        order = {n: i for i, n in enumerate(sorted(self._shown, key=lambda n: keyfn(all_rows[n]),
                                                  reverse=self.sort_reverse))}
        self.sort("host", key=lambda cell: order.get(cell.host, 0))
        if highlighted in self._shown:
            self.move_cursor(row=self.get_row_index(highlighted))

    def sort_by(self, column: str, all_rows: dict[str, HostRow]) -> None:
        if self.sort_column == column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, column in ("conns", "last")
        self.resort(all_rows)

    @property
    def highlighted_host(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.post_message(self.Selected(event.row_key.value if event.row_key else None))
