"""pilotfish.translator.registry: Services and their endpoints, looked up by host name."""

from __future__ import annotations

import pytest

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.model.objects import ServicePort
from pilotfish.translator.ir import Endpoint
from pilotfish.translator.registry import RegistryService, ServiceRegistry, port_protocol


def config_of(*documents: str) -> ConfigSet:
    config = build_config_set([parse_manifest_text("---\n".join(documents), "registry.yaml")])
    assert config.errors == (), [e.describe() for e in config.errors]
    return config


def service(name: str, namespace: str, ports: str, selector: str = "{}") -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {selector}
  ports: {ports}
"""


def endpoint_slice(name: str, namespace: str, service_name: str, ports: str, endpoints: str) -> str:
    return f"""\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: {service_name}}}
addressType: IPv4
ports: {ports}
endpoints: {endpoints}
"""


def endpoints_v1(name: str, namespace: str, subsets: str) -> str:
    return f"""\
apiVersion: v1
kind: Endpoints
metadata: {{name: {name}, namespace: {namespace}}}
subsets: {subsets}
"""


WEB = service(
    "web",
    "shop",
    "[{name: http, port: 80, targetPort: http-web}, {name: admin, port: 9000, targetPort: 9001}]",
    "{app: web}",
)


def lookup(registry: ServiceRegistry, host: str) -> RegistryService:
    found = registry.lookup(host)
    assert found is not None, host
    return found


def port_of(svc: RegistryService, number: int) -> ServicePort:
    port = svc.port(number)
    assert port is not None
    return port


def test_lookup_by_fqdn() -> None:
    registry = ServiceRegistry(config_of(WEB, service("web", "other", "[{port: 8080}]")))
    web = lookup(registry, "web.shop.svc.cluster.local")
    assert web.hostname == "web.shop.svc.cluster.local"
    assert web.namespace == "shop"
    assert [p.port for p in web.ports] == [80, 9000]
    assert port_of(web, 9000).name == "admin"
    assert web.port(1234) is None
    assert lookup(registry, "web.other.svc.cluster.local").namespace == "other"
    # only FQDNs: short names are resolved by whoever names them
    assert registry.lookup("web") is None
    assert registry.lookup("web.shop") is None
    assert [s.hostname for s in registry.services()] == [
        "web.other.svc.cluster.local",
        "web.shop.svc.cluster.local",
    ]


def test_another_domain_suffix() -> None:
    registry = ServiceRegistry(config_of(WEB), domain_suffix="corp.internal")
    assert registry.lookup("web.shop.svc.corp.internal") is not None
    assert registry.lookup("web.shop.svc.cluster.local") is None


def test_selecting_by_labels_in_a_namespace() -> None:
    config = config_of(
        service("gw", "istio-system", "[{port: 80}]", "{istio: ingressgateway}"),
        service(
            "gw-admin", "istio-system", "[{port: 15000}]", "{istio: ingressgateway, role: admin}"
        ),
        service("no-selector", "istio-system", "[{port: 81}]"),
        service("elsewhere", "other", "[{port: 80}]", "{istio: ingressgateway}"),
    )
    registry = ServiceRegistry(config)

    def names(namespace: str, labels: dict[str, str]) -> list[str]:
        return sorted(s.service.meta.name for s in registry.selecting(namespace, labels))

    pod = {"istio": "ingressgateway", "app": "istio-ingressgateway"}
    # every selector key must match; extra pod labels do not matter; an empty selector
    # selects nothing (a Service without selector is not in front of any pod)
    assert names("istio-system", pod) == ["gw"]
    assert names("istio-system", {**pod, "role": "admin"}) == ["gw", "gw-admin"]
    assert names("other", pod) == ["elsewhere"]
    assert names("istio-system", {"istio": "egressgateway"}) == []
    assert names("istio-system", {}) == []


def test_endpoints_of_named_ports_exclude_not_ready_ones() -> None:
    config = config_of(
        WEB,
        endpoint_slice(
            "web-1",
            "shop",
            "web",
            "[{name: http, port: 8080}, {name: admin, port: 9001}]",
            """
