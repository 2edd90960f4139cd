"""Push ordering on one stream (no gRPC): routes wait for their clusters to warm, clusters
stay until no route the proxy may run uses them.

Each test drives ``StreamProtocol`` with the requests Envoy sends (an ACK of CDS means
the clusters it added are warm: Envoy holds that ACK back until they are).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from pilotfish.xds import types
from pilotfish.xds.cache import SnapshotCache, VersionedSnapshot
from pilotfish.xds.cluster_refs import cluster_references
from pilotfish.xds.snapshot import Snapshot
from pilotfish.xds.status import ProxySyncStatus, SyncStatus
from pilotfish.xds.stream import Held, Kept, Released, Send, Stale, StreamProtocol
from tests.test_xds_fixtures import (
    ROUTER,
    eds_cluster,
    endpoints,
    listener,
    routes,
    split_routes,
    tcp_listener,
)

CDS, EDS, LDS, RDS = types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
V1, V2, V3 = (f"outbound|80|{s}|echo.default.svc.cluster.local" for s in ("v1", "v2", "v3"))


def snap(
    route: str | dict[str, int] | None,
    clusters: Iterable[str],
    *,
    mirror: str = "",
    tcp: str | None = None,
    timeout: int = 1,
) -> Snapshot:
    """Listener 0.0.0.0_8080 -> route config http.8080 -> `route` (weights: a split);
    with `tcp`, also a TCP listener tcp_9000 proxying to that cluster."""
    names = list(clusters)
    listeners = [listener("0.0.0.0_8080", 8080, "http.8080")]
    if tcp:
        listeners.append(tcp_listener("tcp_9000", 9000, tcp))
    if route is None:
        configs = []
        listeners = listeners[1:]
    elif isinstance(route, str):
        configs = [routes("http.8080", route)]
    else:
        configs = [split_routes("http.8080", route, mirror)]
    return Snapshot.of(
        clusters=[eds_cluster(n, timeout_s=timeout) for n in names],
        endpoints=[endpoints(n, 8000) for n in names],
        listeners=listeners,
        routes=configs,
    )


class Envoy:
    """Sends StreamProtocol the requests Envoy would, one call per request."""

    def __init__(self) -> None:
        self.cache = SnapshotCache()
        self.proto = StreamProtocol(base_pb2.Node(id=ROUTER), clock=lambda: T0)
        self.current: VersionedSnapshot | None = None
        self.last: dict[str, Send] = {}
        self.names: dict[str, list[str]] = {}

    def set(self, snapshot: Snapshot) -> list[Any]:
        """A new snapshot, pushed (the stream's wake-up)."""
        self.current = self.cache.set_snapshot(ROUTER, snapshot)
        return self._record(self.proto.on_snapshot(self.current))

    def request(
        self, type_url: str, *names: str, error: str = "", answer: bool = True
    ) -> list[Any]:
        """A request for `names` answering the last response of the type (ACK or NACK)."""
        self.names[type_url] = list(names)
        req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names))
        last = self.last.get(type_url)
        if answer and last is not None:
            req.version_info, req.response_nonce = last.version, last.nonce
        if error:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        return self._record(self.proto.on_request(req, self.current))

    def ack(self, type_url: str) -> list[Any]:
        return self.request(type_url, *self.names.get(type_url, []))

    def nack(self, type_url: str) -> list[Any]:
        return self.request(type_url, *self.names.get(type_url, []), error="rejected")

    def warm(self) -> list[Any]:
        """What Envoy does after a CDS response: ask for the clusters' endpoints, and once
        they came (and so the clusters are warm) ACK both."""
        events = self.request(EDS, *sorted(self.last[CDS].names))
        events += self.ack(EDS)
        return events + self.ack(CDS)

    def start(self, snapshot: Snapshot) -> None:
        """Envoy's start-up: CDS, EDS for its clusters, LDS, RDS, each ACKed."""
        self.set(snapshot)
        [cds] = sends(self.request(CDS))
        assert sends(self.ack(CDS)) == []
        eds_names = sorted(cluster_names(cds))
        if eds_names:
            sends(self.request(EDS, *eds_names))
            self.ack(EDS)
        self.request(LDS)
        self.ack(LDS)
        if "http.8080" in snapshot.resources[RDS]:
            assert sends(self.request(RDS, "http.8080"))
            self.ack(RDS)
        assert self.proto.held() == () and self.proto.kept() == ()

    def status(self) -> dict[str, SyncStatus]:
        return {types.short_name(t): s.status for t, s in self.proto.sync_status().items()}

    def _record(self, events: list[Any]) -> list[Any]:
        for event in events:
            if isinstance(event, Send):
                self.last[event.type_url] = event
        return events


