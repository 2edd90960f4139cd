"""The intermediate representation: what each listener, route and cluster means.

Plain frozen data, no Envoy protos: Istio's semantics are decided when building it
(translator/gateway.py, http_routes.py, clusters.py); Envoy's encoding of it is decided
by the builders in translator/envoy/. Durations are whole milliseconds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pilotfish.translator.cluster_names import INBOUND_PASSTHROUGH_CLUSTER, ClusterName, Direction


@dataclass(frozen=True)
class Source:
    """The Istio object, and the field in it, that an IR element was made from.

    Kept so that a problem found later, in the Envoy resource built from the element
    (the pre-push check of Envoy's own constraints), is reported where the user wrote it.
    """

    kind: str
    namespace: str
    name: str
    field: str = ""
    file: str | None = None
    document: int | None = None


# An Envoy field path prefix in the built resource (``outlier_detection``) -> its Source.
FieldSources = tuple[tuple[str, Source], ...]


# "separated_prefix" (paths only): a prefix matched on whole path elements, for Ingress
# `pathType: Prefix` (`/foo` matches `/foo` and `/foo/bar`, not `/foobar`).
StringMatchKind = Literal["exact", "prefix", "regex", "present", "separated_prefix"]


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
class HeaderOperations:
    """Header changes on requests or responses (VirtualService `headers`)."""

    set: tuple[tuple[str, str], ...] = ()  # replaces the header, or adds it
    add: tuple[tuple[str, str], ...] = ()  # appends a value, or adds it
    remove: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.set or self.add or self.remove)


@dataclass(frozen=True)
class Headers:
    request: HeaderOperations = HeaderOperations()
    response: HeaderOperations = HeaderOperations()
    # `request.set` of host/:authority: Envoy cannot set it as a header; as Istio, it
    # becomes the upstream request's authority (host_rewrite_literal).
    authority: str = ""

    @property
    def is_empty(self) -> bool:
        return self.request.is_empty and self.response.is_empty and not self.authority


@dataclass(frozen=True)
class WeightedCluster:
    cluster: str
    weight: int
    headers: Headers = Headers()  # per-destination header changes (HTTP only)


RedirectCode = Literal[301, 302, 303, 307, 308]


@dataclass(frozen=True)
class Redirect:
    path: str = ""  # "" keeps the request's path
    prefix: str = ""  # replaces the matched prefix instead (HTTPRedirect.prefix_rewrite)
    host: str = ""
    port: int | None = None
    scheme: str = ""
    code: RedirectCode = 301


@dataclass(frozen=True)
class DirectResponse:
    status: int
    body: bytes | None = field(default=None)


@dataclass(frozen=True)
class Rewrite:
    prefix: str | None = None  # replaces the matched prefix (or the whole path of an exact match)
    authority: str = ""
    regex: str = ""  # with regex_substitution: rewrites the whole path
    regex_substitution: str = ""


@dataclass(frozen=True)
class Fault:
    delay_ms: int | None = None
    delay_per_million: int = 0
    abort_http_status: int | None = None
    abort_grpc_status: int | None = None
    abort_per_million: int = 0


@dataclass(frozen=True)
class Mirror:
    cluster: str
    per_million: int = 1_000_000


@dataclass(frozen=True)
class Cors:
    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_s: int | None = None
    allow_credentials: bool | None = None
    forward_unmatched_preflights: bool | None = None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    retry_on: str
    per_try_timeout_ms: int | None = None
    retriable_status_codes: tuple[int, ...] = ()
    retry_remote_localities: bool = False
    # Retry on another host than the one that failed (Istio's outbound routes); an inbound
    # route has one host, its own workload, and Istio leaves the predicate out there.
    retry_other_hosts: bool = True


@dataclass(frozen=True)
class Route:
    name: str
    match: RouteMatch
    clusters: tuple[WeightedCluster, ...]
    timeout_ms: int = 0  # 0: no timeout, Istio's default
    retry: RetryPolicy | None = None
    hash_policy: HashPolicy | None = None  # the destination's DR consistentHash
    # At most one of redirect / direct_response; either means no clusters.
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    rewrite: Rewrite | None = None
    headers: Headers = Headers()
    fault: Fault | None = None
    mirrors: tuple[Mirror, ...] = ()
    cors: Cors | None = None
    source: Source | None = None  # the VirtualService rule (spec.http[i]) it came from


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
    # Match Host with or without its port (istio#6469): Istio's choice for every route
    # configuration served over RDS; its sidecars' inbound ones (inline) leave it off.
    ignore_port_in_host_matching: bool = True

    def __post_init__(self) -> None:
        # Envoy refuses a whole RouteConfiguration in which two virtual hosts share a
        # domain (compared case-insensitively): no translation may ever build one.
        counts = Counter(d.lower() for v in self.virtual_hosts for d in v.domains)
        repeated = sorted(d for d, n in counts.items() if n > 1)
        if repeated:
            raise ValueError(f"route configuration {self.name}: domains repeated: {repeated}")


TlsVersion = Literal["TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3"]
SanType = Literal["DNS", "URI", "EMAIL", "IP_ADDRESS"]


@dataclass(frozen=True)
class TlsParams:
    """Protocol versions and cipher suites; unset ones keep Envoy's defaults."""

    min_version: TlsVersion = "TLS_AUTO"
    max_version: TlsVersion = "TLS_AUTO"
    cipher_suites: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return self == TlsParams()


@dataclass(frozen=True)
class SanMatch:
    type: SanType
    value: str  # matched exactly


@dataclass(frozen=True)
class ClientValidation:
    """How a terminating server checks client certificates (MUTUAL, OPTIONAL_MUTUAL)."""

    ca_secret: str  # SDS name of the trusted CA (and CRL), e.g. kubernetes://cred-cacert
    required: bool  # MUTUAL: no certificate, no connection; OPTIONAL_MUTUAL: checked if sent
    subject_alt_names: tuple[SanMatch, ...] = ()
    spki: tuple[str, ...] = ()
    hashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DownstreamTls:
    """TLS termination on a filter chain: certificates fetched over SDS."""

    certificate_secrets: tuple[str, ...]  # SDS names, e.g. kubernetes://cred
    alpn: tuple[str, ...] = ()
    params: TlsParams = TlsParams()
    client: ClientValidation | None = None

    @property
    def secret_names(self) -> tuple[str, ...]:
        ca = (self.client.ca_secret,) if self.client else ()
        return (*self.certificate_secrets, *ca)


@dataclass(frozen=True)
class CidrRange:
    address: str  # an IPv4 or IPv6 address
    prefix_len: int


TransportProtocol = Literal["", "raw_buffer", "tls"]


@dataclass(frozen=True)
class ChainMatch:
    """What selects a filter chain (Envoy's FilterChainMatch): every part set must match;
    an unset part matches anything. Matching on SNI, `tls` or ALPN needs the listener's
    tls_inspector, on plaintext HTTP ALPN (`http/1.1`, `h2c`) its http_inspector."""

    server_names: tuple[str, ...] = ()
    destination_port: int | None = None  # the connection's original destination port
    prefix_ranges: tuple[CidrRange, ...] = ()  # ... and its original destination address
    transport_protocol: TransportProtocol = ""  # "": either
    application_protocols: tuple[str, ...] = ()  # ALPN, or what http_inspector detected

    @property
    def is_empty(self) -> bool:
        return self == ChainMatch()


ForwardClientCert = Literal[
    "SANITIZE", "FORWARD_ONLY", "APPEND_FORWARD", "SANITIZE_SET", "ALWAYS_FORWARD_ONLY"
]
EscapedSlashesAction = Literal[
    "IMPLEMENTATION_SPECIFIC_DEFAULT",
    "KEEP_UNCHANGED",
    "REJECT_REQUEST",
    "UNESCAPE_AND_REDIRECT",
    "UNESCAPE_AND_FORWARD",
]


@dataclass(frozen=True)
class ClientCertDetails:
    """What of the client certificate goes into x-forwarded-client-cert."""

    subject: bool = False
    cert: bool = False
    chain: bool = False
    dns: bool = False
    uri: bool = False


@dataclass(frozen=True)
class HttpOptions:
    """How an HTTP connection manager treats requests. The defaults are what Istio gives
    every HCM (path normalisation, websocket upgrades); role-specific choices (a
    gateway is the edge: use_remote_address; x-forwarded-client-cert handling) default
    to Envoy's behaviour and are set by the code that builds the chain
    (translator/http_options.py)."""

    use_remote_address: bool = False  # the client is the peer, not x-forwarded-for
    xff_num_trusted_hops: int = 0
    forward_client_cert: ForwardClientCert = "SANITIZE"  # Envoy's default
    client_cert_details: ClientCertDetails | None = None  # set_current_client_cert_details
    normalize_path: bool = True
    merge_slashes: bool = False
    escaped_slashes: EscapedSlashesAction = "KEEP_UNCHANGED"
    upgrades: tuple[str, ...] = ("websocket",)
    stream_idle_timeout_ms: int | None = None  # None: Envoy's default (5 min); 0: none


@dataclass(frozen=True)
class HttpFilterChain:
    """An HTTP connection manager: the plaintext HTTP servers of a gateway port (one
    chain), each terminated HTTPS server, a sidecar's HTTP ports. Routes come over RDS
    (`route_config_name`) or inline (`route_config`, as Istio's inbound chains): one of
    the two."""

    route_config_name: str
    stat_prefix: str
    match: ChainMatch = ChainMatch()
    tls: DownstreamTls | None = None
    # HTTP filters some route needs before the router ("fault", "cors"); only those,
    # so a chain whose routes need none stays as it was.
    http_filters: tuple[str, ...] = ()
    options: HttpOptions = HttpOptions()
    route_config: RouteConfig | None = None
    name: str = ""
    source: Source | None = None  # the Istio object and field the chain was made from

    def __post_init__(self) -> None:
        if bool(self.route_config_name) == (self.route_config is not None):
            raise ValueError(
                f"HTTP chain {self.stat_prefix}: give a route_config_name (RDS) "
                "or an inline route_config, not both or neither"
            )


@dataclass(frozen=True)
class TcpFilterChain:
    """Bytes to a cluster (or several, weighted): TCP servers, TLS passthrough and
    terminated TLS servers, a sidecar's TCP ports and passthrough chains."""

    stat_prefix: str
    clusters: tuple[WeightedCluster, ...]
    match: ChainMatch = ChainMatch()
    tls: DownstreamTls | None = None
    name: str = ""
    source: Source | None = None


FilterChain = HttpFilterChain | TcpFilterChain

ListenerFilterKind = Literal["original_dst", "tls_inspector", "http_inspector"]
TrafficDirection = Literal["UNSPECIFIED", "INBOUND", "OUTBOUND"]


@dataclass(frozen=True)
class ListenerFilter:
    """A listener filter, run in the order given, before a chain is chosen. Istio runs
    the inspectors only on the destination ports whose chains need them: `only_ports`
    (these and no other) or `except_ports` (all but these); neither: every connection."""

    kind: ListenerFilterKind
    only_ports: tuple[int, ...] = ()
    except_ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.only_ports and self.except_ports:
            raise ValueError(f"listener filter {self.kind}: only_ports or except_ports, not both")


@dataclass(frozen=True)
class Listener:
    name: str
    address: str
    port: int
    chains: tuple[FilterChain, ...]
    # False: Envoy does not bind; it gets connections handed over by a listener that
    # uses the original destination (a sidecar's per-port outbound listeners).
    bind_to_port: bool = True
    # Hand each connection to the listener of its original destination (iptables
    # REDIRECT'ed traffic, virtualOutbound); Envoy adds the original_dst filter itself.
    use_original_dst: bool = False
    listener_filters: tuple[ListenerFilter, ...] = ()
    # How long listener filters may wait for the first bytes; and whether a connection
    # that sent none by then (a server-first protocol) still gets a chain.
    listener_filters_timeout_ms: int | None = None
    continue_on_listener_filters_timeout: bool = False
    default_chain: FilterChain | None = None  # no chain matched
    traffic_direction: TrafficDirection = "UNSPECIFIED"

    @property
    def all_chains(self) -> tuple[FilterChain, ...]:
        default = (self.default_chain,) if self.default_chain is not None else ()
        return (*self.chains, *default)


@dataclass(frozen=True)
class CertificateSecret:
    """An SDS certificate and key. Never printed: repr leaves the bytes out."""

    name: str
    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)


