"""The Aggregated Discovery Service over grpc.aio: state of the world and delta.

One coroutine per stream owns the writing: requests (read by a task) and "this node's
snapshot changed" wake-ups (from another task) go through one queue, and the coroutine
handles them one at a time, writing every response itself. So a push and the answer to
a request can never interleave out of order, and both tasks die with the stream.

Register it with ``ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server`` (or use
``grpc_server.start_grpc_server``). It does not subclass the generated servicer: under
mypy the generated module is untyped, and the registration function only needs the
two methods. Both serve a stream the same way; only the protocol object differs
(``stream.StreamProtocol`` or ``delta.DeltaStreamProtocol``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc
import structlog
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds import metrics
from pilotfish.xds.cache import SnapshotCache, VersionedSnapshot
from pilotfish.xds.delta import DeltaStreamProtocol
from pilotfish.xds.status import HeldResource, KeptCluster, ProxySyncStatus, TypeSyncStatus
from pilotfish.xds.stream import (
    Ack,
    Event,
    Held,
    Kept,
    Nack,
    Released,
    Send,
    Stale,
    StreamProtocol,
    Unsupported,
)
from pilotfish.xds.types import short_name

_log = structlog.get_logger()

ValidateNode = Callable[[base_pb2.Node], str | None]
NodeHook = Callable[[base_pb2.Node], Awaitable[None]]


async def _nothing(node: base_pb2.Node) -> None:
    return None


class _Wakeup:
    """Queue item: the node's snapshot changed; read the newest one from the cache."""


class _End:
    """Queue item: the client closed its side of the stream."""


_WAKEUP = _Wakeup()
_END = _End()


class _Protocol(Protocol):
    """What StreamProtocol and DeltaStreamProtocol have in common."""

    def on_request(self, request: Any, current: VersionedSnapshot | None) -> list[Event]: ...
    def on_snapshot(self, current: VersionedSnapshot) -> list[Event]: ...
    def sync_status(self) -> dict[str, TypeSyncStatus]: ...
    def held(self) -> tuple[HeldResource, ...]: ...
    def kept(self) -> tuple[KeptCluster, ...]: ...


@dataclass
class _Stream:
    connection_id: str
    node: base_pb2.Node
    connected_since: datetime
    protocol: _Protocol
    xds_protocol: str  # "sotw" or "delta"
    # DiscoveryRequest | _Wakeup | _End | BaseException (from the reader)
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    # A wake-up is queued and not yet handled: more changes need no second one, since
    # handling reads the newest snapshot (a burst of snapshots becomes one push).
    wakeup_queued: bool = False


