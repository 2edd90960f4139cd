"""pilotfish.translator.http_routes: VirtualService `http:` rules -> IR routes."""

from __future__ import annotations

import pytest
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2 as pp_pb,
)

from pilotfish.model.configset import build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.model.errors import ConfigError
from pilotfish.model.objects import IstioObject
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.envoy import route as route_builder
from pilotfish.translator.http_routes import DEFAULT_RETRY, RouteContext, build_http_routes
from pilotfish.translator.registry import ServiceRegistry
from testsupport.envoy import validate_config
from testsupport.static_bootstrap import static_bootstrap_for

REGISTRY = """\
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: default}
spec:
  ports: [{name: http, port: 8000}]
---
apiVersion: v1
kind: Service
metadata: {name: httpbin-v2, namespace: default}
spec:
  ports: [{name: http, port: 8000}]
---
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: default}
spec:
  ports: [{name: http, port: 80}, {name: grpc, port: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: team-a}
spec:
  ports: [{name: http, port: 8080}]
"""

GATEWAY = RouteContext(gateway="default/gw", port=80)
HTTPBIN = "outbound|8000||httpbin.default.svc.cluster.local"
HTTPBIN_V2 = "outbound|8000||httpbin-v2.default.svc.cluster.local"
ROUTE = "route: [{destination: {host: httpbin}}]"


def translate_vs(
    http: str, ctx: RouteContext = GATEWAY, namespace: str = "default"
) -> tuple[list[ir.Route], tuple[ConfigError, ...]]:
    """Routes of one VirtualService (its `http:` given as YAML) and what was reported."""
    vs = f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: {namespace}}}
spec:
  hosts: ["*.example.com"]
  http:
{http}"""
    config = build_config_set(
        [parse_manifest_text(REGISTRY, "registry.yaml"), parse_manifest_text(vs, "vs.yaml")]
    )
    obj = config.get("VirtualService", namespace, "vs")
    assert isinstance(obj, IstioObject), [e.describe() for e in config.errors]
    diag = Diagnostics()
    routes = build_http_routes(obj, ctx, ServiceRegistry(config), diag)
    for error in diag.sorted():
        assert (error.file, error.document, error.kind, error.namespace, error.name) == (
            "vs.yaml",
            0,
            "VirtualService",
            namespace,
            "vs",
        )
    return routes, diag.sorted()


def ok(http: str, ctx: RouteContext = GATEWAY) -> list[ir.Route]:
    routes, problems = translate_vs(http, ctx)
    assert problems == (), [p.describe() for p in problems]
    return routes


def located(problems: tuple[ConfigError, ...]) -> list[tuple[str, str | None]]:
    return [(p.severity, p.field) for p in problems]


def paths(routes: list[ir.Route]) -> list[tuple[str, str]]:
    return [(r.match.path.kind, r.match.path.value) for r in routes]


# --- matches ----------------------------------------------------------------------------


def test_uri_exact_prefix_regex_and_ignore_case() -> None:
    routes = ok(
        f"""\
  - match:
    - uri: {{exact: /Login}}
      ignoreUriCase: true
    - uri: {{prefix: /api/}}
    - uri: {{regex: "/items/[0-9]+"}}
    - headers: {{x-only: {{exact: a}}}}
    {ROUTE}
"""
    )
    assert paths(routes) == [
        ("exact", "/Login"),
        ("prefix", "/api/"),
        ("regex", "/items/[0-9]+"),
        ("prefix", "/"),  # no uri: every path
    ]
    assert [r.match.case_sensitive for r in routes] == [False, True, True, True]
    assert all(r.clusters == (ir.WeightedCluster(HTTPBIN, 0),) for r in routes)


def test_headers_exact_prefix_regex_present_and_without_headers() -> None:
    (route,) = ok(
        f"""\
  - match:
    - headers:
        end-user: {{exact: jason}}
        X-Prefix: {{prefix: beta-}}
        x-regex: {{regex: "v[0-9]+"}}
        x-present: {{}}
      withoutHeaders:
        x-skip: {{exact: "yes"}}
        x-absent: {{}}
    {ROUTE}
