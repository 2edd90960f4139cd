"""Our Istio networking protos: generated code is fresh, and real-world specs parse."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from pilotfish.api import generate
from pilotfish.api.durations import go_duration_to_json, normalize_durations
from pilotfish.api.kinds import API_VERSIONS, SPEC_TYPES, parse_spec
from pilotfish.api.networking.v1alpha3 import sidecar_pb2
from pilotfish.api.networking.v1alpha3.destination_rule_pb2 import (
    ClientTLSSettings,
    DestinationRule,
    LoadBalancerSettings,
)
from pilotfish.api.networking.v1alpha3.gateway_pb2 import Gateway, ServerTLSSettings
from pilotfish.api.networking.v1alpha3.service_entry_pb2 import ServiceEntry
from pilotfish.api.networking.v1alpha3.sidecar_pb2 import OutboundTrafficPolicy, Sidecar
from pilotfish.api.networking.v1alpha3.virtual_service_pb2 import (
    HTTPRoute,
    VirtualService,
)
from pilotfish.api.networking.v1alpha3.workload_entry_pb2 import WorkloadEntry


def parse(kind: str, spec_yaml: str) -> Any:
    """Parse a `spec:` written as YAML into the kind's message."""
    return parse_spec(kind, yaml.safe_load(spec_yaml))


# --- generated code ------------------------------------------------------------------


def test_generated_code_is_up_to_date() -> None:
    problems = generate.stale_files()
    assert not problems, "\n".join(problems)


