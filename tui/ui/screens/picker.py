"""Pick a running container of any reachable engine: name, engine, image, status, networks,
with a filter."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label

from egress_tui.live.containers import ContainerInfo, DockerError
from egress_tui.ui.widgets.wire import wire


class PickerScreen(Screen[tuple[str, str]]):
    """Dismisses with the chosen container's (id, engine)."""

    BINDINGS = [
        Binding("enter", "choose", "Attach", id="picker.attach"),
        Binding("slash", "focus_filter", "Filter", id="picker.filter"),
        Binding("r", "refresh", "Refresh", id="picker.refresh"),
        Binding("q", "app.quit", "Quit", id="picker.quit"),
    ]

    @dataclass
    class Loaded(Message):
        """The lister's worker finished: the containers, or why there are none."""

        items: list[ContainerInfo]
        error: str = ""

    def __init__(self, lister):
        super().__init__()
        self.lister = lister  # () -> list[ContainerInfo]; asks the engines: runs in a worker
        self.items: list[ContainerInfo] = []
        self.loading = False

    def compose(self) -> ComposeResult:
        yield Label("Pick a running container to watch", id="picker-title")
        yield Input(placeholder="filter by name, engine, image or network", id="picker-filter")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="picker-table")
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for key in ("name", "engine", "image", "status", "networks", "id"):
            t.add_column(key.title(), key=key)
        self.action_refresh()
        t.focus()

    def action_refresh(self) -> None:
        self.loading = True
        self.query_one("#picker-title", Label).update("Listing the running containers…")
        self.run_worker(self._list, thread=True, exclusive=True, group="picker", exit_on_error=False)

    def _list(self) -> None:
        try:
            self.post_message(self.Loaded(self.lister()))
        except DockerError as e:
            self.post_message(self.Loaded([], str(e)))

    def on_picker_screen_loaded(self, message: Loaded) -> None:
        self.loading = False
        self.items = message.items
        self._fill()
        if message.error:
            self.query_one("#picker-title", Label).update(Text.assemble(wire(message.error), " (r: try again)"))

    def _fill(self) -> None:
        t = self.query_one(DataTable)
        f = self.query_one(Input).value.lower().split()
        t.clear()
        for c in self.items:
            hay = f"{c.name} {c.engine} {c.image} {' '.join(c.networks)} {c.short_id}".lower()
            if all(p in hay for p in f):
                # the engine reports these; the container may have chosen them: never markup
                t.add_row(*map(wire, (c.name, c.engine, c.image, c.status, ", ".join(c.networks), c.short_id)),
                          key=f"{c.engine}/{c.id}")
        if not t.row_count:
            self.query_one("#picker-title", Label).update(
                "No running containers match." if self.items else
                "No running containers. Start one (docker run, podman run ...) and press r.")
        else:
            self.query_one("#picker-title", Label).update("Pick a running container to watch (enter)")

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        t = self.query_one(DataTable)
        if t.row_count == 1:  # the filter found it: attach right away
            self.action_choose()
        else:
            t.focus()

    def action_focus_filter(self) -> None:
        self.query_one(Input).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(_picked(event.row_key.value))

    def action_choose(self) -> None:
        t = self.query_one(DataTable)
        if t.row_count:
            self.dismiss(_picked(t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value))


def _picked(key: str) -> tuple[str, str]:
    """(id, engine) from a row key ``engine/id``."""
    engine, _, cid = key.partition("/")
    return cid, engine
