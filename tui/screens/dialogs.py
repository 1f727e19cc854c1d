"""Small modal dialogs: allow a host, pick a preset, export, save the allowlist."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from ..safetext import safe_text
from ..widgets.wire import wire

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
