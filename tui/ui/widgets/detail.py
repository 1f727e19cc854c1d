"""The detail pane: every flow of the selected host and what named it."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from egress_tui.core.procs import UNKNOWN, ProcInfo, from_dict, run_label
from egress_tui.core.report import outcome_text
from egress_tui.core.rows import HostRow, iso
from egress_tui.core.safetext import safe_text
from egress_tui.ui.widgets.host_table import PROGRAM_WIDTH, SUSPICIOUS_MARK, SUSPICIOUS_STYLE, clock, verdict_text
from egress_tui.ui.widgets.wire import wire

OUTCOME_STYLE = {"connected": "green", "closed": "green", "refused": "red", "unanswered": "magenta"}
PROCESSES_SHOWN = 10   # distinct processes listed above the flows, each with its command line
CMDLINE_WIDTH = 300


def _joined(items: list, sep: str = ", ") -> Text:
    return wire(sep.join(map(str, items)) or "-")


def tunnel_text(t: dict | None) -> str:
    """One flow's proxy handshake: ``CONNECT api.anthropic.com:443 → 200``."""
    if not t:
        return "-"
    if t["hidden"]:
        return "TLS to proxy: hidden"
    kind = {"connect": "CONNECT", "http": "GET", "socks5": "SOCKS5", "socks4": "SOCKS4",
            "socks4a": "SOCKS4a"}.get(t["kind"], t["kind"])
    answer = t["refused"] or t["reply"] or "no answer"
    return safe_text(f"{kind} {t['target'] or '?'} → {answer}", 80)


def process_cell(value: object) -> Text:
    """A flow's process, short so the flows keep their columns: ``curl 4121`` (program and pid;
    the processes above the flows give each pid's parents and run); ``?`` when it was gone
    before the lookup; ``-`` when not looked up."""
    p = from_dict(value)
    if p is None:
        return Text("-", style="dim")
    if not isinstance(p, ProcInfo):
        return Text("?", style="yellow")
    text = wire(p.program, limit=PROGRAM_WIDTH)
    text.append(f" {p.pid}", style="dim")
    return text


def processes_text(conns: list[dict]) -> Text:
    """Each distinct process behind the flows: pid, program and parents, run, connections,
    and its command line (credentials masked when looked up; escaped here)."""
    procs: dict[tuple, list] = {}
    unknown = 0
    for c in conns:
        p = from_dict(c.get("process"))
        if isinstance(p, ProcInfo):
            procs.setdefault((p.pid, p.chain(), p.run), [p, 0])[1] += 1
        elif p == UNKNOWN:
            unknown += 1
    t = Text()
    if not procs and not unknown:
        return t
    t.append("processes", style="bold")
    t.append("  pid, program ← its parents, run, connections; its command line", style="dim")
    for p, n in sorted(procs.values(), key=lambda pn: -pn[1])[:PROCESSES_SHOWN]:
        # a helper reads the container's own /proc: its pids are not the host's
        t.append(f"\n  pid {p.pid}{' (the container’s)' if p.pid_ns == 'container' else ''}  ", style="dim")
        t.append(safe_text(p.chain(), 200))
        if p.run:
            t.append(f"  {safe_text(run_label(p.run), 20)}", style="cyan")
        t.append(f"  {n} connection(s)", style="dim")
        if p.cmdline or p.exe:
            t.append("\n    ")
            t.append(safe_text(p.cmdline or p.exe, CMDLINE_WIDTH), style="dim")
    if len(procs) > PROCESSES_SHOWN:
        t.append(f"\n  ({len(procs) - PROCESSES_SHOWN} more processes; the JSON report lists their chains)",
                 style="dim")
    if unknown:
        t.append(f"\n  {unknown} connection(s): {UNKNOWN} (gone before the lookup)", style="yellow")
    return t


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
        if row.attributed:  # once a process was looked up (live, attribution on)
            facts.append(("programs", wire(row.programs_text(8), limit=200)))
        if row.proxies:  # only for hosts reached through a proxy: the others keep their pane
            facts += [("proxies", _joined(row.proxies)), ("asked of proxy", _joined(row.targets))]
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
        for finding in row.fronting[:5]:
            t.append(f"\n{SUSPICIOUS_MARK} fronting: ", style=SUSPICIOUS_STYLE)
            t.append(safe_text(finding, 300))
            t.append(" (judged on both names)", style="dim")
        if row.bypass:
            t.append(f"\n{SUSPICIOUS_MARK} proxy bypass: ", style=SUSPICIOUS_STYLE)
            t.append(f"{row.bypass} connection(s) went around the configured proxy")
        if row.hidden:
            t.append(f"\n{SUSPICIOUS_MARK} destination hidden: ", style=SUSPICIOUS_STYLE)
            t.append(f"{row.hidden} connection(s) speak TLS to the proxy itself; what they ask it for is encrypted")
        for note in row.suspicious[-5:]:
            t.append(f"\n{SUSPICIOUS_MARK} DNS answer not believed: ", style=SUSPICIOUS_STYLE)
            t.append(safe_text(f"{note['reason']}; from {note['from']} to {note['to']}"
                               + (f", claimed {', '.join(note['claims'][:3])}" if note.get("claims") else ""), 300))
        if row.suspicious_dns > 5:
            t.append(f"\n({row.suspicious_dns - 5} earlier ones not shown; the JSON report lists the latest 20)",
                     style="dim")
        flows = Table(box=None, padding=(0, 1), show_edge=False, expand=True)
        proxied = any(c.get("tunnel") for c in conns)  # the proxy column only where there is one
        looked_up = any(c.get("process") for c in conns)  # the process column only once looked up
        cols = (("time", "proto", "client", "server", "outcome", "named by", "app") + (("proxy",) if proxied else ())
                + (("process",) if looked_up else ()))
        for col in (*cols, "pkts out/in"):
            flows.add_column(col, style="dim" if col in ("time", "client") else None, no_wrap=True)
        for c in sorted(conns, key=lambda c: -c["first_seen"])[:200]:
            cells = [Text(clock(c["first_seen"])), wire(c["transport"]), wire(f"{c['client']}:{c['client_port']}"),
                     wire(f"{c['server']}:{c['port']}"),
                     wire(c["outcome"], style=OUTCOME_STYLE.get(c["outcome"], "")),
                     wire(c["named_by"]), wire(c["app"] or "-")]
            if proxied:
                cells.append(wire(tunnel_text(c.get("tunnel"))))
            if looked_up:
                cells.append(process_cell(c.get("process")))
            flows.add_row(*cells, Text(f"{c['packets_out']}/{c['packets_in']}"))
        procs = processes_text(conns)
        self.update(Group(t, grid, *((Text(""), procs) if procs else ()), Text(""),
                          Text(f"{len(conns)} connection(s)", style="bold"), flows))
