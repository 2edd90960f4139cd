"""pilotfish.model.parse: one raw document -> a typed object, or a located ConfigError."""

from __future__ import annotations

from typing import Any

import pytest

from pilotfish.api.networking.v1alpha3 import (
    destination_rule_pb2,
    gateway_pb2,
    service_entry_pb2,
    sidecar_pb2,
    virtual_service_pb2,
)
from pilotfish.model.documents import RawDocument, parse_manifest_text
from pilotfish.model.errors import ConfigError
from pilotfish.model.objects import (
    ConfigObject,
    EndpointSet,
    IstioObject,
    Namespace,
    ObjectRef,
    Secret,
    Service,
    ServicePort,
)
from pilotfish.model.parse import SUPPORTED_KINDS, parse_document

ISTIO_VERSIONS = (
    "networking.istio.io/v1alpha3",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1",
)


def parse_one(text: str, file: str = "m.yaml") -> ConfigObject | ConfigError:
    parsed = parse_manifest_text(text, file)
    assert parsed.errors == ()
    assert len(parsed.documents) == 1
    return parse_document(parsed.documents[0])


def parse_ok(text: str) -> Any:
    result = parse_one(text)
    assert not isinstance(result, ConfigError), result.describe()
    return result


def parse_error(body: dict[str, Any], *, index: int = 3, file: str = "dir/bad.yaml") -> ConfigError:
    """Parse a document that must fail; check it names file, document, kind, ns and name."""
    result = parse_document(RawDocument(body, file, index))
    assert isinstance(result, ConfigError), result
    assert result.file == file
    assert result.document == index
    assert result.severity == "error"
    metadata = body.get("metadata") or {}
    assert result.kind == (body.get("kind") or None)
    assert result.namespace == metadata.get("namespace")
    assert result.name == metadata.get("name")
    return result


def istio(kind: str, spec: Any, version: str = "networking.istio.io/v1") -> dict[str, Any]:
    return {
        "apiVersion": version,
        "kind": kind,
        "metadata": {"name": "obj", "namespace": "team-a"},
        "spec": spec,
    }


# --- Istio kinds ------------------------------------------------------------------------

ISTIO_SPECS: dict[str, tuple[str, type[Any], Any]] = {
    "Gateway": (
        """
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*.example.com"]
    tls: {mode: SIMPLE, credentialName: cert}
""",
        gateway_pb2.Gateway,
        lambda s: (
            (s.servers[0].port.number, s.servers[0].tls.mode, s.selector["istio"])
            == (443, gateway_pb2.ServerTLSSettings.SIMPLE, "ingressgateway")
        ),
    ),
    "VirtualService": (
        """
  hosts: [reviews]
  gateways: [mesh]
  http:
  - match: [{uri: {prefix: /v1}}]
    route: [{destination: {host: reviews, subset: v1, port: {number: 9080}}, weight: 100}]
""",
        virtual_service_pb2.VirtualService,
        lambda s: (
            (s.http[0].match[0].uri.prefix, s.http[0].route[0].destination.port.number)
            == ("/v1", 9080)
        ),
    ),
    "DestinationRule": (
        """
  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets: [{name: v1, labels: {version: v1}}]
""",
        destination_rule_pb2.DestinationRule,
        lambda s: (s.host, s.subsets[0].labels["version"]) == ("reviews", "v1"),
    ),
    "ServiceEntry": (
        """
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
""",
        service_entry_pb2.ServiceEntry,
        lambda s: (
            (s.hosts[0], s.resolution) == ("api.example.com", service_entry_pb2.ServiceEntry.DNS)
        ),
    ),
    "Sidecar": (
        """
  egress: [{hosts: ["./*", "istio-system/*"]}]
""",
        sidecar_pb2.Sidecar,
        lambda s: list(s.egress[0].hosts) == ["./*", "istio-system/*"],
    ),
}


@pytest.mark.parametrize("version", ISTIO_VERSIONS)
@pytest.mark.parametrize("kind", sorted(ISTIO_SPECS))
def test_every_istio_kind_parses_under_every_api_version(kind: str, version: str) -> None:
    spec_yaml, message_type, check = ISTIO_SPECS[kind]
    text = (
        f"apiVersion: {version}\nkind: {kind}\n"
        f"metadata:\n  name: obj\n  namespace: team-a\n  labels: {{app: x}}\n"
        f"spec:{spec_yaml}"
    )
    obj = parse_ok(text)
    assert isinstance(obj, IstioObject)
    assert obj.kind == kind
    assert (obj.meta.namespace, obj.meta.name) == ("team-a", "obj")
    assert obj.meta.labels == {"app": "x"}
    assert isinstance(obj.spec, message_type)
    assert check(obj.spec)
    assert (obj.origin.file, obj.origin.document) == ("m.yaml", 0)


