"""Which port a route destination names, as Istio decides it (for HTTP, TCP, TLS routes
and mirrors alike): the port written; else the service's only port; else the port of the
Gateway server the route is built for."""

from __future__ import annotations

from dataclasses import dataclass

from pilotfish.translator.registry import RegistryService


@dataclass(frozen=True)
class DestinationPort:
    number: int
    defaulted: str = ""  # why the server's port stood in for an unwritten one ("": it did not)


def destination_port(
    written: int, service: RegistryService | None, server_port: int
) -> DestinationPort:
    if written:
        return DestinationPort(written)
    if service is not None and len(service.ports) == 1:
        return DestinationPort(service.ports[0].port)
    why = "the service has several ports" if service else "the service is unknown"
    return DestinationPort(server_port, why)
