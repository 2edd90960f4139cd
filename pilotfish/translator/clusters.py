"""Outbound clusters and their endpoints: the service registry with DestinationRules applied.

One cluster per service port, `outbound|<port>||<fqdn>`, and one per DestinationRule
subset, `outbound|<port>|<subset>|<fqdn>`, holding the endpoints whose labels include
the subset's. Kubernetes Services and STATIC ServiceEntries are EDS; a DNS ServiceEntry
is STRICT_DNS and DNS_ROUND_ROBIN is LOGICAL_DNS, both with the endpoints inline (by name,
Envoy resolves them); NONE is EDS on a router, as Istio gives gateways, and ORIGINAL_DST
on a sidecar (as headless Services are there).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import cast

from pilotfish.api.networking.v1alpha3 import service_entry_pb2 as se_pb
from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.configset import ConfigSet
from pilotfish.model.objects import IstioObject, ServicePort
from pilotfish.translator import ir
from pilotfish.translator.cluster_names import ClusterName
from pilotfish.translator.cluster_policy import apply_policy, warn_unsupported
from pilotfish.translator.diagnostics import Diagnostics, source_of
from pilotfish.translator.hosts import fqdn
from pilotfish.translator.registry import (
    HTTP2_PROTOCOLS,
    RegistryService,
    ServiceRegistry,
    port_protocol,
)
from pilotfish.translator.secrets import Credentials

RouteDestinations = vs_pb.HTTPRoute | vs_pb.TCPRoute | vs_pb.TLSRoute

_DISCOVERY: dict[str, ir.ClusterDiscovery] = {
    "KUBERNETES": "EDS",
    "STATIC": "EDS",
    "NONE": "EDS",  # a router has no original destination to forward to: as Istio, EDS
    "DNS": "STRICT_DNS",
    "DNS_ROUND_ROBIN": "LOGICAL_DNS",
}


@dataclass
class OutboundClusters:
    clusters: list[ir.Cluster] = field(default_factory=list)
    load_assignments: list[ir.LoadAssignment] = field(default_factory=list)
    secrets: dict[str, ir.SdsSecret] = field(default_factory=dict)


def build_outbound_clusters(
    registry: ServiceRegistry,
    credentials: Credentials,
    diag: Diagnostics,
    services: Sequence[RegistryService] | None = None,
    *,
    sidecar: bool = False,
) -> OutboundClusters:
    """The clusters of `services` (default: every service, as Istio gives every gateway;
    a sidecar's Sidecar scope chooses). Each EDS cluster gets a load assignment, possibly
    empty: Envoy then answers 503 "no healthy upstream", which is the truth. On a
    `sidecar`, passthrough services (headless Services, resolution NONE) get ORIGINAL_DST
    clusters, and ExternalName Services none (their target's serve them), as in Istio."""
    out = OutboundClusters()
    for applied in registry.destination_rules.all():
        warn_unsupported(applied.rule, diag)
    for service in registry.services() if services is None else services:
        if sidecar and service.alias_of:
            continue
        entry = cast(se_pb.ServiceEntry, service.entry.spec) if service.entry else None
        if entry is not None and entry.HasField("workload_selector"):
            assert service.entry is not None
            diag.warning(
                service.entry,
                "spec.workloadSelector",
                "not supported yet (WorkloadEntries and Pods are not selected): "
                "only the entry's own endpoints are used",
            )
        if service.resolution not in _DISCOVERY:
            if service.entry is not None:
                diag.warning(
                    service.entry,
                    "spec.resolution",
                    f"resolution {service.resolution} is not supported: no clusters for it",
                )
            continue
        rule = registry.destination_rule(service.hostname)
        subsets = list(rule.spec.subsets) if rule else []
        for port in service.ports:
            if port_protocol(port) in ("UDP", "SCTP"):
                continue  # Envoy proxies TCP only (as Istio, no clusters for these)
            discovery = _discovery(service, sidecar=sidecar)
            _add(out, registry, credentials, diag, service, port, "", discovery)
            for s, subset in enumerate(subsets):
                endpoints = _add(
                    out, registry, credentials, diag, service, port, subset.name, discovery
                )
                if not endpoints and registry.labeled_endpoints(service, port):
                    assert rule is not None
                    diag.warning(
                        rule.rule,
                        f"spec.subsets[{s}].labels",
                        f"no endpoint of {service.hostname} port {port.port} has these labels: "
                        f"subset {subset.name} gets 503 (no healthy upstream)",
                    )
    return out


def _add(
    out: OutboundClusters,
    registry: ServiceRegistry,
    credentials: Credentials,
    diag: Diagnostics,
    service: RegistryService,
    port: ServicePort,
    subset: str,
    discovery: ir.ClusterDiscovery,
) -> tuple[ir.Endpoint, ...]:
    name = str(ClusterName.outbound(port.port, service.hostname, subset))
    rule = registry.destination_rule(service.hostname)
    labels = {}
    if rule is not None and subset:
        found = rule.subset(subset)
        labels = dict(found[1].labels) if found else {}
    endpoints = registry.endpoints(service, port, labels)
    if discovery == "LOGICAL_DNS" and not endpoints:
        # Envoy refuses a LOGICAL_DNS cluster without exactly one endpoint (a subset no
        # endpoint matches): STRICT_DNS with none means the same, 503 "no healthy upstream".
        discovery = "STRICT_DNS"
    if discovery == "EDS" and service.entry is not None:
        endpoints = _ip_endpoints(service.entry, endpoints, diag)
    if discovery == "LOGICAL_DNS" and len(endpoints) > 1 and service.entry is not None:
        diag.warning(
            service.entry,
            "spec.endpoints",
            f"DNS_ROUND_ROBIN resolves one name (Envoy's LOGICAL_DNS): only "
            f"{endpoints[0].address} is used",
        )
    cluster = ir.Cluster(
        name,
        connect_timeout_ms=registry.mesh.connect_timeout_ms,
        http2=port_protocol(port) in HTTP2_PROTOCOLS,
        discovery=discovery,
        inline_endpoints=endpoints[:1] if discovery == "LOGICAL_DNS" else endpoints,
    )
    if discovery in ("EDS", "ORIGINAL_DST"):
        cluster = replace(cluster, inline_endpoints=())
    if discovery == "ORIGINAL_DST":
        # To the address the client connected to (Envoy requires CLUSTER_PROVIDED).
        cluster = replace(cluster, lb_policy="CLUSTER_PROVIDED")
    origin = service.entry or service.service
    # The port's place in the object (a sidecar's copy of the service may hold fewer).
    declared = (registry.lookup(service.hostname) or service).ports
    port_index = next((i for i, p in enumerate(declared) if p.port == port.port), None)
    port_path = "spec.ports" if port_index is None else f"spec.ports[{port_index}]"
    cluster = replace(cluster, sources=(("", source_of(origin, port_path)),))
    if rule is not None:
        applied = apply_policy(
            cluster,
            rule.policy(port.port, subset),
            rule.rule,
            credentials,
            diag,
            rule.policy_paths(port.port, subset),
        )
        cluster = applied.cluster
        out.secrets.update((s.name, s) for s in applied.secrets)
    out.clusters.append(cluster)
    if cluster.discovery == "EDS":
        out.load_assignments.append(ir.LoadAssignment(name, endpoints))
    return endpoints


def _discovery(service: RegistryService, *, sidecar: bool) -> ir.ClusterDiscovery:
    if sidecar and service.resolution == "NONE":
        return "ORIGINAL_DST"
    if sidecar and service.entry is None and service.service.cluster_ip == "None":
        return "ORIGINAL_DST"  # headless: clients address the pods themselves
    return _DISCOVERY[service.resolution]


def _ip_endpoints(
    entry: IstioObject, endpoints: tuple[ir.Endpoint, ...], diag: Diagnostics
) -> tuple[ir.Endpoint, ...]:
    """EDS carries addresses, not names (Envoy would refuse the whole assignment): a
    STATIC or NONE ServiceEntry's endpoint that is not an IP address is left out."""
    spec = cast(se_pb.ServiceEntry, entry.spec)
    resolution = se_pb.ServiceEntry.Resolution.Name(spec.resolution)
    kept = []
    for e in endpoints:
        try:
            ipaddress.ip_address(e.address)
        except ValueError:
            index = next(i for i, we in enumerate(spec.endpoints) if we.address == e.address)
            diag.error(
                entry,
                f"spec.endpoints[{index}].address",
                f"{e.address!r} is not an IP address (resolution {resolution}): "
                "left out; use resolution DNS for names",
            )
            continue
        kept.append(e)
    return tuple(kept)


def referenced_clusters(config: ir.ProxyConfig) -> set[str]:
    """Every cluster the proxy's routes (over RDS or inline) and TCP chains send to."""
    names: set[str] = set()
    route_configs = list(config.route_configs)
    for listener in config.listeners:
        for chain in listener.all_chains:
            if isinstance(chain, ir.TcpFilterChain):
                names.update(c.cluster for c in chain.clusters)
            elif chain.route_config is not None:
                route_configs.append(chain.route_config)
    for route_config in route_configs:
        for vhost in route_config.virtual_hosts:
            for route in vhost.routes:
                names.update(c.cluster for c in route.clusters)
    return names


def check_route_subsets(
    config: ConfigSet, registry: ServiceRegistry, missing: set[str], diag: Diagnostics
) -> None:
    """A route to a subset no DestinationRule defines has no cluster: as Istio, Envoy
    answers 503 for that route only; the VirtualService is told why. `missing`: the
    subset clusters this proxy's routes name that were not built."""
    names = [ClusterName.parse(name) for name in missing]
    wanted = {(n.subset, n.host) for n in names if n is not None and n.subset}
    if not wanted:
        return
    for vs in config.istio("VirtualService"):
        spec = cast(vs_pb.VirtualService, vs.spec)
        routes: list[tuple[str, Sequence[RouteDestinations]]] = [
            ("http", spec.http),
            ("tcp", spec.tcp),
            ("tls", spec.tls),
        ]
        for kind, rules in routes:
            for r, rule in enumerate(rules):
                destinations: list[vs_pb.Destination] = [d.destination for d in rule.route]
                for d, dest in enumerate(destinations):
                    host = fqdn(dest.host, vs.meta.namespace)
                    if (dest.subset, host) in wanted:
                        path = f"spec.{kind}[{r}].route[{d}].destination.subset"
                        _report_subset(vs, dest.subset, host, path, registry, diag)


def _report_subset(
    vs: IstioObject,
    subset: str,
    host: str,
    path: str,
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> None:
    rule = registry.destination_rule(host)
    where = f" (DestinationRule {rule.rule.meta.namespace}/{rule.rule.meta.name})" if rule else ""
    diag.error(
        vs,
        path,
        f"no DestinationRule defines subset {subset!r} of {host}{where}: "
        "requests routed there get 503",
    )
