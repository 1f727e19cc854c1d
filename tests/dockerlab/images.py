"""Images for the Docker lab, all built locally: nothing comes from a
container registry.

``egress-tui-test/base:bookworm``
    ``debootstrap --variant=minbase`` of Debian 12 from the mirror named in the
    host's apt sources, piped (``tar | docker import``) into an image.  The
    root file system is kept under ``.cache/dockerlab/`` (and the .debs under
    ``.cache/dockerlab/debs``) so a lost image is re-imported in seconds.
``egress-tui-test/sink:bookworm``
    base + aioquic and its dependencies.  Debian 12 has no python3-aioquic, so
    the host's pip installs the manylinux wheels from PyPI for Python 3.11
    (bookworm's python3) into ``.cache/dockerlab/sink-site``, and the build
    copies that into /usr/local/lib/python3.11/dist-packages.
``egress-tui-test/claude:latest`` (also tagged with the Claude Code version)
    base + Claude Code's native binary at /usr/local/bin/claude, taken from
    ``npm install --prefix .cache/claude-code @anthropic-ai/claude-code``
    (the binary ships in the optional dependency
    ``@anthropic-ai/claude-code-linux-x64``; install scripts are not run).
``egress-tui-test/fw:bookworm``, ``egress-tui-test/proxy:bookworm``, ``egress-tui-test/tools:bookworm``
    base + Debian packages (iptables/ipset; squid, dante-server, OpenSSH; nodejs, git) whose
    .debs the host's ``apt-get download`` fetched into ``.cache/dockerlab/``,
    exactly the set apt would add to the base (simulated against its dpkg status).

Each image carries labels (recipe hash, id of the base it was built on,
versions); an ``ensure_*`` call returns at once when the tag exists with the
expected labels, and rebuilds when the recipe or the base changed.
Builds run with ``network_mode="none"``: they only COPY files.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import docker

from .engine import apt_install, docker_cli

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = PROJECT_ROOT / ".cache" / "dockerlab"
CLAUDE_PREFIX = PROJECT_ROOT / ".cache" / "claude-code"

SUITE = "bookworm"
SUITE_PYTHON = "3.11"  # bookworm's python3
BASE_TAG = f"egress-tui-test/base:{SUITE}"
SINK_TAG = f"egress-tui-test/sink:{SUITE}"
TARGET_REPO = "egress-tui-test/claude"
TARGET_TAG = f"{TARGET_REPO}:latest"

BASE_PACKAGES = [
    "ca-certificates",
    "curl",
    "python3",
    "python3-cryptography",
    # debootstrap's resolver does not follow virtual packages: python3-cryptography
    # needs python3-cffi-backend-api-{min,max}, which python3-cffi-backend provides
    "python3-cffi-backend",
    "iproute2",
    "tcpdump",
    "openssl",
    "dnsutils",
    "procps",
    "netcat-openbsd",
]
# bumped by hand when the way the root file system is made changes
BASE_RECIPE_VERSION = "1"
IMAGE_ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

LABEL_RECIPE = "egress-tui.recipe"
LABEL_BASE = "egress-tui.base-id"
LABEL_CLAUDE = "egress-tui.claude-code-version"
LABEL_AIOQUIC = "egress-tui.aioquic-version"


class ImageBuildError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"dockerlab: {msg}", file=sys.stderr, flush=True)


def _sha(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _build_lock():
    """One builder at a time (two pytest runs must not debootstrap into the same dir)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield f
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _get_image(client: docker.DockerClient, tag: str):
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def _drop_superseded(client: docker.DockerClient, old, new) -> None:
    """Remove the image a rebuild replaced (left dangling otherwise); in use: keep."""
    if old is not None and new is not None and old.id != new.id:
        try:
            client.images.remove(old.id)
        except docker.errors.APIError:
            pass


def _labels(image) -> dict:
    return (image.attrs.get("Config") or {}).get("Labels") or {}


# -- the Debian mirror, read from the host's apt sources ---------------------------


