"""A sidecar's per-port outbound listeners, as Istio's buildSidecarOutboundListeners
lays them out.

Per egress listener, per visible service and port (a port egress listener: its own port
and protocol, for each service it imports):
- HTTP ports share `0.0.0.0_<port>` (or `<bind>_<port>`), an HTTP connection manager
  over RDS `<port>`. On the wildcard it matches plaintext HTTP only (ALPN `http/1.1`,
  `h2c` from the http_inspector): anything else on that port falls through;
- TCP, TLS and HTTPS ports get `<address>_<port>` per service address (a CIDR: on
  0.0.0.0, matched by prefix), `tcp_proxy` chains from the mesh `tcp:`/`tls:` rules;
- ports of unknown protocol (Istio sniffs them) get both: a TCP chain, and an HTTP chain
  for plaintext HTTP over RDS `<fqdn>:<port>` (`<port>` on the wildcard);
- headless Services and resolution NONE without addresses: a listener per endpoint
  address for TCP ports (none for a headless Service without endpoints), a wildcard one
  for a ServiceEntry without endpoints.
Listeners meeting on one address and port merge the way Istio merges them: HTTP and TCP
together become sniffed; TCP chains join unless their matches are equal (the later one
is reported and dropped); MongoDB and MySQL ports share with nothing. Listeners made for
a port egress listener are not joined by the catch-all's services. Connections no chain
takes go to the outbound policy's cluster (PassthroughFilterChain).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from pilotfish.model.objects import ConfigObject
from pilotfish.translator import http_options, ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.hosts import is_ip
from pilotfish.translator.listener_filters import inspectors
from pilotfish.translator.registry import HTTP2_PROTOCOLS, RegistryService, ServiceRegistry
from pilotfish.translator.registry import port_protocol as service_port_protocol
from pilotfish.translator.sidecar.addresses import (
    WILDCARD,
    addresses,
    is_cidr,
    is_passthrough,
    listen_addresses,
)
from pilotfish.translator.sidecar.tcp_chains import ChainTarget, MeshContext, tcp_chains
from pilotfish.translator.sidecar.virtual_outbound import PASSTHROUGH_CHAIN, catch_all_chain
from pilotfish.translator.sidecar.visibility import EgressView, OutboundView
from pilotfish.translator.sidecar_scope import OutboundPolicy

Kind = Literal["http", "tcp", "auto"]
HTTP_PROTOCOLS = frozenset({"HTTP", *HTTP2_PROTOCOLS})
EXCLUSIVE_PROTOCOLS = frozenset({"MONGO", "MYSQL"})  # server-first: no sniffing beside them
_KNOWN_PROTOCOLS = frozenset(
    {*HTTP_PROTOCOLS, "HTTPS", "TCP", "TLS", "UDP", "MONGO", "REDIS", "MYSQL"}
)
LOCALHOST = "127.0.0.1"
PLAINTEXT_HTTP = ir.ChainMatch(
    transport_protocol="raw_buffer", application_protocols=("http/1.1", "h2c")
)
# The HTTP filters a route may configure per route: always there on a sidecar's outbound
# connection managers, as Istio has them, so a VirtualService change never touches LDS.
OUTBOUND_HTTP_FILTERS = ("fault", "cors")


@dataclass(frozen=True)
class RouteName:
    """An RDS name a listener asks for: `<port>`, or `<fqdn>:<port>` for one sniffed
    service's own listener (its virtual hosts only)."""

    name: str
    port: int
    host: str = ""


@dataclass
class _Entry:
    bind: str
    port: int
    bind_to_port: bool
    kind: Kind
    protocol: str
    chains: list[ir.FilterChain]
    owner: ConfigObject
    locked: bool = False


@dataclass
class _Listeners:
    entries: dict[tuple[str, int], _Entry] = field(default_factory=dict)
    routes: dict[str, RouteName] = field(default_factory=dict)


@dataclass(frozen=True)
class _Opts:
    service: RegistryService
    port: int
    protocol: str
    bind: str  # "" : the service's addresses decide
    bind_to_port: bool
    cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutboundListeners:
    listeners: tuple[ir.Listener, ...]
    routes: tuple[RouteName, ...]


def egress_protocol(protocol: str) -> str:
    """A Sidecar egress port's protocol as Istio parses it: unknown ones are sniffed."""
    return protocol if protocol in _KNOWN_PROTOCOLS else "UNSUPPORTED"


def listener_kind(protocol: str) -> Kind | None:
    if protocol in HTTP_PROTOCOLS:
        return "http"
    if protocol in ("UDP", "SCTP"):
        return None  # Envoy proxies TCP only
    return "auto" if protocol == "UNSUPPORTED" else "tcp"


