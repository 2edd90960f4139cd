"""Istio's bookinfo traffic-management tasks, through real sidecars, with real capture.

One mesh world for the module (testsupport/mesh): the sample's services and pods
(testsupport/bookinfo: productpage, details, ratings, reviews v1/v2/v3), each pod with
Istio's iptables rules and an Envoy sidecar configured by one pilotfish; beside them a
`sleep` client pod (Istio's sample client), a flaky service and a slow `httpbin` (both
app.py), an "external" server in a pod outside the mesh, and an egress gateway (a router
Envoy in a pod of its own). Each task's YAML comes from examples/bookinfo/networking and is
applied as `kubectl apply` would (testsupport/mesh/kubectl.py: one file in pilotfish's
config directory); a test then waits until the sidecar that makes the call shows the
change in its /config_dump (never a sleep), and sends real requests from inside a pod.

Statistical checks state their tolerance: a share counted over n requests that each go
one way with probability p is binomial, sd = sqrt(n p (1 - p)); the tests allow 5 sd
(a false failure about once in 1.7 million runs).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pilotfish.bootstrap import render_bootstrap
from testsupport import bookinfo
from testsupport.bookinfo import Bookinfo, Workload
from testsupport.bookinfo.observe import (
    Routes,
    fetch_all,
    version_of,
    versions,
    wait_for_vhost,
    weights,
)
from testsupport.envoy import EnvoyProcess
from testsupport.http import Response, request
from testsupport.mesh import MeshWorld, Pod, ServicePort
from testsupport.mesh.kubectl import Kubectl
from testsupport.wait import wait_until

REPO = Path(__file__).resolve().parent.parent
TASKS = REPO / "examples" / "bookinfo" / "networking"
NS = "default"


def fqdn(service: str, namespace: str = NS) -> str:
    return f"{service}.{namespace}.svc.cluster.local"


def cluster(service: str, subset: str = "", port: int = 9080) -> str:
    return f"outbound|{port}|{subset}|{fqdn(service)}"


def vhost(service: str, port: int = 9080) -> str:
    return f"{fqdn(service)}:{port}"


def within_5_sd(count: int, n: int, p: float) -> bool:
    """``count`` of ``n`` is within 5 binomial standard deviations of ``n * p``."""
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p))


@dataclass
class Mesh:
    world: MeshWorld
    app: Bookinfo
    kubectl: Kubectl
    sleep: Pod  # Istio's sample client, with a sidecar
    sleep_sidecar: EnvoyProcess

    def sidecar(self, workload: str) -> EnvoyProcess:
        return self.app.sidecars[workload]

    @property
    def productpage(self) -> EnvoyProcess:
        return self.sidecar("productpage-v1")

    def page(self, user: str | None = None, timeout: float = 15.0) -> Response:
        """GET /productpage from the sleep pod, as ``user`` (the sample's end-user header)."""
        headers = {"end-user": user} if user else None
        return self.sleep.request(
            self.app.url("productpage", "/productpage"), headers, timeout=timeout
        )

    def apply(self, *tasks: str) -> None:
        self.kubectl.apply(*(TASKS / t for t in tasks), namespace=NS)

    def reset(self) -> None:
        """Remove every applied object; wait until productpage's sidecar routes reviews
        with no rule again (one route to the service's cluster)."""
        self.kubectl.delete_all()
        for envoy in (self.productpage, self.sleep_sidecar):
            wait_for_vhost(
                envoy,
                "9080",
                vhost("reviews"),
                lambda r: [weights(x) for x in r] == [{cluster("reviews"): 100}],
                "the default route to reviews",
            )


def sends(*expected: dict[str, int]) -> Callable[[Routes], bool]:
    """A route predicate: the vhost's routes forward with these cluster weights, in order."""
    return lambda routes: [weights(r) for r in routes] == list(expected)


@pytest.fixture(scope="module")
def bookinfo_mesh(mesh: MeshWorld) -> Mesh:
    mesh.start_pilotfish()
    app = bookinfo.deploy(mesh, NS)
    sleep, sleep_sidecar = bookinfo.add_workload(mesh, Workload("sleep", "v1"), service=False)
    assert sleep_sidecar is not None
    world = Mesh(mesh, app, Kubectl(mesh), sleep, sleep_sidecar)
    for envoy in (world.productpage, sleep_sidecar):
        envoy.wait_for_cluster_healthy(cluster("reviews"), min_hosts=3)
    return world


@pytest.fixture
def bi(bookinfo_mesh: Mesh) -> Iterator[Mesh]:
    """The module's mesh, with no task applied before and after the test."""
    yield bookinfo_mesh
    bookinfo_mesh.reset()


# -- request routing ---------------------------------------------------------------------


def test_reviews_round_robin_over_v1_v2_v3_by_default(bi: Mesh) -> None:
    n = 300
    replies = fetch_all(bi.app.pod("productpage"), bi.app.url("reviews", "/reviews/0"), n)
    seen = versions(replies)
    assert set(seen) == {"v1", "v2", "v3"}, seen
    # Each version answers with p = 1/3: 5 sd over 300 requests is 41.
    for version in ("v1", "v2", "v3"):
        assert within_5_sd(seen[version], n, 1 / 3), seen
    # reviews v2 and v3 called ratings through their own sidecars.
    rated = [r.json()["calls"]["ratings"] for r in replies if version_of(r) != "v1"]
    assert {(x["status"], x["version"]) for x in rated} == {(200, "v1")}


def test_all_v1(bi: Mesh) -> None:
    bi.apply("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
    wait_for_vhost(
        bi.productpage, "9080", vhost("reviews"), sends({cluster("reviews", "v1"): 100}), "v1"
    )
    wait_for_vhost(
        bi.sleep_sidecar,
        "9080",
        vhost("productpage"),
        sends({cluster("productpage", "v1"): 100}),
        "v1",
    )
    n = 60
    pages = [bi.page() for _ in range(n)]
    assert {p.status for p in pages} == {200}
    assert versions(pages, "reviews") == Counter({"v1": n})
    assert versions(pages, "details") == Counter({"v1": n})


def test_jason_gets_reviews_v2_everyone_else_v1(bi: Mesh) -> None:
    bi.apply(
        "destination-rule-all.yaml",
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-test-v2.yaml",
    )
    wait_for_vhost(
        bi.productpage,
        "9080",
        vhost("reviews"),
        sends({cluster("reviews", "v2"): 100}, {cluster("reviews", "v1"): 100}),
        "jason's route to v2 first, then v1",
    )
    n = 40
    jason = [bi.page("jason") for _ in range(n)]
    others = [bi.page(user) for user in [None, "alice"] * (n // 2)]
    assert versions(jason, "reviews") == Counter({"v2": n})
    # v2 shows ratings: its call went through its own sidecar to ratings v1.
    assert {p.json()["calls"]["reviews"]["calls"]["ratings"]["version"] for p in jason} == {"v1"}
    assert versions(others, "reviews") == Counter({"v1": n})


def test_canary_50_50_v1_v3_then_all_v3(bi: Mesh) -> None:
    bi.apply("destination-rule-all.yaml", "virtual-service-reviews-50-v3.yaml")
    half = {cluster("reviews", "v1"): 50, cluster("reviews", "v3"): 50}
    wait_for_vhost(bi.productpage, "9080", vhost("reviews"), sends(half), "50/50 v1/v3")
    n = 1000
    replies = fetch_all(bi.app.pod("productpage"), bi.app.url("reviews", "/reviews/0"), n)
    seen = versions(replies)
    assert set(seen) == {"v1", "v3"}, seen
    # p = 1/2 over 1,000 requests: sd 15.8, 5 sd = 79 (v1 between 421 and 579).
    assert within_5_sd(seen["v1"], n, 0.5), seen

    bi.apply("virtual-service-reviews-v3.yaml")
    wait_for_vhost(
        bi.productpage, "9080", vhost("reviews"), sends({cluster("reviews", "v3"): 100}), "v3"
    )
    replies = fetch_all(bi.app.pod("productpage"), bi.app.url("reviews", "/reviews/0"), 200)
    assert versions(replies) == Counter({"v3": 200})


# -- fault injection and timeouts ----------------------------------------------------------


def route_has(envoy: EnvoyProcess, service: str, check: Callable[[dict[str, Any]], bool]) -> None:
    """Wait until the first route of ``service``'s virtual host satisfies ``check``."""
    wait_for_vhost(envoy, "9080", vhost(service), lambda r: bool(r) and check(r[0]), "the change")


def fault(route: dict[str, Any]) -> dict[str, Any]:
    filters = route.get("typed_per_filter_config", {})
    return dict(filters.get("envoy.filters.http.fault", {}))


def fault_stat(envoy: EnvoyProcess, name: str) -> int:
    """The sum of the fault filter's ``name`` counters over the sidecar's HTTP managers."""
    return sum(v for k, v in envoy.stats().items() if k.endswith(f".fault.{name}"))


def test_ratings_delay_7s_for_jason_times_out_productpages_reviews_call(bi: Mesh) -> None:
    bi.apply(
        "destination-rule-all.yaml",
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-ratings-test-delay.yaml",
    )
    # The delay is injected by the caller's sidecar: reviews v2's, on its route to ratings.
    route_has(
        bi.sidecar("reviews-v2"),
        "ratings",
        lambda r: fault(r).get("delay", {}).get("fixed_delay") == "7s",
    )
    route_has(bi.productpage, "reviews", lambda r: weights(r) == {cluster("reviews", "v2"): 100})
    delays = fault_stat(bi.sidecar("reviews-v2"), "delays_injected")
    started = time.monotonic()
    page = bi.page("jason")
    elapsed = time.monotonic() - started
    # As in Istio's task: productpage gives reviews 3 s and one retry, 6 s in all, less
    # than reviews waits for ratings (7 s): the page comes without reviews.
    assert page.status == 200
    reviews = page.json()["calls"]["reviews"]
    assert "timed out" in reviews.get("error", ""), reviews
    assert 6.0 <= elapsed < 7.0, elapsed
    # Both of productpage's attempts were held by reviews v2's sidecar.
    assert fault_stat(bi.sidecar("reviews-v2"), "delays_injected") - delays == 2
    # Everyone else: reviews v1, which does not call ratings, at once.
    started = time.monotonic()
    other = bi.page()
    assert version_of(other, "reviews") == "v1"
    assert time.monotonic() - started < 1.0


def test_reviews_timeout_half_a_second_against_a_2s_ratings_delay(bi: Mesh) -> None:
    bi.apply(
        "destination-rule-all.yaml",
        "virtual-service-reviews-timeout.yaml",
        "virtual-service-ratings-delay-2s.yaml",
    )
    route_has(
        bi.sidecar("reviews-v2"),
        "ratings",
        lambda r: fault(r).get("delay", {}).get("fixed_delay") == "2s",
    )
    route_has(bi.productpage, "reviews", lambda r: r.get("route", {}).get("timeout") == "0.500s")
    started = time.monotonic()
    page = bi.page()
    elapsed = time.monotonic() - started
    reviews = page.json()["calls"]["reviews"]
    # productpage's sidecar answers 504 after 0.5 s, twice (the sample's one retry).
    assert reviews["status"] == 504, reviews
    assert "upstream request timeout" in reviews.get("body", "")
    # (0.45: the app's clock starts before Envoy's timer, and Envoy's timers have ms ticks)
    assert 0.45 <= reviews["seconds"] < 1.0, reviews
    assert 0.9 <= elapsed < 2.0, elapsed


def test_ratings_abort_500_for_jason(bi: Mesh) -> None:
    bi.apply(
        "destination-rule-all.yaml",
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-ratings-test-abort.yaml",
    )
    route_has(
        bi.sidecar("reviews-v2"),
        "ratings",
        lambda r: fault(r).get("abort", {}).get("http_status") == 500,
    )
    route_has(bi.productpage, "reviews", lambda r: weights(r) == {cluster("reviews", "v2"): 100})
    aborts = fault_stat(bi.sidecar("reviews-v2"), "aborts_injected")
    n = 20
    jason = [bi.page("jason") for _ in range(n)]
    assert versions(jason, "reviews") == Counter({"v2": n})
    ratings = [p.json()["calls"]["reviews"]["calls"]["ratings"] for p in jason]
    assert [(r["status"], r.get("body")) for r in ratings] == [(500, "fault filter abort")] * n
    # Each abort was injected by reviews v2's sidecar, on its way out.
    assert fault_stat(bi.sidecar("reviews-v2"), "aborts_injected") - aborts == n
    others = [bi.page() for _ in range(n)]
    assert versions(others, "reviews") == Counter({"v1": n})


# -- resilience: retries and circuit breaking ---------------------------------------------

FLAKY = Workload("flaky", "v1", options=("--fail-every=2",))  # 503 to requests 1, 3, 5...
HTTPBIN_PORT = 8000


@pytest.fixture(scope="module")
def flaky(bookinfo_mesh: Mesh) -> Pod:
    pod, _ = bookinfo.add_workload(bookinfo_mesh.world, FLAKY)
    sidecar = bookinfo_mesh.sleep_sidecar
    wait_for_vhost(sidecar, "9080", vhost("flaky"), sends({cluster("flaky"): 100}), "flaky")
    sidecar.wait_for_cluster_healthy(cluster("flaky"))
    return pod


@pytest.fixture(scope="module")
def httpbin(bookinfo_mesh: Mesh) -> Pod:
    """A slow upstream (app.py answers ``?sleep=S`` after S seconds), on httpbin's port."""
    pod, _ = bookinfo.add_workload(
        bookinfo_mesh.world, Workload("httpbin", "v1"), port=HTTPBIN_PORT
    )
    sidecar, name = bookinfo_mesh.sleep_sidecar, cluster("httpbin", port=HTTPBIN_PORT)
    wait_for_vhost(sidecar, "8000", vhost("httpbin", 8000), sends({name: 100}), "httpbin")
    sidecar.wait_for_cluster_healthy(name)
    return pod


def retries_of(route: dict[str, Any]) -> int | None:
    """num_retries of a route's retry policy (None: no policy)."""
    policy = route.get("route", {}).get("retry_policy")
    return None if policy is None else int(policy.get("num_retries", 1))


def flaky_rule(attempts: int) -> dict[str, Any]:
    retries: dict[str, Any] = {"attempts": attempts}
    if attempts:
        # Without retryOn, Istio retries connection failures and resets, not answers.
        retries |= {"perTryTimeout": "2s", "retryOn": "5xx"}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "flaky", "namespace": NS},
        "spec": {
            "hosts": ["flaky"],
            "http": [{"route": [{"destination": {"host": "flaky"}}], "retries": retries}],
        },
    }


def test_retries_on_a_flaky_service(bi: Mesh, flaky: Pod) -> None:
    url = bi.app.url("flaky", "/")
    retried = f"cluster.{cluster('flaky')}.upstream_rq_retry"
    n = 20

    def send() -> list[tuple[int, int]]:
        """n requests one after the other: (status, the app's count for the last try)."""
        replies = [bi.sleep.request(url) for _ in range(n)]
        return [(r.status, int(r.json()["request"])) for r in replies]

    def alternate(replies: list[tuple[int, int]]) -> None:
        # The app fails its odd-numbered requests; with no retry, every other one fails.
        assert [s for s, _ in replies] == [503 if k % 2 else 200 for _, k in replies]
        assert Counter(s for s, _ in replies) == Counter({503: n // 2, 200: n // 2})

    # No VirtualService: Istio's default policy retries failed connections and resets
    # (retriable-status-codes with no code listed), not a 503 answer.
    before = bi.sleep_sidecar.stat(retried)
    alternate(send())
    assert bi.sleep_sidecar.stat(retried) == before

    # attempts: 3, retryOn: 5xx -- every request succeeds, each on its second try: a
    # first request leaves the app's count even (it succeeds on an even number), so every
    # request after it draws an odd number first, fails, and is retried once.
    bi.kubectl.apply(flaky_rule(3))
    wait_for_vhost(bi.sleep_sidecar, "9080", vhost("flaky"), lambda r: retries_of(r[0]) == 3, "3")
    count = int(bi.sleep.request(url).json()["request"])
    assert count % 2 == 0
    before = bi.sleep_sidecar.stat(retried)
    replies = send()
    assert replies == [(200, count + 2 * k) for k in range(1, n + 1)]  # two tries each
    assert bi.sleep_sidecar.stat(retried) - before == n

    # attempts: 0 -- retries off: every other request fails again.
    bi.kubectl.apply(flaky_rule(0))
    wait_for_vhost(
        bi.sleep_sidecar, "9080", vhost("flaky"), lambda r: retries_of(r[0]) is None, "none"
    )
    before = bi.sleep_sidecar.stat(retried)
    alternate(send())
    assert bi.sleep_sidecar.stat(retried) == before


CIRCUIT_BREAKER = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "httpbin", "namespace": NS},
    "spec": {
        "host": "httpbin",
        "trafficPolicy": {
            "connectionPool": {
                "tcp": {"maxConnections": 1},
                "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1},
            },
            "outlierDetection": {
                "consecutive5xxErrors": 1,
                "interval": "1s",
                "baseEjectionTime": "3m",
                "maxEjectionPercent": 100,
            },
        },
    },
}


def test_circuit_breaking_from_a_client_pod(bi: Mesh, httpbin: Pod) -> None:
    name = cluster("httpbin", port=HTTPBIN_PORT)
    bi.kubectl.apply(CIRCUIT_BREAKER)

    def limited() -> bool:
        found = bi.sleep_sidecar.dynamic_clusters().get(name)
        thresholds = (found.config if found else {}).get("circuit_breakers", {}).get("thresholds")
        return bool(thresholds) and thresholds[0].get("max_connections") == 1

    bi.sleep_sidecar.wait_for(limited, "the circuit breaker in the sleep pod's sidecar")
    overflow = f"cluster.{name}.upstream_rq_pending_overflow"
    before = bi.sleep_sidecar.stat(overflow)
    n = 12
    # Each request holds the one connection for half a second: one is served, one may
    # wait, the others overflow at once.
    replies = fetch_all(bi.sleep, f"http://httpbin:{HTTPBIN_PORT}/get?sleep=0.5", n)
    statuses = Counter(r.status for r in replies)
    assert set(statuses) == {200, 503}, statuses
    assert 1 <= statuses[200] <= 3, statuses
    overloaded = [r for r in replies if r.headers.get("x-envoy-overloaded") == "true"]
    assert len(overloaded) == statuses[503] >= n - 3
    assert bi.sleep_sidecar.stat(overflow) - before == statuses[503]


# -- leaving the mesh: outbound policy, ServiceEntry, egress gateway ------------------------

EGRESS = REPO / "examples" / "egress-gateway"
EXTERNAL_NAME = "api.example.org"  # named by no Service or ServiceEntry until the test adds one


@dataclass
class Outside:
    """An "external" server: a pod outside the mesh (no capture, no sidecar, no Service),
    known by name only through the pods' hosts files, as public DNS would."""

    pod: Pod

    @property
    def ip(self) -> str:
        return self.pod.ip


@pytest.fixture(scope="module")
def outside(bookinfo_mesh: Mesh) -> Outside:
    world = bookinfo_mesh.world
    pod, _ = bookinfo.add_workload(
        world, Workload("external", "v1"), port=80, sidecar=False, service=False
    )
    world.add_host(EXTERNAL_NAME, pod.ip)
    world.add_host("edition.cnn.com", pod.ip)
    return Outside(pod)


def passthrough_requests(envoy: EnvoyProcess) -> int:
    return envoy.stat("cluster.PassthroughCluster.upstream_cx_total")


def test_allow_any_passes_unknown_destinations_and_a_service_entry_names_one(
    bi: Mesh, outside: Outside
) -> None:
    # ALLOW_ANY (the mesh config's default, as in Istio): by IP and by name, the sidecar
    # passes the connection on to where it was going.
    before = passthrough_requests(bi.sleep_sidecar)
    for url in (f"http://{outside.ip}/by-ip", f"http://{EXTERNAL_NAME}/by-name"):
        reply = bi.sleep.request(url)
        assert (reply.status, reply.json()["service"]) == (200, "external"), url
        assert reply.json()["peer"] == bi.sleep.ip  # the sidecar connected, from the pod
    assert passthrough_requests(bi.sleep_sidecar) - before == 2

    # A ServiceEntry makes it a service of the mesh: its own cluster, resolved by DNS.
    bi.kubectl.apply(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "api", "namespace": NS},
            "spec": {
                "hosts": [EXTERNAL_NAME],
                "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                "resolution": "DNS",
                "location": "MESH_EXTERNAL",
            },
        }
    )
    entry = f"outbound|80||{EXTERNAL_NAME}"
    wait_for_vhost(bi.sleep_sidecar, "80", f"{EXTERNAL_NAME}:80", sends({entry: 100}), "entry")
    bi.sleep_sidecar.wait_for_cluster_healthy(entry)
    served = bi.sleep_sidecar.stat(f"cluster.{entry}.upstream_rq_200")
    before = passthrough_requests(bi.sleep_sidecar)
    reply = bi.sleep.request(f"http://{EXTERNAL_NAME}/entry")
    assert (reply.status, reply.json()["path"]) == (200, "/entry")
    assert bi.sleep_sidecar.stat(f"cluster.{entry}.upstream_rq_200") == served + 1
    assert passthrough_requests(bi.sleep_sidecar) == before


