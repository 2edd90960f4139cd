"""The listener and cluster shapes a sidecar needs, built from the IR, accepted by Envoy.

No sidecar is translated yet (issue 9): these configs are written by hand in the IR, the
way Istio shapes a sidecar (virtualOutbound, per-port outbound listeners that do not
bind, virtualInbound with its inspectors and per-port chains, the fixed clusters), and
handed to `envoy --mode validate`, so every new IR feature is known to encode into
something a real Envoy takes.
"""

from __future__ import annotations

import pytest

from pilotfish.translator import ir
from pilotfish.translator.cluster_names import (
    BLACKHOLE_CLUSTER,
    INBOUND_PASSTHROUGH_CLUSTER,
    PASSTHROUGH_CLUSTER,
    ClusterName,
)
from pilotfish.translator.listener_filters import inspectors
from pilotfish.translator.translate import Translation, encode
from testsupport.envoy import EnvoyConfigError, validate_config
from testsupport.static_bootstrap import static_bootstrap_for

REVIEWS = str(ClusterName.outbound(9080, "reviews.default.svc.cluster.local"))
INBOUND_HTTP = str(ClusterName.inbound(9080))
INBOUND_TCP = str(ClusterName.inbound(3306))
CATCH_ALL = ir.RouteMatch(ir.StringMatch("prefix", "/"))


def to(cluster: str, **kwargs: object) -> ir.TcpFilterChain:
    return ir.TcpFilterChain(cluster, (ir.WeightedCluster(cluster, 0),), **kwargs)  # type: ignore[arg-type]


def virtual_outbound() -> ir.Listener:
    return ir.Listener(
        "virtualOutbound",
        "0.0.0.0",
        15001,
        # Traffic sent to 15001 itself would loop: blackholed.
        (to(BLACKHOLE_CLUSTER, match=ir.ChainMatch(destination_port=15001), name="blackhole"),),
        use_original_dst=True,
        default_chain=to(PASSTHROUGH_CLUSTER, name="catchall-tcp"),
        traffic_direction="OUTBOUND",
    )


def outbound_http_port() -> ir.Listener:
    return ir.Listener(
        "0.0.0.0_9080",
        "0.0.0.0",
        9080,
        (ir.HttpFilterChain("9080", "outbound_0.0.0.0_9080", options=ir.HttpOptions()),),
        bind_to_port=False,
        traffic_direction="OUTBOUND",
    )


def outbound_tcp_service() -> ir.Listener:
    return ir.Listener(
        "10.96.0.20_27017",
        "10.96.0.20",
        27017,
        (to("outbound|27017||mongo.default.svc.cluster.local"),),
        bind_to_port=False,
    )


def virtual_inbound() -> ir.Listener:
    inbound_routes = ir.RouteConfig(
        INBOUND_HTTP,
        (
            ir.VirtualHost(
                "inbound|http|9080",
                ("*",),
                (ir.Route("default", CATCH_ALL, (ir.WeightedCluster(INBOUND_HTTP, 0),)),),
            ),
        ),
        ignore_port_in_host_matching=False,
    )
    chains: tuple[ir.FilterChain, ...] = (
        to(BLACKHOLE_CLUSTER, match=ir.ChainMatch(destination_port=15006), name="blackhole"),
        ir.HttpFilterChain(
            "",
            "inbound_0.0.0.0_9080",
            ir.ChainMatch(
                destination_port=9080,
                transport_protocol="raw_buffer",
                application_protocols=("http/1.1", "h2c"),
            ),
            options=ir.HttpOptions(
                forward_client_cert="APPEND_FORWARD",
                client_cert_details=ir.ClientCertDetails(subject=True, dns=True, uri=True),
                stream_idle_timeout_ms=0,
            ),
            route_config=inbound_routes,
            name="0.0.0.0_9080",
        ),
        to(INBOUND_HTTP, match=ir.ChainMatch(destination_port=9080), name="0.0.0.0_9080-tcp"),
        to(INBOUND_TCP, match=ir.ChainMatch(destination_port=3306), name="0.0.0.0_3306"),
        to(
            INBOUND_PASSTHROUGH_CLUSTER,
            match=ir.ChainMatch(
                prefix_ranges=(ir.CidrRange("10.1.0.7", 32), ir.CidrRange("fd00::7", 128)),
                transport_protocol="tls",
            ),
            name="passthrough-tls",
        ),
    )
    return ir.Listener(
        "virtualInbound",
        "0.0.0.0",
        15006,
        chains,
        listener_filters=(ir.ListenerFilter("original_dst"), *inspectors(chains)),
        listener_filters_timeout_ms=0,
        continue_on_listener_filters_timeout=True,
        default_chain=to(INBOUND_PASSTHROUGH_CLUSTER, name="inbound-passthrough"),
        traffic_direction="INBOUND",
    )


