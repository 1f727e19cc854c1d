"""Command line: ``egress-tui report``, ``egress-tui presets``.

Headless twins of what the screen does. Never imports Textual; errors are one line on
stderr with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
import time
from importlib import resources

from egress_tui import __version__
from egress_tui.core.allowlist import PRESETS, PRESET_EXAMPLES, AllowlistError, build, preset_entries
from egress_tui.core.engine import Engine, analyze_file
from egress_tui.core.proxy import ProxyConfig, ProxyError, from_urls
from egress_tui.core.safetext import safe_text
from egress_tui.wire.pcapfile import PcapError
from egress_tui.core.report import FORMATS, host_rows, iter_host_rows, meta_for, render, render_chunks

# The errors that end a command with one line, by module: the live capture, Docker, the firewall,
# the inspection and the exports are imported by the commands that use them (report --pcap does
# not), and an error of a module not imported cannot have been raised.
ONE_LINE_ERRORS = (("egress_tui.live.capture", "CaptureError"), ("egress_tui.live.containers", "DockerError"),
                   ("egress_tui.firewall.plan", "FirewallError"), ("egress_tui.inspection", "InspectionError"),
                   ("egress_tui.exports", "ExportError"), ("egress_tui.live.namespaces", "NamespaceError"))


def _one_line_error(e: BaseException) -> bool:
    if isinstance(e, (UserError, PcapError, AllowlistError, ProxyError)):
        return True
    return any(isinstance(e, getattr(sys.modules[mod], name))
               for mod, name in ONE_LINE_ERRORS if mod in sys.modules)


EXIT_ERROR = 2
EXIT_DENIED = 3


class UserError(Exception):
    """Something the user can fix; printed as one line."""


class StopSignals:
    """Ctrl-C, SIGTERM and SIGHUP (the terminal closed) as a request to stop (``event``):
    a command that owns an inspection then ends in order, its capture drained and its
    helpers removed, instead of dying half-way. Only the main thread can take signals."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.event = threading.Event()
        self._before: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._before[sig] = signal.signal(sig, self._request)
        return self

    def _request(self, signum, frame) -> None:
        self.event.set()

    def __exit__(self, *exc) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)


def say(line: str) -> None:
    print(f"egress-tui: {line}", file=sys.stderr)


def inspect_container(args):
    """The inspection of ``args.container`` (or of ``--pid``/``--netns``; one-line errors), its
    notices said on stderr."""
    from egress_tui.inspection import open_inspection
    insp = open_inspection(args.container, method=args.method, helper_image=args.helper_image,
                           proxy=getattr(args, "proxy_config", None), engine=getattr(args, "engine", "auto"),
                           pid=getattr(args, "pid", None), netns=getattr(args, "netns", None))
    for line in insp.notices:
        say(line)
    return insp


def demo_capture() -> str:
    return str(resources.files("egress_tui") / "data" / "demo.pcap")


ENGINE_HELP = ("the container engine: docker, podman, or auto (default: every engine that answers; the one that "
               "knows the container)")
PID_HELP = "any process's network namespace instead of a container (root; e.g. a PID from crictl inspect)"
NETNS_HELP = "a network namespace by path or ip-netns name (/run/netns/NAME) instead of a container (root)"


def _target_args(p: argparse.ArgumentParser, group=None) -> None:
    """--engine, and --pid/--netns: what to watch when it is no container name."""
    p.add_argument("--engine", choices=("auto", "docker", "podman"), default="auto", help=ENGINE_HELP)
    g = group or p
    g.add_argument("--pid", type=int, metavar="PID", help=PID_HELP)
    g.add_argument("--netns", metavar="PATH", help=NETNS_HELP)


