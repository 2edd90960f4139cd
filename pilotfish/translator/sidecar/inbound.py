"""A sidecar's inbound half: what calls its workload, and how it reaches the workload.

As Istio builds it (listener_inbound.go, listener_builder.go, cluster_builder.go,
route.go BuildDefaultHTTPInboundRoute), for a mesh without mutual TLS (PeerAuthentication
DISABLE: pilotfish has no mesh certificates, so its chains are Istio's plaintext ones):
- `virtualInbound` on 0.0.0.0:15006, where the capture rules redirect inbound TCP: the
  original_dst listener filter recovers where each connection was going and the chains
  match its port; the inspectors run only on the ports whose chains need them.
- Per inbound port (inbound_ports.py, named `<bind>_<port>`): HTTP through an HTTP
  connection manager (stat prefix `inbound_<bind>_<port>`) with an inline route
  configuration `inbound|<port>||` (one virtual host `inbound|http|<service port>`, `*`,
  no timeout, Istio's inbound retry: 2 attempts on reset-before-request, none for gRPC);
  TCP through tcp_proxy (stat prefix the cluster); a port of no declared protocol both,
  HTTP told apart by the http_inspector (ALPN http/1.1, h2c).
- Traffic to 15006 itself is blackholed (`virtualInbound-blackhole`: no loop); traffic
  to any other port goes through `InboundPassthroughCluster` (`virtualInbound-catchall-http`
  for HTTP, `virtualInbound` for the rest).
- A Sidecar ingress port with captureMode NONE is a listener of its own, bound to its
  address and port, with the same chains and no original_dst filter.
- `inbound|<port>||` clusters: to the connection's original destination (ORIGINAL_DST,
  the pod's IP and the target port, from 127.0.0.6), or STATIC to a Sidecar
  defaultEndpoint / 127.0.0.1 under `inboundTrafficPolicy: LOCALHOST` (from 127.0.0.6
  unless the endpoint is loopback); HTTP/2 for HTTP2/gRPC ports, the downstream's
  protocol for sniffed ones; the connectionPool of the Service's DestinationRule, or the
  Sidecar's. `InboundPassthroughCluster` is ORIGINAL_DST from 127.0.0.6.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

from pilotfish.api.networking.v1alpha3 import sidecar_pb2 as sc_pb
from pilotfish.model.configset import ConfigSet
from pilotfish.model.mesh_config import MeshSettings
from pilotfish.model.objects import IstioObject
from pilotfish.translator import ir
from pilotfish.translator.cluster_names import BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER
from pilotfish.translator.cluster_policy import apply_connection_pool
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.http_options import SIDECAR_INBOUND
from pilotfish.translator.listener_filters import inspectors
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import HTTP2_PROTOCOLS, ServiceRegistry
from pilotfish.translator.service_targets import service_targets
from pilotfish.translator.sidecar.inbound_ports import (
    GRPC_PROTOCOLS,
    INBOUND_CAPTURE_PORT,
    LOCALHOST,
    LOCALHOST_V6,
    WILDCARD,
    InboundPort,
    PoolSource,
    passthrough_source,
    service_ports,
)
from pilotfish.translator.sidecar.ingress import ingress_ports, sidecar_pool

VIRTUAL_INBOUND = "virtualInbound"
BLACKHOLE_CHAIN = "virtualInbound-blackhole"
CATCH_ALL_HTTP_CHAIN = "virtualInbound-catchall-http"
PLAINTEXT_HTTP_ALPN = ("http/1.1", "h2c")  # what http_inspector reports for plaintext HTTP
# Istio: an inbound route retries only what never reached the application.
INBOUND_RETRY = ir.RetryPolicy(2, "reset-before-request", retry_other_hosts=False)
# ORIGINAL_DST hosts of an inbound cluster are never cleaned up (Istio: the longest
# duration Envoy takes, about 292 years).
NEVER_MS = 9_223_372_035 * 1000
PASSTHROUGH_IDLE_TIMEOUT_MS = 300_000
_CATCH_ALL = ir.RouteMatch(ir.StringMatch("prefix", "/"))
_RAW = ir.ChainMatch(transport_protocol="raw_buffer")


def build_inbound(
    config: ConfigSet,
    proxy: Proxy,
    registry: ServiceRegistry,
    sidecar: IstioObject | None,
    diag: Diagnostics,
) -> ir.ProxyConfig:
    """The inbound listeners and clusters of a sidecar; `sidecar` is the Sidecar
    resource that applies to it (sidecar_scope.py), if any."""
    ports = inbound_ports(config, proxy, registry, sidecar, diag)
    captured = tuple(c for p in ports if not p.bind_to_port for c in port_chains(p))
    listeners = (
        virtual_inbound(captured),
        *(bound_listener(p) for p in ports if p.bind_to_port),
    )
    mesh = config.mesh
    clusters = (
        *(inbound_cluster(p, registry, mesh, proxy.ip, diag) for p in ports),
        inbound_passthrough_cluster(mesh, proxy.ip),
        blackhole_cluster(mesh),
    )
    return ir.ProxyConfig(listeners=listeners, clusters=clusters)


def inbound_ports(
    config: ConfigSet,
    proxy: Proxy,
    registry: ServiceRegistry,
    sidecar: IstioObject | None,
    diag: Diagnostics,
) -> list[InboundPort]:
    """The Sidecar's ingress listeners when it has any, else the proxy's Services' ports;
    by port."""
    targets = service_targets(config, proxy, registry)
    pool = sidecar_pool(sidecar, diag) if sidecar is not None else None
    if sidecar is not None and cast(sc_pb.Sidecar, sidecar.spec).ingress:
        ports = ingress_ports(sidecar, proxy, targets, pool, diag)
    else:
        ports = service_ports(targets, config.mesh.inbound_policy, pool, diag)
    return sorted(ports, key=lambda p: p.port)  # Istio's order


# -- listeners ------------------------------------------------------------------------


def virtual_inbound(port_chains: tuple[ir.FilterChain, ...]) -> ir.Listener:
    chains = (blackhole_chain(), *passthrough_chains(), *port_chains)
    return ir.Listener(
        VIRTUAL_INBOUND,
        WILDCARD,
        INBOUND_CAPTURE_PORT,
        chains,
        listener_filters=(ir.ListenerFilter("original_dst"), *inspectors(chains)),
        # Istio's protocolDetectionTimeout (0s: the inspectors wait for the first bytes).
        listener_filters_timeout_ms=0,
        continue_on_listener_filters_timeout=True,
        traffic_direction="INBOUND",
    )


def bound_listener(port: InboundPort) -> ir.Listener:
    chains = port_chains(port)
    return ir.Listener(
        port.name,
        port.bind,
        port.port,
        chains,
        listener_filters=inspectors(chains),
        listener_filters_timeout_ms=0,
        continue_on_listener_filters_timeout=True,
        traffic_direction="INBOUND",
    )


def blackhole_chain() -> ir.TcpFilterChain:
    """Traffic sent to 15006 itself would come back here forever."""
    return ir.TcpFilterChain(
        BLACKHOLE_CLUSTER,
        (ir.WeightedCluster(BLACKHOLE_CLUSTER, 0),),
        ir.ChainMatch(destination_port=INBOUND_CAPTURE_PORT),
        name=BLACKHOLE_CHAIN,
    )


def passthrough_chains() -> tuple[ir.FilterChain, ...]:
    """Any port no chain declares: on to where it was going, HTTP or not."""
    cluster = INBOUND_PASSTHROUGH_CLUSTER
    http = ir.HttpFilterChain(
        "",
        cluster,  # Istio's stat prefix for the passthrough chains: the cluster
        replace(_RAW, application_protocols=PLAINTEXT_HTTP_ALPN),
        options=SIDECAR_INBOUND,
        route_config=inbound_route_config(cluster, 0, cluster, "UNSUPPORTED"),
        name=CATCH_ALL_HTTP_CHAIN,
    )
    tcp = ir.TcpFilterChain(cluster, (ir.WeightedCluster(cluster, 0),), _RAW, name=VIRTUAL_INBOUND)
    return (http, tcp)


def port_chains(port: InboundPort) -> tuple[ir.FilterChain, ...]:
    """The chains of one inbound port: HTTP, TCP, or both (sniffed)."""
    match = replace(_RAW, destination_port=port.port)
    cluster = port.cluster_name
    http = ir.HttpFilterChain(
        "",
        f"inbound_{port.name}",
        match,
        options=SIDECAR_INBOUND,
        route_config=inbound_route_config(cluster, port.service_port, cluster, port.protocol),
        name=port.name,
    )
    tcp = ir.TcpFilterChain(cluster, (ir.WeightedCluster(cluster, 0),), match, name=port.name)
    if port.listener_protocol == "HTTP":
        return (http,)
    if port.listener_protocol == "TCP":
        return (tcp,)
    return (replace(http, match=replace(match, application_protocols=PLAINTEXT_HTTP_ALPN)), tcp)


def inbound_route_config(
    name: str, service_port: int, cluster: str, protocol: str
) -> ir.RouteConfig:
    """Everything to the one cluster: no timeout; retried only when the request never
    reached the application, and never for gRPC (streams cannot be replayed)."""
    route = ir.Route(
        "default",
        _CATCH_ALL,
        (ir.WeightedCluster(cluster, 0),),
        retry=None if protocol in GRPC_PROTOCOLS else INBOUND_RETRY,
    )
    return ir.RouteConfig(
        name,
        (ir.VirtualHost(f"inbound|http|{service_port}", ("*",), (route,)),),
        ignore_port_in_host_matching=False,
    )


# -- clusters -------------------------------------------------------------------------


def inbound_cluster(
    port: InboundPort,
    registry: ServiceRegistry,
    mesh: MeshSettings,
    proxy_ip: str,
    diag: Diagnostics,
) -> ir.Cluster:
    upstream = port.upstream
    cluster = ir.Cluster(port.cluster_name, connect_timeout_ms=mesh.connect_timeout_ms)
    if upstream.is_original_destination:
        cluster = replace(
            cluster,
            discovery="ORIGINAL_DST",
            lb_policy="CLUSTER_PROVIDED",
            cleanup_interval_ms=NEVER_MS,
            upstream_bind_address=passthrough_source(proxy_ip),
        )
    else:
        loopback = upstream.address in (LOCALHOST, LOCALHOST_V6)
        cluster = replace(
            cluster,
            discovery="STATIC",
            lb_policy="ROUND_ROBIN",
            inline_endpoints=(ir.Endpoint(upstream.address, upstream.port, upstream.path),),
            # Istio binds even for a Unix socket, where Envoy ignores it.
            upstream_bind_address="" if loopback else passthrough_source(upstream.address),
        )
    pool = port.connection_pool or _destination_rule_pool(port, registry)
    if pool is not None:
        cluster = apply_connection_pool(cluster, pool.pool, pool.obj, pool.path, diag)
    # The port's protocol decides HTTP/2, never the pool's h2UpgradePolicy (Istio skips
    # the upgrade inbound).
    return replace(
        cluster,
        http2=port.protocol in HTTP2_PROTOCOLS,
        use_downstream_protocol=port.listener_protocol == "AUTO",
    )


def _destination_rule_pool(port: InboundPort, registry: ServiceRegistry) -> PoolSource | None:
    """The connectionPool of the port's Service's DestinationRule, for the Service's port
    (Istio sizes the receiving side as the callers are told to)."""
    rule = registry.destination_rule(port.hostname) if port.hostname else None
    if rule is None:
        return None
    policy = rule.policy(port.service_port)
    if not policy.HasField("connection_pool"):
        return None
    path = rule.policy_paths(port.service_port)["connection_pool"]
    return PoolSource(policy.connection_pool, rule.rule, path)


def inbound_passthrough_cluster(mesh: MeshSettings, proxy_ip: str) -> ir.Cluster:
    return ir.Cluster(
        INBOUND_PASSTHROUGH_CLUSTER,
        connect_timeout_ms=mesh.connect_timeout_ms,
        lb_policy="CLUSTER_PROVIDED",
        discovery="ORIGINAL_DST",
        use_downstream_protocol=True,
        idle_timeout_ms=PASSTHROUGH_IDLE_TIMEOUT_MS,
        upstream_bind_address=passthrough_source(proxy_ip),
    )


def blackhole_cluster(mesh: MeshSettings) -> ir.Cluster:
    """No endpoints: Envoy closes what is sent to it."""
    return ir.Cluster(
        BLACKHOLE_CLUSTER,
        connect_timeout_ms=mesh.connect_timeout_ms,
        lb_policy="ROUND_ROBIN",
        discovery="STATIC",
    )
