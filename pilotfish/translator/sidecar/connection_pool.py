"""A Sidecar's connectionPool (`ingress[].connectionPool`, `inboundConnectionPool`),
checked as Istio's validation checks it (validateConnectionPool): something set, no
negative limit, durations of at least 1ms (pilotfish rounds them to whole milliseconds
everywhere, so finer ones are not refused)."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from pilotfish.api.durations import duration_problem
from pilotfish.api.networking.v1alpha3 import destination_rule_pb2 as dr_pb

_POOL = dr_pb.ConnectionPoolSettings


def pool_problems(pool: dr_pb.ConnectionPoolSettings, path: str) -> list[tuple[str, str]]:
    """(field, message) for each problem, in the order of the fields."""
    if not (pool.HasField("http") or pool.HasField("tcp")):
        return [(path, "connection pool must have at least one field")]
    found: list[tuple[str, str]] = []
    if pool.HasField("http"):
        http, at = pool.http, f"{path}.http"
        for name, value in (
            ("http1MaxPendingRequests", http.http1_max_pending_requests),
            ("http2MaxRequests", http.http2_max_requests),
            ("maxRequestsPerConnection", http.max_requests_per_connection),
            ("maxRetries", http.max_retries),
            ("maxConcurrentStreams", http.max_concurrent_streams),
        ):
            if value < 0:
                found.append((f"{at}.{name}", f"{name} must be non-negative"))
        if http.HasField("idle_timeout"):
            found += _duration(http.idle_timeout, f"{at}.idleTimeout")
        upgrade = http.h2_upgrade_policy == _POOL.HTTPSettings.UPGRADE
        if upgrade and http.use_client_protocol:
            found.append(
                (f"{at}.useClientProtocol", "must not be true when h2UpgradePolicy is UPGRADE")
            )
        if http.HasField("http2_keep_alive"):
            keepalive, ka = http.http2_keep_alive, f"{at}.http2KeepAlive"
            for name, field in (("interval", "interval"), ("timeout", "timeout")):
                if keepalive.HasField(field):
                    found += _duration(getattr(keepalive, field), f"{ka}.{name}")
                else:
                    found.append((f"{ka}.{name}", f"http2 keepalive {name} is required"))
    if pool.HasField("tcp"):
        tcp, at = pool.tcp, f"{path}.tcp"
        if tcp.max_connections < 0:
            found.append((f"{at}.maxConnections", "maxConnections must be non-negative"))
        for name, field in (
            ("connectTimeout", "connect_timeout"),
            ("maxConnectionDuration", "max_connection_duration"),
        ):
            if tcp.HasField(field):
                found += _duration(getattr(tcp, field), f"{at}.{name}")
        idle = tcp.idle_timeout
        if tcp.HasField("idle_timeout") and (idle.seconds or idle.nanos):  # 0s: disabled
            found += _duration(idle, f"{at}.idleTimeout")
        if tcp.HasField("tcp_keepalive"):
            probes = tcp.tcp_keepalive
            for name in ("time", "interval"):
                if probes.HasField(name):
                    found += _duration(getattr(probes, name), f"{at}.tcpKeepalive.{name}")
    return found


def _duration(d: Duration, path: str) -> list[tuple[str, str]]:
    # Istio's rule: at least 1ms (pilotfish's one duration rule, api/durations.py).
    problem = duration_problem(d, positive=True)
    return [] if problem is None else [(path, problem)]


# What pilotfish reads of a pool but does not translate (as for DestinationRules).
_UNSUPPORTED = (
    ("tcp", "max_connection_duration", "maxConnectionDuration"),
    ("tcp", "idle_timeout", "idleTimeout"),
    ("http", "max_concurrent_streams", "maxConcurrentStreams"),
    ("http", "use_client_protocol", "useClientProtocol"),
    ("http", "http2_keep_alive", "http2KeepAlive"),
)


def unsupported_fields(pool: dr_pb.ConnectionPoolSettings, path: str) -> list[str]:
    """The set fields of `pool` that are not translated, as field paths."""
    found = []
    for part, name, json_name in _UNSUPPORTED:
        if not pool.HasField(part):
            continue
        settings = getattr(pool, part)
        field = settings.DESCRIPTOR.fields_by_name[name]
        is_set = settings.HasField(name) if field.message_type else bool(getattr(settings, name))
        if is_set:
            found.append(f"{path}.{part}.{json_name}")
    return found
