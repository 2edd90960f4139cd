"""`pilotfish validate` translates for the gateway proxies the config implies."""

from __future__ import annotations

from pilotfish.model.configset import build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.translator.validate import (
    implied_gateway_proxies,
    implied_sidecar_proxies,
    validation_report,
)

GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""

FRONTING_SERVICE = """\
---
apiVersion: v1
kind: Service
metadata: {name: my-gateway, namespace: edge}
spec:
  selector: {istio: ingressgateway}
  ports: [{name: http2, port: 80, targetPort: 8080}]
"""


def proxies_for(text: str) -> list[tuple[str, dict[str, str]]]:
    config = build_config_set([parse_manifest_text(text, "in.yaml")])
    return [(p.namespace, dict(p.labels)) for p in implied_gateway_proxies(config)]


def test_the_gateway_runs_where_a_service_selecting_it_is() -> None:
    assert proxies_for(GATEWAY + FRONTING_SERVICE) == [("edge", {"istio": "ingressgateway"})]


def test_without_such_a_service_the_gateway_runs_in_istio_system() -> None:
    # As in Istio's docs: the Gateway in `default`, its proxy (and Secrets) in istio-system.
    assert proxies_for(GATEWAY) == [("istio-system", {"istio": "ingressgateway"})]


def test_one_proxy_per_distinct_selector() -> None:
    other = GATEWAY.replace("name: gw,", "name: gw2,").replace("ingressgateway", "egressgateway")
    assert proxies_for(
        GATEWAY + "---\n" + other + "---\n" + GATEWAY.replace("name: gw,", "name: gw3,")
    ) == [
        ("istio-system", {"istio": "egressgateway"}),
        ("istio-system", {"istio": "ingressgateway"}),
    ]


SIDECARS = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ratings, namespace: shop}
spec:
  workloadSelector: {labels: {app: ratings}}
  ingress: [{port: {number: 9080, protocol: HTTP}, defaultEndpoint: "10.0.0.1:9080"}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: ["./*"]}]
"""


def test_each_sidecar_resource_implies_a_sidecar_it_applies_to() -> None:
    config = build_config_set([parse_manifest_text(SIDECARS, "in.yaml")])
    assert [(p.type, p.namespace, dict(p.labels)) for p in implied_sidecar_proxies(config)] == [
        ("sidecar", "shop", {}),
        ("sidecar", "shop", {"app": "ratings"}),
    ]
    # So `pilotfish validate` reports a bad ingress listener with no proxy connected.
    fields = [(e["name"], e.get("field")) for e in validation_report(config)]
    assert ("ratings", "spec.ingress[0].defaultEndpoint") in fields
