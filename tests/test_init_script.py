"""``init-firewall.sh`` (tui/firewall/script.py): the standalone script gives the same
firewall as ``tui.firewall.Firewall``.

- unit: the script parses (bash -n, shellcheck), quotes what comes from the allowlist, and
  its ipset/iptables input is Plan's, text for text (``--dry-run`` with a stub getent);
- netns lab (root): the script run in the lab's client namespace gives the same verdicts as
  egress-tui's own firewall, the same kernel state, removes exactly what it added, and
  puts back the previous firewall when a step fails;
- Docker (root): run inside a container with NET_ADMIN, the way users ran the
  devcontainer's script; Docker's embedded DNS keeps working.

Only lab addresses (198.18.0.0/15, fd65:6774::/48) and loopback are ever contacted: the
unit tests resolve through a stub getent, the others through the labs' sinkhole DNS.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from egress_tui.core.allowlist import Allowlist, Entry
from egress_tui.firewall.plan import CHAIN, SETS, build_plan
from egress_tui.firewall.apply import Firewall, plan_for
from egress_tui.firewall.runners import NamespaceRunner, resolvers_of
from egress_tui.firewall.script import render_init_script

BASH = shutil.which("bash") or "/bin/bash"
IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="needs root (network namespaces, iptables)")


def allow(text: str) -> Allowlist:
    al = Allowlist()
    al.add_text(text)
    al.sources.append("test")
    return al


def write_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


# -- unit: no root, no network ------------------------------------------------------------

# getent stand-in: canned answers for the unit tests (nothing is looked up for real), and
# a log of exactly which arguments it got
STUB_GETENT = r"""#!/bin/sh
printf '%s\n' "$*" >> "$(dirname "$0")/getent.log"
case "$1:$2" in
  ahostsv4:alpha.test) printf '198.18.1.1      STREAM alpha.test\n198.18.1.1      DGRAM  \n198.18.1.9      STREAM \n' ;;
  ahostsv6:alpha.test) printf 'fd65:6774:0:1::5 STREAM alpha.test\n::ffff:198.18.1.1 STREAM \n' ;;
  ahostsv4:port-only.test) printf '198.18.2.2      STREAM port-only.test\n' ;;
  ahostsv6:port-only.test) printf '::ffff:198.18.2.2 STREAM port-only.test\n' ;;
  ahostsv4:v6only.test) exit 2 ;;
  ahostsv6:v6only.test) printf 'fd65:6774:0:1::66 STREAM v6only.test\n' ;;
  *) exit 2 ;;
esac
"""
STUB_RESOLVED = {
    "alpha.test": [("198.18.1.1", 0), ("198.18.1.9", 0), ("fd65:6774:0:1::5", 0)],
    "port-only.test": [("198.18.2.2", 0)],
    "v6only.test": [("fd65:6774:0:1::66", 0)],
}


@pytest.fixture
def stub_path(tmp_path):
    d = tmp_path / "stub"
    d.mkdir()
    write_script(d / "getent", STUB_GETENT)
    return d


def dry_run(script: Path, stub: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{stub}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    return subprocess.run([BASH, str(script), "--dry-run", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def loads_the_plan(script: Path, stub: Path, plan) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Run the script with --dry-run and check it loads exactly the plan's sets and rules;
    returns the run and what it loaded, by section."""
    r = dry_run(script, stub)
    assert r.returncode == 0, r.stderr
    got = sections(r.stdout)
    assert got["ipset"] == plan.ipset_script()
    assert got["4"] == plan.iptables_script(4, hook_present=False)
    assert got["6"] == plan.iptables_script(6, hook_present=False)
    return r, got


def sections(out: str) -> dict[str, str]:
    """--dry-run output -> {"ipset": ..., "4": ..., "6": ...}, each as the text it loads."""
    keys = {"# ipset -exist restore": "ipset", "# iptables-restore --noflush (IPv4)": "4",
            "# ip6tables-restore --noflush (IPv6)": "6"}
    got: dict[str, list[str]] = {}
    cur = None
    for ln in out.splitlines():
        if ln in keys:
            cur = keys[ln]
            got[cur] = []
        else:
            assert cur is not None, ln
            got[cur].append(ln)
    return {k: "\n".join(v) + "\n" for k, v in got.items()}


