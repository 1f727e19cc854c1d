"""A git server for the Docker lab's ``git`` container: ``git daemon`` (git://, port 9418).

Runs inside ``egress-tui-test/tools`` (base + nodejs + git) as ``python3 -m tests.lab.gitd``
(the repository at /src).  It makes the bare repository ``REPO`` under ``BASE`` with one commit
on ``BRANCH`` (fixed author, dates and message, so its id is always ``COMMIT``), then serves
``BASE`` read-only with ``git daemon``: ``git ls-remote git://ADDRESS/repo.git`` from any lab
container lists ``COMMIT refs/heads/main``.  git:// needs no TLS and no DNS: clients use the
container's address.  Each request waits ``DELAY`` seconds (the daemon's access hook) before it
is served, so a connection lives as long as one to a remote server does, not the millisecond a
lab answer takes.  When the port listens it prints ``READY``, then stays in the foreground until
the daemon exits (and exits with it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PORT = 9418
BASE = Path("/srv/git")
REPO = "repo.git"
BRANCH = "main"
# what the fixed commit below hashes to (git's SHA-1 object format): a client that prints it
# was served this repository by this daemon
COMMIT = "f98b750d9db5379b0cb545aefb70fba6f35110cd"
DELAY = 0.3
HOOK = Path("/tmp/gitd-access-hook")
_IDENTITY = {
    "GIT_AUTHOR_NAME": "egress-tui lab", "GIT_AUTHOR_EMAIL": "lab@lab.test",
    "GIT_COMMITTER_NAME": "egress-tui lab", "GIT_COMMITTER_EMAIL": "lab@lab.test",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


def _git(*argv: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **_IDENTITY, "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/tmp"}
    p = subprocess.run(["git", *argv], input="", capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
    if p.returncode != 0:
        raise SystemExit(f"gitd: git {' '.join(argv)}: {p.stderr.strip()}")
    return p.stdout.strip()


def make_repo() -> str:
    """The bare repository with its one commit; returns the commit's id."""
    shutil.rmtree(BASE, ignore_errors=True)
    bare = BASE / REPO
    _git("init", "-q", "--bare", f"--initial-branch={BRANCH}", str(bare))
    tree = _git("mktree", cwd=bare)  # the empty tree: no working copy needed
    commit = _git("commit-tree", tree, "-m", "egress-tui lab repository", cwd=bare)
    _git("update-ref", f"refs/heads/{BRANCH}", commit, cwd=bare)
    return commit


def _listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def main() -> int:
    commit = make_repo()
    if commit != COMMIT:
        print(f"gitd: the lab commit is {commit}, COMMIT says {COMMIT}", file=sys.stderr, flush=True)
        return 1
    # git daemon runs the hook (service, path, host, ... as arguments) before each request and
    # serves it when the hook exits 0
    HOOK.write_text(f"#!/bin/sh\nexec sleep {DELAY:g}\n")
    HOOK.chmod(0o755)
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--informative-errors",
                               f"--access-hook={HOOK}", f"--base-path={BASE}", f"--port={PORT}", str(BASE)])

    def stop(*_):
        daemon.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    deadline = time.monotonic() + 30
    while not _listening(PORT):
        if daemon.poll() is not None or time.monotonic() > deadline:
            print(f"gitd: git daemon not listening on {PORT} ({daemon.poll()})", file=sys.stderr, flush=True)
            daemon.kill()
            return 1
        time.sleep(0.05)
    print(f"READY git://*:{PORT}/{REPO} {commit}", flush=True)
    # as PID 1, also reap what the daemon's children leave behind
    while True:
        pid, status = os.wait()
        if pid == daemon.pid:
            return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
