"""``DockerLab``: a closed Docker network with a sinkhole DNS, a sink and a target.

    network  egt-lab-<pid>-<hex>, ``--internal``, IPv4 198.18.0.0/17 (containers
             get addresses from 198.18.0.0/24, the bridge/gateway is 198.18.0.1)
             and, when the daemon allows it, IPv6 fd65:6774::/56 (containers
             from fd65:6774::/112, gateway fd65:6774::1)
    dns      base image, repo at /src (read-only): ``python3 -m tests.lab.dnsd``;
             answers every name with a lab address (198.18.64.0/18,
             fd65:6774:0:1::/64) and never recurses
    sink     sink image (base + aioquic), repo at /src: ``python3 -m tests.lab.sink``
             (TLS 443/8443, HTTP 80, QUIC udp/443, DNS 53).  Local routes for the
             whole name ranges (on lo, in its namespace) make its wildcard
             listeners accept on every address the DNS hands out; 198.18.127.0/24
             and fd65:6774:0:1:ffff::/80 (the "blackholed" names) are dropped
    target   the Claude Code image, ``sleep infinity``, ``--dns`` = the dns
             container (Docker's embedded resolver at 127.0.0.11 forwards to it,
             as for any container on a user-defined network).  Not privileged, no
             extra capabilities.  Its routes, set from the host with nsenter:
             no default route (Docker hands one out even on --internal
             networks), the name ranges via the sink, the gateway (= the host)
             unreachable.  So any stray connection fails at once.
    proxy    (only after ``add_proxies()``) the proxy image, repo at /src:
             ``python3 -m tests.lab.proxyd``: Squid on 3128 and 3129 (basic
             auth), Dante on 1080 and 1081 (SOCKS5 username/password), OpenSSH's
             ``ssh -D`` on 1082 (SOCKS4a); confined like the target, so the
             proxies resolve through the lab DNS and reach only the sink.  Also
             reachable by the name ``proxy`` (Docker's embedded DNS).
    git      (only after ``add_git_server()``) the tools image, repo at /src:
             ``python3 -m tests.lab.gitd``: ``git daemon`` on 9418 serving one
             bare repository (``git://GIT_IP/repo.git``); confined like the
             target, reached by its container address (no DNS involved).

Why the network is a /17 that contains the name range: with br_netfilter on,
Docker's DOCKER-ISOLATION rules for an --internal network drop every bridged
packet whose source/destination is outside the network's subnet, which would
drop target -> 198.18.64.x -> sink.  Making the name range part of the subnet
keeps Docker's own rules (and the host firewall) untouched.  The price: one
lab per Docker daemon at a time (pools may not overlap); a lock file serialises
labs, and anything labelled as a lab found while holding it is a leftover of a
killed run and is removed.

Usage::

    client = ensure_docker()
    ensure_images(client)
    with DockerLab(client) as lab:
        r = lab.exec(["curl", "-sk", "https://api.anthropic.com/"])
        assert r.returncode == 0 and r.stdout == "ok\\n"
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import docker

from ..lab import dnsd, gitd, proxyd
from .images import BASE_TAG, PROJECT_ROOT, PROXY_TAG, SINK_TAG, TARGET_TAG, TOOLS_TAG, create_container

LABEL = "egress-tui.lab"
LABEL_ROLE = "egress-tui.lab.role"
LABEL_PID = "egress-tui.lab.pid"
NAME_PREFIX = "egt-lab"
LOCK_PATH = Path("/run/egress-tui-dockerlab.lock")

SUBNET_V4 = ipaddress.ip_network("198.18.0.0/17")
RANGE_V4 = ipaddress.ip_network("198.18.0.0/24")
GATEWAY_V4 = "198.18.0.1"
SUBNET_V6 = ipaddress.ip_network("fd65:6774::/56")
RANGE_V6 = ipaddress.ip_network("fd65:6774::/112")  # Docker's IPAM overflows on a /64 range
GATEWAY_V6 = "fd65:6774::1"
PROXY_ALIAS = "proxy"  # the proxy container's name on the lab network (add_proxies)

assert dnsd.LAB_V4.subnet_of(SUBNET_V4) and dnsd.LAB_V6.subnet_of(SUBNET_V6)
assert not RANGE_V4.overlaps(dnsd.LAB_V4) and not RANGE_V6.overlaps(dnsd.LAB_V6)


class DockerLabError(RuntimeError):
    pass


def _nsenter(pid: int, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise DockerLabError(f"nsenter -t {pid} -n {' '.join(argv)}: {p.stderr.strip() or p.returncode}")
    return p


def remove_leftovers(client: docker.DockerClient) -> list[str]:
    """Remove every lab container and network (call only while holding the lab lock)."""
    removed = []
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        try:
            c.remove(force=True, v=True)
            removed.append(c.name)
        except docker.errors.NotFound:
            pass
    for n in client.networks.list(filters={"label": LABEL}):
        try:
            n.remove()
            removed.append(n.name)
        except docker.errors.NotFound:
            pass
    return removed


class DockerLab:
    """See the module docstring.  Attributes once entered: ``name``, ``network``,
    ``dns``, ``sink``, ``target`` (container objects), ``dns_ip``, ``sink_ip``,
    ``target_ip`` (and ``*_ip6`` when ``ipv6``), ``target_pid``, ``bridge``;
    after ``add_proxies()``: ``proxy``, ``proxy_ip``, ``proxy_ip6``; after
    ``add_git_server()``: ``git_server``, ``git_ip``."""

    def __init__(
        self,
        client: docker.DockerClient,
        dns_config: dnsd.DnsConfig | None = None,
        ipv6: bool = True,
        target_image: str = TARGET_TAG,
        target_env: dict[str, str] | None = None,
        lock_timeout: float = 300.0,
        ready_timeout: float = 60.0,
    ) -> None:
        self.client = client
        self.dns_config = dns_config or dnsd.DnsConfig()
        self.want_ipv6 = ipv6
        self.ipv6 = False
        self.target_image = target_image
        self.target_env = dict(target_env or {})
        self.lock_timeout = lock_timeout
        self.ready_timeout = ready_timeout
        self.name = f"{NAME_PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
        self.network = None
        self.dns = self.sink = self.target = None
        self.dns_ip = self.sink_ip = self.target_ip = ""
        self.dns_ip6 = self.sink_ip6 = self.target_ip6 = ""
        self.target_pid = 0
        self.proxy = None
        self.proxy_ip = self.proxy_ip6 = ""
        self.git_server = None
        self.git_ip = ""
        self._extra: list = []
        self._lock_file = None

    # -- public API -----------------------------------------------------------------

    def address_for(self, name: str, family: int = 4) -> str:
        """The address the lab DNS hands out for ``name`` (4: A, 6: AAAA)."""
        v4, v6 = dnsd.address_for(name, self.dns_config)
        return v4 if family == 4 else v6

    def exec(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        timeout: float = 60,
        container=None,
        user: str = "",
        workdir: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` in the target (or ``container``); stdout/stderr as text.

        The timeout is enforced inside the container by coreutils ``timeout``
        (exit status 124 when it fires, 137 when it had to kill)."""
        container = container or self.target
        wrapped = ["timeout", "-k", "2", f"{timeout:g}", *argv]
        res = container.exec_run(
            wrapped, environment=env, demux=True, user=user, workdir=workdir, stdin=False, tty=False
        )
        out, err = res.output if res.output else (None, None)
        return subprocess.CompletedProcess(
            argv, res.exit_code,
            (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace"),
        )

    def nsenter(self, argv: list[str], check: bool = True, pid: int | None = None) -> subprocess.CompletedProcess:
        """Run a host command inside the target's network namespace."""
        return _nsenter(pid or self.target_pid, argv, check=check)

    def add_container(self, image: str, role: str, command: list[str] | None = None, **kw):
        """Start another container on the lab network, confined like the target
        (lab DNS, no default route, name ranges via the sink); removed with the
        lab.  E.g. a QUIC client from the sink image, or a second target."""
        if role in ("dns", "sink", "target") or any(c.name.endswith(f"-{role}") for c in self._extra):
            raise ValueError(f"role {role!r} is taken")
        c = self._run(image, role, command or ["sleep", "infinity"], dns=[self.dns_ip], **kw)
        self._extra.append(c)
        self._confine(self._addresses(c)[2])
        return c

    def add_proxies(self, image: str = PROXY_TAG, ready_timeout: float | None = None):
        """Start the ``proxy`` container (needs ``images.ensure_proxy_image()``): Squid
        on ``proxyd.HTTP_PORT`` (3128) and ``HTTP_AUTH_PORT`` (3129, basic auth
        ``proxyd.USER``/``PASSWORD``), Dante on ``SOCKS_PORT`` (1080, SOCKS4/4a/5)
        and ``SOCKS_AUTH_PORT`` (1081, SOCKS5 username/password); see
        tests/lab/proxyd.py.  Confined like the target, so the proxies reach
        nothing but the sink, and their own DNS lookups go to the lab DNS.
        Reachable from the lab as ``proxy_ip``/``proxy_ip6`` and by the name
        ``proxy`` (Docker's embedded DNS answers it before forwarding).  Returns
        the container once every port accepts connections."""
        if self.proxy is not None:
            raise ValueError("the lab has its proxies already")
        allow = [str(SUBNET_V4)] + ([str(SUBNET_V6)] if self.ipv6 else [])
        command = ["python3", "-m", "tests.lab.proxyd"]
        for net in allow:
            command += ["--allow", net]
        endpoint = self.client.api.create_endpoint_config(aliases=[PROXY_ALIAS])
        self.proxy = self.add_container(
            image, "proxy", command,
            volumes=self._repo_volume(), working_dir="/src",
            environment={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"},
            # squid and danted size tables by the fd limit; Docker's default is huge
            ulimits=[docker.types.Ulimit(name="nofile", soft=4096, hard=4096)],
            networking_config={self.name: endpoint},
        )
        self.proxy_ip, self.proxy_ip6, _ = self._addresses(self.proxy)
        self._wait_ready(self.proxy, timeout=ready_timeout)
        return self.proxy

    def add_git_server(self, image: str = TOOLS_TAG, ready_timeout: float | None = None):
        """Start the ``git`` container (needs ``images.ensure_tools_image()``): ``git daemon``
        on ``gitd.PORT`` (9418) serving the bare ``gitd.REPO`` with one commit, ``gitd.COMMIT``
        on ``refs/heads/main`` (see tests/lab/gitd.py).  Confined like the target; reachable
        from the lab at ``git_ip`` (``git_url()``).  Returns the container once it listens."""
        if self.git_server is not None:
            raise ValueError("the lab has its git server already")
        self.git_server = self.add_container(
            image, "git", ["python3", "-m", "tests.lab.gitd"],
            volumes=self._repo_volume(), working_dir="/src",
            environment={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"},
        )
        self.git_ip = self._addresses(self.git_server)[0]
        self._wait_ready(self.git_server, timeout=ready_timeout)
        return self.git_server

    def git_url(self, repo: str = gitd.REPO) -> str:
        """``git://198.18.0.6/repo.git``: the lab git server's repository, by address."""
        if self.git_server is None:
            raise ValueError("no git server: call add_git_server() first")
        return f"git://{self.git_ip}/{repo}"

    def proxy_url(self, scheme: str = "http", auth: bool = False, host: str = "") -> str:
        """URL of one of the lab's proxies, e.g. ``http://198.18.0.5:3128``,
        ``http://lab:labpass@198.18.0.5:3129``, ``socks5h://198.18.0.5:1080``.
        ``scheme``: http, socks4, socks4a, socks5, socks5h; ``auth`` picks the
        port that wants ``proxyd.USER``/``PASSWORD`` (and puts them in the URL);
        ``host`` defaults to ``proxy_ip``."""
        if self.proxy is None:
            raise ValueError("no proxies: call add_proxies() first")
        if scheme == "http":
            port = proxyd.HTTP_AUTH_PORT if auth else proxyd.HTTP_PORT
        elif scheme in ("socks5", "socks5h"):
            port = proxyd.SOCKS_AUTH_PORT if auth else proxyd.SOCKS_PORT
        elif scheme == "socks4" and not auth:
            port = proxyd.SOCKS_PORT
        elif scheme == "socks4a" and not auth:
            port = proxyd.SOCKS4A_PORT  # Dante has no SOCKS4a: OpenSSH's ssh -D
        else:
            raise ValueError(f"no {scheme!r} proxy{' with auth' if auth else ''} in the lab")
        host = host or self.proxy_ip
        if ":" in host:
            host = f"[{host}]"
        creds = f"{proxyd.USER}:{proxyd.PASSWORD}@" if auth else ""
        return f"{scheme}://{creds}{host}:{port}"

    def squid_access_log(self) -> str:
        """Squid's access log so far (one line per finished request or tunnel)."""
        r = self.exec(["cat", str(proxyd.SQUID_ACCESS_LOG)], container=self.proxy, timeout=10)
        if r.returncode != 0:
            raise DockerLabError(f"cannot read {proxyd.SQUID_ACCESS_LOG}: {r.stderr.strip()}")
        return r.stdout

    @property
    def bridge(self) -> str:
        """Host-side Linux bridge of the lab network."""
        return "br-" + self.network.id[:12]

    def host_interface(self, container=None) -> str:
        """Host-side veth of ``container`` (default: the target), e.g. to capture on."""
        container = container or self.target
        container.reload()
        pid = container.attrs["State"]["Pid"]
        # "12: eth0@if13: ..." -- the peer's ifindex in the host namespace (not
        # /sys/class/net: sysfs stays the host's under nsenter -n)
        line = _nsenter(pid, ["ip", "-o", "link", "show", "dev", "eth0"]).stdout
        m = re.search(r"eth0@if(\d+)", line)
        if not m:
            raise DockerLabError(f"cannot read eth0's peer: {line!r}")
        iflink = m.group(1)
        for dev in Path("/sys/class/net").iterdir():
            try:
                if (dev / "ifindex").read_text().strip() == iflink:
                    return dev.name
            except OSError:
                continue
        raise DockerLabError(f"no host interface with ifindex {iflink}")

    # -- set up / tear down -------------------------------------------------------------

    def __enter__(self) -> "DockerLab":
        self._acquire_lock()
        try:
            remove_leftovers(self.client)
            self._create_network()
            self._start_dns()
            self._start_sink()
            self._start_target()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        errors = []
        for c in (*self._extra, self.target, self.sink, self.dns):
            if c is None:
                continue
            try:
                c.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except Exception as exc:  # keep going: the network must go too
                errors.append(exc)
        self.target = self.sink = self.dns = self.proxy = self.git_server = None
        self._extra = []
        if self.network is not None:
            try:
                self.network.remove()
            except docker.errors.NotFound:
                pass
            except Exception as exc:
                errors.append(exc)
            self.network = None
        self._release_lock()
        if errors:
            raise DockerLabError(f"lab cleanup: {errors}")

    def _acquire_lock(self) -> None:
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        f = open(LOCK_PATH, "a+")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    f.close()
                    raise DockerLabError(
                        f"another Docker lab holds {LOCK_PATH} (one lab per daemon)"
                    ) from None
                time.sleep(0.5)
        self._lock_file = f

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _labels(self, role: str) -> dict[str, str]:
        return {LABEL: self.name, LABEL_ROLE: role, LABEL_PID: str(os.getpid())}

    def _create_network(self) -> None:
        v4 = docker.types.IPAMPool(subnet=str(SUBNET_V4), iprange=str(RANGE_V4), gateway=GATEWAY_V4)
        v6 = docker.types.IPAMPool(subnet=str(SUBNET_V6), iprange=str(RANGE_V6), gateway=GATEWAY_V6)
        attempts = [True, False] if self.want_ipv6 else [False]
        last = None
        for ipv6 in attempts:
            ipam = docker.types.IPAMConfig(pool_configs=[v4, v6] if ipv6 else [v4])
            try:
                self.network = self.client.networks.create(
                    self.name, driver="bridge", internal=True, enable_ipv6=ipv6, ipam=ipam,
                    labels=self._labels("network"), check_duplicate=True,
                )
                self.ipv6 = ipv6
                return
            except docker.errors.APIError as exc:
                last = exc
        raise DockerLabError(
            f"cannot create the lab network ({SUBNET_V4}): {last}; "
            "is another Docker network using 198.18.0.0/17?"
        )

    def _run(self, image: str, role: str, command: list[str], **kw):
        c = create_container(
            self.client, image, command, name=f"{self.name}-{role}", hostname=role,
            network=self.name, labels=self._labels(role), **kw,
        )
        c.start()
        c.reload()
        return c

    def _addresses(self, c) -> tuple[str, str, int]:
        c.reload()
        net = c.attrs["NetworkSettings"]["Networks"][self.name]
        return net["IPAddress"], net.get("GlobalIPv6Address") or "", c.attrs["State"]["Pid"]

    def _wait_ready(self, c, marker: str = "READY", timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        while time.monotonic() < deadline:
            c.reload()
            logs = c.logs(stdout=True, stderr=False).decode(errors="replace")
            if marker in logs:
                return
            if c.status in ("exited", "dead"):
                break
            time.sleep(0.1)
        raise DockerLabError(
            f"{c.name} not ready ({c.status}): {c.logs().decode(errors='replace')[-3000:]}"
        )

    def _repo_volume(self) -> dict:
        return {str(PROJECT_ROOT): {"bind": "/src", "mode": "ro"}}

    def _start_dns(self) -> None:
        self.dns = self._run(
            BASE_TAG, "dns",
            ["python3", "-m", "tests.lab.dnsd", "--config", self.dns_config.to_json(), "-v"],
            volumes=self._repo_volume(), working_dir="/src",
            environment={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"},
        )
        self._wait_ready(self.dns)
        self.dns_ip, self.dns_ip6, _ = self._addresses(self.dns)

    def _start_sink(self) -> None:
        self.sink = self._run(
            SINK_TAG, "sink",
            ["python3", "-m", "tests.lab.sink", "--dns-config", self.dns_config.to_json(),
             "--workdir", "/tmp", "-v"],
            volumes=self._repo_volume(), working_dir="/src",
            environment={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"},
        )
        self.sink_ip, self.sink_ip6, pid = self._addresses(self.sink)
        # The sink owns the whole name ranges; routes set from the host, so the
        # sink needs no NET_ADMIN of its own.
        _nsenter(pid, ["ip", "route", "add", "local", str(dnsd.LAB_V4), "dev", "lo"])
        _nsenter(pid, ["iptables", "-w", "-A", "INPUT", "-d", str(dnsd.BLACKHOLE_V4), "-j", "DROP"])
        if self.ipv6:
            _nsenter(pid, ["ip", "-6", "route", "add", "local", str(dnsd.LAB_V6), "dev", "lo"])
            _nsenter(pid, ["ip6tables", "-w", "-A", "INPUT", "-d", str(dnsd.BLACKHOLE_V6), "-j", "DROP"])
        self._wait_ready(self.sink)

    def _start_target(self) -> None:
        self.target = self._run(
            self.target_image, "target", ["sleep", "infinity"],
            dns=[self.dns_ip], environment=self.target_env or None,
            privileged=False,
        )
        self.target_ip, self.target_ip6, self.target_pid = self._addresses(self.target)
        self._confine(self.target_pid)

    def _confine(self, pid: int) -> None:
        """No default route, the name ranges via the sink, the gateway unreachable."""
        _nsenter(pid, ["ip", "route", "del", "default"], check=False)
        _nsenter(pid, ["ip", "route", "add", str(dnsd.LAB_V4), "via", self.sink_ip, "dev", "eth0"])
        _nsenter(pid, ["ip", "route", "add", "unreachable", f"{GATEWAY_V4}/32"])
        if self.ipv6:
            _nsenter(pid, ["ip", "-6", "route", "del", "default"], check=False)
            _nsenter(pid, ["ip", "-6", "route", "add", str(dnsd.LAB_V6), "via", self.sink_ip6, "dev", "eth0"])
            _nsenter(pid, ["ip", "-6", "route", "add", "unreachable", f"{GATEWAY_V6}/128"])
        left = (_nsenter(pid, ["ip", "route", "show", "default"]).stdout
                + _nsenter(pid, ["ip", "-6", "route", "show", "default"]).stdout)
        if left.strip():
            raise DockerLabError(f"container still has a default route: {left!r}")
