"""DeltaStreamProtocol on its own (no gRPC): the incremental xDS rules, one test each,
driven with the requests Envoy sends on a DELTA_GRPC stream; and the servicer end to end
with a real grpc.aio delta client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from pilotfish.xds import types
from pilotfish.xds.cache import SnapshotCache, VersionedSnapshot
from pilotfish.xds.delta import MAX_OUTSTANDING, DeltaStreamProtocol
from pilotfish.xds.snapshot import Snapshot
from pilotfish.xds.status import SyncStatus
from pilotfish.xds.stream import Ack, Held, Kept, Nack, Send, Unsupported
from tests.test_xds_fixtures import (
    ROUTER,
    eds_cluster,
    endpoints,
    harness,
    listener,
    routes,
    run,
    secret,
)
from testsupport.wait import wait_until_async

CDS, EDS, LDS, RDS, SDS = (
    types.CLUSTER,
    types.ENDPOINT,
    types.LISTENER,
    types.ROUTE,
    types.SECRET,
)
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
A, B, C = (f"outbound|80||{s}.default.svc.cluster.local" for s in "abc")


def snap(
    route_to: str = A,
    clusters: Iterable[str] = (A,),
    *,
    timeouts: dict[str, int] | None = None,
    ports: dict[str, int] | None = None,
    secrets: Iterable[str] = (),
) -> Snapshot:
    """Listener 0.0.0.0_8080 -> route config http.8080 -> `route_to`; a cluster and its
    endpoints for each of `clusters`."""
    names = list(clusters)
    return Snapshot.of(
        clusters=[eds_cluster(n, timeout_s=(timeouts or {}).get(n, 1)) for n in names],
        endpoints=[endpoints(n, (ports or {}).get(n, 8000)) for n in names],
        listeners=[listener("0.0.0.0_8080", 8080, "http.8080")],
        routes=[routes("http.8080", route_to)],
        secrets=[secret(s) for s in secrets],
    )


def sends(events: list[Any]) -> list[Send]:
    return [e for e in events if isinstance(e, Send)]


def carried(send: Send) -> dict[str, str]:
    """name -> version of the resources a delta response carries."""
    assert isinstance(send.response, discovery_pb2.DeltaDiscoveryResponse)
    return {r.name: r.version for r in send.response.resources}


class Envoy:
    """Sends DeltaStreamProtocol the requests an Envoy on DELTA_GRPC would."""

    def __init__(self, cache: SnapshotCache | None = None) -> None:
        self.cache = cache or SnapshotCache()
        self.proto = DeltaStreamProtocol(base_pb2.Node(id=ROUTER), clock=lambda: T0)
        self.current: VersionedSnapshot | None = None
        self.last: dict[str, Send] = {}
        # What this Envoy holds: type -> name -> version.
        self.has: dict[str, dict[str, str]] = {t: {} for t in types.PUSH_ORDER}

    def set(self, snapshot: Snapshot) -> list[Any]:
        self.current = self.cache.set_snapshot(ROUTER, snapshot)
        return self._record(self.proto.on_snapshot(self.current))

    def request(
        self,
        type_url: str,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        *,
        answer: Send | None = None,
        error: str = "",
        initial: dict[str, str] | None = None,
    ) -> list[Any]:
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=initial or {},
        )
        if answer is not None:
            req.response_nonce = answer.nonce
        if error:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        return self._record(self.proto.on_request(req, self.current))

    def ack(self, type_url: str) -> list[Any]:
        return self.request(type_url, answer=self.last[type_url])

    def nack(self, type_url: str) -> list[Any]:
        return self.request(type_url, answer=self.last[type_url], error="rejected")

    def _record(self, events: list[Any]) -> list[Any]:
        for send in sends(events):
            self.last[send.type_url] = send
            held = self.has[send.type_url]
            held.update(carried(send))
            for name in send.removed:
                held.pop(name, None)
        return events

    def start(self, snapshot: Snapshot) -> None:
        """Envoy's start-up: CDS, EDS for its clusters, LDS, RDS, each ACKed."""
        self.set(snapshot)
        [cds] = sends(self.request(CDS))
        self.request(EDS, subscribe=sorted(carried(cds)))
        self.ack(EDS)
        self.ack(CDS)
        self.request(LDS)
        self.request(RDS, subscribe=["http.8080"])
        self.ack(LDS)
        self.ack(RDS)
        assert self.status() == dict.fromkeys(("cds", "eds", "lds", "rds"), "SYNCED") | {
            "sds": "NOT SENT"
        }

    def status(self) -> dict[str, str]:
        return {types.short_name(t): str(s.status) for t, s in self.proto.sync_status().items()}


