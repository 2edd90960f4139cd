"""A sidecar's outbound TCP and TLS filter chains for one service port, from the mesh
VirtualServices' `tcp:` and `tls:` rules (Istio's buildSidecarOutboundTCPFilterChainOpts
and buildSidecarOutboundTLSFilterChainOpts).

- TCP ports: the first `tcp:` rule that applies (no match, or a match for this proxy and
  port with no `destinationSubnets`) ends the list; rules whose matches only name
  destinationSubnets get a chain on those subnets first. Nothing applies: straight to
  the service's cluster.
- TLS and HTTPS ports: a chain per `tls[].match[]` that applies, on its `sniHosts` (and
  subnets), the first of identical SNI/subnet pairs winning. None: to the service's
  cluster, matching the service's host as SNI only when the listener cannot tell
  services apart otherwise (no address of its own, or a CIDR).
A match applies when its `gateways` (if any) include `mesh`, its `sourceLabels` are the
proxy's, its `port` is the listener's and its `sourceNamespace` the proxy's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.objects import IstioObject
from pilotfish.model.references import MESH, resolve_gateway_ref
from pilotfish.translator import ir
from pilotfish.translator.cluster_names import ClusterName
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.registry import RegistryService, ServiceRegistry
from pilotfish.translator.sidecar.addresses import cidr_range
from pilotfish.translator.tcp_routes import TcpRoute, route_to

TLS_PROTOCOLS = frozenset({"TLS", "HTTPS"})

Match = vs_pb.L4MatchAttributes | vs_pb.TLSMatchAttributes


@dataclass(frozen=True)
class ChainTarget:
    """The service port a chain is built for, and how the listener sees it."""

    service: RegistryService
    port: int  # the listener's port
    protocol: str
    cidrs: tuple[str, ...] = ()  # destination subnets the chain must match
    no_address: bool = False  # the listener does not tell services apart by address


@dataclass(frozen=True)
class MeshContext:
    proxy_namespace: str
    proxy_labels: Mapping[str, str] = field(default_factory=dict)


def tcp_chains(
    target: ChainTarget,
    configs: list[IstioObject],
    ctx: MeshContext,
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> list[ir.TcpFilterChain]:
    """`configs`: the mesh VirtualServices with a host naming the service, oldest first."""
    if target.protocol in TLS_PROTOCOLS:
        return _tls_chains(target, configs, ctx, registry, diag)
    return _tcp_chains(target, configs, ctx, registry, diag)


def applies(match: Match, vs: IstioObject, port: int, ctx: MeshContext) -> bool:
    if match.gateways and MESH not in {
        resolve_gateway_ref(g, vs.meta.namespace) for g in match.gateways
    }:
        return False
    if any(ctx.proxy_labels.get(k) != v for k, v in match.source_labels.items()):
        return False
    if match.port and match.port != port:
        return False
    return not match.source_namespace or match.source_namespace == ctx.proxy_namespace


def _tcp_chains(
    target: ChainTarget,
    configs: list[IstioObject],
    ctx: MeshContext,
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> list[ir.TcpFilterChain]:
    out: list[ir.TcpFilterChain] = []
    for vs in configs:
        spec = cast(vs_pb.VirtualService, vs.spec)
        for r, rule in enumerate(spec.tcp):
            path = f"spec.tcp[{r}]"
            if not rule.route:
                continue
            subnets: list[str] = []
            for match in rule.match if rule.match else [None]:
                if match is not None and not applies(match, vs, target.port, ctx):
                    continue
                if match is None or not match.destination_subnets:
                    route = route_to(vs, rule.route, path, target.port, registry, diag)
                    out.append(_chain(route, target.cidrs))
                    return out  # a catch-all for this listener: nothing after it matters
                subnets.extend(match.destination_subnets)
            if subnets:
                route = route_to(vs, rule.route, path, target.port, registry, diag)
                out.append(_chain(route, tuple(subnets)))
                if sorted(subnets) == sorted(target.cidrs):
                    return out  # the service's own match: a default would repeat it
    out.append(_chain(_default_route(target), target.cidrs))
    return out


def _tls_chains(
    target: ChainTarget,
    configs: list[IstioObject],
    ctx: MeshContext,
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> list[ir.TcpFilterChain]:
    out: list[ir.TcpFilterChain] = []
    handled: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    for vs in configs:
        spec = cast(vs_pb.VirtualService, vs.spec)
        for r, rule in enumerate(spec.tls):
            if not rule.route:
                continue
            for match in rule.match:
                if not applies(match, vs, target.port, ctx):
                    continue
                cidrs = tuple(match.destination_subnets) or target.cidrs
                key = (tuple(match.sni_hosts), tuple(match.destination_subnets))
                if key in handled:
                    continue  # the same runtime match again: it could never be reached
                handled.add(key)
                route = route_to(vs, rule.route, f"spec.tls[{r}]", target.port, registry, diag)
                out.append(_chain(route, cidrs, match.sni_hosts))
    if out:
        return out
    sni = (target.service.hostname,) if target.cidrs or target.no_address else ()
    return [_chain(_default_route(target), target.cidrs, sni)]


def _default_route(target: ChainTarget) -> TcpRoute:
    """To the service's own cluster: the listener's port, or the service's only port."""
    ports = target.service.ports
    port = ports[0].port if len(ports) == 1 else target.port
    cluster = str(ClusterName.outbound(port, target.service.hostname))
    return TcpRoute(cluster, (ir.WeightedCluster(cluster, 0),))


def _chain(
    route: TcpRoute, cidrs: Iterable[str], sni_hosts: Iterable[str] = ()
) -> ir.TcpFilterChain:
    names = sorted({h.lower() for h in sni_hosts})
    ranges = sorted(
        {r for r in (cidr_range(c) for c in cidrs) if r is not None},
        key=lambda r: (r.address, r.prefix_len),
    )
    match = ir.ChainMatch(
        server_names=() if "*" in names else tuple(names), prefix_ranges=tuple(ranges)
    )
    return ir.TcpFilterChain(route.stat_prefix, route.clusters, match)
