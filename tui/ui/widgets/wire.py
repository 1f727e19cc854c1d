"""Wire data as Rich ``Text``: the one way a widget shows a string the container chose.

A plain ``str`` given to a Rich table cell, a ``Label`` or a ``DataTable`` is parsed as
markup (``[/]`` raises, ``[link=...]`` makes a link), and Rich passes ESC through to the
terminal. ``Text`` is never parsed, and ``safe_text`` escapes every control visibly.
"""

from __future__ import annotations

from rich.text import Text

from egress_tui.core.safetext import safe_text


def wire(value: object, style: str = "", limit: int | None = None) -> Text:
    """``value`` as Text that shows exactly its characters, controls escaped (``\\x1b``)."""
    return Text(safe_text(value, limit), style=style)