PROXY_HELP = ("the proxy the capture's traffic went through, e.g. http://squid:3128 (repeatable; a login in it is "
              "never shown); a container's own HTTP(S)_PROXY/NO_PROXY are read from the engine without it")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="egress-tui",
        description="See every host a container talks to, and check it against an allowlist.")
    p.add_argument("--version", action="version", version=f"egress-tui {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("report", help="list the hosts reached in a capture file",
                       description="List every host reached in a pcap/pcapng capture: TLS and QUIC "
                                   "SNI, HTTP Host, DNS names; with verdicts against an allowlist.")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--pcap", metavar="FILE", help="capture file (pcap or pcapng; - for stdin)")
    src.add_argument("--demo", action="store_true", help="use the demo capture shipped with egress-tui")
    src.add_argument("--container", metavar="NAME", help="capture a running container live instead")
    _target_args(r, src)
    r.add_argument("--duration", type=float, metavar="SECONDS",
                   help="with --container: stop after this long (default: until Ctrl-C)")
    r.add_argument("--method", choices=("auto", "netns", "helper"), default="auto",
                   help="with --container: how to capture (see egress-tui --help)")
    r.add_argument("--helper-image", metavar="IMAGE", help="with --method helper: image with tcpdump")
    r.add_argument("--save-pcap", metavar="FILE",
                   help="with --container: also write the captured packets to FILE (pcapng: one "
                        "interface per origin, the firewall's drops included)")
    r.add_argument("--allow", metavar="FILE", action="append", default=[],
                   help="allowlist file (repeatable)")
    r.add_argument("--preset", metavar="NAME[:REGION]", action="append", default=[],
                   help="allowlist preset, e.g. anthropic, bedrock:ap-northeast-1 (repeatable)")
    r.add_argument("--proxy", metavar="URL", action="append", default=[], help=PROXY_HELP)
    r.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    r.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    r.add_argument("--fail-on-denied", action="store_true",
                   help=f"exit {EXIT_DENIED} if any host outside the allowlist was contacted")

    sub.add_parser("presets", help="list the allowlist presets and their hosts")

    fw = sub.add_parser("firewall", help="apply, remove or show a container's egress firewall",
                        description="An iptables + ipset egress firewall (IPv4 and IPv6) applied from the "
                                    "host into the container's network namespace. Needs root.")
    fsub = fw.add_subparsers(dest="action", metavar="ACTION", required=True)
    ap = fsub.add_parser("apply", help="allow only the allowlist (or only the proxy); drop (or reject) "
                                       "everything else")
    ap.add_argument("container", nargs="?", help="container name or id (or --pid / --netns)")
    ap.add_argument("--allow", metavar="FILE", action="append", default=[], help="allowlist file (repeatable)")
    ap.add_argument("--preset", metavar="NAME[:REGION]", action="append", default=[],
                    help="allowlist preset (repeatable)")
    _proxy_args(ap)
    ap.add_argument("--reject", action="store_true", help="reject instead of drop, so clients fail fast")
    ap.add_argument("--no-verify", action="store_true", help="skip the reachability checks after apply")
    rm = fsub.add_parser("remove", help="remove what egress-tui added, and only that")
    rm.add_argument("container", nargs="?")
    st = fsub.add_parser("status", help="is it on, in which mode, with which allowlist or proxies, how many "
                                        "packets dropped")
    st.add_argument("container", nargs="?")
    st.add_argument("--format", choices=("text", "json"), default="text")
    for p_ in (ap, rm, st):
        _target_args(p_)
        p_.add_argument("--method", choices=("auto", "netns", "helper"), default="auto",
                        help="from the host (netns, root) or through a helper container (helper)")
        p_.add_argument("--helper-image", metavar="IMAGE",
                        help="helper image with iptables, ip6tables and ipset (for --method helper)")
    sc = fsub.add_parser("script", help="write init-firewall.sh: the same firewall as a standalone script",
                         description="A bash script with the same chain, sets and rules as firewall apply, "
                                     "to run inside a container (root, NET_ADMIN, iptables and ipset there).")
    sc.add_argument("--allow", metavar="FILE", action="append", default=[], help="allowlist file (repeatable)")
    sc.add_argument("--preset", metavar="NAME[:REGION]", action="append", default=[], help="preset")
    sc.add_argument("--reject", action="store_true", help="reject instead of drop")
    _proxy_args(sc)
    sc.add_argument("--container", help="take the DNS resolvers to allow (and with --proxy-only the proxies) "
                                        "from this container")
    _target_args(sc)
    sc.add_argument("-o", "--output", metavar="FILE", default="-", help="where to write it (default: stdout)")

    _export_args(sub)

    ln = sub.add_parser("learn", help="run a command in a container while capturing; list what it reached",
                        description="Run CMD (default: claude -p hello) inside CONTAINER while capturing "
                                    "its traffic, then list the hosts the run reached.",
                        usage="egress-tui learn CONTAINER [options] [-- CMD...]")
    ln.add_argument("container", nargs="?")
    ln.add_argument("--provider", choices=("anthropic", "bedrock", "vertex", "none"), default="anthropic",
                    help="environment preset for Claude Code (credentials pass through from yours)")
    ln.add_argument("--region", help="AWS/Google region for bedrock/vertex (default ap-northeast-1/us-east5)")
    ln.add_argument("--model", help="ANTHROPIC_MODEL for the run")
    ln.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the command (repeatable)")
    ln.add_argument("--timeout", type=float, default=120.0, help="stop the command after this long (s)")
    ln.add_argument("--allow", metavar="FILE", action="append", default=[], help="allowlist file for verdicts")
    ln.add_argument("--preset", metavar="NAME[:REGION]", action="append", default=[], help="allowlist preset")
    ln.add_argument("--write-allowlist", metavar="FILE",
                    help="write the minimal allowlist: every host the run connected to or tried to")
    ln.add_argument("--format", choices=FORMATS, default="table")
    ln.add_argument("--session-report", metavar="FILE",
                    help="write the session report for the security team (.md: Markdown, else JSON)")
    ln.add_argument("--quiet", action="store_true", help="do not echo the command's output")
    ln.add_argument("--method", choices=("auto", "netns", "helper"), default="auto",
                    help="capture from the host (netns, root, local engine) or through a helper container")
    ln.add_argument("--helper-image", metavar="IMAGE", help="with --method helper: image with tcpdump")
    _target_args(ln)
    ln.add_argument("cmd", nargs="*", help="the command (after --)")
    return p


