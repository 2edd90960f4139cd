"""DestinationRules end to end: a real Envoy gateway, real upstreams, real requests.

One pilotfish and one Envoy serve the whole module from one config (written once). Each
behaviour has its own host on the gateway's port-80 server:

- cb.example.com: httpbin behind Istio's circuit-breaking DestinationRule (SCENARIOS 9);
- echo.example.com: two echo servers as two Pods labelled version v1 and v2 (their
  EndpointSlices point at the Pods by targetRef); `/v1`, `/v2` go to the subsets, the
  rest to the service, which hashes consistently on the `x-user` header; `/v9` names a
  subset no rule defines;
- flaky.example.com: a healthy echo server and one answering 500, with outlier detection;
- secure.example.com: a Python TLS upstream, reached with DestinationRule tls SIMPLE, the
  CA as a file, and the sni the certificate is for;
- mutual.example.com: a TLS upstream that requires a client certificate, reached with tls
  MUTUAL and a credentialName: the certificate, key and CA come over SDS from a Secret in
  the gateway's namespace (istio-system).
"""

from __future__ import annotations

import base64
import concurrent.futures
import ssl
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pytest
import yaml

from pilotfish.bootstrap import BootstrapOptions, render_bootstrap
from testsupport.certs import CertKey, issue, make_ca
from testsupport.envoy import EnvoyProcess
from testsupport.http import Response, request
from testsupport.pilotfish import InProcessPilotfish
from testsupport.ports import free_port
from testsupport.tls import server_context
from testsupport.upstreams import EchoHttpServer, HttpbinServer
from testsupport.wait import wait_until

CB_CLUSTER = "outbound|8000||httpbin.default.svc.cluster.local"


class TlsEchoServer(EchoHttpServer):
    """The echo server behind TLS (the Python ssl module terminates it)."""

    def __init__(self, name: str, context: ssl.SSLContext) -> None:
        super().__init__(name)
        self._context = context

    def start(self) -> Self:
        super().start()
        assert self._server is not None
        self._server.socket = self._context.wrap_socket(self._server.socket, server_side=True)
        return self


def service(name: str, port: int, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": port}]},
    }


def endpoint_slice(service_name: str, slice_name: str, port: int, pod: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name,
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port}],
        "endpoints": [
            {
                "addresses": ["127.0.0.1"],
                "targetRef": {"kind": "Pod", "name": pod, "namespace": "default"},
            }
        ],
    }


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "status": {"podIP": "127.0.0.1"},
    }