"""
    )
    assert route.match.path == ir.StringMatch("prefix", "/")
    # ANDed by Envoy, so their order does not matter; header names are lowercased
    assert sorted(route.match.headers, key=lambda h: (h.invert, h.name)) == [
        ir.HeaderMatch("end-user", ir.StringMatch("exact", "jason")),
        ir.HeaderMatch("x-prefix", ir.StringMatch("prefix", "beta-")),
        ir.HeaderMatch("x-present", ir.StringMatch("present")),
        ir.HeaderMatch("x-regex", ir.StringMatch("regex", "v[0-9]+")),
        ir.HeaderMatch("x-absent", ir.StringMatch("present"), invert=True),
        ir.HeaderMatch("x-skip", ir.StringMatch("exact", "yes"), invert=True),
    ]
    assert not route.match.is_catch_all


def test_header_regex_star_means_present() -> None:
    (route,) = ok(
        f"""\
  - match:
    - headers:
        x-any: {{regex: "*"}}
    {ROUTE}
"""
    )
    assert route.match.headers == (ir.HeaderMatch("x-any", ir.StringMatch("present")),)


def test_query_params_and_pseudo_headers() -> None:
    (route,) = ok(
        f"""\
  - match:
    - queryParams:
        version: {{regex: "v[12]"}}
        debug: {{exact: "1"}}
        lang: {{prefix: en}}
        flag: {{}}
      method: {{exact: POST}}
      authority: {{prefix: api.}}
      scheme: {{exact: https}}
    {ROUTE}
"""
    )
    assert route.match.query == (
        ir.QueryMatch("debug", ir.StringMatch("exact", "1")),
        ir.QueryMatch("flag", ir.StringMatch("present")),
        ir.QueryMatch("lang", ir.StringMatch("prefix", "en")),
        ir.QueryMatch("version", ir.StringMatch("regex", "v[12]")),
    )
    assert route.match.headers == (
        ir.HeaderMatch(":method", ir.StringMatch("exact", "POST")),
        ir.HeaderMatch(":authority", ir.StringMatch("prefix", "api.")),
        ir.HeaderMatch(":scheme", ir.StringMatch("exact", "https")),
    )


def test_several_matches_make_several_routes_named_rule_dot_match() -> None:
    routes = ok(
        f"""\
  - name: reviews
    match:
    - name: v1
      uri: {{prefix: /v1}}
    - uri: {{prefix: /v0}}
    - name: v2
      uri: {{prefix: /v2}}
    {ROUTE}
  - name: plain
    match: [{{uri: {{prefix: /p}}}}]
    {ROUTE}
  - match: [{{name: only-match, uri: {{prefix: /m}}}}]
    {ROUTE}
  - match: [{{uri: {{prefix: /anon}}}}]
    {ROUTE}
"""
    )
    assert [(r.name, r.match.path.value) for r in routes] == [
        ("reviews.v1", "/v1"),
        ("reviews", "/v0"),
        ("reviews.v2", "/v2"),
        ("plain", "/p"),
        (".only-match", "/m"),  # as Istio: the rule's name, then "." and the match's
        ("", "/anon"),
    ]


def test_rule_order_is_kept_and_a_catch_all_rule_ends_the_list() -> None:
    routes = ok(
        f"""\
  - name: first
    match: [{{uri: {{prefix: /z}}}}]
    {ROUTE}
  - name: second
    match: [{{uri: {{exact: /a}}}}]
    {ROUTE}
  - name: everything
    {ROUTE}
  - name: never
    match: [{{uri: {{prefix: /late}}}}]
    {ROUTE}
"""
    )
    assert [r.name for r in routes] == ["first", "second", "everything"]
    assert routes[-1].match.is_catch_all


def test_a_catch_all_match_ends_the_list_too() -> None:
    routes = ok(
        f"""\
  - name: a
    match:
    - uri: {{prefix: /}}
      headers: {{x: {{exact: "1"}}}}
    - uri: {{prefix: /}}
    - uri: {{prefix: /after-in-same-rule}}
    {ROUTE}
  - name: b
    {ROUTE}