def _export_args(sub) -> None:
    from egress_tui.exports import FORMATS
    ex = sub.add_parser(
        "export", help="write the allowlist for an enforcement tool: squid, nftables, aws-network-firewall, "
                       "cilium, domains, harden-runner",
        usage="egress-tui export FORMAT (--allow FILE | --preset NAME[:REGION] | --from-report FILE.json)... "
              "[options] [-o FILE]",
        description="The allowlist (files, presets) or what a report saw, in the format an enforcement tool "
                    "reads. Entries a format cannot express exactly are listed on stderr and in a comment.")
    ex.add_argument("format", choices=list(FORMATS), metavar="FORMAT",
                    help="; ".join(f"{k}: {v[0]}" for k, v in FORMATS.items()))
    ex.add_argument("--allow", metavar="FILE", action="append", default=[], help="allowlist file (repeatable)")
    ex.add_argument("--preset", metavar="NAME[:REGION]", action="append", default=[],
                    help="allowlist preset, e.g. anthropic, bedrock:ap-northeast-1 (repeatable)")
    ex.add_argument("--from-report", metavar="FILE.json",
                    help="the hosts a JSON report or session report saw: the allowed ones (see --all-seen)")
    ex.add_argument("--all-seen", action="store_true",
                    help="with --from-report: every host connected to (blocked attempts included), not only "
                         "the allowed ones")
    ex.add_argument("-o", "--output", metavar="FILE", default="-", help="where to write it (default: stdout)")
    ex.add_argument("--ssl-bump", action="store_true",
                    help="squid: also check the TLS SNI (peek and splice; Squid built with OpenSSL)")
    ex.add_argument("--suricata", action="store_true",
                    help="aws-network-firewall: Suricata-compatible rule strings instead of a domain list")
    ex.add_argument("--selector", metavar="KEY=VALUE", action="append", default=[],
                    help="cilium: the endpoint labels the policy applies to (repeatable)")
    ex.add_argument("--name", help="cilium, aws-network-firewall: the policy or rule group name")
    ex.add_argument("--capacity", type=int, metavar="N",
                    help="aws-network-firewall: rule group capacity (default: what the list needs)")
    ex.add_argument("--resolver", metavar="ADDR", action="append", default=[],
                    help="nftables: the DNS server to allow and to resolve the names through (repeatable; "
                         "default: this machine's /etc/resolv.conf)")
    ex.add_argument("--reject", action="store_true", help="nftables: reject instead of drop")
    ex.add_argument("--container", metavar="NAME",
                    help="nftables: take the resolvers from this container and look the names up inside it, "
                         "as firewall apply does (root, local engine)")


def _proxy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--proxy-only", action="store_true",
                   help="lock the container to its proxy: allow only the proxies' addresses and ports (and "
                        "DNS to its resolvers), from the container's HTTP(S)_PROXY/ALL_PROXY or --proxy")
    p.add_argument("--proxy", metavar="URL", action="append", default=[],
                   help="with --proxy-only: the proxy to allow, e.g. http://squid:3128 (repeatable; replaces "
                        "the container's settings)")


SUBCOMMANDS = ("report", "presets", "firewall", "learn", "export")


def _tui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="egress-tui",
        usage="egress-tui [CONTAINER | --pid PID | --netns PATH] [options]\n"
              "       egress-tui {report,presets,firewall,learn} ...",
        description="Watch, live, every host a Docker container talks to, colored by an allowlist. "
                    "With no CONTAINER, pick one from the running containers. "
                    "Headless commands: egress-tui report --help, egress-tui presets.")
    p.add_argument("container", nargs="?", help="container name or id (prefix)")
    p.add_argument("--version", action="version", version=f"egress-tui {__version__}")
    p.add_argument("--pcap", metavar="FILE", help="replay a capture file instead of attaching")
    p.add_argument("--demo", action="store_true", help="replay the demo capture shipped with egress-tui")
    p.add_argument("--speed", type=float, default=1.0, metavar="N",
                   help="replay N times faster than recorded (0: as fast as possible)")
    p.add_argument("--allow", metavar="FILE", action="append", default=[], help="allowlist file (repeatable)")
    p.add_argument("--preset", metavar="NAME[:REGION]", action="append", default=[],
                   help="allowlist preset, e.g. anthropic, bedrock:ap-northeast-1 (repeatable)")
    p.add_argument("--method", choices=("auto", "netns", "helper"), default="auto",
                   help="capture from the host in the container's namespace (netns, needs root), "
                        "or through a helper container (helper); default: netns when possible")
    p.add_argument("--helper-image", metavar="IMAGE",
                   help="image with tcpdump for --method helper (default: nicolaka/netshoot)")
    p.add_argument("--proxy", metavar="URL", action="append", default=[], help=PROXY_HELP)
    _target_args(p)
    return p


