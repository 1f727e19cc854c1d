"""``harden-runner``: a GitHub Actions step for step-security/harden-runner with
``egress-policy: block`` and the allowlist as ``allowed-endpoints`` (``host:port``, wildcards
as ``*.example.com:443``).

harden-runner allows by name and port: an address or range is left out, and an entry without
a port (any port here) is written for 443, the port harden-runner assumes, noted as narrowed."""

from __future__ import annotations

from egress_tui.exports import Export, Note, Options, Source, header, notes_block

DEFAULT_PORT = 443


def render(source: Source, options: Options, now: float | None = None) -> Export:
    endpoints: list[str] = []
    notes: list[Note] = []
    for e in source.entries:
        if e.network is not None:
            notes.append(Note(e.text(), "left out", "an address or range: harden-runner allows host names"))
            continue
        if e.port is None:
            notes.append(Note(e.text(), "narrowed", f"harden-runner needs a port: written as "
                                                    f"{e.pattern}:{DEFAULT_PORT}, other ports stay blocked"))
        endpoints.append(f"{e.pattern}:{e.port or DEFAULT_PORT}")
    endpoints = list(dict.fromkeys(endpoints))
    notes = source.skipped + notes
    lines = header("harden-runner", source, now) + notes_block(notes, "harden-runner")
    lines += ["# A step for your job's steps: (first, before anything that reaches the network)",
              "- name: Harden the runner (egress allowlist exported by egress-tui)",
              "  uses: step-security/harden-runner@v2",
              "  with:",
              "    egress-policy: block"]
    if endpoints:
        lines += ["    allowed-endpoints: >", *(f"      {ep}" for ep in endpoints)]
    else:
        lines.append("    allowed-endpoints: ''")
    return Export("\n".join(lines) + "\n", notes)
