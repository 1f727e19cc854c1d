"""Running the egress-tui command the tests check, as a user would."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

EGRESS = str(Path(sys.executable).with_name("egress-tui"))


def egress(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([EGRESS, *args], capture_output=True, text=True, timeout=timeout, **kw)


def report_while(args: list[str], traffic, prefix: list[str] = (), env: dict | None = None
                 ) -> tuple[dict, str, object]:
    """``egress-tui report ARGS --format json`` running while ``traffic()`` runs, stopped with
    Ctrl-C once it is done (it stops in order: drained, helpers removed). Returns the hosts by
    name, everything said on stderr, and what ``traffic`` returned. ``prefix``: run it through
    this (setpriv, as another user), with ``env``."""
    p = subprocess.Popen([*prefix, EGRESS, "report", *args, "--format", "json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd="/")
    said = []
    for line in p.stderr:            # "capturing" once the capture listens: traffic starts then
        said.append(line)
        if "capturing" in line:
            break
    assert any("capturing" in ln for ln in said), "".join(said)
    done = traffic()
    time.sleep(1.0)                  # the last answers
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    err = "".join(said) + err
    assert p.returncode == 0, err
    return {h["name"]: h for h in json.loads(out)["hosts"]}, err, done
