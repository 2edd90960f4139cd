"""pilotfish itself, run in-process on a background thread with its own event loop.

In-process so tests can reach the control plane (e.g. put a resource Envoy rejects into
a snapshot); everything else goes through the real gRPC and HTTP ports, as for Envoy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from pilotfish.model.mesh_config import MeshSettings, load_mesh_config
from pilotfish.server.server import ServeOptions, Server
from pilotfish.sources.base import ConfigSource
from pilotfish.sources.files import FileSource
from testsupport.http import Response, request

T = TypeVar("T")


class InProcessPilotfish:
    def __init__(
        self,
        source: Path | ConfigSource,
        *,
        debounce_quiet: float = 0.05,
        debounce_max: float = 0.5,
        debug_port: int = 0,
        mesh_config: Path | None = None,
        xds_address: str = "127.0.0.1:0",
        max_connection_age: float | None = None,
        max_connection_age_grace: float = 10.0,
    ) -> None:
        """`source`: a config directory, or any ConfigSource (e.g. Kubernetes);
        `mesh_config`: a MeshConfig file, as `serve --mesh-config`;
        `xds_address`: host:port, or `unix:/path` (the mesh world's pods reach it so);
        `max_connection_age` (+ grace), seconds: as `serve --max-connection-age`."""
        self.source = FileSource(source) if isinstance(source, Path) else source
        mesh, mesh_warnings = load_mesh_config(mesh_config) if mesh_config else (MeshSettings(), [])
        self.options = ServeOptions(
            xds_address=xds_address,
            debug_address=f"127.0.0.1:{debug_port}",
            debounce_quiet=debounce_quiet,
            debounce_max=debounce_max,
            mesh=mesh,
            mesh_warnings=tuple(mesh_warnings),
            max_connection_age=max_connection_age,
            max_connection_age_grace=max_connection_age_grace,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pilotfish", daemon=True
        )
        self.server: Server | None = None
        self._starting: concurrent.futures.Future[None] | None = None

    def start(self, wait: bool = True) -> Self:
        """Start; with wait=False return at once (the server may wait for its source:
        give a fixed debug_port to watch it become ready) and call `wait_started()`."""
        self._thread.start()
        self.server = Server(self.options, self.source)
        self._starting = asyncio.run_coroutine_threadsafe(self.server.start(), self._loop)
        if wait:
            self.wait_started()
        return self

    def wait_started(self, timeout: float = 30.0) -> None:
        assert self._starting is not None, "start() first"
        self._starting.result(timeout)

    def stop(self) -> None:
        """Stop the server and its loop (again: nothing; a test may stop it early)."""
        if self._loop.is_closed():
            return
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()  # still waiting for its source: stop that first
        if self.server is not None:
            self.run(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.stop()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on pilotfish's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Call a function on pilotfish's loop (its state belongs to that thread)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def invoke() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(invoke)
        return future.result(timeout)

    @property
    def xds_address(self) -> str:
        """``127.0.0.1:<port>``, or ``unix:/path``: what a bootstrap's --xds-address takes."""
        assert self.server is not None
        return self.server.xds_endpoint

    def debug(self, path: str) -> Response:
        assert self.server is not None
        return request(f"http://127.0.0.1:{self.server.debug_port}{path}")
