"""Which process opened each connection, for the tools a coding agent runs, in a real container
watched from the host: Node's fetch (Debian's Node 18), ``git ls-remote`` against the lab's git
server over git:// and over HTTPS, and node and curl at once to the same host.

The container runs the tools image (base + nodejs + git) on the lab network, confined like the
target. Its init, a shell, starts each client when the test drops a file in /tmp/go, so every
client's parent chain ends at the container's init, as for a tool an agent runs. The servers
hold each connection open a while (the sink's ``/delay/MS``, the git server's access hook), as a
remote server does: attribution is promised for connections that live 50 ms or more."""

from __future__ import annotations

import time

import pytest

from egress_tui.inspection import open_inspection
from egress_tui.ui.widgets.host_table import filter_match
from tests.dockerlab.images import TOOLS_TAG
from tests.lab import gitd

pytestmark = [pytest.mark.docker, pytest.mark.root]

# console.log, not a thrown error: the output says what fetch got (TLS is the sink's, accepted
# through NODE_TLS_REJECT_UNAUTHORIZED=0 in the container's environment)
FETCH = ("fetch(process.argv[1]).then(r => r.text().then(t => console.log('node', r.status, t.trim())))"
         ".catch(e => console.log('node error', String(e.cause || e)))")
# What the init runs for each file /tmp/go/NAME: output to /tmp/out/NAME, exit status to NAME.rc.
# A function runs in the init shell itself, so each client is the init's own child.
INIT = r"""
run() {
  case "$1" in
    node) node -e "$FETCH" https://api.anthropic.com/delay/300 ;;
    git) git ls-remote "$GIT_URL" ;;
    git-https) git -c http.sslVerify=false -c http.version=HTTP/1.1 \
                 ls-remote https://github.com/delay/300/lab/repo.git ;;
    both) node -e "$FETCH" https://both.test/delay/300 &
          curl -sk --http1.1 https://both.test/delay/300; echo " curl $?"; wait ;;
  esac
}
mkdir -p /tmp/go /tmp/out
while :; do
  for f in /tmp/go/*; do
    [ -e "$f" ] || continue
    rm -f "$f"; name=${f##*/}
    run "$name" >"/tmp/out/$name" 2>&1; echo $? >"/tmp/out/$name.rc"
  done
  sleep 0.1
done
"""


@pytest.fixture(scope="module")
def tools(docker_lab, tools_image):
    """The git server, the tools container its init runs, and an inspection of that container
    with the process lookup on."""
    docker_lab.add_git_server()
    box = docker_lab.add_container(
        TOOLS_TAG, "tools", command=["sh", "-c", INIT],
        environment={"FETCH": FETCH, "GIT_URL": docker_lab.git_url(), "NODE_TLS_REJECT_UNAUTHORIZED": "0"})
    box.reload()
    with open_inspection(box.name, dc=docker_lab.client) as insp:
        insp.start_capture()
        assert insp.method.startswith("netns") and insp.attributor is not None, insp.procs_refusal
        assert insp.wait_ready(30), insp.error
        insp.box = box
        insp.init_pid = int(box.attrs["State"]["Pid"])
        yield insp


def run(insp, name: str, timeout: float = 30.0) -> tuple[int, str]:
    """Have the container's init run client ``name``; its exit status and output."""
    r = insp.box.exec_run(["touch", f"/tmp/go/{name}"])
    assert r.exit_code == 0, r.output
    deadline = time.monotonic() + timeout
    while True:
        r = insp.box.exec_run(["cat", f"/tmp/out/{name}.rc"])
        if r.exit_code == 0 and r.output.strip():
            out = insp.box.exec_run(["cat", f"/tmp/out/{name}"]).output.decode(errors="replace")
            return int(r.output), out
        assert time.monotonic() < deadline, f"{name} still running after {timeout} s"
        time.sleep(0.1)


