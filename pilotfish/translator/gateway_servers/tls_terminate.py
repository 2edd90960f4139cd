"""TLS servers that terminate (SIMPLE, MUTUAL, OPTIONAL_MUTUAL; or TCP with tls): one
chain each, matched by the SNI of its hosts, TLS over SDS with no ALPN, then a TCP proxy
to the first `tcp:` rule that applies."""

from __future__ import annotations

from collections.abc import Sequence

from pilotfish.translator import ir
from pilotfish.translator.gateway_servers.base import (
    Chain,
    ChainContext,
    Sharing,
    nothing_routed,
)
from pilotfish.translator.servers import BoundServer
from pilotfish.translator.tcp_routes import tcp_route
from pilotfish.translator.tls import server_tls


class TlsTerminateServers:
    sharing: Sharing = "tls"

    def route_name(self, bound: BoundServer) -> str | None:
        return None

    def chains(self, servers: Sequence[BoundServer], ctx: ChainContext) -> list[Chain]:
        return [c for bound in servers for c in self._chains(bound, ctx)]

    def _chains(self, bound: BoundServer, ctx: ChainContext) -> list[Chain]:
        route = tcp_route(bound, ctx.virtual_services, ctx.registry, ctx.diag)
        if route is None:
            nothing_routed(bound, "tcp", ctx.diag)
            return []
        # No ALPN: what runs inside is not known to be HTTP (Istio offers h2 anyway).
        termination = server_tls(bound, ctx.credentials, ctx.diag, alpn=())
        if termination is None:
            return []
        chain = ir.TcpFilterChain(
            route.stat_prefix, route.clusters, ir.ChainMatch(bound.sni_names()), termination.tls
        )
        where = f"{bound.path}.hosts"
        return [Chain(chain, bound.gateway, where, bound.describe(), termination.secrets)]
