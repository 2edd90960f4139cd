"""pilotfish.translator.service_targets: a gateway proxy's own Services, and its ports."""

from __future__ import annotations

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.node_id import NodeId
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.service_targets import (
    ServiceTarget,
    addressed_ips,
    listener_ports,
    service_targets,
)

OPT_OUT = "{experimental.istio.io/disable-gateway-port-translation: 'false'}"


def config_of(*documents: str) -> ConfigSet:
    config = build_config_set([parse_manifest_text("---\n".join(documents), "targets.yaml")])
    assert config.errors == (), [e.describe() for e in config.errors]
    return config


def proxy(ip: str = "10.0.0.1", namespace: str = "istio-system") -> Proxy:
    node_id = str(NodeId.for_pod("router", ip, "gw-0", namespace))
    return Proxy.from_node(node_id, {"LABELS": {"istio": "ingressgateway"}})


def targets(config: ConfigSet, who: Proxy | None = None) -> set[tuple[str, int, int, bool]]:
    found = service_targets(config, who or proxy(), ServiceRegistry(config))
    return {(t.service, t.port, t.target_port, t.translates) for t in found}


def service(name: str, ports: str, labels: str = "{}", namespace: str = "istio-system") -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}
spec:
  selector: {{istio: ingressgateway}}
  ports: {ports}
"""


def entry(name: str, body: str, labels: str = "{}", namespace: str = "istio-system") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}
spec:
  hosts: [{name}.example.com]
  resolution: STATIC
{body}
"""


def test_kubernetes_services_selecting_the_proxy_in_its_namespace() -> None:
    config = config_of(
        service("gw", "[{name: http, port: 80, targetPort: 8080}, {name: tcp, port: 31400}]"),
        service("elsewhere", "[{name: http, port: 80, targetPort: 7070}]", namespace="default"),
        """\
apiVersion: v1
kind: Service
metadata: {name: other-pods, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  ports: [{name: http, port: 80, targetPort: 6060}]
""",
    )
    assert targets(config) == {
        ("Service istio-system/gw", 80, 8080, True),
        ("Service istio-system/gw", 31400, 31400, True),  # targetPort defaults to the port
    }


def test_a_named_target_port_resolves_through_the_endpoints_or_is_no_target() -> None:
    named = service("gw", "[{name: https, port: 443, targetPort: https-port}]")
    assert targets(config_of(named)) == set()
    slice_ = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: gw-1
  namespace: istio-system
  labels: {kubernetes.io/service-name: gw}
addressType: IPv4
ports: [{name: https, port: 8443}]
endpoints: [{addresses: [10.0.0.1]}]
"""
    assert targets(config_of(named, slice_)) == {("Service istio-system/gw", 443, 8443, True)}


def test_service_entry_endpoints_at_the_proxy_ip() -> None:
    config = config_of(
        entry(
            "ours",
            """\
  ports:
  - {number: 80, targetPort: 8080, name: http}
  - {number: 443, targetPort: 8443, name: https}
  - {number: 15021, name: status}
  endpoints: [{address: 10.0.0.1, ports: {https: 9443}}, {address: 10.0.0.7}]