def looked_up(insp, name: str, count: int = 1, timeout: float = 30.0):
    """The host ``name``'s connections, once ``count`` are there and every one was looked up,
    and its row."""
    deadline = time.monotonic() + timeout
    while True:
        with insp.capturer.lock:
            h = insp.engine.hosts.get(name)
            conns = list(h.conns) if h is not None else []
            if len(conns) >= count and all(c.proc is not None for c in conns):
                return conns, insp.engine.row(h)
        assert time.monotonic() < deadline, (f"{name}: {[c.proc for c in conns]} after {timeout} s "
                                             f"({insp.attributor.stats})")
        time.sleep(0.1)


def test_node_fetch_is_node_started_by_the_containers_init(tools):
    code, out = run(tools, "node")
    assert code == 0 and "node 200 ok" in out, out  # fetch reached the sink, through TLS
    conns, row = looked_up(tools, "api.anthropic.com")
    for c in conns:
        p = c.proc
        # comm is "node" (the name it was started as); the executable is Debian's
        # /usr/bin/nodejs, which /usr/bin/node links to
        assert p.program == "node" and p.comm == "node", p
        assert p.exe.rsplit("/", 1)[-1] in ("node", "nodejs") and "delay/300" in p.cmdline
        assert p.parents == ((tools.init_pid, "sh"),)  # the container's init, as the host numbers it
    assert row.processes == {"node": len(conns)} and row.process_unknown == 0
    assert row.process_text() == "node" and row.process_chains == ["node ← sh"]


def test_git_ls_remote_over_git_protocol_is_git_itself(tools, docker_lab):
    code, out = run(tools, "git")
    # the lab's git server answered: its one commit, on main
    assert code == 0 and f"{gitd.COMMIT}\trefs/heads/main" in out, out
    # git:// is spoken by the git process itself (no remote helper), to an address: the row
    # is named by it
    conns, row = looked_up(tools, docker_lab.git_ip)
    for c in conns:
        p = c.proc
        assert (p.program, p.comm) == ("git", "git") and p.exe == "/usr/bin/git", p
        assert p.cmdline == f"git ls-remote {docker_lab.git_url()}"
        assert p.parents == ((tools.init_pid, "sh"),)
    assert row.processes == {"git": len(conns)} and row.process_chains == ["git ← sh"]


def test_git_ls_remote_over_https_is_its_remote_helper(tools):
    code, out = run(tools, "git-https")
    # the sink is no git server: git says so, after the connection was made
    assert code != 0 and "github.com" in out, out
    conns, row = looked_up(tools, "github.com")
    for c in conns:
        p = c.proc
        # git hands https to a helper: `git ls-remote` runs `git remote-https`, which runs
        # git-remote-https, and the helper holds the socket. Debian's git-remote-https is a
        # symlink to git-remote-http and comm keeps 15 characters, so both the executable and
        # comm say git-remote-http: that is the program; the name it was run as is in its
        # command line. Its chain goes back through both gits to the init.
        assert (p.program, p.comm) == ("git-remote-http", "git-remote-http"), p
        assert p.exe == "/usr/lib/git-core/git-remote-http"
        assert p.cmdline.split()[0].endswith("/git-remote-https"), p.cmdline
        assert [c for _pid, c in p.parents] == ["git", "git", "sh"], p.parents
        assert p.parents[-1] == (tools.init_pid, "sh")
    assert row.processes == {"git-remote-http": len(conns)}
    assert row.process_chains == ["git-remote-http ← git ← git ← sh"]
    # the screen's filter finds it as a git program
    assert filter_match(row, "proc:git") and not filter_match(row, "proc:node")


def test_node_and_curl_at_once_to_the_same_host_each_get_their_own(tools):
    code, out = run(tools, "both")
    assert code == 0 and "node 200 ok" in out and "ok\n curl 0" in out, out
    conns, row = looked_up(tools, "both.test", 2)
    by_program = {c.proc.program: c.proc for c in conns}
    assert set(by_program) == {"node", "curl"}, [c.proc for c in conns]
    assert by_program["node"].pid != by_program["curl"].pid
    for p in by_program.values():
        assert p.parents == ((tools.init_pid, "sh"),)
    assert row.processes == {"curl": 1, "node": 1} and row.programs_text() == "curl:1 node:1"
    assert row.process_text() == "curl +1"
