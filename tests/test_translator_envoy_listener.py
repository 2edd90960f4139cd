"""The listener builder: each IR listener feature and the Envoy fields it becomes."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilotfish.translator import http_options, ir
from pilotfish.translator.cluster_names import BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER
from pilotfish.translator.envoy import listener as builder

HCM = hcm_pb.HttpConnectionManager
TO_PASSTHROUGH = ir.TcpFilterChain(
    PASSTHROUGH_CLUSTER, (ir.WeightedCluster(PASSTHROUGH_CLUSTER, 0),)
)


def listener(**kwargs: object) -> ir.Listener:
    return ir.Listener("l", "0.0.0.0", 15001, (TO_PASSTHROUGH,), **kwargs)  # type: ignore[arg-type]


def hcm_of(chain: lc_pb.FilterChain) -> hcm_pb.HttpConnectionManager:
    [network_filter] = chain.filters
    assert network_filter.name == builder.HCM_FILTER
    out = HCM()
    network_filter.typed_config.Unpack(out)
    return out


def tcp_proxy_of(chain: lc_pb.FilterChain) -> tcp_proxy_pb2.TcpProxy:
    [network_filter] = chain.filters
    assert network_filter.name == builder.TCP_PROXY_FILTER
    out = tcp_proxy_pb2.TcpProxy()
    network_filter.typed_config.Unpack(out)
    return out


def test_a_gateway_listener_keeps_envoy_defaults() -> None:
    out = builder.listener(listener())
    assert not out.HasField("bind_to_port")
    assert not out.HasField("use_original_dst")
    assert not out.HasField("default_filter_chain")
    assert not out.HasField("listener_filters_timeout")
    assert not out.continue_on_listener_filters_timeout
    assert list(out.listener_filters) == []
    assert out.traffic_direction == base_pb2.UNSPECIFIED
    assert not out.filter_chains[0].HasField("filter_chain_match")


def test_a_listener_that_does_not_bind() -> None:
    out = builder.listener(listener(bind_to_port=False, traffic_direction="OUTBOUND"))
    assert out.HasField("bind_to_port") and out.bind_to_port.value is False
    assert out.traffic_direction == base_pb2.OUTBOUND


def test_virtual_outbound_uses_the_original_destination_and_a_default_chain() -> None:
    blackhole = ir.TcpFilterChain(
        BLACKHOLE_CLUSTER,
        (ir.WeightedCluster(BLACKHOLE_CLUSTER, 0),),
        ir.ChainMatch(destination_port=15001),
        name="virtualOutbound-blackhole",
    )
    spec = ir.Listener(
        "virtualOutbound",
        "0.0.0.0",
        15001,
        (blackhole,),
        use_original_dst=True,
        default_chain=ir.TcpFilterChain(
            PASSTHROUGH_CLUSTER,
            (ir.WeightedCluster(PASSTHROUGH_CLUSTER, 0),),
            name="virtualOutbound-catchall-tcp",
        ),
    )
    out = builder.listener(spec)
    assert out.use_original_dst.value is True
    [chain] = out.filter_chains
    assert chain.name == "virtualOutbound-blackhole"
    assert chain.filter_chain_match.destination_port.value == 15001
    assert tcp_proxy_of(chain).cluster == BLACKHOLE_CLUSTER
    assert out.default_filter_chain.name == "virtualOutbound-catchall-tcp"
    assert tcp_proxy_of(out.default_filter_chain).cluster == PASSTHROUGH_CLUSTER
    assert tcp_proxy_of(out.default_filter_chain).stat_prefix == PASSTHROUGH_CLUSTER


def test_listener_filters_in_the_order_given_with_their_ports() -> None:
    spec = listener(
        listener_filters=(
            ir.ListenerFilter("original_dst"),
            ir.ListenerFilter("tls_inspector", only_ports=(8443,)),
            ir.ListenerFilter("http_inspector", except_ports=(3306, 5432)),
        ),
        listener_filters_timeout_ms=5000,
        continue_on_listener_filters_timeout=True,
    )
    out = builder.listener(spec)
    original, tls, http = out.listener_filters
    assert [f.name for f in out.listener_filters] == [
        "envoy.filters.listener.original_dst",
        "envoy.filters.listener.tls_inspector",
        "envoy.filters.listener.http_inspector",
    ]
    assert [f.typed_config.TypeName() for f in out.listener_filters] == [
        "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
        "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
        "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
    ]
    assert not original.HasField("filter_disabled")
    # only on 8443: disabled when the port is not 8443 ([start, end) ranges).
    only = tls.filter_disabled.not_match.destination_port_range
    assert (only.start, only.end) == (8443, 8444)
    # on all but 3306 and 5432: disabled on either.
    ranges = [r.destination_port_range for r in http.filter_disabled.or_match.rules]
    assert [(r.start, r.end) for r in ranges] == [(3306, 3307), (5432, 5433)]
    assert out.listener_filters_timeout.ToMilliseconds() == 5000
    assert out.continue_on_listener_filters_timeout


def test_a_listener_filter_takes_only_or_except_ports_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        ir.ListenerFilter("tls_inspector", only_ports=(1,), except_ports=(2,))


def test_chain_match_on_port_address_transport_and_alpn() -> None:
    match = ir.ChainMatch(
        destination_port=9080,
        prefix_ranges=(ir.CidrRange("10.96.0.10", 32), ir.CidrRange("fd00::", 64)),
        transport_protocol="raw_buffer",
        application_protocols=("http/1.1", "h2c"),
    )
    chain = ir.TcpFilterChain("s", (ir.WeightedCluster("c", 0),), match, name="c9080")
    out = builder.filter_chain(chain)
    assert out.name == "c9080"
    found = out.filter_chain_match
    assert found.destination_port.value == 9080
    assert [(r.address_prefix, r.prefix_len.value) for r in found.prefix_ranges] == [
        ("10.96.0.10", 32),
        ("fd00::", 64),
    ]
    assert found.transport_protocol == "raw_buffer"
    assert list(found.application_protocols) == ["http/1.1", "h2c"]
    assert list(found.server_names) == []


def test_tcp_proxy_to_one_cluster_or_several() -> None:
    one = builder.tcp_proxy(
        ir.TcpFilterChain("inbound|3306||", (ir.WeightedCluster("inbound|3306||", 0),))
    )
    assert (one.stat_prefix, one.cluster) == ("inbound|3306||", "inbound|3306||")
    split = builder.tcp_proxy(
        ir.TcpFilterChain("s", (ir.WeightedCluster("a", 80), ir.WeightedCluster("b", 20)))
    )
    assert [(c.name, c.weight) for c in split.weighted_clusters.clusters] == [("a", 80), ("b", 20)]


def test_hcm_options_of_a_gateway() -> None:
    plain = builder.http_connection_manager(
        ir.HttpFilterChain("http.80", "s", options=http_options.GATEWAY)
    )
    assert plain.use_remote_address.value is True
    assert plain.normalize_path.value is True
    assert plain.path_with_escaped_slashes_action == HCM.KEEP_UNCHANGED
    assert [u.upgrade_type for u in plain.upgrade_configs] == ["websocket"]
    assert plain.forward_client_cert_details == HCM.SANITIZE
    assert not plain.HasField("set_current_client_cert_details")
    assert plain.rds.route_config_name == "http.80"
    tls = builder.http_connection_manager(
        ir.HttpFilterChain("https.443", "s", options=http_options.GATEWAY_TLS)
    )
    assert tls.forward_client_cert_details == HCM.SANITIZE_SET
    details = tls.set_current_client_cert_details
    assert (details.subject.value, details.cert, details.dns, details.uri, details.chain) == (
        True,
        True,
        True,
        True,
        False,
    )


def test_hcm_options_a_sidecar_may_choose() -> None:
    options = ir.HttpOptions(
        use_remote_address=False,
        xff_num_trusted_hops=2,
        forward_client_cert="APPEND_FORWARD",
        client_cert_details=ir.ClientCertDetails(subject=True, uri=True, dns=True, chain=True),
        normalize_path=False,
        merge_slashes=True,
        escaped_slashes="UNESCAPE_AND_FORWARD",
        upgrades=(),
        stream_idle_timeout_ms=0,
    )
    out = builder.http_connection_manager(ir.HttpFilterChain("9080", "s", options=options))
    assert out.HasField("use_remote_address") and out.use_remote_address.value is False
    assert out.xff_num_trusted_hops == 2
    assert out.forward_client_cert_details == HCM.APPEND_FORWARD
    details = out.set_current_client_cert_details
    assert (details.subject.value, details.cert, details.chain) == (True, False, True)
    assert out.HasField("normalize_path") and out.normalize_path.value is False
    assert out.merge_slashes
    assert out.path_with_escaped_slashes_action == HCM.UNESCAPE_AND_FORWARD
    assert list(out.upgrade_configs) == []
    assert out.HasField("stream_idle_timeout") and out.stream_idle_timeout.ToMilliseconds() == 0


def test_hcm_with_an_inline_route_configuration() -> None:
    routes = ir.RouteConfig(
        "inbound|9080||",
        (
            ir.VirtualHost(
                "inbound|http|9080",
                ("*",),
                (
                    ir.Route(
                        "default",
                        ir.RouteMatch(ir.StringMatch("prefix", "/")),
                        (ir.WeightedCluster("inbound|9080||", 0),),
                    ),
                ),
            ),
        ),
        ignore_port_in_host_matching=False,
    )
    out = builder.http_connection_manager(
        ir.HttpFilterChain("", "inbound_0.0.0.0_9080", route_config=routes)
    )
    assert out.WhichOneof("route_specifier") == "route_config"
    assert out.route_config.name == "inbound|9080||"
    assert not out.route_config.ignore_port_in_host_matching
    [vhost] = out.route_config.virtual_hosts
    assert vhost.routes[0].route.cluster == "inbound|9080||"


@pytest.mark.parametrize("route_config", [True, False])
def test_an_http_chain_has_rds_or_inline_routes(route_config: bool) -> None:
    inline = ir.RouteConfig("r", ()) if route_config else None
    name = "r" if route_config else ""
    with pytest.raises(ValueError, match="not both or neither"):
        ir.HttpFilterChain(name, "s", route_config=inline)
