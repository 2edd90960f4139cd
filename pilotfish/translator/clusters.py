"""Outbound clusters and their endpoints, from the service registry."""

from __future__ import annotations

from pilotfish.translator import ir
from pilotfish.translator.registry import HTTP2_PROTOCOLS, ServiceRegistry, port_protocol


def cluster_name(port: int, hostname: str, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{hostname}"


def build_outbound_clusters(
    registry: ServiceRegistry,
) -> tuple[list[ir.Cluster], list[ir.LoadAssignment]]:
    """One EDS cluster per service port, as Istio gives every gateway (no Sidecar scoping
    for routers yet). Each gets a load assignment, possibly empty: Envoy then answers
    503 "no healthy upstream", which is the truth."""
    clusters, assignments = [], []
    for service in registry.services():
        for port in service.ports:
            if port_protocol(port) in ("UDP", "SCTP"):
                continue  # Envoy proxies TCP only (as Istio, no clusters for these)
            name = cluster_name(port.port, service.hostname)
            clusters.append(ir.Cluster(name, http2=port_protocol(port) in HTTP2_PROTOCOLS))
            assignments.append(ir.LoadAssignment(name, registry.endpoints(service, port)))
    return clusters, assignments
