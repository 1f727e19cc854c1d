"""Container engines behind one small interface: Docker and Podman.

Both are reached through their Docker-compatible API with the docker SDK (Podman's API socket
speaks it), so one class does the work and Podman's differs only where Podman does: where its
socket is, where its containers' DNS comes from, and how a rootless container's PID is proved
to be its own. What an engine offers:

- ``list`` its containers, ``find`` one by name, id or id prefix (``lookup``: None when it
  does not know it), ``inspect`` it (``ContainerInfo``: PID, addresses, env, image, labels)
  and ``resolvers``: the DNS servers it gave the container, from its own settings;
- ``exec`` a command in a container with a time limit (enforced inside the container);
- ``start_helper``: a helper container sharing a container's network namespace;
- ``events``: stop and restart of a container, as the engine reports them.

``connect`` finds the engines asked for (``auto``: every one reachable); ``locate`` the one
that knows a container and says which. Nothing here imports Textual.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from egress_tui.live import containers
from egress_tui.live.containers import ContainerInfo, DockerError

ENGINES = ("docker", "podman")
ROOTFUL_PODMAN = "/run/podman/podman.sock"


class ContainerEngine:
    """One engine (Docker's API) reached through the docker SDK client ``dc``."""

    name = "docker"
    title = "Docker"

    def __init__(self, dc, address: str):
        self.dc = dc
        self.address = address      # for messages, login masked
        self.rootless_uid: int | None = None

    def __repr__(self) -> str:
        return f"<{self.title} at {self.address}>"

    # -- finding containers ------------------------------------------------------------------

    def _mine(self, info: ContainerInfo) -> ContainerInfo:
        info.engine = self.name
        return info

    def list(self, all: bool = False) -> list[ContainerInfo]:
        return [self._mine(i) for i in containers.list_containers(self.dc, all=all)]

    def find(self, ref: str) -> ContainerInfo:
        """A container by name, id or unique id prefix; DockerError (one line) otherwise."""
        return self._mine(containers.find_container(self.dc, ref))

    def lookup(self, ref: str) -> ContainerInfo | None:
        """The container ``ref`` names here, or None when this engine knows no such container.
        DockerError when the engine fails or the prefix is ambiguous."""
        from docker.errors import DockerException, NotFound
        try:
            return self._mine(containers._info(self.dc.containers.get(ref)))
        except NotFound:
            pass
        except DockerException as e:
            raise DockerError(f"cannot look up container {ref} in {self.title}: {e}") from None
        matches = [c for c in self.list(all=True) if c.id.startswith(ref) or c.name == ref]
        if len(matches) > 1:
            raise DockerError(f"'{ref}' matches {len(matches)} {self.title} containers; give more of the id")
        return matches[0] if matches else None

    def inspect(self, ref: str) -> ContainerInfo:
        """What the engine says of the container now (its PID changes with each start)."""
        return self.find(ref)

    def resolvers(self, info: ContainerInfo) -> list[str]:
        return containers.engine_resolvers(self.dc, info)

    # -- may this host act in the container's namespace? ----------------------------------------

    @property
    def is_local(self) -> bool:
        return containers.is_local(self.dc)

    def pid_refusal(self, info: ContainerInfo) -> str:
        return containers.pid_refusal(info)

    def netns_refusal(self, info: ContainerInfo | None = None) -> str:
        if not self.is_local:
            return f"the {self.title} engine at {self.address} is not a local unix socket"
        if info is not None and info.pid:
            return self.pid_refusal(info)
        return ""

    def enter_refusal(self) -> str:
        """Why this process cannot enter the engine's namespaces even where they are provably
        local ("" when it can): it is not root."""
        if containers.can_enter_namespaces():
            return ""
        return ("--method netns works from the host, in the container's namespace: run as root (sudo), "
                "or use --method helper")

    def host_network_refusal(self, info: ContainerInfo) -> str:
        return containers.host_network_refusal(self.dc, info)

    def choose_method(self, info: ContainerInfo | None, method: str) -> str:
        """"netns" or "helper" for a requested method; an explicit netns that cannot be proven
        safe is refused with one line (DockerError)."""
        if method == "helper":
            return "helper"
        reason = self.netns_refusal(info)
        if method == "auto":
            return "netns" if containers.can_enter_namespaces() and not reason else "helper"
        if reason:
            raise DockerError(f"--method netns refused: {reason}; use --method helper")
        return "netns"

    # -- doing things in a container ---------------------------------------------------------------

    def exec(self, container_id: str, spec, on_line: Callable[[str], None], stop=None, hide=(),
             on_pid: Callable[[int], None] | None = None) -> tuple[int | None, bool]:
        """Run ``spec.command`` in the container, its time limit enforced inside it."""
        from egress_tui.live.execute import run_in_container
        return run_in_container(self.dc, container_id, spec, on_line, stop, hide=hide, on_pid=on_pid)

    def start_helper(self, info: ContainerInfo, image: str, command: list[str], **kw):
        """A helper container in ``info``'s network namespace (see helpers.start_helper)."""
        from egress_tui.live.helpers import start_helper
        return start_helper(self.dc, info.id, info.name, image, command, **kw)

    def events(self, container_id: str, timeout: float) -> list[str]:
        """What happened to the container in the next ``timeout`` seconds (``die``, ``start``,
        ``restart``, ``destroy``...): returns at the first such event, or empty at the end."""
        now = time.time()
        seen: list[str] = []
        try:
            stream = self.dc.events(since=int(now), until=int(now + max(timeout, 1.0)) + 1,
                                    filters={"container": container_id, "type": "container"}, decode=True)
            try:
                for ev in stream:
                    action = str(ev.get("Action") or ev.get("status") or "")
                    if action in ("die", "stop", "start", "restart", "destroy", "kill", "pause", "unpause"):
                        seen.append(action)
                        break
            finally:
                close = getattr(stream, "close", None)
                if close:
                    close()
        except Exception:  # noqa: BLE001 - events are a shortcut; the caller still polls
            pass
        return seen


class PodmanEngine(ContainerEngine):
    """Podman through its API socket (rootful ``/run/podman/podman.sock``, rootless
    ``$XDG_RUNTIME_DIR/podman/podman.sock``, or ``CONTAINER_HOST``)."""

    name = "podman"
    title = "Podman"

    def _libpod(self, path: str) -> dict:
        """GET one of Podman's own endpoints (``/libpod/...``); {} when it cannot answer."""
        try:
            r = self.dc.api.get(f"{self.dc.api.base_url}/v4.0.0/libpod/{path}", timeout=10)
            return r.json() if r.status_code == 200 else {}
        except Exception:  # noqa: BLE001 - extra knowledge only; the compat API answered already
            return {}

    def resolvers(self, info: ContainerInfo) -> list[str]:
        """What Podman wrote into the container's resolv.conf, from its settings: the
        container's --dns, the DNS of networks that have it (aardvark-dns at the network's
        gateway), slirp4netns's forwarder; else this host's servers, which Podman copies
        (known only when the engine is on this host)."""
        from docker.errors import DockerException
        try:
            attrs = self.dc.containers.get(info.id).attrs
        except DockerException as e:
            raise DockerError(f"cannot read the DNS settings of {info.name}: {e}") from None
        host = attrs.get("HostConfig") or {}
        mode = host.get("NetworkMode") or ""
        if mode.startswith("container:"):
            other = self.find(mode.split(":", 1)[1])
            return self.resolvers(other) if other.id != info.id else []
        servers: list[str] = []
        for name, net in ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).items():
            if self._libpod(f"networks/{name}/json").get("dns_enabled"):
                servers += [a for a in (net.get("Gateway"), net.get("IPv6Gateway")) if a]
        if mode == "slirp4netns":
            servers.append("10.0.2.3")
        explicit = list(host.get("Dns") or [])
        upstream = explicit or (containers.host_nameservers() if self.is_local else [])
        return list(dict.fromkeys(servers + upstream))

    def pid_refusal(self, info: ContainerInfo) -> str:
        """Rootful Podman's cgroups name the container (as Docker's do); a rootless container
        on cgroup v1 has none of its own, so its PID is proved through its conmon instead:
        the PID's parent is the conmon Podman reports for it, started for this container id."""
        refused = containers.pid_refusal(info)
        if not refused or "cgroup does not name" not in refused:
            return refused
        conmon = int(((self._libpod(f"containers/{info.id}/json").get("State") or {}).get("ConmonPid")) or 0)
        if conmon > 1 and _parent(info.pid) == conmon and info.id.encode() in _cmdline(conmon).split(b"\0"):
            return ""
        return refused

    def enter_refusal(self) -> str:
        if containers.can_enter_namespaces() or self.rootless_uid is None:
            return super().enter_refusal()
        return (f"containers of rootless Podman (uid {self.rootless_uid}) live in that user's own user namespace, "
                "which egress-tui cannot enter without root: use --method helper (the default here), or run as root")


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f.read(8192).splitlines():
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read(65536)
    except OSError:
        return b""


