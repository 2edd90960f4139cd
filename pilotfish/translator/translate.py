"""The translator's one entry point: (ConfigSet, Proxy) -> Envoy resources + status.

Pure: no I/O, no clocks, no globals. Istio's meaning is worked out into the IR first
(gateway.py, http_routes.py, clusters.py), then encoded by the builders in envoy/.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf.message import Message

from pilotfish.model.configset import ConfigSet
from pilotfish.model.errors import ConfigError
from pilotfish.translator import ir
from pilotfish.translator.clusters import (
    build_outbound_clusters,
    check_route_subsets,
    referenced_clusters,
)
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.envoy import cluster as cluster_builder
from pilotfish.translator.envoy import listener as listener_builder
from pilotfish.translator.envoy import route as route_builder
from pilotfish.translator.envoy import tls as tls_builder
from pilotfish.translator.gateway import build_gateway
from pilotfish.translator.ingress import with_ingresses
from pilotfish.translator.proxy import ROUTER, Proxy
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.secrets import Credentials
from pilotfish.translator.sidecar import build_sidecar


@dataclass(frozen=True)
class Translation:
    """Everything one proxy is served, and the problems found making it."""

    config: ir.ProxyConfig
    listeners: tuple[listener_pb2.Listener, ...]
    routes: tuple[route_pb2.RouteConfiguration, ...]
    clusters: tuple[cluster_pb2.Cluster, ...]
    endpoints: tuple[endpoint_pb2.ClusterLoadAssignment, ...]
    secrets: tuple[secret_pb2.Secret, ...]
    status: tuple[ConfigError, ...]
    # (type URL, resource name) -> the Istio objects and fields its parts came from.
    sources: Mapping[tuple[str, str], ir.FieldSources] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def locate(self, type_url: str, name: str, path: str) -> ir.Source | None:
        """The Istio object and field that the part ``path`` (Envoy field names, e.g.
        ``virtual_hosts[0].routes[2].route.timeout``) of a resource was made from: the
        longest recorded prefix of ``path`` (among equals the last recorded, as a later
        policy section replaces an earlier one)."""
        best: tuple[int, ir.Source] | None = None
        for prefix, source in self.sources.get((type_url, name), ()):
            if prefix and not (path == prefix or path.startswith((f"{prefix}.", f"{prefix}["))):
                continue
            if best is None or len(prefix) >= best[0]:
                best = (len(prefix), source)
        return None if best is None else best[1]


def translate(config: ConfigSet, proxy: Proxy) -> Translation:
    diag = Diagnostics()
    proxy_config = build_ir(config, proxy, diag)
    return encode(proxy_config, diag.sorted())


def encode(config: ir.ProxyConfig, status: tuple[ConfigError, ...] = ()) -> Translation:
    """The Envoy resources an IR config stands for: the builders in envoy/, nothing else."""
    return Translation(
        sources=MappingProxyType(_sources(config)),
        config=config,
        listeners=tuple(listener_builder.listener(x) for x in config.listeners),
        routes=tuple(route_builder.route_configuration(x) for x in config.route_configs),
        clusters=tuple(cluster_builder.cluster(x) for x in config.clusters),
        endpoints=tuple(cluster_builder.load_assignment(x) for x in config.load_assignments),
        secrets=tuple(tls_builder.secret(x) for x in config.secrets),
        status=status,
    )


def _type_url(message: type[Message]) -> str:
    return f"type.googleapis.com/{message.DESCRIPTOR.full_name}"


_ROUTE = _type_url(route_pb2.RouteConfiguration)
_CLUSTER = _type_url(cluster_pb2.Cluster)
_LISTENER = _type_url(listener_pb2.Listener)


def _sources(config: ir.ProxyConfig) -> dict[tuple[str, str], ir.FieldSources]:
    """Where each resource's parts came from (the route builder keeps the IR's order:
    virtual host i, route j of the IR are ``virtual_hosts[i].routes[j]``)."""
    out: dict[tuple[str, str], ir.FieldSources] = {}
    for rc in config.route_configs:
        out[(_ROUTE, rc.name)] = tuple(
            (f"virtual_hosts[{i}].routes[{j}]", route.source)
            for i, vhost in enumerate(rc.virtual_hosts)
            for j, route in enumerate(vhost.routes)
            if route.source is not None
        )
    for cluster in config.clusters:
        out[(_CLUSTER, cluster.name)] = cluster.sources
    for listener in config.listeners:
        out[(_LISTENER, listener.name)] = _listener_sources(listener)
    return out


def _listener_sources(listener: ir.Listener) -> ir.FieldSources:
    """A chain's parts come from its own source; the rest of the listener (its address,
    listener filters) from its first chain's (the listener builder keeps the IR's order)."""
    chains = [(f"filter_chains[{i}]", c.source) for i, c in enumerate(listener.chains)]
    if listener.default_chain is not None:
        chains.append(("default_filter_chain", listener.default_chain.source))
    known = [(prefix, source) for prefix, source in chains if source is not None]
    whole = [("", known[0][1])] if known else []
    return (*whole, *known)


def build_ir(config: ConfigSet, proxy: Proxy, diag: Diagnostics) -> ir.ProxyConfig:
    if proxy.type != ROUTER:
        registry = ServiceRegistry(config, proxy_namespace=proxy.namespace)
        out = build_sidecar(config, proxy, registry, diag)
        missing = referenced_clusters(out) - {c.name for c in out.clusters}
        check_route_subsets(config, registry, missing, diag)
        return out
    # Istio's Ingresses become a Gateway and VirtualServices first, as Istio converts them.
    config = with_ingresses(config, diag)
    registry = ServiceRegistry(config, proxy_namespace=proxy.namespace)
    gateway = build_gateway(config, proxy, registry, diag)
    outbound = build_outbound_clusters(registry, Credentials(config, proxy.namespace, diag), diag)
    secrets = {s.name: s for s in (*gateway.secrets, *outbound.secrets.values())}
    out = ir.ProxyConfig(
        listeners=gateway.listeners,
        route_configs=gateway.route_configs,
        clusters=(*outbound.clusters, *gateway.clusters),
        load_assignments=(*outbound.load_assignments, *gateway.load_assignments),
        secrets=tuple(secrets[k] for k in sorted(secrets)),
    )
    missing = referenced_clusters(out) - {c.name for c in out.clusters}
    check_route_subsets(config, registry, missing, diag)
    return out