"""
    )
    # the first is not a catch-all (it needs a header); the second is
    assert [(r.name, bool(r.match.headers)) for r in routes] == [("a", True), ("a", False)]


# --- port and gateways decided for the proxy ---------------------------------------------


PORT_AND_GATEWAY_RULES = f"""\
  - name: on-9090
    match: [{{port: 9090, uri: {{prefix: /p}}}}]
    {ROUTE}
  - name: on-other-gateway
    match: [{{gateways: [other], uri: {{prefix: /o}}}}]
    {ROUTE}
  - name: on-mesh
    match: [{{gateways: [mesh], uri: {{prefix: /m}}}}]
    {ROUTE}
  - name: mixed
    match:
    - {{gateways: [istio-system/edge], uri: {{prefix: /e}}}}
    - {{port: 80, uri: {{prefix: /80}}}}
    {ROUTE}
  - name: rest
    {ROUTE}
"""


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (RouteContext("default/gw", 80), [("mixed", "/80"), ("rest", "/")]),
        (RouteContext("default/gw", 9090), [("on-9090", "/p"), ("rest", "/")]),
        (
            RouteContext("default/other", 80),
            [("on-other-gateway", "/o"), ("mixed", "/80"), ("rest", "/")],
        ),
        (RouteContext("mesh", 80), [("on-mesh", "/m"), ("mixed", "/80"), ("rest", "/")]),
        (RouteContext("istio-system/edge", 8443), [("mixed", "/e"), ("rest", "/")]),
    ],
)
def test_port_and_gateways_in_a_match_filter_by_context(
    ctx: RouteContext, expected: list[tuple[str, str]]
) -> None:
    routes = ok(PORT_AND_GATEWAY_RULES, ctx)
    assert [(r.name, r.match.path.value) for r in routes] == expected


# --- destinations -----------------------------------------------------------------------


def test_weights_and_zero_weights_dropped() -> None:
    (route,) = ok(
        """\
  - route:
    - {destination: {host: httpbin}, weight: 80}
    - {destination: {host: httpbin-v2.default.svc.cluster.local, port: {number: 8000}}, weight: 20}
    - {destination: {host: httpbin-v2, subset: canary}, weight: 0}
"""
    )
    assert route.clusters == (ir.WeightedCluster(HTTPBIN, 80), ir.WeightedCluster(HTTPBIN_V2, 20))


def test_several_destinations_without_weights_are_reported_and_split_evenly() -> None:
    routes, problems = translate_vs(
        """\
  - route:
    - {destination: {host: httpbin}}
    - {destination: {host: httpbin-v2}}
"""
    )
    assert routes[0].clusters == (ir.WeightedCluster(HTTPBIN, 1), ir.WeightedCluster(HTTPBIN_V2, 1))
    assert located(problems) == [("error", "spec.http[0].route")]


def test_host_resolution_and_subsets() -> None:
    routes, problems = translate_vs(
        """\
  - route:
    - destination: {host: api, subset: v1}
