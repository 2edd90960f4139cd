"""What a sidecar accepts inbound: one InboundPort per port its workload is called on.

Istio's rules (listener_inbound.go buildInboundChainConfigs, cluster.go
buildInboundClusters):
- Without Sidecar `ingress:` listeners, every target port of the proxy's own Services
  (service_targets.py). The oldest Service claims a target port and its port's protocol
  decides how the port is served; a later Service that wants another protocol on it is
  reported (Istio's "conflicting inbound listener" status).
- A Sidecar with `ingress:` listeners replaces them all (ingress.py).
- Traffic is sent on to the workload at the address it was sent to, the pod's IP, from
  source 127.0.0.6 (an ORIGINAL_DST cluster; the capture rules let 127.0.0.6 through),
  or, under MeshConfig `inboundTrafficPolicy: LOCALHOST`, to 127.0.0.1 and the port.
- Ports the sidecar itself holds (15001, 15006, 15021, 15090) are never a Service's
  inbound port: Istio skips them (a chain there would shadow Envoy's own).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal, cast

from pilotfish.api.networking.v1alpha3 import destination_rule_pb2 as dr_pb
from pilotfish.api.networking.v1alpha3 import service_entry_pb2 as se_pb
from pilotfish.model.mesh_config import InboundPolicy
from pilotfish.model.objects import IstioObject, Service
from pilotfish.translator.cluster_names import ClusterName
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.service_targets import ServiceTarget

ListenerProtocol = Literal["HTTP", "TCP", "AUTO"]

WILDCARD = "0.0.0.0"
LOCALHOST = "127.0.0.1"
LOCALHOST_V6 = "::1"
# Istio's source address for traffic the sidecar sends to its own workload: the capture
# rules return it before redirecting, so it reaches the application and not Envoy again.
PASSTHROUGH_SOURCE = "127.0.0.6"
PASSTHROUGH_SOURCE_V6 = "::6"
INBOUND_CAPTURE_PORT = 15006  # virtualInbound
# The sidecar's own listeners (and what they are), which no inbound port may take.
RESERVED_PORTS = {
    15001: "virtualOutbound",
    INBOUND_CAPTURE_PORT: "virtualInbound",
    15021: "the readiness listener",
    15090: "the Prometheus listener",
}

_HTTP = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"})
_TCP = frozenset({"TCP", "HTTPS", "TLS", "MONGO", "REDIS", "MYSQL"})
_NOT_TCP = frozenset({"UDP", "SCTP"})
GRPC_PROTOCOLS = frozenset({"GRPC", "GRPC-WEB"})


def listener_protocol(protocol: str) -> ListenerProtocol:
    """How Istio serves a protocol inbound: an HTTP connection manager, tcp_proxy, or
    both with HTTP told apart by the http_inspector (UNSUPPORTED: sniffing)."""
    if protocol in _HTTP:
        return "HTTP"
    if protocol in _TCP:
        return "TCP"
    return "AUTO"


@dataclass(frozen=True)
class Upstream:
    """Where an inbound cluster connects to the workload."""

    address: str = ""  # "": where the connection was going (ORIGINAL_DST)
    port: int = 0
    path: str = ""  # a Unix domain socket instead

    @property
    def is_original_destination(self) -> bool:
        return not (self.address or self.path)


ORIGINAL_DESTINATION = Upstream()


@dataclass(frozen=True)
class PoolSource:
    """A connectionPool, and where it was written (to report problems at)."""

    pool: dr_pb.ConnectionPoolSettings
    obj: IstioObject
    path: str


@dataclass(frozen=True)
class InboundPort:
    port: int  # where the traffic arrives: chain match, cluster `inbound|<port>||`
    service_port: int  # the Service's port: the HTTP virtual host `inbound|http|<port>`
    protocol: str  # Istio's protocol name (registry.port_protocol, parse_protocol)
    upstream: Upstream = ORIGINAL_DESTINATION
    hostname: str = ""  # the Service whose DestinationRule connectionPool applies
    bind: str = WILDCARD  # names the chain (`<bind>_<port>`); a bound listener's address
    bind_to_port: bool = False  # a listener of its own (Sidecar captureMode NONE)
    # The Sidecar's connectionPool for the port (over the DestinationRule's).
    connection_pool: PoolSource | None = None

    @property
    def listener_protocol(self) -> ListenerProtocol:
        return listener_protocol(self.protocol)

    @property
    def cluster_name(self) -> str:
        return str(ClusterName.inbound(self.port))

    @property
    def name(self) -> str:
        return f"{self.bind}_{self.port}"


def service_ports(
    targets: list[ServiceTarget],
    policy: InboundPolicy,
    pool: PoolSource | None,
    diag: Diagnostics,
) -> list[InboundPort]:
    """The inbound ports of the proxy's own Services (`targets`, oldest first)."""
    claimed: dict[int, ServiceTarget] = {}
    for target in targets:
        if target.protocol in _NOT_TCP:
            continue  # Envoy serves TCP here; a UDP port is none of its business
        if target.target_port in RESERVED_PORTS:
            _report(
                target,
                f"target port {target.target_port} is the sidecar's own "
                f"({RESERVED_PORTS[target.target_port]}): not served inbound",
                diag,
            )
            continue
        first = claimed.get(target.target_port)
        if first is None:
            claimed[target.target_port] = target
        elif first.hostname != target.hostname and first.protocol != target.protocol:
            _report(
                target,
                f"target port {target.target_port} is already served inbound as "
                f"{first.protocol} for {first.hostname} (the older Service): "
                f"not as {target.protocol}",
                diag,
            )
    ports = []
    for port, target in sorted(claimed.items()):
        upstream = Upstream(LOCALHOST, port) if policy == "LOCALHOST" else ORIGINAL_DESTINATION
        ports.append(
            InboundPort(
                port,
                target.port,
                target.protocol,
                upstream,
                hostname=target.hostname,
                connection_pool=pool,
            )
        )
    return ports


def _report(target: ServiceTarget, message: str, diag: Diagnostics) -> None:
    source = target.source
    if source is None:
        return
    if isinstance(source, Service):
        numbers = [p.port for p in source.ports]
    else:
        numbers = [p.number for p in cast(se_pb.ServiceEntry, cast(IstioObject, source).spec).ports]
    index = numbers.index(target.port) if target.port in numbers else None
    diag.warning(source, "spec.ports" if index is None else f"spec.ports[{index}]", message)


def is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False


def passthrough_source(address: str) -> str:
    """The source Istio binds connections to its own workload to, by address family."""
    return PASSTHROUGH_SOURCE_V6 if is_ipv6(address) else PASSTHROUGH_SOURCE
