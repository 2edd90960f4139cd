"""Property: any valid Istio config translates into resources Envoy accepts.

Hypothesis generates valid Gateways, VirtualServices, DestinationRules and
ServiceEntries (with the Services, endpoints and Pods that make them bind), within
Istio's own validation rules. Every translated resource must pass the pre-push check of
Envoy's constraints (many examples), and a bounded sample goes through a real
``envoy --mode validate``. Derandomized: the same examples on every run and in CI.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilotfish.model.configset import build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import Translation, translate
from pilotfish.xds import pgv
from testsupport.envoy import validate_config
from testsupport.static_bootstrap import static_bootstrap_for

PROXY = Proxy.from_node(
    "router~10.0.0.1~ingress-0.istio-system~istio-system.svc.cluster.local",
    {"LABELS": {"istio": "ingressgateway"}, "NAMESPACE": "istio-system"},
)
SERVICES = ("alpha", "beta")
HOSTS = ("a.example.com", "b.example.com", "*.wild.example.com")
HEADER_NAMES = ("x-user", "x-env", "end-user")
TOKENS = st.sampled_from(("v1", "v2", "canary", "blue", "a-b_c.d"))


def duration(low_ms: int, high_ms: int) -> st.SearchStrategy[str]:
    return st.integers(low_ms, high_ms).map(lambda ms: f"{ms}ms")


def percent() -> st.SearchStrategy[dict[str, float]]:
    return st.floats(0, 100, allow_nan=False).map(lambda v: {"value": round(v, 3)})


# --- registry -------------------------------------------------------------------------


def registry(service: str) -> list[dict[str, Any]]:
    """A Service with two ports, ready endpoints, and Pods labelled v1 / v2."""
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{service}-{v}",
                "namespace": "default",
                "labels": {"version": v},
            },
            "status": {"podIP": ip},
        }
        for v, ip in (
            ("v1", f"10.1.{SERVICES.index(service)}.1"),
            ("v2", f"10.1.{SERVICES.index(service)}.2"),
        )
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": "default"},
            "spec": {
                "ports": [
                    {"name": "http", "port": 8000, "targetPort": 8080},
                    {"name": "grpc", "port": 9000, "targetPort": 9090},
                ]
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-1",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9090}],
            "endpoints": [
                {
                    "addresses": [p["status"]["podIP"]],
                    "targetRef": {"kind": "Pod", "name": p["metadata"]["name"]},
                }
                for p in pods
            ],
        },
        *pods,
    ]


@st.composite
def service_entry(draw: st.DrawFn) -> dict[str, Any]:
    resolution = draw(st.sampled_from(("STATIC", "DNS", "DNS_ROUND_ROBIN")))
    address = "10.2.0.1" if resolution == "STATIC" else "upstream.example.org"
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "external", "namespace": "default"},
        "spec": {
            "hosts": ["api.example.org"],
            "ports": [
                {"number": 443, "name": "https", "protocol": "TLS"},
                {"number": 80, "name": "http", "protocol": "HTTP"},
            ],
            "resolution": resolution,
            "location": draw(st.sampled_from(("MESH_EXTERNAL", "MESH_INTERNAL"))),
            "endpoints": [{"address": address, "labels": {"version": "v1"}}],
        },
    }


# --- DestinationRule ------------------------------------------------------------------


@st.composite
def traffic_policy(draw: st.DrawFn) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if draw(st.booleans()):
        tcp: dict[str, Any] = {}
        if draw(st.booleans()):
            tcp["maxConnections"] = draw(st.integers(1, 2**31 - 1))
        if draw(st.booleans()):
            tcp["connectTimeout"] = draw(duration(1, 120_000))  # Istio: at least 1ms
        if draw(st.booleans()):
            tcp["tcpKeepalive"] = {
                "probes": draw(st.integers(1, 10)),
                "time": draw(duration(1000, 7_200_000)),
                "interval": draw(duration(1000, 75_000)),
            }
        http: dict[str, Any] = {}
        for name in (
            "http1MaxPendingRequests",
            "http2MaxRequests",
            "maxRetries",
            "maxRequestsPerConnection",
        ):
            if draw(st.booleans()):
                http[name] = draw(st.integers(1, 2**31 - 1))
        if draw(st.booleans()):
            http["idleTimeout"] = draw(duration(1, 3_600_000))
        policy["connectionPool"] = {k: v for k, v in (("tcp", tcp), ("http", http)) if v}
    if draw(st.booleans()):
        outlier: dict[str, Any] = {}
        if draw(st.booleans()):
            outlier["consecutive5xxErrors"] = draw(st.integers(0, 1000))
        if draw(st.booleans()):
            outlier["consecutiveGatewayErrors"] = draw(st.integers(0, 1000))
        if draw(st.booleans()):
            outlier["interval"] = draw(duration(1, 600_000))
        if draw(st.booleans()):
            outlier["baseEjectionTime"] = draw(duration(1, 600_000))
        if draw(st.booleans()):
            outlier["maxEjectionPercent"] = draw(st.integers(0, 100))
        if draw(st.booleans()):
            outlier["minHealthPercent"] = draw(st.integers(0, 100))
        policy["outlierDetection"] = outlier
    lb = draw(st.sampled_from(("none", "simple", "header", "cookie", "source", "query")))
    if lb == "simple":
        policy["loadBalancer"] = {
            "simple": draw(st.sampled_from(("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM")))
        }
    elif lb != "none":
        key = {
            "header": {"httpHeaderName": draw(st.sampled_from(HEADER_NAMES))},
            "cookie": {
                "httpCookie": {"name": "session", "path": "/", "ttl": draw(duration(0, 86_400_000))}
            },
            "source": {"useSourceIp": True},
            "query": {"httpQueryParameterName": "user"},
        }[lb]
        if draw(st.booleans()):
            key["maglev"] = {"tableSize": 65537}
        elif draw(st.booleans()):
            key["ringHash"] = {"minimumRingSize": draw(st.integers(1, 8_388_608))}
        policy["loadBalancer"] = {"consistentHash": key}
    if draw(st.booleans()):
        tls: dict[str, Any] = {"mode": draw(st.sampled_from(("DISABLE", "SIMPLE")))}
        if tls["mode"] == "SIMPLE" and draw(st.booleans()):
            tls["sni"] = draw(st.sampled_from(HOSTS[:2]))
            tls["subjectAltNames"] = [tls["sni"]]
        policy["tls"] = tls
    return policy


@st.composite
def destination_rule(draw: st.DrawFn, host: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": host, "trafficPolicy": draw(traffic_policy())}
    if draw(st.booleans()):
        spec["trafficPolicy"]["portLevelSettings"] = [
            {"port": {"number": 8000}, **draw(traffic_policy())}
        ]
    spec["subsets"] = [
        {
            "name": v,
            "labels": {"version": v},
            **({"trafficPolicy": draw(traffic_policy())} if draw(st.booleans()) else {}),
        }
        for v in ("v1", "v2")
    ]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": f"dr-{host.split('.')[0]}", "namespace": "default"},
        "spec": spec,
    }


# --- VirtualService -------------------------------------------------------------------


@st.composite
def string_match(draw: st.DrawFn, path: bool = False) -> dict[str, str]:
    kind = draw(st.sampled_from(("exact", "prefix", "regex")))
    value = draw(st.sampled_from(("/api", "/v1/items", "/")) if path else TOKENS)
    if kind == "regex":
        value = draw(st.sampled_from(("/api/.*", "^/v[0-9]+/.*$", "[a-z]+"))) if path else "v[0-9]"
    return {kind: value}


@st.composite
def destination(draw: st.DrawFn) -> dict[str, Any]:
    host = draw(st.sampled_from((*SERVICES, "api.example.org")))
    out: dict[str, Any] = {
        "host": host,
        "port": {"number": 80 if host == "api.example.org" else 8000},
    }
    if draw(st.booleans()):
        out["subset"] = draw(st.sampled_from(("v1", "v2")))
    return out


@st.composite
def headers(draw: st.DrawFn) -> dict[str, Any]:
    ops = {
        "set": draw(st.dictionaries(st.sampled_from(HEADER_NAMES), TOKENS, max_size=2)),
        "add": draw(st.dictionaries(st.sampled_from(("x-added", "x-trace")), TOKENS, max_size=2)),
        "remove": draw(
            st.lists(st.sampled_from(("x-internal", "x-debug")), max_size=2, unique=True)
        ),
    }
    return {
        "request": {k: v for k, v in ops.items() if v},
        "response": {"set": {"x-served-by": "gw"}},
    }


@st.composite
def http_route(draw: st.DrawFn, index: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": f"r{index}"}
    matches = []
    for m in range(draw(st.integers(0, 2))):
        match: dict[str, Any] = {"name": f"m{m}", "uri": draw(string_match(path=True))}
        if draw(st.booleans()):
            match["headers"] = {draw(st.sampled_from(HEADER_NAMES)): draw(string_match())}
        if draw(st.booleans()):
            match["queryParams"] = {"q": draw(string_match())}
        if draw(st.booleans()):
            match["method"] = {"exact": draw(st.sampled_from(("GET", "POST")))}
        if draw(st.booleans()):
            match["ignoreUriCase"] = True
        matches.append(match)
    if matches:
        rule["match"] = matches
    action = draw(st.sampled_from(("route", "route", "route", "redirect", "direct")))
    if action == "redirect":
        rule["redirect"] = {
            "uri": "/moved",
            "redirectCode": draw(st.sampled_from((301, 302, 307, 308))),
        }
        return rule
    if action == "direct":
        rule["directResponse"] = {"status": draw(st.integers(200, 599)), "body": {"string": "hi"}}
        return rule
    count = draw(st.integers(1, 3))
    dests = [{"destination": draw(destination())} for _ in range(count)]
    if count > 1:
        cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=count - 1, max_size=count - 1)))
        weights = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
        for d, w in zip(dests, weights, strict=True):
            d["weight"] = w
    if draw(st.booleans()):
        dests[0]["headers"] = draw(headers())
    rule["route"] = dests
    if draw(st.booleans()):
        rule["timeout"] = draw(duration(0, 300_000))
    if draw(st.booleans()):
        retries: dict[str, Any] = {"attempts": draw(st.integers(0, 10))}
        if retries["attempts"]:
            if draw(st.booleans()):
                retries["perTryTimeout"] = draw(duration(1, 60_000))
            if draw(st.booleans()):
                retries["retryOn"] = draw(
                    st.sampled_from(("5xx", "gateway-error,503", "connect-failure,refused-stream"))
                )
            if draw(st.booleans()):
                retries["retryRemoteLocalities"] = draw(st.booleans())
        rule["retries"] = retries
    if draw(st.booleans()):
        fault: dict[str, Any] = {}
        if draw(st.booleans()):
            fault["delay"] = {
                "fixedDelay": draw(duration(1, 10_000)),
                "percentage": draw(percent()),
            }
        if draw(st.booleans()):
            fault["abort"] = {
                "httpStatus": draw(st.integers(200, 599)),
                "percentage": draw(percent()),
            }
        if fault:
            rule["fault"] = fault
    if draw(st.booleans()):
        rule["headers"] = draw(headers())
    if draw(st.booleans()):
        rule["rewrite"] = {"uri": "/rewritten", "authority": draw(st.sampled_from(HOSTS[:2]))}
    if draw(st.booleans()):
        rule["mirror"] = {"host": draw(st.sampled_from(SERVICES)), "port": {"number": 8000}}
        rule["mirrorPercentage"] = draw(percent())
    if draw(st.booleans()):
        rule["corsPolicy"] = {
            "allowOrigins": [draw(string_match())],
            "allowMethods": ["GET", "POST"],
            "allowHeaders": list(HEADER_NAMES[:2]),
            "maxAge": draw(duration(0, 86_400_000)),
            "allowCredentials": draw(st.booleans()),
        }
    return rule


@st.composite
def istio_config(draw: st.DrawFn) -> list[dict[str, Any]]:
    hosts = draw(st.lists(st.sampled_from(HOSTS), min_size=1, max_size=3, unique=True))
    gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": hosts}
            ],
        },
    }
    virtual_services = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": f"vs{i}", "namespace": "default"},
            "spec": {
                "hosts": [host],
                "gateways": ["gw"],
                "http": [draw(http_route(j)) for j in range(draw(st.integers(1, 3)))],
            },
        }
        for i, host in enumerate(hosts)
    ]
    rules = [
        draw(destination_rule(h))
        for h in draw(
            st.lists(st.sampled_from((*SERVICES, "api.example.org")), max_size=3, unique=True)
        )
    ]
    registry_docs = [doc for service in SERVICES for doc in registry(service)]
    return [gateway, *virtual_services, *rules, draw(service_entry()), *registry_docs]


def translated(docs: list[dict[str, Any]]) -> Translation:
    config = build_config_set([parse_manifest_text(yaml.safe_dump_all(docs), "generated.yaml")])
    assert not config.errors, [e.describe() for e in config.errors]  # the generator's own bug
    return translate(config, PROXY)


def resources(t: Translation) -> list[Any]:
    return [*t.listeners, *t.routes, *t.clusters, *t.endpoints, *t.secrets]


@settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(istio_config())
def test_every_translated_resource_passes_envoys_constraints(docs: list[dict[str, Any]]) -> None:
    t = translated(docs)
    assert t.routes and t.clusters
    for resource in resources(t):
        assert pgv.check(resource) == [], (resource.DESCRIPTOR.name, pgv.check(resource))


@settings(
    max_examples=25, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(istio_config())
def test_a_sample_is_accepted_by_a_real_envoy(docs: list[dict[str, Any]]) -> None:
    t = translated(docs)
    validate_config(
        static_bootstrap_for(
            listeners=t.listeners,
            routes=t.routes,
            clusters=t.clusters,
            endpoints=t.endpoints,
            secrets=t.secrets,
        )
    )
