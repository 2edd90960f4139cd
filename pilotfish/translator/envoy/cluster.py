"""IR clusters -> Envoy Clusters and ClusterLoadAssignments."""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import address_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb
from google.protobuf.wrappers_pb2 import UInt32Value

from pilotfish.translator import ir
from pilotfish.translator.envoy.common import ads_config_source, millis, typed

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
UNLIMITED = 2**32 - 1  # Istio's default: no circuit breaking unless a DestinationRule says


def cluster(spec: ir.Cluster) -> cluster_pb2.Cluster:
    out = cluster_pb2.Cluster(
        name=spec.name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            # 0s: wait for endpoints rather than warm with none (Istio's choice).
            eds_config=ads_config_source(initial_fetch_timeout_ms=0),
            service_name=spec.name,
        ),
        connect_timeout=millis(spec.connect_timeout_ms),
        lb_policy=cluster_pb2.Cluster.LbPolicy.Value(spec.lb_policy),
        circuit_breakers=circuit_breaker_pb2.CircuitBreakers(
            thresholds=[
                circuit_breaker_pb2.CircuitBreakers.Thresholds(
                    max_connections=UInt32Value(value=UNLIMITED),
                    max_pending_requests=UInt32Value(value=UNLIMITED),
                    max_requests=UInt32Value(value=UNLIMITED),
                    max_retries=UInt32Value(value=UNLIMITED),
                    track_remaining=True,
                )
            ]
        ),
    )
    if spec.http2:
        options = hpo_pb.HttpProtocolOptions(
            explicit_http_config=hpo_pb.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
        out.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(typed(options))
    return out


def load_assignment(spec: ir.LoadAssignment) -> endpoint_pb2.ClusterLoadAssignment:
    lb_endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=e.address, port_value=e.port)
                )
            )
        )
        for e in spec.endpoints
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=spec.cluster_name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)]
        if lb_endpoints
        else [],
    )