def test_first_requests_get_everything_with_per_resource_versions() -> None:
    envoy = Envoy()
    current = snap(clusters=[A, B])
    envoy.set(current)
    [cds] = sends(envoy.request(CDS))  # legacy wildcard: an empty first subscription
    assert carried(cds) == {n: current.resource_hash(CDS, n) for n in (A, B)}
    assert cds.response.system_version_info == envoy.current.version(CDS)  # type: ignore[union-attr]
    [eds] = sends(envoy.request(EDS, subscribe=[A]))
    assert list(carried(eds)) == [A]  # named: only what is asked for
    [lds] = sends(envoy.request(LDS, subscribe=["*"]))  # explicit wildcard
    assert list(carried(lds)) == ["0.0.0.0_8080"]


def test_a_wildcard_first_request_is_answered_even_when_empty() -> None:
    envoy = Envoy()
    envoy.set(Snapshot.of())
    [cds] = sends(envoy.request(CDS))
    assert carried(cds) == {} and cds.removed == ()
    assert envoy.request(EDS, subscribe=["nothing"]) == []  # named: nothing to say


def test_only_changed_resources_are_sent() -> None:
    envoy = Envoy()
    envoy.start(snap(clusters=[A, B]))
    [eds] = sends(envoy.set(snap(clusters=[A, B], ports={B: 9000})))
    assert list(carried(eds)) == [B]
    envoy.ack(EDS)
    assert envoy.set(snap(clusters=[A, B], ports={B: 9000})) == []  # same again: nothing
    assert envoy.status()["eds"] == "SYNCED"


def test_endpoints_follow_a_changed_cluster_even_unchanged() -> None:
    # Envoy re-creates a changed cluster, which warms only on its endpoints, and asks
    # for nothing (its EDS subscription is unchanged).
    envoy = Envoy()
    envoy.start(snap(clusters=[A, B]))
    cds, eds = sends(envoy.set(snap(clusters=[A, B], timeouts={A: 5})))
    assert (cds.type_url, list(carried(cds))) == (CDS, [A])
    assert (eds.type_url, list(carried(eds))) == (EDS, [A])
    envoy.ack(EDS)
    envoy.ack(CDS)
    assert envoy.status()["cds"] == envoy.status()["eds"] == "SYNCED"


def test_endpoints_follow_clusters_sent_in_answer_to_a_request() -> None:
    envoy = Envoy()
    envoy.start(snap(clusters=[A]))
    envoy.current = envoy.cache.set_snapshot(ROUTER, snap(clusters=[A], timeouts={A: 5}))
    # The CDS ACK reaches the stream before the wake-up: the change goes out in order.
    events = envoy.ack(CDS)
    assert [(s.type_url, list(carried(s))) for s in sends(events)] == [(CDS, [A]), (EDS, [A])]


def test_a_gone_wildcard_resource_is_removed() -> None:
    envoy = Envoy()
    envoy.start(snap(clusters=[A, B]))
    cds, eds = sends(envoy.set(snap(clusters=[A])))
    assert carried(cds) == {} and cds.removed == (B,)
    assert B not in envoy.has[CDS]
    # Its endpoints were sent on this stream and are still subscribed (Envoy drops the
    # subscription only once it removed the cluster): gone too.
    assert carried(eds) == {} and eds.removed == (B,)


def test_named_resources_subscribe_and_unsubscribe() -> None:
    envoy = Envoy()
    envoy.start(snap(clusters=[A]))
    # Asked for and not there (yet): nothing, certainly not "removed".
    assert sends(envoy.request(SDS, subscribe=["cert"])) == []
    [sds] = sends(envoy.set(snap(clusters=[A], secrets=["cert", "other"])))
    assert list(carried(sds)) == ["cert"]  # only the subscribed one
    envoy.ack(SDS)
    assert sends(envoy.request(SDS, unsubscribe=["cert"])) == []
    [again] = sends(envoy.request(SDS, subscribe=["cert"]))  # dropped, so sent anew
    assert list(carried(again)) == ["cert"]


def test_a_named_resource_sent_and_gone_is_removed() -> None:
    envoy = Envoy()
    envoy.start(snap(clusters=[A], secrets=["cert"]))
    envoy.request(SDS, subscribe=["cert"])
    envoy.ack(SDS)
    [sds] = sends(envoy.set(snap(clusters=[A])))
    assert sds.removed == ("cert",)


