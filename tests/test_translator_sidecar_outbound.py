"""A sidecar's outbound half, translated from manifests: what each workload may call and
how, as Istio's sidecars get it (listeners, virtual hosts, chains, clusters)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pilotfish.model.configset import ConfigSet, build_config_set, with_mesh
from pilotfish.model.documents import parse_manifest_text
from pilotfish.model.mesh_config import MeshSettings
from pilotfish.translator import ir
from pilotfish.translator.cluster_names import BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, ClusterName
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import Translation, translate

REVIEWS = "outbound|9080||reviews.shop.svc.cluster.local"


def config_of(*documents: str) -> ConfigSet:
    config = build_config_set([parse_manifest_text("---\n".join(documents), "mesh.yaml")])
    assert config.errors == (), [e.describe() for e in config.errors]
    return config


def sidecar(
    namespace: str = "shop", ip: str = "10.1.0.5", name: str = "app-0", **labels: str
) -> Proxy:
    node = f"sidecar~{ip}~{name}.{namespace}~{namespace}.svc.cluster.local"
    return Proxy("sidecar", node, ip, name, namespace, labels or {"app": "app"})


def service(
    name: str,
    port: int,
    ip: str = "",
    namespace: str = "shop",
    port_name: str = "http",
    extra: str = "",
) -> str:
    cluster_ip = f"clusterIP: {ip}" if ip else ""
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  {cluster_ip}
  {extra}
  ports: [{{name: {port_name}, port: {port}}}]
"""


def istio(kind: str, name: str, namespace: str, spec: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: {kind}
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


def listener(t: Translation, name: str) -> ir.Listener:
    found = {li.name: li for li in t.config.listeners}
    assert name in found, sorted(found)
    return found[name]


def route_config(t: Translation, name: str) -> ir.RouteConfig:
    found = {r.name: r for r in t.config.route_configs}
    assert name in found, sorted(found)
    return found[name]


def vhost(t: Translation, route: str, name: str) -> ir.VirtualHost:
    found = {v.name: v for v in route_config(t, route).virtual_hosts}
    assert name in found, sorted(found)
    return found[name]


def clusters(t: Translation) -> dict[str, ir.Cluster]:
    return {c.name: c for c in t.config.clusters}


def messages(t: Translation) -> list[str]:
    return [f"{e.kind}/{e.name} {e.field}: {e.message}" for e in t.status]


def subset(cluster: str) -> str:
    name = ClusterName.parse(cluster)
    assert name is not None, cluster
    return name.subset


def tcp_targets(chain: ir.FilterChain | None) -> list[str]:
    assert isinstance(chain, ir.TcpFilterChain)
    return [c.cluster for c in chain.clusters]


# --- virtualOutbound and the catch-alls ------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "cluster", "vhost_name"),
    [
        ("ALLOW_ANY", PASSTHROUGH_CLUSTER, "allow_any"),
        ("REGISTRY_ONLY", BLACKHOLE_CLUSTER, "block_all"),
    ],
)
def test_unknown_destinations_follow_the_outbound_policy(
    mode: str, cluster: str, vhost_name: str
) -> None:
    config = with_mesh(
        config_of(service("reviews", 9080, "10.96.0.1")), MeshSettings(outbound_policy=mode)
    )  # type: ignore[arg-type]
    t = translate(config, sidecar())
    outbound = listener(t, "virtualOutbound")
    assert (outbound.address, outbound.port, outbound.use_original_dst) == ("0.0.0.0", 15001, True)
    loop, rest = outbound.chains
    # Connections addressed to 15001 itself would come straight back: blackholed.
    assert loop.match.destination_port == 15001 and tcp_targets(loop) == [BLACKHOLE_CLUSTER]
    assert rest.match.is_empty and tcp_targets(rest) == [cluster]
    # HTTP on a known port to an unknown host, and non-HTTP bytes on that port, too.
    assert tcp_targets(listener(t, "0.0.0.0_9080").default_chain) == [cluster]
    catch_all = route_config(t, "9080").virtual_hosts[-1]
    assert (catch_all.name, catch_all.domains) == (vhost_name, ("*",))
    if mode == "ALLOW_ANY":
        assert catch_all.routes[0].clusters[0].cluster == PASSTHROUGH_CLUSTER
    else:
        assert catch_all.routes[0].direct_response == ir.DirectResponse(502)
    assert {PASSTHROUGH_CLUSTER, BLACKHOLE_CLUSTER} <= clusters(t).keys()


