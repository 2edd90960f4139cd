"""Which Sidecar resource applies to a sidecar proxy, and what its egress imports.

Istio's rules (pilot/pkg/model/push_context.go getSidecarScope, sidecar.go):
- In the proxy's namespace, Sidecars with a `workloadSelector` come first, oldest first:
  the first whose selector matches the proxy's labels applies. Else the namespace's
  Sidecar without a selector (the oldest, if several: the others are reported). Else the
  root namespace's Sidecar without a selector (MeshConfig `rootNamespace`), the mesh's
  default. Else none: everything exported to the namespace is visible (`*/*`).
- Each egress listener imports hosts written `namespace/host`: `*/` any namespace,
  `./` the proxy's namespace (even for the root namespace's Sidecar), `~ns/` (or `~/`)
  excludes hosts. `host` may be `*` or a `*.suffix` wildcard; a service is imported when
  its host falls under an imported host of its own namespace or of `*/`, and no
  exclusion covers it. A VirtualService is imported when one of its hosts and an import
  overlap (either covers the other: Istio's matching for non-Gateway-API routes).

The scope says nothing of exportTo: the registry applies that first, as Istio does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from pilotfish.api.networking.v1alpha3 import sidecar_pb2 as sc_pb
from pilotfish.model.configset import ConfigSet
from pilotfish.model.objects import IstioObject
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.hosts import fqdn, matches
from pilotfish.translator.labels import selects
from pilotfish.translator.proxy import Proxy

ANY_NAMESPACE = "*"
OutboundPolicy = Literal["ALLOW_ANY", "REGISTRY_ONLY"]
CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]


@dataclass(frozen=True)
class HostImport:
    """One `namespace/host` of an egress listener, resolved."""

    namespace: str  # ANY_NAMESPACE for `*/`
    host: str  # lowercase; `*`, `*.suffix` or a name
    excluded: bool = False

    def covers(self, namespace: str, hostname: str) -> bool:
        in_namespace = self.namespace in (ANY_NAMESPACE, namespace)
        return in_namespace and matches(self.host, hostname)

    def overlaps(self, namespace: str, hostname: str) -> bool:
        """For VirtualService hosts: either side may be the wider one."""
        in_namespace = self.namespace in (ANY_NAMESPACE, namespace)
        return in_namespace and (matches(self.host, hostname) or matches(hostname, self.host))


IMPORT_EVERYTHING = (HostImport(ANY_NAMESPACE, "*"),)


@dataclass(frozen=True)
class EgressScope:
    """One egress listener of the Sidecar (or the implied catch-all `*/*`)."""

    imports: tuple[HostImport, ...] = IMPORT_EVERYTHING
    port: int | None = None  # None: the catch-all listener, every port
    port_protocol: str = ""
    port_name: str = ""
    bind: str = ""
    capture_mode: CaptureMode = "DEFAULT"
    index: int | None = None  # position in spec.egress (None: implied)

    def imports_service(self, namespace: str, hostname: str) -> bool:
        if any(i.excluded and i.covers(namespace, hostname) for i in self.imports):
            return False
        return any(not i.excluded and i.covers(namespace, hostname) for i in self.imports)

    def imports_virtual_service(self, namespace: str, hostnames: list[str]) -> bool:
        for hostname in hostnames:
            if any(i.excluded and i.covers(namespace, hostname) for i in self.imports):
                continue
            if any(not i.excluded and i.overlaps(namespace, hostname) for i in self.imports):
                return True
        return False


@dataclass(frozen=True)
class SidecarScope:
    """What one sidecar proxy sees: the Sidecar applied (if any) and its egress."""

    sidecar: IstioObject | None = None
    egress: tuple[EgressScope, ...] = (EgressScope(),)
    outbound_policy: OutboundPolicy = "ALLOW_ANY"

    @property
    def spec(self) -> sc_pb.Sidecar | None:
        return None if self.sidecar is None else cast(sc_pb.Sidecar, self.sidecar.spec)

    def imports_service(self, namespace: str, hostname: str) -> bool:
        return any(e.imports_service(namespace, hostname) for e in self.egress)

    def imports_virtual_service(self, vs: IstioObject, hosts: list[str]) -> bool:
        namespace = vs.meta.namespace
        resolved = [fqdn(h, namespace) for h in hosts]
        return any(e.imports_virtual_service(namespace, resolved) for e in self.egress)


def applicable_sidecar(config: ConfigSet, proxy: Proxy, diag: Diagnostics) -> IstioObject | None:
    """The one Sidecar resource that applies to `proxy`, as Istio picks it."""
    sidecars = config.istio("Sidecar")  # oldest first
    own = [s for s in sidecars if s.meta.namespace == proxy.namespace]
    for sidecar in own:
        selector = _selector(sidecar)
        if selector and selects(selector, proxy.labels):
            return sidecar
    namespace_wide = [s for s in own if not _selector(s)]
    if namespace_wide:
        _report_ignored(namespace_wide, diag)
        return namespace_wide[0]
    root = config.mesh.root_namespace
    mesh_wide = [s for s in sidecars if s.meta.namespace == root and not _selector(s)]
    if mesh_wide:
        _report_ignored(mesh_wide, diag)
        return mesh_wide[0]
    return None


def sidecar_scope(config: ConfigSet, proxy: Proxy, diag: Diagnostics) -> SidecarScope:
    mesh_policy: OutboundPolicy = config.mesh.outbound_policy
    sidecar = applicable_sidecar(config, proxy, diag)
    if sidecar is None:
        return SidecarScope(outbound_policy=mesh_policy)
    spec = cast(sc_pb.Sidecar, sidecar.spec)
    policy = mesh_policy
    if spec.HasField("outbound_traffic_policy"):
        mode = spec.outbound_traffic_policy.mode
        policy = "ALLOW_ANY" if mode == sc_pb.OutboundTrafficPolicy.ALLOW_ANY else "REGISTRY_ONLY"
        if spec.outbound_traffic_policy.HasField("egress_proxy"):
            diag.warning(
                sidecar,
                "spec.outboundTrafficPolicy.egressProxy",
                "egressProxy is not supported: unknown destinations follow the mode alone",
            )
    egress = _egress_scopes(sidecar, spec, proxy.namespace, diag)
    return SidecarScope(sidecar, egress, policy)


def _egress_scopes(
    sidecar: IstioObject, spec: sc_pb.Sidecar, proxy_namespace: str, diag: Diagnostics
) -> tuple[EgressScope, ...]:
    if not spec.egress:
        # A Sidecar with only ingress (or a policy) keeps the default egress.
        return (EgressScope(),)
    scopes: list[EgressScope] = []
    seen_ports: set[int] = set()
    for index, listener in enumerate(spec.egress):
        path = f"spec.egress[{index}]"
        has_port = listener.HasField("port") and listener.port.number > 0
        if not has_port and index != len(spec.egress) - 1:
            diag.error(
                sidecar,
                f"{path}.port",
                "the egress listener without a port (the catch-all) must be the last one: "
                "listener skipped",
            )
            continue
        if has_port and listener.port.number in seen_ports:
            diag.error(
                sidecar,
                f"{path}.port.number",
                f"port {listener.port.number} is already used by another egress listener: "
                "listener skipped",
            )
            continue
        if not listener.hosts:
            diag.error(sidecar, f"{path}.hosts", "an egress listener needs hosts: skipped")
            continue
        imports = tuple(
            found
            for i, raw in enumerate(listener.hosts)
            if (found := _host_import(raw, proxy_namespace, sidecar, f"{path}.hosts[{i}]", diag))
        )
        if has_port:
            seen_ports.add(listener.port.number)
        scopes.append(
            EgressScope(
                imports=imports,
                port=listener.port.number if has_port else None,
                port_protocol=listener.port.protocol.upper() if has_port else "",
                port_name=listener.port.name if has_port else "",
                bind=listener.bind,
                capture_mode=cast(CaptureMode, sc_pb.CaptureMode.Name(listener.capture_mode)),
                index=index,
            )
        )
    return tuple(scopes)


def _host_import(
    raw: str, proxy_namespace: str, sidecar: IstioObject, path: str, diag: Diagnostics
) -> HostImport | None:
    if raw.count("/") != 1:
        diag.error(sidecar, path, f"host {raw!r} must be namespace/host (e.g. ./*, */foo.com)")
        return None
    namespace, host = raw.split("/")
    excluded = namespace.startswith("~")
    namespace = namespace.removeprefix("~") or ANY_NAMESPACE
    if namespace == ".":
        namespace = proxy_namespace
    if not host:
        diag.error(sidecar, path, f"host {raw!r} has no host after the '/'")
        return None
    return HostImport(namespace, host.lower(), excluded)


def _selector(sidecar: IstioObject) -> dict[str, str]:
    spec = cast(sc_pb.Sidecar, sidecar.spec)
    return dict(spec.workload_selector.labels) if spec.HasField("workload_selector") else {}


def _report_ignored(candidates: list[IstioObject], diag: Diagnostics) -> None:
    kept = candidates[0]
    for other in candidates[1:]:
        diag.warning(
            other,
            "spec",
            f"namespace {other.meta.namespace} already has a Sidecar without a "
            f"workloadSelector ({kept.meta.name}, the oldest): this one is ignored",
        )
