"""`pilotfish serve`: a config source, the control plane, the xDS and debug servers, wired.

Order matters for correctness: the debug server comes up first (not ready), then the
source's first complete view is loaded, and only then does xDS accept proxies: no proxy
is ever served an empty config just because it connected early.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from pilotfish.address import unix_socket_path
from pilotfish.model.configset import ConfigSet, build_config_set, with_mesh
from pilotfish.model.documents import ParsedFile
from pilotfish.model.errors import ConfigError
from pilotfish.model.mesh_config import MeshSettings
from pilotfish.server.control_plane import ControlPlane
from pilotfish.server.debounce import Debouncer
from pilotfish.server.debug_http import build_app
from pilotfish.sources.base import ConfigSource
from pilotfish.xds.grpc_server import start_grpc_server

log = structlog.get_logger()
SWITCH_INTERVAL = 0.001  # seconds


@dataclass(frozen=True)
class ServeOptions:
    xds_address: str = "127.0.0.1:15010"
    debug_address: str = "127.0.0.1:15014"
    debounce_quiet: float = 0.1
    debounce_max: float = 1.0
    # Seconds before grpc closes an xDS connection (the proxy reconnects, maybe to
    # another replica); None: never. Then this long for the stream to end.
    max_connection_age: float | None = None
    max_connection_age_grace: float = 10.0
    mesh: MeshSettings = field(default_factory=MeshSettings)
    mesh_warnings: tuple[ConfigError, ...] = ()


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} must be HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


class Server:
    """A running pilotfish; `start()` then `stop()`. Tests run it in-process."""

    def __init__(self, options: ServeOptions, source: ConfigSource) -> None:
        self.options = options
        self.control_plane = ControlPlane()
        self.source = source
        self.debouncer = Debouncer(options.debounce_quiet, options.debounce_max)
        self.xds_port = 0
        self.debug_port = 0
        self._ready = False
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._grpc: Any = None
        self._web: web.AppRunner | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def xds_endpoint(self) -> str:
        """Where proxies reach ADS: ``host:port`` (the bound port), or ``unix:/path``."""
        if unix_socket_path(self.options.xds_address):
            return self.options.xds_address
        return f"{host_of(self.options.xds_address)}:{self.xds_port}"

    async def start(self) -> None:
        # Translation runs in worker threads that share the GIL with the event loop:
        # each time the loop wakes up it waits for a worker to let go, up to this long.
        # Python's default (5 ms) adds up to tens of milliseconds per request when an
        # answer takes several wake-ups (accept, read, write); 1 ms costs the workers a
        # few percent.
        sys.setswitchinterval(SWITCH_INTERVAL)
        # Raises if the source cannot be (a missing directory): better now than an empty config.
        await self.source.start()
        self._web = web.AppRunner(
            build_app(self.control_plane, lambda: self._ready, self.source.pending), access_log=None
        )
        await self._web.setup()
        host, port = split_address(self.options.debug_address)
        site = web.TCPSite(self._web, host, port)
        await site.start()
        self.debug_port = _bound_port(site)
        await self._wait_synced()
        await self.reload()
        await self.source.write_status(self.control_plane.problems())
        self._grpc, self.xds_port = await start_grpc_server(
            self.control_plane.ads,
            self.options.xds_address,
            max_connection_age=self.options.max_connection_age,
            max_connection_age_grace=self.options.max_connection_age_grace,
        )
        if socket_path := unix_socket_path(self.options.xds_address):
            # Sidecar Envoys run as their own user (1337): who may connect is decided by
            # the permissions of the socket's directory, as for Istio's agent socket.
            os.chmod(socket_path, 0o666)
        self._tasks = [
            asyncio.create_task(self._watch_source(), name="watch-source"),
            asyncio.create_task(self._apply_changes(), name="apply-changes"),
        ]
        self._ready = True
        log.info(
            "pilotfish serving",
            source=self.source.describe(),
            xds=self.xds_endpoint,
            debug=f"{host}:{self.debug_port}",
        )

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
        if self._web is not None:
            await self._web.cleanup()
        await self.source.close()
        self.control_plane.close()

    async def _wait_synced(self) -> None:
        """Wait for the source's first complete view, saying what it still waits for."""
        synced = asyncio.ensure_future(self.source.wait_synced())
        try:
            while True:
                done, _ = await asyncio.wait({synced}, timeout=5.0)
                if done:
                    synced.result()
                    return
                log.info("waiting for the initial config", pending=self.source.pending())
        finally:
            synced.cancel()

    async def reload(self) -> None:
        """Read the source and make its config current. Reading, parsing and translating
        run in the control plane's reload worker: the loop keeps serving meanwhile."""
        load = self.source.loader()
        files: list[ParsedFile] = []

        def build() -> ConfigSet:
            files.extend(load())
            # Reloads run one at a time: the config in force is the one this replaces.
            return with_mesh(
                build_config_set(files, previous=self.control_plane.config),
                self.options.mesh,
                self.options.mesh_warnings,
            )

        config = await self.control_plane.reload(build)
        log.info(
            "config loaded",
            files=len(files),
            objects=len(config.objects),
            problems=len(config.errors),
        )

    async def _watch_source(self) -> None:
        async for count in self.source.changes(self._stop):
            self.debouncer.notify(count)

    async def _apply_changes(self) -> None:
        while True:
            changes = await self.debouncer.next_batch()
            log.debug("applying config changes", changes=changes)
            try:
                await self.reload()
                await self.source.write_status(self.control_plane.problems())
            except Exception:  # never let one bad reload stop the server
                log.exception("config reload failed; the previous config stays in force")


def host_of(address: str) -> str:
    return split_address(address)[0]


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp keeps the asyncio server here; no public accessor
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else 0


async def serve_forever(options: ServeOptions, source: ConfigSource) -> None:
    """Serve until SIGTERM or SIGINT (Kubernetes stops pods with SIGTERM), then stop cleanly."""
    server = Server(options, source)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("pilotfish stopping")
    finally:
        await server.stop()
