"""The pre-push check: checked once per content hash; rejected resources held back, the
snapshot kept consistent."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotfish.xds import types
from pilotfish.xds.precheck import ResourceChecker, screen
from pilotfish.xds.snapshot import Snapshot


def eds_cluster(name: str, timeout_ms: int = 1000) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    if timeout_ms >= 0:
        cluster.connect_timeout.FromMilliseconds(timeout_ms)
    else:
        cluster.connect_timeout.seconds = -1
    return cluster


def endpoints(name: str, port: int = 8000) -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    address = cla.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    address.address, address.port_value = "127.0.0.1", port
    return cla


def listener(name: str, route: str) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    manager.rds.route_config_name = route
    manager.rds.config_source.ads.SetInParent()
    manager.http_filters.add(name="envoy.filters.http.router")
    out = listener_pb2.Listener(name=name)
    out.address.socket_address.address, out.address.socket_address.port_value = "0.0.0.0", 80
    out.filter_chains.add().filters.add(name="hcm").typed_config.Pack(manager)
    return out


def route(name: str, domains: tuple[str, ...] = ("a.example.com",)) -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration(name=name)
    config.virtual_hosts.add(name="a", domains=list(domains))
    return config


def test_an_unchanged_resource_is_checked_once() -> None:
    checker = ResourceChecker()
    snap = Snapshot.of(clusters=[eds_cluster("a"), eds_cluster("b")], endpoints=[endpoints("a")])
    assert checker.violations(snap) == {}
    assert checker.checked == 3
    again = Snapshot.of(
        clusters=[eds_cluster("a"), eds_cluster("b", timeout_ms=-1)], endpoints=[endpoints("a")]
    )
    bad = checker.violations(again)
    assert checker.checked == 4  # only the changed cluster was walked again
    assert list(bad) == [(types.CLUSTER, "b")]
    assert {v.path for v in bad[(types.CLUSTER, "b")]} == {"connect_timeout"}


def test_the_cache_is_bounded() -> None:
    checker = ResourceChecker(max_entries=2)
    for port in (1, 2, 3):
        checker.violations(Snapshot.of(endpoints=[endpoints("a", port)]))
    checker.violations(Snapshot.of(endpoints=[endpoints("a", 1)]))  # evicted: checked again
    assert checker.checked == 4


def test_a_rejected_resource_keeps_its_previous_version() -> None:
    previous = Snapshot.of(clusters=[eds_cluster("a")], endpoints=[endpoints("a")])
    new = Snapshot.of(
        clusters=[eds_cluster("a", timeout_ms=-1), eds_cluster("b")],
        endpoints=[endpoints("a", 9000), endpoints("b")],
    )
    rejected = ResourceChecker().violations(new)
    out = screen(new, rejected, previous)
    clusters = out.snapshot.resources[types.CLUSTER]
    assert clusters["a"] == previous.resources[types.CLUSTER]["a"]
    assert clusters["b"] == new.resources[types.CLUSTER]["b"]
    # Everything else moves on, the rejected cluster's new endpoints included.
    assert out.snapshot.resources[types.ENDPOINT]["a"] == endpoints("a", 9000)
    assert [(h.name, h.kept_previous) for h in out.held] == [("a", True)]
    assert "its last good version keeps serving" in out.held[0].describe()
    assert out.snapshot.consistency_errors() == []


def test_a_rejected_resource_that_never_was_good_is_left_out() -> None:
    new = Snapshot.of(clusters=[eds_cluster("a", timeout_ms=-1)], endpoints=[endpoints("a")])
    out = screen(new, ResourceChecker().violations(new), None)
    assert dict(out.snapshot.resources[types.CLUSTER]) == {}
    assert [(h.name, h.kept_previous) for h in out.held] == [("a", False)]


def test_what_needs_a_left_out_resource_is_held_too() -> None:
    # The route configuration has no domains (Envoy rejects it) and was never sent: the
    # listener that needs it cannot be sent either; its previous version stays.
    previous = Snapshot.of(listeners=[listener("l", "r0")], routes=[route("r0")])
    new = Snapshot.of(
        listeners=[listener("l", "r1"), listener("m", "r0")],
        routes=[route("r0"), route("r1", domains=())],
    )
    out = screen(new, ResourceChecker().violations(new), previous)
    held = {(h.type_url, h.name): h for h in out.held}
    assert held[(types.ROUTE, "r1")].kept_previous is False
    assert held[(types.LISTENER, "l")].kept_previous is True
    assert held[(types.LISTENER, "l")].needs == (types.ROUTE, "r1")
    assert out.snapshot.resources[types.LISTENER]["l"] == listener("l", "r0")
    assert out.snapshot.resources[types.LISTENER]["m"] == listener("m", "r0")
    assert out.snapshot.consistency_errors() == []


def test_a_previous_version_that_dangles_goes_too() -> None:
    # The listener's previous version needs a route config the new snapshot dropped.
    previous = Snapshot.of(listeners=[listener("l", "gone")], routes=[route("gone")])
    new = Snapshot.of(listeners=[listener("l", "r1")], routes=[route("r1", domains=())])
    out = screen(new, ResourceChecker().violations(new), previous)
    assert dict(out.snapshot.resources[types.LISTENER]) == {}
    assert out.snapshot.consistency_errors() == []


def test_endpoints_envoy_rejects_hold_their_cluster() -> None:
    new = Snapshot.of(clusters=[eds_cluster("a")], endpoints=[endpoints("a", port=70000)])
    out = screen(new, ResourceChecker().violations(new), None)
    assert dict(out.snapshot.resources[types.CLUSTER]) == {}
    assert {h.type_url for h in out.held} == {types.CLUSTER, types.ENDPOINT}


def test_nothing_rejected_is_the_same_snapshot() -> None:
    snap = Snapshot.of(clusters=[eds_cluster("a")], endpoints=[endpoints("a")])
    assert screen(snap, {}, None).snapshot is snap
