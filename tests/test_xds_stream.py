"""StreamProtocol on its own (no gRPC), and how AdsServer ends a stream that broke."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client import REGISTRY

from pilotfish.xds import types
from pilotfish.xds.ads import AdsServer
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.stream import Ack, Send, Stale, StreamProtocol, Unsupported
from tests.test_xds_fixtures import CLUSTER_NAME, SIDECAR, run, snapshot

CDS, EDS, LDS, RDS = types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE


def request(type_url: str, *names: str, sent: Send | None = None) -> Any:
    req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names))
    if sent is not None:
        req.version_info, req.response_nonce = sent.version, sent.nonce
    return req


def sends(events: list[Any]) -> list[str]:
    return [types.short_name(e.type_url) for e in events if isinstance(e, Send)]


def test_a_request_never_overtakes_a_pending_push() -> None:
    # The snapshot changed CDS and RDS; the RDS ACK arrives before the stream handled
    # the change. Answering RDS alone first would route to clusters Envoy lacks (503).
    cache = SnapshotCache()
    proto = StreamProtocol(base_pb2.Node(id=SIDECAR))
    first = cache.set_snapshot(SIDECAR, snapshot())
    [cds] = proto.on_request(request(CDS), first)
    assert isinstance(cds, Send)
    proto.on_request(request(CDS, sent=cds), first)
    [rds] = proto.on_request(request(RDS, "http.8080"), first)
    assert isinstance(rds, Send)

    second = cache.set_snapshot(SIDECAR, snapshot(cluster_timeout=9, prefix="/new"))
    events = proto.on_request(request(RDS, "http.8080", sent=rds), second)
    assert isinstance(events[0], Ack)
    assert sends(events) == ["cds", "rds"]
    assert proto.on_snapshot(second) == []  # the wake-up that follows finds nothing new


def test_a_request_without_nonce_after_a_response_is_stale() -> None:
    # Sent before the client saw our response: its names may be older than what the
    # client has since (taking them would forget resources it holds).
    cache = SnapshotCache()
    proto = StreamProtocol(base_pb2.Node(id=SIDECAR))
    current = cache.set_snapshot(SIDECAR, snapshot(extra_clusters=["b"]))
    [eds] = proto.on_request(request(EDS, CLUSTER_NAME, "b"), current)
    assert isinstance(eds, Send)
    [stale] = proto.on_request(request(EDS, CLUSTER_NAME), current)
    assert isinstance(stale, Stale) and stale.nonce == ""
    assert proto.types[EDS].names == {CLUSTER_NAME, "b"}


def test_named_types_never_get_an_empty_response() -> None:
    cache = SnapshotCache()
    proto = StreamProtocol(base_pb2.Node(id=SIDECAR))
    current = cache.set_snapshot(SIDECAR, snapshot())
    assert proto.on_request(request(EDS, "unknown"), current) == []
    assert sends(proto.on_request(request(CDS), current)) == ["cds"]  # wildcard: always


def test_unknown_types_are_ignored() -> None:
    proto = StreamProtocol(base_pb2.Node(id=SIDECAR))
    url = "type.googleapis.com/envoy.service.runtime.v3.Runtime"
    assert proto.on_request(request(url), None) == [Unsupported(url)]


def test_nonces_differ_between_streams() -> None:
    cache = SnapshotCache()
    current = cache.set_snapshot(SIDECAR, snapshot())
    [a] = StreamProtocol(base_pb2.Node(id=SIDECAR)).on_request(request(CDS), current)
    [b] = StreamProtocol(base_pb2.Node(id=SIDECAR)).on_request(request(CDS), current)
    assert isinstance(a, Send) and isinstance(b, Send)
    assert a.nonce != b.nonce and a.version == b.version


# --- a stream that breaks mid-push ----------------------------------------------------


class BrokenContext:
    """A grpc.aio context whose peer vanished: every write fails."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def write(self, message: Any) -> None:
        raise ConnectionResetError("peer went away")

    async def abort(self, code: Any, details: str) -> None:
        raise AssertionError(f"unexpected abort {code}: {details}")


def test_failed_write_counts_a_push_error_and_ends_the_stream() -> None:
    async def main() -> None:
        cache = SnapshotCache()
        disconnected: list[str] = []

        async def on_connect(node: Any) -> None:
            cache.set_snapshot(node.id, snapshot())

        async def on_disconnect(node: Any) -> None:
            disconnected.append(node.id)

        ads = AdsServer(
            cache,
            validate_node=lambda n: None,
            on_connect=on_connect,
            on_disconnect=on_disconnect,
        )
        client_stays = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield discovery_pb2.DiscoveryRequest(
                node=base_pb2.Node(id=SIDECAR), type_url=EDS, resource_names=[CLUSTER_NAME]
            )
            await client_stays.wait()  # never set: the client neither sends nor closes

        before = REGISTRY.get_sample_value("pilotfish_xds_push_errors_total", {"type": "eds"})
        with pytest.raises(ConnectionResetError):
            await ads.StreamAggregatedResources(requests(), BrokenContext())
        after = REGISTRY.get_sample_value("pilotfish_xds_push_errors_total", {"type": "eds"})
        assert (after or 0) == (before or 0) + 1
        assert ads.sync_status() == []
        assert disconnected == [SIDECAR]
        # The stream's reader and watcher died with it.
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("xds-")]

    run(main())
