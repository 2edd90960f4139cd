"""The ADS protocol end to end: a real grpc.aio server and a real grpc.aio client stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client import REGISTRY

from pilotfish.xds import types
from pilotfish.xds.ads import AdsServer
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.grpc_server import GrpcBindError, start_grpc_server
from pilotfish.xds.snapshot import Snapshot
from pilotfish.xds.status import SyncStatus
from tests.test_xds_fixtures import (
    CLUSTER_NAME,
    ROUTER,
    SIDECAR,
    Client,
    Harness,
    eds_cluster,
    endpoints,
    harness,
    listener,
    names_of,
    routes,
    run,
    snapshot,
)
from testsupport.wait import wait_until_async

CDS, EDS, LDS, RDS = types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE

pytestmark = pytest.mark.timeout(60)


def metric(name: str, type_url: str) -> float:
    value = REGISTRY.get_sample_value(name, {"type": types.short_name(type_url)})
    return value or 0.0


def status_of(h: Harness, node_id: str = SIDECAR) -> dict[str, Any]:
    [proxy] = [p for p in h.ads.sync_status() if p.node_id == node_id]
    return {types.short_name(t): s for t, s in proxy.types.items()}


async def until(predicate: Any, message: str) -> Any:
    return await wait_until_async(predicate, timeout=5, message=message)


async def subscribe_all(c: Client) -> dict[str, Any]:
    """The Envoy start-up dance: CDS, EDS for the clusters, LDS, RDS; each ACKed."""
    got = {}
    await c.request(CDS)
    got[CDS] = await c.recv()
    await c.ack(CDS)
    await c.request(EDS, names_of(got[CDS]))
    got[EDS] = await c.recv()
    await c.ack(EDS, names_of(got[CDS]))
    await c.request(LDS)
    got[LDS] = await c.recv()
    await c.ack(LDS)
    await c.request(RDS, ["http.8080"])
    got[RDS] = await c.recv()
    await c.ack(RDS, ["http.8080"])
    return got


def test_first_request_per_type_is_answered_and_acks_are_not() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            c = h.client()
            got = await subscribe_all(c)
            assert [types.short_name(r.type_url) for r in got.values()] == [
                "cds",
                "eds",
                "lds",
                "rds",
            ]
            assert names_of(got[CDS]) == [CLUSTER_NAME]
            assert names_of(got[EDS]) == [CLUSTER_NAME]
            assert names_of(got[LDS]) == ["0.0.0.0_8080"]
            assert names_of(got[RDS]) == ["http.8080"]
            versions = h.cache.get(SIDECAR)
            assert versions is not None
            for type_url, response in got.items():
                assert response.version_info == versions.version(type_url)
                assert response.control_plane.identifier == "pilotfish"
            await c.expect_nothing()  # ACKs get no answer
            status = status_of(h)
            assert {k: s.status for k, s in status.items()} == {
                "cds": SyncStatus.SYNCED,
                "eds": SyncStatus.SYNCED,
                "lds": SyncStatus.SYNCED,
                "rds": SyncStatus.SYNCED,
                "sds": SyncStatus.NOT_SENT,
            }
            assert status["cds"].sent == status["cds"].acked == got[CDS].version_info
            assert status["cds"].sent_nonce == got[CDS].nonce
            assert h.connects == [SIDECAR]
            await c.close()

    run(main())


def test_nonces_are_unique_per_response() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            c = h.client()
            await c.request(EDS, [CLUSTER_NAME])
            first = await c.recv()
            await c.ack(EDS, [CLUSTER_NAME, "b"])  # grows, "b" does not exist yet
            await c.expect_nothing()  # nothing to say about "b"
            h.cache.set_snapshot(SIDECAR, snapshot(extra_clusters=["b"]))
            second = await c.recv()
            assert names_of(second) == ["b", CLUSTER_NAME]  # the missing name, remembered
            assert second.nonce != first.nonce
            assert second.version_info != first.version_info
            await c.close()

    run(main())


def test_unchanged_snapshot_sends_nothing() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            c = h.client()
            await subscribe_all(c)
            h.cache.set_snapshot(SIDECAR, snapshot())  # same content, new objects
            await c.expect_nothing()
            await c.close()

    run(main())


def test_push_order_is_make_before_break() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            c = h.client()
            await subscribe_all(c)
            await until(lambda: status_of(h)["rds"].status == SyncStatus.SYNCED, "RDS ACKed")
            # Everything changes at once (a new cluster the new route uses).
            changed = Snapshot.of(
                clusters=[eds_cluster(CLUSTER_NAME), eds_cluster("new")],
                endpoints=[endpoints(CLUSTER_NAME, 8001), endpoints("new", 9000)],
                listeners=[listener("0.0.0.0_8080", 8081, "http.8080")],
                routes=[routes("http.8080", "new")],
            )
            before = metric("pilotfish_xds_pushes_total", CDS)
            h.cache.set_snapshot(SIDECAR, changed)
            order = [types.short_name((await c.recv()).type_url) for _ in range(3)]
            assert order == ["cds", "eds", "lds"]
            assert metric("pilotfish_xds_pushes_total", CDS) == before + 1
            # The routes to "new" wait until the proxy ACKs the CDS that adds it (Envoy
            # does once "new" is warm).
            await c.expect_nothing()
            await c.ack(CDS)
            rds = await c.recv()
            assert rds.type_url == RDS and names_of(rds) == ["http.8080"]
            await c.close()

    run(main())


def test_only_requested_types_are_pushed() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            c = h.client()
            await c.request(LDS)
            await c.recv()
            await c.ack(LDS)
            h.cache.set_snapshot(SIDECAR, snapshot(cluster_timeout=5, ports=(1,), prefix="/p"))
            await c.expect_nothing()  # CDS, EDS, RDS changed; the client wants none of them
            await c.close()

    run(main())


def test_nack_is_recorded_and_not_answered_with_the_same_version() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            c = h.client()
            await subscribe_all(c)
            nacks_before = metric("pilotfish_xds_nacks_total", CDS)
            h.cache.set_snapshot(SIDECAR, snapshot(cluster_timeout=7))
            pushed = await c.recv()
            assert pushed.type_url == CDS
            await c.nack(CDS, message="cluster: bad timeout")
            await c.expect_nothing()  # no NACK loop

            status = status_of(h)["cds"]
            assert status.status == SyncStatus.ERROR
            assert status.sent == pushed.version_info
            assert status.acked != pushed.version_info
            assert status.nack is not None
            assert (status.nack.version, status.nack.message) == (
                pushed.version_info,
                "cluster: bad timeout",
            )
            assert status.nacks == 1
            assert metric("pilotfish_xds_nacks_total", CDS) == nacks_before + 1
            as_json = json.loads(h.ads.sync_status()[0].to_json())
            assert as_json["types"]["cds"]["status"] == "ERROR"
            assert as_json["types"]["cds"]["nack"]["message"] == "cluster: bad timeout"

            # Envoy keeps the rejected nonce on later subscription requests, without
            # error_detail: that is not an ACK of the rejected version.
            await c.request(CDS, version=status.acked or "", nonce=pushed.nonce)
            await c.expect_nothing()
            assert status_of(h)["cds"].status == SyncStatus.ERROR

            # The same content again (other types change) is not re-sent either...
            h.cache.set_snapshot(SIDECAR, snapshot(cluster_timeout=7, ports=(8001,)))
            eds = await c.recv()
            assert eds.type_url == EDS
            await c.expect_nothing()
            # ...but a new version of the type is.
            h.cache.set_snapshot(SIDECAR, snapshot(cluster_timeout=8, ports=(8001,)))
            fixed = await c.recv()
            assert fixed.type_url == CDS and fixed.version_info != pushed.version_info
            await c.ack(CDS)
            await until(lambda: status_of(h)["cds"].status == SyncStatus.SYNCED, "CDS ACK recorded")
            assert status_of(h)["cds"].nack is not None  # the history stays visible
            await c.close()

    run(main())


def test_stale_nonce_is_ignored() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            c = h.client()
            await c.request(EDS, [CLUSTER_NAME])
            old = await c.recv()
            h.cache.set_snapshot(SIDECAR, snapshot(ports=(9000,), extra_clusters=["b"]))
            new = await c.recv()
            # A request answering the superseded response, even one adding a name: ignored.
            await c.request(EDS, [CLUSTER_NAME, "b"], version=old.version_info, nonce=old.nonce)
            await c.expect_nothing()
            assert status_of(h)["eds"].status == SyncStatus.STALE
            # The request answering the latest response carries the current names.
            await c.request(EDS, [CLUSTER_NAME, "b"], version=new.version_info, nonce=new.nonce)
            grown = await c.recv()
            assert names_of(grown) == ["b", CLUSTER_NAME]
            assert grown.version_info == new.version_info
            await c.close()

    run(main())


def test_name_subscription_growth_is_answered_even_for_names_sent_before() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot(extra_clusters=["b"])
            c = h.client()
            await c.request(EDS, ["b"])
            assert names_of(await c.recv()) == ["b"]
            await c.ack(EDS, ["b", CLUSTER_NAME])
            assert names_of(await c.recv()) == ["b", CLUSTER_NAME]
            await c.ack(EDS, [CLUSTER_NAME])  # shrinking needs no answer
            await c.expect_nothing()
            await c.ack(EDS, [CLUSTER_NAME, "b"])  # "b" again: sent before, still sent
            assert names_of(await c.recv()) == ["b", CLUSTER_NAME]
            await c.close()

    run(main())


def test_eds_is_answered_after_a_cds_push_even_if_unchanged() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            c = h.client()
            got = await subscribe_all(c)
            h.cache.set_snapshot(SIDECAR, snapshot(cluster_timeout=3))  # clusters only
            cds = await c.recv()
            assert cds.type_url == CDS
            await c.expect_nothing()
            await c.ack(CDS)
            # Envoy re-created the cluster; it stays warming until EDS arrives.
            await c.request(
                EDS, [CLUSTER_NAME], version=got[EDS].version_info, nonce=got[EDS].nonce
            )
            eds = await c.recv()
            assert eds.type_url == EDS
            assert eds.version_info == got[EDS].version_info
            assert names_of(eds) == [CLUSTER_NAME]
            await c.ack(EDS, [CLUSTER_NAME])
            await c.expect_nothing()  # only once per CDS push

            # Same for LDS -> RDS.
            h.cache.set_snapshot(SIDECAR, snapshot(cluster_timeout=3, listener_port=9090))
            assert (await c.recv()).type_url == LDS
            await c.ack(LDS)
            await c.ack(RDS, ["http.8080"])
            rds = await c.recv()
            assert rds.type_url == RDS and rds.version_info == got[RDS].version_info
            await c.close()

    run(main())


def test_stream_waits_for_the_first_snapshot() -> None:
    async def main() -> None:
        async with harness() as h:
            c = h.client()  # on_connect sets nothing for this node
            await c.request(CDS)
            await c.request(LDS)
            await c.expect_nothing()
            h.cache.set_snapshot(SIDECAR, snapshot())
            assert [(await c.recv()).type_url for _ in range(2)] == [CDS, LDS]
            await c.close()

    run(main())


def test_each_node_gets_its_own_snapshot() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            h.initial[ROUTER] = Snapshot.of()
            sidecar, router = h.client(SIDECAR), h.client(ROUTER)
            await sidecar.request(CDS)
            await router.request(CDS)
            assert names_of(await sidecar.recv()) == [CLUSTER_NAME]
            assert names_of(await router.recv()) == []  # wildcard: empty full state
            h.cache.set_snapshot(ROUTER, snapshot())
            assert names_of(await router.recv()) == [CLUSTER_NAME]
            await sidecar.expect_nothing()
            assert [n.id for n in h.ads.connected_nodes()] == sorted([SIDECAR, ROUTER])
            await sidecar.close()
            await router.close()

    run(main())


def test_reconnect_with_a_nonce_from_the_previous_stream_is_answered() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            c = h.client()
            await c.request(CDS, version="old/1", nonce="1-deadbeef")
            assert (await c.recv()).type_url == CDS
            await c.close()

    run(main())


def test_malformed_node_is_refused() -> None:
    async def main() -> None:
        async with harness() as h:
            c = h.client("not-a-node-id")
            await c.request(CDS)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await c.recv()
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details() == (
                "node id 'not-a-node-id' is not type~ip~pod.namespace~domain"
            )
            assert h.connects == []

            c = h.client(node=base_pb2.Node())
            await c.request(CDS)
            assert await c.status() == grpc.StatusCode.INVALID_ARGUMENT
            assert h.ads.sync_status() == []

    run(main())


def test_node_is_taken_from_the_first_request_only() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            c = h.client()
            await c.request(CDS)
            await c.recv()
            # A later request naming another node changes nothing.
            req = discovery_pb2.DiscoveryRequest(type_url=LDS, node=base_pb2.Node(id=ROUTER))
            await c.call.write(req)
            assert names_of(await c.recv()) == ["0.0.0.0_8080"]
            assert [n.id for n in h.ads.connected_nodes()] == [SIDECAR]
            await c.close()

    run(main())


def test_sync_status_and_disconnect() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            gauge_before = REGISTRY.get_sample_value("pilotfish_xds_connected_proxies") or 0
            c = h.client()
            await c.request(CDS)
            cds = await c.recv()
            [proxy] = h.ads.sync_status()
            assert proxy.node_id == SIDECAR
            assert proxy.connection_id.startswith(SIDECAR)
            doc = proxy.to_dict()
            assert list(doc["types"]) == ["cds", "eds", "lds", "rds", "sds"]
            assert doc["types"]["cds"]["status"] == "STALE"  # sent, not ACKed yet
            assert doc["types"]["cds"]["sent"] == cds.version_info
            assert doc["types"]["eds"]["status"] == "NOT SENT"
            assert REGISTRY.get_sample_value("pilotfish_xds_connected_proxies") == (
                gauge_before + 1
            )
            await c.close()
            assert await h.disconnected.get() == SIDECAR
            assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("xds-")]
            assert h.ads.sync_status() == []
            assert h.ads.connected_nodes() == []
            assert REGISTRY.get_sample_value("pilotfish_xds_connected_proxies") == gauge_before

    run(main())


def test_client_half_close_ends_the_stream() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[SIDECAR] = snapshot()
            c = h.client()
            await c.request(CDS)
            await c.recv()
            await c.call.done_writing()
            assert await h.disconnected.get() == SIDECAR
            assert await c.call.code() == grpc.StatusCode.OK
            await c.close()

    run(main())


def test_bind_failure_names_the_address() -> None:
    async def main() -> None:
        async with harness() as h:
            ads = AdsServer(SnapshotCache(), validate_node=lambda n: None, on_connect=_noop)
            address = f"127.0.0.1:{h.port}"
            with pytest.raises(GrpcBindError, match=f"cannot listen for xDS on {address}"):
                await start_grpc_server(ads, address)

    run(main())


async def _noop(node: Any) -> None:
    return None
