"""The detail pane: every flow of the selected host and what named it."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from ..report import iso, outcome_text
from .host_table import clock, verdict_text

OUTCOME_STYLE = {"connected": "green", "closed": "green", "refused": "red", "unanswered": "magenta"}


class DetailPane(Static):
    """Shows one host: DNS answers, TLS details, and its connections, newest first."""

    def show(self, row: dict | None, conns: list[dict], shared: dict[str, set[str]] | None = None) -> None:
        if row is None:
            self.update(Text("No host selected. Hosts appear as the container talks.", style="dim"))
            return
        t = Text()
        t.append(row["name"], style="bold")
        t.append("  ")
        t.append_text(verdict_text(row))
        facts = [
            ("seen via", ", ".join(row["via"]) or "address only"),
            ("addresses", ", ".join(row["addresses"]) or "-"),
            ("DNS answers", ", ".join(row["resolved"]) or "-"),
            ("CNAMEs", " → ".join(row["cnames"]) or "-"),
            ("DNS", f"{row['dns_queries']} quer{'y' if row['dns_queries'] == 1 else 'ies'}" + (f", {', '.join(row['dns_rcodes'])}" if row["dns_rcodes"] else "")),
            ("ALPN", ", ".join(row["alpn"]) or "-"),
            ("TLS versions", ", ".join(row["tls_versions"]) or "-"),
            ("ECH", "extension offered (real or GREASE: the SNI seen is the outer name)"
             if row["ech"] else "no"),
            ("JA4", ", ".join(row["ja4"]) or "-"),
            ("outcomes", outcome_text(row["outcomes"])),
            ("first/last", f"{iso(row['first_seen'])}  {iso(row['last_seen'])}"),
        ]
        grid = Table.grid(padding=(0, 2))
        for _ in range(2):
            grid.add_column(style="dim", no_wrap=True)
            grid.add_column(overflow="fold")
        half = (len(facts) + 1) // 2
        for left, right in zip(facts[:half], facts[half:] + [("", "")]):
            grid.add_row(*left, *right)
        if shared:
            for a in row["addresses"]:
                others = sorted(shared.get(a, set()) - {row["name"]})
                if others:
                    t.append(f"\n{a} also answered for: {', '.join(others[:5])}", style="yellow")
        flows = Table(box=None, padding=(0, 1), show_edge=False, expand=True)
        for col in ("time", "proto", "client", "server", "outcome", "named by", "app", "pkts out/in"):
            flows.add_column(col, style="dim" if col in ("time", "client") else None, no_wrap=True)
        for c in sorted(conns, key=lambda c: -c["first_seen"])[:200]:
            flows.add_row(clock(c["first_seen"]), c["transport"], f"{c['client']}:{c['client_port']}",
                          f"{c['server']}:{c['port']}",
                          Text(c["outcome"], style=OUTCOME_STYLE.get(c["outcome"], "")),
                          c["named_by"], c["app"] or "-", f"{c['packets_out']}/{c['packets_in']}")
        from rich.console import Group
        self.update(Group(t, grid, Text(""), Text(f"{len(conns)} connection(s)", style="bold"), flows))
