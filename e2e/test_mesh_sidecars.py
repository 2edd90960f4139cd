"""Sidecars' outbound half on real traffic: a client pod with Istio's iptables capture
and a sidecar Envoy from pilotfish calls bookinfo by name, and what the mesh config says
(VirtualServices, DestinationRules, the Sidecar resource, ServiceEntries) decides where
its requests go. The bookinfo pods have no capture of their own (their inbound half is
another part of issue 9), so every answer is the client sidecar's doing.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pytest
import yaml

from pilotfish.bootstrap import render_bootstrap
from testsupport import bookinfo
from testsupport.envoy import EnvoyProcess
from testsupport.http import Response, request
from testsupport.mesh import REPO_ROOT, MeshWorld, Pod, ServicePort
from testsupport.wait import wait_until

NAMESPACE = "bookinfo"
REVIEWS = f"reviews.{NAMESPACE}.svc.cluster.local"
EXTERNAL_HOST = "api.partner.example"
EXAMPLES = REPO_ROOT / "examples" / "egress-gateway"


@dataclass
class World:
    mesh: MeshWorld
    app: bookinfo.Bookinfo
    client: Pod
    sidecar: EnvoyProcess
    external: Pod  # outside the mesh and the registry


@pytest.fixture(scope="module")
def world(mesh: MeshWorld) -> World:
    # Without sidecars of their own, bookinfo's pods could not reach each other's cluster
    # IPs: these make no calls, each answers for itself.
    alone = tuple(replace(w, calls=()) for w in bookinfo.WORKLOADS)
    app = bookinfo.deploy(mesh, NAMESPACE, sidecars=False, workloads=alone)
    external = mesh.add_pod("partner", "outside", {"app": "partner"}, capture=False)
    bookinfo.start_app(external, bookinfo.Workload("partner", "v1"))
    mesh.add_host(EXTERNAL_HOST, external.ip)
    client = mesh.add_pod("sleep", NAMESPACE, {"app": "sleep"})
    mesh.write_registry()
    mesh.start_pilotfish()
    sidecar = client.start_sidecar()
    sidecar.wait_ready()
    return World(mesh, app, client, sidecar, external)


def configure(world: World, *docs: Mapping[str, Any]) -> None:
    """The mesh rules in force (replacing the previous ones, as one change)."""
    world.mesh.write_config("rules.yaml", docs)


def reviews(world: World, headers: Mapping[str, str] | None = None) -> Response:
    return world.app.get(world.client, "reviews", "/reviews/0", headers=headers)


def answers(
    world: World, count: int, headers: Mapping[str, str] | None = None
) -> collections.Counter[str]:
    """Who answered `count` requests: a version, or `status <code>` for a failure."""
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        reply = reviews(world, headers)
        seen[reply.json()["version"] if reply.status == 200 else f"status {reply.status}"] += 1
    return seen


def versions(
    world: World, count: int, headers: Mapping[str, str] | None = None
) -> collections.Counter[str]:
    """Who answered, every request answered (the steady state)."""
    seen = answers(world, count, headers)
    assert all(not k.startswith("status") for k in seen), seen
    return seen


def settle(world: World, wanted: set[str], headers: Mapping[str, str] | None = None) -> None:
    """Wait until the sidecar applies a change: ten answers in a row from `wanted`. Until
    then the old route answers; never an error: push ordering sends a route only once the
    subset cluster it names is warm."""
    seen: list[collections.Counter[str]] = []

    def only_wanted() -> bool:
        seen.append(answers(world, 10, headers))
        failed = [k for k in seen[-1] if k.startswith("status")]
        assert not failed, f"requests failed while the change landed: {seen[-1]}"
        return set(seen[-1]) <= wanted

    def described() -> str:
        routes = world.sidecar.dynamic_route_configs().get("9080")
        hosts = routes.config["virtual_hosts"] if routes else "no route configuration 9080"
        return f"reviews never answered only from {wanted}: {seen[-3:]}; routes: {hosts}"

    wait_until(only_wanted, timeout=15, message=described)


SUBSETS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "reviews", "namespace": NAMESPACE},
    "spec": {
        "host": "reviews",
        "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2", "v3")],
    },
}


def virtual_service(http: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": NAMESPACE},
        "spec": {"hosts": ["reviews"], "http": http},
    }


def to(subset: str, weight: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"destination": {"host": "reviews", "subset": subset}}
    if weight is not None:
        found["weight"] = weight
    return found


def test_without_rules_reviews_is_round_robin_through_the_sidecar(world: World) -> None:
    configure(world)
    before = world.sidecar.stat(f"cluster.outbound|9080||{REVIEWS}.upstream_rq_total")
    requests = 150
    seen = versions(world, requests)
    assert set(seen) == {"v1", "v2", "v3"}, seen
    # LEAST_REQUEST over three idle endpoints picks at random (two choices, equal load):
    # each version's count is binomial(150, 1/3), mean 50; allow 5 standard deviations.
    mean, sigma = requests / 3, math.sqrt(requests * (1 / 3) * (2 / 3))
    assert all(abs(n - mean) <= 5 * sigma for n in seen.values()), seen
    after = world.sidecar.stat(f"cluster.outbound|9080||{REVIEWS}.upstream_rq_total")
    assert after - before == requests  # every request went through the client's sidecar


def test_virtual_service_all_v1(world: World) -> None:
    configure(world, SUBSETS, virtual_service([{"route": [to("v1")]}]))
    settle(world, {"v1"})
    assert versions(world, 50) == {"v1": 50}
    assert world.sidecar.stat(f"cluster.outbound|9080|v1|{REVIEWS}.upstream_rq_total") >= 50


def test_end_user_jason_goes_to_v2(world: World) -> None:
    jason = {"end-user": "jason"}
    configure(
        world,
        SUBSETS,
        virtual_service(
            [
                {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [to("v2")]},
                {"route": [to("v1")]},
            ]
        ),
    )
    settle(world, {"v2"}, jason)
    assert versions(world, 20, jason) == {"v2": 20}
    assert versions(world, 20) == {"v1": 20}


def test_weighted_canary_then_all_v3(world: World) -> None:
    configure(world, SUBSETS, virtual_service([{"route": [to("v1", 50), to("v3", 50)]}]))
    settle(world, {"v1", "v3"})
    seen = versions(world, 400)
    assert set(seen) == {"v1", "v3"}, seen
    # 50/50 over 400 requests: a binomial with sd 10; 4.5 sd either side.
    assert 155 <= seen["v1"] <= 245, seen
    configure(world, SUBSETS, virtual_service([{"route": [to("v3")]}]))
    settle(world, {"v3"})
    assert versions(world, 30) == {"v3": 30}


def answered(reply: Response, status: int) -> Response | None:
    return reply if reply.status == status else None


def partner(world: World) -> Response:
    return world.client.request(f"http://{EXTERNAL_HOST}:9080/")


def test_outbound_policy_and_a_service_entry(world: World) -> None:
    configure(world)
    # ALLOW_ANY: a host no Service names passes through to where it was sent.
    reply = wait_until(lambda: answered(partner(world), 200), timeout=15, ignore=(OSError,))
    assert reply.json()["service"] == "partner"
    registry_only = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": NAMESPACE},
        "spec": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
    }
    configure(world, registry_only)
    blocked = wait_until(lambda: answered(partner(world), 502), timeout=15, ignore=(OSError,))
    assert blocked.status == 502  # Istio's block_all
    assert versions(world, 5)  # known services still answer
    entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "partner", "namespace": NAMESPACE},
        "spec": {
            "hosts": [EXTERNAL_HOST],
            "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
            "location": "MESH_EXTERNAL",
            "resolution": "STATIC",
            "endpoints": [{"address": world.external.ip}],
        },
    }
    configure(world, registry_only, entry)
    opened = wait_until(lambda: answered(partner(world), 200), timeout=15, ignore=(OSError,))
    assert opened.json()["service"] == "partner"
    assert world.sidecar.stat(f"cluster.outbound|9080||{EXTERNAL_HOST}.upstream_rq_total") >= 1


def test_capture_mode_none_serves_a_workload_without_iptables(world: World) -> None:
    """No capture in this pod: the service's cluster IP leads nowhere; the Sidecar's
    egress listener bound on 127.0.0.1:9080 routes by Host like a captured one."""
    legacy = world.mesh.add_pod("legacy", NAMESPACE, {"app": "legacy"}, capture=False)
    world.mesh.write_registry()
    bound = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "legacy", "namespace": NAMESPACE},
        "spec": {
            "workloadSelector": {"labels": {"app": "legacy"}},
            "egress": [
                {
                    "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                    "captureMode": "NONE",
                    "hosts": ["./*"],
                }
            ],
        },
    }
    configure(world, bound, SUBSETS, virtual_service([{"route": [to("v2")]}]))
    sidecar = legacy.start_sidecar()
    sidecar.wait_ready()

    def through_loopback() -> Response:
        url = "http://reviews:9080/reviews/0"
        return legacy.call(request, url, None, "GET", None, 5.0, connect_to=("127.0.0.1", 9080))

    reply = wait_until(lambda: answered(through_loopback(), 200), timeout=15, ignore=(OSError,))
    assert reply.json()["version"] == "v2"  # the mesh VirtualService applies here too
    assert sidecar.stat(f"cluster.outbound|9080|v2|{REVIEWS}.upstream_rq_total") >= 1


def test_the_egress_gateway_walkthrough_end_to_end(world: World) -> None:
    """Istio's egress gateway walkthrough, its YAML unchanged (examples/egress-gateway):
    a pod of `default` calls edition.cnn.com; its sidecar sends it to the egress
    gateway's `cnn` subset (the `mesh` rule), the egress gateway, a router Envoy in a pod
    of its own, to the "external" host (the `istio-egressgateway` rule). The external
    host is a pod outside the mesh answering on port 80, its name in every hosts file."""
    mesh = world.mesh
    cnn = mesh.add_pod("cnn", "outside", {"app": "cnn"}, capture=False)
    ready = cnn.directory / "cnn.ready"
    argv = bookinfo.app_command(bookinfo.Workload("cnn", "v1"), cnn, ready)
    server = cnn.spawn([*argv, "--port=80"], "cnn")
    wait_until(ready.exists, timeout=15, message=lambda: f"cnn did not start: {server.log_tail()}")
    mesh.add_host("edition.cnn.com", cnn.ip)
    gateway_pod = mesh.add_pod(
        "egressgateway", "istio-system", {"istio": "egressgateway"}, capture=False
    )
    mesh.add_service(
        "istio-egressgateway",
        "istio-system",
        [ServicePort(80, "http2", target_port=8080), ServicePort(443, "https", target_port=8443)],
        {"istio": "egressgateway"},
    )
    client = mesh.add_pod("curl", "default", {"app": "curl"})
    mesh.write_registry()
    walkthrough = list(yaml.safe_load_all((EXAMPLES / "walkthrough.yaml").read_text()))
    mesh.write_config("egress-walkthrough.yaml", walkthrough)
    gateway = gateway_pod.start_sidecar(
        render_bootstrap(gateway_pod.bootstrap_options(proxy_type="router"))
    )
    sidecar = client.start_sidecar()
    gateway.wait_ready()
    sidecar.wait_ready()

    def through_the_gateway() -> Response | None:
        reply = client.request("http://edition.cnn.com/politics")
        return reply if reply.status == 200 and reply.json()["service"] == "cnn" else None

    reply = wait_until(through_the_gateway, timeout=20, ignore=(OSError,))
    assert reply.json()["path"] == "/politics"
    to_gateway = "cluster.outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local"
    assert sidecar.stat(f"{to_gateway}.upstream_rq_total") >= 1
    assert gateway.stat("cluster.outbound|80||edition.cnn.com.upstream_rq_total") >= 1