class AdsServer:
    """Serves each node the snapshot the cache holds for its node id."""

    def __init__(
        self,
        cache: SnapshotCache,
        *,
        validate_node: ValidateNode,
        on_connect: NodeHook,
        on_disconnect: NodeHook = _nothing,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``validate_node`` returns why a node is unacceptable (the stream is refused
        with INVALID_ARGUMENT and that message) or None. ``on_connect`` runs once per new
        stream before it is served; it should compute the node's snapshot and
        ``cache.set_snapshot`` it (until a snapshot exists, the stream waits).
        ``on_disconnect`` runs when a stream ends, after it left ``connected_nodes()``.
        """
        self._cache = cache
        self._validate_node = validate_node
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._clock = clock
        self._ids = itertools.count(1)
        self._streams: dict[str, _Stream] = {}
        # Disconnect clean-ups still running (held so they are not garbage collected).
        self._cleanups: set[asyncio.Task[None]] = set()

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: Any,  # grpc.aio.ServicerContext
    ) -> None:
        await self._stream(request_iterator, context, "sotw")

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: Any,
    ) -> None:
        await self._stream(request_iterator, context, "delta")

    async def _stream(self, request_iterator: AsyncIterator[Any], context: Any, kind: str) -> None:
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        node = first.node
        if not first.HasField("node") or not node.id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first request on an ADS stream must carry node.id",
            )
        if problem := self._validate_node(node):
            _log.warning("xds.rejected", node_id=node.id, reason=problem)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)

        protocol: _Protocol = (
            DeltaStreamProtocol(node, clock=self._clock)
            if kind == "delta"
            else StreamProtocol(node, clock=self._clock)
        )
        stream = _Stream(
            connection_id=f"{node.id}-{next(self._ids)}",
            node=node,
            connected_since=self._clock(),
            protocol=protocol,
            xds_protocol=kind,
        )
        log = _log.bind(node_id=node.id, connection_id=stream.connection_id, xds=kind)
        self._streams[stream.connection_id] = stream
        metrics.CONNECTED_PROXIES.inc()
        log.info("xds.connect", peer=context.peer())
        tasks: list[asyncio.Task[None]] = []
        try:
            try:
                await self._on_connect(node)
            except Exception:
                log.exception("xds.on_connect_failed")
                await context.abort(
                    grpc.StatusCode.INTERNAL, "the control plane could not prepare this node"
                )
            stream.queue.put_nowait(first)
            cid = stream.connection_id
            tasks.append(asyncio.create_task(self._read(requests, stream), name=f"xds-read {cid}"))
            tasks.append(asyncio.create_task(self._watch(stream), name=f"xds-watch {cid}"))
            await self._serve(stream, context, log)
        finally:
            # grpc may cancel a finished stream's handler more than once: do the
            # bookkeeping before the first await, and finish the rest in a task of its
            # own that a second cancellation cannot cut short.
            for task in tasks:
                task.cancel()
            del self._streams[stream.connection_id]
            metrics.CONNECTED_PROXIES.dec()
            log.info("xds.disconnect")
            cleanup = asyncio.create_task(self._after_disconnect(tasks, node, log))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
            await asyncio.shield(cleanup)

    def sync_status(self) -> list[ProxySyncStatus]:
        """One entry per live stream, like ``istioctl proxy-status``."""
        return [
            ProxySyncStatus(
                node_id=str(s.node.id),
                connection_id=s.connection_id,
                connected_since=s.connected_since,
                types=s.protocol.sync_status(),
                held=s.protocol.held(),
                kept=s.protocol.kept(),
                xds_protocol=s.xds_protocol,
            )
            for s in sorted(self._streams.values(), key=lambda s: (s.node.id, s.connected_since))
        ]

    def connected_nodes(self) -> list[base_pb2.Node]:
        """Distinct node ids with a live stream (the newest stream's node for each)."""
        nodes: dict[str, base_pb2.Node] = {}
        for s in sorted(self._streams.values(), key=lambda s: s.connected_since):
            nodes[str(s.node.id)] = s.node
        return [nodes[k] for k in sorted(nodes)]

    async def _after_disconnect(
        self, tasks: list[asyncio.Task[None]], node: base_pb2.Node, log: Any
    ) -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._on_disconnect(node)
        except Exception:
            log.exception("xds.on_disconnect_failed")

    async def _serve(self, stream: _Stream, context: Any, log: Any) -> None:
        node_id = str(stream.node.id)
        while True:
            item = await stream.queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, BaseException):
                # Reading failed: the client is gone (or broke the stream); nothing to
                # answer, so end quietly rather than as a server error.
                log.info("xds.stream_error", error=repr(item))
                return
            current = self._cache.get(node_id)
            events: list[Event]
            if isinstance(item, _Wakeup):
                stream.wakeup_queued = False
                events = stream.protocol.on_snapshot(current) if current else []
            else:
                if isinstance(item, discovery_pb2.DeltaDiscoveryRequest) and (
                    item.resource_names_subscribe
                    or item.resource_names_unsubscribe
                    or item.initial_resource_versions
                ):
                    log.debug(
                        "xds.subscribe",
                        type=short_name(item.type_url),
                        subscribe=len(item.resource_names_subscribe),
                        unsubscribe=len(item.resource_names_unsubscribe),
                        initial_versions=len(item.initial_resource_versions),
                    )
                events = stream.protocol.on_request(item, current)
            for event in events:
                await self._handle(event, context, log)

    async def _handle(self, event: Event, context: Any, log: Any) -> None:
        match event:
            case Send():
                kind = short_name(event.type_url)
                try:
                    await context.write(event.response)
                except BaseException:
                    metrics.PUSH_ERRORS.labels(kind).inc()
                    log.warning("xds.push_failed", type=kind, version=event.version)
                    raise
                metrics.PUSHES.labels(kind).inc()
                metrics.PUSHED_RESOURCES.labels(kind).inc(len(event.names))
                log.info(
                    "xds.push",
                    type=kind,
                    version=event.version,
                    nonce=event.nonce,
                    resources=len(event.names),
                    removed=len(event.removed),
                    reason=event.reason,
                )
            case Ack():
                log.debug("xds.ack", type=short_name(event.type_url), version=event.version)
            case Nack():
                kind = short_name(event.type_url)
                metrics.NACKS.labels(kind).inc()
                log.warning(
                    "xds.nack",
                    type=kind,
                    version=event.info.version,
                    nonce=event.info.nonce,
                    error=event.info.message,
                )
            case Stale():
                log.debug(
                    "xds.stale_nonce",
                    type=short_name(event.type_url),
                    nonce=event.nonce,
                    latest=event.latest_nonce,
                )
            case Unsupported():
                log.debug("xds.unsupported_type", type_url=event.type_url)
            case Held():
                log.info(
                    "xds.hold",
                    type=short_name(event.type_url),
                    name=event.name,
                    waiting_for=list(event.waiting_for),
                    proxy_runs="previous version" if event.previous else "nothing yet",
                )
            case Kept():
                log.info("xds.keep", type="cds", name=event.name, until_acked=list(event.used_by))
            case Released():
                held_ms = (self._clock() - event.since).total_seconds() * 1000
                log.info(
                    "xds.release",
                    type=short_name(event.type_url),
                    name=event.name,
                    held_ms=round(held_ms, 1),
                )

    async def _read(self, requests: AsyncIterator[Any], stream: _Stream) -> None:
        try:
            async for request in requests:
                stream.queue.put_nowait(request)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the stream broke: let the serving coroutine end it
            stream.queue.put_nowait(e)
        else:
            stream.queue.put_nowait(_END)

    async def _watch(self, stream: _Stream) -> None:
        generation = 0
        while True:
            current = await self._cache.wait_for_change(str(stream.node.id), generation)
            generation = current.generation
            if not stream.wakeup_queued:
                stream.wakeup_queued = True
                stream.queue.put_nowait(_WAKEUP)