# -- finding the engines ----------------------------------------------------------------------

def podman_address() -> str:
    """Where Podman's API socket is: ``CONTAINER_HOST``, else the rootful socket for root,
    else the user's rootless one."""
    env = os.environ.get("CONTAINER_HOST")
    if env:
        return env
    if os.geteuid() == 0:
        return f"unix://{ROOTFUL_PODMAN}"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return f"unix://{runtime}/podman/podman.sock"


def _socket_path(url: str) -> str:
    return url[len("unix://"):] if url.startswith("unix://") else ""


def _rootless_uid(url: str) -> int | None:
    """The uid of a rootless Podman socket (``/run/user/UID/...`` or owned by a user), else None."""
    path = _socket_path(url)
    if not path:
        return None
    try:
        uid = os.stat(path).st_uid
    except OSError:
        parts = path.split("/")
        return int(parts[3]) if path.startswith("/run/user/") and len(parts) > 3 and parts[3].isdigit() else None
    return uid or None


def connect_podman(url: str | None = None) -> PodmanEngine:
    """Podman at ``url`` (default ``podman_address()``), or a DockerError saying why not."""
    from egress_tui.core.secrets import mask_urls
    url = url or podman_address()
    shown = mask_urls(url)
    if url.startswith("ssh://"):
        raise DockerError(f"Podman at {shown} is reached over ssh, which egress-tui does not speak: forward its "
                          "socket (ssh -L /tmp/podman.sock:/run/podman/podman.sock HOST) and set "
                          "CONTAINER_HOST=unix:///tmp/podman.sock")
    path = _socket_path(url)
    uid = _rootless_uid(url)
    if path:
        try:
            os.stat(path)
        except PermissionError:  # another user's /run/user/UID is theirs alone
            raise DockerError(_not_yours(shown, uid)) from None
        except OSError:
            hint = ("start it: podman system service --time=0 &" if os.geteuid() == 0 or uid == os.geteuid()
                    else "is it running?")
            raise DockerError(f"Podman is not reachable at {shown} (no socket there); {hint}") from None
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - a dependency
        raise DockerError("the docker Python package is missing: pip install docker") from None
    try:
        dc = docker.DockerClient(base_url=url, timeout=10)
        dc.ping()
    except DockerException as e:
        if "Permission denied" in str(e):
            raise DockerError(_not_yours(shown, uid)) from None
        reason = mask_urls(str(e).split("(")[0].strip()) or type(e).__name__
        raise DockerError(f"Podman is not reachable at {shown} ({reason}); start it: "
                          "podman system service --time=0 &") from None
    engine = PodmanEngine(dc, shown)
    if uid is not None and _is_rootless(engine):
        engine.rootless_uid = uid
    return engine


