"""Typed configuration objects: what the translator reads, whatever the source.

Istio kinds keep their spec as the protobuf message (our protos/); Kubernetes kinds are
small frozen dataclasses holding only the fields pilotfish uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

from google.protobuf.message import Message


@dataclass(frozen=True, order=True)
class ConfigKey:
    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str

    def __str__(self) -> str:
        return (
            f"{self.kind}/{self.namespace}/{self.name}"
            if self.namespace
            else f"{self.kind}/{self.name}"
        )


@dataclass(frozen=True)
class Origin:
    """Where an object was read from: a file and document index, or an API server."""

    file: str | None = None
    document: int | None = None


@dataclass(frozen=True)
class ObjectMeta:
    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    creation_timestamp: str = ""  # RFC 3339 as the API writes it; "" when a file omits it
    resource_version: str = ""

    def sort_key(self) -> tuple[str, str, str]:
        """Istio's order for merging configs: oldest first, then name, then namespace.

        A manifest without creationTimestamp sorts before any that has one.
        """
        return (self.creation_timestamp, self.name, self.namespace)


@dataclass(frozen=True)
class IstioObject:
    """Gateway, VirtualService, DestinationRule, ServiceEntry, Sidecar, WorkloadEntry."""

    kind: str
    meta: ObjectMeta
    spec: Message
    origin: Origin = Origin()


@dataclass(frozen=True)
class ServicePort:
    port: int
    name: str = ""
    target_port: int | str = 0  # a number, or the name of a container port
    protocol: str = "TCP"
    app_protocol: str = ""


@dataclass(frozen=True)
class Service:
    meta: ObjectMeta
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str] = field(default_factory=dict)
    type: str = "ClusterIP"
    cluster_ip: str = ""
    external_name: str = ""
    origin: Origin = Origin()
    kind: str = "Service"


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    name: str
    namespace: str


@dataclass(frozen=True)
class EndpointPort:
    port: int
    name: str = ""
    protocol: str = "TCP"
    app_protocol: str = ""


@dataclass(frozen=True)
class EndpointAddress:
    addresses: tuple[str, ...]
    ready: bool = True
    target_ref: ObjectRef | None = None
    hostname: str = ""


@dataclass(frozen=True)
class EndpointSubset:
    """Addresses that all serve the same (target) ports."""

    ports: tuple[EndpointPort, ...]
    endpoints: tuple[EndpointAddress, ...]


@dataclass(frozen=True)
class EndpointSet:
    """A discovery.k8s.io/v1 EndpointSlice (one subset) or a v1 Endpoints (its subsets).

    Both say the same thing: these addresses serve these target ports of a Service.
    """

    meta: ObjectMeta
    service_name: str
    subsets: tuple[EndpointSubset, ...]
    address_type: str = "IPv4"
    origin: Origin = Origin()
    kind: str = "EndpointSlice"  # or "Endpoints"


@dataclass(frozen=True)
class Secret:
    meta: ObjectMeta
    type: str
    data: Mapping[str, bytes]
    origin: Origin = Origin()
    kind: str = "Secret"

    def __repr__(self) -> str:  # key material must never reach a log line
        where = f"{self.meta.namespace}/{self.meta.name}"
        return f"Secret({where}, type={self.type}, keys={sorted(self.data)})"


@dataclass(frozen=True)
class Namespace:
    meta: ObjectMeta
    origin: Origin = Origin()
    kind: str = "Namespace"


@dataclass(frozen=True)
class IngressBackend:
    service: str
    port: int | str  # a number, or the name of a Service port


@dataclass(frozen=True)
class IngressPath:
    path: str
    path_type: str  # Exact, Prefix or ImplementationSpecific
    backend: IngressBackend


@dataclass(frozen=True)
class IngressRule:
    host: str  # "" matches every host
    paths: tuple[IngressPath, ...]


@dataclass(frozen=True)
class IngressTLS:
    hosts: tuple[str, ...]
    secret_name: str


@dataclass(frozen=True)
class Ingress:
    """networking.k8s.io Ingress, v1 and v1beta1 alike (v1beta1's serviceName/servicePort
    are read into the v1 shape)."""

    meta: ObjectMeta
    class_name: str  # spec.ingressClassName; "" when unset
    rules: tuple[IngressRule, ...]
    tls: tuple[IngressTLS, ...] = ()
    default_backend: IngressBackend | None = None
    origin: Origin = Origin()
    kind: str = "Ingress"


@dataclass(frozen=True)
class IngressClass:
    meta: ObjectMeta
    controller: str
    origin: Origin = Origin()
    kind: str = "IngressClass"


@dataclass(frozen=True)
class Pod:
    """What the registry needs of a Pod: its labels are its endpoints' labels (as in
    Istio, DestinationRule subsets select endpoints by them), its IP joins it to them."""

    meta: ObjectMeta
    pod_ip: str = ""
    origin: Origin = Origin()
    kind: str = "Pod"


ConfigObject = Union[  # noqa: UP007
    IstioObject, Service, EndpointSet, Secret, Namespace, Ingress, IngressClass, Pod
]


def key_of(obj: ConfigObject) -> ConfigKey:
    return ConfigKey(obj.kind, obj.meta.namespace, obj.meta.name)
