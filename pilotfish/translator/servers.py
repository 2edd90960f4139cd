"""Gateway servers: which select the proxy, where each listens, and what kind each is.

Follows Istio: Gateways from any namespace select the proxy by labels, in Istio's order
(creation time, name); each server listens on the target ports of the proxy's own
Services for its port (service_targets.py), else on its own port: a server with several
gives one BoundServer per listener port. Its kind (from protocol and tls mode) picks the
builder in gateway_servers/ that owns what it becomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from pilotfish.api.networking.v1alpha3 import gateway_pb2 as gw_pb
from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.configset import ConfigSet
from pilotfish.model.objects import IstioObject
from pilotfish.model.references import gateway_refs
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.hosts import fqdn, intersect, strip_namespace
from pilotfish.translator.labels import selects
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.service_targets import listener_ports, service_targets

HTTP_PROTOCOLS = {"HTTP", "HTTP2", "GRPC", "GRPC-WEB"}
DEFAULT_BIND = "0.0.0.0"
TLS = gw_pb.ServerTLSSettings

# http: plaintext HTTP family (one shared chain per port); https: TLS terminated, then
# HTTP; tls: TLS terminated, then TCP; passthrough / auto_passthrough: TLS forwarded by
# SNI; tcp: opaque TCP.
ServerKind = Literal["http", "https", "tls", "passthrough", "auto_passthrough", "tcp"]
TERMINATING_MODES = {TLS.SIMPLE, TLS.MUTUAL, TLS.OPTIONAL_MUTUAL}


@dataclass(frozen=True)
class BoundServer:
    """One Gateway server on one of its listener ports, with its Gateway and its kind."""

    gateway: IstioObject
    index: int
    server: gw_pb.Server
    listener_port: int
    kind: ServerKind = "http"

    @property
    def gateway_key(self) -> str:
        return f"{self.gateway.meta.namespace}/{self.gateway.meta.name}"

    @property
    def path(self) -> str:
        return f"spec.servers[{self.index}]"

    @property
    def protocol(self) -> str:
        return self.server.port.protocol.upper()

    @property
    def bind(self) -> str:
        return self.server.bind or DEFAULT_BIND

    @property
    def port_number(self) -> int:
        """The port the Gateway declares (names use it; Envoy listens on listener_port)."""
        return self.server.port.number

    def describe(self) -> str:
        return f"{self.protocol} server {self.path} of Gateway {self.gateway_key}"

    def where(self) -> str:
        """The port as the user wrote it, and the listener when that differs."""
        listener = f"{self.bind}_{self.listener_port}"
        if self.listener_port == self.port_number:
            return f"port {self.port_number}"
        return f"port {self.port_number} (listener {listener})"

    def hosts(self) -> list[tuple[str | None, str]]:
        """(namespace restriction, host) per server host; `./h` is the Gateway's namespace."""
        found = []
        for raw in self.server.hosts:
            ns, host = strip_namespace(raw)
            found.append((self.gateway.meta.namespace if ns == "." else ns, host))
        return found

    def sni_names(self) -> tuple[str, ...]:
        """SNI names a terminating server matches: none (any) when `*` is a host."""
        names = sorted({host for _, host in self.hosts()})
        return () if "*" in names else tuple(names)


def servers_for(
    config: ConfigSet, proxy: Proxy, registry: ServiceRegistry, diag: Diagnostics
) -> list[BoundServer]:
    """Every usable server of the Gateways selecting `proxy`, in Istio's order."""
    # The proxy's own Services: they map a server port to the ports the proxy listens on.
    targets = service_targets(config, proxy, registry)
    found = []
    for gateway in config.istio("Gateway"):
        spec = cast(gw_pb.Gateway, gateway.spec)
        if not selects(spec.selector, proxy.labels):
            continue
        for i, server in enumerate(spec.servers):
            if not server.port.number:
                diag.error(
                    gateway, f"spec.servers[{i}].port.number", "a server needs a port number"
                )
                continue
            if not server.hosts:
                diag.error(gateway, f"spec.servers[{i}].hosts", "a server needs at least one host")
                continue
            kind = _kind(gateway, i, server, diag)
            if kind is None:
                continue
            for port in listener_ports(server.port.number, targets):
                found.append(BoundServer(gateway, i, server, port, kind))
    return found


def _kind(
    gateway: IstioObject, index: int, server: gw_pb.Server, diag: Diagnostics
) -> ServerKind | None:
    """What the server does, as Istio reads protocol and tls together; None if unusable."""
    path = f"spec.servers[{index}]"
    protocol = server.port.protocol.upper()
    has_tls = server.HasField("tls")
    tls = server.tls
    if protocol in HTTP_PROTOCOLS:
        if has_tls and (tls.credential_name or tls.credential_names or tls.mode != TLS.PASSTHROUGH):
            diag.warning(
                gateway,
                f"{path}.tls",
                f"a {protocol} server is plaintext: only tls.httpsRedirect applies, "
                "the rest is ignored (use protocol HTTPS to terminate TLS)",
            )
        return "http"
    if protocol not in ("HTTPS", "TLS", "TCP"):
        diag.warning(
            gateway,
            f"{path}.port.protocol",
            f"protocol {server.port.protocol} is not supported yet: server skipped",
        )
        return None
    if not has_tls:
        if protocol == "TCP":
            return "tcp"
        diag.error(gateway, f"{path}.tls", f"a {protocol} server needs tls settings: skipped")
        return None
    if tls.mode == TLS.PASSTHROUGH:
        if tls.credential_name or tls.credential_names:
            diag.warning(
                gateway,
                f"{path}.tls.mode",
                "mode is PASSTHROUGH (the default): the credential is not used; "
                "set mode SIMPLE to terminate TLS",
            )
        return "passthrough"
    if tls.mode == TLS.AUTO_PASSTHROUGH:
        return "auto_passthrough"
    if tls.mode not in TERMINATING_MODES:
        diag.error(
            gateway,
            f"{path}.tls.mode",
            f"mode {TLS.TLSmode.Name(tls.mode)} needs the mesh's own certificates, "
            "which pilotfish does not issue: server skipped",
        )
        return None
    # Istio terminates a TCP server that has tls settings, as a TLS one.
    return "https" if protocol == "HTTPS" else "tls"


def bound_virtual_services(
    bound: BoundServer, virtual_services: list[IstioObject]
) -> list[tuple[IstioObject, list[str]]]:
    """VirtualServices bound to the server by `gateways:` and by host, with the hosts."""
    found = []
    server_hosts = bound.hosts()
    for vs in virtual_services:
        spec = cast(vs_pb.VirtualService, vs.spec)
        if bound.gateway_key not in gateway_refs(list(spec.gateways), vs.meta.namespace):
            continue
        hosts = _intersecting_hosts(server_hosts, vs, spec)
        if hosts:
            found.append((vs, hosts))
    return found


def _intersecting_hosts(
    server_hosts: list[tuple[str | None, str]], vs: IstioObject, spec: vs_pb.VirtualService
) -> list[str]:
    found = set()
    for vs_host in spec.hosts:
        vs_fqdn = fqdn(vs_host, vs.meta.namespace)
        for ns, server_host in server_hosts:
            if ns is not None and ns != vs.meta.namespace:
                continue
            hit = intersect(server_host, vs_fqdn)
            if hit is not None:
                found.add(hit)
    return sorted(found)