def sends(events: list[Any]) -> list[Send]:
    return [e for e in events if isinstance(e, Send)]


def kinds(events: list[Any]) -> list[str]:
    """Sends by type, and the ordering events, in order."""
    out = []
    for e in events:
        if isinstance(e, Send):
            out.append(types.short_name(e.type_url))
        elif isinstance(e, Held | Released):
            out.append(f"{type(e).__name__.lower()} {types.short_name(e.type_url)} {e.name}")
        elif isinstance(e, Kept):
            out.append(f"kept {e.name}")
    return out


def cluster_names(send: Send) -> list[str]:
    assert send.type_url == CDS
    return list(send.names)


def routed_to(send: Send) -> set[str]:
    """Every cluster the route configurations or listeners of a response route to."""
    return {c for r in send.response.resources for c in cluster_references(send.type_url, r.value)}


def only(events: list[Any], type_url: str) -> Send:
    [send] = [e for e in sends(events) if e.type_url == type_url]
    return send


# --- what counts as a reference --------------------------------------------------------


def test_references_are_read_from_routes_and_listeners() -> None:
    config = route_pb2.RouteConfiguration(name="r")
    vhost = config.virtual_hosts.add(name="v", domains=["*"])
    vhost.request_mirror_policies.add(cluster="vhost-mirror")
    vhost.routes.add(route=rc.RouteAction(cluster="plain"))
    split = vhost.routes.add().route
    split.weighted_clusters.clusters.add(name="w1", weight={"value": 1})
    split.weighted_clusters.clusters.add(name="w2", weight={"value": 1})
    split.request_mirror_policies.add(cluster="route-mirror")
    vhost.routes.add(route=rc.RouteAction(cluster_header="x-cluster"))  # no name to order
    vhost.routes.add(redirect=rc.RedirectAction(host_redirect="elsewhere"))
    vhost.routes.add(direct_response=rc.DirectResponseAction(status=200))
    data = config.SerializeToString()
    assert cluster_references(RDS, data) == {"vhost-mirror", "plain", "w1", "w2", "route-mirror"}

    inline = hcm_pb2.HttpConnectionManager(stat_prefix="x", route_config=config)
    tcp = tcp_proxy_pb2.TcpProxy(stat_prefix="t")
    tcp.weighted_clusters.clusters.add(name="t1", weight=1)
    tcp.weighted_clusters.clusters.add(name="t2", weight=1)
    both = listener_pb2.Listener(name="l")
    both.filter_chains.add().filters.add(name="hcm").typed_config.Pack(inline)
    both.default_filter_chain.filters.add(name="tcp").typed_config.Pack(tcp)
    refs = cluster_references(LDS, both.SerializeToString())
    assert refs == {"vhost-mirror", "plain", "w1", "w2", "route-mirror", "t1", "t2"}
    # An HCM using RDS routes nowhere by itself; clusters and endpoints route nowhere.
    assert cluster_references(LDS, listener("l", 1, "http.1").SerializeToString()) == set()
    assert cluster_references(CDS, eds_cluster("c").SerializeToString()) == set()