- addresses: [10.0.0.2]
  conditions: {ready: true}
- addresses: [10.0.0.1, 10.0.0.11]
- addresses: [10.0.0.3]
  conditions: {ready: false}
""",
        ),
        endpoint_slice(
            "web-2",
            "shop",
            "web",
            "[{name: http, port: 8080}]",
            "[{addresses: [10.0.1.1]}, {addresses: [10.0.0.2]}]",
        ),
        # same service name, other namespace: not ours
        endpoint_slice(
            "web-x", "other", "web", "[{name: http, port: 8080}]", "[{addresses: [9.9.9.9]}]"
        ),
    )
    registry = ServiceRegistry(config)
    web = lookup(registry, "web.shop.svc.cluster.local")

    # the service port 80 (targetPort http-web) is served on the endpoints' "http" port
    assert registry.endpoints(web, port_of(web, 80)) == (
        Endpoint("10.0.0.1", 8080),
        Endpoint("10.0.0.11", 8080),
        Endpoint("10.0.0.2", 8080),  # in two slices, listed once
        Endpoint("10.0.1.1", 8080),
    )
    # web-2 does not serve "admin"
    assert registry.endpoints(web, port_of(web, 9000)) == (
        Endpoint("10.0.0.1", 9001),
        Endpoint("10.0.0.11", 9001),
        Endpoint("10.0.0.2", 9001),
    )
    assert registry.named_target_port(web, port_of(web, 80)) == 8080


def test_endpoint_slices_are_preferred_over_endpoints() -> None:
    slice_ = endpoint_slice(
        "web-1", "shop", "web", "[{name: http, port: 8080}]", "[{addresses: [10.0.0.1]}]"
    )
    legacy = endpoints_v1(
        "web",
        "shop",
        "[{addresses: [{ip: 10.9.9.9}], ports: [{name: http, port: 8080}]}]",
    )
    web_only_http = service("web", "shop", "[{name: http, port: 80, targetPort: 8080}]")

    both = ServiceRegistry(config_of(web_only_http, slice_, legacy))
    web = lookup(both, "web.shop.svc.cluster.local")
    assert both.endpoints(web, port_of(web, 80)) == (Endpoint("10.0.0.1", 8080),)

    only_legacy = ServiceRegistry(config_of(web_only_http, legacy))
    web = lookup(only_legacy, "web.shop.svc.cluster.local")
    assert only_legacy.endpoints(web, port_of(web, 80)) == (Endpoint("10.9.9.9", 8080),)


def test_v1_endpoints_not_ready_addresses_are_excluded() -> None:
    config = config_of(
        WEB,
        endpoints_v1(
            "web",
            "shop",
            """
- addresses: [{ip: 10.0.0.1}]
  notReadyAddresses: [{ip: 10.0.0.2}]
  ports: [{name: http, port: 8080}, {name: admin, port: 9001}]
- addresses: [{ip: 10.0.0.3}]
  ports: [{name: admin, port: 9002}]
