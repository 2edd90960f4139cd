"""Which clusters a route configuration or a listener sends traffic to, by name; which
endpoints a cluster needs.

Push ordering (``ordering.py``) needs it: a route may only point at a cluster the proxy
has warm, and a cluster may only go once nothing the proxy runs points at it. Found are a
route's ``cluster``, ``weighted_clusters`` and mirror clusters (``request_mirror_policies``
of routes and virtual hosts), and a listener's TCP proxies (``cluster`` or
``weighted_clusters``) and the routes of its HTTP connection managers' inline route
configurations. A cluster picked at request time (``cluster_header``, specifier plugins)
has no name to order by.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from pilotfish.xds import types

HCM = http_connection_manager_pb2.HttpConnectionManager
_TCP_PROXY = tcp_proxy_pb2.TcpProxy

NONE: frozenset[str] = frozenset()


def unpack(packed: any_pb2.Any, cls: type[Message]) -> tuple[Any, str | None]:
    """The message inside ``packed`` if it is a ``cls``; else None (another filter/socket)."""
    if packed.TypeName() != cls.DESCRIPTOR.full_name:
        return None, None
    message = cls()
    try:
        packed.Unpack(message)
    except DecodeError as e:
        return None, f"cannot decode {cls.DESCRIPTOR.full_name}: {e}"
    return message, None


def served_here(source: config_source_pb2.ConfigSource) -> bool:
    """Whether a config source means this server (ADS, self; unset: no other either)."""
    return source.WhichOneof("config_source_specifier") in (None, "ads", "self")


def eds_service_name(data: bytes) -> str | None:
    """The EDS resource a serialized cluster needs from this server, if it needs one."""
    cluster = cluster_pb2.Cluster.FromString(data)
    if cluster.WhichOneof("cluster_discovery_type") != "type":
        return None
    if cluster.type != cluster_pb2.Cluster.EDS:
        return None
    eds = cluster.eds_cluster_config
    return str(eds.service_name or cluster.name) if served_here(eds.eds_config) else None


def cluster_references(type_url: str, data: bytes) -> frozenset[str]:
    """Names of the clusters the serialized resource routes to; empty for types that
    route nowhere."""
    if type_url == types.ROUTE:
        return frozenset(_route_config_clusters(route_pb2.RouteConfiguration.FromString(data)))
    if type_url == types.LISTENER:
        return frozenset(_listener_clusters(listener_pb2.Listener.FromString(data)))
    return NONE


def _route_config_clusters(config: Any) -> Iterator[str]:
    for vhost in config.virtual_hosts:
        yield from _mirrors(vhost.request_mirror_policies)
        for route in vhost.routes:
            if route.WhichOneof("action") != "route":
                continue
            action = route.route
            specifier = action.WhichOneof("cluster_specifier")
            if specifier == "cluster":
                yield action.cluster
            elif specifier == "weighted_clusters":
                yield from (c.name for c in action.weighted_clusters.clusters)
            yield from _mirrors(action.request_mirror_policies)


def _mirrors(policies: Iterable[Any]) -> Iterator[str]:
    return (p.cluster for p in policies if p.cluster)


def _listener_clusters(listener: Any) -> Iterator[str]:
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for network_filter in chain.filters:
            tcp, _ = unpack(network_filter.typed_config, _TCP_PROXY)
            if tcp is not None:
                if tcp.WhichOneof("cluster_specifier") == "cluster":
                    yield tcp.cluster
                else:
                    yield from (c.name for c in tcp.weighted_clusters.clusters)
                continue
            hcm, _ = unpack(network_filter.typed_config, HCM)
            if hcm is not None and hcm.WhichOneof("route_specifier") == "route_config":
                yield from _route_config_clusters(hcm.route_config)
