"""PASSTHROUGH servers (HTTPS or TLS): TLS is not terminated; one chain per VirtualService
`tls[].match[]` that applies, matched by its `sniHosts` within the server's hosts, a TCP
proxy to its route. The client sees the upstream's own certificate."""

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
from pilotfish.translator.tcp_routes import sni_routes


class PassthroughServers:
    sharing: Sharing = "tls"

    def route_name(self, bound: BoundServer) -> str | None:
        return None

    def chains(self, servers: Sequence[BoundServer], ctx: ChainContext) -> list[Chain]:
        found: list[Chain] = []
        for bound in servers:
            routes = sni_routes(bound, ctx.virtual_services, ctx.registry, ctx.diag)
            if not routes:
                nothing_routed(bound, "tls", ctx.diag)
            found.extend(
                Chain(
                    ir.TcpFilterChain(
                        r.route.stat_prefix, r.route.clusters, ir.ChainMatch(r.server_names)
                    ),
                    r.vs,
                    r.path,
                    f"VirtualService {r.vs.meta.namespace}/{r.vs.meta.name} {r.path}",
                )
                for r in routes
            )
        return found
