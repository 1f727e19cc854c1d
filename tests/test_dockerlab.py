"""The Docker lab itself: engine, locally built images, a closed network.

Needs root (skipped otherwise, with the reason); as root it installs docker.io,
starts dockerd and builds the images when they are missing (see
tests/dockerlab/README.md), and never skips.
"""

from __future__ import annotations

import json

import pytest

from tests.lab import dnsd

pytestmark = [pytest.mark.docker, pytest.mark.root]


# Runs first on purpose: it needs the daemon to itself (one lab per daemon), so
# it must come before the module-scoped ``docker_lab`` fixture is set up.
def test_lab_removes_leftovers_and_cleans_up(docker_client, lab_images):
    import docker

    from tests.dockerlab import lab as labmod

    labmod.remove_leftovers(docker_client)  # a real leftover would clash with the fake one
    # what a killed run leaves behind: a lab network on the lab subnet, a container on it
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
        subnet=str(labmod.SUBNET_V4), iprange=str(labmod.RANGE_V4), gateway=labmod.GATEWAY_V4)])
    stale = "egt-lab-0-dead00"
    labels = {labmod.LABEL: stale, labmod.LABEL_ROLE: "target", labmod.LABEL_PID: "0"}
    net = docker_client.networks.create(stale, internal=True, ipam=ipam, labels=labels)
    docker_client.containers.create(lab_images["base"].id, ["sleep", "infinity"],
                                    name=f"{stale}-target", network=stale, labels=labels).start()
    with labmod.DockerLab(docker_client, lock_timeout=10) as lab:
        names = {c.name for c in docker_client.containers.list(all=True, filters={"label": labmod.LABEL})}
        assert names == {f"{lab.name}-{r}" for r in ("dns", "sink", "target")}
        assert stale not in {n.name for n in docker_client.networks.list()}
        net_id = lab.network.id
    assert docker_client.containers.list(all=True, filters={"label": labmod.LABEL}) == []
    assert net_id not in {n.id for n in docker_client.networks.list()}
    del net


def test_engine_answers(docker_client):
    assert docker_client.ping()
    assert docker_client.version()["ApiVersion"]


def test_claude_runs_offline_in_its_image(docker_client, lab_images):
    from tests.dockerlab.images import LABEL_CLAUDE, claude_version_in_image

    version = lab_images["target"].labels[LABEL_CLAUDE]
    out = claude_version_in_image(docker_client)  # docker run --rm --network none ...
    assert out.startswith(version), out


def test_lab_shape(docker_lab):
    lab = docker_lab
    assert lab.network.attrs["Internal"] is True
    assert lab.name.startswith("egt-lab-")
    lab.target.reload()
    host = lab.target.attrs["HostConfig"]
    assert not host["Privileged"] and not host["CapAdd"]
    assert lab.nsenter(["ip", "route", "show", "default"]).stdout.strip() == ""
    assert lab.nsenter(["ip", "-6", "route", "show", "default"]).stdout.strip() == ""
    assert lab.host_interface().startswith("veth")


def test_https_to_api_anthropic_reaches_the_sink(docker_lab):
    lab = docker_lab
    want = {lab.address_for("api.anthropic.com"), lab.address_for("api.anthropic.com", 6)}
    r = lab.exec(["curl", "-sk", "-m", "10", "-w", "\n%{http_code} %{remote_ip}", "https://api.anthropic.com/"])
    assert r.returncode == 0, r
    body, _, status = r.stdout.rpartition("\n")
    code, ip = status.split()
    assert (body.strip(), code) == ("ok", "200")
    assert ip in want
    # the name went through the lab DNS (Docker's 127.0.0.11 forwards to it)
    r = lab.exec(["getent", "ahostsv4", "api.anthropic.com"])
    assert r.stdout.split()[0] == lab.address_for("api.anthropic.com")
    assert "api.anthropic.com type 1" in lab.dns.logs().decode()


_PY_TLS = r"""
import json, socket, ssl, sys
name, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection((name, port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=name) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: " + name.encode() + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        print(json.dumps({"peer": s.getpeername()[0], "version": s.version(),
                          "status": data.split(b"\r\n", 1)[0].decode()}))
"""