def test_reconnect_sends_only_what_differs() -> None:
    first = Envoy()
    first.start(snap(clusters=[A, B]))
    kept = {t: dict(h) for t, h in first.has.items()}
    # A new stream (a restarted control plane: a new cache, other type versions): B's
    # endpoints changed meanwhile, and the client holds a listener we no longer have,
    # and a route configuration we don't have (yet).
    envoy = Envoy(SnapshotCache())
    envoy.set(snap(clusters=[A, B], ports={B: 9000}))
    [cds] = sends(envoy.request(CDS, initial=kept[CDS]))
    assert carried(cds) == {} and cds.removed == ()  # answered: the first wildcard request
    [eds] = sends(envoy.request(EDS, subscribe=[A, B], initial=kept[EDS]))
    assert list(carried(eds)) == [B]
    [lds] = sends(envoy.request(LDS, initial=kept[LDS] | {"gone": "x"}))
    assert carried(lds) == {} and lds.removed == ("gone",)
    rds_initial = kept[RDS] | {"elsewhere": "x"}
    assert sends(envoy.request(RDS, subscribe=sorted(rds_initial), initial=rds_initial)) == []
    for type_url in (CDS, EDS, LDS):
        envoy.ack(type_url)
    # In sync although RDS needed no response at all.
    assert envoy.status() == dict.fromkeys(("cds", "eds", "lds", "rds"), "SYNCED") | {
        "sds": "NOT SENT"
    }


def test_a_nacked_resource_is_not_resent_until_it_changes() -> None:
    envoy = Envoy()
    envoy.start(snap(clusters=[A, B]))
    before = dict(envoy.has[EDS])
    envoy.set(snap(clusters=[A, B], ports={A: 9000}))
    [nack] = envoy.nack(EDS)
    assert isinstance(nack, Nack) and nack.info.message == "rejected"
    assert envoy.status()["eds"] == "ERROR"
    # Another resource changes: sent alone, the rejected one is not sent again.
    [eds] = sends(envoy.set(snap(clusters=[A, B], ports={A: 9000, B: 9001})))
    assert list(carried(eds)) == [B]
    envoy.ack(EDS)
    assert envoy.status()["eds"] == "ERROR"  # the rejected one is still withheld
    # It changes: sent.
    [eds] = sends(envoy.set(snap(clusters=[A, B], ports={A: 9002, B: 9001})))
    assert list(carried(eds)) == [A]
    envoy.nack(EDS)
    # Back to what the client has: nothing to send, and in sync again.
    assert envoy.set(snap(clusters=[A, B], ports={B: 9001})) == []
    assert envoy.status()["eds"] == "SYNCED"
    assert envoy.proto.types[EDS].client[A] == before[A]


def test_acks_by_nonce_with_responses_in_flight() -> None:
    envoy = Envoy()
    envoy.start(snap(clusters=[A]))
    [first] = sends(envoy.set(snap(clusters=[A], ports={A: 1})))
    [second] = sends(envoy.set(snap(clusters=[A], ports={A: 2})))
    assert first.nonce != second.nonce
    [ack] = envoy.request(EDS, answer=first)
    assert isinstance(ack, Ack) and ack.version == first.version
    assert envoy.status()["eds"] == "STALE"
    envoy.request(EDS, answer=second)
    assert envoy.status()["eds"] == "SYNCED"
    # An answer to a response long answered (or of an earlier stream): no ACK again,
    # but its subscription change counts.
    assert envoy.request(EDS, subscribe=[B], answer=first) == []
    assert B in envoy.proto.types[EDS].names


def test_pushes_go_in_make_before_break_order() -> None:
    envoy = Envoy()
    envoy.start(snap(clusters=[A], secrets=["s"]))
    envoy.request(SDS, subscribe=["s"])
    envoy.ack(SDS)
    changed = Snapshot.of(
        clusters=[eds_cluster(A, timeout_s=3)],
        endpoints=[endpoints(A, 8001)],
        listeners=[listener("0.0.0.0_8080", 8081, "http.8080")],
        routes=[routes("http.8080", A, prefix="/x")],
        secrets=[secret("s"), secret("t")],
    )
    envoy.request(SDS, subscribe=["t"], answer=None)
    order = [types.short_name(s.type_url) for s in sends(envoy.set(changed))]
    assert order == ["cds", "eds", "lds", "rds", "sds"]