def parse_subcommand(argv: list[str]) -> argparse.Namespace:
    """Parse a headless command. ``learn CONTAINER [options] -- CMD...``: everything after the
    first ``--`` is the command, taken as is (its own options included)."""
    if argv[0] == "learn" and "--" in argv:
        cut = argv.index("--")
        args = _parser().parse_args(argv[:cut])
        if args.cmd:
            _parser().error(f"learn: give the command after -- only (got {' '.join(args.cmd)} before it)")
        args.cmd = argv[cut + 1:]
        return args
    return _parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in SUBCOMMANDS:
            args = parse_subcommand(argv)
            if args.command == "report":
                return cmd_report(args)
            if args.command == "firewall":
                return cmd_firewall(args)
            if args.command == "learn":
                return cmd_learn(args)
            if args.command == "export":
                return cmd_export(args)
            return cmd_presets()
        return cmd_tui(_tui_parser().parse_args(argv))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # e.g. `egress-tui report | head`: not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        if not _one_line_error(e):
            raise
        print(f"egress-tui: {e}", file=sys.stderr)
        return EXIT_ERROR


def proxy_option(args) -> ProxyConfig | None:
    """``--proxy URL`` (repeatable), checked: None when not given; ProxyError (one line, no
    credential) for a URL that is not a proxy."""
    args.proxy_config = from_urls(args.proxy) if getattr(args, "proxy", None) else None
    return args.proxy_config


def cmd_report(args) -> int:
    allowlist = build(args.allow, args.preset)
    proxy = proxy_option(args) or ProxyConfig()
    saved = None
    live = args.container or args.pid is not None or args.netns
    if live:
        (engine, saved, proxy), path = live_capture(args), live_label(args)
    elif args.demo:
        path = demo_capture()
    elif args.pcap:
        path = args.pcap
    else:
        raise UserError("report needs a capture: --pcap FILE, --container NAME, --pid PID, --netns PATH, or --demo")
    if not live:
        if os.path.isdir(path):
            raise UserError(f"{path} is a directory, not a capture file")
        engine = Engine()
        if proxy:
            engine.set_proxy_config(proxy)  # as inspection.set_engine_proxy, without importing the live side
        # The analysis makes objects by the hundred thousand and no garbage in cycles
        # (tests/test_fastpath.py checks): the cyclic collector, walking them all again and
        # again, would take about a tenth of the time.
        gc.disable()
        try:
            engine = analyze_file(path, engine)  # a file, -, a FIFO or <(cmd): opened and read once
        finally:
            gc.enable()
    meta = meta_for("demo capture" if args.demo else path, engine, allowlist, proxy)
    if saved:
        meta["saved_pcap"] = saved  # what the evidence file holds, per interface
    fronted: list = []
    denied: list = []

    def noted(rows):
        for r in rows:
            if r.fronting:
                fronted.append(r)
            if r.allowed is False and r.contacted:
                denied.append(r)
            yield r

    # a JSON report is written a host at a time, each row made as it is written
    chunks = render_chunks(noted(iter_host_rows(engine, allowlist)), args.format, meta)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.writelines(chunks)
        except OSError as e:
            raise UserError(f"cannot write {args.output}: {e.strerror}") from None
    else:
        sys.stdout.writelines(chunks)
        sys.stdout.flush()
    if fronted:
        print(f"egress-tui: {len(fronted)} host(s) reached through a proxy tunnel that asked for another name "
              "(fronting): " + "; ".join(safe_text(r.fronting[0], 120) for r in fronted[:5])
              + (" ..." if len(fronted) > 5 else ""), file=sys.stderr)
    if args.fail_on_denied and denied:
        denied = [safe_text(r.name, 64) + (f" (asked of the proxy as {safe_text(', '.join(r.targets), 80)})"
                                           if r.fronting else "")
                  for r in denied]
        print(f"egress-tui: {len(denied)} host(s) outside the allowlist were contacted: "
              + ", ".join(denied[:10]) + (" ..." if len(denied) > 10 else ""), file=sys.stderr)
        return EXIT_DENIED
    return 0


def cmd_tui(args) -> int:
    """The live inspector. Everything that can fail is checked before the screen is drawn."""
    from egress_tui.core.allowlist import build as build_allowlist
    if args.speed < 0:
        raise UserError("--speed must be 0 (as fast as possible) or a positive factor")
    pcap = demo_capture() if args.demo else args.pcap
    namespace = args.pid is not None or args.netns is not None
    if sum(map(bool, (pcap, args.container, namespace))) > 1 or (args.pid is not None and args.netns):
        raise UserError("give one of CONTAINER, --pid, --netns, --pcap/--demo")
    build_allowlist(args.allow, args.preset)
    proxy = proxy_option(args)
    pcap_input = None
    if pcap:
        if os.path.isdir(pcap):
            raise UserError(f"{pcap} is a directory, not a capture file")
        pcap_input = open_replay(pcap)  # unreadable or not a capture: fail now, in one line
    engines = None
    if namespace:
        from egress_tui.inspection import open_inspection
        open_inspection(pid=args.pid, netns=args.netns, method=args.method).close()  # fail now, in one line
    elif not pcap:
        from egress_tui.live.engines import connect, locate
        engines = connect(args.engine)
        if args.method == "netns" and os.geteuid() != 0:
            raise UserError("--method netns needs root (it enters the container's network namespace); "
                            "run with sudo, or use --method helper")
        if args.container:
            eng, info, _ = locate(args.container, engines)
            eng.choose_method(info, args.method)  # an unprovable netns: refused before the screen
            engines = [eng]
    if not sys.stdout.isatty():
        raise UserError("the live inspector needs a terminal; without one use egress-tui report")
    from egress_tui.ui.app import AppConfig, create_app  # Textual is imported only for the screen
    app = create_app(AppConfig(container=args.container, pcap=pcap, pcap_input=pcap_input, speed=args.speed,
                               allow_files=args.allow, presets=args.preset, method=args.method,
                               helper_image=args.helper_image, engines=engines, pid=args.pid, netns=args.netns,
                               proxy=proxy, handle_signals=True))
    try:
        app.run()
    finally:
        app.close_inspection()  # already closed on every way out the screen knows; this is the last
    return app.return_code or 0