@pytest.mark.parametrize("name,port", [("statsig.anthropic.com", 443), ("bedrock-runtime.ap-northeast-1.amazonaws.com", 8443)])
def test_python_tls_to_another_name(docker_lab, name, port):
    lab = docker_lab
    r = lab.exec(["python3", "-c", _PY_TLS, name, str(port)])
    assert r.returncode == 0, r
    out = json.loads(r.stdout)
    assert out["status"] == "HTTP/1.1 200 OK"
    assert out["peer"] in {lab.address_for(name), lab.address_for(name, 6)}
    assert out["version"].startswith("TLS")


@pytest.mark.parametrize("url", ["https://1.1.1.1/", "https://[2606:4700:4700::1111]/", "http://8.8.8.8/"])
def test_outside_addresses_fail_at_once(docker_lab, url):
    r = docker_lab.exec(["curl", "-sk", "-m", "10", url])
    assert r.returncode == 7, r  # couldn't connect: no route, at once (a time-out would be 28)


def test_no_route_errno_and_host_unreachable(docker_lab):
    code = (
        "import socket, sys\n"
        "for a in sys.argv[1:]:\n"
        "    try:\n"
        "        socket.create_connection((a, 443), timeout=5)\n"
        "        print(a, 'connected')\n"
        "    except OSError as e:\n"
        "        print(a, e.errno)\n"
    )
    from tests.dockerlab.lab import GATEWAY_V4

    r = docker_lab.exec(["python3", "-c", code, "1.1.1.1", "192.0.2.1", GATEWAY_V4])
    lines = dict(line.split() for line in r.stdout.splitlines())
    assert lines["1.1.1.1"] == "101"  # ENETUNREACH
    assert lines["192.0.2.1"] == "101"
    assert lines[GATEWAY_V4] == "113"  # EHOSTUNREACH: the host side of the bridge is off limits


def test_target_cannot_restore_a_route(docker_lab):
    r = docker_lab.exec(["ip", "route", "add", "default", "via", "198.18.0.1"])
    assert r.returncode != 0 and "not permitted" in r.stderr


def test_blackholed_names_go_unanswered(docker_lab):
    name = "blackholed.test"
    addr = docker_lab.address_for(name)
    assert addr.startswith("198.18.127.")
    r = docker_lab.exec(["curl", "-sk", "-4", "--connect-timeout", "1", f"https://{name}/"])
    assert r.returncode == 28  # connect time-out: dropped by the sink, not refused (7)


def test_nxdomain(docker_lab):
    r = docker_lab.exec(["getent", "hosts", "does-not-exist.test"])
    assert r.returncode == 2 and r.stdout == ""
    assert dnsd.DnsConfig().is_nxdomain("does-not-exist.test")


def test_claude_version_in_the_lab(docker_lab):
    r = docker_lab.exec(["claude", "--version"])
    assert r.returncode == 0, r
    assert "Claude Code" in r.stdout


_QUIC_CLIENT = r"""
import asyncio, ssl, sys
from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration

async def main(host):
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE, server_name=host)
    async with connect(host, 443, configuration=cfg) as proto:
        await proto.ping()
        print(proto._quic._network_paths[0].addr[0])

asyncio.run(asyncio.wait_for(main(sys.argv[1]), 10))
"""


def test_quic_handshake_with_the_sink(docker_lab):
    """A second confined container (the sink image has aioquic) completes QUIC
    handshakes with the sink on lab addresses, over IPv4 and IPv6."""
    from tests.dockerlab.images import SINK_TAG

    lab = docker_lab
    client = lab.add_container(SINK_TAG, "quic-client")
    assert lab.nsenter(["ip", "route", "show", "default"], pid=client.attrs["State"]["Pid"]).stdout == ""
    name = "quic.test"
    addrs = [lab.address_for(name)] + ([lab.address_for(name, 6)] if lab.ipv6 else [])
    for addr in addrs:
        r = lab.exec(["python3", "-c", _QUIC_CLIENT, addr], container=client, timeout=20)
        assert r.returncode == 0, r
        assert r.stdout.strip().removeprefix("::ffff:") == addr
