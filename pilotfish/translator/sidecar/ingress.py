"""A Sidecar's `ingress:` listeners: checked as Istio's validation checks them, then the
inbound ports they stand for.

Istio (pkg/config/validation ValidateSidecar; listener_inbound.go, cluster.go
buildInboundClustersFromSidecar):
- `port` is required: a number 1-65535, an optional DNS-label name, a known protocol or
  none (then the traffic is sniffed); `targetPort` means nothing on a Sidecar. Port
  numbers are unique. `bind` is an IP address.
- `defaultEndpoint` is where the traffic goes: `127.0.0.1:PORT` / `[::1]:PORT` (the
  application on loopback), `0.0.0.0:PORT` / `[::]:PORT` (the pod's own IP, from source
  127.0.0.6), `unix:///path` (a Unix socket); unset, the connection's original
  destination. The chain is named after `bind`, else after the pod's IP.
- `captureMode: NONE` makes the port a listener of its own, bound to its address; the
  others are chains of virtualInbound.
- `connectionPool` (else the Sidecar's `inboundConnectionPool`) overrides the
  DestinationRule's for the port's cluster.
- `tls` is applied by Istio only under ENABLE_TLS_ON_SIDECAR_INGRESS (off by default),
  from certificate files on the proxy; pilotfish reports Istio's validation errors and
  otherwise ignores it, as Istio does by default: the traffic reaches the workload as it
  came.

Istio refuses a whole Sidecar with any of these errors; here the listener at fault is left
out (reported at its field) and the rest of the Sidecar applies.
"""

from __future__ import annotations

import ipaddress
import re
from typing import cast

from pilotfish.api.networking.v1alpha3 import gateway_pb2 as gw_pb
from pilotfish.api.networking.v1alpha3 import sidecar_pb2 as sc_pb
from pilotfish.model.objects import IstioObject
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.hosts import is_ip
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import parse_protocol
from pilotfish.translator.service_targets import ServiceTarget
from pilotfish.translator.sidecar.connection_pool import pool_problems, unsupported_fields
from pilotfish.translator.sidecar.inbound_ports import (
    LOCALHOST,
    LOCALHOST_V6,
    ORIGINAL_DESTINATION,
    RESERVED_PORTS,
    WILDCARD,
    InboundPort,
    PoolSource,
    Upstream,
    is_ipv6,
    listener_protocol,
)

UNIX_PREFIX = "unix://"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENDPOINT_HOSTS = ("", "127.0.0.1", "0.0.0.0", "::1", "::")
_TLS = gw_pb.ServerTLSSettings