def test_a_cluster_names_the_endpoints_it_needs() -> None:
    entries = snap(V1, [V1]).entries(CDS)
    assert entries[V1].eds_name == V1
    named = Snapshot.of(
        clusters=[eds_cluster("c", service_name="svc")], endpoints=[endpoints("svc")]
    )
    assert named.entries(CDS)["c"].eds_name == "svc"
    static = Snapshot.of(clusters=[cluster_pb2.Cluster(name="s", type=cluster_pb2.Cluster.STATIC)])
    assert static.entries(CDS)["s"].eds_name is None


# --- adding: the route waits for the new cluster ---------------------------------------


def test_startup_in_envoys_order_holds_nothing() -> None:
    envoy = Envoy()
    envoy.start(snap(V1, [V1]))
    assert set(envoy.status().values()) == {SyncStatus.SYNCED, SyncStatus.NOT_SENT}


def test_a_route_to_a_new_cluster_waits_for_the_cds_ack() -> None:
    envoy = Envoy()
    envoy.start(snap(V1, [V1]))
    events = envoy.set(snap(V2, [V1, V2]))
    assert kinds(events) == ["cds", "held rds http.8080"]
    assert cluster_names(only(events, CDS)) == sorted([V1, V2])
    [held] = envoy.proto.held()
    assert (held.name, held.waiting_for, held.previous, held.since) == (
        "http.8080",
        (V2,),
        True,
        T0,
    )
    assert envoy.status()["rds"] == SyncStatus.HELD  # ACKed what it got; more is coming
    assert envoy.status()["cds"] == SyncStatus.STALE

    # Envoy asks for the new cluster's endpoints; it warms; only then does it ACK CDS.
    eds = only(envoy.request(EDS, V1, V2), EDS)
    assert V2 in eds.names
    assert kinds(envoy.ack(EDS)) == []
    events = envoy.ack(CDS)
    assert kinds(events) == ["released rds http.8080", "rds"]
    rds = only(events, RDS)
    assert routed_to(rds) == {V2}
    assert envoy.current is not None and rds.version == envoy.current.version(RDS)
    assert envoy.proto.held() == ()
    envoy.ack(RDS)
    assert envoy.status()["rds"] == SyncStatus.SYNCED


def test_every_reference_counts_weights_and_mirrors() -> None:
    envoy = Envoy()
    envoy.start(snap(V1, [V1]))
    events = envoy.set(snap({V1: 50, V2: 50}, [V1, V2, V3], mirror=V3))
    assert kinds(events) == ["cds", "held rds http.8080"]
    assert envoy.proto.held()[0].waiting_for == (V2, V3)
    assert routed_to(only(envoy.ack(CDS), RDS)) == {V1, V2, V3}


def test_an_unchanged_route_is_never_held() -> None:
    # The route named v2 before any DestinationRule defined it (Envoy answers 503); the
    # subset appears. Nothing to hold: the proxy already runs exactly this route.
    envoy = Envoy()
    envoy.start(snap(V2, [V1]))
    events = envoy.set(snap(V2, [V1, V2]))
    assert kinds(events) == ["cds"]
    assert envoy.proto.held() == ()


def test_a_changed_cluster_keeps_serving_while_it_warms_again() -> None:
    # A cluster Envoy has, changed: the old one serves until the new one is warm, so a
    # route to it needs no wait.
    envoy = Envoy()
    envoy.start(snap(V1, [V1]))
    events = envoy.set(snap({V1: 100}, [V1], timeout=5))
    assert kinds(events) == ["cds", "rds"]


# --- removing: the cluster waits for the route to move away ----------------------------


