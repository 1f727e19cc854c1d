"""Reruns of a command (Claude Code by default) inside the watched container, and what each
run reached: the record a security team gets, and the difference between two runs.

Through the docker SDK. Nothing here imports Textual.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from egress_tui.core.engine import Engine
from egress_tui.core.hosts import CHAINS_KEPT, CLOSED, CONNECTED
from egress_tui.core.procs import UNKNOWN as PROC_UNKNOWN
from egress_tui.core.procs import ProcInfo, in_run
from egress_tui.core.proxy import PROXY_VARS, ProxyConfig, ProxyEndpoint
from egress_tui.core.proxy import from_env as proxy_from_env
from egress_tui.core.secrets import mask_env, redact, secret_values, userinfo_secrets

DEFAULT_COMMAND = ["claude", "-p", "hello"]
DEFAULT_TIMEOUT = 120.0

# What each provider needs, as the seed ran it: fixed values, and variables passed through
# from egress-tui's own environment when they are set there (credentials never stored).
PROVIDERS: dict[str, dict] = {
    "anthropic": {"set": {}, "pass": ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"]},
    "bedrock": {"set": {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "{region}"},
                "pass": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                         "AWS_BEARER_TOKEN_BEDROCK", "ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL"]},
    "vertex": {"set": {"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "{region}"},
               "pass": ["ANTHROPIC_VERTEX_PROJECT_ID", "GOOGLE_APPLICATION_CREDENTIALS", "ANTHROPIC_MODEL"]},
    "none": {"set": {}, "pass": []},
}
DEFAULT_REGIONS = {"bedrock": "ap-northeast-1", "vertex": "us-east5"}


class RunError(Exception):
    """The command could not be started; the message names the container and the fix."""


def provider_env(provider: str, region: str | None = None, model: str | None = None,
                 environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a provider preset (values passed through only when set)."""
    if provider not in PROVIDERS:
        raise RunError(f"unknown provider '{provider}'; use one of {', '.join(PROVIDERS)}")
    environ = os.environ if environ is None else environ
    p = PROVIDERS[provider]
    region = region or DEFAULT_REGIONS.get(provider, "")
    env = {k: v.format(region=region) for k, v in p["set"].items()}
    for k in p["pass"]:
        if environ.get(k):
            env[k] = environ[k]
    if model:
        env["ANTHROPIC_MODEL"] = model
    return env


@dataclass
class RunSpec:
    command: list[str] = field(default_factory=lambda: list(DEFAULT_COMMAND))
    provider: str = "anthropic"
    region: str = ""
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT

    def describe(self) -> str:
        """One line for screens, logs and reports: credentials and URL userinfo masked."""
        where = f" {self.region}" if self.region else ""
        return redact(f"{' '.join(self.command)}  [{self.provider}{where}]", secret_values(self.env))


def run_proxy(inherited: ProxyConfig, env: Mapping[str, str]) -> ProxyConfig:
    """The proxy settings a run in the container has. ``docker exec`` keeps the container's
    environment (``inherited``, from the engine), and a variable the run sets replaces the one
    of the same spelling; among spellings, lower case wins as always (curl, Python, Node)."""
    if not any(k.lower() in PROXY_VARS for k in env):
        return inherited
    own = proxy_from_env(env)
    chosen: dict[str, tuple[str, ProxyEndpoint]] = {}
    for var, ep in [(v, ep) for v, ep in inherited.vars if v not in env] + list(own.vars):
        have = chosen.get(var.lower())
        if have is None or _spelling_rank(var) < _spelling_rank(have[0]):
            chosen[var.lower()] = (var, ep)
    vars_ = tuple(chosen[low] for low in ("http_proxy", "https_proxy", "all_proxy") if low in chosen)
    no_proxy, no_var = own.no_proxy, own.no_proxy_var
    old_var = inherited.no_proxy_var
    if old_var and old_var not in env and (not no_var or _spelling_rank(old_var) < _spelling_rank(no_var)):
        no_proxy, no_var = inherited.no_proxy, old_var
    problems = tuple(dict.fromkeys(own.problems + tuple(
        p for p in inherited.problems if p.partition(":")[0] not in env)))
    return ProxyConfig(vars_, no_proxy, no_var, problems)


def proxy_names(cfg: ProxyConfig) -> list[str]:
    """The proxy variables in effect, as spelled (names only: a value may hold a login)."""
    return [v for v, _ep in cfg.vars] + ([cfg.no_proxy_var] if cfg.no_proxy_var else [])


def proxy_secrets(cfg: ProxyConfig) -> set[str]:
    """The proxy logins of a configuration, in every form a client may print them."""
    out: set[str] = set()
    for _var, ep in cfg.vars:
        if ep.userinfo:
            out |= userinfo_secrets(ep.userinfo)
    return out


def _spelling_rank(key: str) -> int:
    return 0 if key == key.lower() else 1 if key == key.upper() else 2


@dataclass
class RunRecord:
    """One run: what ran, with the firewall on or off, and which hosts it reached."""

    number: int
    spec: RunSpec
    container: str
    firewall: bool
    started: float
    ended: float = 0.0
    exit_code: int | None = None
    timed_out: bool = False
    error: str = ""
    output_tail: list[str] = field(default_factory=list)
    hosts: dict[str, dict] = field(default_factory=dict)
    # the proxy the run went through: the container's settings it kept, or the ones its own
    # environment set (run_proxy); names of the variables, and ProxyConfig.to_json (masked)
    proxy_env: list[str] = field(default_factory=list)
    proxy: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        if self.timed_out:
            return "timed out"
        if self.exit_code is None:
            return "running"
        return f"exit {self.exit_code}"

    def to_json(self) -> dict:
        """The record for files handed around: no credential, in the environment or in any text."""
        hide = secret_values(self.spec.env)
        d = asdict(self)
        d["status"] = self.status
        d["spec"]["env"] = mask_env(self.spec.env)
        d["spec"]["command"] = [redact(a, hide) for a in self.spec.command]
        d["error"] = redact(self.error, hide)
        d["output_tail"] = [redact(ln, hide) for ln in self.output_tail]
        d["by_process"] = process_split(self)
        return d