def test_namespace_defaults_to_default_and_metadata_is_kept() -> None:
    obj = parse_ok(
        """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
  annotations: {note: hi}
  creationTimestamp: "2024-05-01T10:00:00Z"
  resourceVersion: "42"
spec: {}
"""
    )
    assert obj.meta.namespace == "default"
    assert obj.meta.annotations == {"note": "hi"}
    assert obj.meta.creation_timestamp == "2024-05-01T10:00:00Z"
    assert obj.meta.resource_version == "42"


def test_a_go_duration_is_accepted() -> None:
    obj = parse_ok(
        """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [a]
  http:
  - timeout: 1m
    retries: {attempts: 3, perTryTimeout: 1.5s}
    route: [{destination: {host: a}}]
"""
    )
    http = obj.spec.http[0]
    assert http.timeout.seconds == 60
    assert (http.retries.per_try_timeout.seconds, http.retries.per_try_timeout.nanos) == (
        1,
        500_000_000,
    )


def test_snake_case_field_names_are_accepted_too() -> None:
    obj = parse_ok(
        """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.com]
    tls: {mode: SIMPLE, credential_name: cert}
"""
    )
    assert obj.spec.servers[0].tls.credential_name == "cert"


# --- Kubernetes kinds -------------------------------------------------------------------


def test_service_with_named_and_numeric_target_ports() -> None:
    svc = parse_ok(
        """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  type: NodePort
  clusterIP: 10.0.0.7
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http-web, appProtocol: http}
  - {name: admin, port: 9000, targetPort: 9001}
  - {name: metrics, port: 9100, targetPort: "9102"}
  - {name: grpc, port: 7000, protocol: TCP}
"""
    )
    assert isinstance(svc, Service)
    assert (svc.meta.namespace, svc.meta.name) == ("shop", "web")
    assert svc.selector == {"app": "web"}
    assert (svc.type, svc.cluster_ip) == ("NodePort", "10.0.0.7")
    assert svc.ports == (
        ServicePort(80, "http", "http-web", "TCP", "http"),
        ServicePort(9000, "admin", 9001),
        ServicePort(9100, "metrics", 9102),  # a quoted number is a number
        ServicePort(7000, "grpc", 7000),  # no targetPort: the port itself
    )


def test_a_service_with_several_ports_needs_names() -> None:
    error = parse_error(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"ports": [{"name": "http", "port": 80}, {"port": 81}]},
        }
    )
    assert error.field == "spec.ports"
    assert "must have a name" in error.message


@pytest.mark.parametrize(
    ("port", "field", "needle"),
    [
        (70000, "spec.ports[0].port", "out of range"),
        (0, "spec.ports[0].port", "out of range"),
        ("eighty", "spec.ports[0].port", "must be a port number"),
        (None, "spec.ports[0].port", "is required"),
    ],
)
def test_a_service_port_must_be_a_port_number(port: Any, field: str, needle: str) -> None:
    error = parse_error(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"ports": [{"name": "http", "port": port}]},
        }
    )
    assert error.field == field
    assert needle in error.message


def test_endpoint_slice_with_ready_conditions() -> None:
    es = parse_ok(
        """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, appProtocol: http}]
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: web-1}
- addresses: [10.0.0.2]
  conditions: {ready: false}
- addresses: [10.0.0.3, 10.0.0.4]
  hostname: web-3
"""
    )
    assert isinstance(es, EndpointSet)
    assert es.kind == "EndpointSlice"
    assert es.service_name == "web"
    assert es.address_type == "IPv4"
    (subset,) = es.subsets
    assert [(p.name, p.port, p.app_protocol) for p in subset.ports] == [("http", 8080, "http")]
    assert [(e.addresses, e.ready) for e in subset.endpoints] == [
        (("10.0.0.1",), True),
        (("10.0.0.2",), False),
        (("10.0.0.3", "10.0.0.4"), True),  # no conditions: the API says treat as ready
    ]
    assert subset.endpoints[0].target_ref == ObjectRef("Pod", "web-1", "shop")
    assert subset.endpoints[2].hostname == "web-3"


def test_endpoint_slice_needs_its_service_label() -> None:
    error = parse_error(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "shop"},
            "endpoints": [{"addresses": ["10.0.0.1"]}],
        }
    )
    assert error.field == "metadata.labels"
    assert "kubernetes.io/service-name" in error.message


