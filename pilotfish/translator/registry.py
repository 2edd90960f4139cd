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


_PROTOCOLS = {
    "http": "HTTP",
    "http2": "HTTP2",
    "grpc": "GRPC",
    "grpc-web": "GRPC-WEB",
    "https": "HTTPS",
    "tls": "TLS",
    "tcp": "TCP",
    "udp": "UDP",
    "mongo": "MONGO",
    "redis": "REDIS",
    "mysql": "MYSQL",
    # Kubernetes' own appProtocol names.
    "kubernetes.io/h2c": "HTTP2",
    "kubernetes.io/ws": "HTTP",
    "kubernetes.io/wss": "HTTPS",
}
HTTP2_PROTOCOLS = frozenset({"HTTP2", "GRPC", "GRPC-WEB"})  # spoken upstream over HTTP/2


def port_protocol(port: ServicePort) -> str:
    """Istio's protocol selection: appProtocol decides when set; else the port name's
    prefix (`grpc-web` whole, as it holds a dash); else UNSUPPORTED (Istio sniffs it)."""
    if port.protocol in ("UDP", "SCTP"):
        return port.protocol
    if port.app_protocol:
        return _PROTOCOLS.get(port.app_protocol.lower(), "UNSUPPORTED")
    name = port.name.lower()
    if name.startswith("grpc-web"):
        return "GRPC-WEB"
    return _PROTOCOLS.get(name.split("-", 1)[0], "UNSUPPORTED")


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