def _not_yours(shown: str, uid: int | None) -> str:
    if uid is not None and uid != os.geteuid():
        return (f"no permission to talk to Podman at {shown}: a rootless Podman answers only its own user "
                f"(uid {uid}); run egress-tui as that user, or as root")
    return f"no permission to talk to Podman at {shown}: run as root, or as the socket's owner"


def _is_rootless(engine: PodmanEngine) -> bool:
    info = engine._libpod("info")
    return bool(((info.get("host") or {}).get("security") or {}).get("rootless"))


def connect_docker() -> ContainerEngine:
    """Docker from the environment (``DOCKER_HOST``); a Podman behind Docker's socket (the
    podman-docker package links it) is Podman."""
    dc = containers.client()
    address = containers.engine_address(dc)
    if _speaks_as_podman(dc):
        engine: ContainerEngine = PodmanEngine(dc, address)
        if _is_rootless(engine):
            engine.rootless_uid = _rootless_uid(address)
        return engine
    return ContainerEngine(dc, address)


def _speaks_as_podman(dc) -> bool:
    try:
        comps = dc.version().get("Components") or []
    except Exception:  # noqa: BLE001 - an engine that cannot say is taken for what it was asked as
        return False
    return any("podman" in str(c.get("Name", "")).lower() for c in comps)


