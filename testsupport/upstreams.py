"""Real upstream servers for tests: httpbin in a subprocess, and a recording echo server."""

from __future__ import annotations

import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

from testsupport._process import ManagedProcess
from testsupport.background_server import BackgroundServer
from testsupport.http import request
from testsupport.wait import wait_until

# Runs in the child: binds port 0 (no race for a free port) and reports the port it got
# through a file, written only once the socket is listening.
_HTTPBIN_MAIN = """
import os, sys
from werkzeug.serving import make_server
import httpbin
server = make_server("127.0.0.1", 0, httpbin.app, threaded=True)
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    f.write(str(server.server_port))
os.replace(tmp, sys.argv[1])
server.serve_forever()
"""


class HttpbinServer:
    """httpbin (werkzeug, threaded) on 127.0.0.1; ``with HttpbinServer() as hb: hb.url``."""

    def __init__(self, startup_timeout: float = 20.0) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> Self:
        self._tmp = tempfile.TemporaryDirectory(prefix="httpbin-")
        workdir = Path(self._tmp.name)
        port_file = workdir / "port"
        self._proc = proc = ManagedProcess(
            [sys.executable, "-c", _HTTPBIN_MAIN, str(port_file)], workdir / "httpbin.log"
        )
        try:
            text = wait_until(
                lambda: self._port_file_text(port_file),
                timeout=self.startup_timeout,
                message=lambda: f"httpbin did not start; log:\n{proc.log_tail()}",
            )
            self.port = int(text)
            wait_until(
                lambda: request(f"{self.url}/status/200", timeout=2).status == 200,
                timeout=self.startup_timeout,
                ignore=(OSError,),
                message=lambda: f"httpbin does not answer on {self.url}; log:\n{proc.log_tail()}",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _port_file_text(self, port_file: Path) -> str | None:
        assert self._proc is not None
        if not self._proc.running():
            raise RuntimeError(
                f"httpbin exited with {self._proc.returncode}; log:\n{self._proc.log_tail()}"
            )
        return port_file.read_text() if port_file.exists() else None

    def log_tail(self, lines: int = 40) -> str:
        return self._proc.log_tail(lines) if self._proc else ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lowercased names
    body: bytes


@dataclass
class EchoReply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[RecordedRequest], EchoReply]


class EchoHttpServer(BackgroundServer):
    """A threaded stdlib HTTP/1.1 server that records every request it gets.

    It answers with ``reply`` (change it at any time), or with what ``responder`` returns
    when set (e.g. fail the first N attempts to test retries). Every answer carries
    ``x-echo-server: <name>`` so a test can tell upstreams apart behind Envoy.
    """

    def __init__(
        self,
        name: str = "echo",
        status: int = 200,
        body: bytes = b"ok",
        headers: Mapping[str, str] | None = None,
        responder: Responder | None = None,
    ) -> None:
        super().__init__(f"echo-{name}")
        self.name = name
        self.reply = EchoReply(status, body, dict(headers or {}))
        self.responder = responder
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Wait until at least ``count`` requests arrived, and return them all."""

        def enough() -> list[RecordedRequest] | None:
            got = self.requests
            return got if len(got) >= count else None

        return wait_until(
            enough,
            timeout=timeout,
            message=f"{self.name} got fewer than {count} requests: {self.requests}",
        )

    def _handle(self, req: RecordedRequest) -> EchoReply:
        with self._lock:
            self._requests.append(req)
        return self.responder(req) if self.responder else self.reply

    def _make_server(self) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        return server


def _make_handler(server: EchoHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 so Envoy can reuse upstream connections, as it would with a real app.
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = server._handle(RecordedRequest(self.command, self.path, headers, body))
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("x-echo-server", server.name)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output for failures

    return Handler
