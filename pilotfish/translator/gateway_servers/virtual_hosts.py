"""The virtual hosts of a Gateway route configuration (plaintext HTTP or HTTPS servers).

As Istio: one virtual host per host, named after the first server that has it
(`<host>:<server port>`), domains `[<host>]`; servers on other ports that share the
listener add their routes to it. VirtualServices on one host are concatenated in order
and a catch-all ends the list. Nothing bound: one `blackhole:<server port>` virtual host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pilotfish.model.objects import IstioObject
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.gateway_servers.base import ChainContext
from pilotfish.translator.http_routes import build_http_routes
from pilotfish.translator.servers import BoundServer, bound_virtual_services


@dataclass
class _VirtualHostBuilder:
    name: str
    domain: str
    require_tls: bool
    routes: list[ir.Route] = field(default_factory=list)
    closed_by: str = ""  # the VirtualService whose catch-all ended the route list
    # (gateway, VirtualService) pairs whose routes are in: a VirtualService bound to two
    # servers of one Gateway that share the listener adds its routes once (as Istio,
    # which builds them once per Gateway; a second copy could never match).
    added: set[tuple[str, str]] = field(default_factory=set)


def virtual_hosts(servers: Sequence[BoundServer], ctx: ChainContext) -> tuple[ir.VirtualHost, ...]:
    vhosts: dict[str, _VirtualHostBuilder] = {}
    for bound in servers:
        redirect = bound.server.tls.https_redirect
        for vs, hostnames in bound_virtual_services(bound, ctx.virtual_services):
            route_ctx = replace(ctx.routes, gateway=bound.gateway_key, port=bound.port_number)
            routes = build_http_routes(vs, route_ctx, ctx.registry, ctx.diag)
            source = (bound.gateway_key, f"{vs.meta.namespace}/{vs.meta.name}")
            for hostname in hostnames:
                vhost = vhosts.setdefault(
                    hostname,
                    _VirtualHostBuilder(f"{hostname}:{bound.port_number}", hostname, redirect),
                )
                vhost.require_tls |= redirect
                if source not in vhost.added:
                    vhost.added.add(source)
                    _append_routes(vhost, routes, vs, ctx.diag)
        if redirect:
            # As Istio: every host of a redirecting server redirects, routed or not.
            for _, hostname in bound.hosts():
                vhosts.setdefault(
                    hostname,
                    _VirtualHostBuilder(f"{hostname}:{bound.port_number}", hostname, True),
                ).require_tls = True
    if not vhosts:
        # Nothing bound: Envoy answers 404 to everything. Named, as Istio, after the
        # first server's port (not the listener's).
        return (ir.VirtualHost(f"blackhole:{servers[0].port_number}", ("*",), ()),)
    return tuple(
        ir.VirtualHost(v.name, (v.domain,), tuple(v.routes), require_tls=v.require_tls)
        for v in sorted(vhosts.values(), key=lambda v: v.name)
    )


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


def http_filters(vhosts: tuple[ir.VirtualHost, ...]) -> tuple[str, ...]:
    """The HTTP filters some route of these virtual hosts configures."""
    routes = [r for v in vhosts for r in v.routes]
    return tuple(
        name
        for name, used in (
            ("fault", any(r.fault for r in routes)),
            ("cors", any(r.cors for r in routes)),
        )
        if used
    )