def _deb822_paragraphs(text: str) -> list[dict[str, str]]:
    paras, cur, key = [], {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                paras.append(cur)
            cur, key = {}, None
            continue
        if line[0] in " \t" and key:
            cur[key] += " " + line.strip()
            continue
        if ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            cur[key] = value.strip()
    if cur:
        paras.append(cur)
    return paras


def apt_sources(root: str = "/etc/apt") -> list[tuple[str, list[str], str | None]]:
    """(uri, suites, signed_by) for every enabled ``deb`` source of the host."""
    out: list[tuple[str, list[str], str | None]] = []
    for path in sorted(glob.glob(os.path.join(root, "sources.list.d", "*.sources"))):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for p in _deb822_paragraphs(text):
            if "deb" not in p.get("types", "").split() or p.get("enabled", "yes").lower() == "no":
                continue
            suites = p.get("suites", "").split()
            for uri in p.get("uris", "").split():
                out.append((uri, suites, p.get("signed-by")))
    lists = [os.path.join(root, "sources.list")]
    lists += sorted(glob.glob(os.path.join(root, "sources.list.d", "*.list")))
    for path in lists:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.split("#", 1)[0].strip()
            m = re.match(r"^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)", line)
            if not m:
                continue
            opts = dict(o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o)
            out.append((m.group(2), [m.group(3)], opts.get("signed-by")))
    return out


def debian_mirror(suite: str = SUITE) -> tuple[str, str | None]:
    """(mirror URI, keyring path or None) for ``suite``, from the apt sources.

    Prefers a source that lists ``suite`` itself; otherwise any source of a
    plain release suite (no ``-security``/``-updates``), since a Debian mirror
    carries every release.
    """
    sources = apt_sources()
    for uri, suites, signed in sources:
        if suite in suites:
            return uri.rstrip("/"), _keyring(signed)
    for uri, suites, signed in sources:
        if any("-" not in s and "/" not in s for s in suites) and uri.startswith(("http://", "https://")):
            return uri.rstrip("/"), _keyring(signed)
    raise ImageBuildError(f"no Debian source for {suite} in /etc/apt/sources.list{{,.d/*}}")


def _keyring(signed_by: str | None) -> str | None:
    if signed_by and signed_by.startswith("/") and os.path.exists(signed_by):
        return signed_by
    default = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return default if os.path.exists(default) else None


# -- base image: debootstrap + docker import -----------------------------------------


def _unmount_under(path: Path) -> None:
    """Unmount anything left mounted under ``path`` (a debootstrap killed half way
    leaves proc/sys mounted); deepest first, lazily."""
    prefix = str(path.resolve()) + "/"
    mounts = []
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = line.split()[4].replace("\\040", " ")
            if mp.startswith(prefix) or mp == prefix[:-1]:
                mounts.append(mp)
    except OSError:
        return
    for mp in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True, timeout=30)


def _remove_tree(path: Path) -> None:
    if path.exists():
        _unmount_under(path)
        shutil.rmtree(path)


def base_recipe() -> str:
    return _sha(BASE_RECIPE_VERSION, SUITE, "minbase", ",".join(sorted(BASE_PACKAGES)))


def _debootstrap(rootfs: Path, recipe: str, lock_fd: int | None = None) -> None:
    apt_install(["debootstrap"])
    mirror, keyring = debian_mirror()
    tmp = rootfs.with_name(rootfs.name + ".new")
    _remove_tree(tmp)
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    argv = [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(BASE_PACKAGES),
        "--components=main",
        f"--cache-dir={debs}",
    ]
    if keyring:
        argv.append(f"--keyring={keyring}")
    argv += [SUITE, str(tmp), mirror]
    _log(f"debootstrap {SUITE} (minbase + {len(BASE_PACKAGES)} packages) ...")
    t0 = time.monotonic()
    try:
        # debootstrap inherits the build lock: if we are killed, it runs on, and
        # the next builder waits for it instead of deleting the tree under it
        p = subprocess.run(argv, capture_output=True, text=True, timeout=1800,
                           pass_fds=(lock_fd,) if lock_fd is not None else ())
    finally:
        _unmount_under(tmp)
    if p.returncode != 0:
        log = tmp / "debootstrap" / "debootstrap.log"
        detail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise ImageBuildError(f"debootstrap failed ({p.returncode}): {p.stderr[-2000:]}\n{detail}")
    # leaner and host-neutral: no package caches, no copy of the host's resolver
    # or hostname (Docker bind-mounts its own), no mirror address in the image
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
        for f in glob.glob(str(tmp / pattern)):
            os.unlink(f)
    (tmp / "etc/apt/sources.list").write_text("# egress-tui lab image: no package sources\n")
    for name in ("etc/resolv.conf", "etc/hostname"):
        f = tmp / name
        if f.is_symlink() or f.exists():
            f.unlink()
        f.write_text("")
    (tmp / ".egress-tui-recipe").write_text(recipe + "\n")
    _remove_tree(rootfs)
    tmp.rename(rootfs)
    _log(f"debootstrap done in {time.monotonic() - t0:.0f} s")


