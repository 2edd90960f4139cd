"""IR listeners -> Envoy Listeners: HCM chains fetching RDS, TCP proxy chains, TLS."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf.wrappers_pb2 import BoolValue

from pilotfish.translator import ir
from pilotfish.translator.envoy.common import ads_config_source, typed
from pilotfish.translator.envoy.http_filters import hcm_filters
from pilotfish.translator.envoy.tls import TLS_TRANSPORT_SOCKET, downstream_tls_context

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
ROUTER_FILTER = "envoy.filters.http.router"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"


def listener(spec: ir.Listener) -> listener_pb2.Listener:
    out = listener_pb2.Listener(
        name=spec.name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=spec.address, port_value=spec.port)
        ),
        filter_chains=[filter_chain(chain) for chain in spec.chains],
    )
    if spec.inspects_tls:
        # Reads the ClientHello's SNI before a chain is chosen; only then is it needed.
        out.listener_filters.append(
            lc_pb.ListenerFilter(
                name=TLS_INSPECTOR, typed_config=typed(tls_inspector_pb2.TlsInspector())
            )
        )
    return out


def filter_chain(chain: ir.FilterChain) -> lc_pb.FilterChain:
    if isinstance(chain, ir.HttpFilterChain):
        network_filter = lc_pb.Filter(
            name=HCM_FILTER, typed_config=typed(http_connection_manager(chain))
        )
    else:
        network_filter = lc_pb.Filter(name=TCP_PROXY_FILTER, typed_config=typed(tcp_proxy(chain)))
    out = lc_pb.FilterChain(filters=[network_filter])
    if chain.match.server_names:
        out.filter_chain_match.CopyFrom(
            lc_pb.FilterChainMatch(server_names=list(chain.match.server_names))
        )
    if chain.tls is not None:
        out.transport_socket.CopyFrom(
            base_pb2.TransportSocket(
                name=TLS_TRANSPORT_SOCKET, typed_config=typed(downstream_tls_context(chain.tls))
            )
        )
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
    manager = _http_connection_manager(chain)
    if chain.tls is not None:
        # As Istio's gateways: the backend learns who the (mutual TLS) client was from
        # x-forwarded-client-cert, set here and never taken from the client.
        manager.forward_client_cert_details = hcm_pb.HttpConnectionManager.SANITIZE_SET
        manager.set_current_client_cert_details.CopyFrom(
            hcm_pb.HttpConnectionManager.SetCurrentClientCertDetails(
                subject=BoolValue(value=True), cert=True, dns=True, uri=True
            )
        )
    return manager


def _http_connection_manager(chain: ir.HttpFilterChain) -> hcm_pb.HttpConnectionManager:
    return hcm_pb.HttpConnectionManager(
        stat_prefix=chain.stat_prefix,
        codec_type=hcm_pb.HttpConnectionManager.AUTO,  # HTTP/1.1 and h2c (HTTP2, GRPC servers)
        rds=hcm_pb.Rds(
            config_source=ads_config_source(), route_config_name=chain.route_config_name
        ),
        http_filters=[
            *hcm_filters(chain.http_filters),
            hcm_pb.HttpFilter(name=ROUTER_FILTER, typed_config=typed(router_pb2.Router())),
        ],
        # A gateway is the edge: the client's address is the peer's, as in Istio.
        use_remote_address=BoolValue(value=True),
        normalize_path=BoolValue(value=True),
        path_with_escaped_slashes_action=hcm_pb.HttpConnectionManager.KEEP_UNCHANGED,
        upgrade_configs=[hcm_pb.HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
    )
