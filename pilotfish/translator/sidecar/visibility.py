"""What a sidecar's outbound half sees: per egress listener, its services and mesh
VirtualServices; and which services get clusters.

Istio's rules (pilot/pkg/model/sidecar.go, push_context.go):
- services: the registry as exported to the proxy's namespace (registry.py applies
  exportTo), then what each egress listener imports (sidecar_scope.py). An egress
  listener with a port sees only services that have that port, trimmed to it;
- VirtualServices: those bound to the mesh (no `gateways`, or `mesh` among them) with
  hosts, exported to the proxy's namespace (`exportTo`), that an egress listener imports;
- clusters: every imported service, plus every service an imported VirtualService
  routes to (only the ports it routes to, or those of a port listener), so a route to a
  service the Sidecar does not import still has its cluster, as in Istio.
Services are in Istio's order (creation time, name, namespace); VirtualServices oldest
first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import cast

from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.configset import ConfigSet
from pilotfish.model.objects import IstioObject
from pilotfish.model.references import MESH, gateway_refs
from pilotfish.translator.hosts import fqdn, intersect, is_wildcard, matches
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import RegistryService, ServiceRegistry
from pilotfish.translator.sidecar_scope import EgressScope, SidecarScope
from pilotfish.translator.visibility import visible_in

ALL_PORTS = 0  # a VirtualService destination without a port depends on every port


@dataclass(frozen=True)
class HostIndex:
    """VirtualServices by host, to find those naming a service without scanning them all
    for every service port (a sidecar of a large mesh has thousands of each)."""

    virtual_services: tuple[IstioObject, ...]
    exact: Mapping[str, tuple[int, ...]]  # host -> positions in virtual_services
    wildcards: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, virtual_services: tuple[IstioObject, ...]) -> HostIndex:
        exact: dict[str, list[int]] = {}
        wildcards: list[tuple[str, int]] = []
        for i, vs in enumerate(virtual_services):
            for host in {fqdn(h, vs.meta.namespace) for h in _spec(vs).hosts}:
                if is_wildcard(host):
                    wildcards.append((host, i))
                else:
                    exact.setdefault(host, []).append(i)
        return cls(virtual_services, {h: tuple(v) for h, v in exact.items()}, tuple(wildcards))

    def naming(self, hostname: str) -> list[IstioObject]:
        """The VirtualServices with a host that overlaps `hostname`, oldest first."""
        found = set(self.exact.get(hostname, ()))
        found.update(i for h, i in self.wildcards if intersect(h, hostname))
        if is_wildcard(hostname):  # a wildcard ServiceEntry host covers exact ones too
            found.update(i for h, ids in self.exact.items() if matches(hostname, h) for i in ids)
        return [self.virtual_services[i] for i in sorted(found)]


@dataclass(frozen=True)
class EgressView:
    """One egress listener of the proxy's Sidecar (or the implied `*/*` one)."""

    egress: EgressScope
    services: tuple[RegistryService, ...]
    virtual_services: tuple[IstioObject, ...]
    index: HostIndex


@dataclass(frozen=True)
class OutboundView:
    scope: SidecarScope
    egress: tuple[EgressView, ...]
    cluster_services: tuple[RegistryService, ...]

    def for_port(self, port: int) -> EgressView | None:
        """The egress listener whose services and VirtualServices make route config
        `<port>`: the one declaring that port, else the catch-all (Istio's
        GetEgressListenerForRDS)."""
        for view in self.egress:
            if view.egress.port is None or view.egress.port == port:
                return view
        return None


def service_order(service: RegistryService) -> tuple[str, str, str]:
    """Istio's order of services: creation time (a ServiceEntry's), name, namespace."""
    created = (service.entry or service.service).meta.creation_timestamp
    return (created, service.service.meta.name, service.namespace)


def is_mesh_virtual_service(vs: IstioObject) -> bool:
    spec = cast(vs_pb.VirtualService, vs.spec)
    return bool(spec.hosts) and MESH in gateway_refs(list(spec.gateways), vs.meta.namespace)