def destination_rule(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def route(host: str, prefix: str = "", subset: str = "") -> dict[str, Any]:
    rule: dict[str, Any] = {"route": [{"destination": {"host": host}}]}
    if subset:
        rule["route"][0]["destination"]["subset"] = subset
    if prefix:
        rule["match"] = [{"uri": {"prefix": prefix}}]
    return rule


def virtual_service(name: str, host: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": [host], "gateways": ["gw"], "http": rules},
    }


@dataclass
class World:
    gateway_port: int
    envoy: EnvoyProcess
    v1: EchoHttpServer
    v2: EchoHttpServer
    healthy: EchoHttpServer
    failing: EchoHttpServer
    secure: TlsEchoServer
    mutual: TlsEchoServer
    pilotfish: InProcessPilotfish

    def get(self, host: str, path: str, headers: dict[str, str] | None = None) -> Response:
        return request(
            f"http://127.0.0.1:{self.gateway_port}{path}",
            headers={"Host": host, **(headers or {})},
            timeout=10,
        )

    def wait_status(self, host: str, path: str, status: int) -> Response:
        def answered() -> Response | None:
            response = self.get(host, path)
            return response if response.status == status else None

        return wait_until(
            answered,
            timeout=20,
            ignore=(OSError,),
            message=lambda: f"{host}{path} never gave {status}:\n{self.envoy.log_tail()}",
        )


def config_docs(
    gateway_port: int,
    httpbin: HttpbinServer,
    servers: dict[str, EchoHttpServer],
    ca_file: Path,
    client: CertKey,
    ca: CertKey,
) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "ports": [{"name": "http2", "port": 80, "targetPort": gateway_port}],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default"},
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
                ],
            },
        },
        # Circuit breaking, Istio's walkthrough values.
        service("httpbin", 8000, {"app": "httpbin"}),
        endpoint_slice("httpbin", "httpbin-1", httpbin.address[1], "httpbin-pod"),
        destination_rule(
            "httpbin",
            {
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
        ),
        virtual_service("httpbin", "cb.example.com", [route("httpbin")]),
        # Subsets by Pod labels, and consistent hashing on the whole service.
        service("echo", 80, {"app": "echo"}),
        endpoint_slice("echo", "echo-v1", servers["v1"].port, "echo-v1-pod"),
        endpoint_slice("echo", "echo-v2", servers["v2"].port, "echo-v2-pod"),
        pod("echo-v1-pod", {"app": "echo", "version": "v1"}),
        pod("echo-v2-pod", {"app": "echo", "version": "v2"}),
        destination_rule(
            "echo",
            {
                "host": "echo",
                "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}},
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        ),
        virtual_service(
            "echo",
            "echo.example.com",
            [
                route("echo", "/v1", "v1"),
                route("echo", "/v2", "v2"),
                route("echo", "/v9", "v9"),  # no DestinationRule defines v9
                route("echo"),
            ],
        ),
        # Outlier detection: one endpoint answers 500.
        service("flaky", 80, {"app": "flaky"}),
        endpoint_slice("flaky", "flaky-ok", servers["healthy"].port, "flaky-ok-pod"),
        endpoint_slice("flaky", "flaky-bad", servers["failing"].port, "flaky-bad-pod"),
        destination_rule(
            "flaky",
            {
                "host": "flaky",
                "trafficPolicy": {
                    "loadBalancer": {"simple": "ROUND_ROBIN"},
                    "outlierDetection": {
                        "consecutive5xxErrors": 1,
                        "interval": "1s",
                        "baseEjectionTime": "3m",
                        "maxEjectionPercent": 100,
                    },
                },
            },
        ),
        virtual_service("flaky", "flaky.example.com", [route("flaky")]),
        # Upstream TLS, SIMPLE, verified with a CA file.
        service("secure", 443, {"app": "secure"}),
        endpoint_slice("secure", "secure-1", servers["secure"].port, "secure-pod"),
        destination_rule(
            "secure",
            {
                "host": "secure",
                "trafficPolicy": {
                    "tls": {
                        "mode": "SIMPLE",
                        "caCertificates": str(ca_file),
                        "sni": "secure.internal",
                        "subjectAltNames": ["secure.internal"],
                    }
                },
            },
        ),
        virtual_service("secure", "secure.example.com", [route("secure")]),
        # Upstream mutual TLS with a credential served over SDS.
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "upstream-client", "namespace": "istio-system"},
            "type": "Opaque",
            "data": {
                "tls.crt": base64.b64encode(client.cert_pem).decode(),
                "tls.key": base64.b64encode(client.key_pem).decode(),
                "ca.crt": base64.b64encode(ca.cert_pem).decode(),
            },
        },
        service("mutual", 443, {"app": "mutual"}),
        endpoint_slice("mutual", "mutual-1", servers["mutual"].port, "mutual-pod"),
        destination_rule(
            "mutual",
            {
                "host": "mutual",
                "trafficPolicy": {
                    "tls": {
                        "mode": "MUTUAL",
                        "credentialName": "upstream-client",
                        "sni": "mutual.internal",
                    }
                },
            },
        ),
        virtual_service("mutual", "mutual.example.com", [route("mutual")]),
    ]
    return docs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config_dir = tmp_path_factory.mktemp("config")
    pki = tmp_path_factory.mktemp("pki")
    ca = make_ca("upstream CA")
    ca_file = pki / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    gateway_port = free_port()
    requiring = server_context(issue(ca, ["mutual.internal"]))
    requiring.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no handshake
    requiring.load_verify_locations(cadata=ca.cert_pem.decode())
    client = issue(ca, ["gateway.client"], client=True)
    with (
        HttpbinServer() as httpbin,
        EchoHttpServer("v1") as v1,
        EchoHttpServer("v2") as v2,
        EchoHttpServer("healthy") as healthy,
        EchoHttpServer("failing", status=500) as failing,
        TlsEchoServer("secure", server_context(issue(ca, ["secure.internal"]))) as secure,
        TlsEchoServer("mutual", requiring) as mutual,
    ):
        servers = {
            "v1": v1,
            "v2": v2,
            "healthy": healthy,
            "failing": failing,
            "secure": secure,
            "mutual": mutual,
        }
        docs = config_docs(gateway_port, httpbin, servers, ca_file, client, ca)
        (config_dir / "config.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        with InProcessPilotfish(config_dir) as pilotfish:
            bootstrap = render_bootstrap(
                BootstrapOptions(
                    proxy_type="router",
                    name="ingress-0",
                    namespace="istio-system",
                    labels={"istio": "ingressgateway"},
                    xds_address=pilotfish.xds_address,
                    admin_port=0,
                )
            )
            with EnvoyProcess(bootstrap, name="ingress") as envoy:
                envoy.wait_ready()
                world = World(
                    gateway_port, envoy, v1, v2, healthy, failing, secure, mutual, pilotfish
                )
                world.wait_status("echo.example.com", "/v1", 200)
                yield world


def test_circuit_breaker_overflows_with_503(world: World) -> None:
    world.wait_status("cb.example.com", "/status/200", 200)
    overflow = f"cluster.{CB_CLUSTER}.upstream_rq_pending_overflow"
    before = world.envoy.stat(overflow)

    def call(_: int) -> int:
        return world.get("cb.example.com", "/delay/1").status

    # 1 connection, 1 pending: of 10 concurrent 1 s requests most cannot even queue.
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        statuses = Counter(pool.map(call, range(10)))
    assert statuses[503] >= 5, statuses
    assert statuses[200] >= 1, statuses
    assert world.envoy.stat(overflow) - before >= statuses[503]


def test_subset_routes_only_to_its_labelled_endpoints(world: World) -> None:
    world.v1.clear()
    world.v2.clear()
    for _ in range(10):
        assert world.get("echo.example.com", "/v1").headers["x-echo-server"] == "v1"
        assert world.get("echo.example.com", "/v2").headers["x-echo-server"] == "v2"
    assert len(world.v1.requests) == 10 and len(world.v2.requests) == 10


def test_consistent_hash_keeps_a_header_value_on_one_endpoint(world: World) -> None:
    for user in ("alice", "bob", "carol"):
        served = {
            world.get("echo.example.com", "/", {"x-user": user}).headers["x-echo-server"]
            for _ in range(15)
        }
        assert len(served) == 1, (user, served)
    # Different keys do spread: the hash decides, not a pinned endpoint.
    spread = {
        world.get("echo.example.com", "/", {"x-user": f"user-{i}"}).headers["x-echo-server"]
        for i in range(30)
    }
    assert spread == {"v1", "v2"}


def test_outlier_detection_ejects_the_failing_endpoint(world: World) -> None:
    cluster = "outbound|80||flaky.default.svc.cluster.local"
    world.envoy.wait_for_cluster_healthy(cluster, 2)

    def ejected() -> bool:
        world.get("flaky.example.com", "/")
        return world.envoy.stat(f"cluster.{cluster}.outlier_detection.ejections_enforced_total") > 0

    wait_until(ejected, timeout=15, message="the failing endpoint was never ejected")
    world.healthy.clear()
    statuses = Counter(world.get("flaky.example.com", "/").status for _ in range(20))
    assert statuses == {200: 20}
    assert len(world.healthy.requests) == 20


def test_upstream_tls_simple_reaches_a_tls_upstream(world: World) -> None:
    response = world.wait_status("secure.example.com", "/hello", 200)
    assert response.headers["x-echo-server"] == "secure"
    assert world.secure.requests[-1].path == "/hello"
    cluster = "outbound|443||secure.default.svc.cluster.local"
    assert world.envoy.stat(f"cluster.{cluster}.ssl.handshake") >= 1


def test_upstream_mutual_tls_with_a_credential_over_sds(world: World) -> None:
    response = world.wait_status("mutual.example.com", "/both-ways", 200)
    assert response.headers["x-echo-server"] == "mutual"
    assert world.mutual.requests[-1].path == "/both-ways"
    secrets = world.envoy.dynamic_secrets()
    assert {"kubernetes://upstream-client", "kubernetes://upstream-client-cacert"} <= set(secrets)


def test_a_route_to_an_undefined_subset_gets_503_and_only_that_route(world: World) -> None:
    assert world.get("echo.example.com", "/v9").status == 503
    (problem,) = [
        p for p in world.pilotfish.debug("/debug/config_status").json() if p["name"] == "echo"
    ]
    assert (problem["kind"], problem["severity"]) == ("VirtualService", "error")
    assert problem["field"] == "spec.http[2].route[0].destination.subset"
    assert world.get("echo.example.com", "/v1").status == 200
    assert world.get("echo.example.com", "/").status == 200
