"""pilotfish.translator.sidecar.ingress: a Sidecar's `ingress:` listeners, checked as
Istio's validation does, and what each becomes (sidecar_simulation_test.go's cases)."""

from __future__ import annotations

import pytest
import yaml
from google.protobuf import json_format

from pilotfish.api.networking.v1alpha3 import destination_rule_pb2 as dr_pb
from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.node_id import NodeId
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.sidecar import build_sidecar
from pilotfish.translator.sidecar.connection_pool import pool_problems
from pilotfish.translator.sidecar.ingress import split_host_port

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: http-admin, port: 80, targetPort: 8080}]
"""


def sidecar_resource(ingress: str, extra: str = "") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: ratings, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: ratings}}}}
  ingress: {ingress}
{extra}"""


def config_of(*documents: str) -> ConfigSet:
    config = build_config_set([parse_manifest_text("---\n".join(documents), "in.yaml")])
    assert config.errors == (), [e.describe() for e in config.errors]
    return config


def translate(config: ConfigSet, ip: str = "10.1.0.7") -> tuple[ir.ProxyConfig, list[str]]:
    node_id = str(NodeId.for_pod("sidecar", ip, "ratings-v1", "default"))
    proxy = Proxy.from_node(node_id, {"LABELS": {"app": "ratings"}})
    diag = Diagnostics()
    out = build_sidecar(config, proxy, ServiceRegistry(config, proxy_namespace="default"), diag)
    return out, [f"{e.severity} {e.field}: {e.message}" for e in diag.sorted()]


def inbound_clusters(config: ir.ProxyConfig) -> dict[str, ir.Cluster]:
    return {c.name: c for c in config.clusters if c.name.startswith("inbound|")}


def port_chains(config: ir.ProxyConfig) -> list[tuple[str, int | None]]:
    (listener,) = [li for li in config.listeners if li.name == "virtualInbound"]
    return [(c.name, c.match.destination_port) for c in listener.chains[3:]]


@pytest.mark.parametrize(
    ("endpoint", "discovery", "endpoints", "bind"),
    [
        # sidecar_simulation_test.go: "ingress to same/different port", "to instance IP",
        # "without default endpoint", "to socket".
        ("127.0.0.1:80", "STATIC", (ir.Endpoint("127.0.0.1", 80),), ""),
        ("127.0.0.1:8080", "STATIC", (ir.Endpoint("127.0.0.1", 8080),), ""),
        ("0.0.0.0:8080", "STATIC", (ir.Endpoint("10.1.0.7", 8080),), "127.0.0.6"),
        ("[::1]:8080", "STATIC", (ir.Endpoint("127.0.0.1", 8080),), ""),  # an IPv4 pod's
        ("", "ORIGINAL_DST", (), "127.0.0.6"),
        (":8080", "ORIGINAL_DST", (), "127.0.0.6"),  # no address: where it was going
        ("unix:///var/run/app.sock", "STATIC", (ir.Endpoint("", 0, "/var/run/app.sock"),), None),
    ],
)
def test_default_endpoint(
    endpoint: str, discovery: str, endpoints: tuple[ir.Endpoint, ...], bind: str | None
) -> None:
    entry = f"[{{port: {{number: 80, protocol: HTTP, name: http}}, defaultEndpoint: '{endpoint}'}}]"
    out, problems = translate(config_of(sidecar_resource(entry)))
    assert problems == []
    found = inbound_clusters(out)["inbound|80||"]
    assert (found.discovery, found.inline_endpoints) == (discovery, endpoints)
    if bind is not None:
        assert found.upstream_bind_address == bind


def test_ingress_replaces_the_services_ports_and_names_chains_after_the_pod() -> None:
    config = config_of(
        SERVICE,
        sidecar_resource(
            "[{port: {number: 9080, protocol: HTTP, name: http}, "
            "defaultEndpoint: '127.0.0.1:9080'}, "
            "{port: {number: 3306, protocol: TCP, name: db}, bind: 0.0.0.0}]"
        ),
    )
    out, problems = translate(config)
    assert problems == []
    assert sorted(inbound_clusters(out)) == ["inbound|3306||", "inbound|9080||"]
    assert port_chains(out) == [("0.0.0.0_3306", 3306), ("10.1.0.7_9080", 9080)]  # by port
    (listener,) = [li for li in out.listeners if li.name == "virtualInbound"]
    http = listener.chains[4]
    assert isinstance(http, ir.HttpFilterChain)
    assert http.stat_prefix == "inbound_10.1.0.7_9080"