def test_a_cluster_leaves_only_after_the_route_moving_away_is_acked() -> None:
    envoy = Envoy()
    envoy.start(snap(V2, [V1, V2]))
    events = envoy.set(snap(V1, [V1]))
    assert kinds(events) == ["kept " + V2, "rds"]  # CDS unchanged: V2 stays
    assert routed_to(only(events, RDS)) == {V1}
    [kept] = envoy.proto.kept()
    assert (kept.name, kept.used_by) == (V2, ("rds/http.8080",))
    assert envoy.status()["cds"] == SyncStatus.HELD

    events = envoy.ack(RDS)
    assert kinds(events) == ["released cds " + V2, "cds"]
    cds = only(events, CDS)
    assert cluster_names(cds) == [V1]
    assert envoy.current is not None and cds.version == envoy.current.version(CDS)
    envoy.ack(CDS)
    assert envoy.proto.kept() == ()
    assert envoy.status()["cds"] == SyncStatus.SYNCED


def test_swapping_the_only_subset_orders_both_ways() -> None:
    # One edit removes v1, adds v2 and moves the route from v1 to v2.
    envoy = Envoy()
    envoy.start(snap(V1, [V1]))
    events = envoy.set(snap(V2, [V2]))
    assert kinds(events) == ["kept " + V1, "cds", "held rds http.8080"]
    cds = only(events, CDS)
    assert cluster_names(cds) == sorted([V1, V2])
    assert envoy.current is not None
    assert cds.version.startswith(envoy.current.version(CDS) + "+held.")  # not the snapshot's

    events = envoy.ack(CDS)  # v2 warm
    assert kinds(events) == ["released rds http.8080", "rds"]  # v1 stays: the route used it
    events = envoy.ack(RDS)
    assert kinds(events) == ["released cds " + V1, "cds"]
    assert cluster_names(only(events, CDS)) == [V2]


def test_a_route_still_naming_a_removed_cluster_does_not_keep_it() -> None:
    # The snapshot itself still routes to v2 (a subset its rule no longer defines): the
    # cluster is meant to go, keeping it would serve a route the config broke.
    envoy = Envoy()
    envoy.start(snap(V2, [V1, V2]))
    events = envoy.set(snap(V2, [V1]))
    assert kinds(events) == ["cds"]
    assert cluster_names(only(events, CDS)) == [V1]


def test_a_removed_listener_and_route_config_keep_their_cluster_until_dropped() -> None:
    envoy = Envoy()
    envoy.start(snap(V1, [V1, V2], tcp=V2))
    events = envoy.set(snap(V1, [V1]))  # the TCP listener and its cluster go together
    assert kinds(events) == ["kept " + V2, "lds"]
    assert envoy.proto.kept()[0].used_by == ("lds/tcp_9000",)
    assert kinds(envoy.ack(LDS)) == ["released cds " + V2, "cds"]

    # The same with a route configuration: Envoy drops it (unsubscribes) once the
    # listener using it is gone.
    envoy = Envoy()
    envoy.start(snap(V1, [V1]))
    events = envoy.set(snap(None, [], tcp=None))
    assert kinds(events) == ["kept " + V1, "lds"]
    assert envoy.proto.kept()[0].used_by == ("rds/http.8080",)
    assert kinds(envoy.ack(LDS)) == []  # the route configuration is still there
    assert kinds(envoy.request(RDS)) == ["released cds " + V1, "cds"]
    assert cluster_names(envoy.last[CDS]) == []


def test_a_kept_cluster_keeps_its_endpoints() -> None:
    # v2 changes, and the next snapshot drops it before Envoy asked for the endpoints the
    # changed v2 warms on. Kept, it must still get them: a cluster warming forever would
    # hold back every CDS ACK, and every route waiting for one.
    envoy = Envoy()
    envoy.start(snap(V2, [V1, V2]))
    assert kinds(envoy.set(snap(V2, [V1, V2], timeout=7))) == ["cds"]
    events = envoy.set(snap(V1, [V1]))  # (v1 changes back too)
    assert kinds(events) == ["kept " + V2, "cds", "rds"]
    assert cluster_names(only(events, CDS)) == sorted([V1, V2])
    eds = only(envoy.request(EDS, V1, V2), EDS)
    assert eds.names == tuple(sorted([V1, V2]))
    assert envoy.current is not None and "+held." in eds.version
    assert envoy.status()["eds"] == SyncStatus.STALE
    envoy.ack(EDS)
    assert envoy.status()["eds"] == SyncStatus.HELD
    envoy.ack(CDS)
    assert kinds(envoy.ack(RDS)) == ["released cds " + V2, "cds"]