def outbound_view(
    config: ConfigSet, proxy: Proxy, registry: ServiceRegistry, scope: SidecarScope
) -> OutboundView:
    services = sorted(registry.services(), key=service_order)
    virtual_services = [
        vs
        for vs in config.istio("VirtualService")  # oldest first
        if is_mesh_virtual_service(vs) and visible_in(vs, proxy.namespace)
    ]
    views = tuple(_egress_view(e, services, virtual_services) for e in scope.egress)
    return OutboundView(scope, views, _cluster_services(views, registry, proxy.namespace))


def _egress_view(
    egress: EgressScope, services: list[RegistryService], virtual_services: list[IstioObject]
) -> EgressView:
    imported = []
    for service in services:
        if not egress.imports_service(service.namespace, service.hostname):
            continue
        if egress.port is not None:
            trimmed = _with_ports(service, {egress.port})
            if trimmed is None:
                continue
            service = trimmed
        imported.append(service)
    chosen = tuple(
        vs
        for vs in virtual_services
        if egress.imports_virtual_service(
            vs.meta.namespace, [fqdn(h, vs.meta.namespace) for h in _spec(vs).hosts]
        )
    )
    return EgressView(egress, tuple(imported), chosen, HostIndex.of(chosen))


def _cluster_services(
    views: Iterable[EgressView], registry: ServiceRegistry, proxy_namespace: str
) -> tuple[RegistryService, ...]:
    found: dict[str, RegistryService] = {}
    for view in views:
        for service in view.services:
            _merge(found, service, registry)
    for view in views:
        for vs in view.virtual_services:
            for host, ports in _destinations(vs, proxy_namespace).items():
                routed = registry.lookup(host)
                if routed is None:
                    continue
                wanted = {view.egress.port} if view.egress.port is not None else ports
                trimmed = routed if ALL_PORTS in wanted else _with_ports(routed, wanted)
                if trimmed is not None:
                    _merge(found, trimmed, registry)
    return tuple(sorted(found.values(), key=service_order))


def _merge(
    found: dict[str, RegistryService], service: RegistryService, registry: ServiceRegistry
) -> None:
    """One entry per host, with the union of the ports wanted (Istio's merge)."""
    known = found.get(service.hostname)
    if known is None:
        found[service.hostname] = service
        return
    full = registry.lookup(service.hostname) or service
    merged = _with_ports(full, {p.port for p in (*known.ports, *service.ports)})
    found[service.hostname] = merged or known


def _with_ports(service: RegistryService, numbers: set[int]) -> RegistryService | None:
    ports = tuple(p for p in service.ports if p.port in numbers)
    if not ports:
        return None
    if len(ports) == len(service.ports):
        return service
    return replace(service, service=replace(service.service, ports=ports))


def _destinations(vs: IstioObject, proxy_namespace: str) -> dict[str, set[int]]:
    """Hosts the VirtualService routes (or mirrors) to, with the ports named (ALL_PORTS
    when a destination names none), leaving out rules whose every match is for another
    source namespace (Istio's virtualServiceDestinationsFilteredBySourceNamespace)."""
    spec = _spec(vs)
    out: dict[str, set[int]] = {}
    for destination in _route_destinations(spec, proxy_namespace):
        host = fqdn(destination.host, vs.meta.namespace)
        out.setdefault(host, set()).add(destination.port.number or ALL_PORTS)
    return out


def _route_destinations(
    spec: vs_pb.VirtualService, proxy_namespace: str
) -> Iterator[vs_pb.Destination]:
    for http in spec.http:
        if not _for_namespace((m.source_namespace for m in http.match), proxy_namespace):
            continue
        yield from (d.destination for d in http.route)
        if http.HasField("mirror"):
            yield http.mirror
        yield from (m.destination for m in http.mirrors)
    for tcp in spec.tcp:
        if _for_namespace((m.source_namespace for m in tcp.match), proxy_namespace):
            yield from (d.destination for d in tcp.route)
    for tls in spec.tls:
        if _for_namespace((m.source_namespace for m in tls.match), proxy_namespace):
            yield from (d.destination for d in tls.route)


def _for_namespace(source_namespaces: Iterable[str], proxy_namespace: str) -> bool:
    """A rule applies to the proxy's namespace unless every match names another one."""
    names = list(source_namespaces)
    return not names or any(n in ("", proxy_namespace) for n in names)


def _spec(vs: IstioObject) -> vs_pb.VirtualService:
    return cast(vs_pb.VirtualService, vs.spec)
