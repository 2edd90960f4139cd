"""The Envoy bootstrap that points a proxy at pilotfish over ADS.

It plays the part of Istio's ``pilot-agent`` bootstrap generation: it names the node the way
Istio does (so the server can tell routers from sidecars and find their namespace), puts
the pod's labels in the node metadata, and fetches every listener and cluster over one ADS
stream. The result is plain JSON-able data: write it as JSON or YAML for ``envoy -c``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from pilotfish.node_id import NodeId, ProxyType

XDS_CLUSTER = "xds-grpc"

_HTTP_PROTOCOL_OPTIONS = (
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)
_DOWNSTREAM_CONNECTIONS = (
    "type.googleapis.com/"
    "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)
# Envoy warns at startup when nothing bounds downstream connections; this is the bound
# Istio's bootstrap sets (there through the deprecated runtime key of the same meaning).
MAX_DOWNSTREAM_CONNECTIONS = 2**31 - 1


@dataclass(frozen=True)
class BootstrapOptions:
    """Who the proxy is and where its control plane and admin API are."""

    proxy_type: ProxyType
    name: str  # pod name
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = "127.0.0.1"
    xds_address: str = "127.0.0.1:15010"  # host:port, [v6]:port
    admin_port: int = 15000
    admin_address: str = "127.0.0.1"

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


def split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError when it is neither."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"xds address {address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _xds_cluster(xds_address: str) -> dict[str, Any]:
    host, port = split_host_port(xds_address)
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        # An IP needs no resolver; a name (a Service DNS name) is re-resolved so a moved
        # control plane is followed.
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            }
                        }
                    ]
                }
            ],
        },
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
        # One long-lived stream: the default circuit breakers never matter, but TCP
        # keepalive does for the same reason as the HTTP/2 PINGs above.
        "upstream_connection_options": {"tcp_keepalive": {}},
    }
    if cluster["type"] == "STRICT_DNS":
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def render_bootstrap(opts: BootstrapOptions) -> dict[str, Any]:
    """The bootstrap for one proxy, as JSON-able data."""
    ads_source = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {
            "id": str(opts.node_id),
            "cluster": service_cluster(opts),
            "metadata": {
                "LABELS": dict(opts.labels),
                "NAMESPACE": opts.namespace,
                "NAME": opts.name,
                # Istio sends this as a comma-separated string, not a list.
                "INSTANCE_IPS": opts.ip,
            },
        },
        "admin": {
            "address": {
                "socket_address": {"address": opts.admin_address, "port_value": opts.admin_port}
            }
        },
        "static_resources": {"clusters": [_xds_cluster(opts.xds_address)]},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
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
