"""Istio's traffic-management tasks through a pilotfish-configured Envoy, on real requests.

One pilotfish and one Envoy (ingress gateway) for the module, one configuration: each
rule of VirtualService `routing` (host routing.example.com) is one task. Upstreams are
EchoHttpServers that record what they get: v1, v2, shadow (mirror target) and flaky
(fails the first attempts of each request). All traffic stays on 127.0.0.1.

The timeout task is Istio's two-hop one: /timeout (route timeout 1s) goes through the
gateway again to host delayed.example.com, whose rule injects a 2s delay, so the first
hop answers 504 after 1s.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from e2e.support_world import GatewayWorld, gateway_world, service_docs
from pilotfish.bootstrap import XDS_PROTOCOLS
from testsupport.ports import free_port
from testsupport.upstreams import EchoHttpServer, EchoReply, RecordedRequest

HOST = "routing.example.com"
FAILURES_BEFORE_SUCCESS = 2


def dest(host: str, **extra: Any) -> dict[str, Any]:
    return {"destination": {"host": host, "port": {"number": 8000}}, **extra}


def routing_docs() -> list[dict[str, Any]]:
    def rule(prefix: str, **fields: Any) -> dict[str, Any]:
        return {"name": prefix.strip("/"), "match": [{"uri": {"prefix": prefix}}], **fields}

    gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
            ],
        },
    }
    routing = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "routing", "namespace": "default"},
        "spec": {
            "hosts": [HOST],
            "gateways": ["gw"],
            "http": [
                {
                    "name": "jason",
                    "match": [
                        {"uri": {"prefix": "/reviews"}, "headers": {"end-user": {"exact": "jason"}}}
                    ],
                    "route": [dest("v2")],
                },
                rule("/reviews", route=[dest("v1")]),
                rule("/split", route=[dest("v1", weight=80), dest("v2", weight=20)]),
                rule(
                    "/abort-all",
                    fault={"abort": {"httpStatus": 418, "percentage": {"value": 100}}},
                    route=[dest("v1")],
                ),
                rule(
                    "/abort-half",
                    fault={"abort": {"httpStatus": 500, "percentage": {"value": 50}}},
                    route=[dest("v1")],
                ),
                rule(
                    "/timeout",
                    rewrite={"authority": "delayed.example.com"},
                    timeout="1s",
                    retries={"attempts": 0},
                    route=[dest("self")],
                ),
                rule(
                    "/retry",
                    retries={"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"},
                    route=[dest("flaky")],
                ),
                rule(
                    "/mirror",
                    mirror={"host": "shadow", "port": {"number": 8000}},
                    route=[dest("v1")],
                ),
                rule(
                    "/old",
                    redirect={"uri": "/new", "authority": "new.example.com", "redirectCode": 301},
                ),
                rule(
                    "/rewrite",
                    rewrite={"uri": "/rewritten", "authority": "backend.internal"},
                    route=[dest("v1")],
                ),
                rule(
                    "/cors",
                    corsPolicy={
                        "allowOrigins": [{"exact": "https://allowed.example.com"}],
                        "allowMethods": ["GET", "POST"],
                        "allowHeaders": ["x-custom"],
                        "maxAge": "1h",
                    },
                    route=[dest("v1")],
                ),
                rule(
                    "/headers",
                    headers={
                        "request": {
                            "set": {"x-set": "rule"},
                            "add": {"x-add": "added"},
                            "remove": ["x-remove"],
                        },
                        "response": {"set": {"x-resp": "rule"}, "remove": ["x-upstream-only"]},
                    },
                    route=[dest("v1", headers={"request": {"set": {"x-dest": "v1"}}})],
                ),
            ],
        },
    }
    delayed = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "delayed", "namespace": "default"},
        "spec": {
            "hosts": ["delayed.example.com"],
            "gateways": ["gw"],
            "http": [
                {
                    "fault": {"delay": {"fixedDelay": "2s", "percentage": {"value": 100}}},
                    "route": [dest("v2")],
                }
            ],
        },
    }
    return [gateway, routing, delayed]


class Flaky:
    """Fails the first FAILURES_BEFORE_SUCCESS attempts of each x-request-key with 503."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, req: RecordedRequest) -> EchoReply:
        with self.lock:
            key = req.headers.get("x-request-key", "")
            self.attempts[key] += 1
            failing = self.attempts[key] <= FAILURES_BEFORE_SUCCESS
        return EchoReply(503, b"not yet") if failing else EchoReply(200, b"finally")


class World:
    def __init__(self, gateway: GatewayWorld, upstreams: dict[str, EchoHttpServer]) -> None:
        self.gateway = gateway
        self.upstreams = upstreams

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Any:
        return self.gateway.get(path, HOST, headers, method)

    def get_many(self, path: str, n: int) -> list[Any]:
        """`n` GETs, 16 at a time (each request is a new connection: one at a time, a
        thousand of them would take half a minute)."""
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(lambda _: self.get(path), range(n)))