""",
        namespace="team-a",
    )
    assert problems == ()
    assert routes[0].clusters == (
        ir.WeightedCluster("outbound|8080|v1|api.team-a.svc.cluster.local", 0),
    )


def test_without_a_port_a_service_of_several_ports_takes_the_server_port() -> None:
    """As Istio: the port of the Gateway server the routes are built for, with a warning."""
    rule = "  - route: [{destination: {host: multi}}]\n    mirror: {host: multi}\n"
    for server_port in (80, 9000, 8080):
        routes, problems = translate_vs(rule, RouteContext(gateway="default/gw", port=server_port))
        cluster = f"outbound|{server_port}||multi.default.svc.cluster.local"
        assert [(r.clusters, r.mirrors) for r in routes] == [
            ((ir.WeightedCluster(cluster, 0),), (ir.Mirror(cluster),))
        ]
        messages = [(p.severity, p.field, p.message) for p in problems]
        for where in ("route[0].destination.port", "mirror.port"):
            assert (
                "warning",
                f"spec.http[0].{where}",
                "no port given and the service has several ports: "
                f"the gateway server's port {server_port} is used",
            ) in messages
        # A server port the service lacks is said too: requests there get 503.
        lacks = [m for m in messages if "has no port" in m[2]]
        assert len(lacks) == (1 if server_port == 8080 else 0)


def test_without_a_port_a_service_of_one_port_takes_it() -> None:
    routes, problems = translate_vs("  - " + ROUTE + "\n", RouteContext("default/gw", port=9000))
    assert routes[0].clusters == (ir.WeightedCluster(HTTPBIN, 0),)
    assert problems == ()


def test_an_unknown_host_is_a_warning_and_still_routed() -> None:
    routes, problems = translate_vs(
        """\
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: nowhere, port: {number: 80}}}]
  - route: [{destination: {host: nowhere-without-port}}]
"""
    )
    assert [r.clusters for r in routes] == [
        (ir.WeightedCluster("outbound|80||nowhere.default.svc.cluster.local", 0),),
        # no port to take from the service: the server's (80)
        (ir.WeightedCluster("outbound|80||nowhere-without-port.default.svc.cluster.local", 0),),
    ]
    assert located(problems) == [
        ("warning", "spec.http[0].route[0].destination.host"),
        ("warning", "spec.http[1].route[0].destination.host"),
        ("warning", "spec.http[1].route[0].destination.port"),
    ]
    assert "nowhere.default.svc.cluster.local" in problems[0].message
    assert "the service is unknown" in problems[2].message


def test_a_port_the_service_does_not_have_is_a_warning() -> None:
    routes, problems = translate_vs(
        "  - route: [{destination: {host: httpbin, port: {number: 9999}}}]\n"
    )
    assert routes[0].clusters == (
        ir.WeightedCluster("outbound|9999||httpbin.default.svc.cluster.local", 0),
    )
    assert located(problems) == [("warning", "spec.http[0].route[0].destination.port")]


def test_a_rule_without_destinations_is_an_error() -> None:
    routes, problems = translate_vs("  - match: [{uri: {prefix: /x}}]\n  - " + ROUTE + "\n")
    assert [r.match.path.value for r in routes] == ["/"]
    assert located(problems) == [("error", "spec.http[0].route")]


# --- timeouts and retries ---------------------------------------------------------------


def test_default_retry_policy_and_no_timeout() -> None:
    (route,) = ok(f"  - {ROUTE}\n")
    assert route.timeout_ms == 0
    # Istio's (1.24 on): 2 attempts on connect and stream failures, no status codes
    assert route.retry == ir.RetryPolicy(
        attempts=2,
        retry_on="connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        retriable_status_codes=(),
    )


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        (
            '{attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error, connect-failure,503,504"}',
            ir.RetryPolicy(
                3, "gateway-error,connect-failure,retriable-status-codes", 2000, (503, 504)
            ),
        ),
        (
            '{attempts: 1, retryOn: "503,retriable-status-codes"}',
            ir.RetryPolicy(1, "retriable-status-codes", None, (503,)),
        ),
        ("{attempts: 4, retryOn: 5xx}", ir.RetryPolicy(4, "5xx", None, ())),
        ("{attempts: 5}", ir.RetryPolicy(5, DEFAULT_RETRY.retry_on, None, ())),
        (
            "{attempts: 2, perTryTimeout: 250ms, retryRemoteLocalities: true}",
            ir.RetryPolicy(2, DEFAULT_RETRY.retry_on, 250, (), retry_remote_localities=True),
        ),
        ("{attempts: 0}", None),
        ("{attempts: 0, retryOn: 5xx}", None),
    ],
)
def test_retries(retries: str, expected: ir.RetryPolicy | None) -> None:
    (route,) = ok(f"  - retries: {retries}\n    {ROUTE}\n")
    assert route.retry == expected


def test_negative_attempts_are_reported_and_turn_retries_off() -> None:
    routes, problems = translate_vs(f"  - retries: {{attempts: -1}}\n    {ROUTE}\n")
    assert routes[0].retry is None
    assert located(problems) == [("error", "spec.http[0].retries.attempts")]


@pytest.mark.parametrize(
    ("timeout", "millis"), [("5s", 5000), ("1.5s", 1500), ("1m", 60_000), ("0s", 0), ("250ms", 250)]
)
def test_timeout(timeout: str, millis: int) -> None:
    (route,) = ok(f"  - timeout: {timeout}\n    {ROUTE}\n")
    assert route.timeout_ms == millis


def test_negative_durations_are_reported_and_ignored() -> None:
    # Envoy refuses a negative duration, and with it the whole RouteConfiguration.
    routes, problems = translate_vs(
        f"""\
  - timeout: -5s
    retries: {{attempts: 3, perTryTimeout: -0.5s}}
    {ROUTE}