def open_replay(pcap: str, stdin=None):
    """The TUI's --pcap, opened once and checked (CaptureInput). With ``-`` the capture is
    stdin, so the screen takes its keys from /dev/tty instead: fd 0 becomes the terminal."""
    from egress_tui.wire.pcapfile import CaptureInput
    if pcap != "-":
        return CaptureInput(pcap)
    if stdin is None:
        if sys.stdin.isatty():
            raise UserError("--pcap - reads the capture from stdin, which is the terminal: pipe a capture "
                            "in (egress-tui --pcap - < FILE), or give a file")
        try:
            tty = os.open("/dev/tty", os.O_RDWR)
        except OSError:
            raise UserError("--pcap - needs a terminal for the screen (/dev/tty); without one use "
                            "egress-tui report --pcap -") from None
        stdin = os.fdopen(os.dup(0), "rb")
        os.dup2(tty, 0)
        os.close(tty)
    return CaptureInput("-", stdin=stdin)


def live_label(args) -> str:
    """What a live report says it captured."""
    if args.pid is not None:
        return f"pid {args.pid}"
    if args.netns:
        return f"netns {safe_text(args.netns, 80)}"
    return f"container {args.container}"


def live_capture(args):
    """Capture a container until --duration elapses, Ctrl-C, SIGTERM or SIGHUP; then drain
    the capture and remove what it started. Returns the engine, with --save-pcap what the
    saved file holds (PcapngRecorder.summary), and the proxy settings the capture went by."""
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be a positive number of seconds")
    with StopSignals() as stop, inspect_container(args) as insp:
        try:
            cap = insp.start_capture(record=args.save_pcap)
        except OSError as e:
            raise UserError(f"cannot write {args.save_pcap}: {e.strerror}") from None
        insp.wait_ready()
        if not cap.is_alive() and cap.error:
            raise UserError(cap.error)
        say(f"capturing {insp.target} ({insp.method})"
            + (f" for {args.duration:g} s" if args.duration else "; Ctrl-C to stop")
            + (f"; {insp.proxy.summary()}" if insp.proxy else ""))
        refused = insp.procs_refusal
        if refused:
            say(f"no process attribution: {refused}")
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.event.wait(0.2):
            if not cap.is_alive() or (deadline is not None and time.monotonic() >= deadline):
                break
        insp.stop_capture()
        if insp.procs_refusal and insp.procs_refusal != refused:  # the helper's agent died meanwhile
            say(f"no process attribution from then on: {insp.procs_refusal}")
        if args.save_pcap and insp.recording_summary is not None:
            say(f"saved {insp.recording_description} to {args.save_pcap}")
        if cap.error:
            raise UserError(cap.error)
        return insp.engine, insp.recording_summary, insp.proxy


def proxy_choice(args):
    """For ``--proxy-only``: the proxies given with ``--proxy`` (a ProxyConfig), or None to take
    the container's. One-line errors for what cannot go together, before Docker is asked."""
    if args.proxy and not args.proxy_only:
        raise UserError("--proxy goes with --proxy-only (the proxy that mode lets through)")
    if not args.proxy_only:
        return None
    if args.allow or args.preset:
        raise UserError("--proxy-only lets only the proxy through, so an allowlist has nothing to do there: "
                        "drop --allow/--preset (what goes through the proxy is the proxy's to decide)")
    return from_urls(args.proxy) if args.proxy else None


def no_proxy_error(target: str) -> UserError:
    return UserError(f"{target} has no proxy configured: set HTTPS_PROXY (or HTTP_PROXY, ALL_PROXY) on the "
                     "container, or pass --proxy URL")


def cmd_firewall(args) -> int:
    if args.action == "script":
        return cmd_firewall_script(args)
    allowlist = proxy = None
    if args.action == "apply":
        proxy = proxy_choice(args)
        if not args.proxy_only:
            allowlist = build(args.allow, args.preset)
            if not allowlist.entries:
                raise UserError("firewall apply needs an allowlist: --allow FILE and/or --preset NAME "
                                "(or --proxy-only)")
    need_target(args, f"firewall {args.action}")
    # signals wait for the action: a firewall half applied, or a helper left behind, is worse
    with StopSignals(), inspect_container(args) as insp:
        if args.action == "apply" and args.proxy_only and proxy is None:
            proxy = insp.proxy
            if not proxy.endpoints and not proxy.problems:
                raise no_proxy_error(insp.target)
        return _firewall_action(args, insp, allowlist, proxy)


