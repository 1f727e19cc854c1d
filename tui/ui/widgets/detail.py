"""The detail pane: every flow of the selected host and what named it."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from egress_tui.core.report import outcome_text
from egress_tui.core.rows import HostRow, iso
from egress_tui.core.safetext import safe_text
from egress_tui.ui.widgets.host_table import SUSPICIOUS_MARK, SUSPICIOUS_STYLE, clock, verdict_text
from egress_tui.ui.widgets.wire import wire

OUTCOME_STYLE = {"connected": "green", "closed": "green", "refused": "red", "unanswered": "magenta"}


def _joined(items: list, sep: str = ", ") -> Text:
    return wire(sep.join(map(str, items)) or "-")


class DetailPane(Static):
    """Shows one host: DNS answers, TLS details, and its connections, newest first.

    Every value is a ``Text`` built through ``wire``: names, CNAMEs and ALPNs are the
    container's choice, and a Rich table parses a plain ``str`` cell as markup."""

    def show(self, row: HostRow | None, conns: list[dict], shared: dict[str, set[str]] | None = None) -> None:
        if row is None:
            self.update(Text("No host selected. Hosts appear as the container talks.", style="dim"))
            return
        t = Text()
        t.append(safe_text(row.name), style="bold")
        t.append("  ")
        t.append_text(verdict_text(row))
        queries = f"{row.dns_queries} quer{'y' if row.dns_queries == 1 else 'ies'}"
        facts = [
            ("seen via", wire(", ".join(row.via) or "address only")),
            ("addresses", _joined(row.addresses)),
            ("DNS answers", _joined(row.resolved)),
            ("CNAMEs", _joined(row.cnames, " → ")),
            ("DNS", wire(queries + (f", {', '.join(row.dns_rcodes)}" if row.dns_rcodes else ""))),
            ("ALPN", _joined(row.alpn)),
            ("TLS versions", _joined(row.tls_versions)),
            ("ECH", Text("extension offered (real or GREASE: the SNI seen is the outer name)"
                         if row.ech else "no")),
            ("JA4", _joined(row.ja4)),
            ("outcomes", Text(outcome_text(row.outcomes))),
            ("first/last", Text(f"{iso(row.first_seen)}  {iso(row.last_seen)}")),
        ]
        grid = Table.grid(padding=(0, 2))
        for _ in range(2):
            grid.add_column(style="dim", no_wrap=True)
            grid.add_column(overflow="fold")
        half = (len(facts) + 1) // 2
        for (k1, v1), (k2, v2) in zip(facts[:half], facts[half:] + [("", Text())]):
            grid.add_row(Text(k1), v1, Text(k2), v2)
        if shared:
            for a in row.addresses:
                others = sorted(shared.get(a, set()) - {row.name})
                if others:
                    t.append(f"\n{a} also answered for: {safe_text(', '.join(others[:5]))}", style="yellow")
        for note in row.suspicious[-5:]:
            t.append(f"\n{SUSPICIOUS_MARK} DNS answer not believed: ", style=SUSPICIOUS_STYLE)
            t.append(safe_text(f"{note['reason']}; from {note['from']} to {note['to']}"
                               + (f", claimed {', '.join(note['claims'][:3])}" if note.get("claims") else ""), 300))
        if row.suspicious_dns > 5:
            t.append(f"\n({row.suspicious_dns - 5} earlier ones not shown; the JSON report lists the latest 20)",
                     style="dim")
        flows = Table(box=None, padding=(0, 1), show_edge=False, expand=True)
        for col in ("time", "proto", "client", "server", "outcome", "named by", "app", "pkts out/in"):
            flows.add_column(col, style="dim" if col in ("time", "client") else None, no_wrap=True)
        for c in sorted(conns, key=lambda c: -c["first_seen"])[:200]:
            flows.add_row(Text(clock(c["first_seen"])), wire(c["transport"]), wire(f"{c['client']}:{c['client_port']}"),
                          wire(f"{c['server']}:{c['port']}"),
                          wire(c["outcome"], style=OUTCOME_STYLE.get(c["outcome"], "")),
                          wire(c["named_by"]), wire(c["app"] or "-"), Text(f"{c['packets_out']}/{c['packets_in']}"))
        self.update(Group(t, grid, Text(""), Text(f"{len(conns)} connection(s)", style="bold"), flows))
