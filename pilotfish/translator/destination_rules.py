"""DestinationRules: which one applies to a host for a proxy, and its policy for a port/subset.

Istio's rules. The DestinationRule for a service is looked for in the proxy's own
namespace, then in the service's namespace, then in the mesh's root namespace (MeshConfig
`rootNamespace`, istio-system by default), each time among the rules exported to the proxy's namespace (`exportTo`: `*` or unset =
everywhere, `.` = the rule's own namespace, else the namespaces named); within one
namespace an exact host wins over the most specific wildcard (`a.foo.com`, then
`*.foo.com`, then `*`), and among equals the oldest rule wins.

A cluster's policy is the rule's `trafficPolicy`, then its `portLevelSettings` for the
port, then the subset's `trafficPolicy` and its own port-level settings: each of
loadBalancer, connectionPool, outlierDetection and tls replaces the one before as a
whole (Istio's MergeTrafficPolicy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from pilotfish.api.durations import duration_problem, to_millis
from pilotfish.api.networking.v1alpha3 import destination_rule_pb2 as dr_pb
from pilotfish.model.configset import ConfigSet
from pilotfish.model.objects import IstioObject
from pilotfish.translator import ir
from pilotfish.translator.hosts import DEFAULT_DOMAIN_SUFFIX, fqdn, is_wildcard, matches
from pilotfish.translator.visibility import exported_to

_POLICY_FIELDS = ("load_balancer", "connection_pool", "outlier_detection", "tls")


@dataclass(frozen=True)
class AppliedRule:
    """The DestinationRule in force for a host, and the host as it resolved."""

    rule: IstioObject
    host: str

    @property
    def spec(self) -> dr_pb.DestinationRule:
        return cast(dr_pb.DestinationRule, self.rule.spec)

    def subset(self, name: str) -> tuple[int, dr_pb.Subset] | None:
        return next(((i, s) for i, s in enumerate(self.spec.subsets) if s.name == name), None)

    def policy_paths(self, port: int, subset: str = "") -> dict[str, str]:
        """Where each part of ``policy(port, subset)`` was written: policy field name ->
        the path in the rule (``spec.subsets[0].trafficPolicy.connectionPool``)."""
        paths: dict[str, str] = {}
        levels = [("spec.trafficPolicy", self.spec.traffic_policy)]
        found = self.subset(subset) if subset else None
        if found is not None and found[1].HasField("traffic_policy"):
            levels.append((f"spec.subsets[{found[0]}].trafficPolicy", found[1].traffic_policy))
        for base, policy in levels:
            for name in _POLICY_FIELDS:
                if policy.HasField(name):
                    paths[name] = f"{base}.{_json_name(name)}"
            for i, level in enumerate(policy.port_level_settings):
                if level.port.number == port:
                    for name in _POLICY_FIELDS:
                        if level.HasField(name):
                            paths[name] = f"{base}.portLevelSettings[{i}].{_json_name(name)}"
        return paths

    def policy(self, port: int, subset: str = "") -> dr_pb.TrafficPolicy:
        merged = _merge(dr_pb.TrafficPolicy(), self.spec.traffic_policy, port)
        found = self.subset(subset) if subset else None
        if found is not None and found[1].HasField("traffic_policy"):
            merged = _merge(merged, found[1].traffic_policy, port)
        return merged


def _merge(base: dr_pb.TrafficPolicy, over: dr_pb.TrafficPolicy, port: int) -> dr_pb.TrafficPolicy:
    out = dr_pb.TrafficPolicy()
    out.CopyFrom(base)
    for name in _POLICY_FIELDS:
        if over.HasField(name):
            getattr(out, name).CopyFrom(getattr(over, name))
    for level in over.port_level_settings:
        if level.port.number == port:
            for name in _POLICY_FIELDS:
                if level.HasField(name):
                    getattr(out, name).CopyFrom(getattr(level, name))
    return out


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def hash_policy(lb: dr_pb.LoadBalancerSettings) -> ir.HashPolicy | None:
    """The route hash policy a consistentHash load balancer needs (Istio puts it on the
    routes to the destination: Envoy hashes per request, at the route)."""
    if lb.WhichOneof("lb_policy") != "consistent_hash":
        return None
    ch = lb.consistent_hash
    key = ch.WhichOneof("hash_key")
    if key == "http_header_name":
        return ir.HashPolicy("header", ch.http_header_name)
    if key == "http_cookie":
        cookie = ch.http_cookie
        return ir.HashPolicy(
            "cookie",
            cookie.name,
            cookie_path=cookie.path,
            # A ttl Envoy would refuse is reported on the rule (cluster_policy.py).
            cookie_ttl_ms=to_millis(cookie.ttl)
            if cookie.HasField("ttl") and duration_problem(cookie.ttl) is None
            else None,
        )
    if key == "use_source_ip" and ch.use_source_ip:
        return ir.HashPolicy("source_ip")
    if key == "http_query_parameter_name":
        return ir.HashPolicy("query", ch.http_query_parameter_name)
    return None


class DestinationRules:
    """The DestinationRules one proxy sees, looked up by service host."""

    def __init__(
        self,
        config: ConfigSet,
        proxy_namespace: str | None,  # None: every rule, whatever its exportTo
        domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
    ) -> None:
        self.proxy_namespace = proxy_namespace
        self.root_namespace = config.mesh.root_namespace
        self._by_namespace: dict[str, list[tuple[str, IstioObject]]] = {}
        for rule in config.istio("DestinationRule"):  # oldest first
            spec = cast(dr_pb.DestinationRule, rule.spec)
            if proxy_namespace is not None and not exported_to(
                spec.export_to, rule.meta.namespace, proxy_namespace
            ):
                continue
            host = fqdn(spec.host, rule.meta.namespace, domain_suffix)
            self._by_namespace.setdefault(rule.meta.namespace, []).append((host, rule))

    def all(self) -> list[AppliedRule]:
        return [AppliedRule(r, h) for rules in self._by_namespace.values() for h, r in rules]

    def for_host(self, hostname: str, service_namespace: str) -> AppliedRule | None:
        if not self._by_namespace:
            return None
        order = (self.proxy_namespace or service_namespace, service_namespace, self.root_namespace)
        for namespace in dict.fromkeys(order):
            found = _most_specific(self._by_namespace.get(namespace, []), hostname)
            if found is not None:
                return found
        return None


def _most_specific(rules: list[tuple[str, IstioObject]], hostname: str) -> AppliedRule | None:
    exact = next((AppliedRule(r, h) for h, r in rules if h == hostname), None)
    if exact is not None:
        return exact
    wildcards = [(h, r) for h, r in rules if is_wildcard(h) and matches(h, hostname)]
    if not wildcards:
        return None
    # The longest wildcard is the most specific; sorted() keeps oldest first among equals.
    host, rule = sorted(wildcards, key=lambda hr: -len(hr[0]))[0]
    return AppliedRule(rule, host)
