"""The screen in a real terminal: egress-tui run in a tmux session, read back with
``capture-pane`` as a user sees it (fixture ``tmux_session``, in conftest)."""

from __future__ import annotations

import os
import shlex
import subprocess
import time

import pytest


class Tmux:
    def __init__(self, argv: list[str], name: str):
        self.name = name
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        # the tmux server keeps the environment it started with: pass on which egress_tui to run
        path = os.environ.get("PYTHONPATH")
        cmd = " ".join(shlex.quote(a) for a in ([f"PYTHONPATH={path}"] if path else []) + argv)
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "200", "-y", "50",
                        # COLUMNS/LINES can leak into tmux from a non-terminal parent (80x24 seen
                        # under pytest); they would override the real pane size in the app
                        f"env -u COLUMNS -u LINES TERM=xterm-256color {cmd}; sleep 600"], check=True)
        # pin the size: with window-size "latest" another session or client could shrink it,
        # and a narrow screen cuts the very cells the tests read (the app follows SIGWINCH)
        subprocess.run(["tmux", "set-option", "-t", name, "window-size", "manual"], check=True)
        subprocess.run(["tmux", "resize-window", "-t", name, "-x", "200", "-y", "50"], check=True)

    def size(self) -> str:
        return subprocess.run(["tmux", "display", "-p", "-t", self.name, "#{window_width}x#{window_height}"],
                              capture_output=True, text=True).stdout.strip()

    def text(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True,
                              text=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, *needles: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.text()
            if all(n in screen for n in needles):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never showed {needles}:\n{screen}")
            time.sleep(0.3)

    def wait_line(self, key: str, *needles: str, timeout: float = 30) -> str:
        """The screen line holding ``key``, once it shows every needle (rows draw in pieces)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [ln for ln in self.text().splitlines() if key in ln]
            if lines and all(n in lines[0] for n in needles):
                return lines[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"line {key!r} never showed {needles} ({self.size()}): {lines}")
            time.sleep(0.3)

    def close(self) -> None:
        """Quit, then kill the session; closing twice is fine."""
        if subprocess.run(["tmux", "send-keys", "-t", self.name, "q"], capture_output=True).returncode == 0:
            time.sleep(0.5)
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def tmux_session(request):
    sessions = []

    def start(argv):
        t = Tmux(argv, f"egt-{os.getpid()}-{len(sessions)}")
        sessions.append(t)
        return t
    yield start
    for t in sessions:
        t.close()
