"""IR listeners -> Envoy Listeners (gateway listeners: one HCM chain fetching RDS)."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb,
)
from google.protobuf.wrappers_pb2 import BoolValue

from pilotfish.translator import ir
from pilotfish.translator.envoy.common import ads_config_source, typed

HCM_FILTER = "envoy.filters.network.http_connection_manager"
ROUTER_FILTER = "envoy.filters.http.router"


def listener(spec: ir.Listener) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=spec.name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=spec.address, port_value=spec.port)
        ),
        filter_chains=[http_filter_chain(chain) for chain in spec.chains],
    )


def http_filter_chain(chain: ir.HttpFilterChain) -> listener_components_pb2.FilterChain:
    return listener_components_pb2.FilterChain(
        filters=[
            listener_components_pb2.Filter(
                name=HCM_FILTER, typed_config=typed(http_connection_manager(chain))
            )
        ]
    )


def http_connection_manager(chain: ir.HttpFilterChain) -> hcm_pb.HttpConnectionManager:
    return hcm_pb.HttpConnectionManager(
        stat_prefix=chain.stat_prefix,
        codec_type=hcm_pb.HttpConnectionManager.AUTO,  # HTTP/1.1 and h2c (HTTP2, GRPC servers)
        rds=hcm_pb.Rds(
            config_source=ads_config_source(), route_config_name=chain.route_config_name
        ),
        http_filters=[
            hcm_pb.HttpFilter(name=ROUTER_FILTER, typed_config=typed(router_pb2.Router()))
        ],
        # A gateway is the edge: the client's address is the peer's, as in Istio.
        use_remote_address=BoolValue(value=True),
        normalize_path=BoolValue(value=True),
        path_with_escaped_slashes_action=hcm_pb.HttpConnectionManager.KEEP_UNCHANGED,
        upgrade_configs=[hcm_pb.HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
    )
