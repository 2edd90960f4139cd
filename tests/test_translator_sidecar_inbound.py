"""pilotfish.translator.sidecar.inbound: virtualInbound, its chains and the inbound clusters,
as Istio builds them for a proxy's own Services (listener_inbound.go, cluster_builder.go)."""

from __future__ import annotations

from dataclasses import replace

from pilotfish.model.configset import ConfigSet, build_config_set, with_mesh
from pilotfish.model.documents import parse_manifest_text
from pilotfish.model.mesh_config import MeshSettings
from pilotfish.node_id import NodeId
from pilotfish.translator import ir
from pilotfish.translator.cluster_names import BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.envoy import route as route_builder
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.sidecar import build_sidecar, combine
from pilotfish.translator.sidecar.inbound import INBOUND_RETRY, build_inbound, inbound_ports

RATINGS = """\
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports:
  - {name: http, port: 9080}
  - {name: tcp-db, port: 3306, targetPort: 3307}
  - {name: admin, port: 7070}
  - {name: grpc, port: 9090}
  - {name: dns, port: 53, protocol: UDP}
"""


def config_of(*documents: str, mesh: MeshSettings | None = None) -> ConfigSet:
    config = build_config_set([parse_manifest_text("---\n".join(documents), "in.yaml")])
    assert config.errors == (), [e.describe() for e in config.errors]
    return config if mesh is None else with_mesh(config, mesh)


def sidecar(
    labels: dict[str, str] | None = None, ip: str = "10.1.0.7", namespace: str = "default"
) -> Proxy:
    node_id = str(NodeId.for_pod("sidecar", ip, "ratings-v1", namespace))
    return Proxy.from_node(node_id, {"LABELS": labels or {"app": "ratings"}})


def inbound(config: ConfigSet, proxy: Proxy | None = None) -> tuple[ir.ProxyConfig, list[str]]:
    diag = Diagnostics()
    who = proxy or sidecar()
    registry = ServiceRegistry(config, proxy_namespace=who.namespace)
    out = build_inbound(config, who, registry, None, diag)
    return out, [f"{e.kind} {e.field}: {e.message}" for e in diag.sorted()]


def virtual_inbound(config: ir.ProxyConfig) -> ir.Listener:
    (listener,) = [li for li in config.listeners if li.name == "virtualInbound"]
    return listener


def chains_by_port(listener: ir.Listener) -> dict[int | None, list[ir.FilterChain]]:
    found: dict[int | None, list[ir.FilterChain]] = {}
    for chain in listener.chains:
        found.setdefault(chain.match.destination_port, []).append(chain)
    return found


def cluster(config: ir.ProxyConfig, name: str) -> ir.Cluster:
    (found,) = [c for c in config.clusters if c.name == name]
    return found


def test_virtual_inbound_listens_on_15006_with_the_original_destination() -> None:
    out, problems = inbound(config_of(RATINGS))
    listener = virtual_inbound(out)
    assert (listener.address, listener.port, listener.traffic_direction) == (
        "0.0.0.0",
        15006,
        "INBOUND",
    )
    assert not listener.use_original_dst  # Istio: the filter, not a hand-over to listeners
    assert listener.listener_filters[0] == ir.ListenerFilter("original_dst")
    assert (
        listener.listener_filters_timeout_ms,
        listener.continue_on_listener_filters_timeout,
    ) == (
        0,
        True,
    )
    assert problems == []


def test_a_chain_per_target_port_by_its_protocol() -> None:
    by_port = chains_by_port(virtual_inbound(inbound(config_of(RATINGS))[0]))
    kinds = {
        port: [(type(c).__name__, c.match.application_protocols) for c in chains]
        for port, chains in by_port.items()
        if port is not None
    }
    assert kinds == {
        15006: [("TcpFilterChain", ())],  # blackhole
        3307: [("TcpFilterChain", ())],  # the target port, not the Service's 3306
        7070: [  # no protocol declared: sniffed
            ("HttpFilterChain", ("http/1.1", "h2c")),
            ("TcpFilterChain", ()),
        ],
        9080: [("HttpFilterChain", ())],
        9090: [("HttpFilterChain", ())],
    }  # the UDP port has none
    http = by_port[9080][0]
    assert isinstance(http, ir.HttpFilterChain)
    assert (http.name, http.stat_prefix, http.match.transport_protocol) == (
        "0.0.0.0_9080",
        "inbound_0.0.0.0_9080",
        "raw_buffer",
    )
    tcp = by_port[3307][0]
    assert isinstance(tcp, ir.TcpFilterChain)
    assert (tcp.name, tcp.stat_prefix, tcp.clusters) == (
        "0.0.0.0_3307",
        "inbound|3307||",
        (ir.WeightedCluster("inbound|3307||", 0),),
    )


