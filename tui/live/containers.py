"""Docker plumbing: find containers, follow them across restarts, capture their traffic.

Through the docker SDK (so ``DOCKER_HOST`` is honoured). Capture prefers entering the
container's network namespace from the host (no change to the image, nothing runs in
the container); where the host cannot (not root, Docker Desktop, a remote engine), a
helper container shares the target's namespace and streams tcpdump's pcap output back
through the Docker API. Nothing here imports Textual.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from egress_tui.core.proxy import ProxyConfig
from egress_tui.core.proxy import from_env as proxy_from_env
from egress_tui.live.capture import CaptureError, Frame, NetnsSource
from egress_tui.live.helpers import HelperOwner, remove_quietly, start_helper
from egress_tui.live.nflog import NFLOG_INTERFACE
from egress_tui.wire.pcapfile import read_frames

DEFAULT_HELPER_IMAGE = "nicolaka/netshoot"  # public image with tcpdump; see README


class DockerError(Exception):
    """Docker is unreachable or a container cannot be found; one line, says what to do."""


@dataclass
class ContainerInfo:
    id: str
    name: str
    image: str
    status: str
    networks: list[str]
    pid: int
    addresses: list[str]
    # HTTP(S)_PROXY, ALL_PROXY, NO_PROXY from the engine's record of the container (Config.Env),
    # never from inside it: a process in the container cannot change what is shown here
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    labels: dict[str, str] = field(default_factory=dict)
    engine: str = "docker"  # which engine knows it (live/engines.py)

    @property
    def short_id(self) -> str:
        return self.id[:12]


def client():
    """A docker client from the environment, or a DockerError saying why not."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - a dependency
        raise DockerError("the docker Python package is missing: pip install docker") from None
    try:
        c = docker.from_env(timeout=10)
        c.ping()
        return c
    except DockerException as e:
        from egress_tui.core.secrets import mask_urls  # DOCKER_HOST may carry a login (ssh://user@host)
        where = mask_urls(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
        reason = mask_urls(str(e).split("(")[0].strip()) or type(e).__name__
        if "Permission denied" in str(e):
            raise DockerError(f"no permission to talk to Docker at {where}: run as root or join "
                              "the docker group") from None
        raise DockerError(f"Docker is not reachable at {where} ({reason}); is dockerd running?") from None


def _info(c) -> ContainerInfo:
    attrs = c.attrs
    state = attrs.get("State", {})
    nets = attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
    addrs = []
    for n in nets.values():
        for k in ("IPAddress", "GlobalIPv6Address"):
            if n.get(k):
                addrs.append(n[k])
    image = attrs.get("Config", {}).get("Image", "") or (c.image.tags[0] if c.image and c.image.tags else "")
    env = (attrs.get("Config") or {}).get("Env") or []
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return ContainerInfo(c.id, c.name, image, state.get("Status", c.status), sorted(nets),
                         int(state.get("Pid") or 0), addrs, proxy_from_env(env),
                         {str(k): str(v) for k, v in list(labels.items())[:256]} if isinstance(labels, dict) else {})


def docker_dns(dc, attrs: dict) -> list[str]:
    """Upstream servers of Docker's embedded resolver for a container (``attrs``: what the
    engine says of it): its --dns, else the daemon's own (the host's resolv.conf,
    systemd-resolved's real one when the host points at 127.0.0.53), which the embedded
    resolver forwards to from the container. Empty when the engine is elsewhere and the
    container has no --dns: that engine's host's servers cannot be known from here."""
    explicit = list((attrs.get("HostConfig") or {}).get("Dns") or [])
    if explicit or not is_local(dc):
        return explicit
    return host_nameservers()


def engine_resolvers(dc, info: ContainerInfo) -> list[str]:
    """The resolvers the engine gave the container, from the engine's own settings.

    Never from files inside the container: it may rewrite its resolv.conf, and what it
    names there would then be trusted to answer DNS and let through the firewall.
    On a user-defined network, Docker's embedded resolver (127.0.0.11) and the upstream
    servers it forwards to from the container's namespace; on the default bridge, the
    container's --dns or the daemon's.
    """
    from docker.errors import DockerException
    try:
        attrs = dc.containers.get(info.id).attrs
    except DockerException as e:
        raise DockerError(f"cannot read the DNS settings of {info.name}: {e}") from None
    mode = (attrs.get("HostConfig") or {}).get("NetworkMode") or "default"
    if mode.startswith("container:"):
        other = find_container(dc, mode.split(":", 1)[1])
        return engine_resolvers(dc, other) if other.id != info.id else []
    nets = list(((attrs.get("NetworkSettings") or {}).get("Networks") or {}))
    upstream = docker_dns(dc, attrs)
    builtin = ("default", "bridge", "host", "none")
    if mode not in builtin or any(n not in builtin for n in nets):
        return ["127.0.0.11", *upstream]
    return upstream


def host_nameservers() -> list[str]:
    def read(path: str) -> list[str]:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return [ln.split()[1] for ln in f if ln.startswith("nameserver") and len(ln.split()) > 1]
        except OSError:
            return []
    servers = read("/etc/resolv.conf")
    if any(s.startswith("127.") for s in servers):
        servers = read("/run/systemd/resolve/resolv.conf") or servers
    return [s for s in servers if not s.startswith("127.") and s != "::1"]


def list_containers(dc, all: bool = False) -> list[ContainerInfo]:
    from docker.errors import DockerException, NotFound
    out = []
    try:
        items = dc.containers.list(all=all)
    except DockerException as e:
        raise DockerError(f"cannot list containers: {e}") from None
    for c in items:
        try:
            out.append(_info(c))
        except NotFound:
            continue  # removed while we listed
    return sorted(out, key=lambda i: i.name)


def find_container(dc, ref: str) -> ContainerInfo:
    """A container by name, id, or unique id prefix."""
    from docker.errors import DockerException, NotFound
    try:
        return _info(dc.containers.get(ref))
    except NotFound:
        pass
    except DockerException as e:
        raise DockerError(f"cannot look up container {ref}: {e}") from None
    matches = [c for c in list_containers(dc, all=True) if c.id.startswith(ref) or c.name == ref]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise DockerError(f"'{ref}' matches {len(matches)} containers; give more of the id")
    running = ", ".join(c.name for c in list_containers(dc)[:8]) or "none running"
    raise DockerError(f"no container named or with id '{ref}' (running: {running})")


def is_local(dc) -> bool:
    """True when the engine is reached through a unix socket on this machine. Anything else
    (tcp://, ssh://, even tcp://127.0.0.1, which may be a tunnel to another machine) is remote."""
    url = str(getattr(dc.api, "base_url", ""))
    return url.startswith("http+docker://localhost") or url.startswith("http+docker://localunixsocket")


def engine_address(dc) -> str:
    """Where the engine is, for messages (userinfo masked)."""
    from egress_tui.core.secrets import mask_urls
    if is_local(dc):
        return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return mask_urls(os.environ.get("DOCKER_HOST") or str(getattr(dc.api, "base_url", "?")))


def pid_refusal(info: ContainerInfo, proc: str = "/proc") -> str:
    """Why the PID the engine reports for this container is not provably one of its processes
    on this host ("" when it is): its cgroup must name the container's full id, and it must not
    be this host's PID 1. An engine elsewhere (or in another PID namespace) hands out PIDs
    that mean other processes here, and entering one would act on the wrong namespace."""
    pid = info.pid
    if pid <= 1:
        return f"the engine reports PID {pid} for container {info.name}"
    if len(info.id) != 64 or any(c not in "0123456789abcdef" for c in info.id):
        return f"container {info.name} has no full id to check its PID against"
    seen = False
    for name in ("cgroup", "cpuset"):
        try:
            with open(f"{proc}/{pid}/{name}", encoding="utf-8", errors="replace") as f:
                if info.id in f.read(65536):
                    return ""
            seen = True
        except OSError:
            continue
    if not seen:
        return f"PID {pid}, which the engine reports for container {info.name}, is not a process on this host"
    return f"process {pid} on this host is not in container {info.name} (its cgroup does not name the container)"


def host_network_refusal(dc, info: ContainerInfo) -> str:
    """Why no firewall may be applied for this container ("" when it may): one on the host's
    own network (--network host, directly or through another container) would lock down
    this host, not the container."""
    from docker.errors import DockerException
    seen = set()
    ref = info.id
    while ref not in seen:
        seen.add(ref)
        try:
            mode = (dc.containers.get(ref).attrs.get("HostConfig") or {}).get("NetworkMode") or ""
        except DockerException as e:
            # not knowing is no permission: the namespace might be this host's
            raise DockerError(f"cannot tell whether {info.name} uses the host's network: {e}") from None
        if mode == "host":
            return (f"container {info.name} uses the host's network (--network host): a firewall there "
                    "would lock down this host, not the container")
        if not mode.startswith("container:"):
            return ""
        ref = mode.split(":", 1)[1]
    return ""


def netns_refusal(dc, info: ContainerInfo | None = None) -> str:
    """Why egress-tui must not act from this host in the container's network namespace (""
    when it may): the engine is not local, or the container's PID is not provably its own.
    A stopped container's PID is checked when it starts (ContainerSource)."""
    if not is_local(dc):
        return f"the Docker engine at {engine_address(dc)} is not a local unix socket"
    if info is not None and info.pid:
        return pid_refusal(info)
    return ""


def choose_method(dc, info: ContainerInfo | None, method: str) -> str:
    """"netns" or "helper" for a requested method; an explicit netns that cannot be proven
    safe is refused with one line (DockerError)."""
    if method == "helper":
        return "helper"
    reason = netns_refusal(dc, info)
    if method == "auto":
        return "netns" if can_enter_namespaces() and not reason else "helper"
    if reason:
        raise DockerError(f"--method netns refused: {reason}; use --method helper")
    return "netns"


def can_enter_namespaces() -> bool:
    """True when this process can setns into other processes' network namespaces."""
    return os.geteuid() == 0 and os.path.exists("/proc/self/ns/net")


class ContainerSource:
    """Capture a container from the host by entering its network namespace, following it
    across stops and restarts (a restart gives it a new process and a new namespace)."""

    def __init__(self, dc, ref: str, bpf: str | None = None, engine=None):
        self.dc = dc
        self.ref = ref
        self.bpf = bpf
        # the container's engine (live/engines.py): its DNS settings, its PID proof, its events;
        # None: Docker's, through this module
        self.engine = engine
        self.info = find_container(dc, ref)
        if engine is not None:
            self.info.engine = engine.name
        self.description = f"netns of {self.info.name}"
        self.method = "netns (host)"
        self.kernel_drops = 0
        self.errors = 0
        self.state = "starting"
        self.on_state = None  # callable(str), set by the Capturer's owner
        self.interface_names: dict[int, str] = {}  # the current namespace's (see NetnsSource)
        self.ready = threading.Event()  # set once the first namespace's sockets listen

    def _say(self, state: str) -> None:
        self.state = state
        if self.on_state:
            self.on_state(state)

    def batches(self, stop: threading.Event) -> Iterator[list[Frame]]:
        from docker.errors import DockerException, NotFound
        while not stop.is_set():
            try:
                info = _info(self.dc.containers.get(self.info.id))
            except NotFound:
                self._say(f"container {self.info.name} was removed")
                return
            except DockerException as e:
                self._say(f"Docker unreachable: {e}")
                if stop.wait(2.0):
                    return
                continue
            if self.engine is not None:
                info.engine = self.engine.name
            if info.status != "running" or not info.pid:
                self._say(f"container {info.name} is {info.status}; waiting for it to start")
                if self._wait_start(stop):
                    return
                continue
            refused = self.engine.pid_refusal(info) if self.engine is not None else pid_refusal(info)
            if refused:
                raise CaptureError(f"not entering the namespace: {refused}; use --method helper")
            self.info = info
            # which DNS answers count: only those from the resolvers the engine configured
            self.resolvers = (self.engine.resolvers(info) if self.engine is not None
                              else engine_resolvers(self.dc, info))
            inner = NetnsSource(info.pid, info.name, bpf=self.bpf)
            self.interface_names = inner.interface_names
            inner.ready = self.ready
            said = False
            try:
                for batch in inner.batches(stop):
                    if not said:
                        # said once the sockets listen (its first batch comes after), never
                        # before: a user, or a test, starts traffic when it reads "capturing"
                        said = True
                        self._say("capturing")
                    self.kernel_drops = self._drops_base + inner.kernel_drops
                    yield batch
            except CaptureError:
                if os.path.exists(f"/proc/{info.pid}"):
                    raise
                # the process went away while we entered: it is restarting
            self._drops_base = self.kernel_drops
            self.description = inner.description
            if not stop.is_set():
                self._say(f"container {info.name} stopped; waiting for it to come back")
                time.sleep(0.2)

    def _wait_start(self, stop: threading.Event) -> bool:
        """Wait (about a second) for the stopped container to start again: through the
        engine's events when there is an engine, which return as soon as it starts; True
        when the capture is to stop."""
        started = time.monotonic()
        if self.engine is not None and not stop.is_set() and self.engine.events(self.info.id, 1.0):
            return stop.is_set()
        return stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    _drops_base = 0
    resolvers: list[str] | None = None


class HelperSource:
    """Capture through a helper container that shares the target's network namespace and
    runs tcpdump, streaming pcap through the Docker API (for when the host cannot setns).

    Stopping drains: once ``stop`` is set, tcpdump gets SIGINT, writes out what it captured
    and exits, which ends the attach stream; every frame up to that end is yielded. A thread
    reads the stream, so the capture thread never waits on Docker and still hears ``stop``."""

    # how long tcpdump may take to exit after SIGINT before its helper is removed outright
    STOP_GRACE = 5.0

    def __init__(self, dc, ref: str, image: str = DEFAULT_HELPER_IMAGE, bpf: str | None = None,
                 owner: HelperOwner | None = None, engine=None):
        self.dc = dc
        self.engine = engine  # the container's engine, for its DNS settings (None: Docker's)
        self.info = find_container(dc, ref)
        if engine is not None:
            self.info.engine = engine.name
        self.image = image
        self.bpf = bpf
        self.owner = owner or HelperOwner()
        self.description = f"helper container ({image}) in {self.info.name}'s namespace"
        self.method = f"helper {image}"
        self.kernel_drops = 0
        self.errors = 0
        self.helper = None
        self.resolvers: list[str] | None = None
        self.capture_name = "any"  # tcpdump's device: every interface, as Linux cooked frames
        self.interface_names = {0: NFLOG_INTERFACE}  # the firewall's drops, from a second tcpdump
        self.nflog_note = ""  # why the firewall's drops are not captured, when they are not
        self.ready = threading.Event()   # set once tcpdump listens (its pcap header arrived)
        self.on_state = None  # callable(str), set by the Capturer's owner

    def batches(self, stop: threading.Event) -> Iterator[list[Frame]]:
        from egress_tui.live.capture import capture_filter
        # an engine that does not know the container's addresses (Podman's ns:PATH, slirp4netns)
        # cannot tell what it sends from what it receives: then tcpdump takes everything
        bpf = (self.bpf if self.bpf is not None
               else capture_filter(self.info.addresses) if self.info.addresses else "")
        self.resolvers = (self.engine.resolvers(self.info) if self.engine is not None
                          else engine_resolvers(self.dc, self.info))
        # --immediate-mode: each packet leaves the kernel at once; without it packets can wait
        # in the kernel's ring for up to a second, and those still there at SIGINT are lost.
        # -B: immediate mode's default ring is small, and a burst (a client's first SYNs and
        # DNS answers while the stream is busy) overflowed it: 32 MiB (KiB units)
        argv = ["-i", "any", "-U", "--immediate-mode", "-B", "32768", "-s", "0", "-w", "-", *([bpf] if bpf else [])]
        self.helper, raw = start_helper(self.dc, self.info.id, self.info.name, self.image, argv,
                                        entrypoint=["tcpdump"], purpose="capture", needs="tcpdump",
                                        owner=self.owner, error=CaptureError, attach=True)
        frames: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(raw, frames, self.ready), daemon=True,
                         name="egress-helper-stream").start()
        interrupted_at = None
        said = False
        try:
            self.interface_names.update(self._namespace_interfaces())
            self._start_nflog(frames)
            while True:
                if not said and self.ready.is_set():
                    said = True
                    if self.on_state:
                        self.on_state("capturing")
                if stop.is_set():
                    interrupted_at = self._interrupt(interrupted_at)
                try:
                    item = frames.get(timeout=0.05)
                except queue.Empty:
                    yield []  # nothing new: lets the capture thread send what changed on time
                    continue
                if item is None:
                    break
                if item is _NFLOG_ENDED:
                    continue  # the drops' tcpdump ends with its helper; the main stream decides
                if isinstance(item, Exception):
                    if interrupted_at is None:  # not our doing: say so (what came before counts)
                        self.errors += 1
                        raise CaptureError(f"the helper container's stream broke: {item}")
                    continue
                yield item
            if not self.ready.is_set() and interrupted_at is None:
                raise CaptureError(f"tcpdump in the helper container stopped: {self._last_words()}")
        finally:
            remove_quietly(self.helper)

    def _namespace_interfaces(self) -> dict[int, str]:
        """ifindex -> name in the target's namespace, asked of the helper (``ip -o link``): a
        recent libpcap's ``any`` device writes Linux cooked v2, which names interfaces only by
        index. Best effort: an image without ``ip`` leaves the indexes unnamed."""
        import re
        from docker.errors import DockerException
        api = self.dc.api
        try:
            ex = api.exec_create(self.helper.id, ["ip", "-o", "link", "show"], stdout=True, stderr=False)
            out = api.exec_start(ex["Id"]) or b""
        except DockerException:
            return {}
        if not isinstance(out, bytes):
            return {}
        found = re.findall(r"^(\d+): ([^:@\s]+)", out.decode("utf-8", "replace"), re.M)
        return {int(i): name for i, name in found if int(i) > 0}

    def _start_nflog(self, frames: queue.Queue) -> None:
        """What the firewall drops, from a second tcpdump in the same helper: ``-i any`` never
        sees a packet dropped in OUTPUT, but the firewall copies each to NFLOG group GROUP.
        Its frames become Linux cooked v2 on interface 0, as NetnsSource delivers them, and
        join the main stream's queue (ending with the helper, like the main tcpdump)."""
        from docker.errors import DockerException
        from egress_tui.live.capture import ARPHRD_NONE, LINKTYPE_SLL2, PACKET_OUTGOING, sll2_frame
        from egress_tui.live.nflog import GROUP, LINKTYPE_NFLOG, linktype_nflog_payload
        api = self.dc.api
        try:
            ex = api.exec_create(self.helper.id, ["tcpdump", "-i", f"nflog:{GROUP}", "-U", "--immediate-mode",
                                                  "-s", "0", "-w", "-"], stdout=True, stderr=False)
            chunks = api.exec_start(ex["Id"], stream=True)
        except DockerException as e:
            self._without_nflog(f"no NFLOG stream: {e}")
            return

        def cooked(batch: list[Frame]) -> list[Frame]:
            out = []
            for lt, ts, data in batch:
                ip = linktype_nflog_payload(data) if lt == LINKTYPE_NFLOG else None
                if ip:
                    out.append((LINKTYPE_SLL2, ts, sll2_frame(ip, 0, ARPHRD_NONE, PACKET_OUTGOING)))
            return out

        class Relay:  # frames go on; a broken drops stream is said, and the capture goes on
            def put(_self, item) -> None:
                if isinstance(item, Exception):
                    self._without_nflog(f"the NFLOG stream broke: {item}")
                else:
                    frames.put(item)

        def run() -> None:
            _pump(chunks, Relay(), threading.Event(), convert=cooked, end=_NFLOG_ENDED)
            try:
                code = api.exec_inspect(ex["Id"]).get("ExitCode")
            except DockerException:
                code = None
            if code not in (None, 0, 130, 137, 143):  # not a stop: e.g. tcpdump without NFLOG support
                self._without_nflog(f"tcpdump -i nflog:{GROUP} in the helper exited with {code}")

        threading.Thread(target=run, daemon=True, name="egress-helper-nflog").start()

    def _without_nflog(self, why: str) -> None:
        self.nflog_note = why
        self.description += f"; the firewall's drops are not captured ({why})"

    def _interrupt(self, since: float | None) -> float:
        """Ask tcpdump to finish (SIGINT: it flushes and exits, ending the stream); if it has
        not after STOP_GRACE, remove the helper, which ends the stream too."""
        from docker.errors import DockerException
        now = time.monotonic()
        if since is None:
            try:
                self.helper.kill(signal="SIGINT")
            except DockerException:
                remove_quietly(self.helper)  # not running any more: its stream is ending
            return now
        if now - since > self.STOP_GRACE:
            remove_quietly(self.helper)
        return since

    def _last_words(self) -> str:
        from docker.errors import DockerException
        try:
            err = self.helper.logs(stdout=False, stderr=True).decode(errors="replace").strip().splitlines()
        except DockerException:
            err = []
        return err[-1][:200] if err else "no output"