def test_endpoint_slice_ready_must_be_a_boolean() -> None:
    error = parse_error(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "w",
                "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "w"},
            },
            "endpoints": [
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": "yes"}},
            ],
        }
    )
    assert error.field == "endpoints[1].conditions.ready"


def test_v1_endpoints_with_ready_and_not_ready_addresses() -> None:
    es = parse_ok(
        """\
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: shop}
subsets:
- addresses: [{ip: 10.0.0.1, targetRef: {kind: Pod, name: web-1, namespace: shop}}]
  notReadyAddresses: [{ip: 10.0.0.9, hostname: web-9}]
  ports: [{name: http, port: 8080}]
- addresses: [{ip: 10.0.1.1}]
  ports: [{name: admin, port: 9001}]
"""
    )
    assert isinstance(es, EndpointSet)
    assert es.kind == "Endpoints"
    assert es.service_name == "web"  # an Endpoints object is named after its Service
    first, second = es.subsets
    assert [(e.addresses, e.ready, e.hostname) for e in first.endpoints] == [
        (("10.0.0.1",), True, ""),
        (("10.0.0.9",), False, "web-9"),
    ]
    assert first.endpoints[0].target_ref == ObjectRef("Pod", "web-1", "shop")
    assert [p.port for p in first.ports] == [8080]
    assert [(p.name, p.port) for p in second.ports] == [("admin", 9001)]
    assert second.endpoints[0].addresses == ("10.0.1.1",)


def test_endpoints_address_needs_an_ip() -> None:
    error = parse_error(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "shop"},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1"}], "notReadyAddresses": [{"hostname": "x"}]}
            ],
        }
    )
    assert error.field == "subsets[0].notReadyAddresses[0].ip"


def test_secret_data_is_base64_and_string_data_is_plain() -> None:
    secret = parse_ok(
        """\
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: istio-system}
type: kubernetes.io/tls
data:
  tls.crt: aGVsbG8=
  tls.key: c2VjcmV0
stringData:
  ca.crt: plain text
  tls.key: overridden
"""
    )
    assert isinstance(secret, Secret)
    assert secret.type == "kubernetes.io/tls"
    # stringData wins over data for the same key, as the API server merges them
    assert dict(secret.data) == {
        "tls.crt": b"hello",
        "tls.key": b"overridden",
        "ca.crt": b"plain text",
    }
    assert "hello" not in repr(secret) and "overridden" not in repr(secret)


def test_secret_data_that_is_not_base64_is_an_error() -> None:
    error = parse_error(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "cert", "namespace": "istio-system"},
            "data": {"tls.crt": "not base64!"},
        }
    )
    assert error.field == "data.tls.crt"
    assert "base64" in error.message


def test_namespace_is_cluster_scoped() -> None:
    ns = parse_ok("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, namespace: ignored}\n")
    assert isinstance(ns, Namespace)
    assert (ns.meta.namespace, ns.meta.name) == ("", "shop")


# --- errors -----------------------------------------------------------------------------


def test_unknown_kind_lists_the_supported_ones() -> None:
    error = parse_error(
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "c", "namespace": "n"},
        }
    )
    assert error.field == "kind"
    assert "unsupported kind 'Widget'" in error.message
    for kind in SUPPORTED_KINDS:
        assert kind in error.message
    assert {"Gateway", "VirtualService", "Service", "EndpointSlice", "Secret"} <= set(
        SUPPORTED_KINDS
    )


def test_missing_kind() -> None:
    error = parse_error({"apiVersion": "v1", "metadata": {"name": "c", "namespace": "n"}})
    assert error.field == "kind"
    assert "missing `kind`" in error.message


@pytest.mark.parametrize(
    ("kind", "version"),
    [
        ("Gateway", "networking.istio.io/v2"),
        ("Gateway", "v1"),
        ("VirtualService", None),
        ("Service", "apps/v1"),
        ("EndpointSlice", "discovery.k8s.io/v1beta1"),
    ],
)
def test_wrong_api_version(kind: str, version: str | None) -> None:
    body: dict[str, Any] = {"kind": kind, "metadata": {"name": "x", "namespace": "n"}, "spec": {}}
    if version is not None:
        body["apiVersion"] = version
    error = parse_error(body)
    assert error.field == "apiVersion"
    assert f"apiVersion {version!r} is not served for {kind}" in error.message
    for wanted in SUPPORTED_KINDS[kind]:
        assert wanted in error.message


def test_missing_metadata_name() -> None:
    error = parse_error({**istio("Gateway", {}), "metadata": {"namespace": "team-a"}})
    assert error.field == "metadata.name"
    assert "required" in error.message


