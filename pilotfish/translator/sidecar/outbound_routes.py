"""A sidecar's outbound route configurations, as Istio's BuildSidecarOutboundVirtualHosts
and BuildSidecarVirtualHostWrapper make them.

Route configuration `<port>` holds, from the egress listener of that port (else the
catch-all one):
- per mesh VirtualService with routes for this proxy and port (oldest first): a virtual
  host `<fqdn>:<port>` per service it names that has an HTTP (or sniffed) port `<port>`
  (a wildcard host takes the services it is the most specific VirtualService host
  for), and `<host>:<port>` for its hosts that are no service, e.g. `bookinfo.com`: on
  port 80 always, on other ports when it also names a service there;
- per other service with an HTTP (or sniffed) port `<port>`: `<fqdn>:<port>` with one
  route `default` to `outbound|<port>||<fqdn>` (the default retry policy, no timeout);
- last, `allow_any` (to PassthroughCluster) or `block_all` (502), domains `*`.
A service's domains are Istio's (sidecar_domains.py), with those of the ExternalName
Services aliasing it; a domain goes to the first virtual host that claims it, and a
second VirtualService for the same host and port is reported and left out, as in Istio.
Route configuration `<fqdn>:<port>` (a sniffed service's own listener) holds only that
service's virtual host, answering every Host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import cast

from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.objects import IstioObject
from pilotfish.translator import ir
from pilotfish.translator.cluster_names import PASSTHROUGH_CLUSTER, ClusterName
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.hosts import fqdn, intersect, is_wildcard, matches
from pilotfish.translator.http_routes import RouteContext, build_http_routes, default_retry
from pilotfish.translator.registry import RegistryService, ServiceRegistry, port_protocol
from pilotfish.translator.sidecar.addresses import (
    addresses,
    is_cidr,
    is_passthrough,
)
from pilotfish.translator.sidecar.outbound_listeners import RouteName, listener_kind
from pilotfish.translator.sidecar.visibility import EgressView, OutboundView
from pilotfish.translator.sidecar_domains import DomainClaims, ServiceDomains, service_domains
from pilotfish.translator.sidecar_scope import OutboundPolicy

CATCH_ALL = ir.RouteMatch(ir.StringMatch("prefix", "/"))
ALLOW_ANY = "allow_any"
BLOCK_ALL = "block_all"
NON_SERVICE_HOSTS_PORT = 80  # Istio: VirtualService hosts that are no service, always here


def catch_all_virtual_host(policy: OutboundPolicy) -> ir.VirtualHost:
    if policy == "ALLOW_ANY":
        to_passthrough = (ir.WeightedCluster(PASSTHROUGH_CLUSTER, 0),)
        route = ir.Route(ALLOW_ANY, CATCH_ALL, to_passthrough)
        return ir.VirtualHost(ALLOW_ANY, ("*",), (route,))
    refused = ir.Route(BLOCK_ALL, CATCH_ALL, (), direct_response=ir.DirectResponse(502))
    return ir.VirtualHost(BLOCK_ALL, ("*",), (refused,))


@dataclass
class _Wrapper:
    """Routes and the hosts they serve (Istio's VirtualHostWrapper)."""

    routes: list[ir.Route]
    services: list[RegistryService]
    hosts: list[str] = field(default_factory=list)  # VirtualService hosts that are no service
    vs: IstioObject | None = None


def build_route_configs(
    names: Sequence[RouteName],
    view: OutboundView,
    template: RouteContext,
    registry: ServiceRegistry,
    policy: OutboundPolicy,
    diag: Diagnostics,
) -> tuple[ir.RouteConfig, ...]:
    by_port: dict[int, tuple[ir.VirtualHost, ...]] = {}
    out = []
    for name in names:
        if name.port not in by_port:
            egress = view.for_port(name.port)
            ctx = replace(template, port=name.port)
            by_port[name.port] = (
                _virtual_hosts(egress, ctx, registry, diag) if egress is not None else ()
            )
        vhosts = by_port[name.port]
        if name.host:
            out.append(ir.RouteConfig(name.name, _sniffed(vhosts, name.host)))
        else:
            out.append(ir.RouteConfig(name.name, (*vhosts, catch_all_virtual_host(policy))))
    return tuple(out)


def _sniffed(vhosts: tuple[ir.VirtualHost, ...], host: str) -> tuple[ir.VirtualHost, ...]:
    """The service's own virtual host, taking every Host: its listener is its own."""
    found = [v for v in vhosts if host in v.domains]
    if len(found) == 1:
        return (replace(found[0], domains=("*",)),)
    return tuple(found)


def _virtual_hosts(
    egress: EgressView, ctx: RouteContext, registry: ServiceRegistry, diag: Diagnostics
) -> tuple[ir.VirtualHost, ...]:
    port = ctx.port
    on_port = {
        s.hostname: s for s in egress.services if not s.alias_of and s.port(port) is not None
    }
    wrappers = _virtual_service_wrappers(egress, on_port, ctx, registry, diag)
    with_routes = {s.hostname for w in wrappers for s in w.services}
    for hostname, service in on_port.items():
        if hostname not in with_routes and _is_http(service, port):
            wrappers.append(_Wrapper([_default_route(service, port, registry)], [service]))
    aliases = [s for s in egress.services if s.alias_of]
    # A short form never takes a name that is the FQDN of a service served here.
    claims = DomainClaims(s.hostname for w in wrappers for s in w.services)
    claims.claim(["*"])  # the catch-all's
    names: dict[str, IstioObject | None] = {}
    vhosts = []
    for wrapper in wrappers:
        candidates: list[tuple[str, RegistryService | None]] = [(h, None) for h in wrapper.hosts]
        candidates += [(s.hostname, s) for s in wrapper.services]
        for hostname, named in candidates:
            name = f"{hostname}:{port}"
            if name in names:
                _report_duplicate(wrapper, hostname, names[name], diag)
                continue
            names[name] = wrapper.vs
            wanted = _domains(named, hostname, ctx.proxy_namespace, aliases)
            domains = claims.claim(wanted)
            if domains:
                vhosts.append(ir.VirtualHost(name, domains, tuple(wrapper.routes)))
            elif wrapper.vs is not None:
                diag.warning(
                    wrapper.vs,
                    "spec.hosts",
                    f"host {hostname} on port {port}: every name it answers to is already "
                    "another virtual host's: left out",
                )
    return tuple(sorted(vhosts, key=lambda v: v.name))


def _virtual_service_wrappers(
    egress: EgressView,
    on_port: dict[str, RegistryService],
    ctx: RouteContext,
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> list[_Wrapper]:
    port = ctx.port
    most_specific = _most_specific_virtual_service(egress)
    out = []
    for vs in egress.virtual_services:
        hosts = [fqdn(h, vs.meta.namespace) for h in _spec(vs).hosts]
        if port != NON_SERVICE_HOSTS_PORT and not _names_a_service(hosts, on_port):
            continue  # Istio: other hosts only ride along with a service on the port
        routes = build_http_routes(vs, ctx, registry, diag)
        if not routes:
            continue  # nothing for this proxy and port: its services keep their defaults
        others, services = _separate(vs, hosts, on_port, most_specific)
        services = [s for s in services if _is_http(s, port)]
        if not services and port != NON_SERVICE_HOSTS_PORT:
            continue
        out.append(_Wrapper(routes, services, others, vs))
    return out


def _names_a_service(hosts: list[str], on_port: dict[str, RegistryService]) -> bool:
    """Istio's selectVirtualServices: a host that is a service on the port, or covers
    one, or is covered by a wildcard service host."""
    return any(h in on_port or any(intersect(h, s) for s in on_port) for h in hosts)


def _separate(
    vs: IstioObject,
    hosts: list[str],
    on_port: dict[str, RegistryService],
    most_specific: dict[str, IstioObject],
) -> tuple[list[str], list[RegistryService]]:
    """The VirtualService's hosts that are no service, and the services it serves."""
    others: list[str] = []
    services: list[RegistryService] = []
    for host in hosts:
        if not is_wildcard(host):
            if host in on_port:
                services.append(on_port[host])
            else:
                others.append(host)
            continue
        covered = [s for h, s in on_port.items() if matches(host, h)]
        services.extend(s for s in covered if most_specific.get(s.hostname) is vs)
        if not covered:
            others.append(host)
    return others, services


def _most_specific_virtual_service(egress: EgressView) -> dict[str, IstioObject]:
    """Per service host, the VirtualService whose host names it most specifically: an
    exact host, else the longest wildcard; the oldest VirtualService among equals."""
    exact: dict[str, IstioObject] = {}
    wildcards: dict[str, IstioObject] = {}
    for vs in egress.virtual_services:
        for host in (fqdn(h, vs.meta.namespace) for h in _spec(vs).hosts):
            (wildcards if is_wildcard(host) else exact).setdefault(host, vs)
    out: dict[str, IstioObject] = {}
    for service in egress.services:
        if service.hostname in exact:
            out[service.hostname] = exact[service.hostname]
            continue
        covering = [h for h in wildcards if matches(h, service.hostname)]
        if covering:
            out[service.hostname] = wildcards[max(covering, key=len)]
    return out


def _is_http(service: RegistryService, port: int) -> bool:
    found = service.port(port)
    return found is not None and listener_kind(port_protocol(found)) in ("http", "auto")


def _default_route(service: RegistryService, port: int, registry: ServiceRegistry) -> ir.Route:
    cluster = (ir.WeightedCluster(str(ClusterName.outbound(port, service.hostname)), 0),)
    return ir.Route(
        "default",
        CATCH_ALL,
        cluster,
        retry=default_retry(registry.mesh.default_http_retry),
        hash_policy=registry.hash_policy(cluster),  # the DR's consistentHash, as Istio
    )


def _domains(
    service: RegistryService | None,
    hostname: str,
    proxy_namespace: str,
    aliases: list[RegistryService],
) -> ServiceDomains:
    if service is None:
        return ServiceDomains((hostname,))
    return service_domains(
        service.hostname,
        proxy_namespace,
        [a for a in addresses(service) if not is_cidr(a)],
        kubernetes=service.entry is None,
        headless=service.entry is None and is_passthrough(service),
        aliases=[a.hostname for a in aliases if a.alias_of == service.hostname],
    )


def _report_duplicate(
    wrapper: _Wrapper, hostname: str, first: IstioObject | None, diag: Diagnostics
) -> None:
    if wrapper.vs is None:
        return  # a service's default host after a VirtualService's: nothing was meant
    by = f"VirtualService {first.meta.namespace}/{first.meta.name}" if first else "its service"
    diag.warning(
        wrapper.vs,
        "spec.hosts",
        f"host {hostname} already has a virtual host from {by} (the oldest wins, as in "
        "Istio; sidecars do not merge VirtualServices): these rules are not used",
    )


def _spec(vs: IstioObject) -> vs_pb.VirtualService:
    return cast(vs_pb.VirtualService, vs.spec)