def build_outbound_listeners(
    view: OutboundView,
    ctx: MeshContext,
    registry: ServiceRegistry,
    policy: OutboundPolicy,
    diag: Diagnostics,
) -> OutboundListeners:
    out = _Listeners()
    for egress_view in view.egress:
        egress = egress_view.egress
        if egress.bind.startswith("unix://"):
            if view.scope.sidecar is not None:
                diag.warning(
                    view.scope.sidecar,
                    f"spec.egress[{egress.index}].bind",
                    "Unix domain socket binds are not supported: egress listener skipped",
                )
            continue
        bind_to_port = egress.capture_mode == "NONE"
        bind = egress.bind or (LOCALHOST if bind_to_port else "")
        if egress.port is not None:
            if egress.port_protocol == "HTTP_PROXY":
                if view.scope.sidecar is not None:
                    diag.warning(
                        view.scope.sidecar,
                        f"spec.egress[{egress.index}].port.protocol",
                        "HTTP_PROXY (an explicit HTTP proxy port) is not supported: "
                        "egress listener skipped",
                    )
                continue
            protocol = egress_protocol(egress.port_protocol)
            for service in egress_view.services:
                opts = _Opts(service, egress.port, protocol, bind, bind_to_port)
                _build(opts, egress_view, ctx, registry, out, diag)
            continue
        for entry in out.entries.values():
            entry.locked = True  # the port egress listeners' own: the catch-all adds nothing
        for service in egress_view.services:
            for port in service.ports:
                opts = _Opts(service, port.port, service_port_protocol(port), bind, bind_to_port)
                if not bind and is_passthrough(service) and _tcp_like(opts.protocol):
                    _per_endpoint(opts, egress_view, ctx, registry, out, diag)
                else:
                    _build(opts, egress_view, ctx, registry, out, diag)
    listeners = tuple(
        _finish(e, policy) for e in sorted(out.entries.values(), key=lambda e: (e.port, e.bind))
    )
    return OutboundListeners(listeners, tuple(out.routes[n] for n in sorted(out.routes)))


def _tcp_like(protocol: str) -> bool:
    return listener_kind(protocol) in ("tcp", "auto")


def _per_endpoint(
    opts: _Opts,
    view: EgressView,
    ctx: MeshContext,
    registry: ServiceRegistry,
    out: _Listeners,
    diag: Diagnostics,
) -> None:
    """Headless Services and NONE ServiceEntries without addresses, on TCP ports: one
    listener per endpoint address, as Istio (so clients reaching a pod directly get the
    service's policy); a ServiceEntry with no endpoints at all: the wildcard."""
    if addresses(opts.service):
        _build(opts, view, ctx, registry, out, diag)
        return
    port = opts.service.port(opts.port)
    endpoints = registry.labeled_endpoints(opts.service, port) if port else []
    if not endpoints and opts.service.entry is not None:
        _build(opts, view, ctx, registry, out, diag)
        return
    for address in sorted({e.endpoint.address for e in endpoints}):
        if is_ip(address):
            _build(replace(opts, bind=address), view, ctx, registry, out, diag)


def _build(
    opts: _Opts,
    view: EgressView,
    ctx: MeshContext,
    registry: ServiceRegistry,
    out: _Listeners,
    diag: Diagnostics,
) -> None:
    if opts.service.alias_of:
        return  # an ExternalName Service: its target's listeners serve it
    kind = listener_kind(opts.protocol)
    if kind is None:
        return
    if kind == "http" or opts.bind:
        _build_on(opts, opts.bind or WILDCARD, kind, view, ctx, registry, out, diag)
        return
    for address in listen_addresses(opts.service):
        if is_cidr(address):
            cidr_opts = replace(opts, cidrs=(address,))
            _build_on(cidr_opts, WILDCARD, kind, view, ctx, registry, out, diag)
        else:
            _build_on(opts, address, kind, view, ctx, registry, out, diag)


def _build_on(
    opts: _Opts,
    bind: str,
    kind: Kind,
    view: EgressView,
    ctx: MeshContext,
    registry: ServiceRegistry,
    out: _Listeners,
    diag: Diagnostics,
) -> None:
    key = (bind, opts.port)
    current = out.entries.get(key)
    if current is not None and current.locked:
        return
    owner: ConfigObject = opts.service.entry or opts.service.service
    if current is not None and _exclusive_conflict(opts.protocol, current.protocol):
        diag.warning(
            owner,
            _port_path(opts.service, opts.port, registry),
            f"port {opts.port}: outbound listener {bind}_{opts.port} already serves "
            f"{current.protocol} for {_describe(current.owner)}, which cannot share a port: "
            f"{opts.service.hostname} is left out of it",
        )
        return
    listener_kind_after: Kind = kind
    chains: list[ir.FilterChain]
    if kind == "http":
        if current is not None and current.kind != "tcp":
            return  # the port's HTTP listener is there: the virtual hosts come over RDS
        chains = [_http_chain(opts, bind, kind, out)]
        if bind == WILDCARD:
            listener_kind_after = "auto"  # plaintext HTTP only: the rest falls through
    elif kind == "tcp":
        chains = list(_tcp(opts, bind, view, ctx, registry, diag))
    else:
        chains = list(_tcp(opts, bind, view, ctx, registry, diag))
        if current is None or current.kind != "auto":
            chains.append(_http_chain(opts, bind, kind, out))
    if current is None or (kind == "auto" and current.kind == "http"):
        out.entries[key] = _Entry(
            bind, opts.port, opts.bind_to_port, listener_kind_after, opts.protocol, chains, owner
        )
        return
    _merge(current, chains, opts, diag, owner, _port_path(opts.service, opts.port, registry))
    if kind != current.kind:
        current.kind = "auto"