def sidecar_clusters() -> tuple[ir.Cluster, ...]:
    passthrough = ir.Cluster(
        PASSTHROUGH_CLUSTER,
        lb_policy="CLUSTER_PROVIDED",
        discovery="ORIGINAL_DST",
        use_downstream_protocol=True,
        idle_timeout_ms=300_000,
    )
    return (
        passthrough,
        ir.Cluster(BLACKHOLE_CLUSTER, lb_policy="ROUND_ROBIN", discovery="STATIC"),
        ir.Cluster(
            INBOUND_PASSTHROUGH_CLUSTER,
            lb_policy="CLUSTER_PROVIDED",
            discovery="ORIGINAL_DST",
            use_downstream_protocol=True,
            idle_timeout_ms=300_000,
            upstream_bind_address="127.0.0.6",
        ),
        ir.Cluster(
            INBOUND_HTTP,
            lb_policy="ROUND_ROBIN",
            discovery="STATIC",
            inline_endpoints=(ir.Endpoint("127.0.0.1", 9080),),
            upstream_bind_address="127.0.0.6",
        ),
        ir.Cluster(
            INBOUND_TCP,
            lb_policy="CLUSTER_PROVIDED",
            discovery="ORIGINAL_DST",
            cleanup_interval_ms=3_600_000,
            upstream_bind_address="127.0.0.6",
        ),
        ir.Cluster(REVIEWS),
        ir.Cluster("outbound|27017||mongo.default.svc.cluster.local"),
    )


def sidecar() -> ir.ProxyConfig:
    outbound_routes = ir.RouteConfig(
        "9080",
        (
            ir.VirtualHost(
                "reviews.default.svc.cluster.local:9080",
                ("reviews.default.svc.cluster.local", "reviews", "10.96.0.10"),
                (ir.Route("default", CATCH_ALL, (ir.WeightedCluster(REVIEWS, 0),)),),
            ),
            ir.VirtualHost(
                "allow_any",
                ("*",),
                (ir.Route("allow_any", CATCH_ALL, (ir.WeightedCluster(PASSTHROUGH_CLUSTER, 0),)),),
            ),
        ),
    )
    return ir.ProxyConfig(
        listeners=(
            virtual_outbound(),
            outbound_http_port(),
            outbound_tcp_service(),
            virtual_inbound(),
        ),
        route_configs=(outbound_routes,),
        clusters=sidecar_clusters(),
        load_assignments=(
            ir.LoadAssignment(REVIEWS, (ir.Endpoint("10.1.0.8", 9080),)),
            ir.LoadAssignment("outbound|27017||mongo.default.svc.cluster.local", ()),
        ),
    )


def validate(translation: Translation) -> None:
    validate_config(
        static_bootstrap_for(
            listeners=translation.listeners,
            routes=translation.routes,
            clusters=translation.clusters,
            endpoints=translation.endpoints,
        )
    )


def test_a_sidecar_shaped_config_is_accepted_by_envoy() -> None:
    translation = encode(sidecar())
    inbound = next(li for li in translation.config.listeners if li.name == "virtualInbound")
    # The inspectors the chains need: TLS for the port-less passthrough chain, so on
    # every port but those whose chains do not look at it; HTTP where a chain matches
    # plaintext HTTP.
    assert inbound.listener_filters == (
        ir.ListenerFilter("original_dst"),
        ir.ListenerFilter("tls_inspector", except_ports=(3306, 9080, 15006)),
        ir.ListenerFilter("http_inspector", only_ports=(9080,)),
    )
    validate(translation)


def test_envoy_would_refuse_what_the_check_is_for() -> None:
    """The validation has teeth: two chains with the same match make Envoy refuse."""
    twice = to(INBOUND_TCP, match=ir.ChainMatch(destination_port=3306))
    config = ir.ProxyConfig(
        listeners=(ir.Listener("l", "0.0.0.0", 15006, (twice, twice)),),
        clusters=sidecar_clusters(),
        load_assignments=sidecar().load_assignments,
    )
    with pytest.raises(EnvoyConfigError, match="has the same matching rules"):
        validate(encode(config))