def _import_rootfs(rootfs: Path, tag: str, labels: dict[str, str]) -> None:
    """``tar -C rootfs -c . | docker import - tag`` through pipes."""
    changes = [
        f"ENV PATH={IMAGE_ENV_PATH}",
        "ENV LANG=C.UTF-8",
        'CMD ["/bin/bash"]',
    ] + [f"LABEL {k}={v}" for k, v in labels.items()]
    argv = [docker_cli(), "import"]
    for c in changes:
        argv += ["--change", c]
    argv += ["-", tag]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    imp = subprocess.Popen(argv, stdin=tar.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tar.stdout.close()  # so tar gets SIGPIPE if docker import dies
    imp_out, imp_err = imp.communicate(timeout=900)
    tar_err = tar.stderr.read()
    tar.wait(timeout=60)
    if tar.returncode != 0 or imp.returncode != 0:
        raise ImageBuildError(
            f"tar ({tar.returncode}): {tar_err.decode(errors='replace')[-1000:]}; "
            f"docker import ({imp.returncode}): {imp_err.decode(errors='replace')[-1000:]}"
        )


def ensure_base_image(client: docker.DockerClient, force: bool = False):
    """``egress-tui-test/base:bookworm`` (built unless present with the same recipe)."""
    recipe = base_recipe()
    image = _get_image(client, BASE_TAG)
    if image is not None and not force and _labels(image).get(LABEL_RECIPE) == recipe:
        return image
    with _build_lock() as lock:
        image = _get_image(client, BASE_TAG)
        if image is not None and not force and _labels(image).get(LABEL_RECIPE) == recipe:
            return image
        rootfs = CACHE / f"rootfs-{SUITE}"
        stamp = rootfs / ".egress-tui-recipe"
        if force or not stamp.exists() or stamp.read_text().strip() != recipe:
            _debootstrap(rootfs, recipe, lock.fileno())
        t0 = time.monotonic()
        _import_rootfs(rootfs, BASE_TAG, {LABEL_RECIPE: recipe})
        _log(f"imported {BASE_TAG} in {time.monotonic() - t0:.0f} s")
        new = client.images.get(BASE_TAG)
        _drop_superseded(client, image, new)
        return new


# -- docker build from a prepared context ----------------------------------------------


def _build(client: docker.DockerClient, dockerfile: Path, files: dict[str, Path], tag: str,
           labels: dict[str, str], extra_tags: tuple[str, ...] = ()):
    """Build ``tag`` from ``dockerfile`` with a context holding just ``files``
    (name in context -> host path, file or directory).  No network during the build."""
    with tempfile.TemporaryFile(dir=CACHE) as ctx:
        with tarfile.open(fileobj=ctx, mode="w") as tar:
            tar.add(str(dockerfile), arcname="Dockerfile")
            for arcname, path in files.items():
                tar.add(str(path), arcname=arcname)
        ctx.seek(0)
        try:
            image, logs = client.images.build(
                fileobj=ctx,
                custom_context=True,
                tag=tag,
                labels=labels,
                rm=True,
                forcerm=True,
                pull=False,
                network_mode="none",
                timeout=1800,
            )
        except docker.errors.BuildError as exc:
            text = "".join(str(x.get("stream", x.get("error", ""))) for x in exc.build_log)
            raise ImageBuildError(f"docker build {tag} failed: {exc}\n{text[-3000:]}") from exc
    for extra in extra_tags:
        repo, _, t = extra.rpartition(":")
        image.tag(repo, t)
    return client.images.get(tag)


# -- sink image: base + aioquic --------------------------------------------------------


def _aioquic_spec() -> str:
    """Same aioquic as the host's test venv when it has one (the netns lab runs that)."""
    try:
        from importlib.metadata import version

        return f"aioquic=={version('aioquic')}"
    except Exception:
        return "aioquic>=1.2"


def _sink_site(spec: str) -> Path:
    site = CACHE / "sink-site"
    stamp = site / ".egress-tui-spec"
    want = f"{spec} py{SUITE_PYTHON} {platform.machine()}"
    if stamp.exists() and stamp.read_text().strip() == want:
        return site
    tmp = site.with_name("sink-site.new")
    shutil.rmtree(tmp, ignore_errors=True)
    arch = platform.machine()
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
            "--target", str(tmp), "--only-binary=:all:",
            "--implementation", "cp", "--python-version", SUITE_PYTHON]
    for plat in ("manylinux_2_34", "manylinux_2_28", "manylinux_2_17", "manylinux2014"):
        argv += ["--platform", f"{plat}_{arch}"]
    argv.append(spec)
    _log(f"pip install --target for the sink: {spec} ...")
    p = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise ImageBuildError(f"pip install for the sink failed: {p.stderr[-3000:]}")
    (tmp / ".egress-tui-spec").write_text(want + "\n")
    shutil.rmtree(site, ignore_errors=True)
    tmp.rename(site)
    return site