""",
        ),
    )
    registry = ServiceRegistry(config)
    web = lookup(registry, "web.shop.svc.cluster.local")
    assert registry.endpoints(web, port_of(web, 80)) == (Endpoint("10.0.0.1", 8080),)
    # subsets may serve a port on different numbers
    assert registry.endpoints(web, port_of(web, 9000)) == (
        Endpoint("10.0.0.1", 9001),
        Endpoint("10.0.0.3", 9002),
    )


def test_a_single_unnamed_port() -> None:
    config = config_of(
        service("one", "shop", "[{port: 80, targetPort: 8080}]"),
        endpoint_slice("one-1", "shop", "one", "[{port: 8080}]", "[{addresses: [10.0.0.1]}]"),
        service("bare", "shop", "[{port: 80, targetPort: 8081}]"),
        endpoints_v1("bare", "shop", "[{addresses: [{ip: 10.0.0.5}]}]"),  # no ports listed
    )
    registry = ServiceRegistry(config)
    one = lookup(registry, "one.shop.svc.cluster.local")
    assert registry.endpoints(one, port_of(one, 80)) == (Endpoint("10.0.0.1", 8080),)
    bare = lookup(registry, "bare.shop.svc.cluster.local")
    assert registry.endpoints(bare, port_of(bare, 80)) == (Endpoint("10.0.0.5", 8081),)


def test_a_service_without_endpoints_has_none() -> None:
    registry = ServiceRegistry(config_of(WEB))
    web = lookup(registry, "web.shop.svc.cluster.local")
    assert registry.endpoints(web, port_of(web, 80)) == ()
    assert registry.named_target_port(web, port_of(web, 80)) is None


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (ServicePort(80, name="http"), "HTTP"),
        (ServicePort(80, name="http-web"), "HTTP"),
        (ServicePort(80, name="HTTP-Web"), "HTTP"),
        (ServicePort(80, name="http2-api"), "HTTP2"),
        (ServicePort(80, name="grpc"), "GRPC"),
        (ServicePort(80, name="grpc-api"), "GRPC"),
        (ServicePort(443, name="https"), "HTTPS"),
        (ServicePort(443, name="tls-passthrough"), "TLS"),
        (ServicePort(27017, name="mongo"), "MONGO"),
        (ServicePort(6379, name="redis-main"), "REDIS"),
        (ServicePort(3306, name="mysql"), "MYSQL"),
        # No known prefix: Istio sniffs the protocol ("auto-detect")
        (ServicePort(80, name="web"), "UNSUPPORTED"),
        (ServicePort(80, name="httpx"), "UNSUPPORTED"),  # a prefix is a whole word before '-'
        (ServicePort(80), "UNSUPPORTED"),
        (ServicePort(80, name="grpc-web"), "GRPC-WEB"),  # matched whole: it holds a dash
        (ServicePort(80, name="grpc-web-ui"), "GRPC-WEB"),
        (ServicePort(53, name="dns", protocol="UDP"), "UDP"),
        # appProtocol first
        (ServicePort(80, name="tcp-web", app_protocol="http"), "HTTP"),
        (ServicePort(80, name="http", app_protocol="grpc"), "GRPC"),
        (ServicePort(80, name="web", app_protocol="HTTP2"), "HTTP2"),
        (ServicePort(80, name="web", app_protocol="kubernetes.io/h2c"), "HTTP2"),
        # appProtocol decides alone, even when Istio does not know it
        (ServicePort(80, name="http", app_protocol="custom"), "UNSUPPORTED"),
    ],
)
def test_port_protocol(port: ServicePort, expected: str) -> None:
    assert port_protocol(port) == expected


@pytest.mark.parametrize(
    ("export_to", "visible_in"),
    [
        ("", {"shop", "web"}),
        ("'*'", {"shop", "web"}),
        ("'.'", {"shop"}),
        ("'web, .'", {"shop", "web"}),
        ("'~'", set()),
    ],
)
def test_a_services_export_to_annotation_limits_who_sees_it(
    export_to: str, visible_in: set[str]
) -> None:
    annotations = f"{{networking.istio.io/exportTo: {export_to}}}" if export_to else "{}"
    config = config_of(
        f"""\
apiVersion: v1
kind: Service
metadata: {{name: cart, namespace: shop, annotations: {annotations}}}
spec: {{ports: [{{name: http, port: 80}}]}}
"""
    )
    host = "cart.shop.svc.cluster.local"
    seen = {
        ns for ns in ("shop", "web") if ServiceRegistry(config, proxy_namespace=ns).lookup(host)
    }
    assert seen == visible_in
    assert ServiceRegistry(config).lookup(host) is not None  # no proxy: everything