# --- HTTP ports -------------------------------------------------------------------------


def test_http_ports_share_a_listener_that_only_takes_plaintext_http() -> None:
    t = translate(
        config_of(service("reviews", 9080, "10.96.0.1"), service("ratings", 9080, "10.96.0.2")),
        sidecar(),
    )
    port = listener(t, "0.0.0.0_9080")
    assert port.bind_to_port is False
    (chain,) = port.chains
    assert isinstance(chain, ir.HttpFilterChain) and chain.route_config_name == "9080"
    assert chain.match.application_protocols == ("http/1.1", "h2c")
    assert [f.kind for f in port.listener_filters] == ["http_inspector"]
    names = [v.name for v in route_config(t, "9080").virtual_hosts]
    assert names == [
        "ratings.shop.svc.cluster.local:9080",
        "reviews.shop.svc.cluster.local:9080",
        "allow_any",
    ]


def test_a_service_without_virtual_service_gets_istios_default_route() -> None:
    t = translate(config_of(service("reviews", 9080, "10.96.0.1")), sidecar())
    host = vhost(t, "9080", "reviews.shop.svc.cluster.local:9080")
    (route,) = host.routes
    assert route.name == "default" and route.clusters[0].cluster == REVIEWS
    assert route.timeout_ms == 0 and route.retry is not None and route.retry.attempts == 2
    # Short names from the service's own namespace, the cluster IP, the absolute FQDN.
    assert host.domains == (
        "reviews.shop.svc.cluster.local",
        "reviews.shop.svc.cluster.local.",
        "reviews",
        "reviews.shop.svc",
        "reviews.shop",
        "10.96.0.1",
    )
    # From another namespace: no bare `reviews` (it would be that namespace's own).
    other = vhost(
        translate(config_of(service("reviews", 9080, "10.96.0.1")), sidecar("web")),
        "9080",
        "reviews.shop.svc.cluster.local:9080",
    )
    assert "reviews" not in other.domains and "reviews.shop" in other.domains


GATEWAY = istio(
    "Gateway",
    "gw",
    "istio-system",
    "{selector: {istio: ingressgateway}, servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}",
)
MESH_VS = istio(
    "VirtualService",
    "reviews",
    "shop",
    """{hosts: [reviews], http: [
         {match: [{sourceLabels: {app: tester}}], route: [{destination: {host: reviews, subset: v2}}]},
         {match: [{gateways: [istio-system/gw]}], route: [{destination: {host: reviews, subset: v3}}]},
         {route: [{destination: {host: reviews, subset: v1}}]}]}""",
)


def test_mesh_virtual_service_rules_are_decided_for_the_sidecar() -> None:
    config = config_of(service("reviews", 9080, "10.96.0.1"), MESH_VS, GATEWAY)
    app = vhost(translate(config, sidecar()), "9080", "reviews.shop.svc.cluster.local:9080")
    # The sourceLabels rule is not this proxy's, the gateway rule not the mesh's.
    assert [r.clusters[0].cluster for r in app.routes] == [
        "outbound|9080|v1|reviews.shop.svc.cluster.local"
    ]
    tester = vhost(
        translate(config, sidecar(app="tester")), "9080", "reviews.shop.svc.cluster.local:9080"
    )
    assert [subset(r.clusters[0].cluster) for r in tester.routes] == [
        "v2"
    ]  # a catch-all for it: the rest cannot match


def test_virtual_services_bound_to_gateways_only_leave_the_mesh_alone() -> None:
    gateway_only = istio(
        "VirtualService",
        "reviews",
        "shop",
        "{hosts: [reviews], gateways: [istio-system/gw], http: [{route: [{destination: {host: reviews, subset: v9}}]}]}",
    )
    exported_away = istio(
        "VirtualService",
        "reviews-b",
        "shop",
        "{hosts: [reviews], exportTo: [billing], http: [{route: [{destination: {host: reviews, subset: v8}}]}]}",
    )
    t = translate(
        config_of(service("reviews", 9080, "10.96.0.1"), gateway_only, exported_away, GATEWAY),
        sidecar(),
    )
    (route,) = vhost(t, "9080", "reviews.shop.svc.cluster.local:9080").routes
    assert route.name == "default"