def wrap(dc) -> ContainerEngine:
    """An engine for a docker SDK client made elsewhere (tests inject one)."""
    if isinstance(dc, ContainerEngine):
        return dc
    address = containers.engine_address(dc)
    return PodmanEngine(dc, address) if _speaks_as_podman(dc) else ContainerEngine(dc, address)


class Engines(list):
    """The engines that answered, and why the others did not (``unreachable``: one line each)."""

    unreachable: list[str] = []


def connect(kind: str = "auto") -> list[ContainerEngine]:
    """The engines asked for: ``docker`` or ``podman`` (DockerError, one line, when it cannot
    be reached), or ``auto``: every engine that answers (Docker, then Podman where its socket
    exists or ``CONTAINER_HOST`` names it); DockerError with Docker's reason when none does."""
    if kind == "docker":
        return Engines([connect_docker()])
    if kind == "podman":
        return Engines([connect_podman()])
    if kind != "auto":
        raise DockerError(f"--engine {kind}: one of auto, {', '.join(ENGINES)}")
    found = Engines()
    errors: list[DockerError] = []
    try:
        found.append(connect_docker())
    except DockerError as e:
        errors.append(e)
    url = podman_address()
    if os.environ.get("CONTAINER_HOST") or os.path.exists(_socket_path(url) or "/nonexistent"):
        try:
            podman = connect_podman(url)
            if not any(_same_engine(podman, other) for other in found):
                found.append(podman)
        except DockerError as e:
            errors.append(e)
    if not found:
        raise errors[0] if len(errors) == 1 else DockerError("; ".join(str(e) for e in errors))
    found.unreachable = [str(e) for e in errors]
    return found


def _same_engine(a: ContainerEngine, b: ContainerEngine) -> bool:
    pa, pb = _socket_path(_url(a)), _socket_path(_url(b))
    return bool(pa and pb and os.path.realpath(pa) == os.path.realpath(pb))


def _url(engine: ContainerEngine) -> str:
    base = str(getattr(engine.dc.api, "base_url", ""))
    return engine.address if engine.address.startswith("unix://") else base


def locate(ref: str, engines: list[ContainerEngine]) -> tuple[ContainerEngine, ContainerInfo, str]:
    """(engine, container, notice) for a name, id or id prefix: the engine that knows it.
    The notice says which engine it was when there was a choice (else ""). DockerError (one
    line) when none or more than one knows it."""
    unreachable = getattr(engines, "unreachable", [])
    if len(engines) == 1 and not unreachable:
        e = engines[0]
        return e, e.find(ref), ""
    hits: list[tuple[ContainerEngine, ContainerInfo]] = []
    for e in engines:
        info = e.lookup(ref)
        if info is not None:
            hits.append((e, info))
    names = " and ".join(e.title for e in engines)
    if len(hits) > 1:
        raise DockerError(f"'{ref}' names a container in {names}: say which with --engine "
                          f"{' or --engine '.join(e.name for e, _ in hits)}")
    if not hits:
        running = []
        for e in engines:
            try:
                running += [f"{c.name} ({e.name})" for c in e.list()[:8]]
            except DockerError:
                continue
        raise DockerError(f"no container named or with id '{ref}' in {names} (running: "
                          f"{', '.join(running[:8]) or 'none running'})" + "".join(f"; {u}" for u in unreachable))
    engine, info = hits[0]
    return engine, info, f"found {info.name} in {engine.title} ({engine.address})"


def list_all(engines: list[ContainerEngine], all: bool = False) -> list[ContainerInfo]:
    """The containers of every engine given, each marked with its engine (``info.engine``);
    an engine that fails meanwhile is left out unless it is the only one."""
    out: list[ContainerInfo] = []
    errors: list[DockerError] = []
    for e in engines:
        try:
            out += e.list(all=all)
        except DockerError as err:
            errors.append(err)
    if errors and not out and len(errors) == len(engines):
        raise errors[0]
    return sorted(out, key=lambda i: (i.name, i.engine))