def ensure_sink_image(client: docker.DockerClient, force: bool = False):
    """``egress-tui-test/sink:bookworm``: base + aioquic (for tests/lab/sink.py)."""
    base = ensure_base_image(client)
    dockerfile = HERE / "Dockerfile.sink"
    spec = _aioquic_spec()
    recipe = _sha(dockerfile.read_text(), spec, SUITE_PYTHON)
    want = {LABEL_RECIPE: recipe, LABEL_BASE: base.id}
    image = _get_image(client, SINK_TAG)
    if image is not None and not force and all(_labels(image).get(k) == v for k, v in want.items()):
        return image
    with _build_lock():
        site = _sink_site(spec)
        t0 = time.monotonic()
        version = spec.split("==", 1)[1] if "==" in spec else "unpinned"
        for dist in site.glob("aioquic-*.dist-info"):
            version = dist.name[len("aioquic-"):-len(".dist-info")]
        new = _build(client, dockerfile, {"site": site}, SINK_TAG, {**want, LABEL_AIOQUIC: version})
        _log(f"built {SINK_TAG} in {time.monotonic() - t0:.0f} s")
        _drop_superseded(client, image, new)
        return new


# -- target image: base + Claude Code -----------------------------------------------------


def _npm_platform() -> str:
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    if not arch:
        raise ImageBuildError(f"no Claude Code build for {platform.machine()}")
    return f"linux-{arch}"  # glibc: Debian


def _claude_paths() -> tuple[Path, Path]:
    mods = CLAUDE_PREFIX / "node_modules" / "@anthropic-ai"
    return mods / f"claude-code-{_npm_platform()}" / "claude", mods / "claude-code" / "package.json"


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def ensure_claude_code() -> tuple[Path, str]:
    """(native binary, version) of Claude Code, npm-installed under .cache/claude-code
    unless already there.  Delete that folder to take a newer release."""
    binary, pkg = _claude_paths()
    if not (_is_elf(binary) and pkg.exists()):
        npm = shutil.which("npm")
        if not npm:
            raise ImageBuildError("npm not found (Debian: apt-get install nodejs npm)")
        CLAUDE_PREFIX.mkdir(parents=True, exist_ok=True)
        _log("npm install @anthropic-ai/claude-code ...")
        # --ignore-scripts: the postinstall only links the native binary into
        # bin/claude.exe; we take the binary from the platform package directly.
        p = subprocess.run(
            [npm, "install", "--prefix", str(CLAUDE_PREFIX), "--ignore-scripts",
             "--no-audit", "--no-fund", "--include=optional", "@anthropic-ai/claude-code"],
            capture_output=True, text=True, timeout=900,
        )
        if p.returncode != 0 or not _is_elf(binary):
            raise ImageBuildError(
                f"npm install @anthropic-ai/claude-code failed ({p.returncode}) or gave no {binary}: "
                f"{(p.stderr or p.stdout)[-2000:]}"
            )
    native_pkg = binary.parent / "package.json"
    version = json.loads((native_pkg if native_pkg.exists() else pkg).read_text())["version"]
    return binary, version