def test_a_second_virtual_service_for_a_host_is_reported_not_merged() -> None:
    first = istio(
        "VirtualService",
        "a",
        "shop",
        "{hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}",
    )
    second = istio(
        "VirtualService",
        "b",
        "shop",
        "{hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v2}}]}]}",
    )
    t = translate(config_of(service("reviews", 9080, "10.96.0.1"), first, second), sidecar())
    (route,) = vhost(t, "9080", "reviews.shop.svc.cluster.local:9080").routes
    assert subset(route.clusters[0].cluster) == "v1"
    assert any(
        m.startswith("VirtualService/b spec.hosts: host reviews.shop.svc.cluster.local already has")
        for m in messages(t)
    )


def test_virtual_service_hosts_that_are_no_service_ride_on_port_80() -> None:
    vs = istio(
        "VirtualService",
        "bookinfo",
        "shop",
        "{hosts: [bookinfo.example.com], http: [{route: [{destination: {host: reviews, port: {number: 9080}}}]}]}",
    )
    t = translate(
        config_of(service("web", 80, "10.96.0.3"), service("reviews", 9080, "10.96.0.1"), vs),
        sidecar(),
    )
    host = vhost(t, "80", "bookinfo.example.com:80")
    assert host.domains == ("bookinfo.example.com",)
    assert host.routes[0].clusters[0].cluster == REVIEWS
    assert "bookinfo.example.com:9080" not in [
        v.name for v in route_config(t, "9080").virtual_hosts
    ]


# --- TCP, TLS and sniffed ports -----------------------------------------------------------


def test_tcp_services_listen_on_their_cluster_ip_with_mesh_tcp_routes() -> None:
    vs = istio(
        "VirtualService",
        "db",
        "shop",
        "{hosts: [db], tcp: [{route: [{destination: {host: db, subset: a}, weight: 90}, {destination: {host: db, subset: b}, weight: 10}]}]}",
    )
    t = translate(config_of(service("db", 5432, "10.96.0.9", port_name="tcp-pg"), vs), sidecar())
    db = listener(t, "10.96.0.9_5432")
    assert (db.address, db.bind_to_port) == ("10.96.0.9", False)
    (chain,) = db.chains
    assert isinstance(chain, ir.TcpFilterChain)
    assert [(subset(c.cluster), c.weight) for c in chain.clusters] == [("a", 90), ("b", 10)]
    assert db.default_chain is None and not db.listener_filters


def test_tls_ports_route_by_sni_from_tls_rules() -> None:
    vs = istio(
        "VirtualService",
        "vault",
        "shop",
        "{hosts: [vault], tls: [{match: [{sniHosts: [vault.example.com]}], route: [{destination: {host: vault-dr}}]}]}",
    )
    t = translate(
        config_of(
            service("vault", 8200, "10.96.0.7", port_name="tls"),
            service("vault-dr", 8200, "10.96.0.8", port_name="tls"),
            vs,
        ),
        sidecar(),
    )
    (chain,) = listener(t, "10.96.0.7_8200").chains
    assert chain.match.server_names == ("vault.example.com",)
    assert tcp_targets(chain) == ["outbound|8200||vault-dr.shop.svc.cluster.local"]
    assert [f.kind for f in listener(t, "10.96.0.7_8200").listener_filters] == ["tls_inspector"]


def test_http_and_tcp_meeting_on_one_listener_make_it_sniff() -> None:
    entry = istio(
        "ServiceEntry",
        "raw",
        "shop",
        "{hosts: [raw.example.com], ports: [{number: 9080, name: tcp, protocol: TCP}], resolution: DNS}",
    )
    t = translate(config_of(service("reviews", 9080, "10.96.0.1"), entry), sidecar())
    port = listener(t, "0.0.0.0_9080")
    (http,) = port.chains
    assert isinstance(http, ir.HttpFilterChain) and http.match.transport_protocol == "raw_buffer"
    assert tcp_targets(port.default_chain) == ["outbound|9080||raw.example.com"]


def test_two_tcp_services_on_one_wildcard_listener_the_later_is_reported() -> None:
    one = istio(
        "ServiceEntry",
        "one",
        "shop",
        "{hosts: [one.example.com], ports: [{number: 7000, name: tcp, protocol: TCP}], resolution: DNS}",
    )
    two = istio(
        "ServiceEntry",
        "two",
        "shop",
        "{hosts: [two.example.com], ports: [{number: 7000, name: tcp, protocol: TCP}], resolution: DNS}",
    )
    t = translate(config_of(one, two), sidecar())
    (chain,) = listener(t, "0.0.0.0_7000").chains
    assert tcp_targets(chain) == ["outbound|7000||one.example.com"]
    assert any(m.startswith("ServiceEntry/two spec.ports[0]: port 7000") for m in messages(t))