@pytest.fixture(scope="module")
def egress_gateway(bookinfo_mesh: Mesh) -> EnvoyProcess:
    """Istio's egress gateway: a router Envoy in a pod of its own in istio-system (no
    capture, as Istio's gateways), behind its Service (80 -> 8080, examples/egress-gateway)."""
    world = bookinfo_mesh.world
    labels = {"istio": "egressgateway", "app": "istio-egressgateway"}
    pod = world.add_pod("istio-egressgateway", "istio-system", labels, capture=False)
    world.add_service(
        "istio-egressgateway",
        "istio-system",
        [ServicePort(80, "http2", target_port=8080), ServicePort(443, "https", target_port=8443)],
        selector={"istio": "egressgateway"},
    )
    world.write_registry()
    envoy = pod.start_sidecar(render_bootstrap(pod.bootstrap_options(proxy_type="router")))
    envoy.wait_ready()
    return envoy


def test_egress_gateway_walkthrough_end_to_end(
    bi: Mesh, outside: Outside, egress_gateway: EnvoyProcess
) -> None:
    bi.kubectl.apply(EGRESS / "walkthrough.yaml", namespace=NS)
    to_gateway = "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local"
    to_cnn = "outbound|80||edition.cnn.com"
    wait_for_vhost(
        bi.sleep_sidecar,
        "80",
        "edition.cnn.com:80",
        sends({to_gateway: 100}),
        "rule 1 (gateways: [mesh]): to the egress gateway",
    )
    gateway_pod = bi.world.pods["istio-egressgateway"]
    bi.sleep_sidecar.wait_for_cluster_healthy(to_gateway)
    egress_gateway.wait_for_cluster_healthy(to_cnn)  # edition.cnn.com resolved by DNS
    sent = bi.sleep_sidecar.stat(f"cluster.{to_gateway}.upstream_rq_200")
    forwarded = egress_gateway.stat(f"cluster.{to_cnn}.upstream_rq_200")
    n = 5
    replies = [bi.sleep.request("http://edition.cnn.com/politics") for _ in range(n)]
    assert {(r.status, r.json()["service"], r.json()["path"]) for r in replies} == {
        (200, "external", "/politics")
    }
    # The external server was called by the egress gateway, not by the sleep pod.
    assert {r.json()["peer"] for r in replies} == {gateway_pod.ip}
    assert bi.sleep_sidecar.stat(f"cluster.{to_gateway}.upstream_rq_200") - sent == n
    assert egress_gateway.stat(f"cluster.{to_cnn}.upstream_rq_200") - forwarded == n


