"""Real Envoy protos and a real grpc.aio ADS client for the xDS tests (no tests here)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from pilotfish.xds import types
from pilotfish.xds.ads import AdsServer
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.grpc_server import start_grpc_server
from pilotfish.xds.snapshot import Snapshot
from testsupport.wait import wait_until_async

T = TypeVar("T")

SIDECAR = "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local"
ROUTER = "router~10.0.0.2~gw-1.istio-system~istio-system.svc.cluster.local"

# The one timing-based assertion allowed: "nothing arrives within this long".
QUIET = 0.3


def run(coro: Awaitable[T], timeout: float = 20) -> T:
    """``asyncio.run`` with a deadline, then free grpc.aio for the next event loop.

    grpc.aio binds its engine to the loop that created the first server/channel and
    rebinds only once every such object is deallocated; ones kept alive by reference
    cycles past their loop make the next loop's server miss client cancellations.
    """

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    try:
        return asyncio.run(bounded())
    finally:
        gc.collect()


# --- Envoy resources -----------------------------------------------------------------


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=_ads())


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


def eds_cluster(
    name: str,
    service_name: str = "",
    timeout_s: int = 1,
    ca_secret: str | None = None,
    combined_ca_secret: str | None = None,
    cert_secret: str | None = None,
) -> Any:
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=_ads(), service_name=service_name
        ),
    )
    cluster.connect_timeout.seconds = timeout_s
    if ca_secret or combined_ca_secret or cert_secret:
        ctx = tls_pb2.CommonTlsContext()
        if cert_secret:
            ctx.tls_certificate_sds_secret_configs.append(_sds(cert_secret))
        if ca_secret:
            ctx.validation_context_sds_secret_config.CopyFrom(_sds(ca_secret))
        if combined_ca_secret:
            ctx.combined_validation_context.validation_context_sds_secret_config.CopyFrom(
                _sds(combined_ca_secret)
            )
        cluster.transport_socket.name = "envoy.transport_sockets.tls"
        cluster.transport_socket.typed_config.CopyFrom(
            _pack(tls_pb2.UpstreamTlsContext(common_tls_context=ctx))
        )
    return cluster


def endpoints(cluster_name: str, *ports: int) -> Any:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster_name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=address_pb2.Address(
                                socket_address=address_pb2.SocketAddress(
                                    address="127.0.0.1", port_value=port
                                )
                            )
                        )
                    )
                    for port in ports
                ]
            )
        ],
    )


def listener(
    name: str, port: int, route_name: str, cert_secret: str | None = None, config: Any = None
) -> Any:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(route_config_name=route_name, config_source=config or _ads()),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router")],
    )
    chain = listener_components_pb2.FilterChain(
        filters=[
            listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager",
                typed_config=_pack(manager),
            )
        ]
    )
    if cert_secret:
        ctx = tls_pb2.DownstreamTlsContext(
            common_tls_context=tls_pb2.CommonTlsContext(
                tls_certificate_sds_secret_configs=[_sds(cert_secret)]
            )
        )
        chain.transport_socket.name = "envoy.transport_sockets.tls"
        chain.transport_socket.typed_config.CopyFrom(_pack(ctx))
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=port)
        ),
        filter_chains=[chain],
    )


def routes(name: str, cluster: str, prefix: str = "/") -> Any:
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="all",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix=prefix),
                        route=route_components_pb2.RouteAction(cluster=cluster),
                    )
                ],
            )
        ],
    )


def split_routes(name: str, weights: dict[str, int], mirror: str = "") -> Any:
    """A route configuration splitting traffic over clusters (weighted_clusters)."""
    action = route_components_pb2.RouteAction(
        weighted_clusters=route_components_pb2.WeightedCluster(
            clusters=[
                route_components_pb2.WeightedCluster.ClusterWeight(name=c, weight={"value": w})
                for c, w in weights.items()
            ]
        )
    )
    if mirror:
        action.request_mirror_policies.add(cluster=mirror)
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="all",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix="/"), route=action
                    )
                ],
            )
        ],
    )


def tcp_listener(name: str, port: int, cluster: str) -> Any:
    """A listener whose one chain proxies TCP to ``cluster`` (no RDS)."""
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=name, cluster=cluster)
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=port)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.tcp_proxy", typed_config=_pack(proxy)
                    )
                ]
            )
        ],
    )


def secret(name: str) -> Any:
    return secret_pb2.Secret(name=name)


def snapshot(
    *,
    cluster_timeout: int = 1,
    ports: Iterable[int] = (8000,),
    listener_port: int = 8080,
    prefix: str = "/",
    extra_clusters: Iterable[str] = (),
) -> Snapshot:
    """A consistent gateway-like snapshot: one listener, its routes, a cluster, endpoints."""
    names = ["outbound|8000||httpbin.default.svc.cluster.local", *extra_clusters]
    return Snapshot.of(
        clusters=[eds_cluster(n, timeout_s=cluster_timeout) for n in names],
        endpoints=[endpoints(n, *ports) for n in names],
        listeners=[listener("0.0.0.0_8080", listener_port, "http.8080")],
        routes=[routes("http.8080", names[0], prefix)],
    )


CLUSTER_NAME = "outbound|8000||httpbin.default.svc.cluster.local"


# --- a real server and client --------------------------------------------------------


def validate_node(node: Any) -> str | None:
    if node.id.count("~") != 3:
        return f"node id {node.id!r} is not type~ip~pod.namespace~domain"
    return None


@dataclass
class Harness:
    cache: SnapshotCache
    ads: AdsServer
    port: int
    channel: Any
    # Snapshot on_connect sets per node id (the composition root's job in production).
    initial: dict[str, Snapshot] = field(default_factory=dict)
    connects: list[str] = field(default_factory=list)
    disconnected: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    clients: list[Client] = field(default_factory=list)

    def client(self, node_id: str = SIDECAR, node: Any = None) -> Client:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        c = Client(stub.StreamAggregatedResources(), node or base_pb2.Node(id=node_id))
        self.clients.append(c)
        return c


@asynccontextmanager
async def harness() -> AsyncIterator[Harness]:
    cache = SnapshotCache()
    holder: list[Harness] = []

    async def on_connect(node: Any) -> None:
        h = holder[0]
        h.connects.append(node.id)
        if node.id in h.initial:
            cache.set_snapshot(node.id, h.initial[node.id])

    async def on_disconnect(node: Any) -> None:
        holder[0].disconnected.put_nowait(node.id)

    ads = AdsServer(
        cache, validate_node=validate_node, on_connect=on_connect, on_disconnect=on_disconnect
    )
    server, port = await start_grpc_server(ads, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    h = Harness(cache=cache, ads=ads, port=port, channel=channel)
    holder.append(h)
    try:
        yield h
    finally:
        for c in h.clients:
            await c.close()
        # Let every stream's handler finish before the server goes away.
        await wait_until_async(lambda: not ads.sync_status(), timeout=5)
        await channel.close()
        await server.stop(None)


class Client:
    """One ADS stream, read by a task so a bounded wait never cancels a grpc read."""

    def __init__(self, call: Any, node: Any) -> None:
        self.call = call
        self.node = node
        self._sent_node = False
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())
        # Latest response per type, for ACK/NACK helpers.
        self.last: dict[str, Any] = {}

    async def _read(self) -> None:
        try:
            async for response in self.call:
                self.responses.put_nowait(response)
        except grpc.aio.AioRpcError as e:
            self.responses.put_nowait(e)

    async def request(
        self,
        type_url: str,
        names: Iterable[str] = (),
        *,
        version: str = "",
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names),
            version_info=version,
            response_nonce=nonce,
        )
        if not self._sent_node:
            req.node.CopyFrom(self.node)  # only the first request carries the node
            self._sent_node = True
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.call.write(req)

    async def ack(self, type_url: str, names: Iterable[str] = ()) -> None:
        last = self.last[type_url]
        await self.request(type_url, names, version=last.version_info, nonce=last.nonce)

    async def nack(
        self, type_url: str, names: Iterable[str] = (), message: str = "rejected"
    ) -> None:
        last = self.last[type_url]
        # Envoy NACKs with the version it still runs, not the rejected one.
        await self.request(type_url, names, version="", nonce=last.nonce, error=message)

    async def recv(self, timeout: float = 5) -> Any:
        response = await asyncio.wait_for(self.responses.get(), timeout)
        if isinstance(response, BaseException):
            raise response
        self.last[response.type_url] = response
        return response

    async def expect_nothing(self) -> None:
        try:
            response = await asyncio.wait_for(self.responses.get(), QUIET)
        except TimeoutError:
            return
        raise AssertionError(f"expected no response, got {short(response)}")

    async def status(self) -> grpc.StatusCode:
        """End of the stream: the status code the server closed it with."""
        result = await asyncio.wait_for(self.responses.get(), 5)
        assert isinstance(result, grpc.aio.AioRpcError), f"expected an error, got {result}"
        code: grpc.StatusCode = result.code()
        return code

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


def short(response: Any) -> str:
    if isinstance(response, BaseException):
        return repr(response)
    return (
        f"{types.short_name(response.type_url)} v{response.version_info} x{len(response.resources)}"
    )


def names_of(response: Any) -> list[str]:
    """Names of the resources in a response, decoded from the Any values."""
    classes: dict[str, Callable[[bytes], Any]] = {
        types.CLUSTER: cluster_pb2.Cluster.FromString,
        types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment.FromString,
        types.LISTENER: listener_pb2.Listener.FromString,
        types.ROUTE: route_pb2.RouteConfiguration.FromString,
        types.SECRET: secret_pb2.Secret.FromString,
    }
    out = []
    for packed in response.resources:
        assert packed.type_url == response.type_url
        message = classes[response.type_url](packed.value)
        out.append(message.cluster_name if response.type_url == types.ENDPOINT else message.name)
    return out
