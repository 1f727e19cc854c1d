"""Rendering the host list as a table, JSON, CSV or Markdown.

The same rows feed ``egress-tui report``, the TUI's exports, and the files handed to a
security team, so every format carries the same columns.
"""

from __future__ import annotations

import csv
import io
import itertools
import time
from collections.abc import Iterable, Iterator

from egress_tui.core.allowlist import Allowlist
from egress_tui.core.engine import Engine
from egress_tui.core.hosts import is_address
from egress_tui.core.proxy import ProxyConfig, json_summary
from egress_tui.core.rows import HostRow, iso
from egress_tui.core.safetext import csv_cell, json_text, md_text, safe_text

FORMATS = ("table", "json", "csv", "markdown")

TABLE_COLUMNS = ["host", "via", "addresses", "ports", "conns", "outcomes", "verdict"]
# With any process looked up (live, attribution on), a column after the host: which program.
PROCESS_COLUMN = "process"
# Widest a table column gets: a 10 KB name (or a host with a thousand ports) is cut with a
# marker instead of padding every other row out to its width.
TABLE_WIDTH = {"host": 64, "process": 24, "via": 24, "addresses": 40, "ports": 32, "conns": 10, "outcomes": 48,
               "verdict": 44}
# In a Markdown report's process column: this many programs, then "+N".
MARKDOWN_PROGRAMS = 4


def host_rows(engine: Engine, allowlist: Allowlist | None = None) -> list[HostRow]:
    """One row per host, with its allowlist verdict, in a stable order."""
    return list(iter_host_rows(engine, allowlist))


def iter_host_rows(engine: Engine, allowlist: Allowlist | None = None) -> Iterator[HostRow]:
    """host_rows one at a time, each made when it is wanted: a report of many hosts written
    as it goes never holds every row (HostRow.sort_key is the host's first time and name)."""
    al = allowlist or Allowlist()
    for h in sorted(engine.host_list(), key=lambda h: (h.first, h.name)):
        row = engine.row(h)
        row.allowed = verdict(row, al)
        yield row


def verdict(row: HostRow, al: Allowlist) -> bool | None:
    """The allowlist's verdict on a row: its name on every port it used, and through a proxy
    also every destination the client asked the proxy for by name (a denied one of either is
    denied: a tunnel to an allowed name that carries another is judged on both)."""
    if row.is_proxy and al:
        return True  # the proxy the engine configured for the container: its way out, not a destination
    v = al.verdict(row.name, row.ports or None, row.addresses or None)
    if v is None or v is False:
        return v
    for target in row.targets:
        host, port = _split_target(target)
        if is_address(host):
            # asked for by address (socks5://, socks4://): as a direct connection to it, judged
            # by the row's name, or by the address itself (it is among row.addresses)
            continue
        if not al.verdict(host, [port] if port else None):
            return False
    return v