def ensure_target_image(client: docker.DockerClient, force: bool = False, verify: bool = True):
    """``egress-tui-test/claude:latest`` (and ``:<version>``): base + /usr/local/bin/claude."""
    base = ensure_base_image(client)
    dockerfile = HERE / "Dockerfile.claude"
    binary, version = ensure_claude_code()
    want = {LABEL_RECIPE: _sha(dockerfile.read_text()), LABEL_BASE: base.id, LABEL_CLAUDE: version}
    image = _get_image(client, TARGET_TAG)
    if image is not None and not force and all(_labels(image).get(k) == v for k, v in want.items()):
        return image
    with _build_lock():
        t0 = time.monotonic()
        new = _build(client, dockerfile, {"claude": binary}, TARGET_TAG, want,
                     extra_tags=(f"{TARGET_REPO}:{version}",))
        if verify:
            out = claude_version_in_image(client)
            if version not in out:
                raise ImageBuildError(f"claude --version in {TARGET_TAG} printed {out!r}, expected {version}")
        _log(f"built {TARGET_TAG} (Claude Code {version}) in {time.monotonic() - t0:.0f} s")
        _drop_superseded(client, image, new)
        return new


def claude_version_in_image(client: docker.DockerClient, tag: str = TARGET_TAG) -> str:
    """Output of ``docker run --rm --network none TAG claude --version``."""
    c = create_container(client, tag, ["claude", "--version"], network_mode="none")
    try:
        c.start()
        c.wait(timeout=120)
        return c.logs(stdout=True, stderr=True).decode(errors="replace").strip()
    finally:
        c.remove(force=True)


def create_container(client: docker.DockerClient, image: str, command: list[str], **kw):
    """``containers.create`` -- never ``containers.run``, which pulls a missing
    image from Docker Hub; a missing local image must be an error here."""
    return client.containers.create(image, command, **kw)


# -- firewall image: base + iptables, ipset (for init-firewall.sh inside a container) ----------

FW_TAG = f"egress-tui-test/fw:{SUITE}"
FW_PACKAGES = ["iptables", "ipset", "dnsutils"]
# Written into the build context (no Dockerfile on disk): the .debs come from the host's
# `apt-get download` (the Debian mirror of the host's apt sources), so the build needs no
# network and no package source inside the image.
FW_DOCKERFILE = f"""\
# egress-tui lab firewall image: the locally built Debian base + {' '.join(FW_PACKAGES)}
# from .debs the host downloaded. Built by images.ensure_fw_image() with no network.
FROM {BASE_TAG}
COPY debs/ /tmp/debs/
RUN set -e; for f in /tmp/debs/*.deb; do [ -e "$f" ] && dpkg -i /tmp/debs/*.deb; break; done; \\
    rm -rf /tmp/debs; iptables --version; ip6tables --version; command -v ipset
CMD ["sleep", "infinity"]
"""


def _base_dpkg_status(client: docker.DockerClient, dest: Path) -> Path:
    """The base image's /var/lib/dpkg/status, copied out of a container that never starts."""
    c = create_container(client, BASE_TAG, ["true"], network_mode="none")
    try:
        bits, _ = c.get_archive("/var/lib/dpkg/status")
        with tempfile.TemporaryFile(dir=CACHE) as f:
            for chunk in bits:
                f.write(chunk)
            f.seek(0)
            with tarfile.open(fileobj=f) as tar:
                member = tar.extractfile("status")
                if member is None:
                    raise ImageBuildError(f"no /var/lib/dpkg/status in {BASE_TAG}")
                dest.write_bytes(member.read())
    finally:
        c.remove(force=True)
    return dest


