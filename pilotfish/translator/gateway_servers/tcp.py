"""Plain TCP servers: one chain, a TCP proxy to the first `tcp:` rule that applies; such
a server takes its listener alone."""

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


class TcpServers:
    sharing: Sharing = "alone"

    def route_name(self, bound: BoundServer) -> str | None:
        return None

    def chains(self, servers: Sequence[BoundServer], ctx: ChainContext) -> list[Chain]:
        found: list[Chain] = []
        for bound in servers:
            route = tcp_route(bound, ctx.virtual_services, ctx.registry, ctx.diag)
            if route is None:
                nothing_routed(bound, "tcp", ctx.diag)
                continue
            chain = ir.TcpFilterChain(route.stat_prefix, route.clusters)
            found.append(Chain(chain, bound.gateway, f"{bound.path}.hosts", bound.describe()))
        return found
