"""A gateway whose own Service is a ServiceEntry, end to end (Istio's "service targets").

Real pilotfish (in process), a real Envoy bootstrapped at IP 127.0.0.1, real httpbin. The
gateway proxy has no Kubernetes Service: a ServiceEntry with an endpoint at the proxy's
IP maps port 80 to a targetPort, so the port-80 server listens there, and requests on it
reach httpbin. Moving the targetPort moves the listener; the proxy never NACKs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish.bootstrap import BootstrapOptions, render_bootstrap
from testsupport.envoy import EnvoyProcess
from testsupport.http import Response, request
from testsupport.pilotfish import InProcessPilotfish
from testsupport.ports import free_port
from testsupport.upstreams import HttpbinServer
from testsupport.wait import wait_until

PROXY_IP = "127.0.0.1"


def gateway_entry(target_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "ingress", "namespace": "istio-system"},
        "spec": {
            "hosts": ["ingress.istio-system.svc.cluster.local"],
            "ports": [{"number": 80, "targetPort": target_port, "name": "http"}],
            "endpoints": [{"address": PROXY_IP}],
            "resolution": "STATIC",
        },
    }


ROUTING = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: httpbin-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [httpbin.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.example.com]
  gateways: [httpbin-gateway]
  http:
  - route: [{destination: {host: httpbin}}]
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: default}
spec:
  ports: [{name: http, port: 8000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: httpbin-local
  namespace: default
  labels: {kubernetes.io/service-name: httpbin}
addressType: IPv4
ports: [{name: http, port: HTTPBIN_PORT}]
endpoints: [{addresses: [127.0.0.1]}]
"""


class World:
    def __init__(self, config_dir: Path, envoy: EnvoyProcess, pilotfish: InProcessPilotfish):
        self.config_dir = config_dir
        self.envoy = envoy
        self.pilotfish = pilotfish

    def get(self, port: int, path: str) -> Response:
        headers = {"Host": "httpbin.example.com"}
        return request(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=5)

    def wait_status(self, port: int, path: str, status: int) -> Response:
        def answered() -> Response | None:
            response = self.get(port, path)
            return response if response.status == status else None

        return wait_until(
            answered,
            timeout=15,
            ignore=(OSError,),
            message=lambda: f"GET :{port}{path} never gave {status}:\n{self.envoy.log_tail()}",
        )

    def nacks(self) -> list[tuple[str, Any]]:
        found = self.pilotfish.debug("/debug/syncz").json()
        return [(n, t) for e in found for n, t in e["types"].items() if t["nacks"] or t["nack"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config_dir = tmp_path_factory.mktemp("config")
    with HttpbinServer() as httpbin:
        routing = ROUTING.replace("HTTPBIN_PORT", str(httpbin.port))
        (config_dir / "routing.yaml").write_text(routing)
        (config_dir / "entry.yaml").write_text(yaml.safe_dump(gateway_entry(free_port())))
        with InProcessPilotfish(config_dir) as pilotfish:
            options = BootstrapOptions(
                proxy_type="router",
                name="ingress-0",
                namespace="istio-system",
                labels={"istio": "ingressgateway"},
                ip=PROXY_IP,
                xds_address=pilotfish.xds_address,
                admin_port=0,
            )
            with EnvoyProcess(render_bootstrap(options), name="ingress") as envoy:
                envoy.wait_ready()
                yield World(config_dir, envoy, pilotfish)


def test_the_server_listens_on_the_entry_target_port_and_serves(world: World) -> None:
    for _ in range(2):  # and again once the targetPort moved
        port = free_port()
        (world.config_dir / "entry.yaml").write_text(yaml.safe_dump(gateway_entry(port)))
        world.envoy.wait_for_listener(f"0.0.0.0_{port}")
        teapot = world.wait_status(port, "/status/418", 418)
        assert "teapot" in teapot.text
        assert world.get(port, "/headers").json()["headers"]["Host"] == "httpbin.example.com"
        # Only that listener: the server's own port 80 is not listened on.
        assert sorted(world.envoy.dynamic_listeners()) == [f"0.0.0.0_{port}"]
        assert "http.80" not in world.envoy.dynamic_route_configs()
    assert world.nacks() == []
