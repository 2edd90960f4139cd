"""DestinationRules: which rule applies, policy merging, and what each field becomes."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.translator import ir
from pilotfish.translator.envoy import cluster as cluster_builder
from pilotfish.translator.envoy import route as route_builder
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.translate import translate
from testsupport.envoy import validate_config
from testsupport.static_bootstrap import static_bootstrap_for

GATEWAY = Proxy("router", "router~10.0.0.1~gw.istio-system~x", "10.0.0.1", "gw", "istio-system")


def config_of(*documents: str) -> ConfigSet:
    config = build_config_set([parse_manifest_text("---\n".join(documents), "dr.yaml")])
    assert config.errors == (), [e.describe() for e in config.errors]
    return config


def service(name: str, namespace: str = "default", ports: str = "[{name: http, port: 80}]") -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{ports: {ports}}}
"""


def rule(name: str, namespace: str, spec: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


def clusters_of(config: ConfigSet, proxy: Proxy = GATEWAY) -> dict[str, ir.Cluster]:
    return {c.name: c for c in translate(config, proxy).config.clusters}


def test_subset_policy_overrides_the_rule_and_port_level_overrides_both() -> None:
    config = config_of(
        service("web", ports="[{name: http, port: 80}, {name: http-alt, port: 81}]"),
        rule(
            "web",
            "default",
            """{host: web, trafficPolicy: {loadBalancer: {simple: RANDOM},
                connectionPool: {tcp: {maxConnections: 3}},
                portLevelSettings: [{port: {number: 81}, loadBalancer: {simple: ROUND_ROBIN}}]},
              subsets: [{name: a, labels: {v: a}, trafficPolicy: {
                connectionPool: {http: {http2MaxRequests: 9}},
                portLevelSettings: [{port: {number: 80}, loadBalancer: {simple: LEAST_REQUEST}}]}}]}""",
        ),
    )
    found = clusters_of(config)
    top = found["outbound|80||web.default.svc.cluster.local"]
    assert (top.lb_policy, top.circuit_breakers.max_connections) == ("RANDOM", 3)
    assert found["outbound|81||web.default.svc.cluster.local"].lb_policy == "ROUND_ROBIN"
    subset = found["outbound|80|a|web.default.svc.cluster.local"]
    # connectionPool is replaced as a whole (Istio's merge), the subset's port level wins.
    assert subset.lb_policy == "LEAST_REQUEST"
    assert subset.circuit_breakers == ir.CircuitBreakers(max_requests=9)
    assert found["outbound|81|a|web.default.svc.cluster.local"].lb_policy == "ROUND_ROBIN"


@pytest.mark.parametrize(
    ("proxy_namespace", "expected"),
    [("istio-system", "RANDOM"), ("shop", "ROUND_ROBIN"), ("other", "RANDOM")],
)
def test_rule_lookup_prefers_the_proxy_namespace_then_the_service_then_root(
    proxy_namespace: str, expected: str
) -> None:
    config = config_of(
        service("web", "shop"),
        rule(
            "root",
            "istio-system",
            "{host: web.shop.svc.cluster.local, trafficPolicy: {loadBalancer: {simple: RANDOM}}}",
        ),
        rule(
            "own",
            "shop",
            "{host: web, exportTo: ['.'], trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}",
        ),
    )
    registry = ServiceRegistry(config, proxy_namespace=proxy_namespace)
    found = registry.destination_rule("web.shop.svc.cluster.local")
    assert found is not None
    lb = found.policy(80).load_balancer.simple
    assert {4: "ROUND_ROBIN", 2: "RANDOM"}[lb] == expected


def test_exact_host_beats_the_most_specific_wildcard() -> None:
    config = config_of(
        service("web"),
        rule("any", "default", "{host: '*'}"),
        rule("local", "default", "{host: '*.default.svc.cluster.local'}"),
        rule("exact", "default", "{host: web}"),
    )
    registry = ServiceRegistry(config, proxy_namespace="default")
    found = registry.destination_rule("web.default.svc.cluster.local")
    assert found is not None and found.rule.meta.name == "exact"
    other = registry.destination_rule("api.default.svc.cluster.local")
    assert other is not None and other.rule.meta.name == "local"


def test_hash_policy_only_when_the_destinations_agree() -> None:
    config = config_of(
        service("a"),
        service("b"),
        rule(
            "a",
            "default",
            "{host: a, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}}",
        ),
    )
    registry = ServiceRegistry(config)
    a = ir.WeightedCluster("outbound|80||a.default.svc.cluster.local", 50)
    b = ir.WeightedCluster("outbound|80||b.default.svc.cluster.local", 50)
    assert registry.hash_policy([a]) == ir.HashPolicy("header", "x-user")
    assert registry.hash_policy([a, b]) is None
    assert registry.hash_policy([b]) is None


def test_hash_policy_encodings() -> None:
    def encoded(policy: ir.HashPolicy) -> dict[str, Any]:
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(route_builder.hash_policy(policy))

    assert encoded(ir.HashPolicy("header", "x-u")) == {"header": {"headerName": "x-u"}}
    assert encoded(ir.HashPolicy("cookie", "s", "/", 5000)) == {
        "cookie": {"name": "s", "path": "/", "ttl": "5s"}
    }
    assert encoded(ir.HashPolicy("query", "u")) == {"queryParameter": {"name": "u"}}
    assert encoded(ir.HashPolicy("source_ip")) == {"connectionProperties": {"sourceIp": True}}


def test_mutual_tls_with_certificate_files() -> None:
    config = config_of(
        service("web"),
        rule(
            "web",
            "default",
            """{host: web, trafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /etc/c.pem,
                privateKey: /etc/k.pem, caCertificates: /etc/ca.pem, sni: web.internal}}}""",
        ),
    )
    cluster = clusters_of(config)["outbound|80||web.default.svc.cluster.local"]
    assert cluster.tls == ir.UpstreamTls(
        sni="web.internal",
        certificate_file="/etc/c.pem",
        private_key_file="/etc/k.pem",
        ca_file="/etc/ca.pem",
    )
    context = tls_pb2.UpstreamTlsContext()
    cluster_builder.cluster(cluster).transport_socket.typed_config.Unpack(context)
    common = context.common_tls_context
    assert context.sni == "web.internal"
    assert common.tls_certificates[0].certificate_chain.filename == "/etc/c.pem"
    assert common.tls_certificates[0].private_key.filename == "/etc/k.pem"
    assert common.validation_context.trusted_ca.filename == "/etc/ca.pem"


def test_mutual_without_a_client_certificate_is_reported() -> None:
    config = config_of(
        service("web"), rule("web", "default", "{host: web, trafficPolicy: {tls: {mode: MUTUAL}}}")
    )
    problems = translate(config, GATEWAY).status
    assert [(p.name, p.field, p.severity) for p in problems] == [
        ("web", "spec.trafficPolicy.tls", "error")
    ]


def test_passthrough_load_balancer_is_original_destination() -> None:
    config = config_of(
        service("web"),
        rule("web", "default", "{host: web, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}"),
    )
    cluster = clusters_of(config)["outbound|80||web.default.svc.cluster.local"]
    assert (cluster.discovery, cluster.lb_policy) == ("ORIGINAL_DST", "CLUSTER_PROVIDED")
    # ...and no EDS for it: Envoy would refuse a load assignment for an ORIGINAL_DST cluster.
    names = {a.cluster_name for a in translate(config, GATEWAY).config.load_assignments}
    assert cluster.name not in names


def test_outlier_detection_leaves_unset_errors_off() -> None:
    config = config_of(
        service("web"),
        rule(
            "web",
            "default",
            "{host: web, trafficPolicy: {outlierDetection: {consecutiveGatewayErrors: 3}}}",
        ),
    )
    cluster = clusters_of(config)["outbound|80||web.default.svc.cluster.local"]
    out = cluster_builder.cluster(cluster).outlier_detection
    assert out.consecutive_gateway_failure.value == 3
    assert out.enforcing_consecutive_gateway_failure.value == 100
    assert out.enforcing_consecutive_5xx.value == 0  # not asked for: Envoy's default 5 stays off
    assert out.enforcing_success_rate.value == 0
    assert cluster.healthy_panic_threshold == 0  # Istio: minHealthPercent unset -> 0


def test_fields_not_translated_are_warned_about_where_they_are() -> None:
    config = config_of(
        service("web"),
        rule(
            "web",
            "default",
            """{host: web, workloadSelector: {matchLabels: {app: x}},
                trafficPolicy: {connectionPool: {tcp: {idleTimeout: 1s}},
                  loadBalancer: {simple: RANDOM, localityLbSetting: {enabled: true}}},
                subsets: [{name: a, labels: {v: a}, trafficPolicy: {portLevelSettings: [
                  {port: {number: 80}, outlierDetection: {splitExternalLocalOriginErrors: true}}]}}]}""",
        ),
    )
    problems = translate(config, GATEWAY).status
    assert [(p.field, p.severity) for p in problems] == [
        (
            "spec.subsets[0].trafficPolicy.portLevelSettings[0].outlierDetection.splitExternalLocalOriginErrors",
            "warning",
        ),
        ("spec.trafficPolicy.connectionPool.tcp.idleTimeout", "warning"),
        ("spec.trafficPolicy.loadBalancer.localityLbSetting", "warning"),
        ("spec.workloadSelector", "warning"),
    ]
    # What is supported still applies.
    assert clusters_of(config)["outbound|80||web.default.svc.cluster.local"].lb_policy == "RANDOM"


def test_subject_alt_names_without_a_ca_are_reported_and_dropped() -> None:
    # Envoy rejects the whole cluster ("SAN-based verification of peer certificates
    # without trusted CA is insecure and not allowed"): found by the property test.
    tls = "{mode: SIMPLE, sni: web.example.com, subjectAltNames: [web.example.com]}"
    config = config_of(
        service("web"), rule("web", "default", f"{{host: web, trafficPolicy: {{tls: {tls}}}}}")
    )
    translation = translate(config, GATEWAY)
    assert [(p.field, p.severity) for p in translation.status] == [
        ("spec.trafficPolicy.tls.subjectAltNames", "error")
    ]
    cluster = translation.config.clusters[0]
    assert cluster.tls is not None and cluster.tls.sni == "web.example.com"
    assert cluster.tls.subject_alt_names == ()
    with_ca = tls.replace("SIMPLE,", "SIMPLE, caCertificates: /etc/ca.pem,")
    config = config_of(
        service("web"), rule("web", "default", f"{{host: web, trafficPolicy: {{tls: {with_ca}}}}}")
    )
    assert translate(config, GATEWAY).status == ()


def test_a_dns_round_robin_subset_without_endpoints_is_a_cluster_envoy_accepts() -> None:
    # Envoy refuses a LOGICAL_DNS cluster without exactly one endpoint: found by the
    # property test. An empty subset is STRICT_DNS with no hosts (503, as reported).
    entry = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: upstream.example.org, labels: {version: v1}}]
"""
    subsets = "{host: api.example.org, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}"
    translation = translate(config_of(entry, rule("external", "default", subsets)), GATEWAY)
    discovery = {c.name: c.discovery for c in translation.config.clusters}
    assert discovery == {
        "outbound|80||api.example.org": "LOGICAL_DNS",
        "outbound|80|v1|api.example.org": "LOGICAL_DNS",
        "outbound|80|v2|api.example.org": "STRICT_DNS",
    }
    validate_config(static_bootstrap_for(clusters=translation.clusters))
