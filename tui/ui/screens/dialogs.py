"""Small modal dialogs: allow a host, pick a preset, export, save the allowlist."""

from __future__ import annotations

import hashlib

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from egress_tui.core.allowlist import Choices
from egress_tui.core.safetext import safe_text
from egress_tui.ui.widgets.wire import wire

TITLE_WIDTH = 300  # a hostile 10 KB name in the title would push the choices off the screen


class ChoiceDialog(ModalScreen[str | None]):
    """A title and a list of choices; dismisses with the chosen id, or None on escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]]):
        super().__init__()
        self.title_text = title
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            # titles and labels carry host names: never markup, controls escaped
            yield Label(safe_text(self.title_text, TITLE_WIDTH), classes="dialog-title", markup=False)
            yield OptionList(*[Option(wire(label), id=cid) for cid, label in self.choices])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


def option_id(entry: str) -> str:
    """A widget id for an allowlist entry: a hash, so no name from the wire becomes an id."""
    return "c" + hashlib.sha256(entry.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class AllowDialog(ModalScreen[str | None]):
    """The entries that may be added for one observed name, each saying what it allows;
    dismisses with the chosen entry, or None. For a name with no valid entry (an address
    range, a wildcard, not a host name) it says why and what to do instead."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, name: str, choices: Choices):
        super().__init__()
        self.observed = name
        self.choices = choices
        self.by_id = {option_id(c.entry): c.entry for c in choices.choices}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog allow"):
            yield Label(Text.assemble("Add to the allowlist: ", (safe_text(self.observed, 120), "bold")),
                        classes="dialog-title", markup=False)
            if self.choices.choices:
                yield OptionList(*[Option(Text.assemble((c.entry, "bold"), "\n", c.allows), id=option_id(c.entry))
                                   for c in self.choices.choices], id="allow-choices")
            if self.choices.why:
                yield Label(Text(self.choices.why), id="allow-why", classes="dialog-why", markup=False)
            yield Label("enter to add, escape to cancel" if self.choices.choices else "escape to close",
                        classes="dialog-hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.by_id.get(event.option.id or ""))

    def action_cancel(self) -> None:
        self.dismiss(None)


class InputDialog(ModalScreen[str | None]):
    """One line of input, with a prompt; dismisses with the text, or None on escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, prompt: str, value: str = "", placeholder: str = ""):
        super().__init__()
        self.prompt = prompt
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(safe_text(self.prompt, TITLE_WIDTH), classes="dialog-title", markup=False)
            yield Input(value=self.value, placeholder=self.placeholder)
            yield Label("enter to confirm, escape to cancel", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