class _Invalid(Exception):
    """An ingress listener Istio's validation refuses: (field, message)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def ingress_ports(
    sidecar: IstioObject,
    proxy: Proxy,
    targets: list[ServiceTarget],
    default_pool: PoolSource | None,
    diag: Diagnostics,
) -> list[InboundPort]:
    """The inbound ports of the Sidecar's valid `ingress:` listeners, in order;
    `default_pool` is its inboundConnectionPool (sidecar_pool)."""
    spec = cast(sc_pb.Sidecar, sidecar.spec)
    ports: list[InboundPort] = []
    for index, listener in enumerate(spec.ingress):
        path = f"spec.ingress[{index}]"
        try:
            _check(listener, path, {p.port for p in ports})
        except _Invalid as exc:
            diag.error(sidecar, exc.field, f"{exc.message}: listener left out")
            continue
        for field, message in _warnings(listener, path):
            diag.warning(sidecar, field, message)
        number = listener.port.number
        pool = default_pool
        if listener.HasField("connection_pool"):
            pool = PoolSource(listener.connection_pool, sidecar, f"{path}.connectionPool")
        ports.append(
            InboundPort(
                port=number,
                service_port=number,
                protocol=parse_protocol(listener.port.protocol),
                upstream=_upstream(listener.default_endpoint, proxy.ip),
                # Istio's cluster for the port takes the policy of a Service served there.
                hostname=next((t.hostname for t in targets if t.target_port == number), ""),
                bind=listener.bind or _pod_address(proxy.ip),
                bind_to_port=listener.capture_mode == sc_pb.CaptureMode.NONE,
                connection_pool=pool,
            )
        )
    return ports


def sidecar_pool(sidecar: IstioObject, diag: Diagnostics) -> PoolSource | None:
    """The Sidecar's `inboundConnectionPool`, if set and valid: every inbound port's
    pool unless its ingress listener has its own."""
    spec = cast(sc_pb.Sidecar, sidecar.spec)
    if not spec.HasField("inbound_connection_pool"):
        return None
    problems = pool_problems(spec.inbound_connection_pool, "spec.inboundConnectionPool")
    for field, message in problems:
        diag.error(sidecar, field, f"{message}: inboundConnectionPool ignored")
    if problems:
        return None
    path = "spec.inboundConnectionPool"
    for field in unsupported_fields(spec.inbound_connection_pool, path):
        diag.warning(sidecar, field, "not supported yet: ignored")
    return PoolSource(spec.inbound_connection_pool, sidecar, path)


def _check(listener: sc_pb.IstioIngressListener, path: str, taken: set[int]) -> None:
    if not listener.HasField("port"):
        raise _Invalid(f"{path}.port", "port is required for ingress listeners")
    port = listener.port
    if not 0 < port.number <= 65535:
        raise _Invalid(f"{path}.port.number", f"port number {port.number} is not 1-65535")
    if port.name and not _DNS_LABEL.match(port.name):
        raise _Invalid(f"{path}.port.name", f"invalid port name {port.name!r} (a DNS label)")
    if port.protocol and parse_protocol(port.protocol) == "UNSUPPORTED":
        raise _Invalid(f"{path}.port.protocol", f"unsupported protocol {port.protocol!r}")
    if port.target_port:
        raise _Invalid(f"{path}.port.targetPort", "targetPort has no impact on Sidecars")
    if port.number in taken:
        raise _Invalid(f"{path}.port.number", "ports on IP bound listeners must be unique")
    if listener.bind and not is_ip(listener.bind):
        raise _Invalid(f"{path}.bind", f"bind {listener.bind!r} is not an IP address")
    reserved = RESERVED_PORTS.get(port.number)
    if reserved:
        # Istio lets some through; traffic there would loop through Envoy, or Envoy
        # would refuse the listener.
        raise _Invalid(f"{path}.port.number", f"port {port.number} is the sidecar's {reserved}")
    _check_endpoint(listener.default_endpoint, f"{path}.defaultEndpoint")
    if listener.HasField("tls"):
        _check_tls(listener.tls, parse_protocol(port.protocol), f"{path}.tls")
    if listener.HasField("connection_pool"):
        problems = pool_problems(listener.connection_pool, f"{path}.connectionPool")
        if problems:
            raise _Invalid(*problems[0])


def _check_endpoint(raw: str, path: str) -> None:
    if not raw:
        return
    if raw.startswith(UNIX_PREFIX):
        socket = raw.removeprefix(UNIX_PREFIX)
        if not socket:
            raise _Invalid(path, "unix address must not be empty")
        if not socket.startswith("@") and (not socket.startswith("/") or socket.endswith("/")):
            raise _Invalid(path, f"{socket} is not an absolute path to a file")
        return
    split = split_host_port(raw)
    if split is None:
        raise _Invalid(path, f"defaultEndpoint {raw!r} is not host:port")
    host, port = split
    if host not in _ENDPOINT_HOSTS:
        raise _Invalid(
            path,
            "defaultEndpoint must be of form 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, "
            "[::]:<port>, unix://<path> or unset",
        )
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise _Invalid(path, f"defaultEndpoint port {port!r} is not a port number 1-65535")


def _check_tls(tls: gw_pb.ServerTLSSettings, protocol: str, path: str) -> None:
    unsupported = [
        ("subjectAltNames", bool(tls.subject_alt_names)),
        ("httpsRedirect", tls.https_redirect),
        ("credentialName", bool(tls.credential_name)),
        ("credentialNames", bool(tls.credential_names)),
        ("tlsCertificates", bool(tls.tls_certificates)),
    ]
    for name, is_set in unsupported:
        if is_set:
            raise _Invalid(f"{path}.{name}", f"{name} is not supported in Sidecar ingress tls")
    if tls.mode in (_TLS.ISTIO_MUTUAL, _TLS.AUTO_PASSTHROUGH):
        mode = _TLS.TLSmode.Name(tls.mode)
        raise _Invalid(f"{path}.mode", f"mode {mode} cannot be set in Sidecar ingress tls")
    if protocol not in ("HTTPS", "TLS"):
        raise _Invalid(path, "tls settings need an HTTPS or TLS port")


def _warnings(listener: sc_pb.IstioIngressListener, path: str) -> list[tuple[str, str]]:
    found = []
    if listener.HasField("tls"):
        found.append(
            (
                f"{path}.tls",
                "tls on a Sidecar ingress is not supported (Istio applies it only with "
                "ENABLE_TLS_ON_SIDECAR_INGRESS, from certificate files on the proxy): "
                "ignored, the traffic reaches the workload as it came",
            )
        )
    pool = listener.connection_pool
    protocol = parse_protocol(listener.port.protocol)
    if listener.HasField("connection_pool"):
        found += [
            (field, "not supported yet: ignored")
            for field in unsupported_fields(pool, f"{path}.connectionPool")
        ]
    http_settings = listener.HasField("connection_pool") and pool.HasField("http")
    if http_settings and listener_protocol(protocol) != "HTTP":
        found.append(
            (
                f"{path}.connectionPool.http",
                f"HTTP settings on a port whose protocol is not HTTP "
                f"({listener.port.protocol or 'sniffed'}): only the TCP settings apply",
            )
        )
    return found


def split_host_port(raw: str) -> tuple[str, str] | None:
    """`host:port` or `[v6]:port` into its parts, as Go's net.SplitHostPort; None if not."""
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            return None
        return host, rest[1:]
    host, sep, port = raw.rpartition(":")
    if not sep or ":" in host:
        return None
    return host, port


def _upstream(raw: str, proxy_ip: str) -> Upstream:
    """Istio's cluster endpoint for a defaultEndpoint (already checked)."""
    if raw.startswith(UNIX_PREFIX):
        return Upstream(path=raw.removeprefix(UNIX_PREFIX))
    split = split_host_port(raw) if raw else None
    if split is None or not split[0]:
        return ORIGINAL_DESTINATION  # Istio: without an address, where it was going
    host, port = split[0], int(split[1])
    v6 = is_ipv6(proxy_ip)
    if host == "0.0.0.0":  # the pod's IPv4 address
        return Upstream(LOCALHOST if v6 else proxy_ip, port)
    if host == "::":  # the pod's IPv6 address
        return Upstream(proxy_ip if v6 else LOCALHOST_V6, port)
    # Loopback: the proxy's own family's.
    return Upstream(LOCALHOST_V6 if v6 else LOCALHOST, port)


def _pod_address(ip: str) -> str:
    """Istio names (and binds) a Sidecar ingress listener without `bind` after the pod's
    IP when it is a unicast address (Go's IsGlobalUnicast, private ranges included)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return WILDCARD
    if address.is_unspecified or address.is_loopback or address.is_multicast:
        return WILDCARD
    if address.is_link_local or str(address) == "255.255.255.255":
        return WILDCARD
    return str(address)
