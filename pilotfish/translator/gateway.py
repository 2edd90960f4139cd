"""Gateways selecting a router proxy -> IR listeners and route configurations.

Follows Istio: Gateways from any namespace select the proxy by labels; servers are
grouped by (bind, listener port), the listener port being the targetPort of a Service
that selects the gateway's pods; VirtualServices bind by `gateways:` and by host
intersection; several VirtualServices on one host are concatenated in Istio's order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from pilotfish.api.networking.v1alpha3 import gateway_pb2 as gw_pb
from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.configset import ConfigSet
from pilotfish.model.objects import IstioObject
from pilotfish.model.references import gateway_refs
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.hosts import fqdn, intersect, strip_namespace
from pilotfish.translator.http_routes import RouteContext, build_http_routes
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import RegistryService, ServiceRegistry

HTTP_PROTOCOLS = {"HTTP", "HTTP2", "GRPC", "GRPC-WEB"}
DEFAULT_BIND = "0.0.0.0"


@dataclass(frozen=True)
class BoundServer:
    """One Gateway server, with the gateway it belongs to and where it listens."""

    gateway: IstioObject
    index: int
    server: gw_pb.Server
    listener_port: int

    @property
    def gateway_key(self) -> str:
        return f"{self.gateway.meta.namespace}/{self.gateway.meta.name}"

    @property
    def path(self) -> str:
        return f"spec.servers[{self.index}]"

    @property
    def protocol(self) -> str:
        return self.server.port.protocol.upper()

    @property
    def bind(self) -> str:
        return self.server.bind or DEFAULT_BIND


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """An empty selector selects every gateway proxy, as in Istio."""
    return all(labels.get(k) == v for k, v in selector.items())


def build_gateway_listeners(
    config: ConfigSet, proxy: Proxy, registry: ServiceRegistry, diag: Diagnostics
) -> tuple[list[ir.Listener], list[ir.RouteConfig]]:
    by_listener: dict[tuple[str, int], list[BoundServer]] = defaultdict(list)
    for server in _servers_for(config, proxy, registry, diag):
        by_listener[(server.bind, server.listener_port)].append(server)

    virtual_services = config.istio("VirtualService")
    listeners, route_configs = [], []
    for (bind, port), servers in sorted(
        by_listener.items(), key=lambda item: (item[0][1], item[0][0])
    ):
        http_servers = [s for s in servers if s.protocol in HTTP_PROTOCOLS]
        for s in servers:
            if s.protocol not in HTTP_PROTOCOLS:
                diag.warning(
                    s.gateway,
                    f"{s.path}.port.protocol",
                    f"protocol {s.server.port.protocol} is not supported yet: server skipped",
                )
        if not http_servers:
            continue
        route_name = f"http.{port}"
        listeners.append(
            ir.Listener(
                name=f"{bind}_{port}",
                address=bind,
                port=port,
                chains=(ir.HttpFilterChain(route_name, stat_prefix=f"outbound_{bind}_{port}"),),
            )
        )
        route_configs.append(
            ir.RouteConfig(
                route_name, _virtual_hosts(http_servers, port, virtual_services, registry, diag)
            )
        )
    return listeners, route_configs


def _servers_for(
    config: ConfigSet, proxy: Proxy, registry: ServiceRegistry, diag: Diagnostics
) -> list[BoundServer]:
    # The Services that front this gateway's pods: they map a server port to a pod port.
    fronting = registry.selecting(proxy.namespace, proxy.labels)
    found = []
    for gateway in config.istio("Gateway"):
        spec = cast(gw_pb.Gateway, gateway.spec)
        if not selects(spec.selector, proxy.labels):
            continue
        for i, server in enumerate(spec.servers):
            if not server.port.number:
                diag.error(
                    gateway, f"spec.servers[{i}].port.number", "a server needs a port number"
                )
                continue
            if not server.hosts:
                diag.error(gateway, f"spec.servers[{i}].hosts", "a server needs at least one host")
                continue
            port = server.port.number
            found.append(BoundServer(gateway, i, server, _listener_port(port, fronting, registry)))
    return found


def _listener_port(
    server_port: int, fronting: list[RegistryService], registry: ServiceRegistry
) -> int:
    for service in fronting:
        port = service.port(server_port)
        if port is None:
            continue
        if isinstance(port.target_port, int) and port.target_port:
            return port.target_port
        if isinstance(port.target_port, str):
            resolved = registry.named_target_port(service, port)
            if resolved:
                return resolved
    return server_port


@dataclass
class _VirtualHostBuilder:
    name: str
    domain: str
    require_tls: bool
    routes: list[ir.Route] = field(default_factory=list)
    closed_by: str = ""  # the VirtualService whose catch-all ended the route list


def _virtual_hosts(
    servers: list[BoundServer],
    listener_port: int,
    virtual_services: list[IstioObject],
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> tuple[ir.VirtualHost, ...]:
    vhosts: dict[str, _VirtualHostBuilder] = {}
    for bound in servers:
        server_hosts = _server_hosts(bound)
        for vs in virtual_services:
            spec = cast(vs_pb.VirtualService, vs.spec)
            if bound.gateway_key not in gateway_refs(list(spec.gateways), vs.meta.namespace):
                continue
            hostnames = _bound_hosts(server_hosts, vs, spec)
            if not hostnames:
                continue
            ctx = RouteContext(gateway=bound.gateway_key, port=bound.server.port.number)
            routes = build_http_routes(vs, ctx, registry, diag)
            redirect = bound.server.tls.https_redirect
            for hostname in hostnames:
                name = f"{hostname}:{bound.server.port.number}"
                vhost = vhosts.setdefault(name, _VirtualHostBuilder(name, hostname, redirect))
                _append_routes(vhost, routes, vs, diag)
    if not vhosts:
        # Nothing bound: Envoy answers 404 to everything on this port.
        return (ir.VirtualHost(f"blackhole:{listener_port}", ("*",), ()),)
    return tuple(
        ir.VirtualHost(v.name, (v.domain,), tuple(v.routes), require_tls=v.require_tls)
        for v in sorted(vhosts.values(), key=lambda v: v.name)
    )


def _server_hosts(bound: BoundServer) -> list[tuple[str | None, str]]:
    """(namespace restriction, host) for each server host; `./h` is the Gateway's namespace."""
    hosts = []
    for raw in bound.server.hosts:
        ns, host = strip_namespace(raw)
        hosts.append((bound.gateway.meta.namespace if ns == "." else ns, host))
    return hosts


def _bound_hosts(
    server_hosts: list[tuple[str | None, str]], vs: IstioObject, spec: vs_pb.VirtualService
) -> list[str]:
    found = set()
    for vs_host in spec.hosts:
        vs_fqdn = fqdn(vs_host, vs.meta.namespace)
        for ns, server_host in server_hosts:
            if ns is not None and ns != vs.meta.namespace:
                continue
            hit = intersect(server_host, vs_fqdn)
            if hit is not None:
                found.add(hit)
    return sorted(found)


def _append_routes(
    vhost: _VirtualHostBuilder, routes: list[ir.Route], vs: IstioObject, diag: Diagnostics
) -> None:
    if not routes:
        return
    if vhost.closed_by:
        diag.warning(
            vs,
            "spec.http",
            f"host {vhost.domain}: these rules follow a catch-all of VirtualService "
            f"{vhost.closed_by} and can never match",
        )
        return
    vhost.routes.extend(routes)
    if any(r.match.is_catch_all for r in routes):
        vhost.closed_by = f"{vs.meta.namespace}/{vs.meta.name}"
