"""The service registry: Kubernetes Services and ServiceEntries, and their endpoints,
looked up by host name.

A Kubernetes endpoint's labels are those of the Pod its EndpointSlice/Endpoints entry
points to (`targetRef`), as in Istio: DestinationRule subsets select endpoints by them.
A ServiceEntry becomes one registry service per host (with a synthesised Service holding
its ports); its `endpoints` carry their own labels. Kubernetes Services win over a
ServiceEntry naming the same host.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from pilotfish.api.networking.v1alpha3 import service_entry_pb2 as se_pb
from pilotfish.model.configset import ConfigSet
from pilotfish.model.objects import (
    EndpointPort,
    EndpointSet,
    IstioObject,
    ObjectMeta,
    ObjectRef,
    Pod,
    Service,
    ServicePort,
)
from pilotfish.translator import ir
from pilotfish.translator.cluster_names import ClusterName
from pilotfish.translator.destination_rules import AppliedRule, DestinationRules, hash_policy
from pilotfish.translator.hosts import DEFAULT_DOMAIN_SUFFIX, fqdn, is_wildcard
from pilotfish.translator.labels import selects
from pilotfish.translator.visibility import exported_to

Resolution = str  # "KUBERNETES", or a ServiceEntry's: NONE, STATIC, DNS, DNS_ROUND_ROBIN


@dataclass(frozen=True)
class LabeledEndpoint:
    endpoint: ir.Endpoint
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryService:
    hostname: str  # the FQDN, e.g. httpbin.default.svc.cluster.local
    service: Service
    entry: IstioObject | None = None  # the ServiceEntry, when this host comes from one

    @property
    def resolution(self) -> Resolution:
        if self.entry is None:
            return "KUBERNETES"
        spec = cast(se_pb.ServiceEntry, self.entry.spec)
        return se_pb.ServiceEntry.Resolution.Name(spec.resolution)

    @property
    def namespace(self) -> str:
        return self.service.meta.namespace

    @property
    def ports(self) -> tuple[ServicePort, ...]:
        return self.service.ports

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)

    @property
    def alias_of(self) -> str:
        """The host an ExternalName Service stands for ("" for any other service): Istio
        routes to that host's clusters (a short name is a Service of the alias's
        namespace, as Kubernetes' DNS would resolve it)."""
        if self.entry is not None or self.service.type != "ExternalName":
            return ""
        target = self.service.external_name.rstrip(".").lower()
        return fqdn(target, self.namespace) if target else ""


EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


def service_export_to(service: Service) -> list[str]:
    """A Kubernetes Service's exportTo: its annotation, comma-separated (unset: everywhere)."""
    raw = service.meta.annotations.get(EXPORT_TO_ANNOTATION, "")
    return [t.strip() for t in raw.split(",") if t.strip()]


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


# Protocol names of Istio's own APIs (a Sidecar or ServiceEntry port's `protocol`).
ISTIO_PROTOCOLS = frozenset(
    {"HTTP", "HTTP2", "HTTPS", "GRPC", "GRPC-WEB", "HTTP_PROXY", "TCP", "TLS", "UDP"}
    | {"MONGO", "REDIS", "MYSQL"}
)


