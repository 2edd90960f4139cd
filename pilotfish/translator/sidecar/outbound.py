"""A sidecar's outbound half: what its workload may call.

virtualOutbound (15001) takes the redirected connections and hands them to the per-port
listeners (outbound_listeners.py), whose HTTP connection managers ask for the route
configurations of outbound_routes.py; clusters for every service the proxy sees or is
routed to (visibility.py), with DestinationRules applied by the gateway's cluster code;
and the fixed PassthroughCluster and BlackHoleCluster.
"""

from __future__ import annotations

from pilotfish.model.configset import ConfigSet
from pilotfish.translator import ir
from pilotfish.translator.clusters import build_outbound_clusters
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.http_routes import RouteContext
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.secrets import Credentials
from pilotfish.translator.sidecar.outbound_listeners import build_outbound_listeners
from pilotfish.translator.sidecar.outbound_routes import build_route_configs
from pilotfish.translator.sidecar.tcp_chains import MeshContext
from pilotfish.translator.sidecar.virtual_outbound import fixed_clusters, virtual_outbound
from pilotfish.translator.sidecar.visibility import outbound_view
from pilotfish.translator.sidecar_scope import SidecarScope

MESH = "mesh"  # the gateway name mesh VirtualService rules are built for


def build_outbound(
    config: ConfigSet,
    proxy: Proxy,
    registry: ServiceRegistry,
    scope: SidecarScope,
    diag: Diagnostics,
) -> ir.ProxyConfig:
    view = outbound_view(config, proxy, registry, scope)
    policy = scope.outbound_policy
    by_name = {(v.meta.namespace, v.meta.name): v for v in config.istio("VirtualService")}
    template = RouteContext(
        gateway=MESH,
        port=0,
        proxy_namespace=proxy.namespace,
        proxy_labels=proxy.labels,
        delegates=lambda namespace, name: by_name.get((namespace, name)),
    )
    ctx = MeshContext(proxy.namespace, proxy.labels)
    listeners = build_outbound_listeners(view, ctx, registry, policy, diag)
    routes = build_route_configs(listeners.routes, view, template, registry, policy, diag)
    credentials = Credentials(config, proxy.namespace, diag)
    clusters = build_outbound_clusters(
        registry, credentials, diag, view.cluster_services, sidecar=True
    )
    return ir.ProxyConfig(
        listeners=(*listeners.listeners, virtual_outbound(policy)),
        route_configs=routes,
        clusters=(*clusters.clusters, *fixed_clusters(registry.mesh.connect_timeout_ms)),
        load_assignments=tuple(clusters.load_assignments),
        secrets=tuple(clusters.secrets[k] for k in sorted(clusters.secrets)),
    )