# -- the Sidecar resource ------------------------------------------------------------------


@pytest.fixture(scope="module")
def scoped(bookinfo_mesh: Mesh) -> tuple[Pod, EnvoyProcess]:
    """A client whose sidecar drains removed listeners in 1 s. A listener the Sidecar
    resource removes keeps its routes, and pilotfish the clusters they use, until it has
    drained: Envoy's default is 600 s, Istio's agent passes drainDuration (45 s)."""
    pod, envoy = bookinfo.add_workload(
        bookinfo_mesh.world,
        Workload("scoped", "v1"),
        service=False,
        sidecar_args=["--drain-time-s", "1", "--drain-strategy", "immediate"],
    )
    assert envoy is not None
    envoy.wait_for_cluster_healthy(cluster("details"))
    return pod, envoy


def outbound_clusters(envoy: EnvoyProcess) -> set[str]:
    return {n for n in envoy.dynamic_clusters() if n.startswith("outbound|")}


SCOPED_SIDECAR = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "Sidecar",
    "metadata": {"name": "scoped", "namespace": NS},
    "spec": {
        "workloadSelector": {"labels": {"app": "scoped"}},
        "egress": [{"hosts": [f"./{fqdn(s)}" for s in ("productpage", "reviews", "ratings")]}],
    },
}


