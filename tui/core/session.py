"""The state behind one inspection session, independent of any screen.

Holds the latest row of every host (as the capture thread reported it), the allowlist
being edited and where it is saved, and knows how to export. The TUI displays it; the
headless CLI could drive it the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from egress_tui.core.allowlist import Allowlist, AllowlistError, Entry, parse_entry
from egress_tui.core.proxy import ProxyConfig
from egress_tui.core.report import render
from egress_tui.core.report import verdict as row_verdict
from egress_tui.core.rows import HostRow

ALLOWED = "allowed"
DENIED = "denied"
UNLISTED = "unlisted"


def _covered(addr: str, allowed: set[str]) -> bool:
    if addr in allowed:
        return True
    import ipaddress
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    for a in allowed:
        if "/" in a:
            try:
                if ip in ipaddress.ip_network(a, strict=False):
                    return True
            except ValueError:
                pass
    return False


@dataclass
class Session:
    allowlist: Allowlist = field(default_factory=Allowlist)
    allowlist_path: str | None = None
    rows: dict[str, HostRow] = field(default_factory=dict)
    dirty_allowlist: bool = False
    source: str = ""
    firewall_addresses: set[str] | None = None     # what the firewall lets through; None when off
    shared: dict[str, set[str]] = field(default_factory=dict)  # address -> names DNS gave it for
    proxy: ProxyConfig | None = None               # the proxies the target goes through, once known

    # -- rows ------------------------------------------------------------------------------

    def update(self, rows: list[HostRow]) -> list[HostRow]:
        """Take changed rows from a batch; returns them with their verdicts filled in."""
        for r in rows:
            r.allowed = self.verdict(r)
            r.warning = self.warning(r)
            self.rows[r.name] = r
        return rows

    def warning(self, row: HostRow) -> str:
        """For an allowed host: its address is not in the firewall's sets (DNS moved it and
        the firewall has not seen the new answer), or the address also serves a name the
        allowlist denies (a shared CDN front end: allowing it allows them too)."""
        if row.allowed is not True:
            return ""
        fw = self.firewall_addresses
        # through a proxy the firewall sees the proxy, not these addresses: no warning on them
        if fw is not None and not row.proxies and any(not _covered(a, fw) for a in row.addresses):
            return "not-in-firewall"
        for a in row.addresses:
            for other in self.shared.get(a, ()):
                if other != row.name and self.allowlist.match(other) is None:
                    return "shared-address"
        return ""

    def clear(self) -> None:
        self.rows.clear()

    def verdict(self, row: HostRow) -> bool | None:
        return row_verdict(row, self.allowlist)

    def refresh_verdicts(self) -> list[HostRow]:
        """After an allowlist change: every row whose verdict changed."""
        changed = []
        for r in self.rows.values():
            v = self.verdict(r)
            if v != r.allowed:
                r.allowed = v
                changed.append(r)
            w = self.warning(r)
            if w != r.warning:
                r.warning = w
                if r not in changed:
                    changed.append(r)
        return changed

    @staticmethod
    def status(row: HostRow) -> str:
        """allowed / denied / unlisted: the color of a row."""
        v = row.allowed
        return ALLOWED if v is True else DENIED if v is False else UNLISTED

    # -- allowlist editing -----------------------------------------------------------------

    def allow(self, pattern: str) -> Entry:
        entry = parse_entry(pattern, "added on screen")
        if not self.allowlist.sources:
            self.allowlist.sources.append("edited on screen")
        self.allowlist.add(entry)
        self.dirty_allowlist = True
        return entry

    def disallow(self, name: str) -> list[str]:
        """Remove every entry that allows this host; returns what was removed."""
        removed = [e.text() for e in self.allowlist.remove_matching(name)]
        if removed:
            self.dirty_allowlist = True
        return removed

    def add_preset(self, spec: str) -> int:
        before = len(self.allowlist.entries)
        self.allowlist.add_preset(spec)
        self.dirty_allowlist = True
        return len(self.allowlist.entries) - before

    def save_allowlist(self, path: str | None = None) -> str:
        path = path or self.allowlist_path
        if not path:
            raise AllowlistError("no allowlist file yet: give a path to save to")
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.allowlist.to_text())
        except OSError as e:
            raise AllowlistError(f"cannot write {path}: {e.strerror}") from None
        self.allowlist_path = path
        self.allowlist.sources = [path]  # the file now holds every entry, presets included
        self.dirty_allowlist = False
        return path

    def allowlist_label(self) -> str:
        if not self.allowlist:
            return "no allowlist"
        label = ", ".join(os.path.basename(s) if os.sep in s else s for s in self.allowlist.sources)
        return label + (" (modified)" if self.dirty_allowlist else "")

    # -- export ----------------------------------------------------------------------------

    def export(self, fmt: str, path: str, meta: dict | None = None) -> str:
        rows = sorted(self.rows.values(), key=HostRow.sort_key)
        text = render(rows, fmt, meta or {"source": self.source,
                                          "allowlist": ", ".join(self.allowlist.sources) or None,
                                          "proxy": self.proxy.to_json() if self.proxy is not None else None})
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise AllowlistError(f"cannot write {path}: {e.strerror}") from None
        return path
