"""A server that takes its time: ``GET /delay/MS`` is answered after MS milliseconds, as a real
API takes its time, so a connection to it lives as long as the client wants it to. Run in the
lab's server namespace as ``python -m tests.lab.slowd PORT``; dual stack, so it accepts on
every lab address; prints ``READY`` once it listens."""

from __future__ import annotations

import socket
import sys
import threading
import time

MAX_DELAY_MS = 60_000


def serve(c: socket.socket) -> None:
    with c:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            try:
                chunk = c.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            head += chunk
        parts = head.split(b" ")
        path = parts[1].split(b"?")[0] if len(parts) > 1 else b"/"
        if path.startswith(b"/delay/") and path[7:].isdigit():
            time.sleep(min(int(path[7:]), MAX_DELAY_MS) / 1000)
        try:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        except OSError:
            pass


def main() -> None:
    port = int(sys.argv[1])
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(256)
    print("READY", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