def command_name(command: list[str]) -> str:
    """The program a run starts: the base name of its first word (``claude``)."""
    return command[0].rsplit("/", 1)[-1] if command else ""


def command_label(command: list[str]) -> str:
    """What the report calls the run's own process: Claude Code, or the command's name."""
    name = command_name(command)
    return "Claude Code" if name == "claude" else name


def is_command(program: str, command: list[str]) -> bool:
    """Whether a program is the run's command itself, not a tool it started (comm keeps 15
    characters of a longer name)."""
    name = command_name(command)
    return bool(name) and (program == name or (len(program) == 15 and name.startswith(program)))


def process_split(rec: RunRecord) -> dict:
    """Which hosts the run's command reached itself (``itself``: Claude Code, for the default
    run), which the tools it started (``tools``: a process of the run under another name),
    which processes not started by the run (``others``: already running in the container), and
    which had a process gone before the lookup (``unknown``). A host can be in several; hosts
    whose connections were not looked up are in none."""
    out: dict = {"command": command_label(rec.spec.command), "itself": [], "tools": [], "others": [], "unknown": []}
    for name, h in sorted(rec.hosts.items()):
        groups = set()
        for p in h.get("processes") or ():
            if not in_run(p.get("run") or "", rec.number):
                groups.add("others")
            else:
                groups.add("itself" if is_command(p.get("program") or "", rec.spec.command) else "tools")
        if h.get("process_unknown"):
            groups.add("unknown")
        for g in groups:
            out[g].append(name)
    return out


def hosts_during(engine: Engine, start: float, end: float) -> dict[str, dict]:
    """Hosts whose connections (or lookups) fall inside [start, end], with outcomes."""
    out: dict[str, dict] = {}
    for h in engine.host_list():
        conns = [c for c in h.conns if start <= c.first <= end]
        looked_up = h.queries and h.last_seen() >= start and h.first <= end
        if not conns and not looked_up:
            continue
        outcomes: dict[str, int] = {}
        for c in conns:
            outcomes[c.outcome] = outcomes.get(c.outcome, 0) + 1
        reached = bool(outcomes.get(CONNECTED) or outcomes.get(CLOSED))
        processes, unknown = _run_processes(conns)
        out[h.name] = {"connections": len(conns), "outcomes": outcomes, "reached": reached,
                       "blocked": bool(conns) and not reached, "via": sorted(h.via),
                       "ports": sorted({c.sport for c in conns}),
                       "processes": processes, "process_unknown": unknown}
    return out


COMMENT_PROGRAMS = 5   # programs named in a learned allowlist entry's comment, then "+N more"


def programs_comment(host: dict, rec: RunRecord) -> str:
    """For a learned allowlist entry: ``; programs: claude, curl (tool)``, the programs whose
    connections needed the host (``hosts_during``'s record), each cut to 32 characters. Raw:
    ``learned_allowlist`` makes the whole comment one escaped line."""
    parts: dict[str, None] = {}
    for p in host.get("processes") or ():
        prog = (p.get("program") or "?")[:32]
        if not in_run(p.get("run") or "", rec.number):
            prog += " (not started by this run)"
        elif not is_command(p.get("program") or "", rec.spec.command):
            prog += " (tool)"
        parts.setdefault(prog, None)
    names = list(parts)
    text = ", ".join(names[:COMMENT_PROGRAMS])
    if len(names) > COMMENT_PROGRAMS:
        text += f" +{len(names) - COMMENT_PROGRAMS} more"
    if host.get("process_unknown"):
        text += (", " if text else "") + "process unknown"
    return f"; programs: {text}" if text else ""


def _run_processes(conns: list) -> tuple[list[dict], int]:
    """The processes that opened these connections: program, parent chain and run tag, with
    connections (most first, at most CHAINS_KEPT), and how many had one gone before the lookup."""
    seen: dict[tuple[str, str, str], int] = {}
    unknown = 0
    for c in conns:
        p = c.proc
        if isinstance(p, ProcInfo):
            key = (p.program, p.chain(), p.run)
            seen[key] = seen.get(key, 0) + 1
        elif p == PROC_UNKNOWN:
            unknown += 1
    most = sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))[:CHAINS_KEPT]
    return [{"program": prog, "chain": chain, "run": run or None, "connections": n}
            for (prog, chain, run), n in most], unknown


@dataclass
class RunDiff:
    needed: list[str]        # reached in both runs
    stopped: list[str]       # reached in the first, blocked in the second
    appeared: list[str]      # tried only in the second
    gone: list[str]          # tried only in the first
    still_blocked: list[str]


def diff_runs(a: RunRecord, b: RunRecord) -> RunDiff:
    ta = {n: h for n, h in a.hosts.items() if h["connections"]}
    tb = {n: h for n, h in b.hosts.items() if h["connections"]}
    both = sorted(set(ta) & set(tb))
    return RunDiff(
        needed=[n for n in both if ta[n]["reached"] and tb[n]["reached"]],
        stopped=[n for n in both if ta[n]["reached"] and tb[n]["blocked"]],
        appeared=sorted(set(tb) - set(ta)),
        gone=sorted(set(ta) - set(tb)),
        still_blocked=[n for n in both if ta[n]["blocked"] and tb[n]["blocked"]],
    )
