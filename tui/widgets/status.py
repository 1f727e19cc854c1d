"""The status bar: what is captured, how, how fast, and what can't be trusted."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class StatusBar(Static):
    def show(self, *, target: str, method: str, rate: float, packets: int, drops: int, errors: int,
             allowlist: str, paused: bool, state: str, hosts: int, firewall: str = "") -> None:
        # most important first: a narrow terminal cuts the end of the line
        t = Text()
        t.append(f" {target} ", style="bold reverse")
        if state:
            t.append(f" {state}", style="yellow")
        if paused:
            t.append("  PAUSED (still capturing)", style="bold yellow")
        if firewall:
            t.append("  ")
            t.append(firewall, style="bold reverse green" if firewall.startswith("FIREWALL ON") else "dim")
        t.append(f"  {method}  {rate:,.0f} pkt/s  {packets:,} pkts  {hosts} hosts  ")
        t.append(f"drops {drops}", style="bold red" if drops else "")
        t.append("  ")
        t.append(f"errors {errors}", style="bold red" if errors else "")
        t.append(f"  allowlist: {allowlist}")
        self.update(t)
