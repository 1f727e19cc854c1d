"""Proxies for the Docker lab's ``proxy`` container: Squid and Dante, configured here.

Runs as root inside ``egress-tui-test/proxy`` (base + squid + dante-server) as
``python3 -m tests.lab.proxyd --allow SUBNET ...`` (the repository at /src).
Nothing from /etc/squid or /etc/danted.conf is used: every configuration file
is written by this module into ``WORKDIR``.

    HTTP_PORT        3128  Squid.  CONNECT only to ports 443 and 8443 (any other
                           port: Squid's 403); plain HTTP (absolute-form GET) only
                           to port 80; only from the ``--allow`` subnets
    HTTP_AUTH_PORT   3129  the same, behind basic proxy auth (USER/PASSWORD,
                           basic_ncsa_auth over an htpasswd file): 407 first
    SOCKS_PORT       1080  Dante, SOCKS5 method "none" and SOCKS4/4a; names in
                           requests are resolved by danted through the
                           container's resolver (so socks5h works)
    SOCKS_AUTH_PORT  1081  a second danted, SOCKS5 username/password only
                           (RFC 1929) against the system user USER
    SOCKS4A_PORT     1082  OpenSSH's dynamic forwarding (``ssh -N -D``, logged
                           in as USER with a key to an sshd on 127.0.0.1:2222):
                           SOCKS4, 4a and 5 without auth.  Dante has no SOCKS4a
                           (it connects to the literal 0.0.0.x), ssh does; the
                           names are resolved by sshd, through the same resolver

Squid caches nothing and writes its access log to ``SQUID_ACCESS_LOG`` (the
tests read it with ``cat``).  Dante logs to stderr (the container's log).
When every port listens it prints ``READY {json}`` on stdout, then
stays in the foreground until one of the daemons exits (and exits with it).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HTTP_PORT = 3128
HTTP_AUTH_PORT = 3129
SOCKS_PORT = 1080
SOCKS_AUTH_PORT = 1081
SOCKS4A_PORT = 1082
SSHD_PORT = 2222  # on 127.0.0.1 only: the other end of ssh -D
CONNECT_PORTS = (443, 8443)
PLAIN_HTTP_PORTS = (80,)
USER = "lab"
PASSWORD = "labpass"

WORKDIR = Path("/tmp/proxyd")
SQUID_ACCESS_LOG = WORKDIR / "squid-access.log"
SQUID_CACHE_LOG = WORKDIR / "squid-cache.log"
SQUID_USER = "proxy"  # Debian's squid package runs as proxy:proxy


# A lab Squid: caches nothing, opens no side ports, starts and stops at once.
SQUID_QUIET = """\
logfile_rotate 0
cache deny all
cache_mem 8 MB
max_filedescriptors 4096
pinger_enable off
netdb_filename none
icp_port 0
htcp_port 0
shutdown_lifetime 1 seconds
"""


def squid_conf(allow: list[str], workdir: Path = WORKDIR) -> str:
    """squid.conf: two listeners, a port policy, auth on the second, no cache."""
    ports = " ".join(str(p) for p in CONNECT_PORTS)
    plain = " ".join(str(p) for p in PLAIN_HTTP_PORTS)
    return f"""\
# written by tests/lab/proxyd.py
http_port {HTTP_PORT} name=open
http_port {HTTP_AUTH_PORT} name=auth
visible_hostname proxy.lab
cache_effective_user {SQUID_USER}
pid_filename {workdir}/squid.pid
coredump_dir {workdir}
cache_log {workdir / SQUID_CACHE_LOG.name}
access_log stdio:{workdir / SQUID_ACCESS_LOG.name}
{SQUID_QUIET}via on
forwarded_for delete

auth_param basic program /usr/lib/squid/basic_ncsa_auth {workdir}/htpasswd
auth_param basic realm egress-tui lab proxy
auth_param basic children 2
auth_param basic credentialsttl 1 minute

acl lab_clients src {' '.join(allow)}
acl connect_ports port {ports}
acl plain_ports port {plain}
acl CONNECT method CONNECT
acl on_auth_port myportname auth
acl authenticated proxy_auth REQUIRED

http_access deny !lab_clients
http_access deny CONNECT !connect_ports
http_access deny !CONNECT !plain_ports
# the last ACL on a deny line being proxy_auth makes this a 407 challenge
http_access deny on_auth_port !authenticated
http_access allow lab_clients
http_access deny all
"""


def danted_conf(port: int, method: str, allow: list[str], ipv6: bool) -> str:
    """danted.conf for one listener: ``method`` is "none" (SOCKS4/4a/5) or "username"."""
    internal = [f"internal: 0.0.0.0 port = {port}"]
    if ipv6:
        internal.append(f"internal: :: port = {port}")
    rules = []
    for net in allow:
        rules.append(f"client pass {{\n    from: {net} to: 0/0\n    log: error\n}}")
    for net in allow:
        rules.append(
            f"socks pass {{\n    from: {net} to: 0/0\n    command: connect\n"
            f"    socksmethod: {method}\n    log: error connect\n}}"
        )
    return "\n".join([
        "# written by tests/lab/proxyd.py",
        "logoutput: stderr",
        *internal,
        "external: eth0",
        "clientmethod: none",
        f"socksmethod: {method}",
        "user.privileged: root",
        "user.unprivileged: nobody",
        "user.libwrap: nobody",
        *rules,
        "",
    ])


def sshd_conf(workdir: Path = WORKDIR) -> str:
    """sshd_config: key login for USER from 127.0.0.1, only to forward (ssh -D)."""
    return f"""\
