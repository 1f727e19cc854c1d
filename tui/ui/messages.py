"""The messages the app's threads and workers post to it: dataclasses, one per event.

Threads never touch widgets: the capture thread posts ``CaptureBatch`` and ``CaptureState``;
each worker ends with one message (``Attached``, ``FirewallDone``, ``Exported``, ``Closed``,
``RunDone``), and a run streams ``RunLine``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.message import Message

from egress_tui.live.capture import Batch

if TYPE_CHECKING:
    from egress_tui.inspection import Inspection


@dataclass
class CaptureBatch(Message):
    """Posted by the capture thread a few times a second: the hosts that changed."""

    batch: Batch


@dataclass
class CaptureState(Message):
    """Posted by the capture thread when the container stops, restarts or goes away."""

    text: str

    def can_replace(self, message: Message) -> bool:
        # only the latest state is worth showing: a newer one supersedes one still queued
        return isinstance(message, CaptureState)


@dataclass
class Attached(Message):
    """The attach worker finished: the inspection, capturing, or why there is none."""

    inspection: Inspection | None
    error: str = ""


@dataclass
class FirewallDone(Message):
    """The firewall worker finished: applied, removed, or failed (``error``)."""

    on: bool
    text: str
    error: str = ""
    checks: list = field(default_factory=list)


@dataclass
class Exported(Message):
    """An export worker finished: what to tell the user."""

    text: str
    error: bool = False


@dataclass
class Closed(Message):
    """The inspection is closed (and the firewall removed when asked): time to exit."""

    message: str | None
    return_code: int = 0


@dataclass
class RunLine(Message):
    line: str


@dataclass
class RunDone(Message):
    record: object