"""
    )
    assert routes[0].timeout_ms == 0
    assert routes[0].retry is not None and routes[0].retry.per_try_timeout_ms is None
    assert located(problems) == [
        ("error", "spec.http[0].retries.perTryTimeout"),
        ("error", "spec.http[0].timeout"),
    ]


# --- regexes are checked with RE2 ---------------------------------------------------------


def test_an_re2_invalid_regex_is_reported_and_only_that_match_skipped() -> None:
    routes, problems = translate_vs(
        f"""\
  - name: r
    match:
    - name: lookahead
      uri: {{regex: "/a(?=x)"}}
    - name: fine
      uri: {{regex: "/b[0-9]+"}}
    - name: backref
      headers: {{x-h: {{regex: "(a)\\\\1"}}}}
    - name: query
      queryParams: {{q: {{regex: "(?<=y)z"}}}}
    {ROUTE}
  - name: next
    match: [{{uri: {{prefix: /n}}}}]
    {ROUTE}
"""
    )
    assert [r.name for r in routes] == ["r.fine", "next"]
    assert located(problems) == [
        ("error", "spec.http[0].match[0].uri.regex"),
        ("error", "spec.http[0].match[2].headers.x-h.regex"),
        ("error", "spec.http[0].match[3].queryParams.q.regex"),
    ]
    assert all("invalid regex (RE2 syntax)" in p.message for p in problems)


def test_a_rule_whose_every_match_is_invalid_is_not_a_catch_all() -> None:
    routes, problems = translate_vs(
        f"""\
  - match: [{{uri: {{regex: "(?=x)"}}}}]
    {ROUTE}
  - match: [{{uri: {{prefix: /ok}}}}]
    {ROUTE}
"""
    )
    assert [r.match.path.value for r in routes] == ["/ok"]
    assert located(problems) == [("error", "spec.http[0].match[0].uri.regex")]


def test_retry_remote_localities_is_envoys_previous_priorities_plugin() -> None:
    """As Istio's retry.ConvertPolicy: the previous_priorities retry priority, updated
    every 2 attempts; without the flag, no retry priority at all. Envoy accepts it."""
    (plain,) = ok(f"  - retries: {{attempts: 2}}\n    {ROUTE}\n")
    assert not route_builder.route(plain).route.retry_policy.HasField("retry_priority")
    (remote,) = ok(f"  - retries: {{attempts: 2, retryRemoteLocalities: true}}\n    {ROUTE}\n")
    out = route_builder.route(remote)
    priority = out.route.retry_policy.retry_priority
    assert priority.name == "envoy.retry_priorities.previous_priorities"
    config = pp_pb.PreviousPrioritiesConfig()
    assert priority.typed_config.Unpack(config) and config.update_frequency == 2
    rc = route_builder.route_configuration(
        ir.RouteConfig("http.80", (ir.VirtualHost("a:80", ("a",), (remote,)),))
    )
    validate_config(static_bootstrap_for(routes=[rc]))
