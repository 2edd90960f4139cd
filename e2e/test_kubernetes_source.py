"""pilotfish reading a Kubernetes API server, to a real Envoy.

There is no Kubernetes API server on these machines: testsupport/fake_kube.py is an HTTP
server speaking the API's wire format (discovery, paged LISTs, chunked watch streams with
BOOKMARK and 410 ERROR events, dropped connections), and pilotfish reaches it through the
`kubernetes` library's own kubeconfig loading. Envoy, httpbin and requests are real.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from pilotfish.bootstrap import XDS_PROTOCOLS, BootstrapOptions, render_bootstrap
from pilotfish.sources.kubernetes import KubernetesSettings, KubernetesSource
from testsupport.envoy import EnvoyProcess
from testsupport.fake_kube import FakeKube
from testsupport.http import Response, request
from testsupport.pilotfish import InProcessPilotfish
from testsupport.ports import free_port
from testsupport.upstreams import HttpbinServer
from testsupport.wait import wait_until

HOST = {"Host": "httpbin.example.com"}
GATEWAYS_PATH = "/apis/networking.istio.io/v1/gateways"


def gateway(port: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "httpbin-gateway", "namespace": "default"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": port, "name": "http", "protocol": "HTTP"},
                    "hosts": ["httpbin.example.com"],
                }
            ],
        },
    }


def virtual_service(*prefixes: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "httpbin", "namespace": "default"},
        "spec": {
            "hosts": ["httpbin.example.com"],
            "gateways": ["httpbin-gateway"],
            "http": [
                {
                    "match": [{"uri": {"prefix": p}} for p in prefixes],
                    "route": [{"destination": {"host": "httpbin", "port": {"number": 8000}}}],
                }
            ],
        },
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "httpbin", "namespace": "default"},
        "spec": {"selector": {"app": "httpbin"}, "ports": [{"name": "http", "port": 8000}]},
    }


def endpoint_slice(port: int, ready: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "httpbin-abcde",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "httpbin"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
    }


class Cluster:
    def __init__(
        self, kube: FakeKube, httpbin: HttpbinServer, gateway_port: int, debug_port: int
    ) -> None:
        self.kube = kube
        self.httpbin = httpbin
        self.gateway_port = gateway_port
        self.debug_port = debug_port
        self.pilotfish: InProcessPilotfish
        self.envoy: EnvoyProcess

    def get(self, path: str) -> Response:
        return request(f"http://127.0.0.1:{self.gateway_port}{path}", headers=HOST, timeout=5)

    def wait_status(self, path: str, status: int) -> None:
        wait_until(
            lambda: self.get(path).status == status,
            timeout=15,
            ignore=(OSError,),
            message=lambda: f"GET {path} never gave {status}; envoy log:\n{self.envoy.log_tail()}",
        )

    def debug(self, path: str) -> Response:
        return request(f"http://127.0.0.1:{self.debug_port}{path}")

    def base(self) -> list[dict[str, Any]]:
        return [
            gateway(self.gateway_port),
            virtual_service("/status"),
            service(),
            endpoint_slice(self.httpbin.port),
        ]


@pytest.fixture(scope="module", params=XDS_PROTOCOLS)
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Once with Envoy on state-of-the-world ADS, once on delta."""
    kubeconfig = tmp_path_factory.mktemp("kube") / "kubeconfig"
    with HttpbinServer() as httpbin, FakeKube(istio_versions=("v1", "v1beta1")) as kube:
        world = Cluster(kube, httpbin, free_port(), free_port())
        for obj in world.base():
            kube.add(obj)
        # The Gateways LIST fails at first: pilotfish must not be ready, nor serve xDS.
        kube.fail(GATEWAYS_PATH, 500, watch=False)
        kube.write_kubeconfig(kubeconfig)
        settings = KubernetesSettings(kubeconfig=kubeconfig, backoff_max=0.5, write_status=True)
        source = KubernetesSource(settings)
        pilotfish = InProcessPilotfish(source, debug_port=world.debug_port).start(wait=False)
        world.pilotfish = pilotfish
        try:

            def answered_not_ready() -> Response | None:
                response = world.debug("/healthz/ready")
                return response if response.status == 503 else None

            not_ready = wait_until(
                answered_not_ready, ignore=(OSError,), message="the debug server never answered"
            )
            assert "Gateway" in not_ready.text  # says what it waits for
            kube.fail(GATEWAYS_PATH, None, watch=False)
            pilotfish.wait_started()
            assert world.debug("/healthz/ready").status == 200
            options = BootstrapOptions(
                proxy_type="router",
                name="ingress-0",
                namespace="istio-system",
                labels={"istio": "ingressgateway"},
                xds_address=pilotfish.xds_address,
                admin_port=0,
            )
            with EnvoyProcess(
                render_bootstrap(options), name="kube-ingress", xds_protocol=request.param
            ) as envoy:
                world.envoy = envoy
                envoy.wait_ready()
                yield world
        finally:
            pilotfish.stop()


