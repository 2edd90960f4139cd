"""examples/destination-rules and examples/egress-gateway: every file translates without a
problem for its gateway, Envoy accepts the result, and what each file is for is there."""

from __future__ import annotations

from pathlib import Path

from pilotfish.model.configset import build_config_set
from pilotfish.node_id import NodeId
from pilotfish.sources.files import FileSource
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import Translation, translate
from tests.test_golden import envoy_accepts

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def translated(example: str, labels: dict[str, str]) -> Translation:
    config = build_config_set(FileSource(EXAMPLES / example).load())
    assert config.errors == ()
    node_id = NodeId.for_pod("router", "10.0.0.1", "gw", "istio-system")
    proxy = Proxy.from_node(str(node_id), {"LABELS": labels, "NAMESPACE": "istio-system"})
    translation = translate(config, proxy)
    assert translation.status == (), [s.describe() for s in translation.status]
    envoy_accepts(translation)
    return translation


def test_destination_rules_example() -> None:
    translation = translated("destination-rules", {"istio": "ingressgateway"})
    clusters = {c.name: c for c in translation.clusters}
    v1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert clusters[v1].lb_policy == clusters[v1].RING_HASH
    assert (
        clusters["outbound|8000||httpbin.default.svc.cluster.local"]
        .circuit_breakers.thresholds[0]
        .max_connections.value
        == 1
    )
    assert clusters["outbound|443||httpbin.org"].type == clusters[v1].STRICT_DNS
    assert clusters["outbound|443||httpbin.org"].HasField("transport_socket")
    endpoints = {e.cluster_name: e for e in translation.endpoints}
    ports = [
        lb.endpoint.address.socket_address.port_value
        for group in endpoints[v1].endpoints
        for lb in group.lb_endpoints
    ]
    assert ports == [9081]  # the v1 Pod's endpoint only


def test_egress_gateway_example() -> None:
    translation = translated("egress-gateway", {"istio": "egressgateway"})
    (routes,) = translation.routes
    (vhost,) = routes.virtual_hosts
    assert vhost.domains == ["edition.cnn.com"]
    assert vhost.routes[0].route.cluster == "outbound|80||edition.cnn.com"
    assert [listener.name for listener in translation.listeners] == ["0.0.0.0_8080"]