""",
        ),
        entry(
            "not-at-our-ip",
            "  ports: [{number: 80, name: http}]\n  endpoints: [{address: 10.0.0.2}]",
        ),
        entry(
            "other-namespace",
            "  ports: [{number: 80, targetPort: 81, name: http}]\n  endpoints: [{address: 10.0.0.1}]",
            namespace="default",
        ),
    )
    # The endpoint's own port for the port's name, else the targetPort, else the number.
    assert targets(config) == {
        ("ServiceEntry istio-system/ours", 80, 8080, True),
        ("ServiceEntry istio-system/ours", 443, 9443, True),
        ("ServiceEntry istio-system/ours", 15021, 15021, True),
    }
    assert targets(config, proxy("10.0.0.2")) == {
        ("ServiceEntry istio-system/not-at-our-ip", 80, 80, True)
    }
    assert targets(config, proxy("10.0.0.1", namespace="default")) == {
        ("ServiceEntry default/other-namespace", 80, 81, True)
    }


def test_service_entry_selecting_a_workload_entry_at_the_proxy_ip() -> None:
    workload = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  address: {address}
  labels: {{app: gw-vm}}
  ports: {{http: 8088}}
"""
    config = config_of(
        entry(
            "vm",
            """\
  ports: [{number: 80, targetPort: 8080, name: http}, {number: 81, targetPort: 8181, name: alt}]
  workloadSelector: {labels: {app: gw-vm}}
""",
        ),
        workload.format(name="ours", namespace="istio-system", address="10.0.0.1"),
        workload.format(name="at-another-ip", namespace="istio-system", address="10.0.0.2"),
        workload.format(name="other-namespace", namespace="default", address="10.0.0.3"),
    )
    assert targets(config) == {
        ("ServiceEntry istio-system/vm", 80, 8088, True),
        ("ServiceEntry istio-system/vm", 81, 8181, True),
    }
    assert targets(config, proxy("10.0.0.3")) == set()


def test_the_opt_out_label_counts_whatever_its_value_as_in_istio() -> None:
    config = config_of(
        service("knative", "[{name: http, port: 80, targetPort: 8081}]", labels=OPT_OUT),
        entry(
            "opted-out",
            "  ports: [{number: 80, targetPort: 9090, name: http}]\n  endpoints: [{address: 10.0.0.1}]",
            labels=OPT_OUT,
        ),
    )
    assert targets(config) == {
        ("Service istio-system/knative", 80, 8081, False),
        ("ServiceEntry istio-system/opted-out", 80, 9090, False),
    }


def test_listener_ports() -> None:
    found = [
        ServiceTarget("Service a", 80, 9080),
        ServiceTarget("Service b", 80, 8080),
        ServiceTarget("ServiceEntry c", 80, 8080),
        ServiceTarget("Service d", 80, 7070, translates=False),
        ServiceTarget("Service d", 443, 8443, translates=False),
        ServiceTarget("Service a", 15021, 15021),
    ]
    assert listener_ports(80, found) == (8080, 9080)  # every Service's, each once
    assert listener_ports(443, found) == (443,)  # only an opted-out Service maps it
    assert listener_ports(8000, found) == (8000,)  # none maps it: the port itself
    assert listener_ports(15021, found) == (15021,)


def test_addressed_ips_are_every_entry_endpoint_and_workload_entry() -> None:
    config = config_of(
        entry("a", "  ports: [{number: 80, name: http}]\n  endpoints: [{address: 10.0.0.1}]"),
        entry(
            "b",
            "  ports: [{number: 80, name: http}]\n  endpoints: [{address: 10.0.0.2}]",
            namespace="default",
        ),
        """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: vms}
spec: {address: 10.0.0.3}
""",
    )
    assert addressed_ips(config) == {
        ("istio-system", "10.0.0.1"),
        ("default", "10.0.0.2"),
        ("vms", "10.0.0.3"),
    }


def test_targets_say_host_and_protocol_and_come_oldest_service_first() -> None:
    newer = service("b-newer", "[{name: http, port: 80, targetPort: 8080}]").replace(
        "labels: {}", "labels: {}, creationTimestamp: '2024-02-01T00:00:00Z'"
    )
    older = service("z-older", "[{name: tcp-db, port: 3306}, {name: web, port: 81}]").replace(
        "labels: {}", "labels: {}, creationTimestamp: '2024-01-01T00:00:00Z'"
    )
    config = config_of(newer, older)
    found = service_targets(config, proxy(), ServiceRegistry(config))
    assert [(t.hostname, t.port, t.port_name, t.protocol) for t in found] == [
        ("z-older.istio-system.svc.cluster.local", 3306, "tcp-db", "TCP"),
        ("z-older.istio-system.svc.cluster.local", 81, "web", "UNSUPPORTED"),
        ("b-newer.istio-system.svc.cluster.local", 80, "http", "HTTP"),
    ]
    assert found[0].source is not None and found[0].source.meta.name == "z-older"