def parse_protocol(name: str) -> str:
    """A protocol as Istio's APIs write it, in any case; else UNSUPPORTED (Istio sniffs
    the traffic)."""
    upper = name.upper()
    return upper if upper in ISTIO_PROTOCOLS else "UNSUPPORTED"


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
    def __init__(
        self,
        config: ConfigSet,
        domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
        proxy_namespace: str | None = None,  # None: everything, whatever its exportTo
    ) -> None:
        self.mesh = config.mesh
        self.destination_rules = DestinationRules(config, proxy_namespace, domain_suffix)
        self._rule_cache: dict[str, AppliedRule | None] = {}
        self._by_host: dict[str, RegistryService] = {}
        for entry in config.istio("ServiceEntry"):  # oldest first: the first one wins a host
            spec = cast(se_pb.ServiceEntry, entry.spec)
            if proxy_namespace is not None and not exported_to(
                spec.export_to, entry.meta.namespace, proxy_namespace
            ):
                continue
            for host in spec.hosts:
                self._by_host.setdefault(host.lower(), _entry_service(host.lower(), entry))
        for s in config.services():
            if proxy_namespace is not None and not exported_to(
                service_export_to(s), s.meta.namespace, proxy_namespace
            ):
                continue
            host = f"{s.meta.name}.{s.meta.namespace}.svc.{domain_suffix}"
            self._by_host[host] = RegistryService(host, s)
        self._endpoint_sets: dict[tuple[str, str], list[EndpointSet]] = defaultdict(list)
        for es in config.endpoint_sets():
            self._endpoint_sets[(es.meta.namespace, es.service_name)].append(es)
        self._pod_labels: dict[tuple[str, str], Mapping[str, str]] = {
            (p.meta.namespace, p.meta.name): p.meta.labels
            for p in config.of_kind("Pod")
            if isinstance(p, Pod)
        }
        self._pod_labels_by_ip: dict[tuple[str, str], Mapping[str, str]] = {
            (p.meta.namespace, p.pod_ip): p.meta.labels
            for p in config.of_kind("Pod")
            if isinstance(p, Pod) and p.pod_ip
        }

    def destination_rule(self, hostname: str) -> AppliedRule | None:
        """The DestinationRule in force for a host, as the proxy sees it."""
        if hostname not in self._rule_cache:  # asked per port, subset and route: once each
            service = self._by_host.get(hostname)
            namespace = service.namespace if service else ""
            self._rule_cache[hostname] = self.destination_rules.for_host(hostname, namespace)
        return self._rule_cache[hostname]

    def hash_policy(self, clusters: Iterable[ir.WeightedCluster]) -> ir.HashPolicy | None:
        """The consistent-hash key of a route's destinations' DestinationRules: Istio puts
        it on the route. With several destinations it is used only when they all agree."""
        found = set()
        for c in clusters:
            name = ClusterName.parse(c.cluster)
            if name is None or name.direction != "outbound":
                return None
            rule = self.destination_rule(name.host)
            policy = rule.policy(name.port, name.subset) if rule else None
            found.add(hash_policy(policy.load_balancer) if policy else None)
        return found.pop() if len(found) == 1 else None

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
            and selects(s.service.selector, labels)
        ]

    def endpoints(
        self,
        service: RegistryService,
        port: ServicePort,
        labels: Mapping[str, str] | None = None,
    ) -> tuple[ir.Endpoint, ...]:
        """Ready endpoints of one service port, from EndpointSlices (else v1 Endpoints) or
        the ServiceEntry; with `labels` (a subset's), only endpoints whose labels hold them."""
        wanted = labels or {}
        found = {
            e.endpoint for e in self.labeled_endpoints(service, port) if selects(wanted, e.labels)
        }
        return tuple(sorted(found, key=lambda e: (e.address, e.port)))

    def labeled_endpoints(
        self, service: RegistryService, port: ServicePort
    ) -> list[LabeledEndpoint]:
        if service.entry is not None:
            return _entry_endpoints(service, port)
        sets = self._endpoint_sets.get((service.namespace, service.service.meta.name), [])
        slices = [s for s in sets if s.kind == "EndpointSlice"]
        found: list[LabeledEndpoint] = []
        for endpoint_set in slices or sets:
            for subset in endpoint_set.subsets:
                target = _target_port(port, subset.ports, single=len(service.ports) == 1)
                if target is None:
                    continue
                for endpoint in subset.endpoints:
                    if not endpoint.ready:
                        continue
                    for address in endpoint.addresses:
                        labels = self._labels(service.namespace, endpoint.target_ref, address)
                        found.append(LabeledEndpoint(ir.Endpoint(address, target), labels))
        return found

    def _labels(self, namespace: str, ref: ObjectRef | None, address: str) -> Mapping[str, str]:
        """The endpoint's Pod's labels: by targetRef, else by the Pod's IP."""
        if ref is not None and ref.kind == "Pod":
            found = self._pod_labels.get((ref.namespace or namespace, ref.name))
            if found is not None:
                return found
        return self._pod_labels_by_ip.get((namespace, address), {})

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


def entry_ports(spec: se_pb.ServiceEntry) -> tuple[ServicePort, ...]:
    """A ServiceEntry's ports as a Service's (targetPort defaults to the number)."""
    return tuple(
        ServicePort(
            port=p.number,
            name=p.name,
            target_port=p.target_port or p.number,
            # Istio's protocol names are what appProtocol would say: port_protocol reads them.
            app_protocol=p.protocol.lower(),
        )
        for p in spec.ports
    )


def entry_endpoint_port(port: ServicePort, endpoint_ports: Mapping[str, int]) -> int:
    """Where an entry's endpoint (or WorkloadEntry) serves a port, as Istio: its own port
    of the port's name, else the port's targetPort, else its number."""
    target = port.target_port if isinstance(port.target_port, int) else 0
    return endpoint_ports.get(port.name) or target or port.port


def _entry_service(host: str, entry: IstioObject) -> RegistryService:
    spec = cast(se_pb.ServiceEntry, entry.spec)
    meta = ObjectMeta(name=host, namespace=entry.meta.namespace)
    service = Service(meta=meta, ports=entry_ports(spec), origin=entry.origin)
    return RegistryService(host, service, entry)


def _entry_endpoints(service: RegistryService, port: ServicePort) -> list[LabeledEndpoint]:
    """A ServiceEntry's endpoints for a port: its `endpoints` (their port by the port's
    name, else the targetPort), or for DNS with none, the host itself."""
    assert service.entry is not None
    spec = cast(se_pb.ServiceEntry, service.entry.spec)
    found = [
        LabeledEndpoint(ir.Endpoint(we.address, entry_endpoint_port(port, we.ports)), we.labels)
        for we in spec.endpoints
        if we.address
    ]
    target = entry_endpoint_port(port, {})
    dns = spec.resolution in (se_pb.ServiceEntry.DNS, se_pb.ServiceEntry.DNS_ROUND_ROBIN)
    if not found and dns and not is_wildcard(service.hostname):
        found.append(LabeledEndpoint(ir.Endpoint(service.hostname, target)))
    return found
