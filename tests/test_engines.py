"""The engine interface without an engine: where Podman's socket is looked for, which engine
a name belongs to, and the one-line messages. Engines that cannot run here stand in as fakes
(FakeEngine: answers like an engine that knows some containers); the real ones are tested in
tests/test_podman.py, tests/test_podman_rootless.py and tests/test_pid_target.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from egress_tui.live import engines
from egress_tui.live.containers import ContainerInfo, DockerError
from egress_tui.live.engines import ContainerEngine, Engines, PodmanEngine, locate


class FakeEngine(ContainerEngine):
    """An engine that knows the containers named in ``names``."""

    def __init__(self, cls_name: str, names: list[str]):
        super().__init__(None, f"unix:///run/{cls_name}.sock")
        self.name, self.title = cls_name, cls_name.title()
        self.items = [ContainerInfo(f"{i}{cls_name}".ljust(64, "0"), n, "img", "running", [], 0, [])
                      for i, n in enumerate(names)]

    def list(self, all=False):
        return [self._mine(i) for i in self.items]

    def lookup(self, ref):
        hits = [self._mine(i) for i in self.items if i.name == ref]
        return hits[0] if hits else None


def test_podman_s_socket_is_the_rootful_one_for_root_the_user_s_otherwise(monkeypatch):
    monkeypatch.delenv("CONTAINER_HOST", raising=False)
    monkeypatch.setattr(engines.os, "geteuid", lambda: 0)
    assert engines.podman_address() == "unix:///run/podman/podman.sock"
    monkeypatch.setattr(engines.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert engines.podman_address() == "unix:///run/user/1000/podman/podman.sock"
    monkeypatch.setenv("CONTAINER_HOST", "unix:///tmp/p.sock")
    assert engines.podman_address() == "unix:///tmp/p.sock"


def test_ssh_is_not_spoken_and_says_how_to_forward(monkeypatch):
    with pytest.raises(DockerError) as e:
        engines.connect_podman("ssh://alice:s3cret@build-host/run/podman/podman.sock")
    text = str(e.value)
    assert "s3cret" not in text and "ssh://***@build-host" in text
    assert "ssh -L /tmp/podman.sock:/run/podman/podman.sock HOST" in text and "\n" not in text


def test_auto_uses_the_engine_that_knows_the_name_and_says_so():
    docker, podman = FakeEngine("docker", ["web"]), FakeEngine("podman", ["claude-box"])
    eng, info, said = locate("claude-box", [docker, podman])
    assert eng is podman and info.engine == "podman"
    assert said == "found claude-box in Podman (unix:///run/podman.sock)"
    with pytest.raises(DockerError) as e:
        locate("twin", [FakeEngine("docker", ["twin"]), FakeEngine("podman", ["twin"])])
    assert str(e.value) == ("'twin' names a container in Docker and Podman: say which with --engine docker or "
                            "--engine podman")


def test_a_name_nobody_knows_lists_both_and_why_one_did_not_answer():
    found = Engines([FakeEngine("podman", ["claude-box"])])
    found.unreachable = ["Docker is not reachable at unix:///var/run/docker.sock (refused); is dockerd running?"]
    with pytest.raises(DockerError) as e:
        locate("x", found)
    assert str(e.value) == ("no container named or with id 'x' in Podman (running: claude-box (podman)); "
                            "Docker is not reachable at unix:///var/run/docker.sock (refused); is dockerd running?")


def test_a_docker_socket_that_is_podman_s_counts_as_podman():
    dc = SimpleNamespace(api=SimpleNamespace(base_url="http+docker://localhost"),
                         version=lambda: {"Components": [{"Name": "Podman Engine", "Version": "4.3.1"}]})
    assert isinstance(engines.wrap(dc), PodmanEngine)
    dc.version = lambda: {"Components": [{"Name": "Engine", "Version": "20.10.24"}]}
    assert type(engines.wrap(dc)) is ContainerEngine


def test_rootless_netns_refusal_names_the_user(monkeypatch):
    eng = PodmanEngine(None, "unix:///run/user/1000/podman/podman.sock")
    eng.rootless_uid = 1000
    monkeypatch.setattr("egress_tui.live.containers.can_enter_namespaces", lambda: False)
    assert eng.enter_refusal() == ("containers of rootless Podman (uid 1000) live in that user's own user namespace, "
                                   "which egress-tui cannot enter without root: use --method helper (the default "
                                   "here), or run as root")
    assert ContainerEngine(None, "x").enter_refusal().startswith("--method netns works from the host")