def test_a_sidecar_resource_shrinks_the_config_and_hidden_services_pass_through(
    bi: Mesh, scoped: tuple[Pod, EnvoyProcess]
) -> None:
    pod, envoy = scoped
    everything = outbound_clusters(envoy)
    clusters_before = len(envoy.dynamic_clusters())
    assert {cluster(s) for s in ("details", "productpage", "ratings", "reviews")} <= everything
    bi.kubectl.apply(SCOPED_SIDECAR)
    visible = {cluster(s) for s in ("productpage", "reviews", "ratings")}
    wait_until(
        lambda: outbound_clusters(envoy) == visible,
        timeout=15,
        message=lambda: f"the scoped sidecar has {sorted(outbound_clusters(envoy))}",
    )
    # What is left beside the three: Envoy's fixed clusters (passthrough, blackhole).
    clusters_after = len(envoy.dynamic_clusters())
    assert clusters_after == clusters_before - (len(everything) - 3)
    assert len(everything) > len(visible) == 3
    # A visible service: through its cluster.
    served = envoy.stat(f"cluster.{cluster('reviews')}.upstream_rq_200")
    assert version_of(bi.app.get(pod, "reviews", "/reviews/0")) in {"v1", "v2", "v3"}
    assert envoy.stat(f"cluster.{cluster('reviews')}.upstream_rq_200") == served + 1
    # A hidden one follows the outbound policy, ALLOW_ANY: passed through to its cluster
    # IP (kube-proxy picks the pod), with none of the mesh's routing.
    before = passthrough_requests(envoy)
    reply = bi.app.get(pod, "details", "/details/0")
    assert (reply.status, reply.json()["service"]) == (200, "details")
    assert passthrough_requests(envoy) == before + 1


