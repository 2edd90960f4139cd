"""The service registry: Kubernetes Services and their endpoints, looked up by host name."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from pilotfish.model.configset import ConfigSet
from pilotfish.model.objects import EndpointPort, EndpointSet, Service, ServicePort
from pilotfish.translator import ir
from pilotfish.translator.hosts import DEFAULT_DOMAIN_SUFFIX


@dataclass(frozen=True)
class RegistryService:
    hostname: str  # the FQDN, e.g. httpbin.default.svc.cluster.local
    service: Service

    @property
    def namespace(self) -> str:
        return self.service.meta.namespace

    @property
    def ports(self) -> tuple[ServicePort, ...]:
        return self.service.ports

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)


def port_protocol(port: ServicePort) -> str:
    """Istio's protocol selection: appProtocol first, then the port name's prefix."""
    candidates = [port.app_protocol.lower(), port.name.lower().split("-", 1)[0]]
    for candidate in candidates:
        if candidate in ("http2", "h2c", "kubernetes.io/h2c"):
            return "HTTP2"
        if candidate == "grpc":
            return "GRPC"
        if candidate in ("http", "grpc-web"):
            return "HTTP"
        if candidate in ("https", "tls", "tcp", "mongo", "redis", "mysql"):
            return candidate.upper()
    return "TCP" if port.protocol == "TCP" else port.protocol


class ServiceRegistry:
    def __init__(self, config: ConfigSet, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> None:
        self._by_host = {
            f"{s.meta.name}.{s.meta.namespace}.svc.{domain_suffix}": RegistryService(
                f"{s.meta.name}.{s.meta.namespace}.svc.{domain_suffix}", s
            )
            for s in config.services()
        }
        self._endpoint_sets: dict[tuple[str, str], list[EndpointSet]] = defaultdict(list)
        for es in config.endpoint_sets():
            self._endpoint_sets[(es.meta.namespace, es.service_name)].append(es)

    def services(self) -> list[RegistryService]:
        return [self._by_host[h] for h in sorted(self._by_host)]

    def lookup(self, hostname: str) -> RegistryService | None:
        return self._by_host.get(hostname)

    def selecting(self, namespace: str, labels: Mapping[str, str]) -> list[RegistryService]:
        """Services in `namespace` whose (non-empty) selector picks a pod with `labels`."""
        return [
            s
            for s in self.services()
            if s.namespace == namespace
            and s.service.selector
            and all(labels.get(k) == v for k, v in s.service.selector.items())
        ]

    def endpoints(self, service: RegistryService, port: ServicePort) -> tuple[ir.Endpoint, ...]:
        """Ready endpoints of one service port, from EndpointSlices (else v1 Endpoints)."""
        sets = self._endpoint_sets.get((service.namespace, service.service.meta.name), [])
        slices = [s for s in sets if s.kind == "EndpointSlice"]
        found: set[ir.Endpoint] = set()
        for endpoint_set in slices or sets:
            for subset in endpoint_set.subsets:
                target = _target_port(port, subset.ports, single=len(service.ports) == 1)
                if target is None:
                    continue
                for endpoint in subset.endpoints:
                    if endpoint.ready:
                        found.update(ir.Endpoint(a, target) for a in endpoint.addresses)
        return tuple(sorted(found, key=lambda e: (e.address, e.port)))

    def named_target_port(self, service: RegistryService, port: ServicePort) -> int | None:
        """What a named targetPort resolves to, as the endpoints' port numbers say."""
        for endpoint_set in self._endpoint_sets.get(
            (service.namespace, service.service.meta.name), []
        ):
            for subset in endpoint_set.subsets:
                target = _target_port(port, subset.ports, single=len(service.ports) == 1)
                if target is not None:
                    return target
        return None


def _target_port(port: ServicePort, ports: tuple[EndpointPort, ...], *, single: bool) -> int | None:
    """The endpoint port serving a service port: same name, or the only one there is."""
    for p in ports:
        if p.name == port.name:
            return p.port
    if single and len(ports) == 1 and not ports[0].name:
        return ports[0].port
    if not ports and isinstance(port.target_port, int):
        return port.target_port
    return None
