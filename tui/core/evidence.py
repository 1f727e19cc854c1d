"""The session report handed to a security team: what was watched, what ran, which hosts
were reached or stopped, under which allowlist and firewall, with which tools.

Markdown for people, JSON for machines, from the same data. Nothing here imports Textual.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata

from egress_tui import __version__
from egress_tui.core.proxy import json_summary
from egress_tui.core.report import MARKDOWN_PROGRAMS, outcome_text, proxy_markdown
from egress_tui.core.rows import HostRow, iso, programs_text
from egress_tui.core.runs import RunRecord, diff_runs
from egress_tui.core.safetext import json_text, md_code, md_text
from egress_tui.core.secrets import redact_argv, secret_values


def tool_versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    v = {"egress-tui": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for dist in ("textual", "scapy", "docker", "cryptography"):
        try:
            v[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    for tool in (["iptables", "--version"], ["ipset", "--version"]):
        try:
            out = subprocess.run(tool, capture_output=True, text=True, timeout=5).stdout.strip().splitlines()
            if out:
                v[tool[0]] = out[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    v.update(extra or {})
    return v


def session_data(*, source: str, container: dict | None, rows: list[HostRow], runs: list[RunRecord],
                 allowlist: list[str], firewall: dict | None, versions: dict[str, str],
                 argv: list[str] | None = None, proxy: dict | None = None) -> dict:
    """The report's data. The command line is recorded without environment values (``-e
    KEY=<not recorded>``) and with every credential egress-tui knows of masked. ``proxy``:
    the target's proxy settings, as ``ProxyConfig.to_json()`` (masked)."""
    hide = secret_values(os.environ, *(r.spec.env for r in runs))
    return {
        "generated": iso(time.time()),
        "source": source,
        "container": container,
        "proxy": proxy,
        "allowlist": allowlist,
        "firewall": firewall,
        "hosts": [r.to_json() for r in rows],
        "runs": [r.to_json() for r in runs],
        "tools": versions,
        "command_line": redact_argv(sys.argv if argv is None else argv, hide),
    }


def session_markdown(data: dict) -> str:
    L = ["# egress-tui session report", ""]
    c = data.get("container") or {}
    L.append(f"- generated: {data['generated']}")
    L.append(f"- source: {md_text(data['source'])}")
    if c:
        L.append(f"- container: {md_code(c.get('name'))} (image {md_code(c.get('image'))}, "
                 f"id {md_text(str(c.get('id', ''))[:12])})")
    L += proxy_markdown(data.get("proxy"))
    fw = data.get("firewall")
    if fw:
        L.append(f"- firewall: {'ON' if fw.get('on') else 'off'}"
                 + (f", proxy only: {md_text(', '.join(fw.get('proxies') or []))}" if fw.get("mode") == "proxy"
                    else "")
                 + (f", {fw.get('dropped_packets')} packets dropped" if fw.get("on") else ""))
    L += ["", "## Allowlist", ""]
    L += [f"- {md_code(e)}" for e in data["allowlist"]] or ["(none)"]
    # which programs needed each host: a column only when some process was looked up
    programs = any(h.get("processes") or h.get("process_unknown") for h in data["hosts"])
    cols = ["host", *(["programs"] if programs else []), "via", "ports", "connections", "outcomes", "verdict"]
    L += ["", "## Hosts", "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for h in data["hosts"]:
        cells = [h["name"], ", ".join(h["via"]), ", ".join(map(str, h["ports"])) or "-", h["connections"],
                 outcome_text(h["outcomes"]), h["verdict"]]
        if programs:
            cells.insert(1, programs_text(h.get("processes") or {}, h.get("process_unknown") or 0,
                                          MARKDOWN_PROGRAMS) or "-")
        L.append("| " + " | ".join(md_text(x) for x in cells) + " |")
    runs = data["runs"]
    if runs:
        L += ["", "## Runs", ""]
        for r in runs:
            spec = r["spec"]
            L.append(f"### Run {r['number']}: {md_code(' '.join(spec['command']))} ({md_text(spec['provider'])}"
                     f"{' ' + md_text(spec['region']) if spec['region'] else ''}), firewall "
                     f"{'on' if r['firewall'] else 'off'}, {r['status']}")
            L.append("")
            if (r.get("proxy") or {}).get("proxies"):  # kept from the container, or set for the run
                L += [f"Through {md_text(json_summary(r['proxy']))}", ""]
            for name, h in sorted(r["hosts"].items()):
                if h["connections"]:
                    L.append(f"- {'reached' if h['reached'] else '**blocked**'}: {md_text(name)} "
                             f"({outcome_text(h['outcomes'])}){_run_programs(h)}")
            L.append("")
            L += _split_markdown(r)
        recs = [RunRecord(**{**r, "spec": _spec(r["spec"])}) for r in _plain(runs)]
        for a, b in zip(recs, recs[1:]):
            d = diff_runs(a, b)
            L.append(f"Run {a.number} → run {b.number}: needed {_names(d.needed)}; "
                     f"stopped {_names(d.stopped)}; appeared {_names(d.appeared)}")
        L.append("")
    L += ["## Tools", ""] + [f"- {k}: {v}" for k, v in data["tools"].items()]
    return "\n".join(L) + "\n"


def _run_programs(h: dict) -> str:
    """`` by claude, git`` (and `` by ? (2)``): the programs behind a run's host, escaped."""
    progs = list(dict.fromkeys(p["program"] for p in h.get("processes") or ()))
    unknown = h.get("process_unknown") or 0
    if not progs and not unknown:
        return ""
    text = ", ".join(p[:32] for p in progs[:MARKDOWN_PROGRAMS])  # md_text escapes it, once
    if len(progs) > MARKDOWN_PROGRAMS:
        text += f" +{len(progs) - MARKDOWN_PROGRAMS} more"
    if unknown:
        text += (", " if text else "") + f"process unknown ({unknown})"
    return " by " + md_text(text)


def _split_markdown(run: dict) -> list[str]:
    """The run's hosts by who needed them: its command (Claude Code) or the tools it started."""
    split = run.get("by_process")
    if not split or not any(split[k] for k in ("itself", "tools", "others", "unknown")):
        return []
    return ["Which process needed which host:", "",
            f"- {md_text(split['command'])} itself: {_names(split['itself'])}",
            f"- tools it started: {_names(split['tools'])}",
            f"- processes not started by this run: {_names(split['others'])}",
            f"- process unknown (gone before the lookup): {_names(split['unknown'])}", ""]


def _names(names: list[str]) -> str:
    return ", ".join(md_text(n) for n in names) or "-"


def _plain(runs: list[dict]) -> list[dict]:
    keep = {"number", "spec", "container", "firewall", "started", "ended", "exit_code", "timed_out", "error",
            "output_tail", "hosts", "proxy_env", "proxy"}
    return [{k: v for k, v in r.items() if k in keep} for r in runs]


def _spec(d: dict):
    from egress_tui.core.runs import RunSpec
    return RunSpec(**d)


def write_session(path: str, data: dict) -> str:
    """Write the report; Markdown for .md, JSON otherwise."""
    text = session_markdown(data) if path.endswith((".md", ".markdown")) else json_text(data, indent=2) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