# -- through both sidecars, and a sidecar without iptables ---------------------------------


def test_stats_show_the_request_went_through_both_sidecars(bi: Mesh) -> None:
    client, callee = bi.sleep_sidecar, bi.sidecar("details-v1")
    out_stat = f"cluster.{cluster('details')}.upstream_rq_200"
    in_stat = "cluster.inbound|9080||.upstream_rq_200"
    sent, received = client.stat(out_stat), callee.stat(in_stat)
    n = 10
    replies = [bi.app.get(bi.sleep, "details", "/details/0") for _ in range(n)]
    assert {(r.status, r.json()["service"]) for r in replies} == {(200, "details")}
    assert client.stat(out_stat) - sent == n  # out of the sleep pod through its sidecar
    assert callee.stat(in_stat) - received == n  # into details through its own
    # The app saw its own sidecar connect (the inbound cluster's source), not the caller.
    assert {r.json()["peer"] for r in replies} == {"127.0.0.6"}


NO_IPTABLES_SIDECAR = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "Sidecar",
    "metadata": {"name": "legacy", "namespace": NS},
    "spec": {
        "workloadSelector": {"labels": {"app": "legacy"}},
        "egress": [
            {
                "port": {"number": 9080, "protocol": "HTTP", "name": "egresshttp"},
                "bind": "127.0.0.1",
                "captureMode": "NONE",
                "hosts": ["./*"],
            }
        ],
    },
}


