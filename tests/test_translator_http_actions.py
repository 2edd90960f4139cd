"""HTTPRoute actions (headers, redirect, directResponse, rewrite, fault, mirror, CORS),
delegation and source matching: VirtualService -> IR -> Envoy route protos."""

from __future__ import annotations

import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb
from envoy.config.route.v3 import route_components_pb2 as rc_pb
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb,
)
from google.protobuf import json_format

from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.configset import build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.model.objects import IstioObject
from pilotfish.translator import ir
from pilotfish.translator.delegation import expand, merge_match
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.envoy import route as route_builder
from pilotfish.translator.envoy.listener import filter_chain
from pilotfish.translator.http_routes import RouteContext, build_http_routes
from pilotfish.translator.registry import ServiceRegistry
from tests.test_translator_http_routes import (
    GATEWAY,
    HTTPBIN,
    HTTPBIN_V2,
    REGISTRY,
    ROUTE,
    located,
    ok,
    translate_vs,
)


def envoy_route(route: ir.Route) -> rc_pb.Route:
    return route_builder.route(route)


def test_rule_headers_set_add_remove() -> None:
    (route,) = ok(
        f"""\
  - headers:
      request: {{set: {{X-Set: a}}, add: {{x-add: b}}, remove: [x-gone]}}
      response: {{set: {{x-resp: c}}, remove: [server]}}
    {ROUTE}
"""
    )
    out = envoy_route(route)
    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    append = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    assert [
        (h.header.key, h.header.value, h.append_action) for h in out.request_headers_to_add
    ] == [
        ("x-set", "a", overwrite),
        ("x-add", "b", append),
    ]
    assert list(out.request_headers_to_remove) == ["x-gone"]
    assert [(h.header.key, h.header.value) for h in out.response_headers_to_add] == [
        ("x-resp", "c")
    ]
    assert list(out.response_headers_to_remove) == ["server"]


def test_destination_headers_go_on_the_weighted_cluster_or_the_single_route() -> None:
    (split,) = ok(
        """\
  - route:
    - {destination: {host: httpbin}, weight: 80, headers: {request: {set: {x-v: "1"}}}}
    - {destination: {host: httpbin-v2}, weight: 20}
"""
    )
    out = envoy_route(split)
    first, second = out.route.weighted_clusters.clusters
    assert [h.header.key for h in first.request_headers_to_add] == ["x-v"]
    assert not second.request_headers_to_add
    assert not out.request_headers_to_add
    (single,) = ok(
        "  - route: [{destination: {host: httpbin}, headers: {response: {add: {x-d: d}}}}]\n"
    )
    assert [h.header.key for h in envoy_route(single).response_headers_to_add] == ["x-d"]


def test_setting_host_rewrites_the_authority_as_istio() -> None:
    (route,) = ok(f"  - headers: {{request: {{set: {{Host: backend.internal}}}}}}\n    {ROUTE}\n")
    assert route.headers.request.set == ()
    assert envoy_route(route).route.host_rewrite_literal == "backend.internal"
    (split,) = ok(
        """\
  - route:
    - {destination: {host: httpbin}, weight: 50, headers: {request: {set: {":authority": a.internal}}}}
    - {destination: {host: httpbin-v2}, weight: 50}
"""
    )
    first, second = envoy_route(split).route.weighted_clusters.clusters
    assert (first.host_rewrite_literal, second.host_rewrite_literal) == ("a.internal", "")


def test_pseudo_headers_and_adding_host_are_refused() -> None:
    routes, problems = translate_vs(
        f"  - headers: {{request: {{add: {{host: x}}, remove: [':path']}}}}\n    {ROUTE}\n"
    )
    assert routes[0].headers == ir.Headers()
    assert located(problems) == [("error", "spec.http[0].headers.request")] * 2