def _split_target(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest[1:].isdigit() else 0
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        return text, 0
    return host, int(port)


def outcome_text(outcomes: dict[str, int], none: str = "-") -> str:
    return " ".join(f"{k}:{v}" for k, v in outcomes.items()) or none


def render_chunks(rows: Iterable[HostRow], fmt: str, meta: dict | None = None) -> Iterator[str]:
    """``render`` in pieces to write one after the other: a JSON report a host at a time, so
    that a report of many hosts never holds its whole text (nor every host's dict) at once."""
    if fmt != "json":
        yield render(list(rows), fmt, meta)
        return
    head = json_text(dict(meta or {}, hosts=[]), indent=2)
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        yield head + "\n"
        return
    # the head ends '"hosts": []\n}': the rows go between the brackets, each indented two levels
    yield head[:-4] + "[\n    "
    sep = ""
    for r in itertools.chain([first], rows):
        yield sep + json_text(r.to_json(), indent=2).replace("\n", "\n    ")
        sep = ",\n    "
    yield "\n  ]\n}\n"


def render(rows: list[HostRow], fmt: str, meta: dict | None = None) -> str:
    meta = meta or {}
    if fmt == "json":
        return "".join(render_chunks(rows, fmt, meta))
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["name", "via", "addresses", "ports", "connections", "outcomes", "allowed",
                    "first_seen", "last_seen", "alpn", "ja4", "tls_versions", "ech", "resolved", "suspicious_dns",
                    "proxies", "proxy_targets", "fronting", "proxy_bypass", "hidden_destination", "verdict",
                    "processes", "process_unknown"])
        for r in rows:
            w.writerow([csv_cell(c) for c in (
                r.name, " ".join(r.via), " ".join(r.addresses),
                " ".join(map(str, r.ports)), r.connections, outcome_text(r.outcomes, ""),
                {True: "true", False: "false", None: ""}[r.allowed],
                iso(r.first_seen), iso(r.last_seen), " ".join(r.alpn),
                " ".join(r.ja4), " ".join(r.tls_versions), str(r.ech).lower(),
                " ".join(r.resolved), r.suspicious_dns, " ".join(r.proxies), " ".join(r.targets),
                " | ".join(r.fronting), r.bypass, r.hidden, r.verdict_text(),
                " ".join(f"{p}:{n}" for p, n in r.processes.items()), r.process_unknown)])
        return buf.getvalue()
    cols = table_columns(rows)
    table = [[r.name, ",".join(r.via) or "-", _short_list(r.addresses or r.resolved),
              ",".join(map(str, r.ports)) or "-", str(r.connections),
              outcome_text(r.outcomes), r.verdict_text()] for r in rows]
    if PROCESS_COLUMN in cols:
        # the table: the cell the screen shows; Markdown, for people reading a report: the programs
        for r, t in zip(rows, table):
            t.insert(1, r.process_text() if fmt == "table" else (r.programs_text(MARKDOWN_PROGRAMS) or "-"))
    if fmt == "markdown":
        lines = []
        if meta.get("title"):
            lines += [f"# {md_text(meta['title'])}", ""]
        for k in ("source", "allowlist", "generated"):
            if meta.get(k):
                lines.append(f"- {k}: {md_text(meta[k])}")
        lines += proxy_markdown(meta.get("proxy"))
        if len(lines) > 0:
            lines.append("")
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" for _ in cols) + "|")
        for t in table:
            lines.append("| " + " | ".join(md_text(c) for c in t) + " |")
        return "\n".join(lines) + "\n"
    if fmt == "table":
        if not table:
            return "no hosts found\n"
        table = [[safe_text(c, TABLE_WIDTH[col]) for col, c in zip(cols, t)] for t in table]
        widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
        fmt_line = "  ".join("{:<%d}" % w for w in widths)
        lines = [fmt_line.format(*cols).rstrip(), fmt_line.format(*("-" * w for w in widths))]
        lines += [fmt_line.format(*t).rstrip() for t in table]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt}")


def table_columns(rows: list[HostRow]) -> list[str]:
    """The table's and the Markdown report's columns: a process column only when some process
    was looked up (a capture file has none: its reports stay as they were)."""
    if not any(r.attributed for r in rows):
        return TABLE_COLUMNS
    return TABLE_COLUMNS[:1] + [PROCESS_COLUMN] + TABLE_COLUMNS[1:]


def _short_list(items: list[str], n: int = 2) -> str:
    if not items:
        return "-"
    return ",".join(items[:n]) + (f" +{len(items) - n}" if len(items) > n else "")


def proxy_markdown(data: object) -> list[str]:
    """Markdown list items for proxy settings as ``ProxyConfig.to_json()`` wrote them: the
    proxies (credentials were masked before they got here) and what could not be read."""
    if not isinstance(data, dict) or not (data.get("proxies") or data.get("no_proxy") or data.get("problems")):
        return []
    text = json_summary(data)
    text = "none" + text[len("no proxy"):] if text.startswith("no proxy") else text.removeprefix("proxy ")
    lines = [f"- proxy: {md_text(text)}"]
    problems = data.get("problems") if isinstance(data.get("problems"), list) else []
    lines += [f"- proxy setting not understood: {md_text(p)}" for p in problems]
    return lines


def meta_for(source: str, engine: Engine, allowlist: Allowlist, proxy: ProxyConfig | None = None) -> dict:
    """The header of a report; ``proxy``: the proxies the capture went through (masked)."""
    return {
        "source": source,
        "proxy": proxy.to_json() if proxy is not None else None,
        "packets": engine.packets,
        "capture_start": iso(engine.first_ts),
        "capture_end": iso(engine.last_ts),
        "allowlist": ", ".join(allowlist.sources) if allowlist else None,
        "resolvers": sorted(engine.resolvers),
        "trusted_resolvers": sorted(engine.trusted_resolvers) if engine.trusted_resolvers is not None else None,
        "suspicious_dns": engine.suspicious_count,
        "generated": iso(time.time()),
    }