# written by tests/lab/proxyd.py
ListenAddress 127.0.0.1:{SSHD_PORT}
HostKey {workdir}/ssh_host_ed25519_key
PidFile {workdir}/sshd.pid
AuthorizedKeysFile {workdir}/authorized_keys
# the keys live under /tmp, which StrictModes rejects (world-writable parent)
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowUsers {USER}
AllowTcpForwarding local
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
LogLevel INFO
"""


def _ssh_keys(workdir: Path = WORKDIR) -> None:
    for name in ("ssh_host_ed25519_key", "id_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"proxyd-{name}",
                        "-f", str(workdir / name)], check=True, timeout=30)
    (workdir / "authorized_keys").write_text((workdir / "id_ed25519.pub").read_text())


def _ssh_socks_argv(workdir: Path = WORKDIR) -> list[str]:
    """ssh -D on every address of the container, to the local sshd."""
    return ["ssh", "-N", "-D", f"*:{SOCKS4A_PORT}", "-p", str(SSHD_PORT), "-i", str(workdir / "id_ed25519"),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR", f"{USER}@127.0.0.1"]


def _hash(password: str, scheme: str) -> str:
    """A crypt(3)-style hash by ``openssl passwd`` (the password on stdin, not argv)."""
    p = subprocess.run(["openssl", "passwd", scheme, "-stdin"], input=password + "\n",
                       capture_output=True, text=True, check=True, timeout=30)
    return p.stdout.strip()


def _ensure_user(name: str, password: str) -> None:
    """The system user Dante's "username" method checks (it reads /etc/shadow)."""
    hashed = _hash(password, "-6")
    if subprocess.run(["id", "-u", name], capture_output=True, check=False).returncode == 0:
        subprocess.run(["usermod", "--password", hashed, name], check=True, timeout=30)
    else:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--password", hashed, name], check=True, timeout=30)


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _listening() -> set[int]:
    """TCP ports in LISTEN state in this network namespace.  Read from /proc rather than
    probed with a connection, which the daemons would log as a broken client."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _log(msg: str) -> None:
    print(f"proxyd: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allow", action="append", required=True,
                    help="client subnet allowed to use the proxies (repeat)")
    ap.add_argument("--ready-timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    allow = [str(ipaddress.ip_network(a)) for a in args.allow]
    ipv6 = _has_ipv6()

    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    (WORKDIR / "squid.conf").write_text(squid_conf(allow))
    (WORKDIR / "htpasswd").write_text(f"{USER}:{_hash(PASSWORD, '-apr1')}\n")
    (WORKDIR / "danted.conf").write_text(danted_conf(SOCKS_PORT, "none", allow, ipv6))
    (WORKDIR / "danted-auth.conf").write_text(danted_conf(SOCKS_AUTH_PORT, "username", allow, ipv6))
    for name in (SQUID_ACCESS_LOG.name, SQUID_CACHE_LOG.name):
        (WORKDIR / name).touch()
    shutil.chown(WORKDIR, SQUID_USER, SQUID_USER)
    for f in WORKDIR.iterdir():
        shutil.chown(f, SQUID_USER, SQUID_USER)
    # after the chown: these stay root's (sshd and ssh refuse keys others can read)
    (WORKDIR / "sshd_config").write_text(sshd_conf())
    _ssh_keys()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    _ensure_user(USER, PASSWORD)

    procs = {
        "squid": subprocess.Popen(["squid", "-N", "-f", str(WORKDIR / "squid.conf")]),
        "danted": subprocess.Popen(["danted", "-f", str(WORKDIR / "danted.conf"),
                                    "-p", str(WORKDIR / "danted.pid")]),
        "danted-auth": subprocess.Popen(["danted", "-f", str(WORKDIR / "danted-auth.conf"),
                                         "-p", str(WORKDIR / "danted-auth.pid")]),
        "sshd": subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(WORKDIR / "sshd_config")]),
    }

    def stop(code: int) -> None:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        sys.exit(code)

    signal.signal(signal.SIGTERM, lambda *_: stop(0))

    ports = [HTTP_PORT, HTTP_AUTH_PORT, SOCKS_PORT, SOCKS_AUTH_PORT, SOCKS4A_PORT]
    deadline = time.monotonic() + args.ready_timeout
    waiting = list(ports) + [SSHD_PORT]
    while waiting:
        if "ssh" not in procs and SSHD_PORT not in waiting:
            procs["ssh"] = subprocess.Popen(_ssh_socks_argv(), stdin=subprocess.DEVNULL)
        for name, p in procs.items():
            if p.poll() is not None:
                _log(f"{name} exited with {p.returncode} before the ports were up")
                if name == "squid":
                    _log(SQUID_CACHE_LOG.read_text(errors="replace")[-3000:])
                stop(1)
        up = _listening()
        waiting = [port for port in waiting if port not in up]
        if waiting and time.monotonic() > deadline:
            _log(f"ports {waiting} still closed after {args.ready_timeout:g} s")
            stop(1)
        if waiting:
            time.sleep(0.1)
    print("READY " + json.dumps({"ports": ports, "ipv6": ipv6, "allow": allow}), flush=True)

    # One daemon gone is the end: the lab must not look healthy with half its proxies.
    # As PID 1 this also reaps the orphans the daemons leave behind.
    ours = {p.pid: name for name, p in procs.items()}
    while True:
        pid, status = os.wait()
        if pid in ours:
            _log(f"{ours[pid]} exited ({status}); stopping")
            procs[ours[pid]].returncode = os.waitstatus_to_exitcode(status)
            stop(1)


if __name__ == "__main__":
    sys.exit(main())
