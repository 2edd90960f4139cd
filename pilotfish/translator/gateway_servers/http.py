"""Plaintext HTTP servers (HTTP, HTTP2, GRPC, GRPC-WEB): all of them on a listener share
one chain, an HCM fetching route configuration `http.<listener port>` over RDS."""

from __future__ import annotations

from collections.abc import Sequence

from pilotfish.translator import http_options, ir
from pilotfish.translator.gateway_servers.base import Chain, ChainContext, Sharing
from pilotfish.translator.gateway_servers.virtual_hosts import http_filters, virtual_hosts
from pilotfish.translator.servers import BoundServer


class HttpServers:
    sharing: Sharing = "http"

    def route_name(self, bound: BoundServer) -> str | None:
        return None  # http.<port> is shared by design

    def chains(self, servers: Sequence[BoundServer], ctx: ChainContext) -> list[Chain]:
        first = servers[0]
        listener = f"{first.bind}_{first.listener_port}"
        route_name = f"http.{first.listener_port}"
        vhosts = virtual_hosts(servers, ctx)
        chain = ir.HttpFilterChain(
            route_name,
            stat_prefix=f"outbound_{listener}",
            http_filters=http_filters(vhosts),
            options=http_options.GATEWAY,
        )
        route_config = ir.RouteConfig(route_name, vhosts)
        return [
            Chain(chain, first.gateway, first.path, first.describe(), route_config=route_config)
        ]
