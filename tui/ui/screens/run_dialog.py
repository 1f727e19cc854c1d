"""`r`: what to run in the container, with which provider environment, for how long.

Credentials never go into an Input: passed-through ones are listed by name, and a value the
user typed for a secret name is kept in memory and shown masked when the dialog reopens. The
container's own proxy settings are shown (masked): the run keeps them unless its environment
sets a proxy variable."""

from __future__ import annotations

import shlex

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from egress_tui.core.proxy import ProxyConfig
from egress_tui.core.runs import DEFAULT_REGIONS, PROVIDERS, RunSpec, provider_env, run_proxy
from egress_tui.core.secrets import HIDDEN, mask_value, redact, secret_values


class RunDialog(ModalScreen[RunSpec | None]):
    """Edit the command and its environment; dismisses with a RunSpec, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="run.cancel")]

    def __init__(self, last: RunSpec | None = None, inherited: ProxyConfig | None = None):
        super().__init__()
        self.last = last or RunSpec()
        self.inherited = inherited or ProxyConfig()   # the container's own proxy settings
        base = provider_env(self.last.provider, self.last.region)
        # what the user typed last time (not what the preset passes through)
        self.extra = {k: v for k, v in self.last.env.items() if base.get(k) != v}
        self.shown_command = redact(shlex.join(self.last.command), secret_values(self.last.env))

    def compose(self) -> ComposeResult:
        last = self.last
        with Vertical(classes="dialog run-dialog"):
            yield Label("Run in the container (output goes to the log pane)", classes="dialog-title")
            yield Label("provider")
            yield Select([(p, p) for p in PROVIDERS], value=last.provider, allow_blank=False, id="provider")
            yield Label("region (bedrock, vertex)")
            yield Input(value=last.region or DEFAULT_REGIONS.get(last.provider, ""), id="region")
            yield Label("command")
            yield Input(value=self.shown_command, id="command")
            yield Static(self._passed_text(last.provider, last.region), id="passed", classes="dialog-hint",
                         markup=False)
            yield Label("extra environment: KEY=VALUE ... (typed secrets stay in memory)")
            yield Input(value=" ".join(_shown(k, v) for k, v in self.extra.items()),
                        id="env", placeholder="ANTHROPIC_MODEL=...")
            yield Static(self._proxy_text(self.last.env), id="run-proxy", classes="dialog-hint")
            yield Label("time limit (seconds)")
            yield Input(value=f"{last.timeout:g}", id="timeout")
            yield Label("", id="run-error", classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Run", variant="primary", id="run")
                yield Button("Cancel", id="cancel")

    @staticmethod
    def _passed_text(provider: str, region: str) -> str:
        names = [k for k in PROVIDERS[provider]["pass"] if k in provider_env(provider, region)]
        if not names:
            return "from your environment: nothing to pass through"
        return "from your environment: " + ", ".join(f"{k} (set, passed through)" for k in names)

    def _proxy_text(self, env: dict[str, str]) -> Text:
        """Which proxy the run goes through: the container's, kept, or what its environment sets."""
        cfg = run_proxy(self.inherited, env)
        if not cfg and not cfg.problems:
            return Text("proxy: none (the container sets no HTTP(S)_PROXY)")
        whose = "the container's, kept for the run" if cfg == self.inherited else "set for this run"
        line = f"{cfg.summary()}  ({whose})"
        if cfg.problems:
            line += f"; not understood: {cfg.problems[0]}"
        return Text(line)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "env":
            try:
                typed = dict(kv.split("=", 1) for kv in shlex.split(event.value) if "=" in kv)
            except ValueError:
                return  # half typed (an open quote): the line says what it said before
            for k, v in typed.items():  # provider presets set no proxy variable: only these can
                kept = self.extra.get(k)
                if kept is not None and v == mask_value(k, kept):
                    typed[k] = kept
            self.query_one("#run-proxy", Static).update(self._proxy_text(typed))

    def on_select_changed(self, event: Select.Changed) -> None:
        region = DEFAULT_REGIONS.get(str(event.value), "")
        self.query_one("#region", Input).value = region
        self.query_one("#passed", Static).update(self._passed_text(str(event.value), region))

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
            shown = self.query_one("#command", Input).value
            command = list(self.last.command) if shown == self.shown_command else shlex.split(shown)
            timeout = float(self.query_one("#timeout", Input).value)
            extra = dict(kv.split("=", 1) for kv in shlex.split(self.query_one("#env", Input).value))
        except ValueError as e:
            # Text: what was typed comes back in the message, and "[/]" there is no markup
            err.update(Text(f"cannot read that: {e} (KEY=VALUE pairs, a number of seconds)"))
            return
        if not command:
            err.update("the command is empty")
            return
        if timeout <= 0:
            err.update("the time limit must be positive")
            return
        for k, v in extra.items():
            kept = self.extra.get(k)
            if kept is not None and v == mask_value(k, kept):
                extra[k] = kept  # left as shown: the value typed before
        env = provider_env(provider, region)
        env.update(extra)
        self.dismiss(RunSpec(command=command, provider=provider, region=region, env=env, timeout=timeout))

    def action_cancel(self) -> None:
        self.dismiss(None)


def _shown(key: str, value: str) -> str:
    masked = mask_value(key, value)
    return f"{key}={masked if masked == HIDDEN else shlex.quote(masked)}"