MIXED = ("alpha.test  # the API\nport-only.test:8443\nv6only.test\nnxdomain.test\n*.amazonaws.com\n"
         "198.18.100.0/24\n198.18.7.7\n[fd65:6774::99]:8443\nfd65:6774:5::/64\n")

VARIANTS = [
    ("empty", "", None, False),
    ("mixed", MIXED, ["198.18.0.2", "fd65:6774::2"], False),
    ("mixed-reject", MIXED, ["198.18.0.2"], True),
    ("runtime-resolvers", "alpha.test\n", None, False),
    ("preset", None, ["127.0.0.11", "198.18.0.2"], False),
]


def variant(name, text, resolvers, reject) -> str:
    if text is None:
        al = Allowlist()
        al.add_preset("anthropic")
        al.add_preset("bedrock:ap-northeast-1")
    else:
        al = allow(text)
    return render_init_script(al, reject=reject, resolvers=resolvers, generated_by=f"test {name}")


@pytest.mark.parametrize("name,text,resolvers,reject", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_script_is_valid_bash(tmp_path, name, text, resolvers, reject):
    script = write_script(tmp_path / "init-firewall.sh", variant(name, text, resolvers, reject))
    r = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_the_template_file_is_clean_bash_as_it_is():
    """The script ships as a real .sh file (markers only in comments and values, stubs for
    the generated functions), so shellcheck reads it before any rendering."""
    from importlib import resources
    path = resources.files("egress_tui.firewall").joinpath("init-firewall.sh")
    r = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    assert subprocess.run([BASH, "-n", str(path)]).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
@pytest.mark.parametrize("name,text,resolvers,reject", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_shellcheck_finds_nothing(tmp_path, name, text, resolvers, reject):
    script = write_script(tmp_path / "init-firewall.sh", variant(name, text, resolvers, reject))
    r = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", str(script)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("reject", [False, True])
def test_rules_and_sets_are_plans_text_for_text(tmp_path, stub_path, reject):
    """What the script loads is exactly what Firewall.apply loads for the same addresses:
    any change to Plan's rules shows up here (and in the script, which is cut from Plan)."""
    resolvers = ["198.18.0.2", "fd65:6774::2", "127.0.0.11"]
    al = allow(MIXED)
    script = write_script(tmp_path / "s.sh", render_init_script(al, reject=reject, resolvers=resolvers))
    r, got = loads_the_plan(script, stub_path, build_plan(al, STUB_RESOLVED, resolvers, reject=reject))
    # what it resolved, and what it could not
    assert "nxdomain.test did not resolve" in r.stderr
    assert "*.amazonaws.com is not allowed by this script" in r.stderr
    assert "::ffff:" not in got["ipset"]                           # v4-mapped are not IPv6 destinations
    calls = (stub_path / "getent.log").read_text().splitlines()
    assert "ahostsv4 alpha.test" in calls and "ahostsv6 alpha.test" in calls
    assert not any("amazonaws" in c or "198.18.100" in c for c in calls)  # never looked up


def test_rule_parity_with_plan_for_any_resolvers(tmp_path, stub_path):
    """Without baked-in resolvers, the script uses /etc/resolv.conf's plus --resolver."""
    al = allow("198.18.5.0/24\n")
    script = write_script(tmp_path / "s.sh", render_init_script(al))
    r = dry_run(script, stub_path, "--resolver", "198.18.0.53", "--resolver=fd65:6774::53")
    assert r.returncode == 0, r.stderr
    got = sections(r.stdout)
    conf = [ln.split()[1].split("%")[0] for ln in Path("/etc/resolv.conf").read_text().splitlines()
            if ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1]
    resolvers = list(dict.fromkeys(conf + ["198.18.0.53", "fd65:6774::53"]))
    plan = build_plan(al, {}, resolvers)
    assert got["4"] == plan.iptables_script(4, hook_present=False)
    assert got["6"] == plan.iptables_script(6, hook_present=False)


def test_resolvers_from_resolv_conf_and_dockers_ext_servers(tmp_path, stub_path):
    """Newer Docker releases name the embedded resolver's upstream servers in a comment;
    host(...) ones are queried from the host's namespace and need no rule."""
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.11\n# ExtServers: [host(198.18.0.66) 198.18.0.77]\noptions ndots:0\n")
    text = render_init_script(allow("198.18.9.9\n")).replace("/etc/resolv.conf", str(conf))
    r = dry_run(write_script(tmp_path / "s.sh", text), stub_path)
    assert r.returncode == 0, r.stderr
    assert sections(r.stdout)["4"] == build_plan(allow("198.18.9.9\n"), {}, ["127.0.0.11", "198.18.0.77"]
                                                 ).iptables_script(4, hook_present=False)
    assert "Docker's embedded resolver" not in r.stderr
    conf.write_text("nameserver 127.0.0.11\noptions ndots:0\n")  # Docker 20.10: no upstream listed
    r = dry_run(write_script(tmp_path / "s.sh", text), stub_path)
    assert "its upstream servers must be allowed too" in r.stderr


def test_odd_input_is_quoted(tmp_path, stub_path):
    """Entries are validated host names and addresses; even so nothing from the allowlist
    (or the caller) is ever read by bash as code."""
    marker = tmp_path / "pwned"
    evil = f"$(touch {marker})`touch {marker}`;touch {marker}'\"$HOME"
    al = Allowlist()
    al.add(Entry("alpha.test", comment=f"a comment {evil}\nrm -rf / # @RULES_FN@ @HEADER@"))
    al.add(Entry(f"x{evil}.test"))            # impossible through the parser: built by hand
    al.add(Entry(f"*.y{evil}.test"))
    al.add(Entry("under_score.test", 8443, comment="\r\n\x00\x1b[31m"))
    text = render_init_script(al, resolvers=["198.18.0.2"], generated_by=f"gen\n{evil}\nrm -rf /")
    script = write_script(tmp_path / "s.sh", text)
    assert subprocess.run([BASH, "-n", str(script)]).returncode == 0
    # every line before `set -euo pipefail` is a comment: no line break got through
    head = text.split("\nset -euo pipefail\n")[0].splitlines()
    assert all(ln.startswith("#") for ln in head), [ln for ln in head if not ln.startswith("#")]
    assert text.count("\nrules() {") == 1  # a marker in a comment was not expanded
    r = dry_run(script, stub_path)
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    calls = (stub_path / "getent.log").read_text().splitlines()
    assert f"ahostsv4 x{evil}.test" in calls           # passed as one literal argument
    assert f"*.y{evil}.test is not allowed" in r.stderr  # printed, not run
    # in ipset's input, comments keep only safe characters
    adds = [ln for ln in sections(r.stdout)["ipset"].splitlines() if ln.startswith("add ")]
    assert adds and all(re.fullmatch(r'add \S+ \S+ timeout 0 comment "[A-Za-z0-9_.:*/@ -]*" -exist', a)
                        for a in adds), adds


def test_resolvers_must_be_addresses():
    with pytest.raises(ValueError, match="not an IP address"):
        render_init_script(allow("alpha.test\n"), resolvers=["dns.example"])
    text = render_init_script(allow("alpha.test\n"), resolvers=["fe80::1%eth0", "198.18.0.2", "198.18.0.2"])
    assert "BAKED_RESOLVERS=(fe80::1 198.18.0.2)" in text


def test_wildcards_and_example_com_in_the_script():
    text = render_init_script(allow("*.amazonaws.com\nalpha.test\n"))
    assert "# NOT enforced by this script" in text and "#   *.amazonaws.com" in text
    assert "DENY_CHECK_NAME=example.com" in text
    # when example.com is allowed, the "must be blocked" check would be wrong: no check
    assert "DENY_CHECK_NAME=''" in render_init_script(allow("example.com\n"))
    assert "DENY_CHECK_NAME=''" in render_init_script(allow("example.com:443\n"))


def test_usage_and_missing_tools(tmp_path):
    script = write_script(tmp_path / "s.sh", render_init_script(allow("alpha.test\n")))
    r = subprocess.run([BASH, str(script), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--remove" in r.stdout and "--status" in r.stdout
    r = subprocess.run([BASH, str(script), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown argument '--bogus'" in r.stderr
    r = subprocess.run([BASH, str(script), "--resolver", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "not an IP address" in r.stderr
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    r = subprocess.run([BASH, str(script)], capture_output=True, text=True, env={"PATH": str(empty)})
    assert r.returncode == 1
    if IS_ROOT:
        assert re.search(r"missing: iptables ip6tables iptables-save .*ipset getent", r.stderr), r.stderr
    else:
        assert "run as root" in r.stderr


# -- the network-namespace lab --------------------------------------------------------------

def run_script(lab, script: Path, *args: str, stub: Path | None = None) -> subprocess.CompletedProcess:
    env = None
    if stub is not None:
        env = dict(os.environ, PATH=f"{stub}:{os.environ['PATH']}")
    return lab.run_client([BASH, str(script), *args], timeout=90, env=env)


def reach(lab, url: str, *extra: str) -> bool:
    r = lab.curl("-sk", "-o", "/dev/null", "-w", "%{http_code}", "--connect-timeout", "1.5", *extra, url,
                 timeout=20)
    return r.stdout.strip() == "200"


def dig(lab, server: str, name: str) -> bool:
    # over TCP: the sink answers on every lab address, but its UDP replies come from one
    r = lab.run_client(["dig", "+tcp", "+time=1", "+tries=1", "+short", f"@{server}", name], timeout=10)
    return r.returncode == 0 and bool(r.stdout.strip())


def _normalize_save(save: str) -> str:
    """iptables-save minus what is not a rule: comments, counters, and a table with nothing
    in it (iptables-nft creates the filter table on first use; empty, it changes nothing)."""
    out: list[str] = []
    block: list[str] = []
    for ln in save.splitlines():
        if ln.startswith("#"):
            continue
        ln = re.sub(r"\[\d+:\d+\]", "[0:0]", ln)
        if ln.startswith("*"):
            block = [ln]
            continue
        block.append(ln)
        if ln == "COMMIT":
            empty = all(re.fullmatch(r":(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT \[0:0\]", b)
                        for b in block[1:-1])
            if not empty:
                out += block
            block = []
    return "\n".join(out)


def state(lab) -> dict[str, str]:
    """Everything a firewall can change in the client namespace, comparable across runs."""
    def ns(*argv):
        r = lab.run_client(list(argv), timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout
    saves = ns("ipset", "save")
    ours = sorted(re.sub(r" initval 0x[0-9a-f]+", "", ln) for ln in saves.splitlines()
                  if ln.split()[1:2] and ln.split()[1].startswith("egress-tui"))
    return {"v4": _normalize_save(ns("iptables-save")), "v6": _normalize_save(ns("ip6tables-save")),
            "sets": "\n".join(ours), "set_names": ns("ipset", "list", "-n")}


@root_only
@pytest.mark.root
@pytest.mark.netns
class TestInNetnsLab:

    def test_verdicts_match_egress_tui(self, lab, fw, tmp_path):
        assert reach(lab, "https://denied.test/")                 # open before
        other = lab.address_for("some-other-resolver.test")[0]   # the sink answers DNS there too
        assert dig(lab, other, "x.test")
        al = allow("alpha.test\nport-only.test:8443\nnxdomain.test\n*.rotating.test\n")
        script = write_script(tmp_path / "init-firewall.sh", render_init_script(al, generated_by="test"))
        r = run_script(lab, script)   # resolvers from the lab's resolv.conf, like a container's
        assert r.returncode == 0, r.stdout + r.stderr
        assert "nxdomain.test did not resolve: skipped" in r.stderr        # not fatal
        assert "*.rotating.test is not allowed by this script" in r.stderr
        assert "check: example.com" in r.stdout and "is blocked, as expected" in r.stdout
        assert "check: alpha.test" in r.stdout and "is reachable, as expected" in r.stdout
        assert reach(lab, "https://alpha.test/")
        assert reach(lab, "https://alpha.test/", "-6")
        assert not reach(lab, "https://denied.test/")
        assert not reach(lab, "https://denied.test/", "-6")
        assert reach(lab, "https://port-only.test:8443/")
        assert not reach(lab, "https://port-only.test/")              # 443 is not 8443
        assert not reach(lab, "https://a1.rotating.test/")            # a script cannot follow wildcards
        assert dig(lab, "198.18.0.2", "x.test")
        assert not dig(lab, other, "x.test")                          # DNS only to the resolver
        st = fw.status()                                              # egress-tui recognises it
        assert st.on and not st.partial
        assert st.dropped_packets[4] > 0 and st.dropped_packets[6] > 0
        assert st.set_entries == {4: 3, 6: 3}  # alpha + port-only (tcp, udp), each family
        r = run_script(lab, script, "--status")
        assert r.returncode == 0 and "egress-tui firewall: on" in r.stdout, r.stdout + r.stderr
        assert re.search(r"dropped: IPv4 [1-9]\d* packets, IPv6 [1-9]\d* packets", r.stdout), r.stdout

    def test_same_kernel_state_as_firewall_apply(self, lab, fw, tmp_path):
        al = allow("alpha.test\nport-only.test:8443\nnxdomain.test\n*.amazonaws.com\n198.18.100.0/24\n"
                   "[fd65:6774::99]:8443\n")
        resolvers = resolvers_of(lab.pid)
        for reject in (False, True):
            script = write_script(tmp_path / f"s{reject}.sh", render_init_script(al, reject=reject))
            r = run_script(lab, script, "--no-verify")
            assert r.returncode == 0, r.stderr
            by_script = state(lab)
            assert fw.remove()
            fw.apply(plan_for(lab.pid, al, resolvers, reject))
            by_egress_tui = state(lab)
            assert by_script == by_egress_tui
            assert f"-A {CHAIN} -m comment --comment egress-tui -j {'REJECT' if reject else 'DROP'}" in by_script["v4"]
            assert 'comment "alpha.test"' in by_script["sets"]   # same comments and timeouts too
            fw.remove()

    def test_remove_leaves_exactly_what_was_there(self, lab, fw, tmp_path):
        # something of the user's own that must survive: a rule in OUTPUT, a set
        lab.run_client(["iptables", "-A", "OUTPUT", "-d", "198.18.127.1", "-j", "REJECT"])
        lab.run_client(["ipset", "create", "users-own", "hash:ip"])
        try:
            before = state(lab)
            script = write_script(tmp_path / "s.sh", render_init_script(allow("alpha.test\n")))
            for _ in range(2):                                   # applying twice replaces
                r = run_script(lab, script, "--no-verify")
                assert r.returncode == 0, r.stderr
            v4 = lab.run_client(["iptables-save"]).stdout
            assert len(re.findall(rf"^-A OUTPUT -j {CHAIN}$", v4, re.M)) == 1
            assert "-A OUTPUT -d 198.18.127.1/32 -j REJECT" in v4
            r = run_script(lab, script, "--remove")
            assert r.returncode == 0 and "removed" in r.stdout, r.stderr
            assert state(lab) == before
            r = run_script(lab, script, "--remove")
            assert r.returncode == 0 and "no egress-tui firewall here" in r.stdout
            r = run_script(lab, script, "--status")
            assert r.returncode == 3 and "egress-tui firewall: off" in r.stdout
            assert not fw.status().on
        finally:
            lab.run_client(["iptables", "-D", "OUTPUT", "-d", "198.18.127.1", "-j", "REJECT"])
            lab.run_client(["ipset", "destroy", "users-own"])

    def test_rerun_with_another_allowlist_replaces_it(self, lab, fw, tmp_path):
        a = write_script(tmp_path / "a.sh", render_init_script(allow("alpha.test\n"), reject=True))
        b = write_script(tmp_path / "b.sh", render_init_script(allow("beta.test\n"), reject=True))
        assert run_script(lab, a).returncode == 0
        assert reach(lab, "https://alpha.test/") and not reach(lab, "https://beta.test/")
        r = run_script(lab, b)
        assert r.returncode == 0, r.stderr
        assert reach(lab, "https://beta.test/") and not reach(lab, "https://alpha.test/")
        r = lab.curl("-sk", "--connect-timeout", "5", "https://denied.test/")
        assert r.returncode == 7   # REJECT: refused at once, not a timeout

    @pytest.mark.parametrize("broken", ["ip6tables-restore", "ipset-swap"])
    def test_a_failure_puts_back_the_previous_firewall(self, lab, fw, tmp_path, broken):
        good = write_script(tmp_path / "good.sh", render_init_script(allow("alpha.test\n")))
        assert run_script(lab, good, "--no-verify").returncode == 0
        before = state(lab)
        stub = tmp_path / "stub"
        stub.mkdir()
        if broken == "ip6tables-restore":   # fails after the sets were swapped and IPv4 loaded
            write_script(stub / "ip6tables-restore", "#!/bin/sh\nexit 1\n")
        else:                               # the second swap fails: the first must be undone
            real = shutil.which("ipset")
            write_script(stub / "ipset", f'#!/bin/sh\n[ "$1" = swap ] && [ "$3" = {SETS[4][1]} ] && exit 1\n'
                                         f'exec {real} "$@"\n')
        other = write_script(tmp_path / "other.sh", render_init_script(allow("beta.test\n")))
        r = run_script(lab, other, "--no-verify", stub=stub)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "putting back the firewall that was there before" in r.stderr
        assert state(lab) == before
        assert reach(lab, "https://alpha.test/") and not reach(lab, "https://beta.test/")

    def test_a_failure_on_a_fresh_namespace_leaves_nothing(self, lab, fw, tmp_path):
        before = state(lab)
        stub = tmp_path / "stub"
        stub.mkdir()
        write_script(stub / "ip6tables-restore", "#!/bin/sh\nexit 1\n")
        script = write_script(tmp_path / "s.sh", render_init_script(allow("alpha.test\n")))
        r = run_script(lab, script, "--no-verify", stub=stub)
        assert r.returncode == 1
        assert state(lab) == before
        assert reach(lab, "https://denied.test/")

    def test_a_second_run_at_the_same_time_is_refused(self, lab, fw, tmp_path):
        ino = os.stat(f"/proc/{lab.pid}/ns/net").st_ino
        lock = Path(f"/run/egress-tui-firewall.{ino}.lock")
        before = state(lab)
        script = write_script(tmp_path / "s.sh", render_init_script(allow("alpha.test\n")))
        with open(lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)   # what a running instance holds
            r = run_script(lab, script, "--no-verify")
        assert r.returncode == 1 and "not running twice" in r.stderr, r.stderr
        assert state(lab) == before
        assert run_script(lab, script, "--no-verify").returncode == 0


# -- Docker: inside a container, the way the original script was used ------------------------

@pytest.fixture(scope="module")
def fw_container(docker_client, docker_lab):
    from tests.dockerlab.images import ensure_fw_image

    image = ensure_fw_image(docker_client)
    return docker_lab.add_container(image.tags[0], "initfw", cap_add=["NET_ADMIN"])


def put_script(container, text: str, path: str = "/usr/local/bin/init-firewall.sh") -> str:
    data = text.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(os.path.basename(path))
        info.size, info.mode, info.mtime = len(data), 0o755, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    assert container.put_archive(os.path.dirname(path), buf.getvalue())
    return path


def curl_ok(lab, container, url: str, *extra: str) -> bool:
    r = lab.exec(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--connect-timeout", "1.5",
                  *extra, url], container=container, timeout=15)
    return r.stdout.strip() == "200"


@pytest.mark.docker
@pytest.mark.root
class TestInDockerContainer:

    def test_run_inside_like_the_original(self, docker_lab, fw_container):
        lab, c = docker_lab, fw_container
        c.reload()
        pid = c.attrs["State"]["Pid"]
        nat_before = lab.nsenter(["iptables-save", "-t", "nat"], pid=pid).stdout
        assert "DOCKER_OUTPUT" in nat_before                     # Docker's embedded DNS rules
        # the resolvers egress-tui would hand the script: resolv.conf's plus Docker's upstream
        resolvers = resolvers_of(pid, c.attrs["HostConfig"].get("Dns") or [])
        assert resolvers == ["127.0.0.11", lab.dns_ip]
        al = allow("alpha.test\nport-only.test:8443\nnxdomain.test\n")
        script = put_script(c, render_init_script(al, resolvers=resolvers, generated_by="test"))
        r = lab.exec([script], container=c, timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "check: DNS still answers" in r.stdout and "nxdomain.test did not resolve" in r.stderr
        r = lab.exec(["getent", "hosts", "alpha.test"], container=c, timeout=10)
        assert r.returncode == 0 and r.stdout.split()[0] in (lab.address_for("alpha.test"),
                                                              lab.address_for("alpha.test", 6))
        assert curl_ok(lab, c, "https://alpha.test/")
        if lab.ipv6:
            assert curl_ok(lab, c, "https://alpha.test/", "-6")
            assert not curl_ok(lab, c, "https://denied.test/", "-6")
        assert not curl_ok(lab, c, "https://denied.test/")
        assert curl_ok(lab, c, "https://port-only.test:8443/")
        assert not curl_ok(lab, c, "https://port-only.test/")
        dig = lab.exec(["dig", "+tcp", "+time=1", "+tries=1", "+short", f"@{lab.sink_ip}", "x.test"],
                       container=c, timeout=10)
        assert dig.returncode != 0                                # DNS to another server: blocked
        assert _normalize_save(lab.nsenter(["iptables-save", "-t", "nat"], pid=pid).stdout) == \
            _normalize_save(nat_before)                           # NAT rules untouched
        st = Firewall(NamespaceRunner(pid), f"test-init-script-{c.id[:12]}").status()
        assert st.on
        r = lab.exec([script, "--status"], container=c)
        assert r.returncode == 0 and "egress-tui firewall: on" in r.stdout
        r = lab.exec([script, "--remove"], container=c)
        assert r.returncode == 0, r.stderr
        assert CHAIN not in lab.nsenter(["iptables-save"], pid=pid).stdout
        assert lab.exec(["ipset", "list", "-n"], container=c).stdout.strip() == ""
        assert lab.exec(["getent", "hosts", "alpha.test"], container=c, timeout=10).returncode == 0
        assert curl_ok(lab, c, "https://denied.test/")

    def test_resolvers_at_run_time_with_docker_upstream_given(self, docker_lab, fw_container):
        """Generated without resolvers: 127.0.0.11 comes from resolv.conf, Docker's upstream
        from --resolver (the script cannot see it; it says so)."""
        lab, c = docker_lab, fw_container
        script = put_script(c, render_init_script(allow("alpha.test\n"), reject=True))
        r = lab.exec([script, "--no-verify", "--resolver", lab.dns_ip], container=c, timeout=60)
        try:
            assert r.returncode == 0, r.stdout + r.stderr
            assert "Docker's embedded resolver" not in r.stderr   # upstream given: no warning
            assert f"DNS only to 127.0.0.11 {lab.dns_ip}" in r.stdout
            assert lab.exec(["getent", "hosts", "beta.test"], container=c, timeout=10).returncode == 0
            assert curl_ok(lab, c, "https://alpha.test/")
            assert not curl_ok(lab, c, "https://beta.test/")
        finally:
            assert lab.exec([script, "--remove"], container=c).returncode == 0

    def test_without_net_admin_says_so(self, docker_lab, fw_container):
        lab = docker_lab
        c = lab.add_container(fw_container.image.tags[0], "initfw-nocap")
        script = put_script(c, render_init_script(allow("alpha.test\n")))
        r = lab.exec([script], container=c, timeout=30)
        assert r.returncode == 1 and "NET_ADMIN" in r.stderr, r.stderr
