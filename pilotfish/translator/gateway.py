"""Gateways selecting a router proxy -> IR listeners, route configurations and secrets.

Follows Istio. The servers selecting the proxy (servers.py) are merged per (bind,
listener port) (gateway_servers/merge.py); each listener's chains come from the builder
of each server's kind (gateway_servers/: plaintext HTTP, HTTPS, TLS terminated,
passthrough, auto-passthrough, TCP). A chain whose SNI names another chain of the
listener already has is reported and left out (Envoy would refuse the whole listener),
and only what the chains kept need (route configurations, secrets, clusters) is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pilotfish.model.configset import ConfigSet
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics, source_of
from pilotfish.translator.gateway_servers import chains_for
from pilotfish.translator.gateway_servers.base import Chain, ChainContext
from pilotfish.translator.gateway_servers.merge import merge_servers
from pilotfish.translator.http_routes import RouteContext
from pilotfish.translator.listener_filters import inspectors
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.secrets import Credentials
from pilotfish.translator.servers import servers_for
from pilotfish.translator.visibility import visible_in


@dataclass(frozen=True)
class GatewayConfig:
    listeners: tuple[ir.Listener, ...] = ()
    route_configs: tuple[ir.RouteConfig, ...] = ()
    secrets: tuple[ir.SdsSecret, ...] = ()
    # AUTO_PASSTHROUGH's SNI-DNAT clusters, on top of the registry's.
    clusters: tuple[ir.Cluster, ...] = ()
    load_assignments: tuple[ir.LoadAssignment, ...] = ()


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
    every_virtual_service = config.istio("VirtualService")
    # As Istio: a gateway binds the VirtualServices exported to its own namespace; a
    # delegate must be exported to its root's namespace (checked where it is followed).
    virtual_services = [v for v in every_virtual_service if visible_in(v, proxy.namespace)]
    by_name = {(v.meta.namespace, v.meta.name): v for v in every_virtual_service}
    ctx = ChainContext(
        credentials=Credentials(config, proxy.namespace, diag),
        virtual_services=virtual_services,
        registry=registry,
        diag=diag,
        routes=RouteContext(
            gateway="",
            port=0,
            proxy_namespace=proxy.namespace,
            proxy_labels=proxy.labels,
            delegates=lambda namespace, name: by_name.get((namespace, name)),
        ),
    )
    out = _Collected()
    for (bind, port), servers in sorted(merged.items(), key=lambda item: (item[0][1], item[0][0])):
        name = f"{bind}_{port}"
        chains = _add_chains(chains_for(servers, ctx), name, out, diag)
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
    candidates: list[Chain], listener: str, out: _Collected, diag: Diagnostics
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
        kept.append(replace(c.chain, source=source_of(c.owner, c.path)))
        out.secrets.update((s.name, s) for s in c.secrets)
        if c.route_config is not None:
            out.route_configs.append(c.route_config)
        if c.cluster is not None and c.load_assignment is not None:
            out.clusters[c.cluster.name] = c.cluster
            out.load_assignments[c.cluster.name] = c.load_assignment
    return kept