def test_redirect() -> None:
    (route,) = ok(
        "  - redirect: {uri: /new, authority: other.example.com, scheme: https, "
        "port: 8443, redirectCode: 302}\n"
    )
    out = envoy_route(route)
    assert not out.HasField("route")
    assert out.redirect == rc_pb.RedirectAction(
        path_redirect="/new",
        host_redirect="other.example.com",
        scheme_redirect="https",
        port_redirect=8443,
        response_code=rc_pb.RedirectAction.FOUND,
    )
    (default,) = ok("  - redirect: {uri: /x}\n")
    assert envoy_route(default).redirect.response_code == rc_pb.RedirectAction.MOVED_PERMANENTLY
    (prefixed,) = ok("  - redirect: {prefixRewrite: /v2/}\n")
    assert envoy_route(prefixed).redirect.prefix_rewrite == "/v2/"
    (derived,) = ok("  - redirect: {derivePort: FROM_REQUEST_PORT}\n")
    assert derived.redirect == ir.Redirect(port=GATEWAY.port)


def test_redirect_errors() -> None:
    routes, problems = translate_vs("  - redirect: {uri: /x, redirectCode: 305}\n")
    assert routes == [] and located(problems) == [("error", "spec.http[0].redirect.redirectCode")]
    routes, problems = translate_vs(f"  - redirect: {{uri: /x}}\n    {ROUTE}\n")
    assert routes == [] and located(problems) == [("error", "spec.http[0]")]


def test_direct_response() -> None:
    text, raw = ok(
        """\
  - match: [{uri: {exact: /a}}]
    directResponse: {status: 418, body: {string: teapot}}
  - directResponse: {status: 503, body: {bytes: 3q2+7w==}}
"""
    )
    assert envoy_route(text).direct_response.body.inline_string == "teapot"
    assert envoy_route(raw).direct_response.body.inline_bytes == b"\xde\xad\xbe\xef"
    routes, problems = translate_vs("  - directResponse: {status: 42}\n")
    assert routes == [] and located(problems) == [("error", "spec.http[0].directResponse.status")]


def test_rewrite() -> None:
    prefix, regex = ok(
        f"""\
  - match: [{{uri: {{prefix: /api/}}}}]
    rewrite: {{uri: /, authority: backend.internal}}
    {ROUTE}
  - rewrite: {{uriRegexRewrite: {{match: "^/v1/(.*)$", rewrite: "/\\\\1"}}}}
    {ROUTE}
"""
    )
    out = envoy_route(prefix).route
    assert (out.prefix_rewrite, out.host_rewrite_literal) == ("/", "backend.internal")
    out = envoy_route(regex).route
    assert (out.regex_rewrite.pattern.regex, out.regex_rewrite.substitution) == (
        "^/v1/(.*)$",
        "/\\1",
    )
    routes, problems = translate_vs(
        f"  - rewrite: {{uriRegexRewrite: {{match: '(', rewrite: x}}}}\n    {ROUTE}\n"
    )
    assert routes[0].rewrite is None
    assert located(problems) == [("error", "spec.http[0].rewrite.uriRegexRewrite.match")]


def test_fault_delay_and_abort() -> None:
    (route,) = ok(
        f"""\
  - fault:
      delay: {{fixedDelay: 2s, percentage: {{value: 50}}}}
      abort: {{httpStatus: 500, percentage: {{value: 0.1}}}}
    {ROUTE}
"""
    )
    assert route.fault == ir.Fault(2000, 500_000, 500, None, 1_000)
    config = fault_pb2.HTTPFault()
    envoy_route(route).typed_per_filter_config["envoy.filters.http.fault"].Unpack(config)
    assert config.delay.fixed_delay.seconds == 2
    assert config.abort.http_status == 500
    assert config.abort.percentage.numerator == 1_000
    (grpc,) = ok(f"  - fault: {{abort: {{grpcStatus: UNAVAILABLE}}}}\n    {ROUTE}\n")
    assert grpc.fault == ir.Fault(abort_grpc_status=14, abort_per_million=1_000_000)