def test_unnamed_ports_are_sniffed_on_their_own_listener_and_route() -> None:
    t = translate(config_of(service("legacy", 8000, "10.96.0.4", port_name="web")), sidecar())
    port = listener(t, "10.96.0.4_8000")
    (http,) = port.chains
    assert isinstance(http, ir.HttpFilterChain)
    assert http.route_config_name == "legacy.shop.svc.cluster.local:8000"
    assert tcp_targets(port.default_chain) == ["outbound|8000||legacy.shop.svc.cluster.local"]
    (own,) = route_config(t, "legacy.shop.svc.cluster.local:8000").virtual_hosts
    assert own.domains == ("*",)  # its listener is its own: every Host is it


def test_headless_tcp_services_get_a_listener_per_pod() -> None:
    headless = service("cassandra", 9042, "None", port_name="tcp")
    endpoints = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: c-1, namespace: shop, labels: {kubernetes.io/service-name: cassandra}}
addressType: IPv4
ports: [{name: tcp, port: 9042}]
endpoints: [{addresses: [10.1.0.40]}, {addresses: [10.1.0.41]}]
"""
    t = translate(config_of(headless, endpoints), sidecar())
    assert {li.name for li in t.config.listeners} >= {"10.1.0.40_9042", "10.1.0.41_9042"}
    assert (
        clusters(t)["outbound|9042||cassandra.shop.svc.cluster.local"].discovery == "ORIGINAL_DST"
    )
    without_endpoints = translate(config_of(headless), sidecar())
    assert not [li for li in without_endpoints.config.listeners if li.port == 9042]


# --- clusters ---------------------------------------------------------------------------


def test_resolution_none_is_original_dst_whatever_the_destination_rule_says() -> None:
    entry = istio(
        "ServiceEntry",
        "kafka",
        "shop",
        "{hosts: [kafka.internal], ports: [{number: 9092, name: tcp, protocol: TCP}], resolution: NONE, endpoints: [{address: 10.2.0.1, labels: {zone: a}}]}",
    )
    rule = istio(
        "DestinationRule",
        "kafka",
        "shop",
        "{host: kafka.internal, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}, subsets: [{name: a, labels: {zone: a}}]}",
    )
    t = translate(config_of(entry, rule), sidecar())
    for name in ("outbound|9092||kafka.internal", "outbound|9092|a|kafka.internal"):
        cluster = clusters(t)[name]
        assert (cluster.discovery, cluster.lb_policy) == ("ORIGINAL_DST", "CLUSTER_PROVIDED")
    assert not [a for a in t.config.load_assignments if "kafka" in a.cluster_name]
    # A gateway still gets EDS for it, as Istio.
    gateway = Proxy(
        "router",
        "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local",
        "10.0.0.1",
        "gw",
        "istio-system",
        {},
    )
    assert (
        clusters(translate(config_of(entry, rule), gateway))[
            "outbound|9092||kafka.internal"
        ].discovery
        == "EDS"
    )


def test_istio_mutual_is_reported_not_ignored() -> None:
    rule = istio(
        "DestinationRule",
        "reviews",
        "shop",
        "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}",
    )
    t = translate(config_of(service("reviews", 9080, "10.96.0.1"), rule), sidecar())
    assert any(
        m.startswith(
            "DestinationRule/reviews spec.trafficPolicy.tls.mode: ISTIO_MUTUAL is not supported"
        )
        for m in messages(t)
    )
    assert clusters(t)[REVIEWS].tls is None


def test_external_name_services_are_aliases_of_their_target() -> None:
    alias = """\
