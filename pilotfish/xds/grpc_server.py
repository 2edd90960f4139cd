"""The gRPC server the ADS service runs in, with options for many long-lived streams."""

from __future__ import annotations

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc

from pilotfish.xds.ads import AdsServer

SERVER_OPTIONS: list[tuple[str, int]] = [
    # grpc cancels calls the application has not picked up yet beyond a soft limit
    # (randomly) and a hard one (1000/3000 by default): a storm of ~2,000 Envoys
    # connecting at once otherwise loses streams before our handler ever sees them.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 50_000),
    # Envoy's bootstrap sends HTTP/2 PINGs every 30 s on the xDS connection; grpc's
    # default (one ping per 5 min without data) answers an idle stream's pings with
    # GOAWAY "too_many_pings" and drops the proxy.
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # Our own pings find proxies that vanished without a FIN (node died, network cut)
    # so their streams, tasks and sync status do not linger.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # grpc binds with SO_REUSEPORT by default: a second control plane on the same port
    # would "succeed" and silently take half the connections. Fail instead.
    ("grpc.so_reuseport", 0),
]


class GrpcBindError(OSError):
    """The xDS server could not listen on the address it was given."""


def age_options(max_age: float | None, grace: float) -> list[tuple[str, int]]:
    """grpc's connection age limit: after ``max_age`` seconds (grpc adds +-10% jitter, so
    replicas' proxies do not all reconnect at once) the server sends GOAWAY, and after
    ``grace`` more closes the connection. An ADS stream never ends by itself: the grace
    bounds how long the proxy keeps its old stream, and then it reconnects, maybe to
    another replica behind the load balancer. None: connections live as long as they
    are used (grpc's default)."""
    if max_age is None:
        return []
    return [
        ("grpc.max_connection_age_ms", max(1, round(max_age * 1000))),
        ("grpc.max_connection_age_grace_ms", max(1, round(grace * 1000))),
    ]


async def start_grpc_server(
    ads: AdsServer,
    address: str,
    *,
    max_connection_age: float | None = None,
    max_connection_age_grace: float = 10.0,
) -> tuple[grpc.aio.Server, int]:
    """Start serving ADS on ``address`` (``host:port``; port 0 picks a free one), closing
    connections older than ``max_connection_age`` seconds (see ``age_options``).

    Returns the started ``grpc.aio.Server`` and the port it listens on. Stop it with
    ``await server.stop(grace)``.
    """
    options = SERVER_OPTIONS + age_options(max_connection_age, max_connection_age_grace)
    server = grpc.aio.server(options=options)
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, server)
    try:
        port = int(server.add_insecure_port(address))
    except RuntimeError as e:
        raise GrpcBindError(f"cannot listen for xDS on {address}: {e}") from e
    if port == 0:  # older grpc reported a failed bind this way
        raise GrpcBindError(f"cannot listen for xDS on {address}")
    await server.start()
    return server, port