def test_capture_mode_none_egress_listener_works_without_iptables(bi: Mesh) -> None:
    # Its app listens on 9081: 127.0.0.1:9080 is for the sidecar's listener.
    pod, envoy = bookinfo.add_workload(
        bi.world, Workload("legacy", "v1"), port=9081, service=False, capture=False
    )
    assert envoy is not None
    assert "ISTIO_OUTPUT" not in pod.nat_table()  # no capture in this pod
    bi.kubectl.apply(NO_IPTABLES_SIDECAR)
    envoy.wait_for_listener("127.0.0.1_9080")
    envoy.wait_for_cluster_healthy(cluster("reviews"), min_hosts=3)
    served = envoy.stat(f"cluster.{cluster('reviews')}.upstream_rq_200")
    # The app calls its sidecar's port on loopback, naming the service in Host.
    replies = [
        pod.call(request, "http://reviews:9080/reviews/0", connect_to=("127.0.0.1", 9080))
        for _ in range(6)
    ]
    assert {r.status for r in replies} == {200}
    assert versions(replies).keys() <= {"v1", "v2", "v3"}
    assert envoy.stat(f"cluster.{cluster('reviews')}.upstream_rq_200") == served + 6


# -- changes while traffic flows -------------------------------------------------------------


@dataclass
class Sent:
    started: float
    status: int
    version: str