def test_a_cluster_whose_endpoints_were_never_sent_is_not_kept() -> None:
    # Keeping it could only leave it warming; it never served, so nothing routes to it.
    envoy = Envoy()
    envoy.start(snap(V1, [V1]))
    envoy.set(snap(V2, [V1, V2]))
    envoy.ack(CDS)  # (a client that ACKs without asking for endpoints)
    envoy.ack(RDS)  # now routing to v2
    assert kinds(envoy.set(snap(V1, [V1]))) == ["cds", "rds"]


# --- listeners route too --------------------------------------------------------------


def test_a_tcp_listener_is_ordered_like_a_route() -> None:
    envoy = Envoy()
    envoy.start(snap(V1, [V1], tcp=V1))
    events = envoy.set(snap(V1, [V1, V2], tcp=V2))
    assert kinds(events) == ["cds", "held lds tcp_9000"]  # LDS: still the old listener
    events = envoy.warm()
    assert kinds(events) == ["eds", "released lds tcp_9000", "lds"]
    assert routed_to(only(events, LDS)) == {V2}
    envoy.ack(LDS)

    events = envoy.set(snap(V1, [V1], tcp=V1))
    assert kinds(events) == ["kept " + V2, "lds"]
    assert kinds(envoy.ack(LDS)) == ["released cds " + V2, "cds"]


# --- snapshots that supersede a hold ---------------------------------------------------


def test_a_snapshot_superseding_a_hold_is_ordered_afresh() -> None:
    envoy = Envoy()
    envoy.start(snap(V1, [V1]))
    first = envoy.set(snap(V2, [V1, V2]))
    assert kinds(first) == ["cds", "held rds http.8080"]
    stale_cds = only(first, CDS)

    # Back before the proxy ACKed: the route it runs is what is wanted again, and v2
    # was never routed to, so it goes at once.
    events = envoy.set(snap(V1, [V1]))
    assert kinds(events) == ["cds", "released rds http.8080"]
    assert cluster_names(only(events, CDS)) == [V1]
    # The ACK of the superseded CDS is stale (Envoy ACKs the latest it got).
    req = discovery_pb2.DiscoveryRequest(
        type_url=CDS, version_info=stale_cds.version, response_nonce=stale_cds.nonce
    )
    assert isinstance(envoy.proto.on_request(req, envoy.current)[0], Stale)
    assert kinds(envoy.ack(CDS)) == []
    assert envoy.proto.held() == () and envoy.proto.kept() == ()

    # On to v3 while waiting for v2: the hold now waits for v3, v2 leaves unused.
    envoy.set(snap(V2, [V1, V2]))
    events = envoy.set(snap(V3, [V1, V3]))
    assert kinds(events) == ["cds"]
    assert cluster_names(only(events, CDS)) == sorted([V1, V3])
    assert envoy.proto.held()[0].waiting_for == (V3,)
    assert routed_to(only(envoy.ack(CDS), RDS)) == {V3}


# --- NACKs ----------------------------------------------------------------------------


def test_a_nacked_cds_keeps_routes_held_and_says_so() -> None:
    envoy = Envoy()
    envoy.start(snap(V1, [V1]))
    envoy.set(snap(V2, [V1, V2]))
    assert kinds(envoy.nack(CDS)) == []  # no NACK loop, and the route stays held
    assert envoy.status()["cds"] == SyncStatus.ERROR
    assert envoy.status()["rds"] == SyncStatus.HELD
    assert envoy.proto.held()[0].waiting_for == (V2,)
    assert kinds(envoy.request(EDS, V1, V2)) == ["eds"]  # endpoints are never held
    # Fixed: the new CDS is ACKed, the route follows.
    assert kinds(envoy.set(snap(V2, [V1, V2], timeout=3))) == ["cds"]
    assert kinds(envoy.ack(CDS)) == ["released rds http.8080", "rds"]


