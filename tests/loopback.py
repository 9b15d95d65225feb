"""A loopback HTTP file server for tests: 127.0.0.1 only, ephemeral port, bounded lifetime.

Serves a directory with HTTP Range support, records every request (path and Range header), and
can corrupt or fail chosen files, so download code is tested without touching any real host.
"""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = Path(root).resolve()
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.corrupt: set[str] = set()  # paths served with their first byte flipped
        self.fail: dict[str, int] = {}  # path -> number of 503 answers still to give
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer
    timeout = 10

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        path = unquote(urlparse(self.path).path)
        with self.server.lock:
            self.server.requests.append((path, self.headers.get("Range")))
            failures = self.server.fail.get(path, 0)
            if failures:
                self.server.fail[path] = failures - 1
        file = (self.server.root / path.lstrip("/")).resolve()
        if failures:
            return self._send(503, b"")
        if not file.is_file() or self.server.root not in file.parents:
            return self._send(404, b"")
        body = file.read_bytes()
        if path in self.server.corrupt:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self._send_range(body) if self.headers.get("Range") else self._send(200, body)

    def _send_range(self, body: bytes) -> None:
        start_text, _, end_text = self.headers["Range"].removeprefix("bytes=").partition("-")
        start, end = int(start_text), int(end_text) if end_text else len(body) - 1
        if start >= len(body):
            return self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
        self._send(206, body[start : end + 1], {"Content-Range": f"bytes {start}-{end}/{len(body)}"})

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), "Accept-Ranges": "bytes", **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serve(root: Path, lifetime_s: float = 120.0) -> Iterator[LoopbackServer]:
    """Serve ``root`` until the block ends, or at most ``lifetime_s`` seconds (it stops by itself)."""
    server = LoopbackServer(root)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    timer = threading.Timer(lifetime_s, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        yield server
    finally:
        timer.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connection refused at once)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
