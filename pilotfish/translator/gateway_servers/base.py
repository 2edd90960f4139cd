"""What every Gateway server kind's builder shares: its interface, its context, and the
filter chain it hands back with what comes with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pilotfish.model.objects import ConfigObject, IstioObject
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.http_routes import RouteContext
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.secrets import Credentials
from pilotfish.translator.servers import BoundServer

# Which servers may share a listener, as Istio merges them: plaintext HTTP servers with
# each other; TLS-based ones with each other, told apart by SNI; a TCP server with none.
Sharing = Literal["http", "tls", "alone"]


@dataclass(frozen=True)
class ChainContext:
    """What building chains reads, for one proxy."""

    credentials: Credentials
    virtual_services: list[IstioObject]
    registry: ServiceRegistry
    diag: Diagnostics
    routes: RouteContext  # the proxy's namespace and labels, and how delegates are found


@dataclass(frozen=True)
class Chain:
    """A filter chain to add to a listener, with what comes with it if it is kept."""

    chain: ir.FilterChain
    owner: ConfigObject  # told when the chain cannot be added
    path: str
    what: str  # for the message to whoever later collides with it
    secrets: tuple[ir.SdsSecret, ...] = ()
    route_config: ir.RouteConfig | None = None
    cluster: ir.Cluster | None = None
    load_assignment: ir.LoadAssignment | None = None


class ServerKindBuilder(Protocol):
    """One kind of Gateway server: how it shares a listener, and the chains it builds."""

    @property
    def sharing(self) -> Sharing: ...

    def route_name(self, bound: BoundServer) -> str | None:
        """The route configuration this server alone names (None: none, or a shared one)."""
        ...

    def chains(self, servers: Sequence[BoundServer], ctx: ChainContext) -> list[Chain]:
        """The chains of these servers of the kind, consecutive on one listener."""
        ...


def nothing_routed(bound: BoundServer, rule_kind: str, diag: Diagnostics) -> None:
    diag.warning(
        bound.gateway,
        bound.path,
        f"no VirtualService bound to this server has a `{rule_kind}:` rule for port "
        f"{bound.port_number}: nothing is served on it",
    )
