"""``domains``: one domain a line, ``.example.com`` for a wildcard: the list Zscaler, PAN-OS
external dynamic lists and AWS domain lists read.

Such a list knows neither ports nor addresses, and its ``.example.com`` also matches
``example.com`` itself. So an entry with a port, and an address or range, is left out (a
firewall list fails closed), and a wildcard whose domain is not itself allowed is written,
noted as widened to that one domain."""

from __future__ import annotations

from egress_tui.exports import Export, Note, Options, Source, apex_allowed, header, notes_block, wildcard_base


def domain_list(source: Source) -> tuple[list[str], list[Note]]:
    """The list's lines and what it could not carry (shared with the AWS domain list)."""
    lines: list[str] = []
    notes: list[Note] = []
    for e in source.entries:
        if e.network is not None:
            notes.append(Note(e.text(), "left out", "an address or range: a domain list holds names only"))
        elif e.port is not None:
            notes.append(Note(e.text(), "left out", "a domain list has no ports (allow the name without a port "
                                                    "if any port will do)"))
        elif e.wildcard:
            base = wildcard_base(e)
            if not apex_allowed(source.entries, e):
                notes.append(Note(e.text(), "widened", f".{base} also matches {base} itself"))
            lines.append("." + base)
        else:
            lines.append(e.pattern)
    return list(dict.fromkeys(lines)), notes


def render(source: Source, options: Options, now: float | None = None) -> Export:
    lines, notes = domain_list(source)
    notes = source.skipped + notes
    text = header("domains", source, now) + notes_block(notes, "a domain list") + lines
    return Export("\n".join(text) + "\n", notes)