@dataclass(frozen=True)
class ValidationSecret:
    """An SDS validation context: the CA bundle (and CRL) client certificates are checked with."""

    name: str
    trusted_ca: bytes = field(repr=False)
    crl: bytes = field(default=b"", repr=False)


SdsSecret = CertificateSecret | ValidationSecret


UNLIMITED = 2**32 - 1  # Istio's default limits: no circuit breaking unless a DR says


@dataclass(frozen=True)
class CircuitBreakers:
    max_connections: int = UNLIMITED
    max_pending_requests: int = UNLIMITED
    max_requests: int = UNLIMITED
    max_retries: int = UNLIMITED


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_5xx: int | None = None
    consecutive_gateway_errors: int | None = None
    interval_ms: int | None = None
    base_ejection_time_ms: int | None = None
    max_ejection_percent: int | None = None


@dataclass(frozen=True)
class TcpKeepalive:
    probes: int | None = None
    time_s: int | None = None
    interval_s: int | None = None


@dataclass(frozen=True)
class UpstreamTls:
    """TLS to the upstream (DestinationRule tls SIMPLE/MUTUAL): SDS names or file paths."""

    sni: str = ""  # "" : Envoy's auto_sni from the request's Host
    certificate_secret: str = ""  # SDS name of the client certificate (MUTUAL, credentialName)
    ca_secret: str = ""  # SDS name of the trusted CA (credentialName)
    certificate_file: str = ""
    private_key_file: str = ""
    ca_file: str = ""
    subject_alt_names: tuple[SanMatch, ...] = ()
    insecure_skip_verify: bool = False

    @property
    def secret_names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.certificate_secret, self.ca_secret) if n)