# what the NFLOG stream's pump puts on the queue when it ends (the main stream's is None)
_NFLOG_ENDED = object()


def _pump(raw, out: queue.Queue, ready: threading.Event, convert: Callable[[list[Frame]], list[Frame]] | None = None,
          end: object = None) -> None:
    """Parse the attach stream into frames and hand them over in lists: one list whenever
    the stream has nothing more for now (so no frame waits for the next one); the exception
    if the stream broke; ``end`` (None) at the end."""
    pending: list[Frame] = []

    def hand_over() -> None:
        nonlocal pending
        if pending:
            batch = convert(pending) if convert else pending
            if batch:
                out.put(batch)
            pending = []

    try:
        for frame in read_frames(_ChunkReader(raw, hand_over, ready), strict=False):
            pending.append(frame)
            if len(pending) >= 512:
                hand_over()
    except Exception as e:  # a cut stream (the engine went away, the helper was removed)
        hand_over()
        out.put(e)
    finally:
        hand_over()
        out.put(end)

class _ChunkReader:
    """A file-like reader over an iterator of byte chunks (the Docker attach stream).
    ``before_wait`` runs before each read that may block; ``ready`` is set once the 24-byte
    pcap header has arrived (tcpdump writes it when the capture is open)."""

    def __init__(self, chunks, before_wait: Callable[[], None], ready: threading.Event):
        self.it = iter(chunks)
        self.before_wait = before_wait
        self.ready = ready
        self.seen = 0

    def read1(self, n: int = -1) -> bytes:
        """The next chunk as it arrives; b"" at the end of the stream."""
        self.before_wait()
        chunk = next(self.it, b"")
        self.seen += len(chunk)
        if self.seen >= 24:
            self.ready.set()
        return chunk

    read = read1
