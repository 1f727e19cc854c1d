"""`--pcap` read once: a FIFO, `<(cmd)` and stdin work like a file, in `report` and in the
screen's replay, whatever the format (pcap or pcapng, either byte order)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.pcapgen import Conversation, python_client_hello, write_pcap, write_pcapng
from egress_tui import cli
from egress_tui.core.engine import analyze_file
from egress_tui.wire.pcapfile import CaptureInput, PcapError, open_capture

ROOT = Path(__file__).resolve().parents[1]
C, S = "10.1.0.2", "198.18.64.10"
HOST = "bedrock-runtime.ap-northeast-1.amazonaws.com"
FORMATS = ["pcap-le", "pcap-be", "pcap-ns", "pcapng-le", "pcapng-be"]


def _frames():
    conv = Conversation()
    conv.dns(C, "10.1.0.53", HOST, [(HOST, 1, S)])
    seq, ack = conv.tcp_open(C, 50000, S, 443)
    conv.segments(C, 50000, S, 443, seq, ack, python_client_hello(HOST, ["http/1.1"]), [200])
    return conv.frames


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("caps")
    frames = _frames()
    write_pcap(str(d / "pcap-le"), frames)
    write_pcap(str(d / "pcap-be"), frames, big_endian=True)
    write_pcap(str(d / "pcap-ns"), frames, nanos=True)
    write_pcapng(str(d / "pcapng-le"), frames)
    write_pcapng(str(d / "pcapng-be"), frames, big_endian=True)
    return {f: (d / f).read_bytes() for f in FORMATS}


class FifoWriter:
    """A FIFO with a thread that writes ``data`` into it in small pieces, as a pipe delivers."""

    def __init__(self, path: Path, data: bytes):
        self.path = str(path)
        os.mkfifo(self.path)
        self.thread = threading.Thread(target=self._write, args=(data,), daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> None:
        try:
            with open(self.path, "wb") as f:
                for i in range(0, len(data), 3):  # the 4-byte magic arrives split
                    f.write(data[i:i + 3])
                    f.flush()
        except BrokenPipeError:
            pass  # the reader refused it early (not a capture)

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive(), "the reader never took the whole stream"


def egress(*args, **kw):
    return subprocess.run([sys.executable, "-m", "egress_tui", *args], capture_output=True, cwd=ROOT, timeout=60, **kw)


def _hosts(stdout: bytes) -> dict:
    return {h["name"]: h for h in json.loads(stdout)["hosts"]}


@pytest.mark.parametrize("fmt", FORMATS)
def test_analyze_file_reads_a_fifo_once(tmp_path, captures, fmt):
    w = FifoWriter(tmp_path / "cap", captures[fmt])
    eng = analyze_file(w.path)
    w.join()
    assert "tls" in eng.hosts[HOST].via and len(eng.hosts[HOST].conns) == 1


@pytest.mark.parametrize("fmt", ["pcap-le", "pcapng-be"])
def test_report_reads_a_fifo(tmp_path, captures, fmt):
    w = FifoWriter(tmp_path / "cap", captures[fmt])
    r = egress("report", "--pcap", w.path, "--format", "json")
    w.join()
    assert r.returncode == 0, r.stderr
    assert _hosts(r.stdout)[HOST]["via"] == ["dns", "tls"]


@pytest.mark.parametrize("fmt", ["pcap-be", "pcapng-le"])
def test_report_reads_process_substitution(tmp_path, captures, fmt):
    path = tmp_path / fmt
    path.write_bytes(captures[fmt])
    # bash hands the command a /dev/fd/N that is a pipe; every value travels as an argument
    r = subprocess.run(["bash", "-c", '"$0" -m egress_tui report --pcap <(cat "$1") --format json', sys.executable,
                        str(path)], capture_output=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert _hosts(r.stdout)[HOST]["connections"] == 1


def test_report_reads_stdin(captures):
    r = egress("report", "--pcap", "-", "--format", "json", input=captures["pcapng-be"])
    assert r.returncode == 0, r.stderr
    assert HOST in _hosts(r.stdout)


@pytest.mark.parametrize("data, why", [(b"GET / HTTP/1.1\r\n\r\n", "is not a pcap or pcapng capture"),
                                       (b"", "is not a pcap or pcapng capture (it is empty)")])
def test_a_fifo_that_is_no_capture_gives_one_line(tmp_path, data, why):
    w = FifoWriter(tmp_path / "junk", data)
    r = egress("report", "--pcap", w.path)
    w.join()
    assert r.returncode == 2 and b"Traceback" not in r.stderr
    [line] = r.stderr.decode().strip().splitlines()
    assert line == f"egress-tui: {w.path} {why}"


def test_capture_input_hands_back_the_bytes_it_read(captures):
    src = CaptureInput("-", stdin=io.BytesIO(captures["pcapng-be"]))
    assert src.kind == "pcapng"
    assert src.stream.read1(2) == captures["pcapng-be"][:2]
    assert src.stream.read() == captures["pcapng-be"][2:]
    with pytest.raises(PcapError, match="stdin is not a pcap or pcapng capture"):
        CaptureInput("-", stdin=io.BytesIO(b"\x00\x01\x02\x03 more"))


@pytest.mark.asyncio
@pytest.mark.parametrize("fmt", ["pcap-le", "pcapng-be"])
async def test_the_screen_replays_a_fifo(tmp_path, captures, fmt):
    from tests.test_app import SIZE, wait_replay
    from egress_tui.ui.app import AppConfig, create_app
    w = FifoWriter(tmp_path / "cap", captures[fmt])
    pcap_input = cli.open_replay(w.path)  # what `egress-tui --pcap FIFO` checks, then hands on
    app = create_app(AppConfig(pcap=w.path, pcap_input=pcap_input, speed=0))
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        assert HOST in {k.value for k in app.main.table.rows}
        # the packets can still be exported: from the recording, not by reading the pipe again
        said = []
        notify = app.notify
        app.notify = lambda message, **kw: (said.append(message), notify(message, **kw))
        app.export("pcap", str(tmp_path / "out.pcap"))
        await pilot.pause(0.2)
    w.join()
    assert HOST in analyze_file(str(tmp_path / "out.pcap")).hosts
    # one line says what the file holds, per interface (a replay's: the name it was read as)
    n = sum(1 for _ in open_capture(str(tmp_path / "out.pcap")))
    assert said == [f"saved {n} packets (cap {n}) to {tmp_path / 'out.pcap'}"]


@pytest.mark.asyncio
async def test_the_screen_replays_stdin(captures):
    from tests.test_app import SIZE, wait_replay
    from egress_tui.ui.app import AppConfig, create_app
    pcap_input = cli.open_replay("-", stdin=io.BytesIO(captures["pcap-ns"]))
    app = create_app(AppConfig(pcap="-", pcap_input=pcap_input, speed=0))
    async with app.run_test(size=SIZE) as pilot:
        await wait_replay(app, pilot)
        assert HOST in {k.value for k in app.main.table.rows}


def test_the_screen_refuses_a_fifo_that_is_no_capture_before_drawing(tmp_path, capsys):
    w = FifoWriter(tmp_path / "junk", b"not a capture at all")
    assert cli.main(["--pcap", w.path]) == cli.EXIT_ERROR
    w.join()
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"egress-tui: {w.path} is not a pcap or pcapng capture"


def test_the_screen_replays_process_substitution_and_stdin_in_a_terminal(tmp_path, captures):
    """The real command in a real terminal (tmux): `--pcap <(cmd)`, and `--pcap -` with the
    capture on stdin while the keys come from the terminal."""
    import shlex
    import shutil
    import time
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    path = tmp_path / "cap.pcapng"
    path.write_bytes(captures["pcapng-le"])
    py, cap = shlex.quote(sys.executable), shlex.quote(str(path))
    for name, cmd in (("subst", f"{py} -m egress_tui --pcap <(cat {cap}) --speed 0"),
                      ("stdin", f"cat {cap} | {py} -m egress_tui --pcap - --speed 0")):
        session = f"egress-streamed-{os.getpid()}-{name}"
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", "-c", str(ROOT),
                        "bash", "-c", f"env -u COLUMNS -u LINES TERM=xterm-256color {cmd}; sleep 60"], check=True)
        try:
            deadline = time.monotonic() + 30
            screen = ""
            while HOST not in screen or "replay finished" not in screen:
                assert time.monotonic() < deadline, f"{name}: the replay never showed:\n{screen}"
                time.sleep(0.3)
                screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                        text=True).stdout
            subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)  # keys reach the screen
            deadline = time.monotonic() + 15
            while HOST in screen:
                assert time.monotonic() < deadline, f"{name}: q did not quit:\n{screen}"
                time.sleep(0.3)
                screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                        text=True).stdout
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
