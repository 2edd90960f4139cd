"""A socketserver on 127.0.0.1 (port 0) served from a daemon thread; `with` starts and
stops it. The test upstreams (HTTP echo, TCP echo, TLS) share this lifecycle."""

from __future__ import annotations

import socketserver
import threading
from types import TracebackType
from typing import Self


class BackgroundServer:
    def __init__(self, name: str) -> None:
        self.name = name
        self._server: socketserver.TCPServer | None = None
        self._thread: threading.Thread | None = None

    def _make_server(self) -> socketserver.TCPServer:
        """The bound server (127.0.0.1, port 0), its requests each on a thread."""
        raise NotImplementedError

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> Self:
        self._server = self._make_server()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long shutdown() may take
            name=self.name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
