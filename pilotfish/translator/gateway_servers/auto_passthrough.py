"""AUTO_PASSTHROUGH servers: TLS forwarded by an SNI that names the destination itself.

As Istio: a client (typically a sidecar in another network) sets the SNI to
`outbound_.<port>_.<subset>_.<fqdn>`; the gateway has one chain per service port its
server hosts cover, matching that name, and a TCP proxy to a cluster of the same name
(Istio's "SNI-DNAT" clusters), which has the service port's endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

from pilotfish.model.objects import ServicePort
from pilotfish.translator import ir
from pilotfish.translator.cluster_names import ClusterName
from pilotfish.translator.gateway_servers.base import Chain, ChainContext, Sharing
from pilotfish.translator.hosts import matches
from pilotfish.translator.registry import RegistryService, ServiceRegistry, port_protocol
from pilotfish.translator.servers import BoundServer


class AutoPassthroughServers:
    sharing: Sharing = "tls"

    def route_name(self, bound: BoundServer) -> str | None:
        return None

    def chains(self, servers: Sequence[BoundServer], ctx: ChainContext) -> list[Chain]:
        found: list[Chain] = []
        for bound in servers:
            chains = _chains(bound, ctx.registry)
            if not chains:
                ctx.diag.warning(
                    bound.gateway,
                    f"{bound.path}.hosts",
                    "AUTO_PASSTHROUGH: no service matches these hosts: nothing is served",
                )
            found.extend(chains)
        return found


def _chains(bound: BoundServer, registry: ServiceRegistry) -> list[Chain]:
    """A chain and an SNI-DNAT cluster per service port the server's hosts cover, and per
    DestinationRule subset of it (`outbound_.<port>_.<subset>_.<fqdn>`, the subset's
    endpoints)."""
    targets = []
    for service in registry.services():
        if not _covered(bound, service) or service.resolution in ("DNS", "DNS_ROUND_ROBIN"):
            continue  # SNI-DNAT clusters are EDS: a name to resolve has no place there
        rule = registry.destination_rule(service.hostname)
        subsets = [(s.name, dict(s.labels)) for s in rule.spec.subsets] if rule else []
        for port in service.ports:
            if port_protocol(port) == "UDP":
                continue
            targets.append(_chain(bound, service, port, registry))
            targets.extend(
                _chain(bound, service, port, registry, n, labels) for n, labels in subsets
            )
    return targets


def _covered(bound: BoundServer, service: RegistryService) -> bool:
    return any(
        (ns is None or ns == service.namespace) and matches(host, service.hostname)
        for ns, host in bound.hosts()
    )


def _chain(
    bound: BoundServer,
    service: RegistryService,
    port: ServicePort,
    registry: ServiceRegistry,
    subset: str = "",
    labels: dict[str, str] | None = None,
) -> Chain:
    name = ClusterName.outbound(port.port, service.hostname, subset).sni
    cluster = ir.WeightedCluster(name, 0)
    return Chain(
        ir.TcpFilterChain(
            stat_prefix=name, clusters=(cluster,), match=ir.ChainMatch(server_names=(name,))
        ),
        bound.gateway,
        f"{bound.path}.hosts",
        bound.describe(),
        cluster=ir.Cluster(name),
        load_assignment=ir.LoadAssignment(name, registry.endpoints(service, port, labels)),
    )