apiVersion: v1
kind: Service
metadata: {name: shopfront, namespace: shop}
spec: {type: ExternalName, externalName: reviews.shop.svc.cluster.local}
"""
    vs = istio(
        "VirtualService",
        "front",
        "shop",
        "{hosts: [example.com], http: [{route: [{destination: {host: shopfront, port: {number: 9080}}}]}]}",
    )
    web = service("web", 80, "10.96.0.3")
    t = translate(config_of(service("reviews", 9080, "10.96.0.1"), web, alias, vs), sidecar())
    assert not [name for name in clusters(t) if "shopfront" in name]
    host = vhost(t, "9080", "reviews.shop.svc.cluster.local:9080")
    assert {"shopfront.shop.svc.cluster.local", "shopfront"} <= set(host.domains)
    # Routed to the alias: the target's cluster, as Istio.
    assert vhost(t, "80", "example.com:80").routes[0].clusters[0].cluster == REVIEWS


# --- the Sidecar resource -----------------------------------------------------------------

SCOPED = istio(
    "Sidecar", "default", "shop", "{egress: [{hosts: [./reviews.shop.svc.cluster.local]}]}"
)


def test_a_sidecar_resource_shrinks_what_the_proxy_gets() -> None:
    routed = istio(
        "VirtualService",
        "reviews",
        "shop",
        "{hosts: [reviews], http: [{match: [{uri: {prefix: /r}}], route: [{destination: {host: ratings}}]}, {route: [{destination: {host: reviews}}]}]}",
    )
    config = config_of(
        SCOPED,
        routed,
        service("reviews", 9080, "10.96.0.1"),
        service("ratings", 9080, "10.96.0.2"),
        service("details", 9080, "10.96.0.3"),
    )
    t = translate(config, sidecar())
    assert [v.name for v in route_config(t, "9080").virtual_hosts] == [
        "reviews.shop.svc.cluster.local:9080",
        "allow_any",
    ]
    # ratings is no virtual host, but its cluster is there: a visible route goes to it.
    outbound = {n for n in clusters(t) if n.startswith("outbound|")}
    assert outbound == {REVIEWS, "outbound|9080||ratings.shop.svc.cluster.local"}


def test_capture_mode_none_binds_a_real_listener() -> None:
    bound = istio(
        "Sidecar",
        "default",
        "shop",
        "{egress: [{port: {number: 9080, protocol: HTTP, name: http}, captureMode: NONE, hosts: [./*]}, {port: {number: 5432, protocol: TCP, name: tcp}, bind: 127.0.0.2, captureMode: NONE, hosts: [./*]}]}",
    )
    t = translate(
        config_of(
            bound,
            service("reviews", 9080, "10.96.0.1"),
            service("db", 5432, "10.96.0.9", port_name="tcp"),
        ),
        sidecar(),
    )
    http = listener(t, "127.0.0.1_9080")
    assert http.bind_to_port is True
    (chain,) = http.chains
    assert chain.match.is_empty  # a real port of its own: everything on it is HTTP
    assert listener(t, "127.0.0.2_5432").bind_to_port is True
    assert vhost(t, "9080", "reviews.shop.svc.cluster.local:9080").routes[0].name == "default"
    # Only the egress listeners' ports: the Sidecar has no catch-all egress.
    outbound = {li.name for li in t.config.listeners if li.traffic_direction == "OUTBOUND"}
    assert outbound == {"127.0.0.1_9080", "127.0.0.2_5432", "virtualOutbound"}


# --- the translation key -----------------------------------------------------------------


def test_a_sidecars_translation_reads_no_ip_nor_pod_name() -> None:
    """Sidecars of one workload (same namespace and labels) share one translation."""
    headless = service("cassandra", 9042, "None", port_name="tcp")
    endpoints = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: c-1, namespace: shop, labels: {kubernetes.io/service-name: cassandra}}
addressType: IPv4
ports: [{name: tcp, port: 9042}]
endpoints: [{addresses: [10.1.0.5]}, {addresses: [10.1.0.41]}]
"""
    config = config_of(headless, endpoints, service("reviews", 9080, "10.96.0.1"), MESH_VS, GATEWAY)
    one = translate(config, sidecar(ip="10.1.0.5", name="app-0"))
    other = translate(config, sidecar(ip="10.1.0.41", name="app-1"))
    assert one == replace(other)


# --- finer points -----------------------------------------------------------------------


def test_the_most_specific_virtual_service_host_takes_a_service() -> None:
    wide = istio(
        "VirtualService",
        "wide",
        "shop",
        "{hosts: ['*.shop.svc.cluster.local'], http: [{route: [{destination: {host: ratings}}]}]}",
    )
    exact = istio(
        "VirtualService",
        "exact",
        "shop",
        "{hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}",
    )
    config = config_of(
        service("reviews", 9080, "10.96.0.1"), service("details", 9080, "10.96.0.3"), wide, exact
    )
    t = translate(config, sidecar())
    reviews = vhost(t, "9080", "reviews.shop.svc.cluster.local:9080").routes
    assert [subset(r.clusters[0].cluster) for r in reviews] == ["v1"]
    details = vhost(t, "9080", "details.shop.svc.cluster.local:9080").routes
    assert details[0].clusters[0].cluster == "outbound|9080||ratings.shop.svc.cluster.local"


