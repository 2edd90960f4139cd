"""The Envoy bootstrap that points a proxy at pilotfish over ADS.

It plays the part of Istio's ``pilot-agent`` bootstrap generation: it names the node the way
Istio does (so the server can tell routers from sidecars and find their namespace), puts
the pod's labels in the node metadata, and fetches every listener and cluster over one ADS
stream. The result is plain JSON-able data: write it as JSON or YAML for ``envoy -c``.

A sidecar's bootstrap also carries what Istio's agent adds for one: the metadata Pilot
reads for sidecars (``INTERCEPTION_MODE``, ``WORKLOAD_NAME``, ``CLUSTER_ID``, the status
and Prometheus ports), and Envoy's own static listeners on those ports (``0.0.0.0_15021``
answering ``/healthz/ready``, ``0.0.0.0_15090`` serving ``/stats/prometheus``), which is
why the capture rules leave those ports alone. Admin stays on the pod's loopback, or on a
Unix socket. pilotfish may be reached over TCP or a Unix socket (``unix:/path``), as
Istio's Envoy reaches its agent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pilotfish.address import Address, parse_address
from pilotfish.address import split_host_port as split_host_port  # re-exported
from pilotfish.node_id import NodeId, ProxyType

XdsProtocol = Literal["sotw", "delta"]
XDS_PROTOCOLS: tuple[XdsProtocol, ...] = ("sotw", "delta")

XDS_CLUSTER = "xds-grpc"

_HTTP_PROTOCOL_OPTIONS = (
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)
_HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_DOWNSTREAM_CONNECTIONS = (
    "type.googleapis.com/"
    "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)
# Envoy warns at startup when nothing bounds downstream connections; this is the bound
# Istio's bootstrap sets (there through the deprecated runtime key of the same meaning).
MAX_DOWNSTREAM_CONNECTIONS = 2**31 - 1

# Istio's defaults for a sidecar: readiness (Envoy's listener; pilot-agent behind it in
# Istio) and merged Prometheus stats. The init container's iptables rules exclude both.
SIDECAR_STATUS_PORT = 15021
SIDECAR_PROMETHEUS_PORT = 15090
# Envoy's upstream for its own admin API (Istio's name for it).
ADMIN_CLUSTER = "prometheus_stats"

# Node metadata that other options decide; `extra_metadata` may not set them.
DERIVED_METADATA = frozenset(
    {"LABELS", "NAMESPACE", "NAME", "INSTANCE_IPS", "ENVOY_STATUS_PORT", "ENVOY_PROMETHEUS_PORT"}
)


@dataclass(frozen=True)
class BootstrapOptions:
    """Who the proxy is and where its control plane and admin API are."""

    proxy_type: ProxyType
    name: str  # pod name
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = "127.0.0.1"
    xds_address: str = "127.0.0.1:15010"  # host:port, [v6]:port, or unix:/path
    admin_port: int = 15000
    admin_address: str = "127.0.0.1"
    # A Unix socket for the admin API instead of admin_address:admin_port: reachable from
    # outside the pod's network namespace, as a path.
    admin_socket: str = ""
    # More node metadata (string values), e.g. {"CLUSTER_ID": "east"}; it may replace the
    # sidecar defaults below, not the keys in DERIVED_METADATA.
    extra_metadata: Mapping[str, str] = field(default_factory=dict)
    # Sidecars only: Envoy's readiness and Prometheus listeners (0: none).
    status_port: int = SIDECAR_STATUS_PORT
    prometheus_port: int = SIDECAR_PROMETHEUS_PORT
    # "sotw": ADS as state of the world (api_type GRPC); "delta": incremental (DELTA_GRPC).
    xds_protocol: XdsProtocol = "sotw"

    def __post_init__(self) -> None:
        overridden = sorted(DERIVED_METADATA & set(self.extra_metadata))
        if overridden:
            raise ValueError(
                f"metadata {', '.join(overridden)} cannot be set directly: it follows from "
                "the name, namespace, labels, ip and port options"
            )
        parse_address(self.xds_address)

    @property
    def node_id(self) -> NodeId:
        return NodeId.for_pod(self.proxy_type, self.ip, self.name, self.namespace)


def service_cluster(opts: BootstrapOptions) -> str:
    """``node.cluster``, as Istio's agent picks it: ``<app label>.<ns>``, else the workload.

    Istio falls back to the workload (Deployment) name; we only know the pod, so its name
    stands in. Nothing in pilotfish keys on this value: it shows up in Envoy's stats and
    access logs, where the ``app`` label is what users recognise.
    """
    app = opts.labels.get("app")
    return f"{app or opts.name}.{opts.namespace}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _load_assignment(cluster_name: str, address: Address) -> dict[str, Any]:
    return {
        "cluster_name": cluster_name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address.envoy()}}]}],
    }


def _xds_cluster(xds_address: str) -> dict[str, Any]:
    address = parse_address(xds_address)
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        # An IP or a socket path needs no resolver; a name (a Service DNS name) is
        # re-resolved so a moved control plane is followed.
        "type": "STATIC" if address.path or _is_ip(address.host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": _load_assignment(XDS_CLUSTER, address),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_PROTOCOL_OPTIONS,
                "explicit_http_config": {
                    # Keepalive PINGs find a dead control plane behind a silent network
                    # instead of leaving the proxy on a half-open stream.
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "10s"}
                    }
                },
            }
        },
    }
    if not address.path:
        # One long-lived stream: the default circuit breakers never matter, but TCP
        # keepalive does for the same reason as the HTTP/2 PINGs above.
        cluster["upstream_connection_options"] = {"tcp_keepalive": {}}
    if cluster["type"] == "STRICT_DNS":
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def _admin(opts: BootstrapOptions) -> Address:
    if opts.admin_socket:
        return Address(path=opts.admin_socket)
    return Address(host=opts.admin_address, port=opts.admin_port)


def node_metadata(opts: BootstrapOptions) -> dict[str, Any]:
    """What Istio's agent puts in the node metadata, as far as pilotfish and Envoy use it."""
    metadata: dict[str, Any] = {
        "LABELS": dict(opts.labels),
        "NAMESPACE": opts.namespace,
        "NAME": opts.name,
        # Istio sends this as a comma-separated string, not a list.
        "INSTANCE_IPS": opts.ip,
    }
    if opts.proxy_type == "sidecar":
        metadata |= {
            # How the workload's traffic reaches Envoy: iptables REDIRECT (istio-init).
            "INTERCEPTION_MODE": "REDIRECT",
            # Istio: the Deployment's name; for a bare pod, the pod's.
            "WORKLOAD_NAME": opts.name,
            # Istio's default cluster name when multicluster is not configured.
            "CLUSTER_ID": "Kubernetes",
        }
        if opts.status_port:
            metadata["ENVOY_STATUS_PORT"] = opts.status_port
        if opts.prometheus_port:
            metadata["ENVOY_PROMETHEUS_PORT"] = opts.prometheus_port
    return metadata | dict(opts.extra_metadata)