def test_config_changes_take_effect_while_traffic_flows(bi: Mesh) -> None:
    """Requests flow from productpage's pod to reviews while the routing moves from round
    robin to all v1 to all v3: none fails, each change shows in the answers as soon as the
    sidecar holds it, and no process restarts."""
    pod, envoy = bi.app.pod("productpage"), bi.productpage
    processes = {name: e.pid for name, e in bi.app.sidecars.items()}
    url = bi.app.url("reviews", "/reviews/0")
    sent: list[Sent] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                reply = pod.request(url, timeout=5)
                sent.append(Sent(started, reply.status, version_of(reply)))
            except OSError as exc:
                sent.append(Sent(started, 0, repr(exc)))

    workers = [threading.Thread(target=traffic, daemon=True) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:

        def answered_since(moment: float, count: int) -> bool:
            return sum(1 for s in sent if s.started > moment) >= count

        envoy.wait_for(lambda: answered_since(0, 50), "traffic to flow")
        first_change = time.monotonic()
        bi.apply("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
        wait_for_vhost(
            envoy, "9080", vhost("reviews"), sends({cluster("reviews", "v1"): 100}), "v1"
        )
        all_v1 = time.monotonic()
        envoy.wait_for(lambda: answered_since(all_v1, 50), "traffic after the first change")
        second_change = time.monotonic()
        bi.apply("virtual-service-reviews-v3.yaml")
        wait_for_vhost(
            envoy, "9080", vhost("reviews"), sends({cluster("reviews", "v3"): 100}), "v3"
        )
        all_v3 = time.monotonic()
        envoy.wait_for(lambda: answered_since(all_v3, 50), "traffic after the second change")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)

    failed = [s for s in sent if s.status != 200]
    assert failed == [], f"{len(failed)} of {len(sent)} requests failed: {failed[:5]}"
    before = Counter(s.version for s in sent if s.started < first_change)
    assert set(before) == {"v1", "v2", "v3"}, before
    # Sent after the sidecar showed a change (plus 50 ms for Envoy's worker thread to
    # get the new routes from its main thread): only the new destination answers.
    grace = 0.05
    between = Counter(s.version for s in sent if all_v1 + grace < s.started < second_change)
    after = Counter(s.version for s in sent if s.started > all_v3 + grace)
    assert set(between) == {"v1"}, between
    assert set(after) == {"v3"}, after
    assert sum(after.values()) >= 45
    assert {name: e.pid for name, e in bi.app.sidecars.items()} == processes
    assert all(e.running() for e in bi.app.sidecars.values())
