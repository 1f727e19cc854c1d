"""`egress-tui export` against the Docker lab. Squid, proven by a real Squid: the fragment included
before `http_access deny all`, `squid -k parse` clean, then the lab's target asks it for
allowed names (the tunnel opens: 200, the sink answers) and others (403).

`--ssl-bump` needs Squid built with OpenSSL. Debian's `squid` (the lab proxy image) is built
with GnuTLS (`squid -v` shows --with-gnutls, no --with-openssl), so SslBump is proven in an
image of Debian's `squid-openssl` (same version): parse clean, an allowed name is spliced, and
a client that asks for an allowed name and then sends another in its SNI (fronting, a shared
CDN) is cut off, where the plain fragment lets it through.

`export nftables --container`: the container's resolvers, and its names looked up inside it.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import time

import docker
import pytest

from egress_tui.core.allowlist import Allowlist
from egress_tui.exports import Options, render
from egress_tui.exports.sources import from_allowlist
from tests.dockerlab.images import PROXY_TAG, SQUID_TLS_TAG
from tests.lab import proxyd

pytestmark = [pytest.mark.docker, pytest.mark.root]

PORT = 3128
WORKDIR = "/tmp/egx"
# curl's body, then what it saw: the proxy's answer to CONNECT and the HTTP status
_W = ["-w", "\n%{http_connect} %{http_code}"]


@pytest.fixture(scope="module")
def squid_tls_image(docker_client, lab_images):
    from tests.dockerlab.images import ensure_squid_tls_image
    return ensure_squid_tls_image(docker_client)


def squid_conf(ssl_bump: bool) -> str:
    """The smallest squid.conf around the fragment: egress-tui's rules, then deny all."""
    port = (f"http_port {PORT} ssl-bump tls-cert={WORKDIR}/bump.crt tls-key={WORKDIR}/bump.key "
            "generate-host-certificates=off") if ssl_bump else f"http_port {PORT}"
    return f"""\
{port}
visible_hostname export.lab
cache_effective_user proxy
pid_filename {WORKDIR}/squid.pid
coredump_dir {WORKDIR}
cache_log {WORKDIR}/cache.log
access_log stdio:{WORKDIR}/access.log
{proxyd.SQUID_QUIET}include {WORKDIR}/egress-tui.conf
http_access deny all
"""


def put_files(container, files: dict[str, str]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        d = tarfile.TarInfo("egx")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"egx/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    container.put_archive("/tmp", buf.getvalue())


def start_squid(lab, image: str, role: str, allowlist: str, ssl_bump: bool):
    """A container of ``image`` on the lab network running Squid with the exported fragment;
    returns (container, address, what `squid -k parse` said)."""
    al = Allowlist(sources=["test allowlist"])
    al.add_text(allowlist)
    fragment = render("squid", from_allowlist(al), Options(ssl_bump=ssl_bump)).text
    c = lab.add_container(image, role, ["sleep", "infinity"],
                          ulimits=[docker.types.Ulimit(name="nofile", soft=4096, hard=4096)])
    put_files(c, {"squid.conf": squid_conf(ssl_bump), "egress-tui.conf": fragment})
    if ssl_bump:  # peek and splice never shows it to anyone, but an ssl-bump port needs one
        r = lab.exec(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                      "/CN=egress-tui lab bump", "-keyout", f"{WORKDIR}/bump.key", "-out", f"{WORKDIR}/bump.crt"],
                     container=c)
        assert r.returncode == 0, r.stderr
    assert lab.exec(["chown", "-R", "proxy:proxy", WORKDIR], container=c).returncode == 0
    parsed = lab.exec(["squid", "-k", "parse", "-f", f"{WORKDIR}/squid.conf"], container=c)
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    c.exec_run(["squid", "-N", "-f", f"{WORKDIR}/squid.conf"], detach=True)
    deadline = time.monotonic() + 30
    while f":{PORT:04X} " not in _listening(lab, c):
        assert time.monotonic() < deadline, lab.exec(["cat", f"{WORKDIR}/cache.log"], container=c).stdout
        time.sleep(0.2)
    c.reload()
    ip = c.attrs["NetworkSettings"]["Networks"][lab.name]["IPAddress"]
    return c, ip, parsed.stdout + parsed.stderr


def _listening(lab, c) -> str:
    out = lab.exec(["cat", "/proc/net/tcp", "/proc/net/tcp6"], container=c).stdout
    return "\n".join(line for line in out.splitlines() if " 0A " in line)


def ask(lab, proxy_ip: str, url: str, *extra: str) -> tuple[str, str, str]:
    """(body, the proxy's answer to CONNECT, HTTP status) for ``url`` through the proxy."""
    r = lab.exec(["curl", "-sk", "-m", "10", *_W, "-x", f"http://{proxy_ip}:{PORT}", *extra, url], timeout=20)
    body, _, status = r.stdout.rpartition("\n")
    connect, code = (status.split() + ["", ""])[:2]
    return body, connect, code