def test_capture_mode_none_is_a_listener_of_its_own() -> None:
    config = config_of(
        sidecar_resource(
            "[{port: {number: 9443, protocol: TCP, name: tcp}, captureMode: NONE, "
            "defaultEndpoint: '127.0.0.1:8443'}, "
            "{port: {number: 9080, name: web}, bind: 127.0.0.1, captureMode: NONE}]"
        )
    )
    out, problems = translate(config)
    assert problems == []
    assert port_chains(out) == []  # nothing of them in virtualInbound
    bound = {
        li.name: li
        for li in out.listeners
        if li.name not in ("virtualInbound", "virtualOutbound")  # the outbound half's
    }
    assert sorted(bound) == ["10.1.0.7_9443", "127.0.0.1_9080"]
    tcp = bound["10.1.0.7_9443"]
    assert (tcp.address, tcp.port, tcp.bind_to_port, tcp.use_original_dst) == (
        "10.1.0.7",
        9443,
        True,
        False,
    )
    assert tcp.listener_filters == ()  # no original_dst: nothing was redirected
    sniffed = bound["127.0.0.1_9080"]
    assert [c.match.application_protocols for c in sniffed.chains] == [("http/1.1", "h2c"), ()]
    assert sniffed.listener_filters == (ir.ListenerFilter("http_inspector", only_ports=(9080,)),)


def test_connection_pools_from_the_listener_else_the_sidecar() -> None:
    config = config_of(
        sidecar_resource(
            "[{port: {number: 9080, protocol: HTTP, name: http}, "
            "connectionPool: {http: {http1MaxPendingRequests: 1}}}, "
            "{port: {number: 9081, protocol: HTTP, name: http2}}]",
            "  inboundConnectionPool: {tcp: {maxConnections: 2}}\n",
        )
    )
    out, problems = translate(config)
    assert problems == []
    clusters = inbound_clusters(out)
    assert clusters["inbound|9080||"].circuit_breakers == ir.CircuitBreakers(max_pending_requests=1)
    assert clusters["inbound|9081||"].circuit_breakers == ir.CircuitBreakers(max_connections=2)


@pytest.mark.parametrize(
    ("entry", "field", "says"),
    [
        ("{defaultEndpoint: '127.0.0.1:80'}", "port", "port is required"),
        ("{port: {number: 0, name: http}}", "port.number", "not 1-65535"),
        ("{port: {number: 80, name: Web_1}}", "port.name", "invalid port name"),
        ("{port: {number: 80, protocol: SOAP}}", "port.protocol", "unsupported protocol"),
        ("{port: {number: 80, targetPort: 8080}}", "port.targetPort", "no impact"),
        ("{port: {number: 80}, bind: localhost}", "bind", "not an IP address"),
        ("{port: {number: 80}, defaultEndpoint: '10.0.0.1:80'}", "defaultEndpoint", "form"),
        ("{port: {number: 80}, defaultEndpoint: '127.0.0.1:http'}", "defaultEndpoint", "port"),
        ("{port: {number: 80}, defaultEndpoint: '127.0.0.1'}", "defaultEndpoint", "host:port"),
        ("{port: {number: 80}, defaultEndpoint: 'unix://'}", "defaultEndpoint", "empty"),
        ("{port: {number: 80}, defaultEndpoint: 'unix://a.sock'}", "defaultEndpoint", "absolute"),
        ("{port: {number: 15006}}", "port.number", "virtualInbound"),
        ("{port: {number: 15021}}", "port.number", "readiness"),
        (
            "{port: {number: 443, protocol: HTTPS}, tls: {mode: SIMPLE, credentialName: c}}",
            "tls.credentialName",
            "not supported",
        ),
        ("{port: {number: 443, protocol: TLS}, tls: {mode: ISTIO_MUTUAL}}", "tls.mode", "ISTIO"),
        ("{port: {number: 80, protocol: HTTP}, tls: {mode: SIMPLE}}", "tls", "HTTPS or TLS"),
        (
            "{port: {number: 80}, connectionPool: {tcp: {maxConnections: -1}}}",
            "connectionPool.tcp.maxConnections",
            "non-negative",
        ),
    ],
)
def test_an_invalid_listener_is_left_out_naming_its_field(
    entry: str, field: str, says: str
) -> None:
    good = "{port: {number: 9080, protocol: HTTP, name: http}}"
    out, problems = translate(config_of(sidecar_resource(f"[{good}, {entry}]")))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"error spec.ingress[1].{field}: ")
    assert says in problems[0] and problems[0].endswith("listener left out")
    assert sorted(inbound_clusters(out)) == ["inbound|9080||"]  # the rest applies