def test_a_nacked_route_keeps_every_cluster_it_may_use() -> None:
    envoy = Envoy()
    envoy.start(snap(V2, [V1, V2]))
    envoy.set(snap(V1, [V1]))
    assert kinds(envoy.nack(RDS)) == []  # Envoy may still route to v2: it stays
    assert [k.name for k in envoy.proto.kept()] == [V2]
    events = envoy.set(snap({V1: 100}, [V1]))
    assert kinds(events) == ["rds"]
    assert kinds(envoy.ack(RDS)) == ["released cds " + V2, "cds"]


# --- a stream's first sync --------------------------------------------------------------


def test_a_first_sync_asking_for_everything_at_once_waits_for_the_cds_ack() -> None:
    # A reconnecting Envoy asks for every type at once: it still has its old routes,
    # and keeps them (RDS left out) until the clusters they now use are warm.
    envoy = Envoy()
    envoy.set(snap(V1, [V1], tcp=V1))
    assert kinds(envoy.request(CDS)) == ["cds"]
    # The first full LDS state would delete the TCP listener if sent without it: wait.
    assert kinds(envoy.request(LDS)) == ["held lds tcp_9000"]
    assert kinds(envoy.request(RDS, "http.8080")) == ["held rds http.8080"]
    [lds_held, rds_held] = envoy.proto.held()
    assert not lds_held.previous and not rds_held.previous  # "nothing yet"
    assert envoy.status()["lds"] == SyncStatus.NOT_SENT
    events = envoy.ack(CDS)
    assert kinds(events) == ["released lds tcp_9000", "lds", "released rds http.8080", "rds"]


def test_a_first_cds_nack_does_not_hold_a_starting_envoy_forever() -> None:
    # Starting Envoy asks for listeners once the clusters it accepted are warm, NACK
    # or not; holding its routes would leave it with none.
    envoy = Envoy()
    envoy.set(snap(V1, [V1]))
    envoy.request(CDS)
    assert kinds(envoy.nack(CDS)) == []
    assert kinds(envoy.request(LDS)) == ["lds"]
    assert kinds(envoy.request(RDS, "http.8080")) == ["rds"]


def test_a_client_not_asking_for_clusters_never_waits() -> None:
    envoy = Envoy()
    envoy.set(snap(V1, [V1]))
    assert kinds(envoy.request(RDS, "http.8080")) == ["rds"]
    assert kinds(envoy.set(snap(V2, [V1, V2]))) == ["rds"]


# --- what an operator sees --------------------------------------------------------------


def test_held_and_kept_resources_are_in_the_sync_status() -> None:
    envoy = Envoy()
    envoy.start(snap(V1, [V1]))
    envoy.set(snap(V2, [V2]))
    status = ProxySyncStatus(
        node_id=ROUTER,
        connection_id="c-1",
        connected_since=T0,
        types=envoy.proto.sync_status(),
        held=envoy.proto.held(),
        kept=envoy.proto.kept(),
    ).to_dict()
    assert status["held"] == [
        {
            "type": "rds",
            "name": "http.8080",
            "waiting_for": [V2],
            "since": T0.isoformat(),
            "proxy_runs": "previous version",
        }
    ]
    assert status["kept"] == [
        {"name": V1, "until_acked": ["rds/http.8080"], "since": T0.isoformat()}
    ]
    assert status["types"]["rds"]["status"] == "HELD"
    assert status["types"]["cds"]["status"] == "STALE"
    assert "+held." in status["types"]["cds"]["sent"]
