"""A proxy's own Services (Istio's "service targets"), and the ports a gateway listens on.

As Istio works them out from the registry: in the proxy's namespace, every Kubernetes
Service whose selector picks the proxy's labels, and every ServiceEntry with an endpoint
at the proxy's IP (one of its `endpoints`, or a WorkloadEntry its `workloadSelector`
picks). Each port of such a Service is served on a target port: a Service's `targetPort`
(a named one as its endpoints resolve it); for an entry, the endpoint's own port of that
name, else the port's `targetPort`, else its number.

Targets come oldest Service first (creation time, then host name), as Istio orders them:
where two Services claim one target port, a sidecar's inbound side serves the first.
A gateway listens on target ports; a sidecar accepts its inbound traffic on them.

A Gateway server on port N listens on the target port of every such port numbered N
(Istio, for selector Gateways, on the first one's only: see the README), leaving out
Services labelled `experimental.istio.io/disable-gateway-port-translation` (any value, as
Istio reads it); with none, on N itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import cast

from pilotfish.api.networking.v1alpha3 import service_entry_pb2 as se_pb
from pilotfish.api.networking.v1alpha3 import workload_entry_pb2 as we_pb
from pilotfish.model.configset import ConfigSet
from pilotfish.model.objects import ConfigObject, IstioObject, ServicePort
from pilotfish.translator.labels import selects
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import (
    ServiceRegistry,
    entry_endpoint_port,
    entry_ports,
    port_protocol,
)

DISABLE_PORT_TRANSLATION = "experimental.istio.io/disable-gateway-port-translation"


@dataclass(frozen=True)
class ServiceTarget:
    """One port of one of the proxy's own Services, and where the proxy serves it."""

    service: str  # `Service ns/name` or `ServiceEntry ns/name`
    port: int
    target_port: int
    translates: bool = True  # False: the Service opted out of gateway port translation
    hostname: str = ""  # the Service's FQDN (a ServiceEntry: one target per host)
    port_name: str = ""
    protocol: str = "UNSUPPORTED"  # Istio's protocol of the port (registry.port_protocol)
    source: ConfigObject | None = field(default=None, compare=False)  # to report problems at


def service_targets(
    config: ConfigSet, proxy: Proxy, registry: ServiceRegistry
) -> list[ServiceTarget]:
    found: list[tuple[str, ServiceTarget]] = []  # (creation time, target)
    for s in registry.selecting(proxy.namespace, proxy.labels):
        translates = DISABLE_PORT_TRANSLATION not in s.service.meta.labels
        name = f"Service {s.namespace}/{s.service.meta.name}"
        targets = []
        for port in s.ports:
            if isinstance(port.target_port, int):
                target: int | None = port.target_port or port.port
            else:
                target = registry.named_target_port(s, port)
            if target:
                targets.append(_target(name, s.hostname, port, target, translates, s.service))
        created = s.service.meta.creation_timestamp
        found += [(created, t) for t in targets]
    for entry in config.istio("ServiceEntry"):
        if entry.meta.namespace != proxy.namespace:
            continue
        spec = cast(se_pb.ServiceEntry, entry.spec)
        translates = DISABLE_PORT_TRANSLATION not in entry.meta.labels
        name = f"ServiceEntry {entry.meta.namespace}/{entry.meta.name}"
        for endpoint_ports in _workloads_at(config, entry, proxy.ip):
            for host in spec.hosts:
                targets = [
                    _target(
                        name,
                        host.lower(),
                        port,
                        entry_endpoint_port(port, endpoint_ports),
                        translates,
                        entry,
                    )
                    for port in entry_ports(spec)
                ]
                found += [(entry.meta.creation_timestamp, t) for t in targets]
    found.sort(key=lambda ct: (ct[0], ct[1].hostname))  # stable: a Service's ports in order
    return [t for _, t in found]


def _target(
    name: str,
    hostname: str,
    port: ServicePort,
    target: int,
    translates: bool,
    source: ConfigObject,
) -> ServiceTarget:
    protocol = port_protocol(port)
    return ServiceTarget(name, port.port, target, translates, hostname, port.name, protocol, source)


def _workloads_at(config: ConfigSet, entry: IstioObject, ip: str) -> Iterator[Mapping[str, int]]:
    """The named ports of each workload of the entry at `ip`: its own endpoints, or the
    WorkloadEntries of its namespace its workloadSelector picks."""
    spec = cast(se_pb.ServiceEntry, entry.spec)
    if spec.HasField("workload_selector"):
        for workload in config.istio("WorkloadEntry"):
            we = cast(we_pb.WorkloadEntry, workload.spec)
            if (
                workload.meta.namespace == entry.meta.namespace
                and we.address == ip
                and selects(spec.workload_selector.labels, we.labels)
            ):
                yield we.ports
        return
    for endpoint in spec.endpoints:
        if endpoint.address == ip:
            yield endpoint.ports


def listener_ports(server_port: int, targets: list[ServiceTarget]) -> tuple[int, ...]:
    """Where a server on `server_port` listens: each target port of the proxy's Services
    for that port, else the port itself."""
    found = {t.target_port for t in targets if t.translates and t.port == server_port}
    return tuple(sorted(found)) or (server_port,)


def addressed_ips(config: ConfigSet) -> frozenset[tuple[str, str]]:
    """(namespace, IP) of every ServiceEntry endpoint and WorkloadEntry: the only proxy
    IPs that can change a translation (proxies of one shape elsewhere share one)."""
    found: set[tuple[str, str]] = set()
    for entry in config.istio("ServiceEntry"):
        spec = cast(se_pb.ServiceEntry, entry.spec)
        found.update((entry.meta.namespace, e.address) for e in spec.endpoints if e.address)
    for workload in config.istio("WorkloadEntry"):
        address = cast(we_pb.WorkloadEntry, workload.spec).address
        if address:
            found.add((workload.meta.namespace, address))
    return frozenset(found)