@pytest.fixture(autouse=True)
def base_state(cluster: Cluster) -> Cluster:
    for obj in cluster.base():
        if (
            cluster.kube.get(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
            is None
        ):
            cluster.kube.add(obj)
        else:
            cluster.kube.apply(obj)
    cluster.wait_status("/status/418", 418)
    cluster.wait_status("/headers", 404)
    return cluster


def test_initial_list_reaches_envoy(cluster: Cluster) -> None:
    assert cluster.get("/status/200").status == 200
    assert f"0.0.0.0_{cluster.gateway_port}" in cluster.envoy.dynamic_listeners()


def test_virtualservice_update_and_delete(cluster: Cluster) -> None:
    cluster.kube.update(virtual_service("/status", "/headers"))
    cluster.wait_status("/headers", 200)
    cluster.kube.delete(virtual_service())
    cluster.wait_status("/status/200", 404)


def test_gateway_delete_and_add(cluster: Cluster) -> None:
    name = f"0.0.0.0_{cluster.gateway_port}"
    cluster.kube.delete(gateway(cluster.gateway_port))
    cluster.envoy.wait_for_no_listener(name)
    cluster.kube.add(gateway(cluster.gateway_port))
    cluster.envoy.wait_for_listener(name)


def test_endpoints_follow_the_endpointslice(cluster: Cluster) -> None:
    cluster.kube.update(endpoint_slice(cluster.httpbin.port, ready=False))
    cluster.wait_status("/status/200", 503)  # no healthy upstream
    cluster.kube.update(endpoint_slice(cluster.httpbin.port, ready=True))
    cluster.wait_status("/status/200", 200)


def test_service_delete_removes_its_cluster(cluster: Cluster) -> None:
    name = "outbound|8000||httpbin.default.svc.cluster.local"
    cluster.kube.delete(service())
    cluster.envoy.wait_for_no_cluster(name)
    cluster.wait_status("/status/200", 503)
    cluster.kube.add(service())
    cluster.envoy.wait_for_cluster(name)


def test_a_delete_missed_during_a_410_is_applied_after_the_relist(cluster: Cluster) -> None:
    lists_before = cluster.kube.count("/apis/networking.istio.io/v1/virtualservices")
    cluster.kube.drop_connections()
    # While the watches are down: the VirtualService goes, and the history is compacted.
    cluster.kube.delete(virtual_service())
    cluster.kube.expire()
    cluster.wait_status("/status/200", 404)
    assert (
        cluster.kube.count("/apis/networking.istio.io/v1/virtualservices") > lists_before
    )  # a relist


def test_a_bad_object_is_reported_and_its_last_valid_version_kept(cluster: Cluster) -> None:
    bad = copy.deepcopy(virtual_service("/status", "/headers"))
    bad["spec"]["http"][0]["rout"] = bad["spec"]["http"][0].pop("route")
    cluster.kube.update(bad)

    def reported() -> list[dict[str, Any]] | None:
        status = [
            e for e in cluster.debug("/debug/config_status").json() if e.get("name") == "httpbin"
        ]
        return status or None

    (problem,) = wait_until(reported, message="the bad VirtualService was never reported")
    assert problem["file"] == "kubernetes:VirtualService/default/httpbin"
    assert problem["field"] == "spec.http[0].rout"
    assert cluster.get("/status/418").status == 418  # the last valid version still routes
    assert cluster.get("/headers").status == 404  # and the bad one's new route is not in force

    # --write-status: the problem lands on the object's status, as istiod's analysis does.
    status_path = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/httpbin/status"

    def written() -> list[dict[str, Any]] | None:
        # The latest PATCH: an earlier one (a previous test's clearing) may still be last
        # for a moment after the problem is reported.
        last = cluster.kube.patches(status_path)[-1:]
        messages = last[0].body["status"]["validationMessages"] if last else []
        return messages if any("spec.http[0].rout" in m["description"] for m in messages) else None

    wait_until(written, message="no status PATCH naming the bad field")


def test_a_relist_with_no_change_pushes_nothing(cluster: Cluster) -> None:
    def sent_versions() -> dict[str, str]:
        (node,) = cluster.pilotfish.debug("/debug/syncz").json()
        return {t: s["sent"] for t, s in node["types"].items()}

    before = sent_versions()
    lists_before = cluster.kube.count(GATEWAYS_PATH)
    cluster.kube.expire(as_http_status=True)
    cluster.kube.drop_connections()
    wait_until(
        lambda: cluster.kube.count(GATEWAYS_PATH) > lists_before, message="no relist happened"
    )
    # A real change after the relist, to know everything before it has been applied.
    cluster.kube.update(virtual_service("/status", "/headers"))
    cluster.wait_status("/headers", 200)
    after = sent_versions()
    assert after["rds"] != before["rds"]
    assert {t: after[t] for t in ("cds", "eds", "lds")} == {
        t: before[t] for t in ("cds", "eds", "lds")
    }


def test_a_pods_labels_decide_its_endpoints_subset(cluster: Cluster) -> None:
    """Pods are watched: relabelling the Pod behind an endpoint moves it into a subset."""
    rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "httpbin", "namespace": "default"},
        "spec": {"host": "httpbin", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
    }

    def pod(version: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "httpbin-0",
                "namespace": "default",
                "labels": {"app": "httpbin", "version": version},
            },
            "status": {"podIP": "127.0.0.1"},
        }

    slice_ = endpoint_slice(cluster.httpbin.port)
    slice_["endpoints"][0]["targetRef"] = {"kind": "Pod", "name": "httpbin-0"}
    to_subset = virtual_service("/status")
    to_subset["spec"]["http"][0]["route"][0]["destination"]["subset"] = "v1"
    cluster.kube.add(rule)
    cluster.kube.add(pod("v2"))
    try:
        cluster.kube.update(slice_)
        cluster.kube.update(to_subset)
        cluster.wait_status("/status/200", 503)  # the subset's only candidate is v2
        cluster.kube.update(pod("v1"))
        cluster.wait_status("/status/200", 200)
        subset = "outbound|8000|v1|httpbin.default.svc.cluster.local"
        assert cluster.envoy.healthy_hosts(subset) == [f"127.0.0.1:{cluster.httpbin.port}"]
    finally:
        cluster.kube.delete(pod("v1"))
        cluster.kube.delete(rule)