def test_the_http_chain_routes_everything_to_its_cluster_without_timeout() -> None:
    by_port = chains_by_port(virtual_inbound(inbound(config_of(RATINGS))[0]))
    http = by_port[9080][0]
    assert isinstance(http, ir.HttpFilterChain) and http.route_config is not None
    routes = http.route_config
    assert (routes.name, routes.ignore_port_in_host_matching) == ("inbound|9080||", False)
    (vhost,) = routes.virtual_hosts
    assert (vhost.name, vhost.domains) == ("inbound|http|9080", ("*",))
    (route,) = vhost.routes
    assert route.clusters == (ir.WeightedCluster("inbound|9080||", 0),)
    assert (route.timeout_ms, route.retry) == (0, INBOUND_RETRY)
    assert http.options.forward_client_cert == "APPEND_FORWARD"
    assert not http.options.use_remote_address
    # gRPC streams are not replayed: no retry.
    grpc = by_port[9090][0]
    assert isinstance(grpc, ir.HttpFilterChain) and grpc.route_config is not None
    assert grpc.route_config.virtual_hosts[0].routes[0].retry is None


def test_the_inbound_retry_stays_on_the_one_host() -> None:
    encoded = route_builder.retry_policy(INBOUND_RETRY)
    assert (encoded.retry_on, encoded.num_retries.value) == ("reset-before-request", 2)
    assert not encoded.retry_host_predicate
    assert encoded.host_selection_retry_max_attempts == 0


def test_passthrough_and_blackhole_chains() -> None:
    listener = virtual_inbound(inbound(config_of())[0])
    names = [(c.name, c.match) for c in listener.chains]
    assert names == [
        ("virtualInbound-blackhole", ir.ChainMatch(destination_port=15006)),
        (
            "virtualInbound-catchall-http",
            ir.ChainMatch(
                transport_protocol="raw_buffer", application_protocols=("http/1.1", "h2c")
            ),
        ),
        ("virtualInbound", ir.ChainMatch(transport_protocol="raw_buffer")),
    ]
    blackhole, http, tcp = listener.chains
    assert isinstance(blackhole, ir.TcpFilterChain)
    assert blackhole.clusters == (ir.WeightedCluster(BLACKHOLE_CLUSTER, 0),)
    assert isinstance(http, ir.HttpFilterChain) and http.route_config is not None
    assert http.route_config.virtual_hosts[0].routes[0].clusters[0].cluster == (
        INBOUND_PASSTHROUGH_CLUSTER
    )
    assert isinstance(tcp, ir.TcpFilterChain)
    assert tcp.stat_prefix == INBOUND_PASSTHROUGH_CLUSTER
    # HTTP is told apart on every port no chain declares, and only there.
    assert listener.listener_filters[1:] == (
        ir.ListenerFilter("http_inspector", except_ports=(15006,)),
    )
    assert listener.default_chain is None


def test_inbound_clusters_send_to_the_original_destination_from_127_0_0_6() -> None:
    out, _ = inbound(config_of(RATINGS))
    http = cluster(out, "inbound|9080||")
    assert (http.discovery, http.lb_policy, http.upstream_bind_address) == (
        "ORIGINAL_DST",
        "CLUSTER_PROVIDED",
        "127.0.0.6",
    )
    assert http.inline_endpoints == ()
    assert http.cleanup_interval_ms is not None and http.cleanup_interval_ms > 10**12
    assert (http.http2, http.use_downstream_protocol) == (False, False)
    assert cluster(out, "inbound|9090||").http2  # gRPC: HTTP/2 to the application
    assert cluster(out, "inbound|7070||").use_downstream_protocol  # sniffed
    passthrough = cluster(out, INBOUND_PASSTHROUGH_CLUSTER)
    assert (passthrough.discovery, passthrough.upstream_bind_address) == (
        "ORIGINAL_DST",
        "127.0.0.6",
    )
    assert cluster(out, BLACKHOLE_CLUSTER).inline_endpoints == ()
    names = [c.name for c in out.clusters]
    assert "inbound|53||" not in names and "inbound|3306||" not in names


def test_an_ipv6_pod_binds_to_its_own_family() -> None:
    out, _ = inbound(config_of(RATINGS), sidecar(ip="fd00::7"))
    assert cluster(out, "inbound|9080||").upstream_bind_address == "::6"


def test_localhost_inbound_policy_sends_to_127_0_0_1() -> None:
    config = config_of(RATINGS, mesh=MeshSettings(inbound_policy="LOCALHOST"))
    out, _ = inbound(config)
    found = cluster(out, "inbound|3307||")
    assert (found.discovery, found.inline_endpoints, found.upstream_bind_address) == (
        "STATIC",
        (ir.Endpoint("127.0.0.1", 3307),),
        "",  # loopback is never captured: no need for 127.0.0.6
    )