def _apt(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """An apt-get command; the package lists are updated once if it fails (fresh machine)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env, cwd=cwd)
    if p.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, timeout=600, env=env)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env, cwd=cwd)
    if p.returncode != 0:
        raise ImageBuildError(f"{' '.join(argv)} failed ({p.returncode}): {(p.stderr or p.stdout)[-2000:]}")
    return p


def _extra_debs(client: docker.DockerClient, base_id: str, packages: list[str], name: str) -> Path:
    """.debs of ``packages`` and of whatever they need that the base lacks, exactly as apt
    would install them on the base (simulated against the base's dpkg status), in
    ``.cache/dockerlab/<name>``; reused while the base and the package list stay the same."""
    debs = CACHE / name
    stamp = debs / ".egress-tui-base"
    want = f"{base_id} {' '.join(packages)}"
    if stamp.exists() and stamp.read_text().strip() == want:
        return debs
    tmp = CACHE / f"{name}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    status = _base_dpkg_status(client, CACHE / f"{name}-base-status")
    # what the base already has stays as it is (naming it would upgrade it)
    have = set(re.findall(r"^Package: (\S+)\n(?:[^\n]+\n)*?Status: install ok installed$",
                          status.read_text(errors="replace"), re.M))
    todo = [p for p in packages if p not in have]
    sim = _apt(["apt-get", "-s", "-q", "-o", f"Dir::State::status={status}", "-o", "Debug::NoLocking=1",
                "install", "--no-install-recommends", *todo]) if todo else None
    pkgs = [f"{m.group(1)}={m.group(2)}" for m in
            re.finditer(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+)", sim.stdout if sim else "", re.M)]
    if pkgs:
        _log(f"apt-get download {' '.join(pkgs)}")
        _apt(["apt-get", "download", "-q", *pkgs], cwd=tmp)
    (tmp / ".egress-tui-base").write_text(want + "\n")
    shutil.rmtree(debs, ignore_errors=True)
    tmp.rename(debs)
    return debs


def _ensure_debs_image(client: docker.DockerClient, tag: str, recipe: str, packages: list[str],
                       debs_name: str, force: bool):
    """An image made of the base and extra .debs the host downloaded (``recipe`` is its
    Dockerfile): returned at once when the tag carries the expected labels, else built."""
    base = ensure_base_image(client)
    want = {LABEL_RECIPE: _sha(recipe), LABEL_BASE: base.id}
    image = _get_image(client, tag)
    if image is not None and not force and all(_labels(image).get(k) == v for k, v in want.items()):
        return image
    with _build_lock():
        image = _get_image(client, tag)
        if image is not None and not force and all(_labels(image).get(k) == v for k, v in want.items()):
            return image
        t0 = time.monotonic()
        debs = _extra_debs(client, base.id, packages, debs_name)
        dockerfile = CACHE / f"Dockerfile.{tag.split('/')[-1].split(':')[0]}"
        dockerfile.write_text(recipe)
        new = _build(client, dockerfile, {"debs": debs}, tag, want)
        _log(f"built {tag} in {time.monotonic() - t0:.0f} s")
        _drop_superseded(client, image, new)
        return new


def ensure_fw_image(client: docker.DockerClient, force: bool = False):
    """``egress-tui-test/fw:bookworm``: base + iptables, ipset (and dnsutils, already in the
    base), for running ``init-firewall.sh`` inside a container with NET_ADMIN."""
    return _ensure_debs_image(client, FW_TAG, FW_DOCKERFILE, FW_PACKAGES, "fw-debs", force)


# -- proxy image: base + squid, dante-server, OpenSSH (an HTTP proxy and SOCKS servers) -----

PROXY_TAG = f"egress-tui-test/proxy:{SUITE}"
# Dante has no SOCKS4a (it connects to the literal 0.0.0.x); OpenSSH's ``ssh -D`` does
# SOCKS4, 4a and 5, so it serves the socks4a port.
PROXY_PACKAGES = ["squid", "dante-server", "openssh-server", "openssh-client"]
# Same pattern as the firewall image, but installed by apt from the local .debs: it orders
# them (cron pre-depends on cron-daemon-common, which one `dpkg -i` of all of them breaks)
# and needs no package lists.  policy-rc.d stops the maintainer scripts from starting the
# daemons during the build (tests/lab/proxyd.py starts them, with its own configuration).
def _daemon_debs_dockerfile(what: str, packages: list[str], builder: str, checks: str) -> str:
    """The Dockerfile of an image of the base and daemons from .debs the host downloaded."""
    return f"""\
# egress-tui lab {what}: the locally built Debian base + {' '.join(packages)}
# from .debs the host downloaded. Built by images.{builder}() with no network.
FROM {BASE_TAG}
COPY debs/ /tmp/debs/
RUN set -e; printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; \\
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /tmp/debs/*.deb; \\
    rm -rf /tmp/debs /usr/sbin/policy-rc.d /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \\
    {checks}
CMD ["sleep", "infinity"]
"""


PROXY_DOCKERFILE = _daemon_debs_dockerfile(
    "proxy image", PROXY_PACKAGES, "ensure_proxy_image",
    "squid -v | head -n 1; danted -v; ssh -V; test -x /usr/sbin/sshd; test -x /usr/lib/squid/basic_ncsa_auth")


def ensure_proxy_image(client: docker.DockerClient, force: bool = False):
    """``egress-tui-test/proxy:bookworm``: base + squid, dante-server and OpenSSH, for the
    lab's ``proxy`` container (``DockerLab.add_proxies()``)."""
    return _ensure_debs_image(client, PROXY_TAG, PROXY_DOCKERFILE, PROXY_PACKAGES, "proxy-debs", force)


# -- squid-openssl image: Squid with SslBump (peek and splice by SNI) --------------------------------

SQUID_TLS_TAG = f"egress-tui-test/squid-openssl:{SUITE}"
# Debian's squid is built with GnuTLS (`squid -v`: --with-gnutls), and SslBump needs OpenSSL:
# bookworm ships that build as squid-openssl (same version, conflicts with squid), so it has an
# image of its own. The build proves the OpenSSL build is what got installed.
SQUID_TLS_PACKAGES = ["squid-openssl"]
SQUID_TLS_DOCKERFILE = _daemon_debs_dockerfile(
    "Squid with OpenSSL", SQUID_TLS_PACKAGES, "ensure_squid_tls_image",
    "squid -v | head -n 1; squid -v | grep -q -- --with-openssl")


def ensure_squid_tls_image(client: docker.DockerClient, force: bool = False):
    """``egress-tui-test/squid-openssl:bookworm``: base + squid-openssl, for SslBump (peek and
    splice by SNI), which Debian's GnuTLS build of squid lacks (tests/test_docker_exports.py)."""
    return _ensure_debs_image(client, SQUID_TLS_TAG, SQUID_TLS_DOCKERFILE, SQUID_TLS_PACKAGES,
                              "squid-openssl-debs", force)


# -- tools image: base + Node.js and git (programs a coding agent runs, and a git server) ---------

TOOLS_TAG = f"egress-tui-test/tools:{SUITE}"
# bookworm's nodejs is Node 18, the first with a global fetch (undici); git brings `git daemon`
# (git:// on 9418), so the same image serves the lab's git server (tests/lab/gitd.py)
TOOLS_PACKAGES = ["nodejs", "git"]
TOOLS_DOCKERFILE = f"""\
# egress-tui lab tools image: the locally built Debian base + {' '.join(TOOLS_PACKAGES)}
# from .debs the host downloaded. Built by images.ensure_tools_image() with no network.
FROM {BASE_TAG}
COPY debs/ /tmp/debs/
RUN set -e; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /tmp/debs/*.deb; \\
    rm -rf /tmp/debs /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \\
    node --version; node -e 'process.exit(typeof fetch === "function" ? 0 : 1)'; git --version; \\
    test -x /usr/lib/git-core/git-daemon; test -x /usr/lib/git-core/git-remote-https
CMD ["sleep", "infinity"]
"""


def ensure_tools_image(client: docker.DockerClient, force: bool = False):
    """``egress-tui-test/tools:bookworm``: base + nodejs (Node 18, global fetch) and git, for
    real programs in a container (tests/test_docker_procs_tools.py) and the lab's git server
    (``DockerLab.add_git_server()``)."""
    return _ensure_debs_image(client, TOOLS_TAG, TOOLS_DOCKERFILE, TOOLS_PACKAGES, "tools-debs", force)


def ensure_images(client: docker.DockerClient) -> dict[str, object]:
    """All three lab images; returns {"base": img, "sink": img, "target": img}."""
    out = {
        "base": ensure_base_image(client),
        "sink": ensure_sink_image(client),
        "target": ensure_target_image(client),
    }
    prune_superseded(client)
    return out


def prune_superseded(client: docker.DockerClient) -> None:
    """Remove untagged images left by our rebuilds (they carry our recipe label)."""
    try:
        client.images.prune(filters={"dangling": True, "label": LABEL_RECIPE})
    except docker.errors.APIError:
        pass


if __name__ == "__main__":  # python -m tests.dockerlab.images: build (or check) everything, timed
    from .engine import ensure_docker

    t0 = time.monotonic()
    c = ensure_docker()
    _log(f"engine ready in {time.monotonic() - t0:.1f} s")
    for name, fn in (("base", ensure_base_image), ("sink", ensure_sink_image), ("target", ensure_target_image),
                     ("proxy", ensure_proxy_image), ("tools", ensure_tools_image)):
        t = time.monotonic()
        img = fn(c)
        _log(f"{name}: {img.tags} {img.short_id} in {time.monotonic() - t:.1f} s")
    prune_superseded(c)
    _log(f"claude --version in the target: {claude_version_in_image(c)}")