def _http_listener(name: str, port: int, routes: list[dict[str, Any]]) -> dict[str, Any]:
    """A static plain-HTTP listener on 0.0.0.0 (the pod's interfaces) with fixed routes."""
    return {
        "name": f"0.0.0.0_{port}",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        # Health and metrics must answer even when the proxy is at its connection limit.
        "ignore_global_conn_limit": True,
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": _HCM,
                            "stat_prefix": name,
                            "route_config": {
                                "virtual_hosts": [
                                    {"name": "backend", "domains": ["*"], "routes": routes}
                                ]
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {"@type": _ROUTER},
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }


def _sidecar_static_resources(opts: BootstrapOptions) -> dict[str, Any]:
    """Envoy's own listeners of a sidecar, both served by its admin API."""
    listeners = []
    if opts.status_port:
        # Istio routes this to pilot-agent, which asks Envoy; without an agent, Envoy's
        # /ready answers the same question (200 once LIVE).
        ready = {
            "match": {"path": "/healthz/ready"},
            "route": {"cluster": ADMIN_CLUSTER, "prefix_rewrite": "/ready"},
        }
        listeners.append(_http_listener("agent", opts.status_port, [ready]))
    if opts.prometheus_port:
        stats = {"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": ADMIN_CLUSTER}}
        listeners.append(_http_listener("stats", opts.prometheus_port, [stats]))
    if not listeners:
        return {"listeners": [], "clusters": []}
    admin_cluster = {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "load_assignment": _load_assignment(ADMIN_CLUSTER, _admin(opts)),
    }
    return {"listeners": listeners, "clusters": [admin_cluster]}


def render_bootstrap(opts: BootstrapOptions) -> dict[str, Any]:
    """The bootstrap for one proxy, as JSON-able data."""
    ads_source = {"ads": {}, "resource_api_version": "V3"}
    static_resources: dict[str, Any] = {"clusters": [_xds_cluster(opts.xds_address)]}
    if opts.proxy_type == "sidecar":
        own = _sidecar_static_resources(opts)
        static_resources["clusters"] += own["clusters"]
        if own["listeners"]:
            static_resources["listeners"] = own["listeners"]
    return {
        "node": {
            "id": str(opts.node_id),
            "cluster": service_cluster(opts),
            "metadata": node_metadata(opts),
        },
        "admin": {"address": _admin(opts).envoy()},
        "static_resources": static_resources,
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if opts.xds_protocol == "delta" else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            # Default reconnect backoff grows to 30 s; a restarted control
                            # plane should be picked up within a few seconds.
                            "retry_policy": {
                                "retry_back_off": {"base_interval": "0.25s", "max_interval": "5s"}
                            },
                        }
                    }
                ],
                "set_node_on_first_message_only": True,
            },
            "cds_config": ads_source,
            "lds_config": ads_source,
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": _DOWNSTREAM_CONNECTIONS,
                        "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
                    },
                }
            ]
        },
    }
