"""VirtualService `tcp:` and `tls:` rules -> where a gateway server forwards connections.

Istio's semantics. A TCP server (or a TLS server that terminates) forwards to the first
`tcp:` rule, of the VirtualServices bound to it, whose match applies (no match: always);
a PASSTHROUGH server gets one SNI-matched chain per `tls[].match[]` that applies, with
`server_names` from its `sniHosts`. `port` and `gateways` in a match are decided here,
for the server. One destination is a cluster; several are weighted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.objects import IstioObject
from pilotfish.model.references import resolve_gateway_ref
from pilotfish.translator import ir
from pilotfish.translator.cluster_names import ClusterName
from pilotfish.translator.destinations import destination_port
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.hosts import fqdn, intersect
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.servers import BoundServer, bound_virtual_services


@dataclass(frozen=True)
class TcpRoute:
    stat_prefix: str
    clusters: tuple[ir.WeightedCluster, ...]


@dataclass(frozen=True)
class SniRoute:
    """One `tls[].match[]` on a passthrough server: the SNI names it takes, and where to."""

    server_names: tuple[str, ...]  # empty: any (a `*` sniHost)
    route: TcpRoute
    vs: IstioObject
    path: str  # spec.tls[r].match[m]


def _applies(port: int, gateways: Sequence[str], bound: BoundServer, vs: IstioObject) -> bool:
    if port and port != bound.port_number:
        return False
    if gateways:
        return bound.gateway_key in {resolve_gateway_ref(g, vs.meta.namespace) for g in gateways}
    return True


def tcp_route(
    bound: BoundServer,
    virtual_services: list[IstioObject],
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> TcpRoute | None:
    """The first `tcp:` rule that applies to the server, over its VirtualServices in order."""
    for vs, _ in bound_virtual_services(bound, virtual_services):
        spec = cast(vs_pb.VirtualService, vs.spec)
        for r, rule in enumerate(spec.tcp):
            if rule.match and not any(_applies(m.port, m.gateways, bound, vs) for m in rule.match):
                continue
            if not rule.route:
                diag.error(vs, f"spec.tcp[{r}].route", "the rule has no route destinations")
                continue
            return route_to(vs, rule.route, f"spec.tcp[{r}]", bound.port_number, registry, diag)
    return None


def sni_routes(
    bound: BoundServer,
    virtual_services: list[IstioObject],
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> list[SniRoute]:
    """One route per `tls[].match[]` that applies to the passthrough server."""
    found = []
    for vs, _ in bound_virtual_services(bound, virtual_services):
        spec = cast(vs_pb.VirtualService, vs.spec)
        for r, rule in enumerate(spec.tls):
            path = f"spec.tls[{r}]"
            if not rule.match:
                diag.error(vs, f"{path}.match", "a tls rule needs a match with sniHosts: skipped")
                continue
            if not rule.route:
                diag.error(vs, f"{path}.route", "the rule has no route destinations: skipped")
                continue
            route: TcpRoute | None = None
            for m, match in enumerate(rule.match):
                if not _applies(match.port, match.gateways, bound, vs):
                    continue
                if not match.sni_hosts:
                    diag.error(vs, f"{path}.match[{m}].sniHosts", "sniHosts is required: skipped")
                    continue
                names = _server_names(match.sni_hosts, bound, vs)
                if names is None:
                    continue  # none of these SNI names is one this server serves
                route = route or route_to(vs, rule.route, path, bound.port_number, registry, diag)
                found.append(SniRoute(names, route, vs, f"{path}.match[{m}]"))
    return found


def _server_names(
    sni_hosts: Sequence[str], bound: BoundServer, vs: IstioObject
) -> tuple[str, ...] | None:
    """The sniHosts that fall within the server's hosts; () for any, None for none."""
    names = set()
    for sni in sni_hosts:
        for ns, host in bound.hosts():
            if ns is not None and ns != vs.meta.namespace:
                continue
            hit = intersect(host, sni.lower())
            if hit is not None:
                names.add(hit)
    if not names:
        return None
    return () if "*" in names else tuple(sorted(names))


def route_to(
    vs: IstioObject,
    destinations: Sequence[vs_pb.RouteDestination],
    path: str,
    port_number: int,
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> TcpRoute:
    """Where a `tcp:` or `tls:` rule's destinations send connections arriving on
    `port_number` (a destination without a port and of a service of several ports: that
    one). Gateways and sidecars alike."""
    clusters = []
    for d, dest in enumerate(destinations):
        dpath = f"{path}.route[{d}].destination"
        host = fqdn(dest.destination.host, vs.meta.namespace)
        service = registry.lookup(host)
        if service is None:
            diag.warning(
                vs, f"{dpath}.host", f"no service {host} is known: connections routed there fail"
            )
        port = destination_port(dest.destination.port.number, service, port_number).number
        if service is not None and service.port(port) is None:
            diag.warning(
                vs,
                f"{dpath}.port",
                f"service {host} has no port {port}: connections routed there fail",
            )
        subset = dest.destination.subset
        target = service.alias_of if service is not None and service.alias_of else host
        clusters.append(
            ir.WeightedCluster(str(ClusterName.outbound(port, target, subset)), dest.weight)
        )
    if len(clusters) == 1:
        return TcpRoute(clusters[0].cluster, (clusters[0],))
    if sum(c.weight for c in clusters) == 0:
        diag.error(
            vs, f"{path}.route", "several destinations need weights: traffic is split evenly"
        )
        weighted = tuple(ir.WeightedCluster(c.cluster, 1) for c in clusters)
    else:
        weighted = tuple(c for c in clusters if c.weight > 0)  # Envoy refuses zero weights
    return TcpRoute(f"{vs.meta.name}.{vs.meta.namespace}", weighted)