def test_tcp_rules_on_destination_subnets_come_before_the_service_default() -> None:
    vs = istio(
        "VirtualService",
        "db",
        "shop",
        "{hosts: [db], tcp: [{match: [{destinationSubnets: [10.96.0.0/16]}], "
        "route: [{destination: {host: db, subset: near}}]}]}",
    )
    entry = istio(
        "ServiceEntry",
        "db",
        "shop",
        "{hosts: [db.shop.svc.cluster.local], addresses: [10.0.0.0/8], "
        "ports: [{number: 5432, name: tcp, protocol: TCP}], resolution: DNS}",
    )
    t = translate(config_of(entry, vs), sidecar())
    port = listener(t, "0.0.0.0_5432")
    ranges = [c.match.prefix_ranges for c in port.chains]
    assert ranges == [(ir.CidrRange("10.96.0.0", 16),), (ir.CidrRange("10.0.0.0", 8),)]
    assert [subset(tcp_targets(c)[0]) for c in port.chains] == ["near", ""]


def test_mongodb_shares_its_port_with_nothing() -> None:
    mongo = istio(
        "ServiceEntry",
        "mongo",
        "shop",
        "{hosts: [mongo.example.com], ports: [{number: 27017, name: mongo, protocol: MONGO}], "
        "resolution: DNS}",
    )
    web = service("odd", 27017, port_name="http")  # no cluster IP: the wildcard listener
    t = translate(config_of(mongo, web), sidecar())
    (chain,) = listener(t, "0.0.0.0_27017").chains
    assert tcp_targets(chain) == ["outbound|27017||mongo.example.com"]
    assert any(m.startswith("Service/odd spec.ports[0]: port 27017") for m in messages(t))


def test_a_virtual_services_destination_brings_only_the_ports_it_routes_to() -> None:
    two_ports = """\
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  clusterIP: 10.96.0.2
  ports: [{name: http, port: 9080}, {name: grpc, port: 9090}]
"""
    routed = istio(
        "VirtualService",
        "reviews",
        "shop",
        "{hosts: [reviews], http: [{route: [{destination: {host: ratings, port: {number: 9090}}}]}]}",
    )
    config = config_of(SCOPED, routed, service("reviews", 9080, "10.96.0.1"), two_ports)
    outbound = {n for n in clusters(translate(config, sidecar())) if n.startswith("outbound|")}
    assert outbound == {REVIEWS, "outbound|9090||ratings.shop.svc.cluster.local"}


def test_egress_listeners_pilotfish_cannot_serve_are_reported() -> None:
    odd = istio(
        "Sidecar",
        "default",
        "shop",
        "{egress: [{port: {number: 3128, protocol: HTTP_PROXY, name: proxy}, hosts: [./*]}, "
        "{bind: 'unix:///var/run/app.sock', hosts: [./*]}]}",
    )
    t = translate(config_of(odd, service("reviews", 9080, "10.96.0.1")), sidecar())
    assert {m.split(":")[0] for m in messages(t)} >= {
        "Sidecar/default spec.egress[0].port.protocol",
        "Sidecar/default spec.egress[1].bind",
    }
    outbound = {li.name for li in t.config.listeners if li.traffic_direction == "OUTBOUND"}
    assert outbound == {"virtualOutbound"}


def test_source_namespace_is_the_sidecars_own() -> None:
    vs = istio(
        "VirtualService",
        "reviews",
        "shop",
        "{hosts: [reviews], http: [{match: [{sourceNamespace: web}], "
        "route: [{destination: {host: reviews, subset: web}}]}, "
        "{route: [{destination: {host: reviews, subset: v1}}]}]}",
    )
    config = config_of(service("reviews", 9080, "10.96.0.1"), vs)
    name = "reviews.shop.svc.cluster.local:9080"
    from_web = vhost(translate(config, sidecar("web")), "9080", name).routes
    from_shop = vhost(translate(config, sidecar("shop")), "9080", name).routes
    assert [subset(r.clusters[0].cluster) for r in from_web] == ["web"]
    assert [subset(r.clusters[0].cluster) for r in from_shop] == ["v1"]