def test_fault_errors() -> None:
    routes, problems = translate_vs(f"  - fault: {{abort: {{httpStatus: 99}}}}\n    {ROUTE}\n")
    assert routes[0].fault is None
    assert located(problems) == [("error", "spec.http[0].fault.abort.httpStatus")]


def test_mirrors_in_per_million() -> None:
    (route,) = ok(
        f"""\
  - mirror: {{host: httpbin-v2, port: {{number: 8000}}}}
    mirrorPercentage: {{value: 12.5}}
    mirrors:
    - destination: {{host: httpbin}}
    {ROUTE}
"""
    )
    assert route.mirrors == (ir.Mirror(HTTPBIN_V2, 125_000), ir.Mirror(HTTPBIN, 1_000_000))
    (policy, _) = envoy_route(route).route.request_mirror_policies
    assert policy.cluster == HTTPBIN_V2
    assert policy.runtime_fraction.default_value.numerator == 125_000


def test_cors() -> None:
    (route,) = ok(
        f"""\
  - corsPolicy:
      allowOrigins: [{{exact: "https://a.example.com"}}, {{regex: "https://.*\\\\.b\\\\.com"}}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a]
      exposeHeaders: [x-b]
      maxAge: 24h
      allowCredentials: true
    {ROUTE}
"""
    )
    config = cors_pb2.CorsPolicy()
    envoy_route(route).typed_per_filter_config["envoy.filters.http.cors"].Unpack(config)
    assert [m.exact for m in config.allow_origin_string_match][:1] == ["https://a.example.com"]
    assert config.allow_origin_string_match[1].safe_regex.regex == "https://.*\\.b\\.com"
    assert (config.allow_methods, config.max_age, config.allow_credentials.value) == (
        "GET,POST",
        "86400",
        True,
    )


def test_hcm_carries_fault_and_cors_before_the_router_only_when_used() -> None:
    chain = ir.HttpFilterChain("http.80", "s", http_filters=("fault", "cors"))
    names = [f.name for f in _hcm(filter_chain(chain)).http_filters]
    assert names == [
        "envoy.filters.http.cors",
        "envoy.filters.http.fault",
        "envoy.filters.http.router",
    ]
    plain = ir.HttpFilterChain("http.80", "s")
    assert [f.name for f in _hcm(filter_chain(plain)).http_filters] == ["envoy.filters.http.router"]


def _hcm(chain: lc_pb.FilterChain) -> hcm_pb.HttpConnectionManager:
    manager = hcm_pb.HttpConnectionManager()
    chain.filters[0].typed_config.Unpack(manager)
    return manager


def test_source_labels_and_namespace_select_the_proxy() -> None:
    http = f"""\
  - match: [{{sourceLabels: {{istio: ingressgateway}}, uri: {{prefix: /a}}}}]
    {ROUTE}
  - match: [{{sourceNamespace: istio-system, uri: {{prefix: /b}}}}]
    {ROUTE}
"""
    mine = RouteContext("default/gw", 80, "istio-system", {"istio": "ingressgateway"})
    assert [r.match.path.value for r in ok(http, mine)] == ["/a", "/b"]
    other = RouteContext("default/gw", 80, "elsewhere", {"istio": "egressgateway"})
    assert ok(http, other) == []


