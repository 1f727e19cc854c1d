"""Where an export's entries come from: allowlist files and presets, a report or session report
(``egress-tui report --format json``, ``learn --session-report``, the screen's exports), or the
rows the screen has seen.

A report is written from what the watched container sent, so it is hostile input like the
wire itself: read once, bounded in size, every field type-checked, and every name passed
through ``choices_for`` (the check the allowlist's own entries from the wire go through)
before it can become an entry. A name that is not a valid host name (an address, a range, a
pattern, markup, a 10 KB label) is listed as skipped and never written anywhere but escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from egress_tui.core.allowlist import Allowlist, choices_for, parse_entry
from egress_tui.core.safetext import safe_text
from egress_tui.exports import ExportError, Note, Source

# A report of a long session is large, but not this large (the rows are capped upstream).
MAX_REPORT_BYTES = 64 * 1024 * 1024
# Skipped names listed one by one; past this, one line counts the rest.
MAX_SKIPPED_LISTED = 50


def from_allowlist(allowlist: Allowlist) -> Source:
    """The allowlist as loaded (files and presets, in order)."""
    return Source(allowlist, ", ".join(allowlist.sources) or "allowlist (empty)")


def read_report(path: str) -> tuple[list[dict], str]:
    """The host rows of a JSON report or session report, and the source it names (the
    capture, the container): ExportError (one line) for anything that is not one."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_REPORT_BYTES + 1)
    except OSError as e:
        raise ExportError(f"cannot read report {path}: {e.strerror}") from None
    if len(data) > MAX_REPORT_BYTES:
        raise ExportError(f"report {path} is larger than {MAX_REPORT_BYTES // (1024 * 1024)} MiB: "
                          "check that this is an egress-tui JSON report")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ExportError(f"{path} is not JSON: give a report written by egress-tui report --format json "
                          "or a session report (.json)") from None
    hosts = doc.get("hosts") if isinstance(doc, dict) else None
    if not isinstance(hosts, list):
        raise ExportError(f"{path} has no 'hosts' list: give a report written by egress-tui report --format json "
                          "or a session report (.json)")
    inner = doc.get("source")
    return [h for h in hosts if isinstance(h, dict)], inner if isinstance(inner, str) else ""


def _connections(row: dict) -> int:
    n = row.get("connections")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 0


def from_rows(rows: Iterable[dict], all_seen: bool, description: str,
              into: Allowlist | None = None) -> Source:
    """Entries for the hosts a report saw: those it allowed (``allowed`` true), or with
    ``all_seen`` every host connected to (blocked attempts included). Each becomes the exact
    entry for its name, never a wildcard, an address or a range; a name that is not a valid
    host name is skipped (listed, escaped). Names only looked up in DNS are not exported."""
    al = into if into is not None else Allowlist()
    skipped: list[Note] = []
    verdicts = lookups = 0
    seen = 0
    for row in rows:
        name = row.get("name")
        if not isinstance(name, str):
            continue
        allowed = row.get("allowed")
        if allowed is True or allowed is False:
            verdicts += 1
        if not all_seen and allowed is not True:
            continue
        if not _connections(row):
            lookups += 1
            continue
        seen += 1
        c = choices_for(name)
        if c.host is None:
            skipped.append(Note(name, "skipped", c.why.split(", so nothing is offered")[0]))
            continue
        al.add(parse_entry(c.host, "report", ""))
    if not all_seen and not verdicts:
        raise ExportError("the report has no verdicts (it was made without an allowlist): pass --all-seen to "
                          "export every host it saw")
    if len(skipped) > MAX_SKIPPED_LISTED:
        more = len(skipped) - MAX_SKIPPED_LISTED
        skipped = skipped[:MAX_SKIPPED_LISTED] + [Note(f"{more} more names", "skipped", "not host names either")]
    if lookups:
        skipped.append(Note(f"{lookups} names", "skipped", "only looked up in DNS, never connected to"))
    which = "every host connected to" if all_seen else "the allowed hosts"
    return Source(al, f"{description} ({which}: {seen})", skipped)


def from_report(path: str, all_seen: bool, into: Allowlist | None = None) -> Source:
    """``from_rows`` for a JSON report file; the report's own source is named in the header."""
    rows, inner = read_report(path)
    what = f"report {path}" + (f" of {safe_text(inner, 120)}" if inner else "")
    return from_rows(rows, all_seen, what, into)


def combine(allowlist: Allowlist, report: Source | None) -> Source:
    """Allowlist entries and report entries together (report entries after)."""
    if report is None:
        return from_allowlist(allowlist)
    al = Allowlist(allowlist.entries, allowlist.sources)
    for e in report.entries:
        al.add(e)
    desc = report.description if not allowlist.sources else f"{', '.join(allowlist.sources)} + {report.description}"
    return Source(al, desc, report.skipped)
