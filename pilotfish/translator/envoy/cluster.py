"""IR clusters -> Envoy Clusters and ClusterLoadAssignments."""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb
from google.protobuf.wrappers_pb2 import UInt32Value

from pilotfish.translator import ir
from pilotfish.translator.envoy import upstream_tls
from pilotfish.translator.envoy.common import ads_config_source, millis, typed

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
UNLIMITED = ir.UNLIMITED
_TYPES = {
    "EDS": cluster_pb2.Cluster.EDS,
    "STATIC": cluster_pb2.Cluster.STATIC,
    "STRICT_DNS": cluster_pb2.Cluster.STRICT_DNS,
    "LOGICAL_DNS": cluster_pb2.Cluster.LOGICAL_DNS,
    "ORIGINAL_DST": cluster_pb2.Cluster.ORIGINAL_DST,
}


def cluster(spec: ir.Cluster) -> cluster_pb2.Cluster:
    limits = spec.circuit_breakers
    out = cluster_pb2.Cluster(
        name=spec.name,
        type=_TYPES[spec.discovery],
        connect_timeout=millis(spec.connect_timeout_ms),
        lb_policy=cluster_pb2.Cluster.LbPolicy.Value(spec.lb_policy),
        circuit_breakers=circuit_breaker_pb2.CircuitBreakers(
            thresholds=[
                circuit_breaker_pb2.CircuitBreakers.Thresholds(
                    max_connections=UInt32Value(value=limits.max_connections),
                    max_pending_requests=UInt32Value(value=limits.max_pending_requests),
                    max_requests=UInt32Value(value=limits.max_requests),
                    max_retries=UInt32Value(value=limits.max_retries),
                    track_remaining=True,
                )
            ]
        ),
    )
    if spec.discovery == "EDS":
        out.eds_cluster_config.CopyFrom(
            cluster_pb2.Cluster.EdsClusterConfig(
                # 0s: wait for endpoints rather than warm with none (Istio's choice).
                eds_config=ads_config_source(initial_fetch_timeout_ms=0),
                service_name=spec.name,
            )
        )
    elif spec.discovery in ("STRICT_DNS", "LOGICAL_DNS"):
        # IPv4 only, as Istio on a single-stack cluster: `localhost` must not become ::1.
        out.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
        # Istio's: re-resolve every 60 s (its mesh default), sooner when the TTL says so.
        out.dns_refresh_rate.CopyFrom(millis(60_000))
        out.respect_dns_ttl = True
        out.load_assignment.CopyFrom(
            load_assignment(ir.LoadAssignment(spec.name, spec.inline_endpoints))
        )
    elif spec.discovery == "STATIC" and spec.inline_endpoints:
        # None at all (BlackHoleCluster): as Istio, no load_assignment either.
        out.load_assignment.CopyFrom(
            load_assignment(ir.LoadAssignment(spec.name, spec.inline_endpoints))
        )
    if spec.cleanup_interval_ms is not None:
        out.cleanup_interval.CopyFrom(millis(spec.cleanup_interval_ms))
    if spec.upstream_bind_address:
        out.upstream_bind_config.source_address.CopyFrom(
            address_pb2.SocketAddress(address=spec.upstream_bind_address, port_value=0)
        )
    if spec.ring_size is not None:
        out.ring_hash_lb_config.minimum_ring_size.value = spec.ring_size
    if spec.maglev_table_size is not None:
        out.maglev_lb_config.table_size.value = spec.maglev_table_size
    if spec.outlier is not None:
        out.outlier_detection.CopyFrom(outlier_detection(spec.outlier))
    if spec.healthy_panic_threshold is not None:
        out.common_lb_config.healthy_panic_threshold.value = spec.healthy_panic_threshold
    if spec.tcp_keepalive is not None:
        keepalive = address_pb2.TcpKeepalive()
        if spec.tcp_keepalive.probes is not None:
            keepalive.keepalive_probes.value = spec.tcp_keepalive.probes
        if spec.tcp_keepalive.time_s is not None:
            keepalive.keepalive_time.value = spec.tcp_keepalive.time_s
        if spec.tcp_keepalive.interval_s is not None:
            keepalive.keepalive_interval.value = spec.tcp_keepalive.interval_s
        out.upstream_connection_options.tcp_keepalive.CopyFrom(keepalive)
    if spec.tls is not None:
        out.transport_socket.CopyFrom(upstream_tls.transport_socket(spec.tls))
    options = _http_protocol_options(spec)
    if options is not None:
        out.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(typed(options))
    return out