def clean(parse_output: str) -> bool:
    """`squid -k parse` said nothing worse than its own progress lines."""
    return not re.search(r"WARNING|ERROR|FATAL|Bungled|unrecognized", parse_output, re.I)


def test_squid_tunnels_the_allowlist_and_refuses_the_rest(docker_lab, proxy_image):
    lab = docker_lab
    by_address = lab.address_for("by-address.test")
    allowlist = (f"api.anthropic.com\n*.sentry.io\ninternal.test:8443\n{by_address}/32\n")
    c, ip, parsed = start_squid(lab, PROXY_TAG, "squid", allowlist, ssl_bump=False)
    assert clean(parsed), parsed
    ok = ("ok\n", "200", "200")
    assert ask(lab, ip, "https://api.anthropic.com/") == ok                 # CONNECT: the tunnel opens
    assert ask(lab, ip, "https://o1.ingest.sentry.io/") == ok               # a subdomain, any depth
    assert ask(lab, ip, "https://denied.test/")[1] == "403"                 # CONNECT refused
    assert ask(lab, ip, "https://sentry.io/")[1] == "403"                   # *.sentry.io is not sentry.io
    assert ask(lab, ip, "https://internal.test:8443/") == ok                # name:port
    assert ask(lab, ip, "https://internal.test/")[1] == "403"               # ... only that port
    assert ask(lab, ip, "https://by-address.test/") == ok                   # an address entry (dst)
    assert ask(lab, ip, "http://api.anthropic.com/") == ("ok\n", "000", "200")   # plain HTTP allowed
    assert ask(lab, ip, "http://denied.test/")[2] == "403"                  # plain HTTP refused
    # fronting: CONNECT to an allowed name, then a ClientHello for another: addresses and names
    # seen by the proxy alone cannot tell, so the tunnel opens (what --ssl-bump closes)
    fronted = ask(lab, ip, "https://evil.test/", "--connect-to", "evil.test:443:api.anthropic.com:443")
    assert fronted == ok


def test_ssl_bump_checks_the_sni_too(docker_lab, squid_tls_image):
    lab = docker_lab
    debian = lab.add_container(PROXY_TAG, "squid-v", ["sleep", "infinity"])
    version = lab.exec(["squid", "-v"], container=debian).stdout
    assert "--with-gnutls" in version and "--with-openssl" not in version   # why squid-openssl

    c, ip, parsed = start_squid(lab, SQUID_TLS_TAG, "squid-tls", "api.anthropic.com\n*.sentry.io\n",
                                ssl_bump=True)
    assert clean(parsed), parsed
    assert ask(lab, ip, "https://api.anthropic.com/") == ("ok\n", "200", "200")   # spliced: SNI allowed
    assert ask(lab, ip, "https://a.b.sentry.io/") == ("ok\n", "200", "200")
    # a CONNECT http_access denies, on an ssl-bump port: Squid accepts the tunnel so as to give
    # its 403 inside TLS (with the port's certificate); nothing reaches denied.test
    body, connect, code = ask(lab, ip, "https://denied.test/")
    assert (connect, code) == ("200", "403") and "ERR_ACCESS_DENIED" in body
    # fronting: the CONNECT names an allowed host, the SNI does not: the tunnel is cut
    body, connect, code = ask(lab, ip, "https://evil.test/", "--connect-to", "evil.test:443:api.anthropic.com:443")
    assert connect == "200" and code == "000" and body == ""
    body, connect, code = ask(lab, ip, "https://sentry.io/", "--connect-to", "sentry.io:443:x.sentry.io:443")
    assert connect == "200" and code == "000" and body == ""                # *.sentry.io is not sentry.io
    log = lab.exec(["cat", f"{WORKDIR}/access.log"], container=c).stdout
    assert re.search(r"TCP_TUNNEL/200 .* CONNECT api\.anthropic\.com:443", log), log
    assert re.search(r"TCP_DENIED/\d+ .* CONNECT denied\.test:443", log), log


def test_nftables_for_a_container_resolves_inside_it(docker_lab, tmp_path):
    lab = docker_lab
    out = tmp_path / "c.nft"
    r = subprocess.run([sys.executable, "-m", "egress_tui", "export", "nftables", "--preset", "anthropic",
                        "--container", lab.target.name, "-o", str(out)], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    # the names got the lab's answers, from inside the container (the host cannot resolve them)
    assert lab.address_for("api.anthropic.com") in text
    # DNS to the embedded resolver is loopback; its upstream (the lab DNS) is let through
    assert f"ip daddr {lab.dns_ip} udp dport 53 accept" in text
    assert "left out: '*.sentry.io': a wildcard" in r.stderr
    check = subprocess.run(["nsenter", "-t", str(lab.target_pid), "-n", "nft", "-c", "-f", str(out)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
