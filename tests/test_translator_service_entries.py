"""The registry's ServiceEntries and Pod-labelled endpoints."""

from __future__ import annotations

import pytest

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.model.objects import Pod
from pilotfish.translator.ir import Endpoint
from pilotfish.translator.registry import ServiceRegistry, port_protocol
from pilotfish.translator.visibility import exported_to


def config_of(*documents: str) -> ConfigSet:
    config = build_config_set([parse_manifest_text("---\n".join(documents), "se.yaml")])
    assert config.errors == (), [e.describe() for e in config.errors]
    return config


ENTRY = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: team}
spec:
  hosts: [api.example.com]
  exportTo: ["."]
  resolution: STATIC
  ports: [{number: 443, name: https, protocol: HTTPS, targetPort: 8443}]
  endpoints:
  - {address: 10.0.0.1, labels: {zone: a}}
  - {address: 10.0.0.2, labels: {zone: b}, ports: {https: 9443}}
"""


def test_service_entry_hosts_are_services_with_their_endpoints() -> None:
    registry = ServiceRegistry(config_of(ENTRY))
    service = registry.lookup("api.example.com")
    assert service is not None and service.resolution == "STATIC"
    (port,) = service.ports
    assert (port.port, port_protocol(port)) == (443, "HTTPS")
    assert registry.endpoints(service, port) == (
        Endpoint("10.0.0.1", 8443),
        Endpoint("10.0.0.2", 9443),
    )
    assert registry.endpoints(service, port, {"zone": "b"}) == (Endpoint("10.0.0.2", 9443),)


def test_export_to_dot_hides_an_entry_from_other_namespaces() -> None:
    config = config_of(ENTRY)
    assert ServiceRegistry(config, proxy_namespace="team").lookup("api.example.com")
    assert ServiceRegistry(config, proxy_namespace="istio-system").lookup("api.example.com") is None


def test_dns_entry_without_endpoints_resolves_its_host() -> None:
    registry = ServiceRegistry(
        config_of(
            """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [localhost]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
"""
        )
    )
    service = registry.lookup("localhost")
    assert service is not None
    assert registry.endpoints(service, service.ports[0]) == (Endpoint("localhost", 80),)


def test_endpoint_labels_come_from_the_pod_by_target_ref_else_by_ip() -> None:
    config = config_of(
        """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.0.0.1]
  targetRef: {kind: Pod, name: web-a}
- addresses: [10.0.0.2]
---
apiVersion: v1
kind: Pod
metadata: {name: web-a, namespace: default, labels: {version: v1}}
status: {podIP: 10.9.9.9}
---
apiVersion: v1
kind: Pod
metadata: {name: web-b, namespace: default, labels: {version: v2}}
status: {podIP: 10.0.0.2}
""",
    )
    pod = config.get("Pod", "default", "web-b")
    assert isinstance(pod, Pod) and pod.pod_ip == "10.0.0.2"
    registry = ServiceRegistry(config)
    service = registry.lookup("web.default.svc.cluster.local")
    assert service is not None
    port = service.ports[0]
    assert registry.endpoints(service, port, {"version": "v1"}) == (Endpoint("10.0.0.1", 8080),)
    assert registry.endpoints(service, port, {"version": "v2"}) == (Endpoint("10.0.0.2", 8080),)
    assert registry.endpoints(service, port, {"version": "v3"}) == ()


def test_a_kubernetes_service_wins_over_an_entry_for_the_same_host() -> None:
    registry = ServiceRegistry(
        config_of(
            """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.default.svc.cluster.local]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
"""
        )
    )
    found = registry.lookup("web.default.svc.cluster.local")
    assert found is not None and found.entry is None


@pytest.mark.parametrize(
    ("export_to", "namespace", "visible"),
    [
        ([], "any", True),
        (["*"], "any", True),
        (["."], "team", True),
        (["."], "other", False),
        (["other"], "other", True),
        (["~"], "team", False),
    ],
)
def test_export_to(export_to: list[str], namespace: str, visible: bool) -> None:
    assert exported_to(export_to, "team", namespace) is visible
