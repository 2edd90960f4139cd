"""HTTPS servers that terminate TLS (SIMPLE, MUTUAL, OPTIONAL_MUTUAL): one chain each,
matched by the SNI of its hosts, TLS over SDS with ALPN h2/http1.1, and an HCM fetching
its own route configuration `https.<port>.<port name>.<gateway>.<namespace>`."""

from __future__ import annotations

from collections.abc import Sequence

from pilotfish.translator import http_options, ir
from pilotfish.translator.gateway_servers.base import Chain, ChainContext, Sharing
from pilotfish.translator.gateway_servers.virtual_hosts import http_filters, virtual_hosts
from pilotfish.translator.servers import BoundServer
from pilotfish.translator.tls import HTTP_ALPN, server_tls


def https_route_name(bound: BoundServer) -> str:
    """Istio's RDS name: one per server (its virtual hosts only), by declared port."""
    gw = bound.gateway.meta
    return f"https.{bound.port_number}.{bound.server.port.name}.{gw.name}.{gw.namespace}"


class HttpsServers:
    sharing: Sharing = "tls"

    def route_name(self, bound: BoundServer) -> str | None:
        return https_route_name(bound)

    def chains(self, servers: Sequence[BoundServer], ctx: ChainContext) -> list[Chain]:
        return [c for bound in servers for c in self._chains(bound, ctx)]

    def _chains(self, bound: BoundServer, ctx: ChainContext) -> list[Chain]:
        termination = server_tls(bound, ctx.credentials, ctx.diag, alpn=HTTP_ALPN)
        if termination is None:
            return []
        route_name = https_route_name(bound)
        vhosts = virtual_hosts([bound], ctx)
        chain = ir.HttpFilterChain(
            route_name,
            # Istio's stat prefix: the server's name when it has one.
            stat_prefix=bound.server.name or f"outbound_{bound.bind}_{bound.listener_port}",
            match=ir.ChainMatch(bound.sni_names()),
            tls=termination.tls,
            http_filters=http_filters(vhosts),
            options=http_options.GATEWAY_TLS,
        )
        return [
            Chain(
                chain,
                bound.gateway,
                f"{bound.path}.hosts",
                bound.describe(),
                termination.secrets,
                ir.RouteConfig(route_name, vhosts),
            )
        ]
