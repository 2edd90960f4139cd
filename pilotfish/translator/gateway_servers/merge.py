"""Which servers may share a listener, as Istio's MergeGateways decides.

Each kind says how it shares (`sharing`): plaintext HTTP servers with each other only; a
TCP server with none; TLS-based servers (HTTPS, TLS, passthrough, auto-passthrough) with
each other, told apart by SNI, so one host may appear once per listener; and a route
configuration a server names alone (HTTPS) must be its own. The first server wins; a
later one that conflicts is reported and left out, so Envoy never gets two filter chains
with the same match.
"""

from __future__ import annotations

from collections import defaultdict

from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.gateway_servers import KINDS
from pilotfish.translator.servers import BoundServer


def merge_servers(
    servers: list[BoundServer], diag: Diagnostics
) -> dict[tuple[str, int], list[BoundServer]]:
    """Servers grouped by (bind, listener port), keeping only those that can share it."""
    merged: dict[tuple[str, int], list[BoundServer]] = defaultdict(list)
    tls_hosts: dict[tuple[str, int], dict[str, BoundServer]] = defaultdict(dict)
    route_names: set[str] = set()
    for bound in servers:
        key = (bound.bind, bound.listener_port)
        first = merged[key][0] if merged[key] else None
        sharing = KINDS[bound.kind].sharing
        if first is not None and (sharing != KINDS[first.kind].sharing or sharing == "alone"):
            why = (
                "a TCP server needs a port of its own"
                if "alone" in (sharing, KINDS[first.kind].sharing)
                else f"{bound.protocol} and {first.protocol} servers cannot share a port"
            )
            diag.error(
                bound.gateway,
                f"{bound.path}.port",
                f"{bound.where()} is already used by the {first.describe()}: {why}: server skipped",
            )
            continue
        if sharing == "tls":
            claimed = tls_hosts[key]
            duplicates = sorted({h for _, h in bound.hosts()} & claimed.keys())
            if duplicates:
                owners = ", ".join(f"{h} by the {claimed[h].describe()}" for h in duplicates)
                diag.error(
                    bound.gateway,
                    f"{bound.path}.hosts",
                    f"TLS on {bound.where()} already serves {owners}; "
                    "SNI cannot tell two servers apart: server skipped",
                )
                continue
        route = KINDS[bound.kind].route_name(bound)
        if route is not None:
            if route in route_names:
                diag.error(
                    bound.gateway,
                    f"{bound.path}.port.name",
                    f"another {bound.protocol} server of this Gateway on port "
                    f"{bound.port_number} has the port name {bound.server.port.name!r}: each "
                    "needs its own (it names the route configuration): server skipped",
                )
                continue
            route_names.add(route)
        if sharing == "tls":
            for _, host in bound.hosts():
                tls_hosts[key][host] = bound
        merged[key].append(bound)
    return {k: v for k, v in merged.items() if v}