def _tcp(
    opts: _Opts,
    bind: str,
    view: EgressView,
    ctx: MeshContext,
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> list[ir.TcpFilterChain]:
    target = ChainTarget(
        opts.service,
        opts.port,
        opts.protocol,
        cidrs=opts.cidrs,
        no_address=bind == WILDCARD and not opts.cidrs,
    )
    configs = view.index.naming(opts.service.hostname)
    return tcp_chains(target, configs, ctx, registry, diag)


def _http_chain(opts: _Opts, bind: str, kind: Kind, out: _Listeners) -> ir.HttpFilterChain:
    if kind == "auto" and bind != WILDCARD:
        # A sniffed service's own listener: only its own virtual hosts.
        route = RouteName(f"{opts.service.hostname}:{opts.port}", opts.port, opts.service.hostname)
    else:
        route = RouteName(str(opts.port), opts.port)
    out.routes.setdefault(route.name, route)
    chain = ir.HttpFilterChain(
        route.name,
        stat_prefix=f"outbound_{bind}_{opts.port}",
        http_filters=OUTBOUND_HTTP_FILTERS,
        options=http_options.SIDECAR_OUTBOUND,
    )
    if bind == WILDCARD or kind == "auto":
        chain = replace(chain, match=PLAINTEXT_HTTP)
    return chain


def _exclusive_conflict(incoming: str, existing: str) -> bool:
    exclusive = incoming in EXCLUSIVE_PROTOCOLS or existing in EXCLUSIVE_PROTOCOLS
    return exclusive and incoming != existing


def _merge(
    entry: _Entry,
    incoming: list[ir.FilterChain],
    opts: _Opts,
    diag: Diagnostics,
    owner: ConfigObject,
    path: str,
) -> None:
    """Add the chains whose match no chain of the listener has yet (Istio's
    mergeTCPFilterChains); report the others."""
    for chain in incoming:
        if any(_same_match(chain.match, c.match) for c in entry.chains):
            diag.warning(
                owner,
                path,
                f"port {opts.port}: outbound listener {entry.bind}_{entry.port} already "
                f"sends these connections to {_describe(entry.owner)}: "
                f"{opts.service.hostname} is not reachable through it",
            )
            continue
        entry.chains.append(chain)


def _same_match(a: ir.ChainMatch, b: ir.ChainMatch) -> bool:
    return (
        a.transport_protocol == b.transport_protocol
        and a.application_protocols == b.application_protocols
        and set(a.server_names) == set(b.server_names)
        and set(a.prefix_ranges) == set(b.prefix_ranges)
    )


def _port_path(service: RegistryService, port: int, registry: ServiceRegistry) -> str:
    """Where the service declares the port (its own object's list, not a trimmed copy)."""
    full = registry.lookup(service.hostname) or service
    index = next((i for i, p in enumerate(full.ports) if p.port == port), None)
    return "spec.ports" if index is None else f"spec.ports[{index}]"


def _describe(owner: ConfigObject) -> str:
    return f"{owner.kind} {owner.meta.namespace}/{owner.meta.name}"


def _finish(entry: _Entry, policy: OutboundPolicy) -> ir.Listener:
    name = f"{entry.bind}_{entry.port}"
    chains = [c for c in entry.chains if not c.match.is_empty]
    match_all = [c for c in entry.chains if c.match.is_empty]
    default: ir.FilterChain | None = match_all[-1] if match_all else None
    if default is not None and not chains:
        chains, default = [default], None
    elif default is None:
        default = catch_all_chain(policy, PASSTHROUGH_CHAIN)
    return ir.Listener(
        name,
        entry.bind,
        entry.port,
        tuple(chains),
        bind_to_port=entry.bind_to_port,
        listener_filters=inspectors(chains),
        # Istio: no time limit on inspection (its protocolDetectionTimeout defaults to
        # 0s); a client that sends nothing first still gets its chain.
        listener_filters_timeout_ms=0,
        continue_on_listener_filters_timeout=True,
        default_chain=default,
        traffic_direction="OUTBOUND",
    )