def need_target(args, what: str) -> None:
    """Exactly one target: a container, --pid or --netns."""
    given = [x for x in (args.container, args.pid, args.netns) if x is not None]
    if len(given) != 1:
        raise UserError(f"{what} needs one target: a CONTAINER name, --pid PID or --netns PATH"
                        + (f" (got {len(given)})" if given else ""))


def _firewall_action(args, insp, allowlist, proxy=None) -> int:
    from egress_tui.firewall.plan import resolver_warning
    name = insp.target
    if args.action == "remove":
        removed = insp.guard.firewall.remove()
        print(f"firewall removed from {name}" if removed else f"no egress-tui firewall on {name}")
        return 0
    if args.action == "status":
        st = insp.firewall_status()
        if args.format == "json":
            import json as _json
            print(_json.dumps({"container": name, "on": st.on, "partial": st.partial, "mode": st.mode,
                               "proxies": st.proxies, "allowlist": st.allowlist,
                               "dropped_packets": st.dropped_packets, "set_entries": st.set_entries,
                               "applied_at": st.applied_at}, indent=2))
            return 0
        state = "ON" if st.on else ("PARTIAL (run firewall remove)" if st.partial else "off")
        print(f"firewall on {name}: {state}")
        if st.on and st.mode == "proxy":
            print(f"  mode: proxy only: {', '.join(st.proxies) or '-'} (and DNS to the resolvers)")
        elif st.on:
            print(f"  mode: {'allowlist' if st.mode else 'unknown (not applied by egress-tui: a script?)'}")
            print(f"  allowlist: {', '.join(st.allowlist) or '-'}")
        if st.on:
            print(f"  addresses in sets: IPv4 {st.set_entries[4]}, IPv6 {st.set_entries[6]}")
            print(f"  dropped: IPv4 {st.dropped_packets[4]} packets, IPv6 {st.dropped_packets[6]} packets")
        return 0
    plan, checks = insp.apply_firewall(allowlist, args.reject, check=not args.no_verify, proxy=proxy)
    resolvers = insp.resolvers or []
    if plan.mode == "proxy":
        return _proxy_applied(name, plan, checks, proxy, resolvers)
    print(f"firewall applied to {name}: {len(plan.allowlist)} entries, "
          f"{len(plan.nets[4]) + len(plan.ports[4]) // 2} IPv4 and {len(plan.nets[6]) + len(plan.ports[6]) // 2} "
          f"IPv6 addresses; DNS only to {', '.join(resolvers) or 'no resolver'}")
    trouble = resolver_warning(insp.resolvers or [])
    if trouble:
        print(f"  warning: {trouble}", file=sys.stderr)
    for host in plan.unresolved:
        print(f"  warning: {host} did not resolve; it stays blocked until egress-tui sees it resolve",
              file=sys.stderr)
    for w in plan.wildcards:
        print(f"  note: {w} is enforced from DNS answers seen while egress-tui captures", file=sys.stderr)
    for c in checks:
        mark = "ok" if c.ok else "FAILED"
        print(f"  check {c.what:7} {c.name} {c.address}:{c.port}: {c.result} [{mark}]")
    return EXIT_ERROR if any(not c.ok for c in checks) else 0


def _proxy_applied(name: str, plan, checks, proxy, resolvers: list[str]) -> int:
    from egress_tui.firewall.plan import is_loopback, resolver_warning
    where = []
    for ep in proxy.endpoints:
        addrs = plan.resolved.get(ep.host, [])
        where.append(f"{ep.url} ({', '.join(addrs)})" if addrs else ep.url)
    print(f"firewall applied to {name}: proxy only: {'; '.join(where)}; DNS only to "
          f"{', '.join(resolvers) or 'no resolver'}; everything else is blocked")
    trouble = resolver_warning(resolvers)
    if trouble:
        print(f"  warning: {trouble}", file=sys.stderr)
    direct = [h for h in proxy.no_proxy if h != "*" and not is_loopback(h.split("/")[0].lstrip("*."))]
    if direct:
        shown = ", ".join(direct[:6]) + (f" +{len(direct) - 6}" if len(direct) > 6 else "")
        print(f"  note: {proxy.no_proxy_var or 'NO_PROXY'} sends {shown} direct: proxy-only blocks them",
              file=sys.stderr)
    for c in checks:
        mark = "ok" if c.ok else "FAILED"
        at = f" {c.address}:{c.port}" if c.port else ""
        print(f"  check {c.what:7} {c.name}{at}: {c.result} [{mark}]")
        if c.what == "allowed" and c.result != "connected":
            print(f"  warning: the proxy at {c.address}:{c.port} did not answer ({c.result}): under proxy-only "
                  "nothing in the container can get out until it does", file=sys.stderr)
    return EXIT_ERROR if any(not c.ok for c in checks) else 0


