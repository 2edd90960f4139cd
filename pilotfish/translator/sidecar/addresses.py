"""The addresses and kinds of registry services, as a sidecar's outbound half reads them.

Istio: a Kubernetes Service listens on its cluster IP; a headless one (`clusterIP:
None`) has no address and its clients reach pods directly (resolution "passthrough"); an
ExternalName Service is an alias of another host and gets no listener or cluster of its
own. A ServiceEntry listens on each of its `addresses` (an IP, or a CIDR matched on
0.0.0.0); without any, on 0.0.0.0. Resolution NONE is passthrough too.
"""

from __future__ import annotations

import ipaddress
from typing import cast

from pilotfish.api.networking.v1alpha3 import service_entry_pb2 as se_pb
from pilotfish.translator import ir
from pilotfish.translator.registry import RegistryService

WILDCARD = "0.0.0.0"
HEADLESS = "None"


def is_passthrough(service: RegistryService) -> bool:
    """Clients reach the endpoints' own addresses: headless Services, resolution NONE."""
    if service.entry is None:
        return service.service.cluster_ip == HEADLESS
    return service.resolution == "NONE"


def addresses(service: RegistryService) -> tuple[str, ...]:
    """The service's virtual addresses (cluster IP, or a ServiceEntry's addresses)."""
    if service.entry is None:
        ip = service.service.cluster_ip
        return (ip,) if ip and ip != HEADLESS else ()
    return tuple(cast(se_pb.ServiceEntry, service.entry.spec).addresses)


def listen_addresses(service: RegistryService) -> tuple[str, ...]:
    """Where TCP listeners for the service go: each address, else the wildcard."""
    return addresses(service) or (WILDCARD,)


def is_cidr(address: str) -> bool:
    return "/" in address


def cidr_range(address: str) -> ir.CidrRange | None:
    """An address or CIDR as a prefix range; None for the wildcard or garbage."""
    try:
        network = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return None
    if network.network_address.is_unspecified:
        return None
    return ir.CidrRange(str(network.network_address), network.prefixlen)
