"""Gateways selecting a router proxy -> IR listeners, route configurations and secrets.

Follows Istio. Servers are found and merged per (bind, listener port) in servers.py; then
each listener gets its filter chains:
- plaintext HTTP servers share one chain and one route configuration `http.<port>`;
- each terminated HTTPS server has its own chain (SNI from its hosts, TLS over SDS) and
  its own route configuration `https.<port>.<port name>.<gateway>.<namespace>`;
- TLS servers that terminate, and TCP servers, forward to their `tcp:` route;
- PASSTHROUGH servers get a chain per VirtualService `tls:` match, AUTO_PASSTHROUGH ones
  a chain per service port.
A chain whose SNI names another chain of the listener already has is reported and left
out (Envoy would refuse the whole listener), and only the secrets of the chains kept are
served.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pilotfish.model.configset import ConfigSet
from pilotfish.model.objects import ConfigObject, IstioObject
from pilotfish.translator import http_options, ir
from pilotfish.translator.auto_passthrough import auto_passthrough_targets
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.http_routes import RouteContext, build_http_routes
from pilotfish.translator.listener_filters import inspectors
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.secrets import Credentials
from pilotfish.translator.servers import (
    BoundServer,
    bound_virtual_services,
    https_route_name,
    merge_servers,
    servers_for,
)
from pilotfish.translator.tcp_routes import sni_routes, tcp_route
from pilotfish.translator.tls import HTTP_ALPN, server_tls


@dataclass(frozen=True)
class GatewayConfig:
    listeners: tuple[ir.Listener, ...] = ()
    route_configs: tuple[ir.RouteConfig, ...] = ()
    secrets: tuple[ir.SdsSecret, ...] = ()
    # AUTO_PASSTHROUGH's SNI-DNAT clusters, on top of the registry's.
    clusters: tuple[ir.Cluster, ...] = ()
    load_assignments: tuple[ir.LoadAssignment, ...] = ()


@dataclass(frozen=True)
class _Chain:
    """A filter chain to add to a listener, with what comes with it if it is kept."""

    chain: ir.FilterChain
    owner: ConfigObject  # told when the chain cannot be added
    path: str
    what: str  # for the message to whoever later collides with it
    secrets: tuple[ir.SdsSecret, ...] = ()
    route_config: ir.RouteConfig | None = None
    cluster: ir.Cluster | None = None
    load_assignment: ir.LoadAssignment | None = None


@dataclass
class _Collected:
    listeners: list[ir.Listener] = field(default_factory=list)
    route_configs: list[ir.RouteConfig] = field(default_factory=list)
    secrets: dict[str, ir.SdsSecret] = field(default_factory=dict)
    clusters: dict[str, ir.Cluster] = field(default_factory=dict)
    load_assignments: dict[str, ir.LoadAssignment] = field(default_factory=dict)


def build_gateway(
    config: ConfigSet, proxy: Proxy, registry: ServiceRegistry, diag: Diagnostics
) -> GatewayConfig:
    merged = merge_servers(servers_for(config, proxy, registry, diag), diag)
    credentials = Credentials(config, proxy.namespace, diag)
    virtual_services = config.istio("VirtualService")
    by_name = {(v.meta.namespace, v.meta.name): v for v in virtual_services}
    template = RouteContext(
        gateway="",
        port=0,
        proxy_namespace=proxy.namespace,
        proxy_labels=proxy.labels,
        delegates=lambda namespace, name: by_name.get((namespace, name)),
    )
    out = _Collected()
    for (bind, port), servers in sorted(merged.items(), key=lambda item: (item[0][1], item[0][0])):
        name = f"{bind}_{port}"
        if servers[0].kind == "http":
            route_name = f"http.{port}"
            vhosts = _virtual_hosts(servers, virtual_services, registry, diag, template)
            chain = ir.HttpFilterChain(
                route_name,
                stat_prefix=f"outbound_{name}",
                http_filters=_filters_for(vhosts),
                options=http_options.GATEWAY,
            )
            out.listeners.append(ir.Listener(name, bind, port, (chain,)))
            out.route_configs.append(ir.RouteConfig(route_name, vhosts))
            continue
        candidates = [
            c
            for bound in servers
            for c in _chains(bound, credentials, virtual_services, registry, diag, template)
        ]
        chains = _add_chains(candidates, name, out, diag)
        if chains:
            out.listeners.append(
                ir.Listener(name, bind, port, tuple(chains), listener_filters=inspectors(chains))
            )
    return GatewayConfig(
        listeners=tuple(out.listeners),
        route_configs=tuple(out.route_configs),
        secrets=tuple(out.secrets[k] for k in sorted(out.secrets)),
        clusters=tuple(out.clusters.values()),
        load_assignments=tuple(out.load_assignments.values()),
    )


def _add_chains(
    candidates: list[_Chain], listener: str, out: _Collected, diag: Diagnostics
) -> list[ir.FilterChain]:
    """Keep the chains whose SNI names are still free on the listener, in order."""
    claimed: dict[str, str] = {}  # server name ("" = any) -> what claimed it
    kept = []
    for c in candidates:
        names = c.chain.match.server_names or ("",)
        taken = [n for n in names if n in claimed]
        if taken:
            described = ", ".join(f"{n or 'any SNI'} (by {claimed[n]})" for n in taken)
            diag.error(
                c.owner,
                c.path,
                f"listener {listener} already routes SNI {described}: Envoy cannot tell "
                "the two apart: skipped",
            )
            continue
        claimed.update(dict.fromkeys(names, c.what))
        kept.append(c.chain)
        out.secrets.update((s.name, s) for s in c.secrets)
        if c.route_config is not None:
            out.route_configs.append(c.route_config)
        if c.cluster is not None and c.load_assignment is not None:
            out.clusters[c.cluster.name] = c.cluster
            out.load_assignments[c.cluster.name] = c.load_assignment
    return kept


def _filters_for(vhosts: tuple[ir.VirtualHost, ...]) -> tuple[str, ...]:
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


def _chains(
    bound: BoundServer,
    credentials: Credentials,
    virtual_services: list[IstioObject],
    registry: ServiceRegistry,
    diag: Diagnostics,
    template: RouteContext,
) -> list[_Chain]:
    """The filter chains one TLS-based or TCP server asks for."""
    what = bound.describe()
    if bound.kind == "https":
        termination = server_tls(bound, credentials, diag, alpn=HTTP_ALPN)
        if termination is None:
            return []
        route_name = https_route_name(bound)
        vhosts = _virtual_hosts([bound], virtual_services, registry, diag, template)
        chain = ir.HttpFilterChain(
            route_name,
            # Istio's stat prefix: the server's name when it has one.
            stat_prefix=bound.server.name or f"outbound_{bound.bind}_{bound.listener_port}",
            match=ir.ChainMatch(bound.sni_names()),
            tls=termination.tls,
            http_filters=_filters_for(vhosts),
            options=http_options.GATEWAY_TLS,
        )
        return [
            _Chain(
                chain,
                bound.gateway,
                f"{bound.path}.hosts",
                what,
                termination.secrets,
                ir.RouteConfig(route_name, vhosts),
            )
        ]
    if bound.kind in ("tls", "tcp"):
        route = tcp_route(bound, virtual_services, registry, diag)
        if route is None:
            _nothing_routed(bound, "tcp", diag)
            return []
        secrets: tuple[ir.SdsSecret, ...] = ()
        tls = None
        if bound.kind == "tls":
            # No ALPN: what runs inside is not known to be HTTP (Istio offers h2 anyway).
            termination = server_tls(bound, credentials, diag, alpn=())
            if termination is None:
                return []
            tls, secrets = termination.tls, termination.secrets
        match = ir.ChainMatch(bound.sni_names() if tls else ())
        tcp_chain = ir.TcpFilterChain(route.stat_prefix, route.clusters, match, tls)
        return [_Chain(tcp_chain, bound.gateway, f"{bound.path}.hosts", what, secrets)]
    if bound.kind == "passthrough":
        routes = sni_routes(bound, virtual_services, registry, diag)
        if not routes:
            _nothing_routed(bound, "tls", diag)
        return [
            _Chain(
                ir.TcpFilterChain(
                    r.route.stat_prefix, r.route.clusters, ir.ChainMatch(r.server_names)
                ),
                r.vs,
                r.path,
                f"VirtualService {r.vs.meta.namespace}/{r.vs.meta.name} {r.path}",
            )
            for r in routes
        ]
    targets = auto_passthrough_targets(bound, registry)
    if not targets:
        diag.warning(
            bound.gateway,
            f"{bound.path}.hosts",
            "AUTO_PASSTHROUGH: no service matches these hosts: nothing is served",
        )
    return [
        _Chain(
            t.chain,
            bound.gateway,
            f"{bound.path}.hosts",
            what,
            cluster=t.cluster,
            load_assignment=t.load_assignment,
        )
        for t in targets
    ]


def _nothing_routed(bound: BoundServer, rule_kind: str, diag: Diagnostics) -> None:
    diag.warning(
        bound.gateway,
        bound.path,
        f"no VirtualService bound to this server has a `{rule_kind}:` rule for port "
        f"{bound.port_number}: nothing is served on it",
    )


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


def _virtual_hosts(
    servers: list[BoundServer],
    virtual_services: list[IstioObject],
    registry: ServiceRegistry,
    diag: Diagnostics,
    template: RouteContext,
) -> tuple[ir.VirtualHost, ...]:
    """One virtual host per host across the servers of one route configuration, as Istio:
    named after the first server that has it (`<host>:<server port>`); servers on other
    ports that share the listener add their routes to it."""
    vhosts: dict[str, _VirtualHostBuilder] = {}
    for bound in servers:
        redirect = bound.server.tls.https_redirect
        for vs, hostnames in bound_virtual_services(bound, virtual_services):
            ctx = replace(template, gateway=bound.gateway_key, port=bound.port_number)
            routes = build_http_routes(vs, ctx, registry, diag)
            source = (bound.gateway_key, f"{vs.meta.namespace}/{vs.meta.name}")
            for hostname in hostnames:
                vhost = vhosts.setdefault(
                    hostname,
                    _VirtualHostBuilder(f"{hostname}:{bound.port_number}", hostname, redirect),
                )
                vhost.require_tls |= redirect
                if source not in vhost.added:
                    vhost.added.add(source)
                    _append_routes(vhost, routes, vs, diag)
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