def cmd_learn(args) -> int:
    """Capture while a command runs in the container; print the hosts the run reached."""
    from egress_tui.core.runs import RunSpec, provider_env
    allowlist = build(args.allow, args.preset)
    env = provider_env(args.provider, args.region, args.model)
    for kv in args.env:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise UserError(f"--env wants KEY=VALUE, got '{kv}'")
        env[k] = v
    if args.timeout <= 0:
        raise UserError("--timeout must be a positive number of seconds")
    if args.pid is not None or args.netns:
        from egress_tui.inspection import RERUN_NEEDS_ENGINE
        raise UserError(f"learn: {RERUN_NEEDS_ENGINE}")
    if not args.container:
        raise UserError("learn needs the CONTAINER to run the command in")
    spec = RunSpec(command=args.cmd or ["claude", "-p", "hello"], provider=args.provider,
                   region=args.region or "", env=env, timeout=args.timeout)
    with StopSignals() as stop, inspect_container(args) as insp:
        info = insp.container
        cap = insp.start_capture()
        # the command's first packet must find the capture listening
        if not insp.wait_ready():
            state = getattr(insp.source, "state", "")
            raise UserError(cap.error or f"the capture of {info.name} did not start"
                            + (f" ({state})" if state else ""))
        record = insp.new_run(spec)
        echo = ((lambda line: None) if args.quiet
                else (lambda line: print(f"  | {safe_text(line)}", file=sys.stderr)))
        run_proxy = insp.run_proxy(spec)  # the container's own, unless -e sets one
        say(f"running {spec.describe()} in {info.name} ({insp.method}), up to {spec.timeout:g} s"
            + (f"; {run_proxy.summary()}" if run_proxy else ""))
        insp.execute(record, echo, stop.event)
        if record.error:
            raise UserError(record.error)
        insp.stop_capture()
        if cap.error:
            raise UserError(cap.error)
        fw_state = insp.firewall_state() if args.session_report else None
        engine = insp.engine
    record.firewall = bool(fw_state and fw_state.get("on"))
    rows = [r for r in host_rows(engine, allowlist) if r.name in record.hosts]
    say(f"{record.status}; {len(rows)} host(s)")
    sys.stdout.write(render(rows, args.format, {"source": f"learn {info.name}: {spec.describe()}",
                                                "proxy": insp.proxy.to_json()}))
    if args.write_allowlist:
        from egress_tui.core.allowlist import learned_allowlist
        from egress_tui.core.runs import programs_comment
        # names come from the container: only valid host names, exact, ever reach the file;
        # the comment names the programs that needed each (escaped, one line)
        minimal, skipped = learned_allowlist(
            (name, f"{'reached' if h['reached'] else 'tried, blocked'} by {' '.join(spec.command)} "
                   f"[{spec.provider}]{programs_comment(h, record)}")
            for name, h in record.hosts.items() if h["connections"])
        for line in skipped:
            say(f"left out of the allowlist: {line}")
        try:
            with open(args.write_allowlist, "w", encoding="utf-8") as f:
                f.write(minimal.to_text())
        except OSError as e:
            raise UserError(f"cannot write {args.write_allowlist}: {e.strerror}") from None
        say(f"wrote {len(minimal.entries)} entries to {args.write_allowlist}")
    if args.session_report:
        from egress_tui.core.evidence import session_data, tool_versions, write_session
        if fw_state and fw_state.get("on") is None:
            fw_state = None  # its status could not be read: the report says nothing rather than guess
        data = session_data(source=f"learn {info.name}", container={"name": info.name, "id": info.id,
                            "image": info.image, "networks": info.networks}, rows=rows, runs=[record],
                            allowlist=[e.text() for e in allowlist.entries], firewall=fw_state,
                            versions=tool_versions(), proxy=insp.proxy.to_json())
        try:
            write_session(args.session_report, data)
        except OSError as e:
            raise UserError(f"cannot write {args.session_report}: {e.strerror}") from None
        say(f"wrote the session report to {args.session_report}")
    return 0


def cmd_firewall_script(args) -> int:
    from egress_tui.firewall.script import render_init_script, render_proxy_script
    proxy = proxy_choice(args)
    allowlist = None
    if not args.proxy_only:
        allowlist = build(args.allow, args.preset)
        if not allowlist.entries:
            raise UserError("firewall script needs an allowlist: --allow FILE and/or --preset NAME "
                            "(or --proxy-only)")
    elif proxy is None and not args.container:
        raise UserError("firewall script --proxy-only needs the proxy: --proxy URL, or --container NAME to take "
                        "it from the container's HTTPS_PROXY")
    resolvers = None
    where = "any container"
    if args.container or args.pid is not None or args.netns:
        need_target(args, "firewall script")
        from egress_tui.inspection import open_inspection
        with open_inspection(args.container, engine=args.engine, pid=args.pid, netns=args.netns) as insp:
            if insp.resolvers is None:
                raise UserError(insp.notices[-1] if insp.notices else "cannot read the container's DNS settings")
            resolvers, where = insp.resolvers, insp.target
            if args.proxy_only and proxy is None:
                proxy = insp.proxy
                if not proxy.endpoints and not proxy.problems:
                    raise no_proxy_error(where)
    if args.proxy_only:
        text = render_proxy_script(proxy, reject=args.reject, resolvers=resolvers,
                                   generated_by=f"egress-tui {__version__} for {where}, proxy only")
    else:
        text = render_init_script(allowlist, reject=args.reject, resolvers=resolvers,
                                  generated_by=f"egress-tui {__version__} for {where}")
    if args.output == "-":
        sys.stdout.write(text)
    else:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(args.output, 0o755)
        except OSError as e:
            raise UserError(f"cannot write {args.output}: {e.strerror}") from None
        print(f"egress-tui: wrote {args.output}", file=sys.stderr)
    return 0