def test_a_port_twice_keeps_the_first() -> None:
    twice = "[{port: {number: 80, protocol: HTTP}}, {port: {number: 80, protocol: TCP}}]"
    out, problems = translate(config_of(sidecar_resource(twice)))
    assert problems == [
        "error spec.ingress[1].port.number: ports on IP bound listeners must be unique: "
        "listener left out"
    ]
    assert [type(c).__name__ for c in (c for li in out.listeners for c in li.chains)][-1] == (
        "HttpFilterChain"
    )


def test_valid_tls_is_reported_and_ignored_as_istio_does_by_default() -> None:
    entry = (
        "[{port: {number: 8443, protocol: HTTPS, name: https}, "
        "tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}}]"
    )
    out, problems = translate(config_of(sidecar_resource(entry)))
    assert problems == [
        "warning spec.ingress[0].tls: tls on a Sidecar ingress is not supported (Istio "
        "applies it only with ENABLE_TLS_ON_SIDECAR_INGRESS, from certificate files on the "
        "proxy): ignored, the traffic reaches the workload as it came"
    ]
    assert port_chains(out) == [("10.1.0.7_8443", 8443)]  # TCP: the TLS goes through
    (listener,) = [li for li in out.listeners if li.name == "virtualInbound"]
    assert all(c.tls is None for c in listener.chains)


def test_http_pool_settings_on_a_tcp_port_are_a_warning() -> None:
    entry = "[{port: {number: 3306, protocol: TCP}, connectionPool: {http: {maxRetries: 1}}}]"
    _, problems = translate(config_of(sidecar_resource(entry)))
    assert problems == [
        "warning spec.ingress[0].connectionPool.http: HTTP settings on a port whose protocol "
        "is not HTTP (TCP): only the TCP settings apply"
    ]


def test_a_bad_inbound_connection_pool_is_ignored() -> None:
    entry = "[{port: {number: 9080, protocol: HTTP}}]"
    extra = "  inboundConnectionPool: {tcp: {connectTimeout: 0.0005s}}\n"
    out, problems = translate(config_of(sidecar_resource(entry, extra)))
    assert problems == [
        "error spec.inboundConnectionPool.tcp.connectTimeout: must be at least 1ms (Envoy "
        "requires more than 0): inboundConnectionPool ignored"
    ]
    assert inbound_clusters(out)["inbound|9080||"].connect_timeout_ms == 10_000


def pool(text: str) -> dr_pb.ConnectionPoolSettings:
    return json_format.ParseDict(yaml.safe_load(text), dr_pb.ConnectionPoolSettings())


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("{tcp: {maxConnections: 1}}", []),
        ("{}", [("p", "connection pool must have at least one field")]),
        (
            "{http: {http2MaxRequests: -1, idleTimeout: -1s}}",
            [
                ("p.http.http2MaxRequests", "http2MaxRequests must be non-negative"),
                ("p.http.idleTimeout", "a duration cannot be negative (Envoy refuses it)"),
            ],
        ),
        ("{tcp: {idleTimeout: 0s}}", []),  # 0s: no idle timeout
        (
            "{http: {http2KeepAlive: {interval: 1s}}}",
            [("p.http.http2KeepAlive.timeout", "http2 keepalive timeout is required")],
        ),
        (
            "{http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}",
            [("p.http.useClientProtocol", "must not be true when h2UpgradePolicy is UPGRADE")],
        ),
    ],
)
def test_pool_problems(text: str, problems: list[tuple[str, str]]) -> None:
    assert pool_problems(pool(text), "p") == problems


@pytest.mark.parametrize(
    ("raw", "split"),
    [
        ("127.0.0.1:80", ("127.0.0.1", "80")),
        ("[::1]:80", ("::1", "80")),
        (":80", ("", "80")),
        ("::1:80", None),
        ("127.0.0.1", None),
        ("[::1]80", None),
    ],
)
def test_split_host_port(raw: str, split: tuple[str, str] | None) -> None:
    assert split_host_port(raw) == split