def test_staleness_check_notices_an_edited_proto(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(generate.PROTO_ROOT, protos)
    gateway = protos / "pilotfish/api/networking/v1alpha3/gateway.proto"
    gateway.write_text(
        gateway.read_text().replace(
            "  string name = 6;\n", "  string name = 6;\n  string x = 99;\n"
        )
    )
    fresh = generate.generate_into(tmp_path / "out", protos)
    problems = generate.compare(generate.read_generated(generate.REPO_ROOT), fresh)
    changed = {p.split(":")[0] for p in problems}
    assert changed == {
        "pilotfish/api/networking/v1alpha3/gateway_pb2.py",
        "pilotfish/api/networking/v1alpha3/gateway_pb2.pyi",
    }


def test_staleness_check_notices_missing_and_extra_files() -> None:
    committed = {"a_pb2.py": b"x", "b_pb2.py": b"y"}
    fresh = {"b_pb2.py": b"y", "c_pb2.py": b"z"}
    problems = generate.compare(committed, fresh)
    assert len(problems) == 2
    assert problems[0].startswith("a_pb2.py: in the repository but no longer generated")
    assert problems[1].startswith("c_pb2.py: generated but missing")


def test_staleness_check_names_a_protoc_version_mismatch() -> None:
    old = b"# Protobuf Python Version: 6.31.1\n"
    new = b"# Protobuf Python Version: 7.35.1\n"
    problems = generate.compare({"a_pb2.py": old}, {"a_pb2.py": new})
    assert "6.31.1" in problems[0] and "7.35.1" in problems[0]


def test_generate_cli_help_and_check(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        generate.main(["--help"])
    assert exit_info.value.code == 0
    assert "--check" in capsys.readouterr().out
    assert generate.main(["--check"]) == 0


def test_protoc_error_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "protos" / "bad.proto"
    bad.parent.mkdir()
    bad.write_text('syntax = "proto3";\nmessage Bad { strin x = 1; }\n')
    with pytest.raises(generate.GenerateError, match="strin"):
        generate.generate_into(tmp_path / "out", tmp_path / "protos")


# --- kinds ---------------------------------------------------------------------------


def test_spec_types_and_api_versions() -> None:
    assert {
        "Gateway": Gateway,
        "VirtualService": VirtualService,
        "DestinationRule": DestinationRule,
        "ServiceEntry": ServiceEntry,
        "Sidecar": Sidecar,
        "WorkloadEntry": WorkloadEntry,
    } == SPEC_TYPES
    assert all(issubclass(cls, Message) for cls in SPEC_TYPES.values())
    assert API_VERSIONS == (
        "networking.istio.io/v1alpha3",
        "networking.istio.io/v1beta1",
        "networking.istio.io/v1",
    )
    assert Gateway.DESCRIPTOR.full_name == "istio.networking.v1alpha3.Gateway"


def test_some_field_numbers_match_istio() -> None:
    # Spot checks; the whole schema was compared with istio/api when it was written.
    assert HTTPRoute.DIRECT_RESPONSE_FIELD_NUMBER == 21
    assert HTTPRoute.DELEGATE_FIELD_NUMBER == 20
    assert HTTPRoute.MIRRORS_FIELD_NUMBER == 22
    assert ServerTLSSettings.CREDENTIAL_NAMES_FIELD_NUMBER == 14
    assert ServerTLSSettings.INSECURE_SKIP_VERIFY_FIELD_NUMBER == 17
    assert LoadBalancerSettings.WARMUP_FIELD_NUMBER == 5
    assert ClientTLSSettings.CA_CRL_FIELD_NUMBER == 9
    assert Sidecar.INBOUND_CONNECTION_POOL_FIELD_NUMBER == 7
    assert ServiceEntry.WORKLOAD_SELECTOR_FIELD_NUMBER == 9


# --- real-world specs (from Istio's documentation) -----------------------------------


def test_httpbin_gateway_and_virtual_service() -> None:
    gw = parse(
        "Gateway",
        """
        selector:
          istio: ingressgateway
        servers:
        - port:
            number: 80
            name: http
            protocol: HTTP
          hosts:
          - "httpbin.example.com"
        """,
    )
    assert dict(gw.selector) == {"istio": "ingressgateway"}
    server = gw.servers[0]
    assert (server.port.number, server.port.name, server.port.protocol) == (80, "http", "HTTP")
    assert list(server.hosts) == ["httpbin.example.com"]
    assert not server.HasField("tls")

    vs = parse(
        "VirtualService",
        """
        hosts:
        - "httpbin.example.com"
        gateways:
        - httpbin-gateway
        http:
        - match:
          - uri:
              prefix: /status
          - uri:
              prefix: /delay
          route:
          - destination:
              port:
                number: 8000
              host: httpbin
        """,
    )
    route = vs.http[0]
    assert route.match[0].uri.WhichOneof("match_type") == "prefix"
    assert route.match[0].uri.prefix == "/status"
    assert route.match[1].uri.prefix == "/delay"
    assert route.route[0].destination.host == "httpbin"
    assert route.route[0].destination.port.number == 8000
    assert route.route[0].weight == 0
    assert not route.HasField("timeout")


def test_bookinfo_reviews_destination_rule() -> None:
    dr = parse(
        "DestinationRule",
        """
        host: reviews
        trafficPolicy:
          loadBalancer:
            simple: RANDOM
          connectionPool:
            tcp:
              maxConnections: 100
              connectTimeout: 30ms
              tcpKeepalive:
                time: 7200s
                interval: 75s
            http:
              http1MaxPendingRequests: 1
              maxRequestsPerConnection: 1
              h2UpgradePolicy: UPGRADE
          outlierDetection:
            consecutive5xxErrors: 7
            interval: 5m
            baseEjectionTime: 15m
            maxEjectionPercent: 100
          tls:
            mode: ISTIO_MUTUAL
        subsets:
        - name: v1
          labels:
            version: v1
        - name: v2
          labels:
            version: v2
          trafficPolicy:
            loadBalancer:
              simple: ROUND_ROBIN
        - name: v3
          labels:
            version: v3
          trafficPolicy:
            loadBalancer:
              consistentHash:
                httpCookie:
                  name: user
                  ttl: 0s
            portLevelSettings:
            - port:
                number: 9080
              loadBalancer:
                simple: LEAST_REQUEST
                warmup:
                  duration: 60s
                  aggression: 2.0
        """,
    )
    tp = dr.traffic_policy
    assert tp.load_balancer.WhichOneof("lb_policy") == "simple"
    assert tp.load_balancer.simple == LoadBalancerSettings.RANDOM
    assert tp.connection_pool.tcp.max_connections == 100
    assert tp.connection_pool.tcp.connect_timeout.ToTimedelta() == timedelta(milliseconds=30)
    assert tp.connection_pool.tcp.tcp_keepalive.time.seconds == 7200
    assert tp.connection_pool.http.http1_max_pending_requests == 1
    assert tp.connection_pool.http.h2_upgrade_policy == (
        tp.connection_pool.http.H2UpgradePolicy.UPGRADE
    )
    od = tp.outlier_detection
    assert od.HasField("consecutive_5xx_errors") and od.consecutive_5xx_errors.value == 7
    assert not od.HasField("consecutive_gateway_errors")
    assert od.base_ejection_time.ToTimedelta() == timedelta(minutes=15)
    assert tp.tls.mode == ClientTLSSettings.ISTIO_MUTUAL

    assert [s.name for s in dr.subsets] == ["v1", "v2", "v3"]
    assert dict(dr.subsets[1].labels) == {"version": "v2"}
    assert dr.subsets[1].traffic_policy.load_balancer.simple == LoadBalancerSettings.ROUND_ROBIN
    v3 = dr.subsets[2].traffic_policy
    ch = v3.load_balancer.consistent_hash
    assert v3.load_balancer.WhichOneof("lb_policy") == "consistent_hash"
    assert ch.WhichOneof("hash_key") == "http_cookie"
    assert ch.http_cookie.name == "user" and ch.http_cookie.HasField("ttl")
    port_level = v3.port_level_settings[0]
    assert port_level.port.number == 9080
    assert port_level.load_balancer.warmup.duration.seconds == 60
    assert port_level.load_balancer.warmup.aggression.value == 2.0
    assert not port_level.load_balancer.warmup.HasField("minimum_percent")


def test_https_gateway_with_credential_name() -> None:
    gw = parse(
        "Gateway",
        """
        selector:
          istio: ingressgateway
        servers:
        - port:
            number: 443
            name: https
            protocol: HTTPS
          tls:
            mode: SIMPLE
            credentialName: httpbin-credential
            minProtocolVersion: TLSV1_2
          hosts:
          - httpbin.example.com
        - port:
            number: 80
            name: http
            protocol: HTTP
          hosts:
          - httpbin.example.com
          tls:
            httpsRedirect: true
        """,
    )
    tls = gw.servers[0].tls
    assert tls.mode == ServerTLSSettings.SIMPLE
    assert ServerTLSSettings.TLSmode.Name(tls.mode) == "SIMPLE"
    assert tls.credential_name == "httpbin-credential"
    assert tls.min_protocol_version == ServerTLSSettings.TLSV1_2
    assert gw.servers[1].tls.https_redirect is True
    assert gw.servers[1].tls.mode == ServerTLSSettings.PASSTHROUGH  # the zero value


def test_passthrough_gateway_with_tls_virtual_service() -> None:
    gw = parse(
        "Gateway",
        """
        selector:
          istio: ingressgateway
        servers:
        - port:
            number: 443
            name: https
            protocol: HTTPS
          tls:
            mode: PASSTHROUGH
          hosts:
          - nginx.example.com
        """,
    )
    assert gw.servers[0].HasField("tls")
    assert gw.servers[0].tls.mode == ServerTLSSettings.PASSTHROUGH

    vs = parse(
        "VirtualService",
        """
        hosts:
        - nginx.example.com
        gateways:
        - mygateway
        tls:
        - match:
          - port: 443
            sniHosts:
            - nginx.example.com
          route:
          - destination:
              host: my-nginx
              port:
                number: 443
        """,
    )
    assert not vs.http
    tls_route = vs.tls[0]
    assert tls_route.match[0].port == 443
    assert list(tls_route.match[0].sni_hosts) == ["nginx.example.com"]
    assert tls_route.route[0].destination.host == "my-nginx"
    assert tls_route.route[0].destination.port.number == 443


def test_service_entry_with_dns_resolution_and_endpoints() -> None:
    se = parse(
        "ServiceEntry",
        """
        hosts:
        - foo.bar.com
        location: MESH_EXTERNAL
        ports:
        - number: 80
          name: http
          protocol: HTTP
        - number: 443
          name: https
          protocol: TLS
          targetPort: 8443
        resolution: DNS
        endpoints:
        - address: us.foo.bar.com
          ports:
            http: 8080
        - address: uk.foo.bar.com
          ports:
            http: 9080
          labels:
            region: uk
          weight: 3
          locality: europe-west2/zone-a
        exportTo:
        - "."
        """,
    )
    assert list(se.hosts) == ["foo.bar.com"]
    assert se.location == ServiceEntry.MESH_EXTERNAL
    assert se.resolution == ServiceEntry.DNS
    assert ServiceEntry.Resolution.Name(se.resolution) == "DNS"
    assert [(p.number, p.name, p.protocol) for p in se.ports] == [
        (80, "http", "HTTP"),
        (443, "https", "TLS"),
    ]
    assert se.ports[1].target_port == 8443
    assert isinstance(se.endpoints[0], WorkloadEntry)
    assert se.endpoints[0].address == "us.foo.bar.com"
    assert dict(se.endpoints[0].ports) == {"http": 8080}
    assert dict(se.endpoints[1].labels) == {"region": "uk"}
    assert se.endpoints[1].weight == 3
    assert list(se.export_to) == ["."]


def test_workload_entry() -> None:
    we = parse(
        "WorkloadEntry",
        """
        serviceAccount: details-legacy
        address: 2.2.2.2
        labels:
          app: details-legacy
          instance-id: vm1
        """,
    )
    assert we.service_account == "details-legacy"
    assert we.address == "2.2.2.2"
    assert we.labels["instance-id"] == "vm1"


def test_sidecar_with_egress_hosts() -> None:
    sc = parse(
        "Sidecar",
        """
        workloadSelector:
          labels:
            app: ratings
        ingress:
        - port:
            number: 9080
            protocol: HTTP
            name: somename
          defaultEndpoint: unix:///var/run/someuds.sock
        egress:
        - port:
            number: 3306
            protocol: MYSQL
            name: egressmysql
          captureMode: NONE
          bind: 127.0.0.1
          hosts:
          - "*/mysql.foo.com"
        - hosts:
          - "./*"
          - "istio-system/*"
        outboundTrafficPolicy:
          mode: REGISTRY_ONLY
        """,
    )
    assert dict(sc.workload_selector.labels) == {"app": "ratings"}
    assert sc.ingress[0].port.number == 9080
    assert sc.ingress[0].default_endpoint == "unix:///var/run/someuds.sock"
    assert sc.egress[0].capture_mode == sidecar_pb2.NONE
    assert sc.egress[0].bind == "127.0.0.1"
    assert list(sc.egress[0].hosts) == ["*/mysql.foo.com"]
    assert not sc.egress[1].HasField("port")
    assert list(sc.egress[1].hosts) == ["./*", "istio-system/*"]
    assert sc.HasField("outbound_traffic_policy")
    assert sc.outbound_traffic_policy.mode == OutboundTrafficPolicy.REGISTRY_ONLY


def test_virtual_service_with_every_http_feature() -> None:
    vs = parse(
        "VirtualService",
        r"""
        hosts:
        - reviews.prod.svc.cluster.local
        http:
        - name: fault-for-jason
          match:
          - headers:
              end-user:
                exact: jason
            queryParams:
              debug:
                regex: "^(1|true)$"
          fault:
            delay:
              percentage:
                value: 100.0
              fixedDelay: 7s
            abort:
              percentage:
                value: 0.1
              httpStatus: 400
          route:
          - destination:
              host: ratings
              subset: v1
        - name: reviews-v2-routes
          match:
          - uri:
              prefix: "/wpcatalog"
          - uri:
              prefix: "/consumercatalog"
          rewrite:
            uri: "/newcatalog"
          route:
          - destination:
              host: reviews.prod.svc.cluster.local
              subset: v2
            weight: 75
            headers:
              response:
                remove:
                - foo
          - destination:
              host: reviews.prod.svc.cluster.local
              subset: v3
            weight: 25
          timeout: 5s
          retries:
            attempts: 3
            perTryTimeout: 2s
            retryOn: gateway-error,connect-failure,refused-stream
          mirror:
            host: httpbin
            subset: v2
          mirrorPercentage:
            value: 100.0
          corsPolicy:
            allowOrigins:
            - exact: https://example.com
            - regex: "https://.*\\.example\\.org"
            allowMethods:
            - POST
            - GET
            allowCredentials: false
            allowHeaders:
            - X-Foo-Bar
            maxAge: "24h"
          headers:
            request:
              set:
                test: "true"
            response:
              add:
                foo: bar
              remove:
              - baz
        - match:
          - uri:
              exact: /v1/getProductRatings
          redirect:
            uri: /v1/bookRatings
            authority: newratings.default.svc.cluster.local
            redirectCode: 301
        - match:
          - uri:
              regex: "^/service/([^/]+)(/.*)$"
          rewrite:
            uriRegexRewrite:
              match: "^/service/([^/]+)(/.*)$"
              rewrite: '/\2/instance/\1'
          route:
          - destination:
              host: service
        - match:
          - uri:
              prefix: /productpage
          delegate:
            name: productpage
            namespace: nsA
        - directResponse:
            status: 503
            body:
              string: "unknown error"
        """,
    )
    fault_route, main, redirect, regex_rewrite, delegated, direct = vs.http

    assert fault_route.name == "fault-for-jason"
    match = fault_route.match[0]
    assert match.headers["end-user"].exact == "jason"
    assert match.query_params["debug"].WhichOneof("match_type") == "regex"
    delay = fault_route.fault.delay
    assert delay.WhichOneof("http_delay_type") == "fixed_delay"
    assert delay.fixed_delay.seconds == 7
    assert delay.percentage.value == 100.0
    abort = fault_route.fault.abort
    assert abort.WhichOneof("error_type") == "http_status"
    assert abort.http_status == 400
    assert abort.percentage.value == pytest.approx(0.1)

    assert [m.uri.prefix for m in main.match] == ["/wpcatalog", "/consumercatalog"]
    assert main.rewrite.uri == "/newcatalog"
    assert [(r.destination.subset, r.weight) for r in main.route] == [("v2", 75), ("v3", 25)]
    assert list(main.route[0].headers.response.remove) == ["foo"]
    assert main.timeout.ToTimedelta() == timedelta(seconds=5)
    assert main.retries.attempts == 3
    assert main.retries.per_try_timeout.seconds == 2
    assert main.retries.retry_on == "gateway-error,connect-failure,refused-stream"
    assert not main.retries.HasField("retry_remote_localities")
    assert main.mirror.host == "httpbin" and main.mirror.subset == "v2"
    assert main.mirror_percentage.value == 100.0
    cors = main.cors_policy
    assert [o.WhichOneof("match_type") for o in cors.allow_origins] == ["exact", "regex"]
    assert cors.allow_origins[1].regex == r"https://.*\.example\.org"
    assert list(cors.allow_methods) == ["POST", "GET"]
    assert cors.HasField("allow_credentials") and cors.allow_credentials.value is False
    assert cors.max_age.ToTimedelta() == timedelta(hours=24)
    assert dict(main.headers.request.set) == {"test": "true"}
    assert dict(main.headers.response.add) == {"foo": "bar"}
    assert list(main.headers.response.remove) == ["baz"]

    assert redirect.match[0].uri.WhichOneof("match_type") == "exact"
    assert redirect.redirect.uri == "/v1/bookRatings"
    assert redirect.redirect.authority == "newratings.default.svc.cluster.local"
    assert redirect.redirect.redirect_code == 301
    assert redirect.redirect.WhichOneof("redirect_port") is None
    assert not redirect.route

    assert regex_rewrite.rewrite.uri_regex_rewrite.rewrite == r"/\2/instance/\1"

    assert delegated.delegate.name == "productpage"
    assert delegated.delegate.namespace == "nsA"

    assert direct.direct_response.status == 503
    assert direct.direct_response.body.WhichOneof("specifier") == "string"
    assert direct.direct_response.body.string == "unknown error"


def test_redirect_port_oneof() -> None:
    vs = parse(
        "VirtualService",
        """
        http:
        - redirect: {port: 8443, scheme: https}
        - redirect: {derivePort: FROM_REQUEST_PORT}
        """,
    )
    assert vs.http[0].redirect.WhichOneof("redirect_port") == "port"
    assert vs.http[0].redirect.port == 8443
    assert vs.http[1].redirect.WhichOneof("redirect_port") == "derive_port"
    assert vs.http[1].redirect.derive_port == vs.http[1].redirect.FROM_REQUEST_PORT


# --- errors --------------------------------------------------------------------------


def test_unknown_field_is_an_error_naming_it() -> None:
    with pytest.raises(json_format.ParseError) as err:
        parse(
            "Gateway",
            """
            servers:
            - port: {number: 80, name: http, protocol: HTTP}
              hostz: ["*"]
            """,
        )
    assert '"hostz"' in str(err.value)
    assert "Gateway.servers[0]" in str(err.value)


def test_mistyped_field_is_an_error_naming_it() -> None:
    with pytest.raises(json_format.ParseError) as err:
        parse(
            "Gateway",
            """
            servers:
            - port: {number: "eighty", name: http, protocol: HTTP}
              hosts: ["*"]
            """,
        )
    message = str(err.value)
    assert "number field" in message and "eighty" in message


@pytest.mark.parametrize(
    ("kind", "spec", "needle"),
    [
        ("Gateway", {"servers": [{"tls": {"mode": "SIMPEL"}}]}, "Gateway.servers[0].tls.mode"),
        ("VirtualService", {"http": [{"timeout": "5 seconds"}]}, "VirtualService.http[0].timeout"),
        (
            "VirtualService",
            {"http": [{"match": [{"uri": {"prefix": "/a", "exact": "/a"}}]}]},
            "match_type",
        ),
        ("DestinationRule", {"subsets": {"name": "v1"}}, "subsets"),
    ],
)
def test_other_malformed_specs(kind: str, spec: dict[str, Any], needle: str) -> None:
    with pytest.raises(json_format.ParseError) as err:
        parse_spec(kind, spec)
    assert needle in str(err.value)


# --- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("go", "proto"),
    [
        ("5s", "5s"),
        ("0s", "0s"),
        ("0", "0s"),
        ("30ms", "0.030s"),
        ("1.5s", "1.500s"),
        ("5m", "300s"),
        ("1h30m", "5400s"),
        ("24h", "86400s"),
        ("100us", "0.000100s"),
        ("1\u00b5s", "0.000001s"),  # micro sign
        ("2\u03bcs", "0.000002s"),  # Greek mu
        ("7ns", "0.000000007s"),
        ("-1.5h", "-5400s"),
        (".5m", "30s"),
    ],
)
def test_go_durations_become_proto_json(go: str, proto: str) -> None:
    assert go_duration_to_json(go) == proto


@pytest.mark.parametrize(
    "text", ["", "5", "5 seconds", "1d", "s", "5m3", "--5s", "1.2.3s", "1 s", "3000000h"]
)
def test_not_go_durations(text: str) -> None:
    assert go_duration_to_json(text) is None


def test_plain_parse_dict_rejects_go_durations_but_parse_spec_accepts_them() -> None:
    spec = {"http": [{"timeout": "1m", "retries": {"perTryTimeout": "250ms"}}]}
    with pytest.raises(json_format.ParseError, match="timeout"):
        json_format.ParseDict(spec, VirtualService())
    vs: Any = parse_spec("VirtualService", spec)
    assert vs.http[0].timeout.seconds == 60
    assert vs.http[0].retries.per_try_timeout.ToTimedelta() == timedelta(milliseconds=250)
    assert spec["http"][0]["timeout"] == "1m"  # the input is not modified


def test_normalize_durations_only_touches_duration_fields() -> None:
    spec = {
        "hosts": ["5m"],  # a string field that looks like a duration
        "http": [
            {
                "name": "1h",
                "timeout": "2m",
                "match": [{"headers": {"x": {"exact": "5m"}}}],  # map of messages
                "fault": {"delay": {"fixedDelay": "100ms"}},
                "unknownField": {"timeout": "5m"},
                "mirror_percentage": {"value": 5},
            }
        ],
        "tcp": "not a list",
    }
    out = normalize_durations(spec, VirtualService)
    assert out["hosts"] == ["5m"]
    route = out["http"][0]
    assert route["name"] == "1h"
    assert route["timeout"] == "120s"
    assert route["match"] == [{"headers": {"x": {"exact": "5m"}}}]
    assert route["fault"] == {"delay": {"fixedDelay": "0.100s"}}
    assert route["unknownField"] == {"timeout": "5m"}
    assert out["tcp"] == "not a list"
    dr = {
        "trafficPolicy": {"portLevelSettings": [{"connectionPool": {"tcp": {"idleTimeout": "1h"}}}]}
    }
    out = normalize_durations(dr, DestinationRule)
    tcp = out["trafficPolicy"]["portLevelSettings"][0]["connectionPool"]["tcp"]
    assert tcp["idleTimeout"] == "3600s"


# --- JSON names ----------------------------------------------------------------------


def test_snake_case_and_camel_case_are_both_accepted() -> None:
    camel = parse(
        "VirtualService",
        """
        exportTo: ["."]
        tls:
        - match: [{sniHosts: [a.example.com], sourceLabels: {app: x}}]
        http:
        - corsPolicy: {allowCredentials: true, maxAge: 1m}
          mirrorPercentage: {value: 50}
        """,
    )
    snake = parse(
        "VirtualService",
        """
        export_to: ["."]
        tls:
        - match: [{sni_hosts: [a.example.com], source_labels: {app: x}}]
        http:
        - cors_policy: {allow_credentials: true, max_age: 1m}
          mirror_percentage: {value: 50}
        """,
    )
    assert camel == snake
    assert list(snake.tls[0].match[0].sni_hosts) == ["a.example.com"]
    assert snake.http[0].cors_policy.max_age.seconds == 60
    # Written back out, the names are Istio's camelCase.
    out = json_format.MessageToDict(snake)
    assert out["exportTo"] == ["."]
    assert out["http"][0]["corsPolicy"] == {"allowCredentials": True, "maxAge": "60s"}
    assert out["tls"][0]["match"][0]["sniHosts"] == ["a.example.com"]


def test_json_names_match_istio_yaml() -> None:
    # Names whose camelCase is easy to get wrong.
    names = {f.json_name for f in DestinationRule.DESCRIPTOR.fields}
    assert names == {"host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"}
    od = DestinationRule().traffic_policy.outlier_detection.DESCRIPTOR
    assert od.fields_by_name["consecutive_5xx_errors"].json_name == "consecutive5xxErrors"
    http = DestinationRule().traffic_policy.connection_pool.http.DESCRIPTOR
    assert http.fields_by_name["http1_max_pending_requests"].json_name == (
        "http1MaxPendingRequests"
    )
    assert http.fields_by_name["http2_keep_alive"].json_name == "http2KeepAlive"
    dr = parse("DestinationRule", "workloadSelector: {matchLabels: {app: x}}")
    assert dict(dr.workload_selector.match_labels) == {"app": "x"}