def outlier_detection(spec: ir.OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    out = outlier_detection_pb2.OutlierDetection(
        # Istio turns success-rate ejection off: only the consecutive errors asked for count.
        enforcing_success_rate=UInt32Value(value=0),
    )
    if spec.consecutive_5xx is not None:
        out.consecutive_5xx.value = spec.consecutive_5xx
        out.enforcing_consecutive_5xx.value = 100 if spec.consecutive_5xx else 0
    else:
        # Unset: Envoy's default (5) would eject; Istio leaves it off unless asked.
        out.enforcing_consecutive_5xx.value = 0
    if spec.consecutive_gateway_errors is not None:
        out.consecutive_gateway_failure.value = spec.consecutive_gateway_errors
        out.enforcing_consecutive_gateway_failure.value = (
            100 if spec.consecutive_gateway_errors else 0
        )
    if spec.interval_ms is not None:
        out.interval.CopyFrom(millis(spec.interval_ms))
    if spec.base_ejection_time_ms is not None:
        out.base_ejection_time.CopyFrom(millis(spec.base_ejection_time_ms))
    if spec.max_ejection_percent is not None:
        out.max_ejection_percent.value = spec.max_ejection_percent
    return out


def _http_protocol_options(spec: ir.Cluster) -> hpo_pb.HttpProtocolOptions | None:
    common = protocol_pb2.HttpProtocolOptions()
    if spec.idle_timeout_ms is not None:
        common.idle_timeout.CopyFrom(millis(spec.idle_timeout_ms))
    if spec.max_requests_per_connection is not None:
        common.max_requests_per_connection.value = spec.max_requests_per_connection
    has_common = common.ByteSize() > 0
    # No DR sni: as Istio, the SNI (and the name checked) is the request's Host.
    auto_sni = spec.tls is not None and not spec.tls.sni
    if not (spec.http2 or spec.use_downstream_protocol or has_common or auto_sni):
        return None
    if spec.use_downstream_protocol:
        options = hpo_pb.HttpProtocolOptions(
            use_downstream_protocol_config=hpo_pb.HttpProtocolOptions.UseDownstreamHttpConfig(
                http_protocol_options=protocol_pb2.Http1ProtocolOptions(),
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions(),
            )
        )
    else:
        explicit = hpo_pb.HttpProtocolOptions.ExplicitHttpConfig()
        if spec.http2:
            explicit.http2_protocol_options.CopyFrom(protocol_pb2.Http2ProtocolOptions())
        else:
            explicit.http_protocol_options.CopyFrom(protocol_pb2.Http1ProtocolOptions())
        options = hpo_pb.HttpProtocolOptions(explicit_http_config=explicit)
    if has_common:
        options.common_http_protocol_options.CopyFrom(common)
    if auto_sni:
        options.upstream_http_protocol_options.auto_sni = True
    return options


def load_assignment(spec: ir.LoadAssignment) -> endpoint_pb2.ClusterLoadAssignment:
    lb_endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(address=endpoint_address(e))
        )
        for e in spec.endpoints
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=spec.cluster_name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)]
        if lb_endpoints
        else [],
    )


def endpoint_address(spec: ir.Endpoint) -> address_pb2.Address:
    if spec.path:
        return address_pb2.Address(pipe=address_pb2.Pipe(path=spec.path))
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=spec.address, port_value=spec.port)
    )