DELEGATION = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [a.example.com]
  http:
  - name: root
    match: [{uri: {prefix: /api}, headers: {x-team: {exact: a}}}]
    delegate: {name: team, namespace: team-a}
  - name: missing
    delegate: {name: nobody}
  - route: [{destination: {host: httpbin}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: team, namespace: team-a}
spec:
  http:
  - name: v2
    match: [{uri: {prefix: /api/v2}}, {uri: {prefix: /other}}]
    route: [{destination: {host: api}}]
  - name: rest
    route: [{destination: {host: api}}]
"""


def test_delegate_rules_are_anded_with_the_root() -> None:
    config = build_config_set(
        [
            parse_manifest_text(REGISTRY, "registry.yaml"),
            parse_manifest_text(DELEGATION, "vs.yaml"),
        ]
    )
    vses = {(v.meta.namespace, v.meta.name): v for v in config.istio("VirtualService")}
    root = vses[("default", "root")]
    assert isinstance(root, IstioObject)
    diag = Diagnostics()
    ctx = RouteContext("default/gw", 80, delegates=lambda ns, name: vses.get((ns, name)))
    routes = build_http_routes(root, ctx, ServiceRegistry(config), diag)
    api = "outbound|8080||api.team-a.svc.cluster.local"
    assert [(r.name, r.match.path.value, r.clusters[0].cluster) for r in routes] == [
        ("root-v2", "/api/v2", api),  # /other cannot be under /api: that pair is dropped
        ("root-rest", "/api", api),
        ("", "/", HTTPBIN),
    ]
    assert all(
        ir.HeaderMatch("x-team", ir.StringMatch("exact", "a")) in r.match.headers
        for r in routes[:2]
    )
    assert [(p.name, p.severity, p.field) for p in diag.sorted()] == [
        ("root", "error", "spec.http[1].delegate")
    ]
    assert len(expand(root, lambda ns, name: None, Diagnostics())) == 1


def _match(yaml_text: str) -> vs_pb.HTTPMatchRequest:
    match = vs_pb.HTTPMatchRequest()
    json_format.ParseDict(yaml.safe_load(yaml_text), match)
    return match


@pytest.mark.parametrize(
    ("root", "inner", "merged"),
    [
        ("{uri: {prefix: /a}}", "{uri: {exact: /a/b}}", "{uri: {exact: /a/b}}"),
        ("{uri: {prefix: /a}}", "{uri: {prefix: /b}}", None),  # outside the root's prefix
        ("{uri: {exact: /a}}", "{uri: {prefix: /a}}", None),  # wider than the root
        (
            "{uri: {prefix: /a}}",
            "{method: {exact: GET}}",
            "{uri: {prefix: /a}, method: {exact: GET}}",
        ),
        ("{headers: {x: {exact: '1'}}}", "{headers: {x: {exact: '2'}}}", None),
        (
            "{headers: {x: {exact: '1'}}}",
            "{headers: {y: {exact: '2'}}}",
            "{headers: {x: {exact: '1'}, y: {exact: '2'}}}",
        ),
        ("{port: 80}", "{port: 8080}", None),
        ("{name: r, gateways: [gw]}", "{name: d}", "{name: r-d, gateways: [gw]}"),
    ],
)
def test_delegate_match_merging(root: str, inner: str, merged: str | None) -> None:
    expected = None if merged is None else _match(merged)
    assert merge_match(_match(root), _match(inner)) == expected


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ("{delay: {fixedDelay: 0s}}", "spec.http[0].fault.delay.fixedDelay"),
        ("{delay: {fixedDelay: -1s}}", "spec.http[0].fault.delay.fixedDelay"),
    ],
)
def test_a_fault_delay_envoy_would_refuse_is_reported_and_dropped(fault: str, field: str) -> None:
    # Envoy's fixed_delay must be more than 0: a 0s delay would get the whole route
    # configuration NACKed.
    routes, problems = translate_vs(f"  - fault: {fault}\n    {ROUTE}\n")
    assert located(problems) == [("error", field)]
    assert [r.fault for r in routes] == [None]


def test_a_negative_cors_max_age_is_reported() -> None:
    routes, problems = translate_vs(
        f"  - corsPolicy: {{allowOrigins: [{{exact: a}}], maxAge: -5s}}\n    {ROUTE}\n"
    )
    assert located(problems) == [("error", "spec.http[0].corsPolicy.maxAge")]
    assert routes[0].cors is not None and routes[0].cors.max_age_s is None
