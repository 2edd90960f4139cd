"""The translator's one entry point: (ConfigSet, Proxy) -> Envoy resources + status.

Pure: no I/O, no clocks, no globals. Istio's meaning is worked out into the IR first
(gateway.py, http_routes.py, clusters.py), then encoded by the builders in envoy/.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

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


def translate(config: ConfigSet, proxy: Proxy) -> Translation:
    diag = Diagnostics()
    proxy_config = build_ir(config, proxy, diag)
    return encode(proxy_config, diag.sorted())


def encode(config: ir.ProxyConfig, status: tuple[ConfigError, ...] = ()) -> Translation:
    """The Envoy resources an IR config stands for: the builders in envoy/, nothing else."""
    return Translation(
        config=config,
        listeners=tuple(listener_builder.listener(x) for x in config.listeners),
        routes=tuple(route_builder.route_configuration(x) for x in config.route_configs),
        clusters=tuple(cluster_builder.cluster(x) for x in config.clusters),
        endpoints=tuple(cluster_builder.load_assignment(x) for x in config.load_assignments),
        secrets=tuple(tls_builder.secret(x) for x in config.secrets),
        status=status,
    )


def build_ir(config: ConfigSet, proxy: Proxy, diag: Diagnostics) -> ir.ProxyConfig:
    if proxy.type != ROUTER:
        # Sidecar translation is a later issue: an empty, valid config until then.
        return ir.ProxyConfig()
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
