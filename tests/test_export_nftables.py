"""`egress-tui export nftables`, proven by nft itself in a real network namespace (the lab's
client): `nft -c -f` accepts it, loading it lets the allowlist through and nothing else, DNS
goes only to the resolver, and deleting the one table gives the namespace back as it was.

The export runs inside the namespace, as a user would run it where the rules apply: its names
are resolved there, through the namespace's resolv.conf (the lab DNS)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from egress_tui.exports.nftables import TABLE

pytestmark = [pytest.mark.root, pytest.mark.netns]

if os.geteuid() != 0:
    pytest.skip("network namespaces need root", allow_module_level=True)

ALLOW = "alpha.test\nport-only.test:8443\n*.wild.test\nnxdomain.test\n198.18.127.0/24\n"


def nft(lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = lab.run_client(["nft", *args], timeout=30)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def ruleset(lab) -> str:
    return nft(lab, "list", "ruleset").stdout


@pytest.fixture
def exported(lab, tmp_path):
    """The allowlist exported inside the client namespace; the table is deleted afterwards."""
    assert shutil.which("nft"), "nft missing: make deps installs Debian's nftables"
    allow = tmp_path / "allow.txt"
    allow.write_text(ALLOW)
    out = tmp_path / "egress.nft"
    r = lab.run_client([sys.executable, "-m", "egress_tui", "export", "nftables", "--allow", str(allow),
                        "-o", str(out)], env=dict(os.environ), timeout=60)
    assert r.returncode == 0, r.stderr
    yield out, r.stderr
    nft(lab, "delete", "table", "inet", TABLE, check=False)


def reach(lab, url: str, *extra: str) -> bool:
    r = lab.curl("-sk", "-o", "/dev/null", "-w", "%{http_code}", "--connect-timeout", "1.5", *extra, url,
                 timeout=20)
    return r.stdout.strip() == "200"


def dig(lab, server: str, name: str) -> bool:
    r = lab.run_client(["dig", "+tcp", "+time=1", "+tries=1", "+short", f"@{server}", name], timeout=10)
    return r.returncode == 0 and bool(r.stdout.strip())


def test_nft_checks_it_then_it_allows_the_allowlist_and_nothing_else(lab, exported):
    out, said = exported
    text = out.read_text()
    # resolved inside the namespace, through its resolver; the rest is said, not dropped in silence
    assert lab.address_for("alpha.test")[0] in text and lab.address_for("alpha.test")[1] in text
    assert "ip daddr 198.18.0.2 udp dport 53 accept" in text
    assert "left out: '*.wild.test': a wildcard has no address" in said
    assert "left out: 'nxdomain.test': did not resolve through 198.18.0.2" in said
    nft(lab, "-c", "-f", str(out))
    other_resolver = lab.address_for("some-other-resolver.test")[0]   # the sink answers DNS there too
    assert reach(lab, "https://denied.test/") and dig(lab, other_resolver, "x.test")   # open before

    before = ruleset(lab)
    nft(lab, "-f", str(out))
    assert reach(lab, "https://alpha.test/")
    assert reach(lab, "https://alpha.test/", "-6")                     # IPv6 set
    assert not reach(lab, "https://denied.test/")
    assert not reach(lab, "https://denied.test/", "-6")                # IPv6 does not bypass it
    assert reach(lab, "https://port-only.test:8443/")                  # name:port
    assert not reach(lab, "https://port-only.test/")                   # 443 is not 8443
    assert dig(lab, "198.18.0.2", "x.test")                            # DNS to the resolver
    assert not dig(lab, other_resolver, "x.test")                      # ... and nowhere else
    # blocked packets were counted by the drop rule's path (the log rule copies them to NFLOG)
    listed = nft(lab, "list", "table", "inet", TABLE).stdout
    assert "log prefix \"egress-tui-drop \" group 4242" in listed

    # loading it again replaces the table in one transaction, nothing doubles
    nft(lab, "-f", str(out))
    assert nft(lab, "list", "tables").stdout.count(f"inet {TABLE}") == 1
    assert reach(lab, "https://alpha.test/") and not reach(lab, "https://denied.test/")

    nft(lab, "delete", "table", "inet", TABLE)
    assert ruleset(lab) == before
    assert reach(lab, "https://denied.test/") and dig(lab, other_resolver, "x.test")


def test_a_range_and_reject(lab, tmp_path):
    """An address range without resolving anything, and --reject: refused at once, not a timeout."""
    allow = tmp_path / "allow.txt"
    allow.write_text(f"{lab.address_for('beta.test')[0]}/32\n")
    out = tmp_path / "r.nft"
    r = lab.run_client([sys.executable, "-m", "egress_tui", "export", "nftables", "--allow", str(allow),
                        "--reject", "--resolver", "198.18.0.2", "-o", str(out)], env=dict(os.environ), timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        nft(lab, "-f", str(out))
        assert reach(lab, "https://beta.test/", "-4")
        probe = lab.py("from egress_tui.firewall.runners import probe; import sys; print(probe(sys.argv[1], 443, 5))",
                       lab.address_for("denied.test")[0])
        assert probe.stdout.strip() == "refused", probe   # a TCP reset, not a timeout
    finally:
        nft(lab, "delete", "table", "inet", TABLE, check=False)