def test_a_route_waits_for_its_new_cluster_and_the_old_one_stays_until_unused() -> None:
    envoy = Envoy()
    envoy.start(snap(route_to=A, clusters=[A]))
    events = envoy.set(snap(route_to=B, clusters=[B]))
    [cds] = sends(events)  # no RDS yet: B is not warm
    assert list(carried(cds)) == [B] and cds.removed == ()  # A kept: the route uses it
    assert [type(e) for e in events if isinstance(e, Held | Kept)] == [Kept, Held]
    assert envoy.status()["rds"] == "HELD"
    assert "+held." in cds.version
    envoy.request(EDS, subscribe=[B])
    envoy.ack(EDS)
    [rds] = sends(envoy.ack(CDS))  # B warm: the route goes
    assert rds.type_url == RDS and list(carried(rds)) == ["http.8080"]
    cds, eds = sends(envoy.ack(RDS))  # the route no longer uses A: it goes
    assert cds.removed == (A,) and carried(cds) == {}
    assert eds.removed == (A,)
    assert cds.version == envoy.current.version(CDS)  # type: ignore[union-attr]


def test_unknown_types_are_ignored() -> None:
    envoy = Envoy()
    url = "type.googleapis.com/envoy.service.runtime.v3.Runtime"
    assert envoy.request(url) == [Unsupported(url)]


# --- over gRPC ------------------------------------------------------------------------


def test_delta_stream_over_grpc() -> None:
    async def main() -> None:
        async with harness() as h:
            h.initial[ROUTER] = snap(clusters=[A, B])
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(h.channel)
            call = stub.DeltaAggregatedResources()
            await call.write(
                discovery_pb2.DeltaDiscoveryRequest(
                    node=base_pb2.Node(id=ROUTER),
                    type_url=CDS,
                    initial_resource_versions={A: h.initial[ROUTER].resource_hash(CDS, A)},
                )
            )
            response = await asyncio.wait_for(call.read(), 5)
            assert isinstance(response, discovery_pb2.DeltaDiscoveryResponse)
            assert [r.name for r in response.resources] == [B]  # A is up to date
            assert response.control_plane.identifier == "pilotfish"
            [proxy] = h.ads.sync_status()
            assert proxy.to_dict()["xds_protocol"] == "delta"
            assert proxy.types[CDS].status == SyncStatus.STALE
            await call.write(
                discovery_pb2.DeltaDiscoveryRequest(type_url=CDS, response_nonce=response.nonce)
            )

            await wait_until_async(
                lambda: h.ads.sync_status()[0].types[CDS].status == SyncStatus.SYNCED,
                timeout=5,
            )
            call.cancel()
            assert await h.disconnected.get() == ROUTER

    run(main())


def test_a_rejected_endpoint_is_not_resent_with_its_cluster() -> None:
    # The re-send after a CDS change is not a way around the NACK rule: the rejected
    # endpoints would only be rejected again.
    envoy = Envoy()
    envoy.start(snap(clusters=[A]))
    envoy.set(snap(clusters=[A], ports={A: 9000}))
    envoy.nack(EDS)
    [cds] = sends(envoy.set(snap(clusters=[A], ports={A: 9000}, timeouts={A: 5})))
    assert cds.type_url == CDS


def test_wildcard_asked_later_is_answered_in_full() -> None:
    envoy = Envoy()
    envoy.set(snap(clusters=[A, B]))
    [named] = sends(envoy.request(CDS, subscribe=[A]))  # not a wildcard first request
    assert list(carried(named)) == [A]
    [everything] = sends(envoy.request(CDS, subscribe=["*"], answer=named))
    assert list(carried(everything)) == [B]  # A it has


def test_subscription_changes_count_whatever_nonce_they_carry() -> None:
    # Unlike state of the world, a delta request is never stale: its changes are
    # incremental, so dropping one would lose it for good.
    envoy = Envoy()
    envoy.start(snap(clusters=[A], secrets=["s", "t"]))
    [first] = sends(envoy.request(SDS, subscribe=["s"]))
    [second] = sends(envoy.request(SDS, subscribe=["t"]))  # no nonce: first unanswered
    assert list(carried(first)) == ["s"] and list(carried(second)) == ["t"]
    envoy.request(SDS, answer=second)  # answers both
    assert envoy.status()["sds"] == "SYNCED"


def test_a_client_that_never_answers_does_not_grow_the_stream() -> None:
    envoy = Envoy()
    envoy.start(snap(clusters=[A]))
    for port in range(1, MAX_OUTSTANDING + 10):
        envoy.set(snap(clusters=[A], ports={A: port}))
    assert len(envoy.proto.types[EDS].outstanding) == MAX_OUTSTANDING
    [ack] = envoy.ack(EDS)  # the latest is still known
    assert isinstance(ack, Ack)
    assert envoy.status()["eds"] == "SYNCED"
