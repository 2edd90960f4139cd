"""The intermediate representation: what each listener, route and cluster means.

Plain frozen data, no Envoy protos: Istio's semantics are decided when building it
(translator/gateway.py, http_routes.py, clusters.py); Envoy's encoding of it is decided
by the builders in translator/envoy/. Durations are whole milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StringMatchKind = Literal["exact", "prefix", "regex", "present"]


@dataclass(frozen=True)
class StringMatch:
    kind: StringMatchKind
    value: str = ""


@dataclass(frozen=True)
class HeaderMatch:
    name: str
    match: StringMatch
    invert: bool = False


@dataclass(frozen=True)
class QueryMatch:
    name: str
    match: StringMatch


@dataclass(frozen=True)
class RouteMatch:
    path: StringMatch  # exact/prefix/regex on the path
    case_sensitive: bool = True
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()

    @property
    def is_catch_all(self) -> bool:
        return self.path == StringMatch("prefix", "/") and not self.headers and not self.query


@dataclass(frozen=True)
class WeightedCluster:
    cluster: str
    weight: int


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    retry_on: str
    per_try_timeout_ms: int | None = None
    retriable_status_codes: tuple[int, ...] = ()
    retry_remote_localities: bool = False


@dataclass(frozen=True)
class Route:
    name: str
    match: RouteMatch
    clusters: tuple[WeightedCluster, ...]
    timeout_ms: int = 0  # 0: no timeout, Istio's default
    retry: RetryPolicy | None = None


@dataclass(frozen=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    require_tls: bool = False  # the server's tls.httpsRedirect: plain HTTP gets a 301


@dataclass(frozen=True)
class RouteConfig:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


@dataclass(frozen=True)
class HttpFilterChain:
    """Plain HTTP (HTTP, HTTP2, GRPC servers): one HCM fetching its routes over RDS."""

    route_config_name: str
    stat_prefix: str


@dataclass(frozen=True)
class Listener:
    name: str
    address: str
    port: int
    chains: tuple[HttpFilterChain, ...]


@dataclass(frozen=True)
class Cluster:
    """An EDS cluster for one service port (and later, subset)."""

    name: str
    connect_timeout_ms: int = 10_000
    lb_policy: str = "LEAST_REQUEST"
    http2: bool = False


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int


@dataclass(frozen=True)
class LoadAssignment:
    cluster_name: str
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True)
class ProxyConfig:
    listeners: tuple[Listener, ...] = ()
    route_configs: tuple[RouteConfig, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    load_assignments: tuple[LoadAssignment, ...] = ()