@dataclass(frozen=True)
class HashPolicy:
    """A route's consistent-hash key, from its destination's DestinationRule."""

    kind: Literal["header", "cookie", "source_ip", "query"]
    name: str = ""
    cookie_path: str = ""
    cookie_ttl_ms: int | None = None


ClusterDiscovery = Literal["EDS", "STATIC", "STRICT_DNS", "LOGICAL_DNS", "ORIGINAL_DST"]


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    # A Unix domain socket instead (address and port unused): a Sidecar ingress
    # `defaultEndpoint: unix:///path`; a leading "@" is Linux's abstract namespace.
    path: str = ""


@dataclass(frozen=True)
class Cluster:
    """A cluster: an outbound service port (and subset) with its DestinationRule applied,
    a sidecar's inbound port (`inbound|<port>||`), or one of the fixed clusters
    (PassthroughCluster: ORIGINAL_DST; BlackHoleCluster: STATIC with no endpoints)."""

    name: str
    connect_timeout_ms: int = 10_000
    lb_policy: str = "LEAST_REQUEST"  # ORIGINAL_DST needs CLUSTER_PROVIDED
    http2: bool = False
    # HTTP/1.1 or HTTP/2 upstream, as the downstream spoke (Istio's passthrough
    # clusters); wins over http2.
    use_downstream_protocol: bool = False
    discovery: ClusterDiscovery = "EDS"
    # STATIC: addresses; STRICT_DNS/LOGICAL_DNS: names Envoy resolves. Other kinds: none.
    inline_endpoints: tuple[Endpoint, ...] = ()
    circuit_breakers: CircuitBreakers = CircuitBreakers()
    max_requests_per_connection: int | None = None
    idle_timeout_ms: int | None = None
    tcp_keepalive: TcpKeepalive | None = None
    outlier: OutlierDetection | None = None
    healthy_panic_threshold: int | None = None  # minHealthPercent
    ring_size: int | None = None  # RING_HASH minimum ring size
    maglev_table_size: int | None = None
    tls: UpstreamTls | None = None
    # The source address of upstream connections: Istio's inbound clusters use
    # 127.0.0.6, which its iptables rules let through uncaptured.
    upstream_bind_address: str = ""
    cleanup_interval_ms: int | None = None  # ORIGINAL_DST: how long unused hosts stay

    @property
    def direction(self) -> Direction:
        """Inbound (to the proxy's own workload) or outbound, as the name says."""
        if self.name == INBOUND_PASSTHROUGH_CLUSTER:
            return "inbound"
        parsed = ClusterName.parse(self.name)
        return parsed.direction if parsed is not None else "outbound"

    # The service (prefix "") and DestinationRule sections it was made from.
    sources: FieldSources = ()


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
    secrets: tuple[SdsSecret, ...] = ()
