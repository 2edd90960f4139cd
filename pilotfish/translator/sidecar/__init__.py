"""A sidecar proxy's configuration: what its workload calls (outbound) and what calls it
(inbound), as Istio's Pilot builds them for a proxy whose node ID starts `sidecar~`.

Both halves read the one Sidecar resource that applies (sidecar_scope.py). Istio's
order: outbound listeners, then inbound ones; outbound clusters (with BlackHoleCluster
and PassthroughCluster), then inbound ones. A fixed cluster both halves use
(BlackHoleCluster) is served once.

What the outbound half reads of the proxy: its namespace and labels (the Sidecar
resource, exportTo, `sourceLabels`/`sourceNamespace` of mesh rules), never its IP or pod
name; what the inbound half reads: ip_dependence.py says when its IP matters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from pilotfish.model.configset import ConfigSet
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.sidecar.inbound import build_inbound
from pilotfish.translator.sidecar.outbound import build_outbound
from pilotfish.translator.sidecar_scope import sidecar_scope


def build_sidecar(
    config: ConfigSet, proxy: Proxy, registry: ServiceRegistry, diag: Diagnostics
) -> ir.ProxyConfig:
    scope = sidecar_scope(config, proxy, diag)
    outbound = build_outbound(config, proxy, registry, scope, diag)
    inbound = build_inbound(config, proxy, registry, scope.sidecar, diag)
    return combine(outbound, inbound)


def combine(*halves: ir.ProxyConfig) -> ir.ProxyConfig:
    """The halves in order, each cluster, route configuration and secret once by name
    (the first one given wins)."""
    return ir.ProxyConfig(
        listeners=tuple(x for h in halves for x in h.listeners),
        route_configs=_once(r for h in halves for r in h.route_configs),
        clusters=_once(c for h in halves for c in h.clusters),
        load_assignments=tuple(x for h in halves for x in h.load_assignments),
        secrets=_once(s for h in halves for s in h.secrets),
    )


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def _once(items: Iterable[N]) -> tuple[N, ...]:
    found: dict[str, N] = {}
    for item in items:
        found.setdefault(item.name, item)
    return tuple(found.values())
