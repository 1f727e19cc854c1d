"""`r`: what to run in the container, with which provider environment, for how long."""

from __future__ import annotations

import shlex

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from ..runs import DEFAULT_REGIONS, PROVIDERS, RunSpec, provider_env


class RunDialog(ModalScreen[RunSpec | None]):
    """Edit the command and its environment; dismisses with a RunSpec, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="run.cancel")]

    def __init__(self, last: RunSpec | None = None):
        super().__init__()
        self.last = last or RunSpec()

    def compose(self) -> ComposeResult:
        last = self.last
        with Vertical(classes="dialog run-dialog"):
            yield Label("Run in the container (output goes to the log pane)", classes="dialog-title")
            yield Label("provider")
            yield Select([(p, p) for p in PROVIDERS], value=last.provider, allow_blank=False, id="provider")
            yield Label("region (bedrock, vertex)")
            yield Input(value=last.region or DEFAULT_REGIONS.get(last.provider, ""), id="region")
            yield Label("command")
            yield Input(value=shlex.join(last.command), id="command")
            yield Label("extra environment: KEY=VALUE ... (credentials pass through from yours)")
            yield Input(value=" ".join(f"{k}={v}" for k, v in last.env.items()
                                       if k not in provider_env(last.provider, last.region, environ={})),
                        id="env", placeholder="ANTHROPIC_MODEL=...")
            yield Label("time limit (seconds)")
            yield Input(value=f"{last.timeout:g}", id="timeout")
            yield Label("", id="run-error", classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Run", variant="primary", id="run")
                yield Button("Cancel", id="cancel")

    def on_select_changed(self, event: Select.Changed) -> None:
        self.query_one("#region", Input).value = DEFAULT_REGIONS.get(str(event.value), "")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self._submit()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def _submit(self) -> None:
        err = self.query_one("#run-error", Label)
        provider = str(self.query_one("#provider", Select).value)
        region = self.query_one("#region", Input).value.strip()
        try:
            command = shlex.split(self.query_one("#command", Input).value)
            timeout = float(self.query_one("#timeout", Input).value)
            extra = dict(kv.split("=", 1) for kv in shlex.split(self.query_one("#env", Input).value))
        except ValueError as e:
            err.update(f"cannot read that: {e} (KEY=VALUE pairs, a number of seconds)")
            return
        if not command:
            err.update("the command is empty")
            return
        if timeout <= 0:
            err.update("the time limit must be positive")
            return
        env = provider_env(provider, region)
        env.update(extra)
        self.dismiss(RunSpec(command=command, provider=provider, region=region, env=env, timeout=timeout))

    def action_cancel(self) -> None:
        self.dismiss(None)
