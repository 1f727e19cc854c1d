"""The status bar: what is captured, how, how fast, and what can't be trusted."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from egress_tui.core.safetext import safe_text


# The proxy line, at most (ProxyConfig.summary() is up to 200): three proxies and a NO_PROXY.
PROXY_WIDTH = 160


class StatusBar(Static):
    def show(self, *, target: str, method: str, rate: float, packets: int, drops: int, errors: int,
             allowlist: str, paused: bool, state: str, hosts: int, firewall: str = "",
             firewall_warning: str = "", proxy: str = "", proxy_warning: str = "") -> None:
        # most important first: a narrow terminal cuts the end of the line. The target (a file
        # or container name), the state and the allowlist path may hold anything: escaped.
        t = Text()
        t.append(f" {safe_text(target, 48)} ", style="bold reverse")
        if state:
            t.append(f" {safe_text(state)}", style="yellow")
        if paused:
            t.append("  PAUSED (still capturing)", style="bold yellow")
        if firewall:
            t.append("  ")
            t.append(safe_text(firewall), style="bold reverse green" if firewall.startswith("FIREWALL ON") else "dim")
        if firewall_warning:  # what the firewall does differs from what the screen suggests
            t.append(f"  {safe_text(firewall_warning)}", style="bold yellow")
        t.append(f"  {method}  {rate:,.0f} pkt/s  {packets:,} pkts  {hosts} hosts  ")
        t.append(f"drops {drops}", style="bold red" if drops else "")
        t.append("  ")
        t.append(f"errors {errors}", style="bold red" if errors else "")
        t.append(f"  allowlist: {safe_text(allowlist)}")
        # the proxy gets a line of its own: beside the rest it would push the drop and error
        # counts off a 100-column screen. Masked and escaped before it gets here; cut anyway.
        if proxy or proxy_warning:
            t.append("\n ")
            if proxy:
                t.append(safe_text(proxy, PROXY_WIDTH), style="cyan")
            if proxy_warning:
                t.append(f"  {safe_text(proxy_warning)}", style="bold yellow")
        self.set_class(bool(proxy or proxy_warning), "-proxy")
        self.update(t)