@pytest.mark.parametrize("name", ["Has_Upper", "under_score", "-leading", "a" * 254])
def test_invalid_name(name: str) -> None:
    error = parse_error({**istio("Gateway", {}), "metadata": {"name": name, "namespace": "team-a"}})
    assert error.field == "metadata.name"
    assert "is not a valid name" in error.message


def test_invalid_namespace() -> None:
    error = parse_error({**istio("Gateway", {}), "metadata": {"name": "gw", "namespace": "a.b"}})
    assert error.field == "metadata.namespace"


def test_missing_or_non_mapping_spec() -> None:
    body = istio("Gateway", None)
    del body["spec"]
    assert parse_error(body).field == "spec"
    error = parse_error(istio("Gateway", ["not", "a", "mapping"]))
    assert error.field == "spec"
    assert "mapping" in error.message


def test_unknown_spec_field_is_located_and_named() -> None:
    spec = {
        "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"], "bogus": 1}
        ]
    }
    error = parse_error(istio("Gateway", spec))
    assert error.field is not None
    assert error.field.startswith("spec.servers[0]")
    assert "bogus" in error.message


def test_unknown_field_in_the_second_list_item_names_that_item() -> None:
    spec = {
        "hosts": ["a"],
        "http": [
            {"route": [{"destination": {"host": "a"}}]},
            {"match": [{"uri": {"prefix": "/"}}, {"urx": {"prefix": "/x"}}]},
        ],
    }
    error = parse_error(istio("VirtualService", spec))
    assert error.field is not None
    assert error.field.startswith("spec.http[1].match[1]")
    assert "urx" in error.message


def test_mistyped_spec_field() -> None:
    spec = {
        "servers": [
            {"port": {"number": 80, "name": "ok", "protocol": "HTTP"}, "hosts": ["a"]},
            {"port": {"number": "eighty", "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
        ]
    }
    error = parse_error(istio("Gateway", spec, "networking.istio.io/v1beta1"))
    assert error.field == "spec.servers[1].port.number"
    assert "eighty" in error.message


def test_invalid_enum_value() -> None:
    spec = {"servers": [{"port": {"number": 443}, "hosts": ["*"], "tls": {"mode": "SIMPEL"}}]}
    error = parse_error(istio("Gateway", spec))
    assert error.field == "spec.servers[0].tls.mode"
    assert "SIMPEL" in error.message


def test_invalid_duration() -> None:
    spec = {
        "hosts": ["a"],
        "http": [{"timeout": "five seconds", "route": [{"destination": {"host": "a"}}]}],
    }
    error = parse_error(istio("VirtualService", spec))
    assert error.field == "spec.http[0].timeout"
    assert "five seconds" in error.message


def test_error_describe_shows_where() -> None:
    error = parse_error(istio("Gateway", {"servers": [{"port": {"number": "x"}}]}), index=2)
    assert error.describe().startswith(
        "dir/bad.yaml#2 Gateway/team-a/obj spec.servers[0].port.number: "
    )


# --- kinds pilotfish does not read --------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "api_version"),
    [("Deployment", "apps/v1"), ("ServiceAccount", "v1"), ("ConfigMap", "v1")],
)
def test_kinds_without_traffic_config_are_skipped_quietly(kind: str, api_version: str) -> None:
    body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
    assert parse_document(RawDocument(body, "bookinfo.yaml", 0)) is None


@pytest.mark.parametrize(
    ("kind", "api_version", "severity"),
    [
        ("PeerAuthentication", "security.istio.io/v1", "error"),
        ("AuthorizationPolicy", "security.istio.io/v1beta1", "error"),
        ("EnvoyFilter", "networking.istio.io/v1alpha3", "warning"),
        ("Telemetry", "telemetry.istio.io/v1", "warning"),
    ],
)
def test_istio_kinds_pilotfish_does_not_apply_are_reported(
    kind: str, api_version: str, severity: str
) -> None:
    body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "p", "namespace": "shop"}}
    error = parse_document(RawDocument(body, "mesh.yaml", 2))
    assert isinstance(error, ConfigError)
    assert (error.file, error.document, error.kind, error.namespace, error.name) == (
        "mesh.yaml",
        2,
        kind,
        "shop",
        "p",
    )
    assert (error.field, error.severity) == ("kind", severity)
    assert "not supported by pilotfish" in error.message


def test_a_kind_nobody_knows_is_still_an_error() -> None:
    body = {"apiVersion": "example.com/v1", "kind": "PeerAuthentication", "metadata": {"name": "p"}}
    error = parse_document(RawDocument(body, "x.yaml", 0))
    assert isinstance(error, ConfigError) and error.severity == "error"
    assert "unsupported kind" in error.message