# Options that belong to one export format: (option, attribute, format)
_EXPORT_ONLY = [("--ssl-bump", "ssl_bump", "squid"), ("--suricata", "suricata", "aws-network-firewall"),
                ("--selector", "selector", "cilium"), ("--capacity", "capacity", "aws-network-firewall"),
                ("--resolver", "resolver", "nftables"), ("--reject", "reject", "nftables"),
                ("--container", "container", "nftables")]


def cmd_export(args) -> int:
    """The allowlist, or what a report saw, in an enforcement tool's format."""
    from egress_tui.exports import Options, render
    from egress_tui.exports.sources import combine, from_report
    for opt, attr, fmt in _EXPORT_ONLY:
        if getattr(args, attr) not in (False, None, []) and args.format != fmt:
            raise UserError(f"{opt} goes with export {fmt}, not {args.format}")
    if args.name and args.format not in ("cilium", "aws-network-firewall"):
        raise UserError(f"--name goes with export cilium or aws-network-firewall, not {args.format}")
    if args.all_seen and not args.from_report:
        raise UserError("--all-seen goes with --from-report FILE.json (it picks which of the report's hosts)")
    if not (args.allow or args.preset or args.from_report):
        raise UserError("export needs what to export: --allow FILE, --preset NAME, and/or --from-report FILE.json")
    allowlist = build(args.allow, args.preset)
    report = from_report(args.from_report, args.all_seen) if args.from_report else None
    source = combine(allowlist, report)
    options = Options(ssl_bump=args.ssl_bump, suricata=args.suricata, reject=args.reject, name=args.name or "",
                      capacity=args.capacity)
    if args.format == "cilium":
        from egress_tui.exports.cilium import parse_selector
        options.selector = parse_selector(args.selector)
    if args.format == "nftables" and args.container:
        if args.resolver:
            raise UserError("give --container (its resolvers) or --resolver, not both")
        options.resolvers, options.resolved = container_lookups(source.allowlist, args.container)
    elif args.format == "nftables":
        options.resolvers, options.resolved = export_lookups(source.allowlist, args.resolver)
    export = render(args.format, source, options)
    for note in export.notes:
        say(note.line())
    if args.output == "-":
        sys.stdout.write(export.text)
        sys.stdout.flush()
    else:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(export.text)
        except OSError as e:
            raise UserError(f"cannot write {args.output}: {e.strerror}") from None
        say(f"wrote {args.format} to {args.output}: {len(source.entries)} entries"
            + (f", {len(export.notes)} not exactly as listed (above)" if export.notes else ""))
    return 0


def container_lookups(allowlist, container: str) -> tuple[list[str], dict]:
    """nftables --container: the container's resolvers, and the names looked up inside it."""
    from egress_tui.exports.nftables import names_to_resolve
    from egress_tui.inspection import open_inspection
    with open_inspection(container, method="netns") as insp:
        if not insp.can_look_up():
            raise UserError(insp.notices[-1] if insp.notices and insp.resolvers is None else
                            f"cannot look names up in {insp.container.name}: needs root on the container's host "
                            "(or pass --resolver ADDR and export where the rules will apply)")
        return list(insp.resolvers or []), insp.look_up(names_to_resolve(allowlist))


def export_lookups(allowlist, given: list[str]) -> tuple[list[str], dict]:
    """nftables: the resolvers to allow (``--resolver``, checked, or this machine's) and the
    allowlist's names looked up through them now."""
    import ipaddress
    from egress_tui.exports.nftables import resolve, system_resolvers
    resolvers = []
    for r in given:
        try:
            resolvers.append(str(ipaddress.ip_address(r)))
        except ValueError:
            raise UserError(f"--resolver {safe_text(r, 60)}: not an IP address") from None
    if not given:
        resolvers = system_resolvers()
        if not resolvers:
            say("no nameserver in /etc/resolv.conf: names are not resolved and DNS is blocked; pass --resolver ADDR")
    return resolvers, resolve(allowlist, resolvers)


def cmd_presets() -> int:
    for name, (_fn, arg, desc) in PRESETS.items():
        spec = f"{name}:{arg}" if arg else name
        example = f"{name}:{PRESET_EXAMPLES[name]}" if arg else name
        print(f"{spec}  {desc}")
        for e in preset_entries(example):
            print(f"    {e.text():<45} # {e.comment}")
        if arg:
            print(f"    (shown for {example})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