@pytest.fixture(scope="module", params=XDS_PROTOCOLS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """Once with Envoy on state-of-the-world ADS, once on delta."""
    config_dir = tmp_path_factory.mktemp("routing")
    flaky = Flaky()
    names = ("v1", "v2", "shadow", "flaky")
    servers = {n: EchoHttpServer(n, responder=flaky if n == "flaky" else None) for n in names}
    for server in servers.values():
        server.start()
    try:
        gateway_port = free_port()
        registry = [doc for n, s in servers.items() for doc in service_docs(n, s.port)]
        registry += service_docs("self", gateway_port)  # the gateway itself, for 2 hops
        files = {"registry.yaml": registry, "routing.yaml": routing_docs()}
        with gateway_world(
            config_dir, "routing", files, gateway_port, xds_protocol=request.param
        ) as gateway:
            gateway.wait_status("/reviews", HOST, 200)
            yield World(gateway, servers)
    finally:
        for server in servers.values():
            server.stop()


def served_by(response: Any) -> str:
    return str(response.headers.get("x-echo-server", ""))


def test_header_based_routing(world: World) -> None:
    assert served_by(world.get("/reviews", {"end-user": "jason"})) == "v2"
    assert served_by(world.get("/reviews", {"end-user": "someone"})) == "v1"
    assert served_by(world.get("/reviews")) == "v1"


def within_sigmas(observed: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """A binomial count within `sigmas` standard deviations of its mean: a correct Envoy
    fails this about once in 1.7 million runs at 5 sigma."""
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_weighted_split_80_20(world: World) -> None:
    n = 1000
    counts = Counter(served_by(r) for r in world.get_many("/split", n))
    assert set(counts) <= {"v1", "v2"}, counts
    # 5 sigma of Binomial(1000, 0.8): 800 +- 63.
    assert within_sigmas(counts["v1"], n, 0.8), counts


def test_abort_fault(world: World) -> None:
    all_of_them = world.get_many("/abort-all", 20)
    assert {r.status for r in all_of_them} == {418}
    assert not any(served_by(r) for r in all_of_them)  # Envoy answered, no upstream
    n = 400
    statuses = Counter(r.status for r in world.get_many("/abort-half", n))
    assert set(statuses) <= {200, 500}, statuses
    # 5 sigma of Binomial(400, 0.5): 200 +- 50.
    assert within_sigmas(statuses[500], n, 0.5), statuses


def test_delay_beyond_the_route_timeout_gives_504(world: World) -> None:
    started = time.monotonic()
    response = world.get("/timeout")
    elapsed = time.monotonic() - started
    assert response.status == 504, (response, world.gateway.envoy.log_tail())
    assert 0.9 <= elapsed < 2.0, elapsed  # the 1s route timeout, not the 2s delay


def test_retries_reach_a_flaky_upstream(world: World) -> None:
    key = "retry-1"
    response = world.get("/retry", {"x-request-key": key})
    assert response.status == 200 and response.body == b"finally"
    attempts = [
        r for r in world.upstreams["flaky"].requests if r.headers.get("x-request-key") == key
    ]
    assert len(attempts) == FAILURES_BEFORE_SUCCESS + 1


def test_mirror_copies_to_the_shadow(world: World) -> None:
    tag = "mirror-check"
    response = world.get(f"/mirror?tag={tag}")
    assert response.status == 200 and served_by(response) == "v1"
    shadow = world.upstreams["shadow"]
    (copy,) = [r for r in shadow.wait_for_requests(1) if tag in r.path]
    # Envoy marks the copy's authority with -shadow; the client never sees the shadow.
    assert copy.headers["host"] == f"{HOST}-shadow"
    assert not any(tag in r.path for r in world.upstreams["v2"].requests)


def test_redirect(world: World) -> None:
    response = world.get("/old/page")
    assert response.status == 301
    assert response.headers["location"] == "http://new.example.com/new"


def test_rewrite_seen_by_the_upstream(world: World) -> None:
    v1 = world.upstreams["v1"]
    response = world.get("/rewrite/x?q=1")
    assert response.status == 200
    (seen,) = [r for r in v1.requests if r.path.startswith("/rewritten")]
    assert seen.path == "/rewritten/x?q=1"
    assert seen.headers["host"] == "backend.internal"


def test_cors_preflight_is_answered(world: World) -> None:
    preflight = {
        "Origin": "https://allowed.example.com",
        "Access-Control-Request-Method": "POST",
    }
    response = world.get("/cors", preflight, method="OPTIONS")
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "https://allowed.example.com"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-max-age"] == "3600"
    assert not served_by(response)  # answered by Envoy's CORS filter
    other = world.get("/cors", {**preflight, "Origin": "https://evil.example.com"}, "OPTIONS")
    assert "access-control-allow-origin" not in other.headers


def test_header_operations(world: World) -> None:
    v1 = world.upstreams["v1"]
    v1.reply = EchoReply(headers={"x-upstream-only": "secret"})
    try:
        response = world.get(
            "/headers/check", {"x-set": "client", "x-add": "client", "x-remove": "bye"}
        )
    finally:
        v1.reply = EchoReply()
    assert response.status == 200
    assert response.headers["x-resp"] == "rule"
    assert "x-upstream-only" not in response.headers
    (seen,) = [r for r in v1.requests if r.path == "/headers/check"]
    assert seen.headers["x-set"] == "rule"  # set overwrites
    # add appends: Envoy sends a second x-add line; the recorder keeps the last one.
    assert seen.headers["x-add"].endswith("added")
    assert "x-remove" not in seen.headers
    assert seen.headers["x-dest"] == "v1"  # the destination's own headers
