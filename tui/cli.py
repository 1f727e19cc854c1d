"""Command line: ``egress-tui report``, ``egress-tui presets``.

Headless twins of what the screen does. Never imports Textual; errors are one line on
stderr with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

from . import __version__
from .allowlist import PRESETS, PRESET_EXAMPLES, AllowlistError, build, preset_entries
from .engine import analyze_file
from .pcapfile import PcapError
from .report import FORMATS, host_rows, meta_for, render

EXIT_ERROR = 2
EXIT_DENIED = 3


class UserError(Exception):
    """Something the user can fix; printed as one line."""


def demo_capture() -> str:
    return str(resources.files("tui") / "data" / "demo.pcap")


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
    r.add_argument("--allow", metavar="FILE", action="append", default=[],
                   help="allowlist file (repeatable)")
    r.add_argument("--preset", metavar="NAME[:REGION]", action="append", default=[],
                   help="allowlist preset, e.g. anthropic, bedrock:ap-northeast-1 (repeatable)")
    r.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    r.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    r.add_argument("--fail-on-denied", action="store_true",
                   help=f"exit {EXIT_DENIED} if any host outside the allowlist was contacted")

    sub.add_parser("presets", help="list the allowlist presets and their hosts")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "report":
            return cmd_report(args)
        if args.command == "presets":
            return cmd_presets()
        _parser().print_help()
        return 0
    except (UserError, PcapError, AllowlistError) as e:
        print(f"egress-tui: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # e.g. `egress-tui report | head`: not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def cmd_report(args) -> int:
    if args.demo:
        path = demo_capture()
    elif args.pcap:
        path = args.pcap
    else:
        raise UserError("report needs a capture: --pcap FILE (or --demo for the shipped one)")
    allowlist = build(args.allow, args.preset)
    if path == "-":
        from .pcapfile import read_frames
        from .engine import Engine
        engine = Engine()
        engine.feed_frames(read_frames(sys.stdin.buffer))
    else:
        if os.path.isdir(path):
            raise UserError(f"{path} is a directory, not a capture file")
        engine = analyze_file(path)
    rows = host_rows(engine, allowlist)
    meta = meta_for("demo capture" if args.demo else path, engine, allowlist)
    text = render(rows, args.format, meta)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise UserError(f"cannot write {args.output}: {e.strerror}") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if args.fail_on_denied and any(r["allowed"] is False and r["connections"] for r in rows):
        denied = [r["name"] for r in rows if r["allowed"] is False and r["connections"]]
        print(f"egress-tui: {len(denied)} host(s) outside the allowlist were contacted: "
              + ", ".join(denied[:10]) + (" ..." if len(denied) > 10 else ""), file=sys.stderr)
        return EXIT_DENIED
    return 0


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
