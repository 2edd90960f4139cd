"""The cluster builder: the sidecar's cluster kinds (ORIGINAL_DST, STATIC, inbound) as Istio
sets them (pilot/pkg/networking/core/cluster_builder.go)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb

from pilotfish.translator import ir
from pilotfish.translator.cluster_names import (
    BLACKHOLE_CLUSTER,
    INBOUND_PASSTHROUGH_CLUSTER,
    PASSTHROUGH_CLUSTER,
    ClusterName,
)
from pilotfish.translator.envoy import cluster as builder

Cluster = cluster_pb2.Cluster


def protocol_options(out: cluster_pb2.Cluster) -> hpo_pb.HttpProtocolOptions:
    options = hpo_pb.HttpProtocolOptions()
    out.typed_extension_protocol_options[builder.HTTP_PROTOCOL_OPTIONS].Unpack(options)
    return options


def test_passthrough_cluster_sends_to_the_original_destination() -> None:
    spec = ir.Cluster(
        PASSTHROUGH_CLUSTER,
        lb_policy="CLUSTER_PROVIDED",
        discovery="ORIGINAL_DST",
        use_downstream_protocol=True,
        idle_timeout_ms=300_000,
    )
    out = builder.cluster(spec)
    assert (out.type, out.lb_policy) == (Cluster.ORIGINAL_DST, Cluster.CLUSTER_PROVIDED)
    assert not out.HasField("eds_cluster_config") and not out.HasField("load_assignment")
    options = protocol_options(out)
    # HTTP/1.1 or HTTP/2 upstream, whichever the client spoke.
    assert options.WhichOneof("upstream_protocol_options") == "use_downstream_protocol_config"
    downstream = options.use_downstream_protocol_config
    assert downstream.HasField("http_protocol_options")
    assert downstream.HasField("http2_protocol_options")
    assert options.common_http_protocol_options.idle_timeout.ToSeconds() == 300


def test_blackhole_cluster_is_static_with_no_endpoints() -> None:
    out = builder.cluster(
        ir.Cluster(BLACKHOLE_CLUSTER, lb_policy="ROUND_ROBIN", discovery="STATIC")
    )
    assert (out.type, out.lb_policy) == (Cluster.STATIC, Cluster.ROUND_ROBIN)
    assert not out.HasField("load_assignment")
    assert not out.typed_extension_protocol_options


def test_inbound_cluster_to_the_application() -> None:
    name = str(ClusterName.inbound(9080))
    spec = ir.Cluster(
        name,
        discovery="STATIC",
        inline_endpoints=(ir.Endpoint("127.0.0.1", 8080),),
        upstream_bind_address="127.0.0.6",
    )
    assert spec.direction == "inbound"
    out = builder.cluster(spec)
    assert out.type == Cluster.STATIC
    assert out.load_assignment.cluster_name == "inbound|9080||"
    [locality] = out.load_assignment.endpoints
    [endpoint] = locality.lb_endpoints
    socket = endpoint.endpoint.address.socket_address
    assert (socket.address, socket.port_value) == ("127.0.0.1", 8080)
    source = out.upstream_bind_config.source_address
    assert (source.address, source.port_value) == ("127.0.0.6", 0)


def test_inbound_original_destination_cluster_keeps_its_hosts() -> None:
    spec = ir.Cluster(
        INBOUND_PASSTHROUGH_CLUSTER,
        lb_policy="CLUSTER_PROVIDED",
        discovery="ORIGINAL_DST",
        cleanup_interval_ms=3_600_000,
        upstream_bind_address="127.0.0.6",
    )
    assert spec.direction == "inbound"
    out = builder.cluster(spec)
    assert out.type == Cluster.ORIGINAL_DST
    assert out.cleanup_interval.ToSeconds() == 3600
    assert out.upstream_bind_config.source_address.address == "127.0.0.6"


def test_direction_follows_the_name() -> None:
    assert ir.Cluster("outbound|80||a.default.svc.cluster.local").direction == "outbound"
    assert ir.Cluster(PASSTHROUGH_CLUSTER).direction == "outbound"
    assert ir.Cluster("inbound|80||").direction == "inbound"


def test_an_outbound_cluster_keeps_envoy_defaults_for_the_new_fields() -> None:
    out = builder.cluster(ir.Cluster("outbound|80||a.default.svc.cluster.local"))
    assert out.type == Cluster.EDS
    assert not out.HasField("upstream_bind_config")
    assert not out.HasField("cleanup_interval")
    assert not out.typed_extension_protocol_options


def test_an_endpoint_on_a_unix_socket_is_a_pipe_address() -> None:
    spec = ir.Cluster(
        str(ClusterName.inbound(9080)),
        discovery="STATIC",
        inline_endpoints=(ir.Endpoint("", 0, path="/var/run/app.sock"),),
    )
    (endpoint,) = builder.cluster(spec).load_assignment.endpoints[0].lb_endpoints
    address = endpoint.endpoint.address
    assert (address.WhichOneof("address"), address.pipe.path) == ("pipe", "/var/run/app.sock")
