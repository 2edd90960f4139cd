"""IR listeners -> Envoy Listeners: listener filters, chain matches, HCM and TCP proxy chains."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.v3 import range_pb2
from google.protobuf.message import Message
from google.protobuf.wrappers_pb2 import BoolValue, UInt32Value

from pilotfish.translator import ir
from pilotfish.translator.envoy.common import ads_config_source, millis, typed
from pilotfish.translator.envoy.http_filters import hcm_filters
from pilotfish.translator.envoy.route import route_configuration
from pilotfish.translator.envoy.tls import TLS_TRANSPORT_SOCKET, downstream_tls_context

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
ROUTER_FILTER = "envoy.filters.http.router"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
ORIGINAL_DST = "envoy.filters.listener.original_dst"

_LISTENER_FILTERS: dict[ir.ListenerFilterKind, tuple[str, type[Message]]] = {
    "original_dst": (ORIGINAL_DST, original_dst_pb2.OriginalDst),
    "tls_inspector": (TLS_INSPECTOR, tls_inspector_pb2.TlsInspector),
    "http_inspector": (HTTP_INSPECTOR, http_inspector_pb2.HttpInspector),
}


def listener(spec: ir.Listener) -> listener_pb2.Listener:
    out = listener_pb2.Listener(
        name=spec.name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=spec.address, port_value=spec.port)
        ),
        filter_chains=[filter_chain(chain) for chain in spec.chains],
        listener_filters=[listener_filter(f) for f in spec.listener_filters],
        continue_on_listener_filters_timeout=spec.continue_on_listener_filters_timeout,
        traffic_direction=base_pb2.TrafficDirection.Value(spec.traffic_direction),
    )
    # Envoy's defaults (bind, no hand-over) stay unset, as a gateway's listeners have them.
    if not spec.bind_to_port:
        out.bind_to_port.CopyFrom(BoolValue(value=False))
    if spec.use_original_dst:
        out.use_original_dst.CopyFrom(BoolValue(value=True))
    if spec.listener_filters_timeout_ms is not None:
        out.listener_filters_timeout.CopyFrom(millis(spec.listener_filters_timeout_ms))
    if spec.default_chain is not None:
        out.default_filter_chain.CopyFrom(filter_chain(spec.default_chain))
    return out


def listener_filter(spec: ir.ListenerFilter) -> lc_pb.ListenerFilter:
    name, config = _LISTENER_FILTERS[spec.kind]
    out = lc_pb.ListenerFilter(name=name, typed_config=typed(config()))
    if spec.except_ports:
        out.filter_disabled.CopyFrom(_any_destination_port(spec.except_ports))
    elif spec.only_ports:
        out.filter_disabled.not_match.CopyFrom(_any_destination_port(spec.only_ports))
    return out


def _any_destination_port(ports: tuple[int, ...]) -> lc_pb.ListenerFilterChainMatchPredicate:
    rules = [
        lc_pb.ListenerFilterChainMatchPredicate(
            destination_port_range=range_pb2.Int32Range(start=p, end=p + 1)  # [start, end)
        )
        for p in sorted(ports)
    ]
    if len(rules) == 1:  # an or_match needs two rules at least
        return rules[0]
    return lc_pb.ListenerFilterChainMatchPredicate(
        or_match=lc_pb.ListenerFilterChainMatchPredicate.MatchSet(rules=rules)
    )


def filter_chain(chain: ir.FilterChain) -> lc_pb.FilterChain:
    if isinstance(chain, ir.HttpFilterChain):
        network_filter = lc_pb.Filter(
            name=HCM_FILTER, typed_config=typed(http_connection_manager(chain))
        )
    else:
        network_filter = lc_pb.Filter(name=TCP_PROXY_FILTER, typed_config=typed(tcp_proxy(chain)))
    out = lc_pb.FilterChain(name=chain.name, filters=[network_filter])
    if not chain.match.is_empty:
        out.filter_chain_match.CopyFrom(filter_chain_match(chain.match))
    if chain.tls is not None:
        out.transport_socket.CopyFrom(
            base_pb2.TransportSocket(
                name=TLS_TRANSPORT_SOCKET, typed_config=typed(downstream_tls_context(chain.tls))
            )
        )
    return out


def filter_chain_match(spec: ir.ChainMatch) -> lc_pb.FilterChainMatch:
    out = lc_pb.FilterChainMatch(
        server_names=list(spec.server_names),
        prefix_ranges=[
            address_pb2.CidrRange(
                address_prefix=r.address, prefix_len=UInt32Value(value=r.prefix_len)
            )
            for r in spec.prefix_ranges
        ],
        transport_protocol=spec.transport_protocol,
        application_protocols=list(spec.application_protocols),
    )
    if spec.destination_port is not None:
        out.destination_port.CopyFrom(UInt32Value(value=spec.destination_port))
    return out


def tcp_proxy(chain: ir.TcpFilterChain) -> tcp_proxy_pb2.TcpProxy:
    out = tcp_proxy_pb2.TcpProxy(stat_prefix=chain.stat_prefix)
    if len(chain.clusters) == 1:
        out.cluster = chain.clusters[0].cluster
    else:
        out.weighted_clusters.CopyFrom(
            tcp_proxy_pb2.TcpProxy.WeightedCluster(
                clusters=[
                    tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(
                        name=c.cluster, weight=c.weight
                    )
                    for c in chain.clusters
                ]
            )
        )
    return out


def http_connection_manager(chain: ir.HttpFilterChain) -> hcm_pb.HttpConnectionManager:
    options = chain.options
    manager = hcm_pb.HttpConnectionManager(
        stat_prefix=chain.stat_prefix,
        codec_type=hcm_pb.HttpConnectionManager.AUTO,  # HTTP/1.1 and h2c, as Istio everywhere
        http_filters=[
            *hcm_filters(chain.http_filters),
            hcm_pb.HttpFilter(name=ROUTER_FILTER, typed_config=typed(router_pb2.Router())),
        ],
        # Set either way, as Istio does: the choice is the chain's, not Envoy's default.
        use_remote_address=BoolValue(value=options.use_remote_address),
        xff_num_trusted_hops=options.xff_num_trusted_hops,
        forward_client_cert_details=hcm_pb.HttpConnectionManager.ForwardClientCertDetails.Value(
            options.forward_client_cert
        ),
        normalize_path=BoolValue(value=options.normalize_path),
        merge_slashes=options.merge_slashes,
        path_with_escaped_slashes_action=(
            hcm_pb.HttpConnectionManager.PathWithEscapedSlashesAction.Value(options.escaped_slashes)
        ),
        upgrade_configs=[
            hcm_pb.HttpConnectionManager.UpgradeConfig(upgrade_type=u) for u in options.upgrades
        ],
    )
    if chain.route_config is not None:
        manager.route_config.CopyFrom(route_configuration(chain.route_config))
    else:
        manager.rds.CopyFrom(
            hcm_pb.Rds(config_source=ads_config_source(), route_config_name=chain.route_config_name)
        )
    details = options.client_cert_details
    if details is not None:
        manager.set_current_client_cert_details.CopyFrom(
            hcm_pb.HttpConnectionManager.SetCurrentClientCertDetails(
                subject=BoolValue(value=details.subject),
                cert=details.cert,
                chain=details.chain,
                dns=details.dns,
                uri=details.uri,
            )
        )
    if options.stream_idle_timeout_ms is not None:
        manager.stream_idle_timeout.CopyFrom(millis(options.stream_idle_timeout_ms))
    return manager
