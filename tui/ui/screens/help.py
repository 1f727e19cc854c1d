"""`?`: every key of the current screen, with what it does."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

EXTRA = [
    ("click a column title", "sort by that column (again: reverse)"),
    ("ctrl+p", "command palette: exports, presets, and everything else"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, bindings: list[tuple[str, str]]):
        super().__init__()
        self.pairs = bindings

    def compose(self) -> ComposeResult:
        t = Table(title="egress-tui keys", box=None, padding=(0, 2))
        t.add_column("key", style="bold cyan", no_wrap=True)
        t.add_column("action")
        for key, desc in [*self.pairs, *EXTRA]:
            t.add_row(Text(key), Text(desc))  # a str cell would be parsed as markup
        with VerticalScroll(classes="dialog help"):
            yield Static(t)
            yield Static("escape closes this help", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