def test_a_proxy_no_service_selects_has_only_the_passthrough() -> None:
    out, _ = inbound(config_of(RATINGS), sidecar({"app": "reviews"}))
    assert [c.name for c in out.clusters] == [INBOUND_PASSTHROUGH_CLUSTER, BLACKHOLE_CLUSTER]
    assert len(virtual_inbound(out).chains) == 3


def test_services_of_other_namespaces_do_not_count() -> None:
    out, _ = inbound(config_of(RATINGS), sidecar(namespace="other"))
    assert [c.name for c in out.clusters] == [INBOUND_PASSTHROUGH_CLUSTER, BLACKHOLE_CLUSTER]


TWO_SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: tcp, port: 9000, targetPort: 8000}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings-admin, namespace: default, creationTimestamp: "2024-02-01T00:00:00Z"}
spec:
  selector: {app: ratings}
  ports:
  - {name: http-web, port: 80, targetPort: 9080}
  - {name: http-alt, port: 8000}
  - {name: http-metrics, port: 9100}
"""


def test_two_services_share_a_target_port_and_the_older_one_decides() -> None:
    out, problems = inbound(config_of(TWO_SERVICES))
    by_port = chains_by_port(virtual_inbound(out))
    assert sorted(p for p in by_port if p is not None) == [8000, 9080, 9100, 15006]
    # 9080: both HTTP, served once, named after the older Service's port.
    (http,) = by_port[9080]
    assert isinstance(http, ir.HttpFilterChain) and http.route_config is not None
    assert http.route_config.virtual_hosts[0].name == "inbound|http|9080"
    # 8000: the older Service says TCP, the newer HTTP: TCP, and the newer is reported.
    assert [type(c).__name__ for c in by_port[8000]] == ["TcpFilterChain"]
    assert problems == [
        "Service spec.ports[1]: target port 8000 is already served inbound as TCP for "
        "ratings.default.svc.cluster.local (the older Service): not as HTTP"
    ]


def test_the_sidecars_own_ports_are_never_inbound_ports() -> None:
    config = config_of(
        """\
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 80, targetPort: 15006}, {name: http-ok, port: 9080}]
"""
    )
    out, problems = inbound(config)
    assert sorted(p for p in chains_by_port(virtual_inbound(out)) if p) == [9080, 15006]
    assert problems == [
        "Service spec.ports[0]: target port 15006 is the sidecar's own (virtualInbound): "
        "not served inbound"
    ]


DESTINATION_RULE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings.default.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 7}
      http: {h2UpgradePolicy: UPGRADE}
    portLevelSettings:
    - port: {number: 3306}
      connectionPool: {http: {http2MaxRequests: 3}}
"""


def test_the_services_destination_rule_connection_pool_applies_by_service_port() -> None:
    out, _ = inbound(config_of(RATINGS, DESTINATION_RULE))
    http = cluster(out, "inbound|9080||")
    assert http.circuit_breakers.max_connections == 7
    assert not http.http2  # Istio does not upgrade inbound
    db = cluster(out, "inbound|3307||")  # port-level settings by the Service's port 3306
    assert db.circuit_breakers == replace(ir.CircuitBreakers(), max_requests=3)


def test_a_sidecar_without_ingress_still_gives_its_inbound_connection_pool() -> None:
    config = config_of(
        RATINGS,
        DESTINATION_RULE,
        """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  inboundConnectionPool: {tcp: {maxConnections: 42}}
""",
    )
    proxy = sidecar()
    registry = ServiceRegistry(config, proxy_namespace="default")
    diag = Diagnostics()
    out = build_sidecar(config, proxy, registry, diag)
    # The Sidecar's pool replaces the DestinationRule's whole.
    assert cluster(out, "inbound|9080||").circuit_breakers == replace(
        ir.CircuitBreakers(), max_connections=42
    )
    assert [p.port for p in inbound_ports(config, proxy, registry, None, diag)] == [
        3307,
        7070,
        9080,
        9090,
    ]


def test_combine_keeps_the_first_of_a_cluster_both_halves_bring() -> None:
    one = ir.Cluster(BLACKHOLE_CLUSTER, discovery="STATIC")
    two = ir.Cluster(BLACKHOLE_CLUSTER, discovery="STATIC", connect_timeout_ms=1)
    other = ir.Cluster("outbound|80||a")
    out = combine(ir.ProxyConfig(clusters=(other, one)), ir.ProxyConfig(clusters=(two,)))
    assert out.clusters == (other, one)
